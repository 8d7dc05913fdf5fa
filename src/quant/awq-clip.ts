/**
 * AWQ's clipping search (llm-awq `auto_clip`) and the int4 group fake-quantization the search and
 * the clip share; run per rank at quantization time by the calibrated W4A16_AWQ / W4A8_AWQ path
 * (int4-awq.ts), from the Gram blocks of the smoothed input kept in the calibration plan.
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
