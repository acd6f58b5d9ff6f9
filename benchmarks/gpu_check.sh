#!/usr/bin/env bash
# GPU check: trains resnet20 with bdrop_dml on CIFAR-10 for two epochs with bf16 autocast and
# channels_last (each epoch reports images per second), then runs the per-variant step
# benchmark on the same device.
#   RBLOCK_DATA_DIR=/folder/holding/cifar10 bash benchmarks/gpu_check.sh [OUT_DIR] [--set key=value ...]
# DEVICE=cpu and BENCH_STEPS=N rehearse it on a machine without a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${1:-rblock_runs/gpu-check}"
shift || true
PY="${PYTHON:-python}"
DEVICE="${DEVICE:-cuda}"
rm -rf "$OUT/train"
"$PY" -m rblock_tune.cli train --out "$OUT/train" --no-progress \
  --set data.name=cifar10 --set data.download=false --set model.name=resnet20 \
  --set reg.variant=bdrop_dml --set train.epochs=2 --set "train.device=$DEVICE" \
  --set train.amp=true --set train.channels_last=true "$@"
"$PY" benchmarks/bench_train.py --device "$DEVICE" --steps "${BENCH_STEPS:-50}" --out "$OUT"
"$PY" - "$OUT/train/metrics.json" <<'PYEOF'
import json
import sys

m = json.load(open(sys.argv[1]))
for r in m["epochs"]:
    print(f"epoch {r['epoch']}: {r['images_per_second']:.0f} img/s, {r['epoch_seconds']:.1f} s")
print(f"test_acc {m['test_acc']:.4f} on {m['device']}")
PYEOF
