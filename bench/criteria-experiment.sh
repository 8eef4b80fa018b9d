#!/usr/bin/env bash
# Issue-4 figures: the shared ResNet-56 pruned to 50% MACs with each inheritance criterion (adaptive widths)
# and with --uniform widths (l1), top-1 on the 10,000 CIFAR-10 test images after BN recalibration, no
# fine-tuning; and the BN-folded ResNet-56 (no BN to recalibrate: filter-norm scores, accuracy as pruned).
# Usage: bench/criteria-experiment.sh [OUT_DIR] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${TMPDIR:-/tmp}/adapruner-criteria}
THREADS=${2:-2}
DATA=../shared/data/cifar10-jpg.tar
mkdir -p "$OUT"
COMMON=(--flops 0.5 --data "$DATA" --val "$DATA" --preset cifar10 --seed 0 --calibration-images 1000
  --recal-batches 20 --recal-batch-size 64 --finetune-epochs 0 --threads "$THREADS" --json)
for c in l1 l2 bn fpgm random exemplar; do
  npx tsx bin/adapruner.ts prune ../shared/models/resnet56-cifar10.onnx "${COMMON[@]}" --criterion $c \
    -o "$OUT/adaptive-$c.onnx" > "$OUT/adaptive-$c.json" 2> "$OUT/adaptive-$c.log"
  echo "adaptive-$c done"
done
npx tsx bin/adapruner.ts prune ../shared/models/resnet56-cifar10.onnx "${COMMON[@]}" --criterion l1 --uniform \
  -o "$OUT/uniform-l1.onnx" > "$OUT/uniform-l1.json" 2> "$OUT/uniform-l1.log"
echo "uniform-l1 done"
for c in l1 fpgm; do
  npx tsx bin/adapruner.ts prune ../shared/models/resnet56-cifar10-bnfolded.onnx "${COMMON[@]}" --criterion $c \
    -o "$OUT/bnfolded-$c.onnx" > "$OUT/bnfolded-$c.json" 2> "$OUT/bnfolded-$c.log"
  echo "bnfolded-$c done"
done
