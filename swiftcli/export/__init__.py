"""Export: LoRA merge and quantization."""
