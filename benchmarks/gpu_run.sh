#!/usr/bin/env bash
# The GPU verification run, in stages, on a machine that has torch + transformers and a CUDA vLLM kit unpacked
# under /tmp/gk (see benchmarks/RESULTS.md for how it was carried there). Results go to $OUT (default ./gpu-out).
#   bash benchmarks/gpu_run.sh install examples      # then: offline, serve
set -uo pipefail
OUT=${OUT:-gpu-out}
mkdir -p "$OUT"
export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH} VLLM_USE_FLASHINFER_SAMPLER=0
export VLLM_LOGGING_LEVEL=${VLLM_LOGGING_LEVEL:-WARNING} TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}

stage_install() {
  if [ ! -f /tmp/site/.swiftcli-kit ]; then
    # The kit may carry a torchvision wheel for machines without one; the machine's own build wins where present.
    (cd /tmp/gk && cat part.* | tar x && $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
      $(ls w/*.whl | { $PY -c "import torchvision" 2>/dev/null && grep -v torchvision || cat; })) || return 1
    touch /tmp/site/.swiftcli-kit
  fi
  $PY -m pip install -q --no-index --no-deps --no-build-isolation --target /tmp/site . || return 1
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    $PY -c "import torch, transformers, vllm; print('torch', torch.__version__, '| transformers', transformers.__version__, '| vllm', vllm.__version__)"
    $PY -m swiftcli.cli --version; date -u; } | tee "$OUT/versions.txt"
  # Converts the embedded model once; shape-only runs bring its tokenizer files instead (TOKENIZER_FROM).
  [ -n "${TOKENIZER_FROM:-}" ] || $PY -c "from swiftcli.hub.resolve import resolve_model; print(resolve_model().model_dir)"
}

stage_examples() {
  for example in vllm_batch vllm_stream vllm_multi_turn; do
    echo "== examples/$example.py"
    /usr/bin/time -f "%e s wall" $PY "examples/$example.py" 2>&1 | grep -v "^\s*$" | tail -n 25
  done 2>&1 | tee "$OUT/examples.txt"
}

stage_offline() {
  $PY benchmarks/offline.py --num-prompts 256 --max-tokens 128 --skip cli --output "$OUT/offline-256.json" 2>&1 \
    | grep -v "WARNING\|it/s" | tail -n 14 | tee "$OUT/offline.txt"
  $PY benchmarks/offline.py --num-prompts 2048 --max-tokens 128 --skip pt,hf,cli --output "$OUT/offline-2048.json" 2>&1 \
    | grep -v "WARNING\|it/s" | tail -n 10 | tee -a "$OUT/offline.txt"
}

stage_serve() {
  for c in 64 256; do $PY benchmarks/serve.py --concurrency $c --num_prompts $((c * 4)) --max_num_seqs 256 --max_tokens 128 2>&1 \
    | grep -v "WARNING" | tail -n 14; done | tee "$OUT/serve.txt"; cp benchmarks/results/serve-*.json "$OUT"/ 2>/dev/null
}

# Qwen2.5-VL-7B's shape on dummy weights: image requests (one 448x448 image each) against vLLM's server.
stage_vlm() {
  $PY benchmarks/make_shape.py /tmp/qwen2.5-vl-7b --shape qwen2_5_vl_7b ${TOKENIZER_FROM:+--tokenizer_from $TOKENIZER_FROM} >/dev/null || return 1
  $PY benchmarks/serve.py --model /tmp/qwen2.5-vl-7b --images_per_request 1 --image_size 448 --concurrency 64 \
    --num_prompts 256 --max_tokens 128 --passes ${PASSES:-2} --output "$OUT/serve-vlm.json" \
    --engine_kwargs '{"load_format": "dummy", "gpu_memory_utilization": 0.42, "max_model_len": 8192}' 2>&1 \
    | grep -v "WARNING\|INFO" | tail -n 16 | tee "$OUT/serve-vlm.txt"
}

# Llama-3-8B's shape: deploy --data_parallel_size 1 against deploy without it.
stage_dp1() {
  $PY benchmarks/make_shape.py /tmp/llama-8b-shape ${TOKENIZER_FROM:+--tokenizer_from $TOKENIZER_FROM} >/dev/null || return 1
  $PY benchmarks/serve.py --model /tmp/llama-8b-shape --reference swiftcli-plain --swiftcli_args "--data_parallel_size 1" \
    --concurrency 64,256 --num_prompts 512 --max_tokens 128 --passes ${PASSES:-2} --output "$OUT/serve-dp1.json" \
    --engine_kwargs '{"load_format": "dummy", "gpu_memory_utilization": 0.42, "max_model_len": 8192}' 2>&1 \
    | grep -v "WARNING\|INFO" | tail -n 24 | tee "$OUT/serve-dp1.txt"
}

for stage in "$@"; do
  echo "#### stage $stage ($(date -u +%T))"
  "stage_$stage" || { echo "stage $stage failed"; exit 1; }
done
