/**
 * AWQ's clipping search (llm-awq `auto_clip`) and the int4 group fake-quantization the search and
 * the clip share; run per rank at quantization time by the calibrated W4A16_AWQ / W4A8_AWQ path
 * (int4-awq.ts), from the Gram blocks of the smoothed input kept in the calibration plan (one-pass
 * plans: each (row, group) on its own block, as llm-awq) or from the full input Gram (layer-by-layer
 * plans: each row's groups chosen together on the row's whole output error, clipRowFull).
 */
import { bitsToF32, f32Bits } from "../numeric.ts";
import { type FloatDType, roundToDtypeBits } from "./kernel.ts";

const f32 = Math.fround;

/** Clip ratios 1 − k/20, k = 0 … 9 (llm-awq max_shrink 0.5, n_grid 20). */
export const AWQ_CLIP_RATIOS = Array.from({ length: 10 }, (_, k) => 1 - k / 20);


/** v rounded to the dtype (f32 value). */
export const toDtype = (v: number, dt: FloatDType) => bitsToF32(roundToDtypeBits(f32Bits(f32(v)), dt));

/** Fake-quantize one group (int4, amax/7 scale stored in `dt`, RNE) in place into `out`; `amax` given (clipping). */
export function fakeQuantGroup(w: Float32Array | Float64Array, off: number, G: number, amax: number, dt: FloatDType, out: Float64Array, outOff: number): void {
  let s = toDtype(f32(amax / 7), dt);
  if (s === 0) s = 1;
  for (let i = 0; i < G; i++) {
    let x = w[off + i]!;
    if (x > amax) x = amax;
    else if (x < -amax) x = -amax;
    let y = f32(x / s);
    y = y < -8 ? -8 : y > 7 ? 7 : y;
    const fl = Math.floor(y);
    const fr = y - fl;
    const r = fr > 0.5 ? fl + 1 : fr < 0.5 ? fl : fl % 2 === 0 ? fl : fl + 1;
    out[outOff + i] = r * s;
  }
}

/**
 * Clip search for one row of a (smoothed) weight, in place: each group's values are clamped to
 * r·amax for the r of AWQ_CLIP_RATIOS with the least Δᵀ G_gg Δ. `blocks` are the row's groups'
 * Gram blocks (group g at blocks[(g0 + g)·G²]).
 */
export function clipRowToBlocks(w: Float32Array, off: number, n: number, G: number, blocks: Float64Array, g0: number, dt: FloatDType): void {
  const q = new Float64Array(G);
  const d = new Float64Array(G);
  for (let g = 0; g < n / G; g++) {
    const o = off + g * G;
    let amax = 0;
    for (let i = 0; i < G; i++) amax = Math.max(amax, Math.abs(w[o + i]!));
    if (amax === 0) continue;
    const B = (g0 + g) * G * G;
    let bestR = 1, bestL = Infinity;
    for (const r of AWQ_CLIP_RATIOS) {
      const m = f32(amax * r);
      fakeQuantGroup(w, o, G, m, dt, q, 0);
      for (let i = 0; i < G; i++) d[i] = w[o + i]! - q[i]!;
      let loss = 0;
      for (let i = 0; i < G; i++) {
        let acc = 0;
        for (let j = 0; j < G; j++) acc += blocks[B + i * G + j]! * d[j]!;
        loss += d[i]! * acc;
      }
      if (loss < bestL) { bestL = loss; bestR = r; }
    }
    if (bestR < 1) {
      const m = f32(amax * bestR);
      for (let i = 0; i < G; i++) w[o + i] = Math.min(m, Math.max(-m, w[o + i]!));
    }
  }
}

/**
 * The Gram of x·pre on the columns c0 … c0 + n of an [N, N] Gram, [n, n] f64: gram[a, b]·pre[a]·pre[b]
 * (`pre` indexed by local column; 1 when absent). What clipRowFull reads.
 */
export function smoothedGramSlice(gram: Float64Array, N: number, c0: number, n: number, pre: ArrayLike<number> | undefined): Float64Array {
  const out = new Float64Array(n * n);
  for (let a = 0; a < n; a++) {
    const pa = pre ? pre[a]! : 1;
    for (let b = 0; b < n; b++) out[a * n + b] = gram[(c0 + a) * N + c0 + b]! * pa * (pre ? pre[b]! : 1);
  }
  return out;
}

/**
 * Clip search for one row of a smoothed weight against the full Gram `sg` of its (smoothed) input
 * ([n, n], smoothedGramSlice), in place. Starts from clipRowToBlocks' choice (each group's r on
 * Δ_gᵀ G_gg Δ_g), then coordinate descent over the row's groups on the row's whole output error
 * ‖X Δᵀ‖² = Δᵀ G Δ: group g takes the r minimising Δ_gᵀ G_gg Δ_g + 2 Δ_g · Σ_{h≠g} G_gh Δ_h, until
 * no group changes (at most `sweeps` passes). Each step can only lower Δᵀ G Δ, so the result is never
 * worse than the per-group choice on it. Sums in f64 in a fixed order: the choice does not depend on
 * how rows are batched. With one group per row it is clipRowToBlocks.
 */
export function clipRowFull(w: Float32Array, off: number, n: number, G: number, sg: Float64Array, dt: FloatDType, sweeps = 4): void {
  const R = AWQ_CLIP_RATIOS.length;
  const ng = n / G;
  const dq = new Float64Array(ng * R * G); // each candidate's Δ = w − q
  const own = new Float64Array(ng * R); // each candidate's Δ_gᵀ G_gg Δ_g
  const amax = new Float64Array(ng);
  const choice = new Int32Array(ng);
  const q = new Float64Array(G);
  for (let g = 0; g < ng; g++) {
    const o = off + g * G;
    let m = 0;
    for (let i = 0; i < G; i++) m = Math.max(m, Math.abs(w[o + i]!));
    amax[g] = m;
    if (m === 0) continue;
    let bestL = Infinity;
    for (let r = 0; r < R; r++) {
      fakeQuantGroup(w, o, G, f32(m * AWQ_CLIP_RATIOS[r]!), dt, q, 0);
      const d0 = (g * R + r) * G;
      for (let i = 0; i < G; i++) dq[d0 + i] = w[o + i]! - q[i]!;
      let l = 0;
      for (let i = 0; i < G; i++) {
        let acc = 0;
        const row = (g * G + i) * n + g * G;
        for (let j = 0; j < G; j++) acc += sg[row + j]! * dq[d0 + j]!;
        l += dq[d0 + i]! * acc;
      }
      own[g * R + r] = l;
      if (l < bestL) { bestL = l; choice[g] = r; }
    }
  }
  if (ng > 1) {
    const d = new Float64Array(n);
    for (let g = 0; g < ng; g++) if (amax[g] !== 0) d.set(dq.subarray((g * R + choice[g]!) * G, (g * R + choice[g]! + 1) * G), g * G);
    const t = new Float64Array(G);
    for (let s = 0; s < sweeps; s++) {
      let changed = false;
      for (let g = 0; g < ng; g++) {
        if (amax[g] === 0) continue;
        for (let i = 0; i < G; i++) {
          let acc = 0;
          const row = (g * G + i) * n;
          for (let b = 0; b < g * G; b++) acc += sg[row + b]! * d[b]!;
          for (let b = (g + 1) * G; b < n; b++) acc += sg[row + b]! * d[b]!;
          t[i] = acc;
        }
        let best = choice[g]!, bestL = Infinity;
        for (let r = 0; r < R; r++) {
          const d0 = (g * R + r) * G;
          let l = own[g * R + r]!;
          for (let i = 0; i < G; i++) l += 2 * dq[d0 + i]! * t[i]!;
          if (l < bestL) { bestL = l; best = r; }
        }
        if (best !== choice[g]) {
          changed = true;
          choice[g] = best;
          d.set(dq.subarray((g * R + best) * G, (g * R + best + 1) * G), g * G);
        }
      }
      if (!changed) break;
    }
  }
  for (let g = 0; g < ng; g++) {
    if (amax[g] === 0 || choice[g] === 0) continue;
    const m = f32(amax[g]! * AWQ_CLIP_RATIOS[choice[g]!]!);
    const o = off + g * G;
    for (let i = 0; i < G; i++) w[o + i] = Math.min(m, Math.max(-m, w[o + i]!));
  }
}
