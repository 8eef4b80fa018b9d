import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import fc from 'fast-check';
import {
  AttributeType,
  DataType,
  Graph,
  Model,
  Node,
  Tensor,
  Value,
  loadModel,
  tensorType,
  verifyModel,
  type Use,
} from '../src/ir/index.js';
import { FIXTURES } from './helpers.js';

const f32 = (name: string, dims = [2]): Value => new Value(name, tensorType(DataType.FLOAT, dims));
const useKeys = (v: Value): string[] => v.uses.map((u: Use) => `${u.node.name}:${u.index}`).sort();

/** x -> a = Relu(x) -> b = Add(a, a) -> y = Mul(b, x); the output is y. */
function chain(): {
  model: Model;
  g: Graph;
  x: Value;
  a: Value;
  b: Value;
  y: Value;
  relu: Node;
  add: Node;
  mul: Node;
} {
  const g = new Graph();
  const x = f32('x');
  const a = f32('a');
  const b = f32('b');
  const y = f32('y');
  g.inputs.push(x);
  const relu = g.addNode(new Node('Relu', [x], [a], 'relu'));
  const add = g.addNode(new Node('Add', [a, a], [b], 'add'));
  const mul = g.addNode(new Node('Mul', [b, x], [y], 'mul'));
  g.outputs.push(y);
  return { model: new Model(g), g, x, a, b, y, relu, add, mul };
}

/** The use lists recomputed from scratch from node inputs (the reference the incremental lists must match). */
function recomputedUses(g: Graph): Map<Value, string[]> {
  const out = new Map<Value, string[]>();
  for (const n of g.allNodes())
    n.inputs.forEach((v, i) => {
      if (v) out.set(v, [...(out.get(v) ?? []), `${n.name}:${i}`]);
    });
  return out;
}

function assertUsesConsistent(g: Graph, values: Value[]): void {
  const expected = recomputedUses(g);
  for (const v of values) assert.deepEqual(useKeys(v), (expected.get(v) ?? []).sort(), `uses of '${v.name}'`);
}

test('use lists follow setInput, appendInput, truncateInputs and dropInputs', () => {
  const { model, g, x, a, b, add, mul } = chain();
  assert.deepEqual(useKeys(a), ['add:0', 'add:1']);
  add.setInput(1, x);
  assert.deepEqual(useKeys(a), ['add:0']);
  assert.deepEqual(useKeys(x), ['add:1', 'mul:1', 'relu:0']);
  add.setInput(0, undefined);
  assert.deepEqual(useKeys(a), []);
  mul.appendInput(a);
  assert.deepEqual(useKeys(a), ['mul:2']);
  mul.truncateInputs(2);
  assert.deepEqual(useKeys(a), []);
  assert.equal(mul.inputs.length, 2);
  add.setInput(0, a);
  add.dropInputs();
  assert.deepEqual(useKeys(a), []);
  assert.equal(add.inputs.length, 0);
  assertUsesConsistent(g, [x, a, b]);
  assert.ok(model);
});

test('replaceAllUsesWith moves node uses, graph outputs and subgraph captures', () => {
  const { model, g, x, a, b, y } = chain();
  // An If whose branch reads `a` from the outer scope and returns `a` itself as its output.
  const thenG = new Graph();
  const t = f32('t');
  thenG.addNode(new Node('Neg', [a], [t], 'neg_in_then'));
  thenG.outputs.push(t);
  const elseG = new Graph();
  elseG.outputs.push(a);
  const cond = new Value('cond', tensorType(DataType.BOOL, []));
  g.inputs.push(cond);
  const ifOut = f32('if_out');
  const ifNode = new Node('If', [cond], [ifOut], 'if');
  ifNode.attributes.set('then_branch', { type: AttributeType.GRAPH, value: thenG });
  ifNode.attributes.set('else_branch', { type: AttributeType.GRAPH, value: elseG });
  g.addNode(ifNode);
  g.outputs.push(ifOut, a);
  assert.equal(thenG.parent, g);
  assert.deepEqual(verifyModel(model), []);

  const a2 = f32('a2');
  g.addNode(new Node('Sigmoid', [x], [a2], 'sig'), g.nodes[1]);
  g.replaceAllUsesWith(a, a2);
  assert.deepEqual(a.uses, []);
  assert.deepEqual(useKeys(a2), ['add:0', 'add:1', 'neg_in_then:0']);
  assert.equal(g.outputs[2], a2);
  assert.equal(elseG.outputs[0], a2, 'a subgraph output naming the outer value follows it');
  assert.deepEqual(verifyModel(model), []);
  assertUsesConsistent(g, [x, a, a2, b, y]);
});

test('removeNode refuses while outputs are used, detaches inputs when it succeeds', () => {
  const { model, g, x, a, b, relu, add, mul } = chain();
  assert.throws(() => g.removeNode(relu), /still used/);
  assert.throws(() => g.removeNode(mul), /still used/, 'a graph output counts as a use');
  g.replaceAllUsesWith(b, x);
  g.removeNode(add);
  assert.equal(add.graph, undefined);
  assert.deepEqual(a.uses, []);
  g.removeNode(relu);
  assert.deepEqual(useKeys(x), ['mul:0', 'mul:1']);
  assert.deepEqual(verifyModel(model), []);
  assert.throws(() => g.removeNode(relu), /not in graph/);
});

test('iterNodes tolerates removal of the current and of later nodes, and does not visit nodes added meanwhile', () => {
  const { g, x, y } = chain();
  const seen: string[] = [];
  for (const n of g.iterNodes()) {
    seen.push(n.name);
    if (n.name === 'relu') {
      // Rewire everything to x and remove relu and add (add comes later in the iteration).
      g.replaceAllUsesWith(n.output(), x);
      const add = g.nodeByName('add')!;
      g.replaceAllUsesWith(add.output(), x);
      g.removeNode(add);
      g.removeNode(n);
      g.addNode(new Node('Identity', [x], [f32('late')], 'late'));
    }
  }
  assert.deepEqual(seen, ['relu', 'mul']);
  assert.deepEqual(
    g.nodes.map((n) => n.name),
    ['mul', 'late'],
  );
  assert.equal(g.outputs[0], y);
});

test('use lists match a from-scratch recount after random edits (property)', () => {
  fc.assert(
    fc.property(
      fc.array(
        fc.tuple(
          fc.nat(20),
          fc.nat(3),
          fc.nat(20),
          fc.constantFrom('set', 'rauw', 'remove', 'append', 'truncate'),
        ),
        { maxLength: 40 },
      ),
      (edits) => {
        const g = new Graph();
        const inputs = [f32('i0'), f32('i1')];
        g.inputs.push(...inputs);
        const values = [...inputs];
        for (let k = 0; k < 12; k++) {
          const out = f32(`v${k}`);
          g.addNode(
            new Node('Add', [values[k % values.length], values[(k * 7 + 1) % values.length]], [out], `n${k}`),
          );
          values.push(out);
        }
        for (const [pick, slot, other, op] of edits) {
          const nodes = g.nodes;
          if (nodes.length === 0) break;
          const node = nodes[pick % nodes.length]!;
          // Only values defined before the node keep the graph acyclic.
          const position = values.indexOf(node.output());
          const earlier = values
            .slice(0, Math.max(1, position))
            .filter((e) => e.producer?.graph !== undefined || !e.producer);
          const v = earlier[other % earlier.length]!;
          if (op === 'set') node.setInput(slot % Math.max(1, node.inputs.length + 1), v);
          else if (op === 'append') node.appendInput(slot === 0 ? undefined : v);
          else if (op === 'truncate') node.truncateInputs(slot);
          else if (op === 'rauw') {
            const replacement = inputs[other % 2]!;
            g.replaceAllUsesWith(node.output(), replacement);
          } else if (node.output().uses.length === 0) g.removeNode(node);
        }
        assertUsesConsistent(g, values);
        assert.deepEqual(verifyModel(new Model(g)), []);
      },
    ),
    { seed: 42, numRuns: 300 },
  );
});

test('verifyModel reports each broken invariant', () => {
  const cases: [string, (c: ReturnType<typeof chain>) => void, RegExp][] = [
    ['stale use', (c) => (c.a.uses as Use[]).push({ node: c.mul, index: 0 }), /stale use by 'mul' input 0/],
    ['missing use', (c) => (c.a.uses as Use[]).splice(0, 1), /lacks the use by 'add' input 0/],
    ['use before definition', (c) => c.g.nodes.reverse(), /used before it is defined/],
    ['duplicate value name', (c) => (c.b.name = 'a'), /'a' is defined twice/],
    ['duplicate node name', (c) => (c.mul.name = 'add'), /node name 'add' is used twice/],
    ['undefined graph output', (c) => c.g.outputs.push(f32('ghost')), /graph output 'ghost' is not defined/],
    ['node not pointing back', (c) => (c.add.graph = undefined), /does not point back to its graph/],
    [
      'removed without detaching',
      (c) => {
        c.g.replaceAllUsesWith(c.b, c.x);
        c.g.removeNode(c.add, false);
      },
      /used by 'add', which is not in any graph/,
    ],
    ['wrong producer index', (c) => (c.b.producerIndex = 3), /does not point back to its producer 'add'/],
    [
      'initializer dims disagree',
      (c) => {
        const w = f32('w', [3]);
        c.g.addInitializer(w, Tensor.fromArray(DataType.FLOAT, [2], new Float32Array(2)));
      },
      /initializer 'w' has dims \[2\]/,
    ],
  ];
  for (const [what, breakIt, message] of cases) {
    const c = chain();
    assert.deepEqual(verifyModel(c.model), [], what);
    breakIt(c);
    const problems = verifyModel(c.model);
    assert.ok(
      problems.some((p) => message.test(p)),
      `${what}: ${JSON.stringify(problems)}`,
    );
  }
});

test('verifyModel accepts every fixture as loaded', () => {
  for (const name of ['resnet_a', 'mobilenetv2', 'densenet', 'senet', 'vgg', 'fmnist_cnn', 'resnet_b']) {
    assert.deepEqual(verifyModel(loadModel(path.join(FIXTURES, `${name}.onnx`))), [], name);
  }
});

test('uniqueName avoids names of values and nodes anywhere in the tree, including ones added after the first call', () => {
  const { g, x } = chain();
  const sub = new Graph();
  sub.addNode(new Node('Identity', [x], [f32('inner')], 'inner_node'));
  sub.outputs.push(sub.nodes[0]!.output());
  const loop = new Node('If', [x], [f32('outer')], 'holder');
  loop.attributes.set('then_branch', { type: AttributeType.GRAPH, value: sub });
  g.addNode(loop);
  assert.equal(g.uniqueName('fresh'), 'fresh');
  assert.equal(g.uniqueName('fresh'), 'fresh_1', 'a returned name is taken');
  assert.equal(g.uniqueName('a'), 'a_1');
  assert.equal(g.uniqueName('relu'), 'relu_1');
  assert.equal(sub.uniqueName('inner'), 'inner_1', 'a subgraph shares its root graph names');
  assert.equal(g.uniqueName('inner_node'), 'inner_node_1');
  // Names that arrive after the cache was built.
  g.addNode(new Node('Relu', [x], [f32('later')], 'later_node'));
  g.addInitializer(f32('late_init', [1]), Tensor.fromArray(DataType.FLOAT, [1], new Float32Array(1)));
  assert.equal(g.uniqueName('later'), 'later_1');
  assert.equal(g.uniqueName('later_node'), 'later_node_1');
  assert.equal(g.uniqueName('late_init'), 'late_init_1');
});

test('verifyModel names the nodes of a cycle', () => {
  const g = new Graph();
  const x = new Value('x');
  g.inputs.push(x);
  const [a, b, c] = [new Value('a'), new Value('b'), new Value('c')];
  g.addNode(new Node('Add', [x, c], [a], 'first'));
  g.addNode(new Node('Relu', [a], [b], 'second'));
  g.addNode(new Node('Relu', [b], [c], 'third'));
  g.outputs.push(c);
  const problems = verifyModel(new Model(g));
  const cycles = problems.filter((p) => p.startsWith('cycle through nodes'));
  assert.equal(cycles.length, 1, problems.join('\n'));
  for (const n of ['first', 'second', 'third']) assert.ok(cycles[0]!.includes(`'${n}'`), cycles[0]);
  // A merely unsorted (acyclic) graph is reported as out of order, not as a cycle.
  const h = new Graph();
  const y = new Value('y');
  h.inputs.push(y);
  const [p, q] = [new Value('p'), new Value('q')];
  h.addNode(new Node('Relu', [p], [q], 'late'));
  h.addNode(new Node('Relu', [y], [p], 'early'));
  h.outputs.push(q);
  const unsorted = verifyModel(new Model(h));
  assert.ok(unsorted.some((m) => m.includes('used before it is defined')));
  assert.ok(!unsorted.some((m) => m.startsWith('cycle')));
});
