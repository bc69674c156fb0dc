"""`dtype: native`: bf16 where the run's device computes it natively, fp32 elsewhere.

A CPU with AVX512-BF16 or AMX can multiply bf16 matrices well above its fp32 rate (on our 2-core AMD EPYC machines,
torch 2.13: 409 against 160 GFLOP/s for a 2048 x 2048 matmul; 399 against 183 for SmolLM2's MLP shape); a CPU without
them emulates bf16, slower than fp32. The feature alone does not promise speed: on a 2-core Intel Xeon (Emerald Rapids,
AMX hidden by the hypervisor) the same MLP-shaped matmul ran at 101 GFLOP/s in bf16 against 169 in fp32 (2026-12-07),
so where the CPU has the feature, a 30-millisecond matmul in each dtype (`cpu_bf16_rates`, once per process and thread
count) decides. A CUDA GPU computes bf16 natively from Ampere on. So the CPU recipes name `dtype: native` and each stage
resolves it once, before loading anything, printing one line that says what it chose and why:

- frozen weights (the base under LoRA, the reference, generation, evaluation) are loaded in bf16;
- trained weights stay fp32 (LoRA adapters, whose dtype PEFT keeps at fp32 over a bf16 base; a fully trained model such
  as the MiniLM reward model; the prefix critic's copy of the top layers), with their optimizer state;
- everything computes under bf16 autocast (`bf16: true`, accelerate's mixed precision).

An explicit `--dtype float32` (or `bfloat16`) on the command line replaces the recipe's `native` and keeps the recipe's
`bf16`; `--bf16 true` with `dtype: native` asks for bf16 even where it would be emulated.
"""

import torch

from . import SafetyRLHFError

NATIVE = "native"
DTYPE_CHOICES = ("native", "auto", "bfloat16", "float16", "float32")
MIN_BF16_SPEEDUP = 1.2  # bf16 must beat fp32 by this factor to be chosen: autocast's casts cost the rest
_MEASURED: dict[int, tuple[float, float]] = {}


def cpu_bf16_rates() -> tuple[float, float]:
    """(bf16, fp32) GFLOP/s of one SmolLM2-MLP-shaped matmul (3,200 x 576 by 576 x 1,536, 5.7 GFLOP) on this CPU at
    the current torch thread count: the best of three after a warm-up, about 0.1 s in all. Measured once per process
    and thread count."""
    import time

    threads = torch.get_num_threads()
    if threads not in _MEASURED:
        rates = []
        for dtype in (torch.bfloat16, torch.float32):
            a, b = torch.randn(3200, 576, dtype=dtype), torch.randn(576, 1536, dtype=dtype)
            a @ b
            best = float("inf")
            for _ in range(3):
                start = time.perf_counter()
                a @ b
                best = min(best, time.perf_counter() - start)
            rates.append(2 * 3200 * 576 * 1536 / best / 1e9)
        _MEASURED[threads] = (rates[0], rates[1])
    return _MEASURED[threads]


def bf16_missing(cpu: bool) -> str | None:
    """None when the device the run uses (`cpu`: the CPU even where a GPU is visible) computes bf16 natively, else why
    it does not, in words."""
    if not cpu and torch.cuda.is_available():
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return None
        return f"the GPU ({torch.cuda.get_device_name()}) has no native bf16 (it needs compute capability 8.0+)"
    if not (torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported()):
        return "this CPU has neither AVX512-BF16 nor AMX, where bf16 is emulated and slower than fp32"
    bf16, fp32 = cpu_bf16_rates()
    threads = torch.get_num_threads()
    if bf16 < MIN_BF16_SPEEDUP * fp32:
        return (
            f"this CPU has bf16 instructions but multiplied bf16 at {bf16:.0f} GFLOP/s against {fp32:.0f} in fp32 "
            f"({threads} thread{'s' if threads > 1 else ''}; bf16 is chosen from {MIN_BF16_SPEEDUP}x fp32)"
        )
    return None


def cpu_name() -> str:
    """The CPU's model name (Linux `/proc/cpuinfo`), or the platform's processor string elsewhere."""
    import platform

    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def describe(cpu: bool) -> str:
    """The device in words, with its bf16 support: what a benchmark or a stage-time line names."""
    missing = bf16_missing(cpu)
    if not cpu and torch.cuda.is_available():
        device = torch.cuda.get_device_name()
    else:
        features = [n for n, ok in (("AVX512-BF16", torch.cpu._is_avx512_bf16_supported()),
                                    ("AMX", torch.cpu._is_amx_tile_supported())) if ok]  # fmt: skip
        device = f"{cpu_name()}, {torch.get_num_threads()} threads" + (f", {'/'.join(features)}" if features else "")
        if features:
            bf16, fp32 = cpu_bf16_rates()
            device += f" (matmul bf16 {bf16:.0f} / fp32 {fp32:.0f} GFLOP/s)"
    return device + ("" if missing is None else " (bf16 not chosen)")


def native_dtype(cpu: bool, what: str) -> str:
    """`dtype: native` for a stage that only generates or scores (`eval`, `sample`): `"bfloat16"` where the device
    computes it natively, else `"float32"`; prints one line saying which and why."""
    missing = bf16_missing(cpu)
    if missing is not None:
        print(f"{what}: dtype native -> float32: {missing}")
        return "float32"
    print(f"{what}: dtype native -> bf16 (native on {describe(cpu)}): bf16 weights")
    return "bfloat16"


def note_bf16_request(training_args) -> None:
    """Remember `training_args.bf16` as given: True or False when set, None when left unset. TRL's configs turn an
    unset `bf16` into True (`_BaseConfig.__post_init__`), so afterwards `resolve` could not tell a request from that
    default; our configs call this first in their `__post_init__`."""
    training_args.bf16_requested = training_args.bf16


def _set_bf16(training_args, on: bool) -> None:
    training_args.bf16 = on
    if hasattr(training_args, "mixed_precision"):  # what TrainingArguments.__post_init__ derived from bf16
        training_args.mixed_precision = "bf16" if on else "no"


def resolve(model_args, training_args, what: str = "this run") -> str:
    """Replace `model_args.dtype == "native"` by the dtype to load, set `training_args.bf16` to match, print one line.

    Args:
        model_args: a `ModelConfig` (or anything with `dtype`, `use_peft`); changed in place.
        training_args: the stage's `TrainingArguments`; its `bf16` is set where the device computes bf16 fast or where
            it was asked for (`bf16: true`; then bf16 even if slower), and cleared elsewhere, as with an explicit
            `dtype: float32` when `bf16` was left unset (TRL's default would otherwise autocast fp32 weights to
            bf16). The run uses the CPU where `use_cpu` is set or CUDA is unavailable. Without LoRA (`use_peft`) the
            loaded weights are themselves trained, so they stay fp32 under bf16 autocast.
        what: the stage's name in the printed line.

    Returns the dtype loaded: `"bfloat16"` or `"float32"` (or `model_args.dtype` untouched when it is not native).
    """
    requested = getattr(training_args, "bf16_requested", training_args.bf16)
    if model_args.dtype != NATIVE:
        if model_args.dtype == "float32" and requested is None:
            _set_bf16(training_args, False)
        return model_args.dtype
    if getattr(training_args, "fp16", False):
        raise SafetyRLHFError("dtype='native' chooses bf16 or fp32 itself; drop --fp16 true or pass --dtype float16")
    cpu = bool(getattr(training_args, "use_cpu", False)) or not torch.cuda.is_available()
    missing = bf16_missing(cpu)
    if missing is not None and not requested:
        model_args.dtype = "float32"
        _set_bf16(training_args, False)
        print(f"{what}: dtype native -> float32: {missing}")
        return "float32"
    trained_weights = not getattr(model_args, "use_peft", False)
    model_args.dtype = "float32" if trained_weights else "bfloat16"
    _set_bf16(training_args, True)
    where = "asked for with bf16: true, though " + missing if missing else "native on " + describe(cpu)
    weights = "fp32 weights" if trained_weights else "bf16 frozen weights, fp32 trained ones"
    print(f"{what}: dtype native -> bf16 ({where}): {weights}, under bf16 autocast")
    return model_args.dtype
