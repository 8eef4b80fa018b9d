"""The issue-11 baseline plan for a CIFAR ResNet: keep the residual stream whole and give every block's inner
conv the same width per stage, its filters chosen by L1 norm. adapruner has no width source for this exact
plan, so it is written as a plan file for `prune --plan-in` (docs/history.md, "Fifth pass").

Usage: /usr/bin/python3 bench/keep-stream-plan.py MODEL BASE_PLAN OUT W1 W2 W3
  BASE_PLAN: any plan of MODEL (`prune MODEL --flops 0.5 --dry-run --plan-out BASE_PLAN`); its groups are reused,
  and every group anchored at a conv of stage s ('/layer{s}' in the anchor) keeps the W_s filters with the
  largest L1 norm. Every other group (the stream, the input, the logits) keeps all its channels.
"""

import json
import sys

import numpy as np
import onnx
from onnx import numpy_helper


def main(model_path: str, base_plan: str, out: str, widths: list[int]) -> None:
    model = onnx.load(model_path)
    weights = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producer = {o: n for n in model.graph.node for o in n.output}
    with open(base_plan) as f:
        plan = json.load(f)
    for group in plan["groups"]:
        anchor = group["anchor"]
        if "/layer" not in anchor:
            group["keep"] = list(range(group["channels"]))
            continue
        stage = int(anchor.split("/layer")[1][0])
        weight = weights[producer[anchor].input[1]]
        l1 = np.abs(weight).reshape(weight.shape[0], -1).sum(1)
        group["keep"] = sorted(np.argsort(-l1, kind="stable")[: widths[stage - 1]].tolist())
    plan["budget"]["roundTo"] = 1
    with open(out, "w") as f:
        json.dump(plan, f, indent=1)


if __name__ == "__main__":
    if len(sys.argv) != 7:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2], sys.argv[3], [int(w) for w in sys.argv[4:7]])
