#!/usr/bin/env bash
# Is a fine-tuning figure the recipe's or the trainer's? Fine-tunes one start with prune's recipe (2 epochs, flip,
# lr 0.05 cosine, batch 128, Nesterov) twice, side by side on one thread each: adapruner's `finetune`, and the
# same recipe in PyTorch (bench/finetune_torch.py, the network rebuilt from the ONNX weights). Both results are
# scored by `adapruner eval` on the 10,000 test images. docs/history.md, "Eighth pass".
# Usage: bench/finetune-peer.sh START.onnx [SEED] [OUT_DIR]
#   START: e.g. `prune ../shared/models/resnet56-cifar10.onnx --flops 0.5 --data D --val D --preset cifar10
#   --finetune-epochs 0 --no-compensate -o START.onnx` (the recalibrated default plan)
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -ge 1 ] || { echo "usage: bench/finetune-peer.sh START.onnx [SEED] [OUT_DIR]" >&2; exit 2; }
START=$1
SEED=${2:-0}
OUT=${3:-${TMPDIR:-/tmp}/adapruner-finetune-peer}
DATA=../shared/data/cifar10-jpg.tar
[ -f "$START" ] || { echo "bench/finetune-peer.sh: $START: no such file" >&2; exit 2; }
[ -f "$DATA" ] || { echo "bench/finetune-peer.sh: $DATA: no such file (see ../shared/README.md)" >&2; exit 2; }
[ -x /usr/bin/python3 ] && /usr/bin/python3 -c 'import torch, onnx, PIL' 2>/dev/null ||
  { echo "bench/finetune-peer.sh: needs Debian's python3-torch, python3-onnx and python3-pil" >&2; exit 2; }
mkdir -p "$OUT"
# When one side fails, set -e ends the script: take the other side down with it instead of leaving it running.
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT
npx tsx bin/adapruner.ts finetune "$START" --data "$DATA" --val "$DATA" --preset cifar10 --augment flip \
  --epochs 2 --batch 128 --lr 0.05 --nesterov --seed "$SEED" --threads 1 \
  -o "$OUT/adapruner-s$SEED.onnx" 2> "$OUT/adapruner-s$SEED.log" &
ADAPRUNER=$!
/usr/bin/python3 bench/finetune_torch.py "$START" "$DATA" --epochs 2 --batch 128 --lr 0.05 --nesterov \
  --seed "$SEED" --threads 1 --out "$OUT/torch-s$SEED.onnx" > "$OUT/torch-s$SEED.json" 2> "$OUT/torch-s$SEED.log" &
TORCH=$!
wait $ADAPRUNER
wait $TORCH
top1() {
  npx tsx bin/adapruner.ts eval "$1" --data "$DATA" --preset cifar10 --json |
    node -e 'let s="";process.stdin.on("data",d=>s+=d).on("end",()=>console.log(JSON.parse(s).top1))'
}
echo "{\"seed\": $SEED, \"adapruner\": $(top1 "$OUT/adapruner-s$SEED.onnx"), \"torch\": $(top1 "$OUT/torch-s$SEED.onnx")}"
