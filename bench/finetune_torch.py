#!/usr/bin/python3
"""PyTorch peer of `adapruner finetune` for accuracy: fine-tunes the same ONNX network (rebuilt by
bench/onnx_torch.py) on a CIFAR-style image-folder tar with adapruner's recipe, and reports test accuracy per
epoch. It answers whether a fine-tuning figure is the recipe's or the trainer's: the same start, the same
recipe, another framework's autograd, optimizer and data path.

The recipe, as `adapruner finetune --augment flip --nesterov` runs it: a seeded shuffle per epoch, incomplete
last batches dropped, horizontal flip with p 0.5, cross-entropy, SGD (momentum 0.9, optionally Nesterov) with
weight decay on conv/linear weights only, cosine decay per step from --lr to 0, BN in train mode with the
momentum the ONNX node names; evaluation with BN's running statistics. Preprocessing is the cifar10 preset
(scale 1/255, ImageNet mean and std). Class indices follow the sorted folder names, as in adapruner.

usage: finetune_torch.py MODEL.onnx DATA.tar [--epochs 2 --batch 128 --lr 0.05 --nesterov --seed 0
       --threads 2 --augment flip|none --limit N --out FT.onnx --sam RHO --fade-plan PLAN.json --fade 0.25
       --optimizer sgd|adamw]
Prints one JSON line per epoch on stderr and the final result as one JSON line on stdout. --out writes the
fine-tuned weights and running statistics into a copy of MODEL, for `adapruner eval` to score the same way as
its own results.

--fade-plan is an experiment in another fine-tuning schedule: MODEL is then the unpruned network, and the channels
PLAN removes are faded out instead of cut before training. Each removed channel's BN output is multiplied by a
factor that falls linearly from 1 to 0 over the first --fade fraction of the steps, and stays 0 afterwards; with
the factor at 0 the network computes what the pruned one does, so test accuracy is reported at 0 ("pruned").
"""
import argparse
import io
import json
import math
import os
import sys
import tarfile
import time

import numpy as np
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper
from PIL import Image

from onnx_torch import OnnxNet

MEAN = np.array([0.485, 0.456, 0.406], dtype=np.float32)
STD = np.array([0.229, 0.224, 0.225], dtype=np.float32)


class OneLineErrors(argparse.ArgumentParser):
    def error(self, message):
        self.exit(2, f'finetune_torch.py: {message}\n')


def parse_args():
    ap = OneLineErrors(description=__doc__.split('\n\n')[0])
    ap.add_argument('model')
    ap.add_argument('data', help='tar (or folder) with <root>/train/<class>/*.jpg and <root>/test/<class>/*.jpg')
    ap.add_argument('--epochs', type=int, default=2)
    ap.add_argument('--batch', type=int, default=128)
    ap.add_argument('--lr', type=float, default=0.05)
    ap.add_argument('--momentum', type=float, default=0.9)
    ap.add_argument('--nesterov', action='store_true')
    ap.add_argument('--optimizer', choices=['sgd', 'adamw'], default='sgd',
                    help="adamw: torch's AdamW (beta1 --momentum, decay on conv/linear weights only)")
    ap.add_argument('--weight-decay', type=float, default=5e-4)
    ap.add_argument('--seed', type=int, default=0)
    ap.add_argument('--threads', type=int, default=2)
    ap.add_argument('--augment', choices=['flip', 'none'], default='flip')
    ap.add_argument('--limit', type=int, help='use N random training and N random test images (a smoke run)')
    ap.add_argument('--out', help='write the fine-tuned network here as ONNX')
    ap.add_argument('--sam', type=float, default=0, metavar='RHO', help='sharpness-aware minimisation with this radius (two passes per step)')
    ap.add_argument('--fade-plan', help="an adapruner plan (prune --plan-out) for MODEL: fade its removed channels out")
    ap.add_argument('--fade', type=float, default=0.25, help='fraction of the steps over which they fade (default 0.25)')
    args = ap.parse_args()
    for name in ('epochs', 'batch', 'threads'):
        if getattr(args, name) < 1:
            ap.error(f'--{name} must be a positive integer')
    if not args.lr > 0:
        ap.error('--lr must be positive')
    if args.sam < 0:
        ap.error('--sam must not be negative')
    if not 0 < args.fade <= 1:
        ap.error('--fade must be in (0, 1]')
    if args.fade_plan and args.out:
        ap.error('--out cannot be used with --fade-plan: the result is the unpruned graph with channels at zero')
    for path in [args.model, args.data] + ([args.fade_plan] if args.fade_plan else []):
        if not os.path.exists(path):
            ap.error(f'{path}: no such file')
    if args.out and os.path.exists(args.out) and any(os.path.samefile(args.out, p) for p in (args.model, args.data)):
        ap.error(f'{args.out}: the output is one of the inputs')
    return args


def list_files(path):
    """(name inside the data, reader) of every file of an image-folder tar or folder, listed once for all splits."""
    entries = []
    if os.path.isdir(path):
        for root, _, files in os.walk(path):
            for f in files:
                full = os.path.join(root, f)
                entries.append((os.path.relpath(full, path), lambda full=full: open(full, 'rb').read()))
        return entries
    try:
        tar = tarfile.open(path)
    except tarfile.TarError as e:
        fail(f'{path}: not a folder or a tar of one ({type(e).__name__})')
    return [(m.name, lambda m=m: tar.extractfile(m).read()) for m in tar.getmembers() if m.isfile()]


def read_split(path, entries, split):
    """(images N x 3 x H x W float32, preprocessed; labels int64) of one split; labels follow its sorted class folders."""
    picked = []
    for name, read in entries:
        parts = name.split('/')
        if len(parts) >= 3 and parts[-3] == split and name.lower().endswith(('.jpg', '.jpeg', '.png')):
            picked.append((parts[-2], name, read))
    if not picked:
        fail(f'{path}: no images under {split}/<class>/')
    classes = {c: k for k, c in enumerate(sorted({c for c, _, _ in picked}))}
    picked.sort(key=lambda e: e[1])
    images = np.stack([decode(f'{path}: {name}', read) for _, name, read in picked])
    images = ((images / 255.0 - MEAN) / STD).transpose(0, 3, 1, 2)
    labels = np.array([classes[c] for c, _, _ in picked], dtype=np.int64)
    return torch.from_numpy(np.ascontiguousarray(images)), torch.from_numpy(labels)


def decode(name, read):
    try:
        return np.asarray(Image.open(io.BytesIO(read())).convert('RGB'), dtype=np.float32)
    except OSError:
        fail(f'{name}: not a decodable image')


class Fader:
    """Scales the BN output of every channel a plan removes by `alpha` (1: unpruned, 0: computes the pruned net)."""

    def __init__(self, net, plan_path):
        try:
            with open(plan_path) as f:
                groups = json.load(f)['groups']
            removed = {g['anchor']: g for g in groups if 'frozen' not in g and len(g['keep']) < g['channels']}
            for g in removed.values():
                if not all(isinstance(k, int) and 0 <= k < g['channels'] for k in g['keep']):
                    raise ValueError(f"group {g.get('id')}: a kept channel outside 0..{g['channels'] - 1}")
        except (OSError, ValueError, KeyError, TypeError) as e:
            fail(f'{plan_path}: not an adapruner plan ({type(e).__name__}: {e})')
        self.alpha = 1.0
        readers = {}
        for n in net.graph.node:
            for name in n.input:
                readers.setdefault(name, []).append(n)
        masks = {}
        for anchor, g in removed.items():
            # Only when the BN is the anchor's one reader does a zero factor make the network the pruned one.
            bn = readers.get(anchor, [])
            if len(bn) != 1 or bn[0].op_type != 'BatchNormalization':
                fail(f'{plan_path}: group {g.get("id")} ({anchor}) is not read by one BatchNormalization alone; --fade-plan fades BN outputs only')
            bn = bn[0]
            width = net.get({}, bn.input[1]).numel()
            if width != g['channels']:
                fail(f'{plan_path}: group {g.get("id")} ({anchor}) has {g["channels"]} channels, the model {width}; '
                     'the plan is for another model (--fade-plan needs the unpruned one)')
            keep = torch.zeros(g['channels'])
            keep[g['keep']] = 1
            masks[bn.output[0]] = keep
        net.nodes = [(n, self.wrap(run, masks[n.output[0]]) if n.output[0] in masks else run, a) for n, run, a in net.nodes]

    def wrap(self, run, keep):
        def faded(net, a, i):
            return run(net, a, i) * (keep + (1 - keep) * self.alpha)[None, :, None, None]
        return faded


def accuracy(net, images, labels, batch=500):
    net.eval()
    correct = 0
    with torch.no_grad():
        for s in range(0, len(labels), batch):
            correct += (net(images[s:s + batch]).argmax(1) == labels[s:s + batch]).sum().item()
    return correct / len(labels)


def scores(net, test, fader):
    """Test accuracy; while fading, of the pruned network (factor 0) and of the network as it now runs."""
    if not fader:
        return {'testAccuracy': accuracy(net, *test)}
    alpha, fader.alpha = fader.alpha, 0.0
    pruned = accuracy(net, *test)
    fader.alpha = alpha
    return {'testAccuracy': pruned, 'alpha': alpha, 'asRun': accuracy(net, *test) if alpha > 0 else pruned}


def sharpness_aware_gradient(net, opt, x, y, rho):
    """SAM (Foret et al. 2021): replaces the gradients by those at w + rho * g / |g|, the worst nearby point to
    first order. BN's running statistics are restored after that second pass, so they move once per step."""
    params = [p for g in opt.param_groups for p in g['params']]
    with torch.no_grad():
        norm = torch.sqrt(sum((p.grad ** 2).sum() for p in params)) + 1e-12
        shifts = [rho * p.grad / norm for p in params]
        for p, e in zip(params, shifts):
            p.add_(e)
    stats = {k: v.clone() for k, v in net.consts.items() if v.is_floating_point()}
    opt.zero_grad(set_to_none=True)
    F.cross_entropy(net(x), y).backward()
    with torch.no_grad():
        for p, e in zip(params, shifts):
            p.sub_(e)
        for k, v in stats.items():
            net.consts[k].copy_(v)


def train_epoch(net, opt, data, args, epoch, total_steps, fader=None):
    images, labels = data
    net.train()
    gen = torch.Generator().manual_seed(args.seed * 1000 + epoch)
    order = torch.randperm(len(labels), generator=gen)
    steps = len(labels) // args.batch
    loss_sum = 0.0
    for s in range(steps):
        step = epoch * steps + s
        for g in opt.param_groups:
            g['lr'] = 0.5 * args.lr * (1 + math.cos(math.pi * step / total_steps))
        if fader:
            fader.alpha = max(0.0, 1 - step / (args.fade * total_steps))
        idx = order[s * args.batch:(s + 1) * args.batch]
        x = images[idx]
        if args.augment == 'flip':
            flip = torch.rand(len(idx), generator=gen) < 0.5
            x = torch.where(flip[:, None, None, None], x.flip(3), x)
        opt.zero_grad(set_to_none=True)
        loss = F.cross_entropy(net(x), labels[idx])
        loss.backward()
        if args.sam:
            sharpness_aware_gradient(net, opt, x, labels[idx], args.sam)
        opt.step()
        loss_sum += loss.item()
        if s % 50 == 0:
            print(f'epoch {epoch + 1} step {s}/{steps} loss {loss_sum / (s + 1):.4f}', file=sys.stderr, flush=True)
    return loss_sum / steps


def write_onnx(net, model_path, out):
    model = onnx.load(model_path)
    for t in model.graph.initializer:
        if t.name in net.trainable:
            value = net.p[t.name.replace('.', '__')].detach().numpy()
        else:
            value = net.consts[t.name].numpy()
        t.CopyFrom(numpy_helper.from_array(value.astype(numpy_helper.to_array(t).dtype), t.name))
    onnx.checker.check_model(model)
    tmp = out + '.partial'
    try:
        onnx.save(model, tmp)
        os.replace(tmp, out)
    finally:
        if os.path.exists(tmp):
            os.remove(tmp)


def fail(message):
    print(f'finetune_torch.py: {message}', file=sys.stderr)
    sys.exit(2)


def main():
    args = parse_args()
    torch.set_num_threads(args.threads)
    started = time.time()
    try:
        net = OnnxNet(args.model)
    except Exception as e:  # onnx's DecodeError and friends share no base class; any of them means a bad model file
        fail(str(e) if str(e).startswith(args.model) else f'{args.model}: {e}')
    fader = Fader(net, args.fade_plan) if args.fade_plan else None
    files = list_files(args.data)
    train, test = read_split(args.data, files, 'train'), read_split(args.data, files, 'test')
    if args.limit:
        gen = torch.Generator().manual_seed(args.seed)
        train, test = [(x[i], y[i]) for x, y in (train, test) for i in [torch.randperm(len(y), generator=gen)[:args.limit]]]
    if len(train[1]) < args.batch:
        fail(f'{args.data}: {len(train[1])} training images, fewer than one batch of {args.batch}')
    if args.optimizer == 'adamw':
        opt = torch.optim.AdamW(net.decay_groups(args.weight_decay), lr=args.lr, betas=(args.momentum, 0.999))
    else:
        opt = torch.optim.SGD(net.decay_groups(args.weight_decay), lr=args.lr, momentum=args.momentum,
                              nesterov=args.nesterov)
    history = [{'epoch': 0, **scores(net, test, fader)}]
    print(json.dumps(history[-1]), file=sys.stderr, flush=True)
    total_steps = args.epochs * (len(train[1]) // args.batch)
    for epoch in range(args.epochs):
        loss = train_epoch(net, opt, train, args, epoch, total_steps, fader)
        history.append({'epoch': epoch + 1, 'trainLoss': loss, **scores(net, test, fader)})
        print(json.dumps(history[-1]), file=sys.stderr, flush=True)
    if args.out:
        write_onnx(net, args.model, args.out)
    print(json.dumps({'model': args.model, 'seed': args.seed, 'lr': args.lr, 'optimizer': args.optimizer,
                      'nesterov': args.nesterov, 'epochs': args.epochs,
                      'batch': args.batch, 'augment': args.augment, **({'sam': args.sam} if args.sam else {}),
                      **({'fadePlan': args.fade_plan, 'fade': args.fade} if fader else {}),
                      'history': history, 'seconds': time.time() - started}))


if __name__ == '__main__':
    main()
