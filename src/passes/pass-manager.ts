import type { Model } from '../ir/model.js';
import { assertValid } from '../ir/verify.js';

/**
 * What every pass returns: whether it changed the IR (an analysis never does), plus its own figures. A pass that
 * builds a new model instead of editing its input returns it as `model`.
 */
export interface PassResult {
  modified: boolean;
  model?: Model;
}

/**
 * A compiler pass: a named transform or analysis over the IR. `reads` and `changes` say what it depends on
 * and what it may modify (an analysis changes nothing), so a reader of a pipeline sees the data flow.
 */
export interface Pass<Options = void, Result extends PassResult = PassResult> {
  name: string;
  description: string;
  reads: readonly string[];
  changes: readonly string[];
  run(model: Model, options: Options): Result;
}

export interface PassTiming {
  pass: string;
  ms: number;
}

export interface PassManagerOptions {
  /** Verify the IR after every pass that changes something. */
  debug?: boolean;
  /** Print each pass's time to stderr as it finishes (`--timings`). */
  timings?: boolean;
  log?: (line: string) => void;
}

/** Runs passes one at a time, timing each and (in debug mode) verifying the IR after it. */
export class PassManager {
  readonly timings: PassTiming[] = [];
  private readonly log: (line: string) => void;

  constructor(private readonly options: PassManagerOptions = {}) {
    this.log = options.log ?? ((line) => process.stderr.write(`${line}\n`));
  }

  run<O, R extends PassResult>(pass: Pass<O, R>, model: Model, options: O): R;
  run<R extends PassResult>(pass: Pass<void, R>, model: Model): R;
  run<O, R extends PassResult>(pass: Pass<O, R>, model: Model, options?: O): R {
    const start = performance.now();
    const result = pass.run(model, options as O);
    const ms = performance.now() - start;
    this.timings.push({ pass: pass.name, ms });
    if (this.options.timings) this.log(`[timing] ${pass.name.padEnd(28)} ${ms.toFixed(2).padStart(9)} ms`);
    if (this.options.debug && result.modified) assertValid(result.model ?? model, `pass '${pass.name}'`);
    return result;
  }

  /**
   * Runs the passes in order, again and again, until a whole round modifies nothing (or `maxRounds` is reached,
   * which is an error: a pass that always reports a change would otherwise loop). Returns the rounds run.
   */
  runToFixedPoint(passes: readonly Pass<void, PassResult>[], model: Model, maxRounds = 10): number {
    for (let round = 1; round <= maxRounds; round++) {
      let modified = false;
      for (const pass of passes) modified = this.run(pass, model).modified || modified;
      if (!modified) return round;
    }
    throw new Error(
      `passes ${passes.map((p) => p.name).join(', ')} still change the model after ${maxRounds} rounds`,
    );
  }

  /** Times a stage that is not a pass over the IR (loading, saving, a session run). */
  time<R>(stage: string, fn: () => R): R {
    const start = performance.now();
    const result = fn();
    const ms = performance.now() - start;
    this.timings.push({ pass: stage, ms });
    if (this.options.timings) this.log(`[timing] ${stage.padEnd(28)} ${ms.toFixed(2).padStart(9)} ms`);
    return result;
  }

  /** Records a stage timed by the caller (one that awaits, which `time` cannot measure). */
  record(stage: string, ms: number): void {
    this.timings.push({ pass: stage, ms });
    if (this.options.timings) this.log(`[timing] ${stage.padEnd(28)} ${ms.toFixed(2).padStart(9)} ms`);
  }

  totalMs(): number {
    return this.timings.reduce((a, t) => a + t.ms, 0);
  }
}
