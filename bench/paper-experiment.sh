#!/usr/bin/env bash
# The experiment of the AdaPruner paper on the shared ResNet-56 and CIFAR-10
# (docs/history.md, "The AdaPruner experiment"):
# 50% MACs, fine-tuning E epochs with the same seed and schedule for every arm:
#   (a) uniform widths + l1   (b) adaptive widths + l1   (c) adaptive widths + auto   (d) unpruned, fine-tuned
# Usage: bench/paper-experiment.sh [OUT_DIR] [EPOCHS]   (about an hour on 2 cores for E = 2)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-${TMPDIR:-/tmp}/adapruner-paper}
E=${2:-2}
MODEL=../shared/models/resnet56-cifar10.onnx
DATA=../shared/data/cifar10-jpg.tar
mkdir -p "$OUT"
COMMON=(--flops 0.5 --data "$DATA" --val "$DATA" --preset cifar10 --seed 0
  --calibration-images 1000 --recal-batches 20 --recal-batch-size 64
  --finetune-epochs "$E" --finetune-lr 0.01 --finetune-batch 128 --threads 2 --json)
run() { # name, extra args...
  local name=$1; shift
  local start=$(date +%s)
  npx tsx bin/adapruner.ts prune "$MODEL" "${COMMON[@]}" "$@" -o "$OUT/$name.onnx" > "$OUT/$name.json" 2> "$OUT/$name.log"
  echo "$name: $(( $(date +%s) - start )) s" | tee -a "$OUT/wall.txt"
}
run uniform-l1 --uniform --criterion l1
run adaptive-l1 --criterion l1
run adaptive-auto --criterion auto
start=$(date +%s)
npx tsx bin/adapruner.ts finetune "$MODEL" --data "$DATA" --val "$DATA" --preset cifar10 --seed 0 \
  --epochs "$E" --lr 0.01 --batch 128 --threads 2 --json -o "$OUT/unpruned-finetuned.onnx" \
  > "$OUT/unpruned-finetuned.json" 2> "$OUT/unpruned-finetuned.log"
echo "unpruned-finetuned: $(( $(date +%s) - start )) s" | tee -a "$OUT/wall.txt"
