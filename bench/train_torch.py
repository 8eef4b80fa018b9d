#!/usr/bin/python3
"""PyTorch side of bench/train.ts: the same network, rebuilt from the ONNX file's weights, trained with the
same batch, threads, loss and optimizer (SGD momentum 0.9, weight decay 5e-4 on conv/linear weights only,
BN in train mode). Prints one JSON line: images/s, peak RSS, and which BLAS (library and OpenBLAS kernel)
and which convolution backend torch used, so that bench/train.ts can refuse a ratio against the reference BLAS.

The network is an interpreter over the ONNX graph (torch functional ops per node), so any model the bench uses
runs without a hand-written torch class; constant subgraphs (shapes, pads) are tiny int ops.

usage: train_torch.py MODEL.onnx --batch 128 --threads 2 --steps 10 --warmup 2 [--profile FILE]
"""
import argparse
import ctypes
import json
import os
import resource
import time

import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

ap = argparse.ArgumentParser()
ap.add_argument('model')
ap.add_argument('--batch', type=int, default=128)
ap.add_argument('--threads', type=int, default=2)
ap.add_argument('--steps', type=int, default=10)
ap.add_argument('--warmup', type=int, default=2)
ap.add_argument('--profile', help='write per-op self CPU times of one profiled step (torch.autograd.profiler) as JSON here')
args = ap.parse_args()
torch.set_num_threads(args.threads)


def blas_info():
    """The BLAS that torch's libblas.so.3 resolves to (Debian's alternatives decide), and OpenBLAS's kernel."""
    path = None
    with open('/proc/self/maps') as maps:
        for line in maps:
            name = line.split()[-1]
            if 'libblas.so' in name or 'libopenblas' in name:
                path = os.path.realpath(name)
                if 'libblas.so' in name:
                    break
    info = {'library': path}
    try:
        lib = ctypes.CDLL(path or 'libblas.so.3')
        lib.openblas_get_corename.restype = ctypes.c_char_p
        lib.openblas_get_config.restype = ctypes.c_char_p
        info.update(kind='openblas', core=lib.openblas_get_corename().decode(), config=lib.openblas_get_config().decode())
    except (OSError, AttributeError):
        info['kind'] = 'openblas' if path and 'openblas' in path else ('reference' if path and '/blas/' in path else 'unknown')
    return info


def conv_backend(x, w, stride, padding, dilation, groups):
    try:
        return str(torch._C._select_conv_backend(x, w, None, stride, padding, dilation, False, [0, 0], groups)).split('.')[-1]
    except (AttributeError, RuntimeError, TypeError):
        return 'unknown'


conv_backends = {}

model = onnx.load(args.model)
g = model.graph


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


PARAM_SLOTS = {'Conv': [1, 2], 'Gemm': [1, 2], 'BatchNormalization': [1, 2]}
inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in g.initializer}
trainable = set()
for n in g.node:
    for s in PARAM_SLOTS.get(n.op_type, []):
        if s < len(n.input) and n.input[s] in inits and inits[n.input[s]].is_floating_point():
            trainable.add(n.input[s])


class OnnxNet(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.p = torch.nn.ParameterDict({k.replace('.', '__'): torch.nn.Parameter(v) for k, v in inits.items() if k in trainable})
        self.consts = {k: v for k, v in inits.items() if k not in trainable}

    def get(self, env, name):
        if name in env:
            return env[name]
        if name in trainable:
            return self.p[name.replace('.', '__')]
        return self.consts[name]

    def forward(self, x):
        env = {g.input[0].name: x}
        for n in g.node:
            a = attrs(n)
            i = [self.get(env, k) if k else None for k in n.input]
            op = n.op_type
            if op == 'Conv':
                p = a.get('pads', [0, 0, 0, 0])
                if not conv_backends.get('recorded'):
                    b = conv_backend(i[0], i[1], a.get('strides', [1, 1]), (p[0], p[1]), a.get('dilations', [1, 1]), a.get('group', 1))
                    conv_backends[b] = conv_backends.get(b, 0) + 1
                y = F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, a.get('strides', [1, 1]), (p[0], p[1]), a.get('dilations', [1, 1]), a.get('group', 1))
            elif op == 'BatchNormalization':
                y = F.batch_norm(i[0], i[3], i[4], i[1], i[2], True, 1 - a.get('momentum', 0.9), a.get('epsilon', 1e-5))
            elif op == 'Relu':
                y = F.relu(i[0])
            elif op == 'Clip':
                y = F.hardtanh(i[0], float(i[1]), float(i[2]))
            elif op == 'Add':
                y = i[0] + i[1]
            elif op == 'Sub':
                y = i[0] - i[1]
            elif op == 'Mul':
                y = i[0] * i[1]
            elif op == 'Constant':
                y = torch.from_numpy(numpy_helper.to_array(a['value']).copy())
            elif op == 'Shape':
                y = torch.tensor(i[0].shape, dtype=torch.int64)
            elif op == 'Gather':
                y = torch.index_select(i[0], a.get('axis', 0), i[1].reshape(-1)).reshape(i[1].shape)
            elif op == 'Unsqueeze':
                y = i[0]
                for ax in sorted(i[1].tolist()):
                    y = y.unsqueeze(ax)
            elif op == 'Concat':
                y = torch.cat(i, a['axis'])
            elif op == 'ConstantOfShape':
                v = numpy_helper.to_array(a['value']) if 'value' in a else [0.0]
                y = torch.full(tuple(i[0].tolist()), float(v[0]), dtype=torch.int64 if 'int' in str(getattr(v, 'dtype', '')) else torch.float32)
            elif op == 'Reshape':
                shape = [d if d != 0 else i[0].shape[k] for k, d in enumerate(i[1].tolist())]
                y = i[0].reshape(shape)
            elif op == 'Transpose':
                y = i[0].permute(a['perm'])
            elif op == 'Cast':
                y = i[0].to({1: torch.float32, 7: torch.int64}[a['to']])
            elif op == 'Slice':
                y = i[0]
                axes = i[3].tolist() if len(i) > 3 and i[3] is not None else list(range(len(i[1])))
                steps = i[4].tolist() if len(i) > 4 and i[4] is not None else [1] * len(axes)
                for s, e, ax, st in zip(i[1].tolist(), i[2].tolist(), axes, steps):
                    dim = y.shape[ax]
                    if st > 0:
                        y = y.narrow(ax, 0, dim)[(slice(None),) * (ax % y.dim()) + (slice(max(min(s, dim), -dim), min(e, dim), st),)]
                    else:
                        y = torch.flip(y, [ax])
            elif op == 'Pad':
                pads = i[1].tolist()
                r = len(pads) // 2
                torch_pads = []
                for ax in reversed(range(r)):
                    torch_pads += [pads[ax], pads[ax + r]]
                y = F.pad(i[0], torch_pads)
            elif op == 'MaxPool':
                p = a.get('pads', [0, 0, 0, 0])
                y = F.max_pool2d(i[0], a['kernel_shape'], a.get('strides', [1, 1]), (p[0], p[1]))
            elif op == 'GlobalAveragePool':
                y = i[0].mean((2, 3), keepdim=True)
            elif op == 'Flatten':
                y = i[0].flatten(a.get('axis', 1))
            elif op == 'Gemm':
                y = F.linear(i[0], i[1], i[2])
            else:
                raise SystemExit(f'train_torch.py: op {op} is not interpreted')
            env[n.output[0]] = y
        return env[g.output[0].name]


net = OnnxNet().train()
decay = [p for k, p in net.p.items() if p.dim() >= 2]
no_decay = [p for k, p in net.p.items() if p.dim() < 2]
opt = torch.optim.SGD([{'params': decay, 'weight_decay': 5e-4}, {'params': no_decay, 'weight_decay': 0}], lr=0.01, momentum=0.9)
dims = [d.dim_value for d in g.input[0].type.tensor_type.shape.dim][1:]
gen = torch.Generator().manual_seed(0)
x = torch.randn([args.batch] + dims, generator=gen)
labels = torch.randint(0, 10, (args.batch,), generator=gen)


def step():
    opt.zero_grad(set_to_none=True)
    loss = F.cross_entropy(net(x), labels)
    loss.backward()
    opt.step()
    return loss


for _ in range(args.warmup):
    step()
    conv_backends['recorded'] = True
if args.profile:
    with torch.autograd.profiler.profile() as prof:
        step()
    rows = [{'name': e.key, 'selfCpuMs': e.self_cpu_time_total / 1000, 'count': e.count} for e in prof.key_averages()]
    with open(args.profile, 'w') as f:
        json.dump(sorted(rows, key=lambda r: -r['selfCpuMs']), f, indent=1)
start = time.perf_counter()
cpu_start = time.process_time()
for _ in range(args.steps):
    step()
seconds = time.perf_counter() - start
cpu_seconds = time.process_time() - cpu_start
print(json.dumps({
    'imagesPerSecond': args.batch * args.steps / seconds,
    'msPerStep': 1000 * seconds / args.steps,
    'cpuMsPerStep': 1000 * cpu_seconds / args.steps,
    'peakRssMiB': resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    'torch': torch.__version__,
    'threads': torch.get_num_threads(),
    'blas': blas_info(),
    'convBackends': {k: v for k, v in conv_backends.items() if k != 'recorded'},
    'mkldnnEnabled': torch.backends.mkldnn.enabled,
}))
