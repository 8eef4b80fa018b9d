import type { Model, Node } from '../ir/index.js';

/** How torch must export a model for the BN scaling factors (gamma) to survive into the ONNX file. */
export const BN_KEEPING_EXPORT =
  'torch.onnx.export(model.eval(), x, path, training=torch.onnx.TrainingMode.PRESERVE, do_constant_folding=False)';

export interface BatchNormReport {
  convNodes: number;
  batchNormNodes: number;
  /**
   * BatchNormalization is absent but there is evidence it was folded into the convolutions at export (see
   * `foldEvidence`). A model built without BN (SqueezeNet, ConvNeXt) is not folded.
   */
  bnFolded: boolean;
  /** What shows the folding: Conv weights that are computed tensors rather than the model's parameters. */
  foldEvidence: string | undefined;
  /** Other normalisations the model has (LayerNorm, InstanceNorm, ...): a design without BN, not a folded one. */
  otherNorms: string[];
  /**
   * A plain explanation: with `bnFolded`, that BN was folded and the export call that keeps it; for a model
   * with convolutions and no BN otherwise, that it has none (nothing to re-export).
   */
  notice: string | undefined;
}

/**
 * torch's exporter names a tensor it computed during constant folding `onnx::<Op>_<n>` (a Conv weight with BN
 * folded in), while a plain parameter keeps its state_dict name; other converters mark folded weights with
 * "fused_bn"/"batchnorm"-like names.
 */
const FOLDED_WEIGHT = /^onnx::Conv_\d+$|fused_?bn|batch_?norm/i;

function otherNormalisations(nodes: Node[]): string[] {
  const found = new Set<string>();
  for (const n of nodes) {
    if (
      ['LayerNormalization', 'InstanceNormalization', 'GroupNormalization', 'LpNormalization'].includes(
        n.opType,
      )
    )
      found.add(n.opType);
    // LayerNorm at opsets below 17: x - mean, then / sqrt(mean(x^2) + eps).
    const add = n.opType === 'Sqrt' ? n.inputs[0]?.producer : undefined;
    if (
      add?.opType === 'Add' &&
      add.inputs.some((v: { producer?: Node } | undefined) => v?.producer?.opType === 'ReduceMean')
    )
      found.add('decomposed LayerNorm (ReduceMean/Sub/Pow/Sqrt/Div)');
  }
  return [...found];
}

/**
 * Whether the model still has its BatchNormalization nodes. AdaPruner ranks channels by BN gamma, so a model
 * whose BN was folded into the convolutions at export has lost what the method reads; a model that never had
 * BN has nothing to recover by re-exporting.
 */
export function batchNormReport(model: Model): BatchNormReport {
  const nodes = [...model.graph.allNodes()];
  const convs = nodes.filter((n) => n.opType === 'Conv' || n.opType === 'ConvTranspose');
  const batchNormNodes = nodes.filter((n) => n.opType === 'BatchNormalization').length;
  const otherNorms = otherNormalisations(nodes);
  const folded = convs.filter((n) => FOLDED_WEIGHT.test(n.inputs[1]?.name ?? '')).length;
  const foldEvidence =
    batchNormNodes === 0 && folded > 0
      ? `${folded} of ${convs.length} Conv weights are tensors computed at export, such as '${
          convs.find((n) => FOLDED_WEIGHT.test(n.inputs[1]?.name ?? ''))!.inputs[1]!.name
        }', not parameters`
      : undefined;
  const bnFolded = convs.length > 0 && foldEvidence !== undefined;
  let notice: string | undefined;
  if (bnFolded)
    notice =
      `This model has ${convs.length} Conv nodes and no BatchNormalization: BN was folded into the convolutions ` +
      `at export (${foldEvidence}; torch.onnx.export's default eval export does that), so there are no BN ` +
      `scaling factors to rank channels by. Re-export with BN kept: ${BN_KEEPING_EXPORT}`;
  else if (convs.length > 0 && batchNormNodes === 0)
    notice =
      `no BatchNormalization in this model` +
      (otherNorms.length ? ` (its normalisation: ${otherNorms.join(', ')})` : '') +
      `; nothing suggests BN was folded at export, so there is nothing to re-export`;
  return { convNodes: convs.length, batchNormNodes, bnFolded, foldEvidence, otherNorms, notice };
}

/** Prune's warning when group importance falls back to filter norms in a model that never had BN. */
export const NO_BATCHNORM_WARNING =
  'no BatchNormalization in this model, so group importance uses normalised filter norms (the model was not ' +
  'exported with BN folded: there is nothing to re-export)';
