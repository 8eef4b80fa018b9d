import type { Model } from '../ir/model.js';
import { dropDanglingValueInfo } from './dead-code.js';
import type { Pass, PassResult } from './pass-manager.js';

export const removeUnusedInitializers: Pass<void, PassResult & { removed: number }> = {
  name: 'unused-initializers',
  description: 'Removes initializers nothing reads (graph inputs that are also initializers are kept).',
  reads: ['initializers and their uses', 'graph inputs and outputs'],
  changes: ['graph.initializers', 'graph.valueInfo (dangling entries)'],
  run(model: Model) {
    const g = model.graph;
    const inputs = new Set(g.inputs);
    const outputs = new Set(g.outputs);
    const unused = g.initializers.filter((v) => v.uses.length === 0 && !outputs.has(v) && !inputs.has(v));
    for (const v of unused) g.removeInitializer(v);
    dropDanglingValueInfo(g);
    return { modified: unused.length > 0, removed: unused.length };
  },
};
