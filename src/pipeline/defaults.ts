import type { Augmentation } from '../data/preprocess.js';
import type { BlockFloor, WideRounding, WidthSource } from '../prune/index.js';
import { CONV_NETWORK_SHARE } from '../prune/width-prior.js';

/*
 * The pipeline's defaults (src/pipeline/adaprune.ts), each with the measurement that chose it; docs/results.md
 * has the current figures and docs/history.md the runs. Kept apart from the pipeline's logic so that a
 * default and its reason read in one place.
 */

/** Input pixels (H x W) up to which inference runs take as many images as asked (runBatchOf). */
export const RUN_PIXELS = 224 * 224;

/** prune's fine-tuning learning rate with labels (ResNet-56 at 50% MACs, 2 epochs; docs/history.md). */
export const DEFAULT_PRUNE_LR = 0.05;

/**
 * The same for a model normalised by LayerNorm and not by BN (a transformer): BN is what lets a CNN take 0.05.
 * The trained Fashion-MNIST ViT at 50% MACs (fixtures/trained/vit.onnx, 1 epoch of 60,000 images): compensated
 * 82.24% test top-1, fine-tuned at 0.05 81.28%, at 0.01 85.50% (original 86.79%).
 */
export const DEFAULT_PRUNE_LR_LAYERNORM = 0.01;

/**
 * The learning rate of distillation without labels when its batches are too small to normalise by (below
 * FROZEN_BN_BELOW images, as in a static export fixed at batch 1): BN is then frozen, which takes smaller
 * steps. On the YOLO-style fixture at 50% MACs (2 epochs of 16 images, from the pruned model) 0.003 reached a
 * fidelity R² of 93.4% and 0.01 96.0%; from a start whose BN recalibration had lost fidelity, 0.01 diverged.
 * The safer value is the default; a run that diverges keeps the best earlier stage with a note. Larger
 * batches train BN as fine-tuning does, at DEFAULT_PRUNE_LR.
 */
export const DEFAULT_DISTILL_LR = 0.003;

/**
 * The learning rate of distillation without labels in batches of FROZEN_BN_BELOW images or more (BN trains, and
 * its statistics are estimated again afterwards): on the trained SynthDet segmenter at 50% MACs (1 epoch of
 * 150 images in batches of 16, from the compensated model at R² 28.3%) 0.01 reached 46.0%, and prune's
 * fine-tuning rate 0.05 fell to -1.9%.
 */
export const DEFAULT_DISTILL_LR_BATCHED = 0.01;

/**
 * The learning rate of distillation on token data (a text model). The trained text classifier at 50% MACs
 * (fixtures/trained/text.onnx, 1 epoch in batches of 16, the distilled model's R² on 4,000 test samples):
 * from 800 samples, seeds 0 / 1 / 2, at 0.01 -5.7% / -0.7% / 65.6%, at 0.003 31.7% / 67.7% / 83.5%, at
 * 0.001 83.3% / 82.0% / 88.1%; from 5,000 samples, seeds 0 / 1, at 0.01 86.8% / 75.0%, at 0.003 89.8% /
 * 80.4%, at 0.001 89.6% / 81.4%. At the image rate the loss jumps to several times its start in the first
 * steps.
 */
export const DEFAULT_DISTILL_LR_TOKENS = 0.001;

/** Channel-count rounding when the user gives none. */
export const DEFAULT_ROUND_TO = 8;

/**
 * Without --round-to, groups of 128 channels or more keep multiples of 16. onnxruntime's blocked (NCHWc)
 * convolutions work in blocks of 8 channels with AVX2 and 16 with AVX-512, where a width of 8 mod 16 runs as
 * slowly as the next multiple of 16 and adds layout changes; 16 serves both, and on a group this wide a step is
 * at most 1/8 of the group (where the budget then cannot land within 0.5%, planPrune uses the plain unit).
 * Narrower groups stay at 8, where 16 would leave a 32-channel group only 16 or 32 (ResNet-56's 16/32/64
 * stages are unchanged). The rule reads only the model, so the same command writes the same bytes on every
 * machine. `npm run bench -- rounding` (50% MACs, batch 1, 1 thread, AVX-512): the yolov8n-scale detector
 * 1.28x faster than the original at --round-to 8, 1.36x with this rule (docs/results.md, "Detectors and
 * segmenters (issue 28)").
 */
export const DEFAULT_WIDE_ROUNDING: WideRounding = { channels: 128, roundTo: 16 };

/**
 * Without --round-to and --min-channels, every group of a convolutional network (at least half its MACs in Conv
 * layers) keeps at least 16 channels where holding every group there costs at most half the budget (planPrune's
 * block floor). On AVX-512 a width under 16 runs as one whole block, so the yolov8n-scale detector's two
 * 16-channel groups at 320x320 and 160x160, cut to 8, saved 1.4% of its MACs and no time; kept at 16, the budget
 * comes out of wider layers. `npm run bench -- rounding` (50% MACs, batch 1, 1 thread, quiet): 1.36x faster than
 * the original without the floor, 1.51x with it (docs/results.md, issue 28).
 * ResNet-56 is unchanged: its 16-channel first stage holds a third of the MACs (the floor would be 0.448 of
 * them), and holding it at 16 scored 20.27% recalibrated at 50% MACs against 64.61%. Transformers (MatMul and Gemm)
 * are left out: the floor was measured on convolutions, and on the trained text classifier (fixtures/trained/
 * text.onnx, label-free at 50% MACs) it changed which candidate won, for a distilled R² of 82.4% against 87.4%.
 * Under the floor every group of whole 16-channel blocks also keeps whole blocks (a width of 8 mod 16 wastes half
 * a block): the detector 1.49x -> 1.59x at opset 17 (docs/pruning.md, "Whole blocks under the floor").
 */
export const DEFAULT_BLOCK_FLOOR: BlockFloor = {
  channels: 16,
  budgetShare: 0.5,
  convShare: CONV_NETWORK_SHARE,
};

/** Fine-tuning batch with labels. */
export const DEFAULT_PRUNE_BATCH = 128;

/**
 * Distillation batch without labels: label-free data sets are a few hundred images, where 128 left one or two
 * steps an epoch. On the trained SynthDet detector at 50% MACs batch 16 kept 52% of mAP50-95 after one epoch
 * (batches of 4 and 8 were worse, 128 gave 45% with the default held-out count). Above 224x224 it shrinks with
 * the pixels, to 8 at least (recover's distilBatch): PP-OCRv4's text detector at 640x640 distilled in batches
 * of 8 to map IoU 0.854 (0.845 in batches of 16) with a peak RSS of 5.6 GB instead of 9.7 GB.
 */
export const DEFAULT_DISTILL_BATCH = 16;

/**
 * The augmentation prune's fine-tuning applies by default: the flip alone, since a few epochs from a pretrained
 * network score higher without the padded crop (src/data/preprocess.ts augmentationAt; docs/history.md,
 * "Fourth pass").
 */
export const DEFAULT_PRUNE_AUGMENT: Augmentation = 'flip';

/**
 * Whether prune's fine-tuning uses Nesterov momentum. ResNet-56 at 50% MACs, 2 epochs from the recalibrated
 * model (flip, lr 0.05, batch 128), seeds 0-5: mean 88.40% with Nesterov against 88.31% without, a lead
 * within the seeds' noise (docs/history.md, "Sixth pass"); it fits the training set faster at every seed.
 */
export const DEFAULT_PRUNE_NESTEROV = true;

/**
 * Which model fine-tuning starts from. Compensation's head start does not survive it: ResNet-56 at 50% MACs,
 * 2 epochs at lr 0.05 without distillation, from the recalibrated model 87.71% (padded crop) and 88.51% (flip),
 * from the compensated one 87.47% and 87.64%. The compensated model is still built, reported, and written when
 * nothing is fine-tuned.
 */
export const FINETUNE_STARTS = ['recalibrated', 'compensated'] as const;
export type FinetuneStart = (typeof FINETUNE_STARTS)[number];
export const DEFAULT_FINETUNE_FROM: FinetuneStart = 'recalibrated';

/**
 * Distillation from the original is opt-in (`--distill`). In every paired 2-epoch run on ResNet-56 at 50% MACs it
 * scored below the same run without it: with the original as teacher (83.20% on the data) -1.5, -2.2, -0.95
 * (gated), -1.25 (gated, flip) and -0.86 points (gated, flip, compensated start); with a teacher fine-tuned on
 * the data first (89.28%) -0.29.
 */
export const DEFAULT_DISTILL = false;

/** Roundings `--widths search` also tries for the chosen source when the user gives no --round-to. */
export const FINER_ROUNDINGS: readonly number[] = [4, 1];

/** Perturbed neighbours of the chosen widths `--widths search` recalibrates and scores (EagleEye-style). */
export const DEFAULT_WIDTH_TRIALS = 6;

/**
 * The same without class labels (candidates scored by fidelity to the original): none. There the proxy before
 * compensation predicts the result after it poorly: in 7 of 8 label-free runs the perturbed widths the search
 * picked ranked below their unperturbed centre once both were compensated, and over the five trained detector
 * runs the shares of mAP50-95 averaged 75.3% without trials against 74.3% with them (docs/history.md, issue 29's
 * sixth pass), for about 2 minutes less of a 640x640 detector's run (the issue's 10-minute budget).
 */
export const DEFAULT_WIDTH_TRIALS_LABEL_FREE = 0;

/** Images held out to rank candidates, and read by compensation and Taylor scores, with labels. */
export const DEFAULT_CALIBRATION_IMAGES = 1000;

/**
 * The same without labels. Fidelity (R² over every output value of every image) is steady on far fewer images
 * than top-1 is, and the label-free inputs are typically detector or segmenter images: 17 candidates ranked
 * on 150 images at 640x640 (plus 256 recalibration images each) took 19 of 23 minutes for a yolov8n-size
 * detector on 2 loaded cores (docs/history.md, "Cost of label-free recovery at 640x640").
 */
export const DEFAULT_CALIBRATION_IMAGES_UNLABELLED = 64;

/**
 * The most images compensation fits on without labels, when --calibration-images is not given (never fewer
 * than DEFAULT_CALIBRATION_IMAGES_UNLABELLED). The fit reads training images outside the calibration split, so
 * more of them cost no ranking time. At 64, one batch, each fit's held-out check ran on the images it was fit
 * on, and a 96x96 detector's P5 layers had 64 x 9 rows for up to 1,585 unknowns. Label-free at 50% MACs,
 * compensated, no training: the trained yolov8n-width SynthDet detector (236 images outside the calibration
 * split; seeds 7 / 9 / 11) kept 84.9 / 86.6 / 84.9% of its mAP50-95 at 64 images and 86.1 / 87.6 / 86.2% at all
 * 236; the shared ResNet-20 (600 CIFAR-10 images, top-1 on 2,000 test images, original 80.60%) 45.40% at 64
 * (the fit was no better than without, and not used), 65.35% at 256, 70.35% at 512 and at all 536 (docs/history.md,
 * issue 29's seventh pass).
 */
export const DEFAULT_COMPENSATION_IMAGES_UNLABELLED = 512;

/**
 * The forward-pass MACs (the original's at batch 1, times the images) that bound compensation's images without
 * labels: its time follows them, 3-5 G a second on the 2-core development machine (a yolov8n detector at
 * 640x640 fit 64 images, 280 G, in 58 s; PP-OCRv4 at 640x640 111 images, 255 G, in 80-89 s; ResNet-50 at
 * 224x224 512 images, 2.1 T, in about 8.5 minutes at 4.9 GB). At 128 G those three stay at the 64 held out and a
 * 96x96 detector or a CIFAR network takes the most. At 256 G PP-OCRv4's map IoU was 0.837 against 0.835 at 64
 * images, for a label-free prune of 9 min 44 s against 7 min 36 s: not worth it.
 */
export const COMPENSATION_MACS_UNLABELLED = 128e9;

/**
 * Distillation epochs without labels when --finetune-epochs is not given: as many as DISTIL_MACS_UNLABELLED of
 * the original's forward passes over the training images allow, at least 1 and at most this. One epoch of a
 * few hundred images is 10-20 steps, and distillation has barely started by then: on the trained yolov8n-width
 * SynthDet detector at 50% MACs (seed 7, 236 images), one epoch kept the compensated model's 86.1% of the
 * original's mAP50-95, 20 epochs 87.0% (89.0% with AdamW); the UNet segmenter's mIoU went from 97.4% to 100.0%.
 * PyTorch's own training from the same start and images (bench/detector_recovery_torch.py) is no faster to
 * converge: with labels, 86.6% after one epoch and 89.7% after 21 (docs/history.md, issue 29's eighth pass).
 */
export const DEFAULT_DISTIL_EPOCHS_UNLABELLED = 20;

/**
 * The forward-pass MACs (the original's at batch 1, times the training images, times the epochs) that bound
 * the default distillation epochs without labels. A step costs about four forward passes (the original's, the
 * pruned model's forward and backward), so 512 G is about two minutes on the 2-core development machine: a
 * 96x96 detector or a CIFAR network over a few hundred images takes all DEFAULT_DISTIL_EPOCHS_UNLABELLED, while
 * a 640x640 detector (4.4 G an image) or PP-OCRv4 (2.3 G) over 236 images stays at one epoch, inside issue 29's
 * ten minutes.
 */
export const DISTIL_MACS_UNLABELLED = 512e9;

/** σ of the perturbation of each group's keep-ratio multiplier, in log space. */
export const WIDTH_JITTER = 0.25;

/** The width sources `--widths search` compares. */
export const SEARCHED_WIDTHS: readonly WidthSource[] = ['structural', 'structural-bn', 'bn', 'uniform'];
