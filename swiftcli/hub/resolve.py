"""One path from --model_type | --model_id_or_path | --ckpt_dir to a ModelSpec, for every sub-app: the registry
says what a name means, the hub (or the local disk) where its files are."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from swiftcli.config.spec import ModelSpec, dtype_alias
from swiftcli.errors import CheckpointError, ModelNotFoundError
from swiftcli.hub import snapshot_download, use_hf_hub
from swiftcli.hub.embedded import ensure_embedded_model
from swiftcli.registry import models as model_registry
from swiftcli.registry import templates as template_registry
from swiftcli.registry.models import ModelInfo
from swiftcli.registry.templates import TemplateType

ARGS_FILES = ("args.json", "sft_args.json")
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin", "model*.bin")


def resolve_model(
    model_type: str | None = None,
    model_id_or_path: str | None = None,
    ckpt_dir: str | Path | None = None,
    *,
    template_type: str | None = None,
    system: str | None = None,
    torch_dtype: str | None = None,
    revision: str | None = None,
) -> ModelSpec:
    """Resolve the user's model options; with none given, the embedded default model."""
    if ckpt_dir is not None:
        return _resolve_ckpt(Path(ckpt_dir), model_type, model_id_or_path, template_type, system, torch_dtype)
    info = model_registry.get(model_type) if model_type else None
    if model_id_or_path is None and info is None:
        info = model_registry.get(model_registry.ModelType.smollm2_135m_instruct)
    if model_id_or_path is not None:
        model_dir = _local_or_download(model_id_or_path, revision)
        if info is None:
            info = model_registry.find_by_hub_id(model_id_or_path) or _match_config(model_dir)
    else:
        assert info is not None
        model_dir = _fetch_registered(info, revision)
    return _make_spec(model_dir, info, template_type, system, torch_dtype)


def _make_spec(
    model_dir: Path,
    info: ModelInfo | None,
    template_type: str | None,
    system: str | None,
    torch_dtype: str | None,
    adapters: tuple[Path, ...] = (),
    ckpt_dir: Path | None = None,
) -> ModelSpec:
    if template_type is None:
        template_type = info.template if info else _fallback_template(model_dir)
    template_registry.get(template_type)  # fail early on an unknown name
    return ModelSpec(
        model_dir=model_dir,
        model_type=info.model_type if info else None,
        template_type=template_type,
        default_system=system,
        adapters=adapters,
        torch_dtype=torch_dtype or (info.torch_dtype if info else _config_dtype(model_dir)),
        requires=info.requires if info else (),
        support_vllm=info.support_vllm if info else True,
        ckpt_dir=ckpt_dir,
        quantization=info.quantization if info else _config_quantization(model_dir),
    )


def _fetch_registered(info: ModelInfo, revision: str | None) -> Path:
    if info.embedded:
        return ensure_embedded_model()
    model_id = info.hf_id if use_hf_hub() else info.modelscope_id
    if model_id is None:
        raise ModelNotFoundError(f"model_type {info.model_type!r} has no id on this hub", "try USE_HF=1 or 0")
    return snapshot_download(model_id, revision)


def _local_or_download(model_id_or_path: str, revision: str | None) -> Path:
    path = Path(model_id_or_path).expanduser()
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelNotFoundError(
                f"{path} has no config.json, so it is not a model directory",
                "point --model at a directory with config.json and weights, or use --ckpt_dir for a checkpoint",
            )
        return path.resolve()
    looks_like_path = model_id_or_path.startswith((".", "/", "~")) or model_id_or_path.count("/") != 1
    if looks_like_path:
        raise ModelNotFoundError(f"model path {model_id_or_path} does not exist", "check the path")
    return snapshot_download(model_id_or_path, revision)


def read_json(path: Path, name: str | None = None) -> dict[str, Any]:
    """A JSON object file; `name` is how errors call it (default: its path)."""
    name = name or str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"cannot read {name}: {exc}") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{name} is not a JSON object")
    return data


def _config(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "config.json"
    return read_json(path) if path.is_file() else {}


def _match_config(model_dir: Path) -> ModelInfo | None:
    name_or_path = _config(model_dir).get("_name_or_path")
    if isinstance(name_or_path, str) and name_or_path:
        return model_registry.find_by_hub_id(name_or_path)
    return None


def _config_dtype(model_dir: Path) -> str | None:
    config = _config(model_dir)
    dtype = config.get("torch_dtype") or config.get("dtype")
    return dtype if isinstance(dtype, str) else None


def _config_quantization(model_dir: Path) -> str | None:
    quant = _config(model_dir).get("quantization_config")
    return quant.get("quant_method") if isinstance(quant, dict) else None


def _fallback_template(model_dir: Path) -> str:
    """The tokenizer's own chat template if it has one, else plain generation."""
    if (model_dir / "chat_template.jinja").is_file() or (model_dir / "chat_template.json").is_file():
        return TemplateType.hf
    tokenizer_config = model_dir / "tokenizer_config.json"
    if tokenizer_config.is_file() and read_json(tokenizer_config).get("chat_template"):
        return TemplateType.hf
    return TemplateType.default_generation


def find_ckpt_args(ckpt_dir: Path) -> dict[str, Any]:
    """args.json (ms-swift 3.x/4.x) or sft_args.json (2.x) in the checkpoint or its parent."""
    for folder in (ckpt_dir, ckpt_dir.parent):
        for name in ARGS_FILES:
            if (folder / name).is_file():
                return read_json(folder / name)
    return {}


def has_weights(path: Path) -> bool:
    return (path / "config.json").is_file() and any(any(path.glob(p)) for p in WEIGHT_PATTERNS)


def is_adapter(path: Path) -> bool:
    return (path / "adapter_config.json").is_file()


def _resolve_ckpt(
    ckpt_dir: Path,
    model_type: str | None,
    model_id_or_path: str | None,
    template_type: str | None,
    system: str | None,
    torch_dtype: str | None,
) -> ModelSpec:
    if not ckpt_dir.is_dir():
        raise CheckpointError(f"checkpoint directory {ckpt_dir} does not exist", "check --ckpt_dir")
    ckpt_dir = ckpt_dir.resolve()
    args = find_ckpt_args(ckpt_dir)
    model_type = model_type or args.get("model_type")
    template_type = template_type or args.get("template_type") or args.get("template")
    if template_type in ("AUTO", "auto"):
        template_type = None
    if system is None and isinstance(args.get("system"), str):
        system = args["system"]
    torch_dtype = torch_dtype or dtype_alias(args.get("dtype") or args.get("torch_dtype"))
    info = model_registry.get(model_type) if model_type else None

    if has_weights(ckpt_dir):
        info = info or _match_config(ckpt_dir)
        return _make_spec(ckpt_dir, info, template_type, system, torch_dtype, ckpt_dir=ckpt_dir)
    if not is_adapter(ckpt_dir):
        raise CheckpointError(
            f"{ckpt_dir} holds neither model weights (config.json + *.safetensors) nor a LoRA adapter "
            "(adapter_config.json)",
            "point --ckpt_dir at a checkpoint-* folder of a training run",
        )
    base = model_id_or_path or args.get("model_id_or_path") or args.get("model")
    if not base:
        base = read_json(ckpt_dir / "adapter_config.json").get("base_model_name_or_path")
    if base:
        base_spec = resolve_model(model_type, str(base), template_type=template_type, system=system,
                                  torch_dtype=torch_dtype)
    elif model_type:
        base_spec = resolve_model(model_type, template_type=template_type, system=system, torch_dtype=torch_dtype)
    else:
        raise CheckpointError(
            f"cannot tell the base model of the adapter in {ckpt_dir}: no args.json/sft_args.json and no "
            "base_model_name_or_path in adapter_config.json",
            "pass --model_type or --model",
        )
    return ModelSpec(
        model_dir=base_spec.model_dir,
        model_type=base_spec.model_type,
        template_type=base_spec.template_type,
        default_system=base_spec.default_system,
        adapters=(ckpt_dir,),
        torch_dtype=base_spec.torch_dtype,
        requires=base_spec.requires,
        support_vllm=base_spec.support_vllm,
        ckpt_dir=ckpt_dir,
        quantization=base_spec.quantization,
    )
