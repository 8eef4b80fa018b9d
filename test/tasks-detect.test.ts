import assert from 'node:assert/strict';
import fc from 'fast-check';
import { execFileSync } from 'node:child_process';
import { describe, it } from 'node:test';
import { CocoAccumulator, decodeBoxes, nonMaxSuppression, taskFor } from '../src/tasks/index.js';
import type { Detection, GroundTruthBox } from '../src/tasks/index.js';

/**
 * pycocotools' COCOeval (bbox, area 'all', maxDets 100) written out from its source, on COCO-style dicts with
 * xywh boxes: the independent reference for CocoAccumulator. Structure follows cocoeval.py: evaluateImg per
 * (image, category), then accumulate over images, then summarize.
 */
interface CocoAnn {
  id: number;
  image_id: number;
  category_id: number;
  bbox: [number, number, number, number];
  score?: number;
}

function pycocoMaskIou(dt: CocoAnn[], gt: CocoAnn[]): number[][] {
  // maskApi.c bbIou with iscrowd = 0
  return dt.map((d) =>
    gt.map((g) => {
      const [dx, dy, dw, dh] = d.bbox;
      const [gx, gy, gw, gh] = g.bbox;
      const w = Math.min(dw + dx, gw + gx) - Math.max(dx, gx);
      if (w <= 0) return 0;
      const h = Math.min(dh + dy, gh + gy) - Math.max(dy, gy);
      if (h <= 0) return 0;
      const i = w * h;
      const u = dw * dh + gw * gh - i;
      return i / u;
    }),
  );
}

function linspace(a: number, b: number, n: number): number[] {
  const step = (b - a) / (n - 1);
  const y = Array.from({ length: n }, (_, i) => i * step + a);
  y[n - 1] = b;
  return y;
}

function pycocoEval(gts: CocoAnn[], dts: CocoAnn[], imgIds: number[], catIds: number[], maxDet = 100) {
  const iouThrs = linspace(0.5, 0.95, Math.round((0.95 - 0.5) / 0.05) + 1);
  const recThrs = linspace(0.0, 1.0, Math.round((1.0 - 0.0) / 0.01) + 1);
  const key = (i: number, c: number) => `${i}_${c}`;
  const gtsBy = new Map<string, CocoAnn[]>();
  const dtsBy = new Map<string, CocoAnn[]>();
  for (const g of gts)
    gtsBy.set(key(g.image_id, g.category_id), [...(gtsBy.get(key(g.image_id, g.category_id)) ?? []), g]);
  for (const d of dts)
    dtsBy.set(key(d.image_id, d.category_id), [...(dtsBy.get(key(d.image_id, d.category_id)) ?? []), d]);
  type E = { dtScores: number[]; dtMatches: number[][]; dtIgnore: boolean[][]; gtIgnore: number[] } | null;
  const evalImg = (imgId: number, catId: number): E => {
    let gt = gtsBy.get(key(imgId, catId)) ?? [];
    let dt = dtsBy.get(key(imgId, catId)) ?? [];
    if (gt.length === 0 && dt.length === 0) return null;
    const gtIgnoreAll = gt.map(() => 0); // no crowd, area 'all'
    const gtind = gtIgnoreAll.map((_, i) => i).sort((a, b) => gtIgnoreAll[a]! - gtIgnoreAll[b]!);
    gt = gtind.map((i) => gt[i]!);
    const dtind = dt.map((_, i) => i).sort((a, b) => -dt[a]!.score! - -dt[b]!.score!);
    dt = dtind.slice(0, maxDet).map((i) => dt[i]!);
    const ious = pycocoMaskIou(dt, gt);
    const T = iouThrs.length;
    const gtm = Array.from({ length: T }, () => gt.map(() => 0));
    const dtm = Array.from({ length: T }, () => dt.map(() => 0));
    const gtIg = gtind.map((i) => gtIgnoreAll[i]!);
    const dtIg = Array.from({ length: T }, () => dt.map(() => false));
    iouThrs.forEach((t, tind) => {
      dt.forEach((d, dind) => {
        let iou = Math.min(t, 1 - 1e-10);
        let m = -1;
        gt.forEach((_, gind) => {
          if (gtm[tind]![gind]! > 0) return; // not crowd
          if (m > -1 && gtIg[m] === 0 && gtIg[gind] === 1) return;
          if (ious[dind]![gind]! < iou) return;
          iou = ious[dind]![gind]!;
          m = gind;
        });
        if (m === -1) return;
        dtIg[tind]![dind] = gtIg[m] === 1;
        dtm[tind]![dind] = gt[m]!.id;
        gtm[tind]![m] = d.id;
      });
    });
    return { dtScores: dt.map((d) => d.score!), dtMatches: dtm, dtIgnore: dtIg, gtIgnore: gtIg };
  };
  // accumulate: precision[T][R][K], -1 where a category has no ground truth
  const precision = iouThrs.map(() => recThrs.map(() => catIds.map(() => -1)));
  catIds.forEach((catId, k) => {
    const E = imgIds.map((i) => evalImg(i, catId)).filter((e): e is NonNullable<E> => e !== null);
    if (E.length === 0) return;
    const dtScores = E.flatMap((e) => e.dtScores.slice(0, maxDet));
    const inds = dtScores.map((_, i) => i).sort((a, b) => -dtScores[a]! - -dtScores[b]!); // mergesort
    const npig = E.flatMap((e) => e.gtIgnore).filter((g) => g === 0).length;
    if (npig === 0) return;
    iouThrs.forEach((_, t) => {
      const dtm = E.flatMap((e) => e.dtMatches[t]!.slice(0, maxDet));
      const dtIg = E.flatMap((e) => e.dtIgnore[t]!.slice(0, maxDet));
      let tpSum = 0;
      let fpSum = 0;
      const rc: number[] = [];
      const pr: number[] = [];
      for (const i of inds) {
        const tp = dtm[i] !== 0 && !dtIg[i];
        const fp = dtm[i] === 0 && !dtIg[i];
        tpSum += tp ? 1 : 0;
        fpSum += fp ? 1 : 0;
        rc.push(tpSum / npig);
        pr.push(tpSum / (fpSum + tpSum + 2.220446049250313e-16));
      }
      const nd = rc.length;
      for (let i = nd - 1; i > 0; i--) if (pr[i]! > pr[i - 1]!) pr[i - 1] = pr[i]!;
      const q = recThrs.map(() => 0);
      for (let ri = 0; ri < recThrs.length; ri++) {
        let pi = 0; // np.searchsorted(rc, recThrs, side='left')
        while (pi < nd && rc[pi]! < recThrs[ri]!) pi++;
        if (pi >= nd) break;
        q[ri] = pr[pi]!;
      }
      q.forEach((v, ri) => (precision[t]![ri]![k] = v));
    });
  });
  const summarize = (ts: number[]) => {
    const s = ts.flatMap((t) => precision[t]!.flatMap((r) => r)).filter((v) => v > -1);
    return s.length ? s.reduce((a, b) => a + b, 0) / s.length : -1;
  };
  return { map5095: summarize(iouThrs.map((_, i) => i)), map50: summarize([0]) };
}

/** Deterministic uniform floats in [0, 1). */
function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return s / 2 ** 32;
  };
}

/** Images with ground-truth boxes, and detections: jittered copies (true positives at varied IoU) and clutter. */
function randomScene(seed: number, images: number, classes: number) {
  const r = rng(seed);
  const perImage: { gts: GroundTruthBox[]; dets: Detection[] }[] = [];
  for (let i = 0; i < images; i++) {
    const gts: GroundTruthBox[] = [];
    const dets: Detection[] = [];
    const nGt = Math.floor(r() * 6);
    for (let g = 0; g < nGt; g++) {
      const x = r() * 80;
      const y = r() * 80;
      const box: [number, number, number, number] = [x, y, x + 4 + r() * 30, y + 4 + r() * 30];
      const cls = Math.floor(r() * classes);
      gts.push({ box, cls });
      const copies = Math.floor(r() * 3);
      for (let c = 0; c < copies; c++) {
        const j = () => (r() - 0.5) * 8;
        dets.push({
          box: [box[0] + j(), box[1] + j(), box[2] + j(), box[3] + j()],
          score: Math.round(r() * 20) / 20, // ties on purpose
          cls: r() < 0.85 ? cls : Math.floor(r() * classes),
        });
      }
    }
    const clutter = Math.floor(r() * 4);
    for (let c = 0; c < clutter; c++) {
      const x = r() * 90;
      const y = r() * 90;
      dets.push({
        box: [x, y, x + 2 + r() * 20, y + 2 + r() * 20],
        score: r(),
        cls: Math.floor(r() * classes),
      });
    }
    perImage.push({ gts, dets });
  }
  return perImage;
}

function toCoco(scene: ReturnType<typeof randomScene>) {
  const gts: CocoAnn[] = [];
  const dts: CocoAnn[] = [];
  const xywh = (b: number[]): [number, number, number, number] => [
    b[0]!,
    b[1]!,
    b[2]! - b[0]!,
    b[3]! - b[1]!,
  ];
  scene.forEach(({ gts: g, dets: d }, i) => {
    for (const x of g)
      gts.push({ id: gts.length + 1, image_id: i + 1, category_id: x.cls + 1, bbox: xywh(x.box) });
    for (const x of d)
      dts.push({
        id: dts.length + 1,
        image_id: i + 1,
        category_id: x.cls + 1,
        bbox: xywh(x.box),
        score: x.score,
      });
  });
  return { gts, dts };
}

const pycocotools = (() => {
  try {
    execFileSync('/usr/bin/python3', ['-c', 'import pycocotools'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

describe('COCO mAP against an independent reference', () => {
  it('pycocotools written out: 40 random scenes, mAP@0.5 and mAP@0.5:0.95 equal to 1e-12', (t) => {
    let worst = 0;
    for (let seed = 1; seed <= 40; seed++) {
      const classes = 1 + (seed % 4);
      const scene = randomScene(seed, 3 + (seed % 7), classes);
      const acc = new CocoAccumulator({ classes });
      for (const { dets, gts } of scene) acc.add(dets, gts);
      const ours = acc.result();
      const { gts, dts } = toCoco(scene);
      const cats = Array.from({ length: classes }, (_, c) => c + 1);
      const ref = pycocoEval(
        gts,
        dts,
        scene.map((_, i) => i + 1),
        cats,
      );
      if (ref.map50 === -1) {
        assert.equal(ours.map50, null);
        continue;
      }
      const d = Math.max(Math.abs(ours.map50! - ref.map50), Math.abs(ours.map5095! - ref.map5095));
      worst = Math.max(worst, d);
      assert.ok(
        d < 1e-12,
        `seed ${seed}: ours ${ours.map50}/${ours.map5095}, reference ${ref.map50}/${ref.map5095}`,
      );
    }
    t.diagnostic(`max |mAP - reference| = ${worst.toExponential(2)}`);
  });

  it(
    'Debian python3-pycocotools on the same scenes',
    {
      skip: pycocotools
        ? false
        : 'python3-pycocotools is not installed (apt-get install -y python3-pycocotools)',
    },
    (t) => {
      let worst = 0;
      for (let seed = 1; seed <= 10; seed++) {
        const classes = 1 + (seed % 4);
        const scene = randomScene(seed, 4, classes);
        const { gts, dts } = toCoco(scene);
        if (gts.length === 0 || dts.length === 0) continue;
        const acc = new CocoAccumulator({ classes });
        for (const { dets, gts: g } of scene) acc.add(dets, g);
        const ours = acc.result();
        const script = `
import json, sys, io, contextlib
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval
d = json.load(sys.stdin)
gt = COCO()
gt.dataset = {'images': [{'id': i} for i in d['imgs']], 'categories': [{'id': c} for c in d['cats']],
  'annotations': [dict(a, area=a['bbox'][2]*a['bbox'][3], iscrowd=0) for a in d['gts']]}
with contextlib.redirect_stdout(io.StringIO()):
  gt.createIndex(); dt = gt.loadRes(d['dts']); e = COCOeval(gt, dt, 'bbox'); e.evaluate(); e.accumulate(); e.summarize()
print(json.dumps([e.stats[0], e.stats[1]]))`;
        const input = JSON.stringify({
          imgs: scene.map((_, i) => i + 1),
          cats: Array.from({ length: classes }, (_, c) => c + 1),
          gts,
          dts,
        });
        const [m5095, m50] = JSON.parse(
          execFileSync('/usr/bin/python3', ['-c', script], { input }).toString(),
        );
        worst = Math.max(worst, Math.abs(ours.map5095! - m5095), Math.abs(ours.map50! - m50));
      }
      t.diagnostic(`max |mAP - pycocotools| = ${worst.toExponential(2)}`);
      assert.ok(worst < 1e-9);
    },
  );

  it('hand cases: perfect detections give 1 exactly (pycocotools: 1 - 2.2e-16), none give 0, a class without ground truth is left out', () => {
    const g: GroundTruthBox[] = [{ box: [0, 0, 10, 10], cls: 0 }];
    const acc = new CocoAccumulator({ classes: 2 });
    acc.add(
      [
        { box: [0, 0, 10, 10], score: 0.9, cls: 0 },
        { box: [50, 50, 60, 60], score: 0.8, cls: 1 },
      ],
      g,
    );
    assert.equal(acc.result().map5095, 1);
    const none = new CocoAccumulator({ classes: 1 });
    none.add([], g);
    assert.equal(none.result().map50, 0);
    const empty = new CocoAccumulator({ classes: 1 });
    empty.add([{ box: [0, 0, 1, 1], score: 0.5, cls: 0 }], []);
    assert.equal(empty.result().map50, null);
    // IoU 0.5 exactly matches at 0.5 only: AP@0.5 = 1, the other nine thresholds 0.
    const half = new CocoAccumulator({ classes: 1 });
    half.add([{ box: [0, 0, 10, 20], score: 0.9, cls: 0 }], [{ box: [0, 0, 10, 10], cls: 0 }]);
    assert.equal(half.result().map50, 1);
    assert.ok(Math.abs(half.result().map5095! - 0.1) < 1e-15);
  });
});

describe('non-maximum suppression (ultralytics validation: conf 0.001, IoU 0.7, class-aware)', () => {
  const opts = { conf: 0.001, iou: 0.7, maxDet: 300 };
  it('drops a lower box of the same class above IoU 0.7, keeps one at exactly 0.7 and one of another class', () => {
    const a: Detection = { box: [0, 0, 10, 10], score: 0.9, cls: 0 };
    const over: Detection = { box: [0, 0, 10, 12], score: 0.8, cls: 0 }; // IoU 100/120 = 0.83
    const exact: Detection = { box: [0, 0, 7, 10], score: 0.7, cls: 0 }; // IoU 70/100 = 0.7
    const other: Detection = { box: [0, 0, 10, 12], score: 0.6, cls: 1 };
    const kept = nonMaxSuppression([over, exact, a, other], opts);
    assert.deepEqual(kept, [a, exact, other]);
  });
  it('a candidate needs a score strictly above conf; at most maxDet survive, best first', () => {
    const dets = Array.from({ length: 10 }, (_, i) => ({
      box: [i * 20, 0, i * 20 + 10, 10] as [number, number, number, number],
      score: (i + 1) / 10,
      cls: 0,
    }));
    assert.equal(nonMaxSuppression(dets, { ...opts, conf: 0.5 }).length, 5);
    const top = nonMaxSuppression(dets, { ...opts, maxDet: 3 });
    assert.deepEqual(
      top.map((d) => d.score),
      [1, 0.9, 0.8],
    );
  });
  it('suppression is by kept boxes only: a suppressed box suppresses nothing', () => {
    const a: Detection = { box: [0, 0, 10, 10], score: 0.9, cls: 0 };
    const b: Detection = { box: [2, 0, 12, 10], score: 0.8, cls: 0 }; // IoU(a,b) = 80/120 = 0.67: kept
    const c: Detection = { box: [1, 0, 11, 10], score: 0.7, cls: 0 }; // IoU(a,c) = 0.82: dropped
    assert.deepEqual(nonMaxSuppression([a, b, c], opts), [a, b]);
  });
});

describe('decoding the ultralytics export layout', () => {
  // Three anchors, two classes: cx cy w h s0 s1 per anchor.
  const rows = [
    [10, 10, 4, 6, 0.9, 0.0005],
    [30, 20, 8, 8, 0.2, 0.6],
    [50, 50, 2, 2, 0.0001, 0.0002],
  ];
  const channelsFirst = new Float32Array(6 * 3);
  rows.forEach((r, a) => r.forEach((v, c) => (channelsFirst[c * 3 + a] = v)));
  const anchorsFirst = Float32Array.from(rows.flat());
  it('[1, 4+nc, N] and [1, N, 4+nc] give the same boxes, corners in input pixels', () => {
    const layout = { task: 'detect' as const };
    const a = decodeBoxes(
      { data: channelsFirst, dims: [1, 6, 3] },
      0,
      { ...layout, boxes: '[1,4+nc,N]' },
      0.001,
    );
    const b = decodeBoxes(
      { data: anchorsFirst, dims: [1, 3, 6] },
      0,
      { ...layout, boxes: '[1,N,4+nc]' },
      0.001,
    );
    assert.deepEqual(a, b);
    assert.equal(a.length, 3);
    assert.deepEqual(a[0]!.box, [8, 7, 12, 13]);
    assert.equal(a[0]!.cls, 0);
    assert.deepEqual(
      a.slice(1).map((d) => d.cls),
      [0, 1],
    ); // multi-label: anchor 1 under both classes
  });
  it('past the NMS cap, decoding keeps exactly the candidates NMS would take (ties included)', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 60 }),
        fc.integer({ min: 1, max: 4 }),
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 0, max: 2 ** 31 - 1 }),
        (anchors, nc, limit, seed) => {
          let x = seed;
          const next = () => (x = (Math.imul(x, 1103515245) + 12345) >>> 0) / 2 ** 32;
          const data = new Float32Array((4 + nc) * anchors);
          for (let a = 0; a < anchors; a++) {
            data[a] = 100 * next();
            data[anchors + a] = 100 * next();
            data[2 * anchors + a] = 1 + 20 * next();
            data[3 * anchors + a] = 1 + 20 * next();
            // Scores on a coarse grid, so that many tie at the cap.
            for (let c = 0; c < nc; c++) data[(4 + c) * anchors + a] = Math.floor(next() * 8) / 8;
          }
          const output = { data, dims: [1, 4 + nc, anchors] };
          const layout = { task: 'detect' as const, boxes: '[1,4+nc,N]' as const };
          const opts = { conf: 0.1, iou: 0.5, maxDet: 300, maxNms: limit };
          const capped = decodeBoxes(output, 0, layout, opts.conf, limit);
          const all = decodeBoxes(output, 0, layout, opts.conf, Infinity);
          assert.ok(capped.length <= limit);
          assert.deepEqual(nonMaxSuppression(capped, opts), nonMaxSuppression(all, opts));
        },
      ),
      { numRuns: 300, seed: 29 },
    );
  });
  it('the axis order is read from the shape (the longer axis holds the boxes), and detect checks it', () => {
    const task = taskFor('detect');
    const tensor = { data: new Float32Array(7 * 84), dims: [1, 7, 84] };
    const layout = task.complete(tensor, { task: 'detect' });
    assert.equal(layout.boxes, '[1,4+nc,N]');
    assert.equal(layout.classes, 3);
    const transposed = task.complete({ data: tensor.data, dims: [1, 84, 7] }, { task: 'detect' });
    assert.equal(transposed.boxes, '[1,N,4+nc]');
    assert.throws(
      () =>
        task.check({ data: new Float32Array(4), dims: [1, 4] }, { task: 'detect', output: 'o' }, 'm.onnx'),
      /a detector's is/,
    );
    assert.throws(
      () => task.check(tensor, { task: 'detect', output: 'o', classes: 80 }, 'm.onnx'),
      /not 4 \+ 80 classes/,
    );
  });
});

describe('YOLO labels onto the model input', () => {
  it("through ultralytics' letterbox: a 128x64 image into 64x64 is scaled by 1/2 and padded 16 above and below", async () => {
    const { inputGeometry, labelsToInput } = await import('../src/tasks/labels.js');
    const spec = {
      channels: 3 as const,
      channelOrder: 'rgb' as const,
      scale: 255,
      mean: [0, 0, 0],
      std: [1, 1, 1],
      resize: 'letterbox' as const,
      size: [64, 64] as [number, number],
    };
    const g = inputGeometry(128, 64, spec);
    assert.deepEqual([g.width, g.height, g.offsetX, g.offsetY], [64, 64, 0, 16]);
    const boxes = labelsToInput([{ cls: 1, cx: 0.5, cy: 0.5, w: 0.5, h: 0.5 }], g);
    assert.deepEqual(boxes, [{ box: [16, 24, 48, 40], cls: 1 }]);
  });
});
