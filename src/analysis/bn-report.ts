import type { Model } from '../ir/model.js';

/** How torch must export a model for the BN scaling factors (gamma) to survive into the ONNX file. */
export const BN_KEEPING_EXPORT =
  'torch.onnx.export(model.eval(), x, path, training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)';

export interface BatchNormReport {
  convNodes: number;
  batchNormNodes: number;
  /** The model has convolutions but no BatchNormalization: torch's default eval export folded BN into Conv. */
  bnFolded: boolean;
  /** A plain explanation with the export call that keeps BN, when `bnFolded`. */
  notice: string | undefined;
}

/**
 * Whether the model still has its BatchNormalization nodes. AdaPruner ranks channels by BN gamma, so a model
 * whose BN was folded into the convolutions at export has lost what the method reads.
 */
export function batchNormReport(model: Model): BatchNormReport {
  let convNodes = 0;
  let batchNormNodes = 0;
  for (const node of model.graph.allNodes()) {
    if (node.opType === 'Conv' || node.opType === 'ConvTranspose') convNodes++;
    else if (node.opType === 'BatchNormalization') batchNormNodes++;
  }
  const bnFolded = convNodes > 0 && batchNormNodes === 0;
  const notice = bnFolded
    ? `This model has ${convNodes} Conv nodes and no BatchNormalization: BN was folded into the convolutions ` +
      `(torch.onnx.export's default eval export does that), so there are no BN scaling factors to rank channels by. ` +
      `Re-export with BN kept: ${BN_KEEPING_EXPORT}`
    : undefined;
  return { convNodes, batchNormNodes, bnFolded, notice };
}
