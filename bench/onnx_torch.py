"""An ONNX graph run as a torch module, for the PyTorch sides of the benches (bench/train_torch.py,
bench/finetune_torch.py): the network is an interpreter over the graph (torch functional ops per node), so any
model the benches use runs without a hand-written torch class; constant subgraphs (shapes, pads) are tiny int ops.

Trainable, as in adapruner's step graph: conv and Gemm weights and biases, BN scale and bias. BN running
statistics are buffers that F.batch_norm updates in place in train mode, with the momentum the ONNX node names.
"""
import onnx
import torch
import torch.nn.functional as F
from onnx import numpy_helper

PARAM_SLOTS = {'Conv': [1, 2], 'Gemm': [1, 2], 'BatchNormalization': [1, 2]}


def attrs(node):
    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


class OnnxNet(torch.nn.Module):
    """`on_conv(x, w, stride, padding, dilation, groups)`, when given, is called before every convolution
    (train_torch.py records which backend torch picks)."""

    def __init__(self, path, on_conv=None):
        super().__init__()
        self.graph = onnx.load(path).graph
        for n in self.graph.node:
            if n.op_type not in OPS:
                raise ValueError(f'{path}: node {n.name or n.output[0]}: op {n.op_type} is not interpreted (bench/onnx_torch.py)')
        inits = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in self.graph.initializer}
        self.trainable = set()
        for n in self.graph.node:
            for s in PARAM_SLOTS.get(n.op_type, []):
                if s < len(n.input) and n.input[s] in inits and inits[n.input[s]].is_floating_point():
                    self.trainable.add(n.input[s])
        self.p = torch.nn.ParameterDict({k.replace('.', '__'): torch.nn.Parameter(v) for k, v in inits.items() if k in self.trainable})
        self.consts = {k: v for k, v in inits.items() if k not in self.trainable}
        self.nodes = [(n, OPS[n.op_type], attrs(n)) for n in self.graph.node]
        self.on_conv = on_conv

    def input_dims(self):
        return [d.dim_value for d in self.graph.input[0].type.tensor_type.shape.dim][1:]

    def decay_groups(self, weight_decay):
        """torch SGD parameter groups with adapruner's decay rule: conv/linear weights (rank >= 2) only."""
        decay = [p for p in self.p.values() if p.dim() >= 2]
        no_decay = [p for p in self.p.values() if p.dim() < 2]
        return [{'params': decay, 'weight_decay': weight_decay}, {'params': no_decay, 'weight_decay': 0}]

    def get(self, env, name):
        if name in env:
            return env[name]
        if name in self.trainable:
            return self.p[name.replace('.', '__')]
        return self.consts[name]

    def forward(self, x):
        env = {self.graph.input[0].name: x}
        for n, run, a in self.nodes:
            env[n.output[0]] = run(self, a, [self.get(env, k) if k else None for k in n.input])
        return env[self.graph.output[0].name]


def conv(net, a, i):
    p = a.get('pads', [0, 0, 0, 0])
    args = (a.get('strides', [1, 1]), (p[0], p[1]), a.get('dilations', [1, 1]), a.get('group', 1))
    if net.on_conv:
        net.on_conv(i[0], i[1], *args)
    return F.conv2d(i[0], i[1], i[2] if len(i) > 2 else None, *args)


def batch_norm(net, a, i):
    return F.batch_norm(i[0], i[3], i[4], i[1], i[2], net.training, 1 - a.get('momentum', 0.9), a.get('epsilon', 1e-5))


def unsqueeze(_, a, i):
    y = i[0]
    for ax in sorted(i[1].tolist()):
        y = y.unsqueeze(ax)
    return y


def constant_of_shape(_, a, i):
    v = numpy_helper.to_array(a['value']) if 'value' in a else [0.0]
    dtype = torch.int64 if 'int' in str(getattr(v, 'dtype', '')) else torch.float32
    return torch.full(tuple(i[0].tolist()), float(v[0]), dtype=dtype)


def pad(_, a, i):
    pads = i[1].tolist()
    r = len(pads) // 2
    torch_pads = []
    for ax in reversed(range(r)):
        torch_pads += [pads[ax], pads[ax + r]]
    return F.pad(i[0], torch_pads)


def max_pool(_, a, i):
    p = a.get('pads', [0, 0, 0, 0])
    return F.max_pool2d(i[0], a['kernel_shape'], a.get('strides', [1, 1]), (p[0], p[1]))


def gemm(_, a, i):
    x, w = (i[0].t() if a.get('transA', 0) else i[0]), (i[1].t() if a.get('transB', 0) else i[1])
    y = a.get('alpha', 1.0) * (x @ w)
    return y + a.get('beta', 1.0) * i[2] if len(i) > 2 and i[2] is not None else y


def slice_op(_, a, i):
    y = i[0]
    axes = i[3].tolist() if len(i) > 3 and i[3] is not None else list(range(len(i[1])))
    steps = i[4].tolist() if len(i) > 4 and i[4] is not None else [1] * len(axes)
    for s, e, ax, st in zip(i[1].tolist(), i[2].tolist(), axes, steps):
        dim = y.shape[ax]
        if st > 0:
            y = y.narrow(ax, 0, dim)[(slice(None),) * (ax % y.dim()) + (slice(max(min(s, dim), -dim), min(e, dim), st),)]
        else:
            y = torch.flip(y, [ax])
    return y


# Each op the interpreter runs, as f(net, attributes, inputs); a model with any other op is refused at load time.
OPS = {
    'Conv': conv,
    'BatchNormalization': batch_norm,
    'Relu': lambda _, a, i: F.relu(i[0]),
    'Clip': lambda _, a, i: F.hardtanh(i[0], float(i[1]), float(i[2])),
    'Add': lambda _, a, i: i[0] + i[1],
    'Sub': lambda _, a, i: i[0] - i[1],
    'Mul': lambda _, a, i: i[0] * i[1],
    'Constant': lambda _, a, i: torch.from_numpy(numpy_helper.to_array(a['value']).copy()),
    'Shape': lambda _, a, i: torch.tensor(i[0].shape, dtype=torch.int64),
    'Gather': lambda _, a, i: torch.index_select(i[0], a.get('axis', 0), i[1].reshape(-1)).reshape(i[1].shape),
    'Unsqueeze': unsqueeze,
    'Concat': lambda _, a, i: torch.cat(i, a['axis']),
    'ConstantOfShape': constant_of_shape,
    'Reshape': lambda _, a, i: i[0].reshape([d if d != 0 else i[0].shape[k] for k, d in enumerate(i[1].tolist())]),
    'Transpose': lambda _, a, i: i[0].permute(a['perm']),
    'Cast': lambda _, a, i: i[0].to({1: torch.float32, 7: torch.int64}[a['to']]),
    'Slice': slice_op,
    'Pad': pad,
    'MaxPool': max_pool,
    'GlobalAveragePool': lambda _, a, i: i[0].mean((2, 3), keepdim=True),
    'Flatten': lambda _, a, i: i[0].flatten(a.get('axis', 1)),
    'Gemm': gemm,
}
