#!/usr/bin/python3
"""Full-size, random-init transformers for measured benchmark figures (nothing here is committed).

    /usr/bin/python3 bench/transformer-models.py OUT_DIR [--only NAME[,NAME...]]

Writes into OUT_DIR (static shapes, batch 1, except BERT's sequence dim):

  vit_b_16.onnx, vit_b_16-opset17.onnx  torchvision vit_b_16(weights=None) (12 layers, hidden 768, 12 heads,
        MLP 3072, 1000 classes); input [1,3,224,224] -> logits [1,1000]; opset 14 (LayerNorm decomposed) and 17
        (LayerNormalization)
  swin_t.onnx, swin_t-opset17.onnx      torchvision swin_t(weights=None) (embed 96, depths 2/2/6/2, heads
        3/6/12/24, window 7); input [1,3,224,224] -> logits [1,1000]; opset 14 and 17
  bert_base.onnx, bert_base-opset17.onnx  fixtures/make_transformers.py's BertLike at BERT-base size (vocab 30522,
        512 positions, 2 token types, 12 layers, d 768, 12 heads, FFN 3072, GELU, post-norm, pooler + 2 classes);
        input_ids and token_type_ids int64 [1, sequence] exported at sequence 128 with the sequence dim dynamic
        ('sequence'); logits [1,2]; opset 14 and 17

The weights are torch's default init, then fixtures/make_transformers.randomise (per-head and per-MLP-neuron
scales, LayerNorm gamma spread, last layer rescaled to logits of std 2 on two seeded random inputs), so heads and
neurons differ in importance. As for the fixtures, every export and forward runs under torch.enable_grad() with
requires_grad parameters, so torch 1.13's fast paths (torch._transformer_encoder_layer_fwd,
torch._native_multi_head_attention) are not taken and the regular path is exported. vit_b_16 is about 350 MB
and bert_base about 440 MB on disk; the whole run takes a few minutes on one thread. A checksum line per file
(sha256 of the ONNX bytes) and the params / MACs (fixtures' hook rule: macs = linear + attention + conv) are
printed.
"""

import argparse
import hashlib
import os
import sys
import time

import torch
import torchvision

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), 'fixtures'))
import make_transformers as mt  # noqa: E402  (sets torch to one thread, deterministic)


def export(model, inputs, path, opset, input_names, dynamic_axes=None):
    t = time.time()
    mt.export(model, inputs, path, opset, input_names, ['logits'], dynamic_axes)
    with open(path, 'rb') as f:
        digest = hashlib.sha256(f.read()).hexdigest()
    print('  %-28s %12d bytes  %6.1f s  sha256 %s' % (os.path.basename(path), os.path.getsize(path),
                                                      time.time() - t, digest[:16]), flush=True)


def describe(name, model, inputs):
    macs, _ = mt.count_macs(model, inputs)
    params = sum(p.numel() for p in model.parameters())
    print('%s: params %d, MACs %d (linear %d, attention %d, conv %d) at %s' % (
        name, params, macs['macs'], macs['macsLinear'], macs['macsAttention'], macs['macsConv'],
        ', '.join('x'.join(map(str, x.shape)) for x in inputs)), flush=True)


def image_model(out, name, ctor, head):
    torch.manual_seed(0)
    model = ctor()
    mt.randomise(model, 0, head(model), lambda g: [torch.randn((2, 3, 224, 224), generator=g)])
    x = [torch.zeros((1, 3, 224, 224))]
    describe(name, model, x)
    export(model, x, os.path.join(out, name + '.onnx'), 14, ['input'])
    export(model, x, os.path.join(out, name + '-opset17.onnx'), 17, ['input'])


def bert_base(out):
    torch.manual_seed(0)
    model = mt.BertLike(vocab=30522, max_len=512, type_vocab=2, d=768, heads=12, ffn=3072, layers=12, classes=2)
    mt.randomise(model, 0, model.classifier, lambda g: [torch.randint(0, 30522, (2, 128), generator=g),
                                                         torch.randint(0, 2, (2, 128), generator=g)])
    x = mt.bert_inputs(1, 128, 0)
    describe('bert_base', model, x)
    dyn = {'input_ids': {1: 'sequence'}, 'token_type_ids': {1: 'sequence'}}
    for opset, suffix in ((14, ''), (17, '-opset17')):
        export(model, x, os.path.join(out, 'bert_base%s.onnx' % suffix), opset, ['input_ids', 'token_type_ids'],
               dyn)


JOBS = [
    ('vit_b_16', lambda out: image_model(out, 'vit_b_16', lambda: torchvision.models.vit_b_16(weights=None),
                                         lambda m: m.heads.head)),
    ('swin_t', lambda out: image_model(out, 'swin_t', lambda: torchvision.models.swin_t(weights=None),
                                       lambda m: m.head)),
    ('bert_base', bert_base),
]


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    ap.add_argument('out', help='output directory (created)')
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
            job(args.out)


if __name__ == '__main__':
    main()
