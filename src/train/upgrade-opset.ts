import { intAttr, stringAttr } from '../ir/attribute.js';
import type { Graph, Node, Value } from '../ir/graph.js';
import { Emitter } from './emitter.js';

/**
 * The step graph runs at opset 17 at least (ScatterElements/ScatterND with reduction='add'), so the forward nodes
 * of an older model are rewritten into their opset-13+ forms first, keeping their results:
 *
 * - Softmax, LogSoftmax, Hardmax before 13 normalise over the coerced 2-D [prod(dims[:axis]),
 *   prod(dims[axis:])]: on the last axis the axis is only made explicit; on another, Reshape to 2-D, the op over
 *   axis 1, Reshape back;
 * - Upsample (opset 7-9) and opset 10's Resize(X, scales) become Resize(X, '', scales) with their asymmetric
 *   coordinates and floor rounding (onnxruntime's rule for them when upsampling);
 * - Split's `split`, Squeeze/Unsqueeze's and ReduceSum's `axes`, attributes before 13, become inputs.
 *
 * `shapes` (static shapes at the step's batch size) gets the shapes of the values it adds.
 */
export function upgradeForwardOpset(g: Graph, opset: number, shapes: Map<Value, number[]>): void {
  if (opset >= 13) return;
  for (const node of g.iterNodes()) {
    const e = new Emitter(g, 'upgrade/', { opset: 13, before: node });
    switch (node.opType) {
      case 'Softmax':
      case 'LogSoftmax':
      case 'Hardmax':
        coercedSoftmax(g, e, node, shapes);
        break;
      case 'Upsample':
      case 'Resize':
        if (node.opType === 'Upsample' || opset < 11) toResize11(e, node);
        break;
      case 'Split':
        attrToInput(e, node, 'split', 1);
        break;
      case 'Squeeze':
      case 'Unsqueeze':
      case 'ReduceSum':
        attrToInput(e, node, 'axes', 1);
        break;
    }
  }
}

function attrToInput(e: Emitter, node: Node, name: string, index: number): void {
  const values = node.attrInts(name);
  if (!values) return;
  node.attributes.delete(name);
  while (node.inputs.length < index) node.appendInput(undefined);
  node.setInput(index, e.ints(values));
}

function coercedSoftmax(g: Graph, e: Emitter, node: Node, shapes: Map<Value, number[]>): void {
  const x = node.input(0);
  const shape = shapes.get(x);
  if (!shape) return;
  const rank = shape.length;
  const axis = (node.attrInt('axis', 1) + rank) % rank;
  if (axis >= rank - 1) {
    node.attributes.set('axis', intAttr(rank - 1));
    return;
  }
  const flat = [shape.slice(0, axis), shape.slice(axis)].map((d) => d.reduce((a, b) => a * b, 1));
  const reshaped = e.reshape(x, flat);
  const inner = e.op(node.opType, [reshaped], { axis: 1 });
  const y = node.output();
  const back = e.reshape(inner, shape);
  for (const v of [reshaped, inner]) shapes.set(v, flat);
  shapes.set(back, shape);
  g.replaceAllUsesWith(y, back);
  g.removeNode(node);
  back.name = y.name;
  back.type = y.type;
}

function toResize11(e: Emitter, node: Node): void {
  const old = node.opType === 'Upsample' ? node.attrFloats('scales') : undefined;
  const scales = old ? e.floats(Float32Array.from(old), [old.length], 'upsample_scales') : node.inputs[1];
  if (old) node.attributes.delete('scales');
  node.opType = 'Resize';
  node.setInput(1, undefined);
  if (node.inputs.length < 2) node.appendInput(undefined);
  node.truncateInputs(2);
  node.appendInput(scales);
  const mode = node.attrString('mode', 'nearest');
  node.attributes.set('mode', stringAttr(mode === 'nearest' ? 'nearest' : 'linear'));
  node.attributes.set('coordinate_transformation_mode', stringAttr('asymmetric'));
  node.attributes.set('nearest_mode', stringAttr('floor'));
}
