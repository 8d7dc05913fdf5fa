/**
 * Statistics → the quantities the calibrated schemes store (src/quant/calib-plan.ts), per format:
 *
 *   none (FP8, KV only)  pre absent; wAmax / wAmaxPerOut of W; actAmax = max_i max|x_i|
 *   awq                  pre from the AWQ search (awq.ts) per input group; gramBlocks when clipping
 *   smoothquant          s_i = max|x_i|^α / max_o|W_oi|^(1−α) over the group's linears (SmoothQuant
 *                        eq. 4; ModelOpt int8_sq), clamped to ≥ 1e-5; pre = 1/s in the model dtype
 *
 * Groups sharing an input (and so a smoothing): attention.qkv; attention.dense; mlp.fc with
 * mlp.gate; mlp.proj. After smoothing, weight statistics are those of W/pre and actAmax that of x·pre
 * (exact from the per-channel max). All on the full model; the schemes shard.
 */
import { TrtbError } from "../errors.ts";
import type { CalibPlan, CalibStats, KvScaleRule, LinearPlan, LinearStats } from "../quant/calib-plan.ts";
import type { FloatDType } from "../quant/kernel.ts";
import type { FullWeights } from "../runtime/merge.ts";
import { AWQ_DEFAULT_GRID, awqSearch, gramBlocks, toDtype } from "./awq.ts";

export type SmoothingKind = "none" | "awq" | "smoothquant";

export interface PlanOptions {
  smoothing: SmoothingKind;
  dtype: FloatDType;
  /** AWQ group size. */
  groupSize?: number;
  /** AWQ α grid points − 1 (default 20). */
  awqGrid?: number;
  /** AWQ clip search at quantization (default true). */
  awqClip?: boolean;
  /** SmoothQuant migration strength α (default 0.5). */
  alpha?: number;
  kvRule?: KvScaleRule;
  onProgress?: (done: number, total: number) => void;
}

export const SUFFIX_GROUPS = [["attention.qkv"], ["attention.dense"], ["mlp.fc", "mlp.gate"], ["mlp.proj"]] as const;

export function linearPlan(w: Float32Array, out: number, inF: number, st: LinearStats, pre: Float32Array | undefined): LinearPlan {
  const wAmaxPerOut = new Float32Array(out);
  let wAmax = 0;
  for (let o = 0; o < out; o++) {
    let m = 0;
    for (let i = 0; i < inF; i++) {
      const v = Math.abs(pre ? Math.fround(w[o * inF + i]! / pre[i]!) : w[o * inF + i]!);
      if (v > m) m = v;
    }
    wAmaxPerOut[o] = m;
    if (m > wAmax) wAmax = m;
  }
  let actAmax = 0;
  for (let i = 0; i < inF; i++) actAmax = Math.max(actAmax, Math.fround(st.absMax[i]! * (pre ? pre[i]! : 1)));
  return { pre, wAmax, wAmaxPerOut, actAmax };
}

function smoothQuantPre(ws: Float32Array[], inF: number, st: LinearStats, alpha: number, dt: FloatDType): Float32Array {
  const wmax = new Float64Array(inF);
  for (const w of ws) for (let o = 0; o < w.length / inF; o++) for (let i = 0; i < inF; i++) wmax[i] = Math.max(wmax[i]!, Math.abs(w[o * inF + i]!));
  return Float32Array.from({ length: inF }, (_, i) => {
    const x = st.absMax[i]!;
    const s = x > 0 && wmax[i]! > 0 ? Math.max(x ** alpha / wmax[i]! ** (1 - alpha), 1e-5) : 1;
    return toDtype(1 / s, dt) || 1;
  });
}

/** The plan for `opts.smoothing` from the model's f32 weights and one statistics pass. */
export function planCalibration(weights: FullWeights, numLayers: number, stats: CalibStats, opts: PlanOptions): CalibPlan {
  const G = opts.groupSize ?? 128;
  const linears = new Map<string, LinearPlan>();
  const total = numLayers * SUFFIX_GROUPS.length;
  let done = 0;
  for (let L = 0; L < numLayers; L++) {
    for (const group of SUFFIX_GROUPS) {
      const mods = group.map((s) => `transformer.layers.${L}.${s}`).filter((m) => weights.has(`${m}.weight`));
      done++;
      if (mods.length === 0) continue;
      const ws = mods.map((m) => weights.get(`${m}.weight`)!);
      if (ws.some((w) => w.shape.length !== 2))
        throw new TrtbError("QUANT_UNSUPPORTED", `${mods[0]}: calibrated formats do not support mixture-of-experts weights ([${ws[0]!.shape}]); use int4_awq_rtn, int8_wo or int4_wo`);
      const st = stats.linears.get(mods[0]!);
      if (!st) throw new TrtbError("QUANT_NEEDS_CALIB", `the calibration statistics have no input of ${mods[0]}`);
      const inF = ws[0]!.shape[1]!;
      let pre: Float32Array | undefined;
      let search: LinearPlan["search"];
      if (opts.smoothing === "awq") {
        if (!st.gram) throw new TrtbError("QUANT_NEEDS_CALIB", `${mods[0]}: the AWQ search needs the Gram statistics (collect with gram: true)`);
        const r = awqSearch(ws.map((w) => w.data), inF, st.absSum, st.tokens, st.gram, G, opts.dtype, opts.awqGrid ?? AWQ_DEFAULT_GRID);
        pre = r.pre;
        search = { alpha: r.alpha, lossRtn: r.lossRtn, lossBest: r.lossBest };
      } else if (opts.smoothing === "smoothquant") {
        pre = smoothQuantPre(ws.map((w) => w.data), inF, st, opts.alpha ?? 0.5, opts.dtype);
      }
      const blocks = opts.smoothing === "awq" && (opts.awqClip ?? true) ? gramBlocks(st.gram!, inF, G, pre) : undefined;
      mods.forEach((m, k) => {
        const w = ws[k]!;
        const p = linearPlan(w.data, w.shape[0]!, inF, st, pre);
        if (blocks) p.gramBlocks = blocks;
        if (search) p.search = search;
        linears.set(m, p);
      });
      opts.onProgress?.(done, total);
    }
  }
  return { describe: stats.describe, linears, kv: stats.kv, kvRule: opts.kvRule ?? "kv", awqClip: opts.smoothing === "awq" && (opts.awqClip ?? true) };
}
