"""Checkpoints the tests make from the embedded model: a peft LoRA adapter laid out like an ms-swift one."""

from __future__ import annotations

import json
from pathlib import Path

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


def make_lora_adapter(base_dir: Path, out_dir: Path, *, seed: int = 0, scale: float = 0.05,
                      args_file: str = "sft_args.json", extra_args: dict[str, object] | None = None) -> Path:
    """Save a rank-8 LoRA adapter with small random (non-zero) A and B, so outputs change but stay fluent.

    The checkpoint directory also gets ms-swift's argument file naming the base model (plus `extra_args`, e.g.
    the training run's `system`).
    """
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(base_dir, dtype=torch.float32)
    config = LoraConfig(r=8, lora_alpha=16, target_modules=LORA_TARGETS, lora_dropout=0.0,
                        init_lora_weights=False, task_type="CAUSAL_LM")
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_B" in name:
                param.copy_(torch.randn_like(param) * scale)
    out_dir.mkdir(parents=True, exist_ok=True)
    peft_model.save_pretrained(out_dir)
    args = {"model_type": "smollm2-135m-instruct", "model_id_or_path": str(base_dir),
            "template_type": "smollm2", "sft_type": "lora", "dtype": "bf16", **(extra_args or {})}
    (out_dir / args_file).write_text(json.dumps(args, indent=2))
    return out_dir


def make_training_run(base_dir: Path, run_dir: Path, steps: tuple[int, ...] = (10, 20, 30), *,
                      seed: int = 0, scale_per_step: float = 0.005) -> list[Path]:
    """checkpoint-STEP folders of one adapter "training": the same random direction, growing with the step, and a
    trainer_state.json in each (global_step, a log_history), as transformers' Trainer writes them."""
    checkpoints = []
    for step in steps:
        ckpt = make_lora_adapter(base_dir, run_dir / f"checkpoint-{step}", seed=seed, scale=scale_per_step * step)
        history = [{"step": s, "loss": round(2.0 / (1 + s / 10), 4)} for s in steps if s <= step]
        state = {"global_step": step, "epoch": step / max(steps), "log_history": history,
                 "best_model_checkpoint": None}
        (ckpt / "trainer_state.json").write_text(json.dumps(state, indent=2))
        checkpoints.append(ckpt)
    return checkpoints
