#!/usr/bin/env bash
# The scale run on a machine with GPUs, torch and transformers, and the CUDA vLLM kit's parts under /tmp/gk
# (see benchmarks/RESULTS.md). An 8B Llama-shaped model with dummy weights, TP=1 and TP=2, offline and serving.
#   MODEL=/path/to/shape-dir bash benchmarks/gpu_scale.sh install errors serve1 offline serve2
set -uo pipefail
OUT=${OUT:-gpu-out}
MODEL=${MODEL:?set MODEL to a model directory (benchmarks/make_shape.py)}
mkdir -p "$OUT"
export PYTHONPATH=/tmp/site:$PWD${PYTHONPATH:+:$PYTHONPATH} VLLM_USE_FLASHINFER_SAMPLER=0 PYTHONUNBUFFERED=1
export VLLM_LOGGING_LEVEL=${VLLM_LOGGING_LEVEL:-WARNING} TOKENIZERS_PARALLELISM=false
PY=${PY:-python3}
LEVELS=${LEVELS:-1,16,64,128,256}
TOKENS=${TOKENS:-256}
DUMMY='"load_format": "dummy"'

stage_install() {
  if [ ! -f /tmp/site/.swiftcli-kit ]; then
    (cd /tmp/gk && cat part.* | tar x && $PY -m pip install -q --no-index --no-deps --no-compile --target /tmp/site w/*.whl) || return 1
    touch /tmp/site/.swiftcli-kit
  fi
  { nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    $PY -c "import sys, torch, transformers, vllm; print('python', sys.version.split()[0], '| torch', torch.__version__, '| transformers', transformers.__version__, '| vllm', vllm.__version__)"
    nproc; date -u; } | tee "$OUT/versions.txt"
}

stage_errors() {  # more ranks than GPUs: refused before loading
  { echo '$ swiftcli infer --tensor_parallel_size 4 (2 GPUs)'
    $PY -m swiftcli.cli infer --model "$MODEL" --tensor_parallel_size 4 --engine_kwargs "{$DUMMY}" --query hi; echo "exit $?"
  } 2>&1 | tail -n 5 | tee "$OUT/errors.txt"
}

serve() {  # $1 = tensor parallel size; both servers resident, half the memory each
  $PY benchmarks/serve.py --model "$MODEL" --tensor_parallel_size "$1" --concurrency "$LEVELS" --max_tokens "$TOKENS" \
    --engine_kwargs "{$DUMMY, \"gpu_memory_utilization\": 0.45}" --passes "${PASSES:-2}" --requests_per_client 2 \
    --min_requests 4 --client_gc "${CLIENT_GC:-off}" --output "$OUT/serve-tp$1.json" 2>&1 | grep -v "WARNING" | tee "$OUT/serve-tp$1.txt"
}
stage_serve1() { serve 1; }
stage_serve2() { serve 2; }

stage_offline() {
  for tp in ${OFFLINE_TP:-1 2}; do
    $PY benchmarks/offline.py --model "$MODEL" --tensor_parallel_size "$tp" --engine_kwargs "{$DUMMY}" \
      --num-prompts "${PROMPTS:-512}" --max-tokens "$TOKENS" --repeats 2 --output "$OUT/offline-tp$tp.json" 2>&1 \
      | grep -v "WARNING\|it/s" | tail -n 8 | tee -a "$OUT/offline.txt"
  done
}

for stage in "$@"; do
  echo "#### stage $stage ($(date -u +%T))"
  "stage_$stage" || { echo "stage $stage failed"; exit 1; }
done
