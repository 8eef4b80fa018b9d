import { UserError } from '../errors.js';
import { DataType, Node, Value, tensorType, type Model } from '../ir/index.js';
import { emitBatchMoments } from '../train/batch-norm.js';
import { Emitter } from '../train/emitter.js';
import type { Pass, PassResult } from './pass-manager.js';

/** The running-statistics initializers of one inference-mode BatchNormalization. */
export interface BatchNormLayer {
  node: Node;
  channels: number;
  runningMean: Value;
  runningVar: Value;
}

/** Names of the extra graph outputs that report one BN's batch statistics. */
export interface BatchNormStatsOutputs {
  layer: BatchNormLayer;
  /** [C] mean of the BN input over batch and spatial positions. */
  mean: string;
  /** [C] biased variance (divided by n), as train-mode BN normalises with. */
  variance: string;
  /** Shape of the input viewed as [N, C, L]; n = N * L for the unbiased correction. */
  shape: string;
}

/** Every BatchNormalization of the main graph whose running statistics are float32 initializers. */
export function findBatchNormLayers(model: Model, source: string): BatchNormLayer[] {
  const layers: BatchNormLayer[] = [];
  for (const node of model.graph.nodes) {
    if (node.opType !== 'BatchNormalization' || (node.domain !== '' && node.domain !== 'ai.onnx')) continue;
    if (node.attrInt('training_mode', 0) !== 0 || node.outputs.length > 1) {
      throw new UserError(
        'is a training-mode BatchNormalization; only inference-mode BN can be recalibrated',
        source,
        node.name,
      );
    }
    const scale = node.input(1);
    const runningMean = node.input(3);
    const runningVar = node.input(4);
    for (const v of [runningMean, runningVar]) {
      if (!v.initializer || v.initializer.dataType !== DataType.FLOAT) {
        throw new UserError(`running statistic '${v.name}' is not a float32 initializer`, source, node.name);
      }
    }
    const channels = scale.initializer?.size ?? runningMean.initializer!.size;
    layers.push({ node, channels, runningMean, runningVar });
  }
  if (layers.length === 0) {
    throw new UserError(
      'has no BatchNormalization nodes to recalibrate (was BN folded into the convolutions on export?)',
      source,
    );
  }
  return layers;
}

/**
 * Turns `model` (a copy: it is modified) into the statistics graph of train-mode BN, as adaptive BN (EagleEye)
 * runs it: every BatchNormalization normalises with the current batch's mean and biased variance instead of
 * its running statistics, so each layer's statistics are measured on inputs that the layers before it
 * normalised the same way. The per-BN batch statistics become extra graph outputs.
 *
 * Plain ops instead of BatchNormalization(training_mode=1): the models are opset 13 and training_mode needs 14,
 * and this form works for BN inputs of any rank >= 2 (viewed as [N, C, L]). The moments are the training
 * step's own expansion (src/train/batch-norm.ts).
 */
export function buildBatchNormStatsGraph(model: Model, source: string): BatchNormStatsOutputs[] {
  const graph = model.graph;
  const outputs: BatchNormStatsOutputs[] = [];
  for (const layer of findBatchNormLayers(model, source)) {
    const { node, channels } = layer;
    const e = new Emitter(graph, `${node.name || node.output(0).name}_stats/`, {
      opset: model.opset,
      before: node,
    });
    // Reshape's 0 copies the batch size, -1 folds all spatial positions into L.
    const asNCL = e.reshape(node.input(0), [0, channels, -1]);
    const moments = emitBatchMoments(e, asNCL, [0, 2]);
    const mean = e.reshape(moments.mean, [channels]);
    const variance = e.reshape(moments.biasedVar, [channels]);
    const shape = e.op('Shape', [asNCL]);
    node.setInput(3, mean);
    node.setInput(4, variance);
    // The running statistics are unused now; onnxruntime would warn about each one.
    for (const stale of [layer.runningMean, layer.runningVar]) {
      if (stale.uses.length === 0 && !graph.inputs.includes(stale)) graph.removeInitializer(stale);
    }
    mean.type = variance.type = tensorType(DataType.FLOAT, [channels]);
    shape.type = tensorType(DataType.INT64, [3]);
    graph.outputs.push(mean, variance, shape);
    outputs.push({ layer, mean: mean.name, variance: variance.name, shape: shape.name });
  }
  return outputs;
}

/** The statistics graph as a pass over a copy of the model (the caller's model is never changed). */
export const batchNormStatsGraph: Pass<
  { source: string },
  PassResult & { model: Model; outputs: BatchNormStatsOutputs[] }
> = {
  name: 'bn-stats-graph',
  description: 'a copy of the model whose BatchNormalizations use batch statistics and output them',
  reads: ['BatchNormalization nodes and their running statistics'],
  changes: ['BatchNormalization statistics inputs', 'graph outputs'],
  run(model, { source }) {
    const copy = model.clone();
    const outputs = buildBatchNormStatsGraph(copy, source);
    return { modified: true, model: copy, outputs };
  },
};
