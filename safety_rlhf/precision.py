"""`dtype: native`: bf16 where the run's device computes it natively, fp32 elsewhere.

A CPU with AVX512-BF16 or AMX multiplies bf16 matrices at about 2.5x its fp32 rate (on our 2-core AMD EPYC machines,
torch 2.13: 409 against 160 GFLOP/s for a 2048 x 2048 matmul; 399 against 183 for SmolLM2's MLP shape); a CPU without
them emulates bf16, slower than fp32. A CUDA GPU computes bf16 natively from Ampere on. So the CPU recipes name
`dtype: native` and each stage resolves it once, before loading anything, printing one line that says what it chose
and why:

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


def bf16_missing(cpu: bool) -> str | None:
    """None when the device the run uses (`cpu`: the CPU even where a GPU is visible) computes bf16 natively, else why
    it does not, in words."""
    if not cpu and torch.cuda.is_available():
        if torch.cuda.is_bf16_supported(including_emulation=False):
            return None
        return f"the GPU ({torch.cuda.get_device_name()}) has no native bf16 (it needs compute capability 8.0+)"
    if torch.cpu._is_avx512_bf16_supported() or torch.cpu._is_amx_tile_supported():
        return None
    return "this CPU has neither AVX512-BF16 nor AMX, where bf16 is emulated and slower than fp32"


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
    return device + ("" if missing is None else " (no native bf16)")


def native_dtype(cpu: bool, what: str) -> str:
    """`dtype: native` for a stage that only generates or scores (`eval`, `sample`): `"bfloat16"` where the device
    computes it natively, else `"float32"`; prints one line saying which and why."""
    missing = bf16_missing(cpu)
    if missing is not None:
        print(f"{what}: dtype native -> float32: {missing}")
        return "float32"
    print(f"{what}: dtype native -> bf16 (native on {describe(cpu)}): bf16 weights")
    return "bfloat16"


def resolve(model_args, training_args, what: str = "this run") -> str:
    """Replace `model_args.dtype == "native"` by the dtype to load, set `training_args.bf16` to match, print one line.

    Args:
        model_args: a `ModelConfig` (or anything with `dtype`, `use_peft`); changed in place.
        training_args: the stage's `TrainingArguments`; its `bf16` is set where the device computes bf16 natively or
            where it is already true (then bf16 even if emulated). The run uses the CPU where `use_cpu` is set or
            CUDA is unavailable. Without LoRA (`use_peft`) the loaded weights are themselves trained, so they stay
            fp32 under bf16 autocast.
        what: the stage's name in the printed line.

    Returns the dtype loaded: `"bfloat16"` or `"float32"` (or `model_args.dtype` untouched when it is not native).
    """
    if model_args.dtype != NATIVE:
        return model_args.dtype
    if getattr(training_args, "fp16", False):
        raise SafetyRLHFError("dtype='native' chooses bf16 or fp32 itself; drop --fp16 true or pass --dtype float16")
    cpu = bool(getattr(training_args, "use_cpu", False)) or not torch.cuda.is_available()
    missing = bf16_missing(cpu)
    if missing is not None and not training_args.bf16:
        model_args.dtype = "float32"
        print(f"{what}: dtype native -> float32: {missing}")
        return "float32"
    trained_weights = not getattr(model_args, "use_peft", False)
    model_args.dtype = "float32" if trained_weights else "bfloat16"
    training_args.bf16 = True
    if hasattr(training_args, "mixed_precision"):  # what TrainingArguments.__post_init__ derived from bf16
        training_args.mixed_precision = "bf16"
    where = "asked for with bf16: true, emulated: " + missing if missing else "native on " + describe(cpu)
    weights = "fp32 weights" if trained_weights else "bf16 frozen weights, fp32 trained ones"
    print(f"{what}: dtype native -> bf16 ({where}): {weights}, under bf16 autocast")
    return model_args.dtype
