#!/usr/bin/python3
"""PyTorch side of bench/train.ts: the same network, rebuilt from the ONNX file's weights, trained with the
same batch, threads, loss and optimizer (SGD momentum 0.9, weight decay 5e-4 on conv/linear weights only,
BN in train mode). Prints one JSON line: images/s, peak RSS, and which BLAS (library and OpenBLAS kernel)
and which convolution backend torch used, so that bench/train.ts can refuse a ratio against the reference BLAS.

The network is bench/onnx_torch.py's interpreter over the ONNX graph, so any model the bench uses runs without a
hand-written torch class.

usage: train_torch.py MODEL.onnx --batch 128 --threads 2 --steps 10 --warmup 2 [--profile FILE]
"""
import argparse
import ctypes
import json
import os
import resource
import time

import torch
import torch.nn.functional as F

from onnx_torch import OnnxNet

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


def record_conv_backend(x, w, stride, padding, dilation, groups):
    if not conv_backends.get('recorded'):
        b = conv_backend(x, w, stride, padding, dilation, groups)
        conv_backends[b] = conv_backends.get(b, 0) + 1


try:
    net = OnnxNet(args.model, on_conv=record_conv_backend).train()
except ValueError as e:  # an op the interpreter does not run, named by node
    raise SystemExit(f'train_torch.py: {e}')
opt = torch.optim.SGD(net.decay_groups(5e-4), lr=0.01, momentum=0.9)
dims = net.input_dims()
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
