/**
 * Sampling options (shared by both runners) and token sampling for the CPU reference runner: greedy (argmax, lowest id on ties) or temperature →
 * top-k → top-p (nucleus) → a draw from a seeded generator. Parameters and defaults are those of
 * the GPU runner's `SamplingOptions` (temperature 1, top-k off, top-p off, seed 0); the random
 * streams differ, so only greedy output is comparable across the two runners.
 */
import { TrtbError } from "../errors.ts";

export interface SamplingOptions {
  /** ≤ 0: greedy. Default 1. */
  temperature?: number;
  /** 0: off, 1: greedy. Default 0. */
  topK?: number;
  /** (0, 1): nucleus sampling; otherwise off. Default 1. */
  topP?: number;
  /** Random seed (default 0): the same seed gives the same tokens. */
  seed?: number;
}

/** Index of the largest value (the first one on ties), as the runners' greedy decoding. */
export function argmax(v: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < v.length; i++) if (v[i]! > v[best]!) best = i;
  return best;
}

/** Check sampling options and fill their defaults (`RUN_BAD_INPUT` naming the field); both runners use it. */
export function checkSampling(s: SamplingOptions): Required<SamplingOptions> {
  const temperature = s.temperature ?? 1;
  const topK = s.topK ?? 0;
  const topP = s.topP ?? 1;
  const seed = s.seed ?? 0;
  if (!(temperature >= 0) || !Number.isFinite(temperature)) throw new TrtbError("RUN_BAD_INPUT", `temperature must be ≥ 0, got ${temperature}`);
  if (!(Number.isInteger(topK) && topK >= 0)) throw new TrtbError("RUN_BAD_INPUT", `topK must be a non-negative integer, got ${topK}`);
  if (!(topP > 0 && topP <= 1)) throw new TrtbError("RUN_BAD_INPUT", `topP must be in (0, 1], got ${topP}`);
  if (!Number.isSafeInteger(seed) || seed < 0) throw new TrtbError("RUN_BAD_INPUT", `seed must be a non-negative integer, got ${seed}`);
  return { temperature, topK, topP, seed };
}

/** One sequence's sampler: `sample(logits)` picks the next id. */
export class Sampler {
  private readonly p: Required<SamplingOptions> | null;
  private state: number;

  constructor(sampling: "greedy" | SamplingOptions | undefined) {
    const p = sampling === undefined || sampling === "greedy" ? null : checkSampling(sampling);
    this.p = p && p.temperature > 0 && p.topK !== 1 ? p : null;
    const seed = p?.seed ?? 0;
    this.state = (seed ^ Math.floor(seed / 2 ** 32) ^ 0x9e3779b9) >>> 0;
  }

  get greedy(): boolean {
    return this.p === null;
  }

  /** mulberry32: a uniform draw in [0, 1). */
  private next(): number {
    this.state = (this.state + 0x6d2b79f5) >>> 0;
    let t = this.state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  }

  sample(logits: ArrayLike<number>): number {
    const p = this.p;
    if (!p) return argmax(logits);
    const V = logits.length;
    let order: number[];
    if (p.topK > 0 || p.topP < 1) {
      order = Array.from({ length: V }, (_, i) => i).sort((a, b) => logits[b]! - logits[a]! || a - b);
      if (p.topK > 0) order = order.slice(0, p.topK);
    } else order = Array.from({ length: V }, (_, i) => i);
    let mx = -Infinity;
    for (const i of order) mx = Math.max(mx, logits[i]!);
    const w = order.map((i) => Math.exp((logits[i]! - mx) / p.temperature));
    let total = w.reduce((a, b) => a + b, 0);
    if (p.topP < 1) {
      // Smallest prefix (by probability, descending) whose mass reaches top_p.
      let acc = 0;
      let n = 0;
      while (n < w.length && acc < p.topP * total) acc += w[n++]!;
      w.length = n;
      order.length = n;
      total = acc;
    }
    let u = this.next() * total;
    for (let i = 0; i < w.length; i++) {
      u -= w[i]!;
      if (u < 0) return order[i]!;
    }
    return order[w.length - 1]!;
  }
}
