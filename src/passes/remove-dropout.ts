import { AttributeType } from '../ir/attribute.js';
import type { Value } from '../ir/graph.js';
import type { Model } from '../ir/model.js';
import type { Pass, PassResult } from './pass-manager.js';
import { bypassNode } from './remove-identity.js';
import { dropDanglingValueInfo } from './dead-code.js';

/** The single boolean a value holds when it is an initializer or a Constant output; undefined if unknown. */
function constantBool(v: Value, feedable: Set<Value>): boolean | undefined {
  const t = v.initializer && !feedable.has(v) ? v.initializer : undefined;
  const a = v.producer?.opType === 'Constant' ? v.producer.attr('value') : undefined;
  const tensor = t ?? (a?.type === AttributeType.TENSOR ? a.value : undefined);
  if (!tensor || tensor.size !== 1) return undefined;
  return Boolean(Number(tensor.data[0]));
}

/**
 * Removes Dropout nodes that are the identity at inference: opset < 7 needs is_test=1; opsets 7-11 are
 * always inference in onnxruntime; opset >= 12 needs training_mode absent or constant false. The ratio
 * does not matter. A Dropout whose mask output is used is kept.
 */
export const removeDropout: Pass<void, PassResult & { removed: number }> = {
  name: 'remove-dropout',
  description: 'Removes inference-time Dropout nodes (opset-aware), keeping graph output names.',
  reads: ['Dropout nodes and their training_mode / is_test', 'model opset', 'graph outputs'],
  changes: [
    'graph.nodes',
    'node inputs',
    'names of values renamed to a graph output',
    'graph.valueInfo (dangling entries)',
  ],
  run(model: Model) {
    const g = model.graph;
    const opset = model.opset;
    const feedable = new Set(g.inputs);
    let removed = 0;
    for (const node of g.iterNodes()) {
      if (node.opType !== 'Dropout' || (node.domain !== '' && node.domain !== 'ai.onnx')) continue;
      if (opset < 7 && node.attrInt('is_test', 0) !== 1) continue;
      const training = node.inputs[2];
      if (opset >= 12 && training && constantBool(training, feedable) !== false) continue;
      const mask = node.outputs[1];
      if (mask && (mask.uses.length > 0 || g.outputs.includes(mask))) continue;
      const x = node.inputs[0];
      if (x && bypassNode(g, node, x, node.output(0))) removed++;
    }
    if (removed) dropDanglingValueInfo(g);
    return { modified: removed > 0, removed };
  },
};
