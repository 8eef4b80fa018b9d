#!/usr/bin/env bash
# Rebuilds the bundled example (`npm start`): a small CNN trained by adapruner itself, from the random
# initialisation in fixtures/fmnist_cnn.onnx (exported by fixtures/make_fixtures.py), on the full
# Fashion-MNIST training set from Debian's dataset-fashion-mnist package; plus a small sample of that data.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-/usr/share/datasets/fashion-mnist}
mkdir -p fixtures/example
npx tsx bin/adapruner.ts finetune fixtures/fmnist_cnn.onnx \
  --data "$DATA" --val "$DATA" --preset fmnist \
  --epochs 8 --batch 64 --lr 0.05 --schedule cosine --weight-decay 5e-4 --seed 1 \
  -o fixtures/example/fmnist-cnn.onnx --checkpoint "${TMPDIR:-/tmp}/fmnist-cnn.ckpt" --json > fixtures/example/fmnist-cnn.training.json
rm -f "${TMPDIR:-/tmp}/fmnist-cnn.ckpt"
# The preprocessing travels with the model, so `eval`/`prune` need no --preset for it.
cat > fixtures/example/fmnist-cnn.preprocess.json <<'JSON'
{
  "channels": 1,
  "mean": [0.286],
  "std": [0.353],
  "augment": { "cropPadding": 2, "horizontalFlip": true }
}
JSON
npx tsx scripts/make-example-data.ts "$DATA"
