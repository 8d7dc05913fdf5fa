/**
 * SmoothQuant W8A8 (`--qformat int8_sq`, modelopt W8A8_SQ_PER_CHANNEL, TensorRT-native INT8; spec
 * §3.7): activations smoothed by a calibrated per-input-channel factor, int8 weights with one scale
 * per output channel, static per-tensor int8 activations. Needs calibration.
 *
 * Per quantized linear P:
 *   P.weight                     I8    [out_local, in_local]  clamp(RNE(W' / s[o]), −128, 127), W' = W / pre
 *   P.weights_scaling_factor     F32   [out_local]  s[o] = max_i |W'[o, i]| / 127 over the FULL row
 *                                                  (row-parallel layers: before the input split)
 *   P.activation_scaling_factor  F32   [1]          max |x·pre| / 127 over the calibration tokens
 *   P.prequant_scaling_factor    dtype [in_local]   pre = 1/s_sq, s_sq = max|x|^α / max|W_col|^(1−α)
 *                                                  (src/calib/plan.ts; fused qkv and fc/gate share it)
 * Runner: x → x·pre → int8 fake-quant with the activation scale → · dequantized weight.
 */
import { type PretrainedConfig, type QuantConfig, QuantConfigSchema } from "../format/checkpoint-config.ts";
import type { DType } from "../dtype.ts";
import type { ParamSpec } from "../tensor.ts";
import { cast, type LazyTensor } from "../tensor/lazy.ts";
import { globalModule, planOf, tensorScale } from "./calib-plan.ts";
import { ComputedBytes, f32Values } from "./computed.ts";
import { refuseMoe } from "./fp8.ts";
import { type QuantKernelParams, quantInt } from "./kernel.ts";
import { excludeList, isExcluded, type LinearInfo } from "./modules.ts";
import { bytesOf, f32Tensor, inputSlice, matrixOf, type QuantScheme, valuesF32 } from "./scheme.ts";

export const INT8_MAX = 127;

/** The smoothed rank weight W / pre (pre: the rank's slice), f32. */
export function smoothedRank(w: LazyTensor, pre: Float32Array | undefined): Float32Array {
  const v = valuesF32(w);
  if (!pre) return v;
  const inF = pre.length;
  for (let k = 0; k < v.length; k++) v[k] = Math.fround(v[k]! / pre[k % inF]!);
  return v;
}

export const int8SmoothQuant: QuantScheme = {
  algo: "W8A8_SQ_PER_CHANNEL",
  qformat: "int8_sq",
  summary: "SmoothQuant int8 weights (per channel) and activations (per tensor, static), calibrated",
  runnerHides: [".weights_scaling_factor"],

  configure(user: Partial<QuantConfig>, cfg: PretrainedConfig): QuantConfig {
    refuseMoe(cfg, "SmoothQuant");
    return QuantConfigSchema.parse({ ...user, quant_algo: "W8A8_SQ_PER_CHANNEL", smoothquant_val: user.smoothquant_val ?? 0.5, exclude_modules: excludeList(user.exclude_modules) });
  },

  quantizes(l: LinearInfo, _cfg: PretrainedConfig, q: QuantConfig): boolean {
    return l.shape.length === 2 && !isExcluded(l.module, q.exclude_modules ?? []);
  },

  params(l: LinearInfo, dtype: DType): ParamSpec[] {
    const [out, inF] = l.shape as [number, number];
    return [
      { name: `${l.module}.weight`, shape: [out, inF], dtype: "I8" },
      { name: `${l.module}.weights_scaling_factor`, shape: [out], dtype: "F32" },
      { name: `${l.module}.activation_scaling_factor`, shape: [1], dtype: "F32" },
      { name: `${l.module}.prequant_scaling_factor`, shape: [inF], dtype },
    ];
  },

  kernelParams(l: LinearInfo): QuantKernelParams {
    const { rows, cols } = matrixOf(l.shape);
    return { format: "int8", srcDtype: "F32", scaleDtype: "F32", rows, cols, groupSize: cols, divisor: INT8_MAX, minScale: 0, zeroScale: 1, clamp: null, qmin: -128, qmax: 127, rounding: "half_even", divideByStoredScale: false };
  },

  quantize(l, w, _q, modelDtype, _be, ctx): LazyTensor[] {
    const g = globalModule(l.module, l.layer);
    const p = planOf(ctx.plan, g, "SmoothQuant");
    const [out, inF] = l.shape as [number, number];
    const pre = p.pre ? inputSlice(p.pre, l, ctx.mapping) : Float32Array.from({ length: inF }, () => 1);
    let scales: Float32Array | null = null;
    let ws: Float32Array | null = null;
    const compute = () => {
      if (scales) return;
      ws = smoothedRank(w, pre);
      scales = new Float32Array(out);
      for (let o = 0; o < out; o++) {
        let m = 0;
        if (l.rowParallel) m = p.wAmaxPerOut[o]!; // full row, before the input split
        else for (let i = 0; i < inF; i++) m = Math.max(m, Math.abs(ws[o * inF + i]!));
        scales[o] = tensorScale(m, INT8_MAX);
      }
    };
    const asf = tensorScale(p.actAmax, INT8_MAX);
    return [
      new ComputedBytes(`${l.module}.weight`, "I8", l.shape, () => {
        compute();
        const q = new Uint8Array(out * inF);
        for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) q[o * inF + i] = quantInt(ws![o * inF + i]!, scales![o]!, -128, 127, "half_even") & 0xff;
        ws = null;
        return q;
      }),
      f32Values(`${l.module}.weights_scaling_factor`, [out], () => {
        compute();
        return scales!;
      }),
      f32Values(`${l.module}.activation_scaling_factor`, [1], () => Float32Array.of(asf)),
      cast(f32Values(`${l.module}.prequant_scaling_factor`, [inF], () => Float32Array.from(pre)), modelDtype),
    ];
  },

  effectiveWeight(l, get): LazyTensor {
    const w = get(`${l.module}.weight`);
    const s = get(`${l.module}.weights_scaling_factor`);
    const [out, inF] = w.shape as [number, number];
    return f32Tensor(w.name, w.shape, () => {
      const q = bytesOf(w);
      const sv = new Float32Array(out);
      s.writeRange(new Uint8Array(sv.buffer), "F32", 0, out);
      const v = new Float32Array(out * inF);
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) v[o * inF + i] = Math.fround(((q[o * inF + i]! << 24) >> 24) * sv[o]!);
      return v;
    });
  },
};
