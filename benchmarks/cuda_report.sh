#!/usr/bin/env bash
# The README's GPU section, measured in one go on a CUDA machine:
#   bash benchmarks/cuda_report.sh DATA_DIR GLOVE REFERENCE_DIR LOG_DIR
# DATA_DIR holds BoolQ's train.jsonl; GLOVE is any --glove value (a trimmed .zip travels well);
# REFERENCE_DIR was written on a CPU by `python benchmarks/cuda_check.py --make-reference DIR`.
# Each stage has its own time limit and log, so one that fails or hangs costs only itself;
# STAGES="tests cuda_check" (say) runs only those.
set -u
data=$1 glove=$2 reference=$3 logs=$4
mkdir -p "$logs"
export PYTHONUNBUFFERED=1 KBOOLQ_CACHE_DIR=${KBOOLQ_CACHE_DIR:-/tmp/kboolq-cache}
sources=(--data "$data" --glove "$glove")

stage() {  # stage NAME SECONDS COMMAND...
    local name=$1 limit=$2 start=$SECONDS
    shift 2
    [[ " ${STAGES:-tests cuda_check speed64 speed256 fit grid} " == *" $name "* ]] || return 0
    echo "== $name: $*" | tee "$logs/$name.log"
    timeout "$limit" "$@" >>"$logs/$name.log" 2>&1
    echo "== $name: exit $?, $((SECONDS - start)) s" | tee -a "$logs/$name.log"
}

{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
    KERAS_BACKEND=torch python3 -c "import torch, keras; print('torch', torch.__version__, 'cuda', torch.version.cuda,
'cudnn', torch.backends.cudnn.version(), 'keras', keras.__version__, torch.cuda.get_device_name())"
} >"$logs/env.log" 2>&1
stage tests 150 python3 -m pytest -q -p no:cacheprovider
stage cuda_check 60 python3 benchmarks/cuda_check.py --reference "$reference"
stage speed64 120 python3 benchmarks/gru_speed.py --data "$data" --glove "$glove" \
    --batch 64 --epoch-rounds 3
stage speed256 80 python3 benchmarks/gru_speed.py --data "$data" --glove "$glove" \
    --batch 256 --epoch-steps 0 --pairs 300/256,50/128
stage fit 180 python3 benchmarks/fit_cost.py "${sources[@]}" --epochs 20
stage grid 120 python3 -m tuning.grid "${sources[@]}" --out /tmp/kboolq-grid --fresh \
    --arch notebook --hidden 128,256,512 --dropout 0.0 --lr 1e-3 --weight-decay 0.0 --epochs 5
