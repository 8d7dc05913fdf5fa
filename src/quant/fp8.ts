/**
 * FP8 per tensor (`--qformat fp8`, modelopt; spec §3.8): e4m3 weights with one f32 scale per
 * tensor and a calibrated static per-tensor activation scale. Needs calibration.
 *
 * Per quantized linear P (every decoder linear; lm_head and embeddings stay in the model dtype):
 *   P.weight                     F8_E4M3 [out_local, in_local]  e4m3(clamp(W / wsf, ±448)), RNE
 *   P.weights_scaling_factor     F32     [1]   wsf = amax(W) / 448 over the FULL weight (fused qkv:
 *                                              the max over q, k, v, i.e. of the whole fused tensor)
 *   P.activation_scaling_factor  F32     [1]   asf = max |x| / 448 over the calibration tokens
 * TP: the per-tensor scales are computed before the split and replicated on every rank (modelopt
 * computes them on the full model, then splits the weights); an all-zero tensor gets scale 1.
 * Runner: weights dequantized (q·wsf); activations fake-quantized to e4m3 with asf (quant-sim.ts).
 * MoE experts: refused (QUANT_UNSUPPORTED).
 */
import { type PretrainedConfig, type QuantConfig, QuantConfigSchema } from "../format/checkpoint-config.ts";
import type { DType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import { bitsToF32 } from "../numeric.ts";
import type { ParamSpec } from "../tensor.ts";
import type { LazyTensor } from "../tensor/lazy.ts";
import { globalModule, planOf, tensorScale } from "./calib-plan.ts";
import { ComputedBytes, f32Values } from "./computed.ts";
import { e4m3ToF32Bits, type QuantKernelParams, quantFp8 } from "./kernel.ts";
import { excludeList, isExcluded, type LinearInfo } from "./modules.ts";
import { bytesOf, f32Tensor, matrixOf, type QuantScheme, valuesF32 } from "./scheme.ts";

export const FP8_MAX = 448;

export const isMoeConfig = (cfg: PretrainedConfig) => ((cfg.moe as { num_experts?: number } | undefined)?.num_experts ?? 0) > 0;

/** Calibrated formats refuse MoE models: the experts' grouped weights have no calibrated layout here. */
export function refuseMoe(cfg: PretrainedConfig, what: string): void {
  if (isMoeConfig(cfg))
    throw new TrtbError("QUANT_UNSUPPORTED", `${cfg.architecture}: ${what} does not support mixture-of-experts models (expert weights); use int4_awq_rtn, int8_wo or int4_wo`);
}

/** e4m3 bytes of `v / scale`. */
export function encodeFp8(v: Float32Array, scale: number): Uint8Array {
  const out = new Uint8Array(v.length);
  for (let i = 0; i < v.length; i++) out[i] = quantFp8(v[i]!, scale);
  return out;
}

export function decodeFp8(b: Uint8Array, scale: number): Float32Array {
  const out = new Float32Array(b.length);
  for (let i = 0; i < b.length; i++) out[i] = Math.fround(bitsToF32(e4m3ToF32Bits(b[i]!)) * scale);
  return out;
}

/** A scalar F32 tensor read back. */
export function scalarOf(t: LazyTensor): number {
  const b = new Float32Array(1);
  t.writeRange(new Uint8Array(b.buffer), "F32", 0, 1);
  return b[0]!;
}

export const fp8PerTensor: QuantScheme = {
  algo: "FP8",
  qformat: "fp8",
  summary: "fp8 e4m3 weights and activations, per-tensor scales from calibration",
  runnerHides: [".weights_scaling_factor"],

  configure(user: Partial<QuantConfig>, cfg: PretrainedConfig): QuantConfig {
    refuseMoe(cfg, "FP8");
    return QuantConfigSchema.parse({ ...user, quant_algo: "FP8", exclude_modules: excludeList(user.exclude_modules) });
  },

  quantizes(l: LinearInfo, _cfg: PretrainedConfig, q: QuantConfig): boolean {
    return l.shape.length === 2 && !isExcluded(l.module, q.exclude_modules ?? []);
  },

  params(l: LinearInfo): ParamSpec[] {
    const [out, inF] = l.shape as [number, number];
    return [
      { name: `${l.module}.weight`, shape: [out, inF], dtype: "F8_E4M3" },
      { name: `${l.module}.weights_scaling_factor`, shape: [1], dtype: "F32" },
      { name: `${l.module}.activation_scaling_factor`, shape: [1], dtype: "F32" },
    ];
  },

  kernelParams(l: LinearInfo): QuantKernelParams {
    const { rows, cols } = matrixOf(l.shape);
    return { format: "fp8_e4m3", srcDtype: "F32", scaleDtype: "F32", rows, cols, groupSize: cols, divisor: FP8_MAX, minScale: 0, zeroScale: 1, clamp: null, qmin: 0, qmax: 0, rounding: "half_even", divideByStoredScale: false };
  },

  quantize(l, w, _q, _dt, _be, ctx): LazyTensor[] {
    const p = planOf(ctx.plan, globalModule(l.module, l.layer), "FP8");
    const wsf = tensorScale(p.wAmax, FP8_MAX);
    const asf = tensorScale(p.actAmax, FP8_MAX);
    return [
      new ComputedBytes(`${l.module}.weight`, "F8_E4M3", l.shape, () => encodeFp8(valuesF32(w), wsf)),
      f32Values(`${l.module}.weights_scaling_factor`, [1], () => Float32Array.of(wsf)),
      f32Values(`${l.module}.activation_scaling_factor`, [1], () => Float32Array.of(asf)),
    ];
  },

  effectiveWeight(l, get): LazyTensor {
    const w = get(`${l.module}.weight`);
    const wsf = scalarOf(get(`${l.module}.weights_scaling_factor`));
    if (w.dtype !== "F8_E4M3" && w.dtype !== "I8") throw new TrtbError("QUANT_DTYPE", `${w.name}: FP8 weight stored as ${w.dtype}`, { tensor: w.name });
    return f32Tensor(w.name, w.shape, () => decodeFp8(bytesOf(w), wsf));
  },
};

export type { DType };
