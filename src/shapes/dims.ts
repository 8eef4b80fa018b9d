import type { Dim } from '../ir/types.js';

/** A shape that contradicts an op's rules (mismatched broadcast, bad axis...). */
export class ShapeError extends Error {}

/** numpy broadcasting of two dims; a symbolic dim against a number other than 1 takes the number. */
export function broadcastDim(a: Dim, b: Dim): Dim {
  if (a === 1) return b;
  if (b === 1) return a;
  if (a === b) return a;
  if (typeof a === 'number' && typeof b === 'number')
    throw new ShapeError(`dims ${a} and ${b} do not broadcast`);
  if (typeof a === 'number') return a;
  if (typeof b === 'number') return b;
  return null;
}

export function broadcast(shapes: readonly (readonly Dim[])[]): Dim[] {
  const rank = Math.max(0, ...shapes.map((s) => s.length));
  const out: Dim[] = [];
  for (let i = 0; i < rank; i++) {
    let d: Dim = 1;
    for (const s of shapes) {
      const k = s.length - rank + i;
      d = broadcastDim(d, k >= 0 ? s[k]! : 1);
    }
    out.push(d);
  }
  return out;
}

export function normalizeAxis(axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (a < 0 || a >= rank) throw new ShapeError(`axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/**
 * A product of dims kept as a number times a multiset of symbols, so that N*64 / 64 gives back N (Reshape
 * with -1 and Flatten keep the symbolic batch). `unknown` marks a factor that is not even symbolic.
 */
export interface SymbolicProduct {
  coefficient: number;
  symbols: string[];
  unknown: boolean;
}

export function product(dims: readonly Dim[]): SymbolicProduct {
  const p: SymbolicProduct = { coefficient: 1, symbols: [], unknown: false };
  for (const d of dims) {
    if (typeof d === 'number') p.coefficient *= d;
    else if (typeof d === 'string') p.symbols.push(d);
    else p.unknown = true;
  }
  if (p.coefficient === 0) return { coefficient: 0, symbols: [], unknown: false };
  p.symbols.sort();
  return p;
}

/** The dim equal to `p`, when it is a number or a single symbol; else null. */
export function productDim(p: SymbolicProduct): Dim {
  if (p.unknown) return null;
  if (p.symbols.length === 0) return p.coefficient;
  if (p.symbols.length === 1 && p.coefficient === 1) return p.symbols[0]!;
  return null;
}

/** `a / b` when it is exact (b's symbols all appear in a and the coefficients divide). */
export function divide(a: SymbolicProduct, b: SymbolicProduct): SymbolicProduct | undefined {
  if (a.unknown || b.unknown || b.coefficient === 0 || a.coefficient % b.coefficient !== 0) return undefined;
  const symbols = [...a.symbols];
  for (const s of b.symbols) {
    const k = symbols.indexOf(s);
    if (k < 0) return undefined;
    symbols.splice(k, 1);
  }
  return { coefficient: a.coefficient / b.coefficient, symbols, unknown: false };
}

/** Two declarations of one dim merged: a number beats a symbol, a symbol beats unknown. */
export function mergeDim(inferred: Dim, declared: Dim): Dim {
  if (typeof inferred === 'number') return inferred;
  if (typeof declared === 'number') return declared;
  return inferred ?? declared;
}

/** Arithmetic on a possibly symbolic dim value (shape subgraphs): exact when numbers, identities kept. */
export function dimArith(op: string, a: Dim, b: Dim): Dim {
  if (typeof a === 'number' && typeof b === 'number') {
    switch (op) {
      case 'Add':
        return a + b;
      case 'Sub':
        return a - b;
      case 'Mul':
        return a * b;
      case 'Div':
        return b === 0 ? null : Math.trunc(a / b);
      case 'Max':
        return Math.max(a, b);
      case 'Min':
        return Math.min(a, b);
    }
    return null;
  }
  if ((op === 'Mul' && b === 1) || (op === 'Div' && b === 1) || ((op === 'Add' || op === 'Sub') && b === 0))
    return a;
  if ((op === 'Mul' && a === 1) || (op === 'Add' && a === 0)) return b;
  return null;
}
