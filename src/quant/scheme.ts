/**
 * The interface every quantization scheme implements (one file per scheme: int8-wo.ts, int4-wo.ts,
 * int4-awq.ts, fp8-rowwise.ts), and helpers they share.
 *
 * A scheme answers, for one rank of one model:
 *   - which decoder linears it changes (`quantizes`) and what the rank file holds for each
 *     (`params`, `quantize`): the checkpoint side;
 *   - what weight the engine effectively multiplies by (`effectiveWeight`): the runner side, which
 *     dequantizes stored tensors (AWQ, FP8) or replays the build-time quantization (W8A16/W4A16).
 */
import type { PretrainedConfig, QuantAlgo, QuantConfig } from "../format/checkpoint-config.ts";
import type { Mapping } from "../mapping.ts";
import type { CalibPlan } from "./calib-plan.ts";
import type { DType } from "../dtype.ts";
import type { ParamSpec } from "../tensor.ts";
import type { LazyTensor } from "../tensor/lazy.ts";
import type { QuantBackend } from "./backend.ts";
import { type FloatDType, type QuantKernelParams, quantSizes } from "./kernel.ts";
import { ComputedF32, fpBytesOf } from "./lazy.ts";
import type { LinearInfo } from "./modules.ts";

/**
 * `--qformat` names of `trtllm quantize` (modelopt's names; `int4_awq_rtn` = AWQ layout without
 * calibration). The calibrated ones need a statistics pass (src/calib/).
 */
export const QFORMATS = ["int8_wo", "int4_wo", "int4_awq_rtn", "fp8_rowwise", "fp8", "int4_awq", "w4a8_awq", "int8_sq"] as const;
export type QFormatName = (typeof QFORMATS)[number];
/** The quant_algo each qformat writes (modelopt's get_modelopt_qformat, inverted). */
export const QFORMAT_ALGO: Record<QFormatName, QuantAlgo> = {
  int8_wo: "W8A16", int4_wo: "W4A16", int4_awq_rtn: "W4A16_AWQ", fp8_rowwise: "FP8_PER_CHANNEL_PER_TOKEN",
  fp8: "FP8", int4_awq: "W4A16_AWQ", w4a8_awq: "W4A8_AWQ", int8_sq: "W8A8_SQ_PER_CHANNEL",
};
/** qformats that need calibration data. */
export const CALIBRATED_QFORMATS: readonly QFormatName[] = ["fp8", "int4_awq", "w4a8_awq", "int8_sq"];

/** What a scheme may need besides the rank's fp weight: the rank's mapping and the calibration plan. */
export interface SchemeContext {
  mapping: Mapping;
  plan?: CalibPlan;
  /** The model config (schemes whose scales depend on the head layout). */
  cfg?: PretrainedConfig;
}

export interface QuantScheme {
  readonly algo: QuantAlgo;
  readonly qformat: QFormatName;
  /** One line for help texts. */
  readonly summary: string;
  /** Complete and check a user's QuantConfig for `cfg` (defaults, exclude_modules to write). */
  configure(user: Partial<QuantConfig>, cfg: PretrainedConfig): QuantConfig;
  /** Does the scheme change this linear (q already `configure`d)? */
  quantizes(l: LinearInfo, cfg: PretrainedConfig, q: QuantConfig): boolean;
  /** The rank-file tensors that replace `${module}.weight` (the first one keeps that name). */
  params(l: LinearInfo, dtype: DType, q: QuantConfig): ParamSpec[];
  /** Kernel parameters for one linear. */
  kernelParams(l: LinearInfo, modelDtype: FloatDType, q: QuantConfig): QuantKernelParams;
  /** Lazy tensors for `params`, computed from the rank's fp weight (and the calibration plan, for calibrated schemes). */
  quantize(l: LinearInfo, w: LazyTensor, q: QuantConfig, modelDtype: FloatDType, backend: QuantBackend, ctx: SchemeContext): LazyTensor[];
  /** Suffixes of the tensors `effectiveWeight` consumes (hidden from the runner); default weights_scaling_factor, prequant_scaling_factor, per_channel_scale. */
  readonly runnerHides?: readonly string[];
  /** The f32 weight ([out, in] or [E, out, in]) the engine computes with, from the rank's tensors. */
  effectiveWeight(l: LinearInfo, get: (name: string) => LazyTensor, q: QuantConfig, modelDtype: FloatDType, backend: QuantBackend): LazyTensor;
  /** Non-linear tensors the scheme changes or adds to (legacy SmoothQuant folds its smoothing into the norms): the specs replacing `spec`, undefined to keep it. */
  auxParams?(spec: ParamSpec, q: QuantConfig): ParamSpec[] | undefined;
  /** The tensors replacing the non-linear tensor `name` (as auxParams), undefined to keep it. */
  rewrite?(name: string, w: LazyTensor, q: QuantConfig, modelDtype: FloatDType, ctx: SchemeContext, globalLayer: (local: number) => number): LazyTensor[] | undefined;
}

/** Rows (output channels, experts stacked) and cols of a linear's weight. */
export function matrixOf(shape: readonly number[]): { rows: number; cols: number } {
  const cols = shape[shape.length - 1]!;
  const rows = shape.slice(0, -1).reduce((a, b) => a * b, 1);
  return { rows, cols };
}

/** Dequantize stored q + scales to f32 values with the backend. */
export function dequantizeF32(p: QuantKernelParams, q: Uint8Array, scales: Uint8Array, backend: QuantBackend): Float32Array {
  const out = new Float32Array(p.rows * p.cols);
  backend.dequantize(p, q, scales, new Uint8Array(out.buffer), "F32");
  return out;
}

/** Quantize-then-dequantize an fp weight (the build-time quantization a weight-only engine applies). */
export function simulateF32(w: LazyTensor, p: QuantKernelParams, backend: QuantBackend): Float32Array {
  const sz = quantSizes(p);
  const q = new Uint8Array(sz.q);
  const s = new Uint8Array(sz.scales);
  backend.quantize(p, fpBytesOf(w, p.srcDtype), q, s);
  return dequantizeF32(p, q, s, backend);
}

/** An F32 lazy tensor computed on first use. */
export function f32Tensor(name: string, shape: readonly number[], fn: () => Float32Array): LazyTensor {
  return new ComputedF32(name, shape, fn);
}

/** Bytes of a stored tensor (read whole). */
export function bytesOf(t: LazyTensor): Uint8Array {
  return t.directBytes() ?? t.bytes();
}

/** The rank's fp weight as f32 values. */
export function valuesF32(w: LazyTensor): Float32Array {
  const out = new Float32Array(w.numel);
  w.writeRange(new Uint8Array(out.buffer), "F32", 0, w.numel);
  return out;
}

/**
 * The rank's slice of a full-input-size vector (prequant, smoothing): column-parallel layers keep the
 * whole input dim, row-parallel ones (dense, proj) take their TP slice.
 */
export function inputSlice(v: Float32Array, l: LinearInfo, m: Mapping): Float32Array {
  const inF = l.shape[l.shape.length - 1]!;
  if (!l.rowParallel) return v;
  return v.subarray(m.tpRank * inF, (m.tpRank + 1) * inF);
}
