/**
 * The AWQ scale search (Lin et al., llm-awq `auto_scale`; ModelOpt `awq_lite`), on the statistics of
 * one pass. For a group of linears sharing one input X (fused qkv; mlp.fc + mlp.gate; dense; proj):
 *
 *   x̄_i = mean |X_i| (calibration tokens), w̄_i = mean over output rows of |W_oi| / max_{group(i)} |W_o·|
 *   s(α) = x̄^α / w̄^(1−α) (clamped ≥ 1e-4), normalised by √(max s · min s); α = 0, 1/n, …, 1
 *   loss(s) = ‖X (W − Q(W·diag s)·diag(1/s))ᵀ‖² / (tokens · rows)   (the group's output MSE)
 * computed exactly through the Gram matrix XᵀX: loss = Σ_o Δ_o ᵀ (XᵀX) Δ_o. Q is the int4 group
 * quantization the checkpoint gets (amax/7 per group of `group` inputs, scale rounded to the model
 * dtype, round-half-even, clamp [−8, 7]). Candidates also include s = 1 (no smoothing), so the
 * search never does worse than round-to-nearest on this loss. The winner's 1/s, rounded to the
 * model dtype, is the `prequant_scaling_factor` every linear of the group stores (fused qkv and
 * gate/up share their smoothing, as modelopt requires).
 *
 * Clipping (llm-awq `auto_clip`), done per rank at quantization time (src/quant/awq.ts): for each
 * output row and group, the max |w| is shrunk by r ∈ {1, 0.95, …, 0.55} to the r minimising
 * Δᵀ G_gg Δ, with G_gg the group's block of the *smoothed* input's Gram matrix (kept in the plan).
 */
import { AWQ_CLIP_RATIOS, clipRowFull, clipRowToBlocks, fakeQuantGroup, toDtype } from "../quant/awq-clip.ts";
import type { FloatDType } from "../quant/kernel.ts";
import { linearF32 } from "../runtime/cpu-gemm.ts";

export { AWQ_CLIP_RATIOS, smoothedGramSlice, toDtype } from "../quant/awq-clip.ts";

/** llm-awq's grid (n_grid 20). */
export const AWQ_DEFAULT_GRID = 20;
const f32 = Math.fround;

/** Σ_o Δ_oᵀ G Δ_o for Δ = W − Q(W/p)·p over the rows of `ws` (each [rows, n]); p = the stored prequant. G in f32 ([n, n]), the products through the f32 GEMM, the sum in f64. */
function searchLoss(ws: Float32Array[], n: number, gram: Float32Array, p: Float64Array, G: number, dt: FloatDType): number {
  let loss = 0;
  for (const w of ws) {
    const rows = w.length / n;
    const fq = fakeQuantAwq(w, n, G, p, undefined, dt);
    const d = new Float32Array(w.length);
    for (let k = 0; k < d.length; k++) d[k] = w[k]! - fq[k]!;
    const dg = linearF32(d, rows, gram, n, undefined, 0, n); // Δ·G (G symmetric)
    for (let k = 0; k < d.length; k++) loss += d[k]! * dg[k]!;
  }
  return loss;
}

export interface AwqSearchResult {
  /** 1/s rounded to the model dtype, or undefined when s = 1 won. */
  pre: Float32Array | undefined;
  alpha: number | null;
  lossRtn: number;
  lossBest: number;
}

/** One candidate smoothing: the α it came from (null: s = 1) and the stored prequant p = 1/s (model dtype). */
export interface AwqCandidate {
  alpha: number | null;
  p: Float64Array;
}

/** The candidates of the α grid (see the top of the file), s = 1 first. */
export function awqCandidates(ws: Float32Array[], n: number, absSum: Float64Array, tokens: number, G: number, dt: FloatDType, grid = AWQ_DEFAULT_GRID): AwqCandidate[] {
  const xm = new Float64Array(n);
  for (let i = 0; i < n; i++) xm[i] = absSum[i]! / tokens;
  const wm = new Float64Array(n);
  let rowsAll = 0;
  for (const w of ws) {
    const rows = w.length / n;
    rowsAll += rows;
    for (let o = 0; o < rows; o++)
      for (let g = 0; g < n; g += G) {
        let m = 0;
        for (let i = g; i < g + G; i++) m = Math.max(m, Math.abs(w[o * n + i]!));
        if (m > 0) for (let i = g; i < g + G; i++) wm[i] = wm[i]! + Math.abs(w[o * n + i]!) / m;
      }
  }
  for (let i = 0; i < n; i++) wm[i] = wm[i]! / rowsAll;
  const out: AwqCandidate[] = [{ alpha: null, p: new Float64Array(n).fill(1) }];
  for (let k = 0; k <= grid; k++) {
    const a = k / grid;
    const s = new Float64Array(n);
    let mx = 0, mn = Infinity;
    for (let i = 0; i < n; i++) {
      const v = Math.max(xm[i]! ** a / Math.max(wm[i]!, 1e-8) ** (1 - a), 1e-4);
      s[i] = v;
      mx = Math.max(mx, v);
      mn = Math.min(mn, v);
    }
    const c = Math.sqrt(mx * mn);
    // pre = 1/s_normalised, stored in the model dtype: search with exactly what is stored
    for (let i = 0; i < n; i++) s[i] = toDtype(c / s[i]!, dt) || 1;
    out.push({ alpha: a, p: s });
  }
  return out;
}

/** The candidate with the least `loss` (ties: the earlier, so s = 1 unless something beats it). */
export function awqPick(cands: AwqCandidate[], loss: (c: AwqCandidate) => number): AwqSearchResult {
  let best = cands[0]!;
  const lossRtn = loss(best);
  let lossBest = lossRtn;
  for (const c of cands.slice(1)) {
    const l = loss(c);
    if (l < lossBest) { lossBest = l; best = c; }
  }
  return { pre: best.alpha === null ? undefined : Float32Array.from(best.p), alpha: best.alpha, lossRtn, lossBest };
}

/** Search the smoothing of one input group on the Gram loss (see the top of the file). */
export function awqSearch(ws: Float32Array[], n: number, absSum: Float64Array, tokens: number, gram: Float64Array, G: number, dt: FloatDType, grid = AWQ_DEFAULT_GRID): AwqSearchResult {
  const rowsAll = ws.reduce((a, w) => a + w.length / n, 0);
  const norm = tokens * rowsAll;
  const g32 = Float32Array.from(gram);
  return awqPick(awqCandidates(ws, n, absSum, tokens, G, dt, grid), (c) => searchLoss(ws, n, g32, c.p, G, dt) / norm);
}

/**
 * What the checkpoint's int4 group quantization makes of W [rows, n] in f32, as the engine applies it
 * (x·pre times the dequantized W/pre): W/pre (f32), clipped per (row, group) against the Gram blocks
 * of the smoothed input when given, or on the whole row against its full Gram `sg`
 * (smoothedGramSlice) when that is given (awq-clip.ts), int4 by group, dequantized, times pre.
 */
export function fakeQuantAwq(w: Float32Array, n: number, G: number, pre: ArrayLike<number> | undefined, blocks: Float64Array | undefined, dt: FloatDType, sg?: Float64Array): Float32Array {
  const rows = w.length / n;
  const v = new Float32Array(w.length);
  for (let k = 0; k < v.length; k++) v[k] = pre ? f32(w[k]! / pre[k % n]!) : w[k]!;
  if (sg) for (let o = 0; o < rows; o++) clipRowFull(v, o * n, n, G, sg, dt);
  else if (blocks) for (let o = 0; o < rows; o++) clipRowToBlocks(v, o * n, n, G, blocks, 0, dt);
  const q = new Float64Array(G);
  for (let o = 0; o < rows; o++)
    for (let g = 0; g < n; g += G) {
      const off = o * n + g;
      let amax = 0;
      for (let i = 0; i < G; i++) amax = Math.max(amax, Math.abs(v[off + i]!));
      fakeQuantGroup(v, off, G, amax, dt, q, 0);
      for (let i = 0; i < G; i++) v[off + i] = f32(q[i]! * (pre ? pre[g + i]! : 1));
    }
  return v;
}

/**
 * fakeQuantAwq with its clip search batched through the f32 GEMM: the same choice of ratio per
 * (row, group) up to f32 rounding of the losses, many times faster. Only for ranking candidates in
 * the joint scale + clip search; what is stored comes from fakeQuantAwq / clipRowToBlocks.
 */
export function fakeQuantAwqFast(w: Float32Array, n: number, G: number, pre: ArrayLike<number> | undefined, blocks: Float64Array, dt: FloatDType): Float32Array {
  const rows = w.length / n;
  const v = new Float32Array(w.length);
  for (let k = 0; k < v.length; k++) v[k] = pre ? f32(w[k]! / pre[k % n]!) : w[k]!;
  const R = AWQ_CLIP_RATIOS.length;
  const q = new Float64Array(G);
  const amax = new Float32Array(rows);
  const qs = new Float32Array(R * rows * G);
  const d = new Float32Array(R * rows * G);
  for (let g = 0; g < n; g += G) {
    const b32 = Float32Array.from(blocks.subarray((g / G) * G * G, (g / G + 1) * G * G));
    for (let o = 0; o < rows; o++) {
      let m = 0;
      for (let i = 0; i < G; i++) m = Math.max(m, Math.abs(v[o * n + g + i]!));
      amax[o] = m;
      for (let r = 0; r < R; r++) {
        const base = (r * rows + o) * G;
        fakeQuantGroup(v, o * n + g, G, f32(m * AWQ_CLIP_RATIOS[r]!), dt, q, 0);
        for (let i = 0; i < G; i++) {
          qs[base + i] = q[i]!;
          d[base + i] = v[o * n + g + i]! - q[i]!;
        }
      }
    }
    const db = linearF32(d, R * rows, b32, G, undefined, 0, G);
    for (let o = 0; o < rows; o++) {
      let best = 0, bestL = Infinity;
      if (amax[o] !== 0)
        for (let r = 0; r < R; r++) {
          const base = (r * rows + o) * G;
          let l = 0;
          for (let i = 0; i < G; i++) l += d[base + i]! * db[base + i]!;
          if (l < bestL) { bestL = l; best = r; }
        }
      const base = (best * rows + o) * G;
      for (let i = 0; i < G; i++) v[o * n + g + i] = f32(qs[base + i]! * (pre ? pre[g + i]! : 1));
    }
  }
  return v;
}

/** The diagonal G×G blocks of the Gram of x·pre (pre = 1 when absent), [n/G][G][G]. */
export function gramBlocks(gram: Float64Array, n: number, G: number, pre: ArrayLike<number> | undefined): Float64Array {
  const out = new Float64Array(n * G);
  for (let g = 0; g < n / G; g++)
    for (let i = 0; i < G; i++)
      for (let j = 0; j < G; j++) {
        const a = g * G + i, b = g * G + j;
        out[g * G * G + i * G + j] = gram[a * n + b]! * (pre ? pre[a]! * pre[b]! : 1);
      }
  return out;
}

