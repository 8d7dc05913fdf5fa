/**
 * What calibrated schemes (FP8, W4A16_AWQ / W4A8_AWQ with the AWQ search, W8A8 SmoothQuant, INT8 /
 * FP8 KV cache) read: statistics of the full (unsharded) model, keyed by the global TRT-LLM module
 * name (`transformer.layers.3.attention.qkv`). Produced by src/calib/ (a statistics pass on the CPU
 * runner, then the format's search); the schemes shard them per rank with the spec's TP rules.
 * Only types and small pure helpers live here, so src/quant does not depend on src/calib.
 */
import { TrtbError } from "../errors.ts";

/** Statistics of one decoder linear's input over the calibration tokens (fc and gate share one object). */
export interface LinearStats {
  inF: number;
  outF: number;
  tokens: number;
  /** Per input channel max |x|. */
  absMax: Float32Array;
  /** Per input channel Σ|x| (mean = absSum / tokens). */
  absSum: Float64Array;
  /** XᵀX [inF, inF] in float64, when the pass was asked for it (the AWQ search). */
  gram?: Float64Array;
}

/** Per-layer amax of the qkv projection output (before RoPE), split into q, k and v. */
export interface KvStats {
  qAmax: number;
  kAmax: number;
  vAmax: number;
}

export interface CalibStats {
  /** One line: what data was used. */
  describe: string;
  sequences: number;
  tokens: number;
  /** Seconds of the statistics pass. */
  seconds: number;
  linears: Map<string, LinearStats>;
  kv: KvStats[];
  /** The calibration token ids (the layer-by-layer AWQ search runs them again). */
  ids?: number[][];
  /** Per decoder linear (fc and gate apart), max |y| of its output over the calibration tokens (legacy SmoothQuant's scale_y). */
  outAmax?: Map<string, number>;
}

/** One linear's calibrated quantities (full model; the scheme shards them). */
export interface LinearPlan {
  /**
   * The activation multiplier stored as `prequant_scaling_factor` (AWQ, SmoothQuant), full input
   * size, values already rounded to the model dtype; the weight is divided by it column-wise
   * before quantization (x·W = (x·pre)·(W/pre)). Absent: no smoothing.
   */
  pre?: Float32Array;
  /** max |W/pre| over the full weight. */
  wAmax: number;
  /** max |W/pre| of each full output row. */
  wAmaxPerOut: Float32Array;
  /** max |x·pre| over the calibration tokens (per tensor). */
  actAmax: number;
  /** AWQ clipping: the diagonal blocks of XᵀX ([inF/group][group][group], f64), present when the clip search is on. */
  gramBlocks?: Float64Array;
  /**
   * AWQ clipping on the whole row (the layer-by-layer search): the input's full XᵀX ([inF, inF], f64,
   * unsmoothed; shared with the statistics, not a copy). When present the clip search minimises each
   * row's whole output error (awq-clip.ts clipRowFull) instead of each group's on its block.
   */
  gram?: Float64Array;
  /** AWQ search record: the α chosen (null = no smoothing won) and the proxy loss (output MSE) of RTN and of the choice. */
  search?: { alpha: number | null; lossRtn: number; lossBest: number; loss?: "linear" | "block" };
}

/** `--int8_kv_cache` (TRT-LLM): max |q, k, v| / 127; modelopt `--kv_cache_dtype`: max(|k|, |v|) / bound. */
export type KvScaleRule = "qkv" | "kv";

export interface CalibPlan {
  describe: string;
  linears: Map<string, LinearPlan>;
  kv: KvStats[];
  kvRule: KvScaleRule;
  /** CalibStats.outAmax, when the statistics have it (the static legacy SmoothQuant variants). */
  outAmax?: Map<string, number>;
  /** AWQ: whether the clip search runs at quantization (needs gramBlocks). */
  awqClip: boolean;
}

/** Bound of a KV-cache dtype: 127 (INT8) or 448 (FP8 e4m3). */
export const KV_BOUND = { INT8: 127, FP8: 448 } as const;

/** The layer's `kv_cache_scaling_factor` (f32) under `rule` for `algo`. */
export function kvScale(k: KvStats, rule: KvScaleRule, algo: "INT8" | "FP8"): number {
  const amax = rule === "qkv" ? Math.max(k.qAmax, k.kAmax, k.vAmax) : Math.max(k.kAmax, k.vAmax);
  return amax > 0 ? Math.fround(amax / KV_BOUND[algo]) : 1;
}

/** A per-tensor scale amax / bound in f32; 1 for an all-zero tensor. */
export function tensorScale(amax: number, bound: number): number {
  return amax > 0 ? Math.fround(amax / bound) : 1;
}

/** Global module name of a rank-local linear (`transformer.layers.{global}.…`). */
export function globalModule(module: string, layer: number): string {
  return module.replace(/^transformer\.layers\.\d+\./, `transformer.layers.${layer}.`);
}

/** The plan of a linear, or a QUANT_NEEDS_CALIB error naming what is missing. */
export function planOf(plan: CalibPlan | undefined, module: string, what: string): LinearPlan {
  if (!plan) throw new TrtbError("QUANT_NEEDS_CALIB", `${what} needs calibration statistics: quantize with a calibration dataset (--calib_dataset)`);
  const p = plan.linears.get(module);
  if (!p) throw new TrtbError("QUANT_NEEDS_CALIB", `${what}: the calibration has no statistics for ${module}`);
  return p;
}
