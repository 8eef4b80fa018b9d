#!/usr/bin/python3
"""Full-size, random-init dense-prediction models for measured benchmark figures (nothing here is committed).

    /usr/bin/python3 bench/dense-models.py OUT_DIR [--bn-kept] [--only NAME[,NAME...]]

Writes into OUT_DIR (static shapes, batch 1, opset 13 unless stated; default eval export, i.e. BatchNorm folded
into the convs by torch's constant folding, unless stated):

  yolov8n-opset12.onnx, yolov8n-opset17.onnx  the detector of fixtures/make_dense.py at yolov8n scale (yolov8.yaml
        with depth 0.33, width 0.25: channels 16/32/64/128/256, C2f n = 1/2/2/1, neck 128/64/64/128/128/256,
        nc 80, reg_max 16, ultralytics' Detect widths c2 = 64, c3 = 80), Conv+BN fused in torch as ultralytics
        does, then exported with do_constant_folding=True; images [1,3,640,640] -> output0 [1,84,8400]
  deeplabv3_mobilenet_v3_large.onnx  torchvision deeplabv3_mobilenet_v3_large(weights=None,
        weights_backbone=None, num_classes=21), aux_loss None; input [1,3,520,520] -> out [1,21,520,520]
  lraspp_mobilenet_v3_large.onnx     torchvision lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
        num_classes=21); 520x520
  fcn_resnet50.onnx                  torchvision fcn_resnet50(weights=None, weights_backbone=None,
        aux_loss=False, num_classes=21); 520x520 (the export takes a minute or more)
  unet_convt.onnx, unet_up.onnx      the UNet of fixtures/make_dense.py at the classic width 64/128/256/512/1024
        (4 downsamplings), ConvTranspose2d or bilinear-upsample + conv decoder, 2 classes; 256x256

With --bn-kept, each model is also written BN kept (`<name>-bnkept.onnx`: training=PRESERVE,
do_constant_folding=False, BatchNormalization nodes with the torch state_dict names; for the detector, the
unfused model at opset 13). Weights are random (seeded): BN gamma/beta as in the fixtures and running
statistics from two train-mode forwards at a small resolution, so activations stay finite and channels differ.
A checksum line per file (sha256 of the ONNX bytes, params, MACs from forward hooks) is printed.
"""

import argparse
import copy
import hashlib
import os
import sys
import time

import torch
import torch.nn as nn
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'fixtures'))
import make_dense as md  # noqa: E402  (sets torch to one thread, deterministic)

YOLOV8N = dict(nc=80, ch=(16, 32, 32, 64, 64, 128, 128, 256, 256, 256), head=(128, 64, 64, 128, 128, 256),
               n=(1, 2, 2, 1))


def randomise(model, seed, calib_chw):
    """BN gamma = sign * 10**U(-2, 0.2), beta ~ N(0, 0.2); running stats from 2 train-mode forwards (batch 2)
    at calib_chw (cumulative average); Dropout off during calibration."""
    g = torch.Generator().manual_seed(seed + 1000)
    with torch.no_grad():
        bns = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
        for bn in bns:
            c = bn.num_features
            sign = torch.where(torch.rand(c, generator=g) < 0.12, -1.0, 1.0)
            bn.weight.copy_(10.0 ** (torch.rand(c, generator=g) * 2.2 - 2.0) * sign)
            bn.bias.copy_(torch.randn(c, generator=g) * 0.2)
            bn.reset_running_stats()
            bn.momentum = None
        model.train()
        for m in model.modules():
            if isinstance(m, nn.Dropout):
                m.eval()
        for _ in range(2):
            model(torch.randn((2,) + tuple(calib_chw), generator=g))
        for bn in bns:
            bn.momentum = 0.1
            bn.num_batches_tracked.zero_()
    model.eval()


def export(model, x, path, opset, input_names, output_names, bn_kept):
    t = time.time()
    kwargs = dict(opset_version=opset, input_names=input_names, output_names=output_names)
    if bn_kept:
        kwargs.update(training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)
    else:
        kwargs.update(do_constant_folding=True)
    model.eval()
    with torch.no_grad():
        torch.onnx.export(model, x, path, **kwargs)
    with open(path, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print('  %-40s %12d bytes  %5.1f s  sha256 %s' % (os.path.basename(path), os.path.getsize(path),
                                                     time.time() - t, digest[:16]), flush=True)


def describe(name, model, chw):
    params = sum(p.numel() for p in model.parameters())
    macs = sum(l['macs'] for l in md.count_macs(model, chw))
    print('%s: params %d, MACs %d at %s' % (name, params, macs, 'x'.join(map(str, chw))), flush=True)


def yolo(out, bn_kept):
    torch.manual_seed(0)
    model = md.YoloDet(**YOLOV8N)
    randomise(model, 0, (3, 160, 160))
    chw = (3, 640, 640)
    x = torch.zeros((1,) + chw)
    describe('yolov8n', model, chw)
    if bn_kept:
        kept = md.yolo_prepare_export(copy.deepcopy(model), x, dynamic=False)
        export(kept, x, os.path.join(out, 'yolov8n-bnkept.onnx'), 13, ['images'], ['output0'], True)
    fused = md.yolo_prepare_export(md.yolo_fuse(copy.deepcopy(model)), x, dynamic=False)
    for opset in (12, 17):
        export(fused, x, os.path.join(out, 'yolov8n-opset%d.onnx' % opset), opset, ['images'], ['output0'], False)


def seg(out, name, ctor, bn_kept, chw=(3, 520, 520)):
    torch.manual_seed(0)
    model = md.OutOnly(ctor())
    randomise(model, 0, (3, 128, 128))
    describe(name, model, chw)
    x = torch.zeros((1,) + chw)
    export(model, x, os.path.join(out, name + '.onnx'), 13, ['input'], ['out'], False)
    if bn_kept:
        export(model, x, os.path.join(out, name + '-bnkept.onnx'), 13, ['input'], ['out'], True)


def unet(out, mode, bn_kept):
    torch.manual_seed(0)
    model = md.UNet(mode, widths=(64, 128, 256, 512, 1024), n_classes=2)
    randomise(model, 0, (3, 128, 128))
    chw = (3, 256, 256)
    name = 'unet_' + mode
    describe(name, model, chw)
    x = torch.zeros((1,) + chw)
    export(model, x, os.path.join(out, name + '.onnx'), 13, ['input'], ['out'], False)
    if bn_kept:
        export(model, x, os.path.join(out, name + '-bnkept.onnx'), 13, ['input'], ['out'], True)


JOBS = [
    ('yolov8n', lambda out, k: yolo(out, k)),
    ('deeplabv3_mobilenet_v3_large', lambda out, k: seg(out, 'deeplabv3_mobilenet_v3_large', lambda: (
        torchvision.models.segmentation.deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                     num_classes=21)), k)),
    ('lraspp_mobilenet_v3_large', lambda out, k: seg(out, 'lraspp_mobilenet_v3_large', lambda: (
        torchvision.models.segmentation.lraspp_mobilenet_v3_large(weights=None, weights_backbone=None,
                                                                  num_classes=21)), k)),
    ('fcn_resnet50', lambda out, k: seg(out, 'fcn_resnet50', lambda: (
        torchvision.models.segmentation.fcn_resnet50(weights=None, weights_backbone=None, aux_loss=False,
                                                     num_classes=21)), k)),
    ('unet_convt', lambda out, k: unet(out, 'convt', k)),
    ('unet_up', lambda out, k: unet(out, 'up', k)),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('out', help='output directory (created)')
    ap.add_argument('--bn-kept', action='store_true', help='also write <name>-bnkept.onnx')
    ap.add_argument('--only', default='', help='comma-separated subset of: ' + ', '.join(n for n, _ in JOBS))
    args = ap.parse_args()
    only = [s for s in args.only.split(',') if s]
    unknown = [s for s in only if s not in [n for n, _ in JOBS]]
    if unknown:
        ap.error('unknown model(s): ' + ', '.join(unknown))
    os.makedirs(args.out, exist_ok=True)
    print('torch', torch.__version__, 'torchvision', torchvision.__version__, flush=True)
    for name, job in JOBS:
        if not only or name in only:
            job(args.out, args.bn_kept)


if __name__ == '__main__':
    main()
