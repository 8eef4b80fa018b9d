"""Micro-benchmark models for the step graph's dY width shifts (docs/finetune.md, sixth round).

Writes, for three ResNet-56 shapes, A_* (one width Pad and a Slice per shifted copy: the step graph's form),
B_* (both shifted copies by one grouped Conv with one-hot 1x3 kernels, 2C outputs), C_* (all three taps by
one such Conv, 3C outputs) and D_* (each shifted copy by a depthwise Conv, C outputs) into the folder given
(default: bench/micro/out). Time them with `node bench/micro/dy-shift.mjs [DIR]`.
Needs Debian's /usr/bin/python3 with python3-onnx.
"""
import os
import sys

import numpy as np
import onnx
from onnx import helper as h, TensorProto as T, numpy_helper as nh
out = sys.argv[1] if len(sys.argv) > 1 else os.path.join(os.path.dirname(__file__), 'out')
os.makedirs(out, exist_ok=True)


def save(name, nodes, inits, outs, shape):
    g = h.make_graph(nodes, name, [h.make_tensor_value_info('dy', T.FLOAT, shape)],
                     [h.make_tensor_value_info(o, T.FLOAT, None) for o in outs], inits)
    m = h.make_model(g, opset_imports=[h.make_opsetid('', 17)]); m.ir_version = 8
    onnx.save(m, os.path.join(out, name + ".onnx"))


for (c, hw) in [(16, 32), (32, 16), (64, 8)]:
    shape = [128, c, hw, hw]; tag = f'{c}_{hw}'
    # A: the current form: one width Pad, two Slices
    nodes = [h.make_node('Pad', ['dy', 'pads'], ['p']),
             h.make_node('Slice', ['p', 's0', 'e0', 'ax'], ['a0']),
             h.make_node('Slice', ['p', 's2', 'e2', 'ax'], ['a2'])]
    inits = [nh.from_array(np.array([0,0,0,1,0,0,0,1], np.int64), 'pads'),
             nh.from_array(np.array([0], np.int64), 's0'), nh.from_array(np.array([hw], np.int64), 'e0'),
             nh.from_array(np.array([2], np.int64), 's2'), nh.from_array(np.array([hw+2], np.int64), 'e2'),
             nh.from_array(np.array([3], np.int64), 'ax')]
    save('A_' + tag, nodes, inits, ['a0', 'a2'], shape)
    # B: both shifts from one grouped Conv, a one-hot 1x3 kernel per output channel (channels (c, j))
    w = np.zeros((2 * c, 1, 1, 3), np.float32); w[0::2, 0, 0, 0] = 1; w[1::2, 0, 0, 2] = 1
    nodes = [h.make_node('Conv', ['dy', 'w'], ['b'], group=c, pads=[0, 1, 0, 1], kernel_shape=[1, 3])]
    save('B_' + tag, nodes, [nh.from_array(w, 'w')], ['b'], shape)
    # D: the two shifted copies by two depthwise Convs (one output per channel: the NCHWc rewrite takes these)
    wl = np.zeros((c, 1, 1, 3), np.float32); wl[:, 0, 0, 0] = 1
    wr = np.zeros((c, 1, 1, 3), np.float32); wr[:, 0, 0, 2] = 1
    nodes = [h.make_node('Conv', ['dy', 'wl'], ['d0'], group=c, pads=[0, 1, 0, 1], kernel_shape=[1, 3]),
             h.make_node('Conv', ['dy', 'wr'], ['d2'], group=c, pads=[0, 1, 0, 1], kernel_shape=[1, 3])]
    save('D_' + tag, nodes, [nh.from_array(wl, 'wl'), nh.from_array(wr, 'wr')], ['d0', 'd2'], shape)
    # C: all three taps (c, j) in one Conv: the unshifted copy too, for a single MatMul per image
    w = np.zeros((3 * c, 1, 1, 3), np.float32)
    for j in range(3): w[j::3, 0, 0, j] = 1
    nodes = [h.make_node('Conv', ['dy', 'w'], ['c3'], group=c, pads=[0, 1, 0, 1], kernel_shape=[1, 3])]
    save('C_' + tag, nodes, [nh.from_array(w, 'w')], ['c3'], shape)
