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
import { fakeQuantGroup, toDtype } from "../quant/awq-clip.ts";
import type { FloatDType } from "../quant/kernel.ts";

export { AWQ_CLIP_RATIOS, toDtype } from "../quant/awq-clip.ts";

/** llm-awq's grid (n_grid 20). */
export const AWQ_DEFAULT_GRID = 20;
const f32 = Math.fround;

/** Σ_o Δ_oᵀ G Δ_o for Δ = W − Q(W/p)·p over the rows of `ws` (each [rows, n]); p = the stored prequant. */
function searchLoss(ws: Float32Array[], n: number, gram: Float64Array, p: Float64Array, G: number, dt: FloatDType): number {
  const scaled = new Float64Array(n);
  const q = new Float64Array(n);
  const d = new Float64Array(n);
  let loss = 0;
  for (const w of ws) {
    const rows = w.length / n;
    for (let o = 0; o < rows; o++) {
      for (let i = 0; i < n; i++) scaled[i] = f32(w[o * n + i]! / p[i]!);
      for (let g = 0; g < n; g += G) {
        let amax = 0;
        for (let i = g; i < g + G; i++) amax = Math.max(amax, Math.abs(scaled[i]!));
        fakeQuantGroup(scaled, g, G, amax, dt, q, g);
      }
      for (let i = 0; i < n; i++) d[i] = w[o * n + i]! - q[i]! * p[i]!;
      for (let i = 0; i < n; i++) {
        const di = d[i]!;
        if (di === 0) continue;
        let acc = 0;
        const row = i * n;
        for (let j = 0; j < n; j++) acc += gram[row + j]! * d[j]!;
        loss += di * acc;
      }
    }
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

/** Search the smoothing of one input group (see the top of the file). */
export function awqSearch(ws: Float32Array[], n: number, absSum: Float64Array, tokens: number, gram: Float64Array, G: number, dt: FloatDType, grid = AWQ_DEFAULT_GRID): AwqSearchResult {
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
  const norm = tokens * rowsAll;
  const ones = new Float64Array(n).fill(1);
  const lossRtn = searchLoss(ws, n, gram, ones, G, dt) / norm;
  let best = { loss: lossRtn, alpha: null as number | null, p: ones };
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
    const loss = searchLoss(ws, n, gram, s, G, dt) / norm;
    if (loss < best.loss) best = { loss, alpha: a, p: s };
  }
  const pre = best.alpha === null ? undefined : Float32Array.from(best.p);
  return { pre, alpha: best.alpha, lossRtn, lossBest: best.loss };
}

/** The diagonal G×G blocks of the Gram of x·pre (pre = 1 when absent), [n/G][G][G]. */
export function gramBlocks(gram: Float64Array, n: number, G: number, pre: Float32Array | undefined): Float64Array {
  const out = new Float64Array(n * G);
  for (let g = 0; g < n / G; g++)
    for (let i = 0; i < G; i++)
      for (let j = 0; j < G; j++) {
        const a = g * G + i, b = g * G + j;
        out[g * G * G + i * G + j] = gram[a * n + b]! * (pre ? pre[a]! * pre[b]! : 1);
      }
  return out;
}

