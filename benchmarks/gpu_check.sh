#!/usr/bin/env bash
# GPU check, one prepared script (about 6-7 minutes on one H200): what one small CIFAR model makes of
# a large GPU, and how much more several of them make of it.
#   1. training step throughput and peak memory of resnet20 and resnet56, variants none and bdrop_dml,
#      bf16 autocast + channels_last, without and with torch.compile (bench_train.py), and resnet20 with
#      DropBlock's seeds drawn sparse rather than dense (reg.mask_sampler);
#   2. Ray fractional packing: 1, 2, 4, 8 concurrent resnet20/bdrop_dml trials on the one GPU, each
#      holding 1/n of it, aggregate img/s against one trial and each trial's peak memory (bench_pack.py);
#   3. fused seeds: k = 1, 2, 4, 8, 16 members of resnet20/bdrop_dml as one model (bench_fused.py);
#   4. when CIFAR-10 is there (RBLOCK_DATA_DIR or RBLOCK_CIFAR10_DIR): two real epochs of resnet20 with
#      bdrop_dml through `rblock-tune train`, img/s per epoch.
# Every part prints its table and saves JSON under OUT_DIR (default benchmarks/results/gpu-check).
#   bash benchmarks/gpu_check.sh [OUT_DIR]
# DEVICE=cpu rehearses it on a machine without a GPU (small step counts, k up to 4, 2 trials at most);
# QUICK=1 shortens the timed windows anywhere.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-benchmarks/results/gpu-check}"
PY="${PYTHON:-python}"
DEVICE="${DEVICE:-cuda}"
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
start=$(date +%s)
stamp() { echo "== $1 ($(( $(date +%s) - start )) s so far)"; }

if [ "$DEVICE" = cuda ]; then
  STEPS=20; REPEATS=3; WINDOW=10; STARTUP=30; PACK=(1 2 4 8); KS=(1 2 4 8 16); FSTEPS=10
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
else
  STEPS=3; REPEATS=2; WINDOW=4; STARTUP=25; PACK=(1 2); KS=(1 2 4); FSTEPS=2
fi
if [ -n "${QUICK:-}" ]; then WINDOW=5; STARTUP=30; fi
"$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.version.cuda, 'available', torch.cuda.is_available())"

stamp "1. step throughput and memory: resnet20/resnet56 x none/bdrop_dml x eager/compile"
for model in resnet20 resnet56; do
  for compile in "" "--compile"; do
    "$PY" benchmarks/bench_train.py --device "$DEVICE" --model "$model" --variants none bdrop_dml \
      --steps "$STEPS" --repeats "$REPEATS" --warmup 5 $compile --out "$OUT"
  done
done

# on a GPU, reg.mask_sampler auto draws DropBlock's seeds dense (one number per position, in parallel);
# the same arms with the seeds drawn sparse (the gaps between them, CPU's choice) check that choice
"$PY" benchmarks/bench_train.py --device "$DEVICE" --model resnet20 --variants none bdrop_dml \
  --mask-sampler sparse --steps "$STEPS" --repeats "$REPEATS" --warmup 5 --out "$OUT"

stamp "2. Ray fractional packing: ${PACK[*]} concurrent trials per device"
"$PY" benchmarks/bench_pack.py --device "$DEVICE" --concurrency "${PACK[@]}" --seconds "$WINDOW" \
  --startup "$STARTUP" --out "$OUT"

stamp "3. fused seeds: k = ${KS[*]}"
"$PY" benchmarks/bench_fused.py --device "$DEVICE" --model resnet20 --variants none bdrop_dml \
  --ks "${KS[@]}" --steps "$FSTEPS" --repeats 2 --out "$OUT"

DATA="${RBLOCK_CIFAR10_DIR:-}"
if [ -z "$DATA" ] && [ -n "${RBLOCK_DATA_DIR:-}" ]; then DATA="$RBLOCK_DATA_DIR/cifar10-jpeg"; fi
if [ -n "$DATA" ] && [ -d "$DATA" ]; then
  stamp "4. two real CIFAR-10 epochs of resnet20/bdrop_dml"
  rm -rf "$OUT/train"
  "$PY" -m rblock_tune.cli train --out "$OUT/train" --no-progress \
    --set data.name=cifar10 --set data.download=false --set "data.root=$DATA" --set model.name=resnet20 \
    --set reg.variant=bdrop_dml --set train.epochs=2 --set "train.device=$DEVICE" \
    --set train.amp=true --set train.channels_last=true
  "$PY" - "$OUT/train/metrics.json" <<'PYEOF'
import json
import sys

m = json.load(open(sys.argv[1]))
for r in m["epochs"]:
    print(f"epoch {r['epoch']}: {r['images_per_second']:.0f} img/s, {r['epoch_seconds']:.1f} s")
print(f"test_acc {m['test_acc']:.4f} on {m['device']}")
PYEOF
else
  stamp "4. skipped: no CIFAR-10 (set RBLOCK_CIFAR10_DIR or RBLOCK_DATA_DIR)"
fi
stamp "done: figures under $OUT"
