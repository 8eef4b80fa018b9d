#!/usr/bin/python3
"""PyTorch peer for recovering a pruned SynthDet detector (issue 29): how far can training bring a pruned
YOLOv8-style detector back, with labels or without, and on how many images? It answers whether a recovery
figure is adapruner's or the pruned network's.

The pruned ONNX file (from `adapruner prune`, BN kept) is rebuilt as fixtures/make_dense.py's YoloDet: every
Conv2d and BatchNorm2d takes the shape and weights the file gives it (matched by the initializer names torch
exported), and each C2f splits at the width its first bottleneck reads (a pruned plan may keep unequal halves,
which torch's chunk() cannot). The original is rebuilt the same way, so both score as make_trained.py scores:
ultralytics validation NMS and 101-point COCO mAP on the generator's 500 val images (seed 0).

Modes (the recipe of fixtures/make_trained.py: batches of 32, AdamW, warm-up then cosine, grad-norm clip 10, EMA):
  labels   fine-tune the pruned weights with the detection loss (TaskAlignedAssigner, CIoU + BCE + DFL)
  scratch  train the pruned architecture from random weights with the same loss (the original's recipe)
  distil   label-free: match the original's head outputs on the same images, a KL over the 16 DFL bins of each
           box side and BCE on the class logits, each anchor weighted by the original's best class score
           (--loss decoded: BCE on the decoded scores and a bounded relative box error, as adapruner's detect rule)

usage: detector_recovery_torch.py ORIGINAL.onnx PRUNED.onnx [--mode distil] [--steps 400] [--lr 5e-4]
       [--pool N] [--no-flip] [--no-ema] [--loss head|decoded] [--eval-at 15,50,200,400]
--pool trains on the first N of the 8,000 generated training images (repeated, flipped at random) instead of
fresh ones; --data-seed S --pool 300 --val 200 are the images of `fixtures/synthdet.py DIR --train 300 --val 200
--seed S`, for a comparison with adapruner on the same files. The default --data-seed 0 gives the images the
original was trained on (make_trained.py's DATA_SEED); another seed gives images it never saw. Prints one line per evaluation: mAP50, mAP50-95 and the share of the original's mAP50-95.
"""
import argparse
import math
import os
import sys
import time

import numpy as np
import onnx
import torch
import torch.nn as nn
import torch.nn.functional as F
from onnx import numpy_helper

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'fixtures'))
import make_trained as T  # noqa: E402
from make_dense import C2f, YoloDet, dist2bbox, make_anchors  # noqa: E402


def onnx_layers(path):
    """Module path -> ('conv', weight, bias, attributes) or ('bn', [scale, bias, mean, var])."""
    m = onnx.load(path)
    ini = {i.name: torch.from_numpy(numpy_helper.to_array(i).copy()) for i in m.graph.initializer}
    for n in m.graph.node:  # torch's export shares equal initializers through Identity nodes
        if n.op_type == 'Identity' and n.input[0] in ini:
            ini[n.output[0]] = ini[n.input[0]]
    out = {}
    for n in m.graph.node:
        if n.op_type == 'Conv':
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in n.attribute}
            bias = ini[n.input[2]] if len(n.input) > 2 and n.input[2] else None
            out[n.input[1].rsplit('.', 1)[0]] = ('conv', ini[n.input[1]], bias, attrs)
        elif n.op_type == 'BatchNormalization':
            # named by the bias: a shared scale keeps the name of the first BN that had it
            out[n.input[2].rsplit('.', 1)[0]] = ('bn', [ini[x] for x in n.input[1:5]])
    return out


def rebuild(path, with_weights=True):
    _, ch, head, c2 = T.DET_VARIANTS['n']
    model = YoloDet(nc=T.NC, ch=ch, head=head, det_c2=c2)
    named = dict(model.named_modules())
    for name, layer in onnx_layers(path).items():
        if name not in named:
            sys.exit('%s: no module %s in YoloDet' % (path, name))
        parent, attr = name.rsplit('.', 1)
        old = named[name]
        if layer[0] == 'conv':
            _, w, b, attrs = layer
            groups = attrs.get('group', 1)
            new = nn.Conv2d(w.shape[1] * groups, w.shape[0], tuple(w.shape[2:]), old.stride, old.padding,
                            groups=groups, bias=b is not None)
            if with_weights or not old.weight.requires_grad:  # the DFL projection is fixed, not learned
                new.weight.data.copy_(w)
                if b is not None:
                    new.bias.data.copy_(b)
            new.weight.requires_grad_(old.weight.requires_grad)
        else:
            new = nn.BatchNorm2d(layer[1][0].shape[0], eps=old.eps, momentum=old.momentum)
            if with_weights:
                for t, v in zip((new.weight.data, new.bias.data, new.running_mean, new.running_var), layer[1]):
                    t.copy_(v)
        holder = named[parent]
        if isinstance(holder, (nn.Sequential, nn.ModuleList)):
            holder[int(attr)] = new
        else:
            setattr(holder, attr, new)
    model.model[-1].stride = torch.tensor([8.0, 16.0, 32.0])
    return model


def c2f_forward(self, x):
    y = self.cv1(x)
    b = self.m[0].cv1.conv.in_channels
    y = list(y.split((y.shape[1] - b, b), 1))
    y.extend(m(y[-1]) for m in self.m)
    return self.cv2(torch.cat(y, 1))


C2f.forward = c2f_forward


def head_loss(feats, teacher_feats, reg_max=16):
    loss = 0.0
    for s, t in zip(feats, teacher_feats):
        b, _, h, w = s.shape
        ps = s[:, :4 * reg_max].reshape(b, 4, reg_max, h, w).log_softmax(2)
        pt = t[:, :4 * reg_max].reshape(b, 4, reg_max, h, w).softmax(2)
        weight = t[:, 4 * reg_max:].sigmoid().amax(1, keepdim=True).unsqueeze(1)
        loss = loss + ((pt * (pt.clamp_min(1e-9).log() - ps)).sum(2, keepdim=True) * weight).sum() / b
        loss = loss + F.binary_cross_entropy_with_logits(s[:, 4 * reg_max:], t[:, 4 * reg_max:].sigmoid(),
                                                         reduction='sum') / b
    return loss / 10


def decoded(det, feats):
    b = feats[0].shape[0]
    box, cls = torch.cat([f.reshape(b, det.no, -1) for f in feats], 2).split((4 * det.reg_max, det.nc), 1)
    anchors, strides = (t.transpose(0, 1) for t in make_anchors(feats, det.stride, 0.5))
    bins = torch.arange(det.reg_max, dtype=torch.float).view(1, 1, -1, 1)
    dist = (box.reshape(b, 4, det.reg_max, -1).softmax(2) * bins).sum(2)
    xywh = dist2bbox(dist, anchors.unsqueeze(0), xywh=True, dim=1) * strides
    return torch.cat((xywh, cls.sigmoid()), 1)


def decoded_loss(det, feats, teacher_feats):
    s, t = decoded(det, feats), decoded(det, teacher_feats)
    weight = t[:, 4:].amax(1)
    cls = F.binary_cross_entropy(s[:, 4:].clamp(1e-6, 1 - 1e-6), t[:, 4:], reduction='sum')
    r2 = ((s[:, :4] - t[:, :4]) / t[:, 2:4].mean(1, keepdim=True).clamp_min(1.0)) ** 2
    return (cls + ((r2 / (1 + r2)).sum(1) * weight).sum()) / s.shape[0] / 10


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('original')
    ap.add_argument('pruned')
    ap.add_argument('--mode', choices=('labels', 'scratch', 'distil'), default='distil')
    ap.add_argument('--steps', type=int, default=400)
    ap.add_argument('--lr', type=float, default=5e-4)
    ap.add_argument('--pool', type=int, default=0)
    ap.add_argument('--data-seed', type=int, default=0)
    ap.add_argument('--val', type=int, default=T.N_VAL)
    ap.add_argument('--no-flip', action='store_true')
    ap.add_argument('--no-ema', action='store_true')
    ap.add_argument('--loss', choices=('head', 'decoded'), default='head')
    ap.add_argument('--eval-at', default='15,50,200,400,800,1600')
    a = ap.parse_args()
    torch.set_num_threads(1)
    data = argparse.Namespace()
    data.train_imgs, _, data.train_boxes = T.synthdet.generate('train', a.pool or T.N_TRAIN, a.data_seed, T.SIZE)
    data.val_imgs, _, data.val_boxes = T.synthdet.generate('val', a.val, a.data_seed, T.SIZE)
    teacher = rebuild(a.original)
    original = T.det_evaluate(teacher, data.val_imgs, data.val_boxes)[1]

    def report(model, label):
        m50, m5095, _ = T.det_evaluate(model, data.val_imgs, data.val_boxes)
        print('%s: mAP50 %.4f mAP50-95 %.4f share %.1f%%' % (label, m50, m5095, 100 * m5095 / original), flush=True)

    report(teacher, 'original')
    torch.manual_seed(11)
    student = rebuild(a.pruned, with_weights=a.mode != 'scratch')
    det = student.model[-1]
    if a.mode == 'scratch':
        with torch.no_grad():  # Detect.bias_init, as make_trained.py
            for box, cls, s in zip(det.cv2, det.cv3, det.stride):
                box[-1].bias.fill_(1.0)
                cls[-1].bias.fill_(math.log(5 / T.NC / (T.SIZE / float(s)) ** 2))
    report(student, 'pruned, step 0')
    teacher.train()
    for m in teacher.modules():  # the original's statistics, its training-mode (per-level) outputs
        if isinstance(m, nn.BatchNorm2d):
            m.eval()
    loss_fn = T.DetLoss(student)
    opt = T.make_optimizer(student, a.lr, 5e-4)
    ema = T.EMA(student)
    rng = np.random.default_rng(11)
    n = len(data.train_imgs)
    perm, pos, t0 = rng.permutation(n), 0, time.time()
    eval_at = {int(s) for s in a.eval_at.split(',')} | {a.steps}
    for step in range(a.steps):
        if pos + 32 > n:
            perm, pos = rng.permutation(n), 0
        idx = perm[pos:pos + 32]
        pos += 32
        flips = rng.uniform(size=32) < 0.5
        x, labels, boxes, mask = T.det_batch(data, idx, flips & (not a.no_flip))
        for g in opt.param_groups:
            g['lr'] = T.lr_at(step, a.steps, a.lr, 200 if a.mode == 'scratch' else 50)
        student.train()
        feats = student(x)
        if a.mode == 'distil':
            with torch.no_grad():
                target = teacher(x)
            loss = head_loss(feats, target) if a.loss == 'head' else decoded_loss(det, feats, target)
        else:
            loss = loss_fn(feats, labels, boxes, mask)[0]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(student.parameters(), 10.0)
        opt.step()
        ema.update(student)
        if step + 1 in eval_at:
            report(student if a.no_ema else ema.ema, 'step %d (%d images seen, %.0f s)'
                   % (step + 1, 32 * (step + 1), time.time() - t0))


if __name__ == '__main__':
    main()
