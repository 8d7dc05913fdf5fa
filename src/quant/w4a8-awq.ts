/**
 * W4A8_AWQ (`--qformat w4a8_awq`, modelopt; spec §3.4): the calibrated W4A16_AWQ layout (int4-awq.ts,
 * searched prequant, optional clipping) plus FP8 activations:
 *   P.weight                    I8    [out/2, in]      as W4A16_AWQ
 *   P.weights_scaling_factor    dtype [out, in/group]  as W4A16_AWQ (amax/7 per group)
 *   P.prequant_scaling_factor   dtype [in]             as W4A16_AWQ
 *   P.weights_scaling_factor_2  F32   [1]   amax(W/pre) / 448 over the full (unclipped) smoothed weight
 *   P.activation_scaling_factor F32   [1]   max |x·pre| / 448 over the calibration tokens
 * Build (spec): wsf /= wsf2 (fp16), prequant /= asf, alpha = asf·wsf2; the kernel turns int4·(wsf/wsf2)
 * into e4m3 for the fp8 MMA. The runner simulates exactly that: weight = e4m3(q · f16(s/wsf2)) · wsf2,
 * activations = e4m3(x·pre / asf) · asf.
 * TP: both per-tensor scales computed before the split, replicated.
 */
import { type PretrainedConfig, type QuantConfig } from "../format/checkpoint-config.ts";
import type { DType } from "../dtype.ts";
import { bitsToF32, f32Bits } from "../numeric.ts";
import type { ParamSpec } from "../tensor.ts";
import type { LazyTensor } from "../tensor/lazy.ts";
import { globalModule, planOf, tensorScale } from "./calib-plan.ts";
import { f32Values } from "./computed.ts";
import { FP8_MAX, refuseMoe, scalarOf } from "./fp8.ts";
import { awqCalibrated, int4Awq } from "./int4-awq.ts";
import { e4m3ToF32Bits, f32BitsToE4m3, roundToDtypeBits } from "./kernel.ts";
import type { LinearInfo } from "./modules.ts";
import { bytesOf, f32Tensor, type QuantScheme } from "./scheme.ts";

export const w4a8Awq: QuantScheme = {
  algo: "W4A8_AWQ",
  qformat: "w4a8_awq",
  summary: "int4 AWQ weights (searched smoothing) with fp8 activations, calibrated",
  runnerHides: [".weights_scaling_factor", ".weights_scaling_factor_2"],

  configure(user: Partial<QuantConfig>, cfg: PretrainedConfig): QuantConfig {
    refuseMoe(cfg, "W4A8_AWQ");
    return { ...int4Awq.configure(user, cfg), quant_algo: "W4A8_AWQ" };
  },
  quantizes: (l, cfg, q) => int4Awq.quantizes(l, cfg, q),

  params(l: LinearInfo, dtype: DType, q: QuantConfig): ParamSpec[] {
    return [
      ...int4Awq.params(l, dtype, q),
      { name: `${l.module}.weights_scaling_factor_2`, shape: [1], dtype: "F32" },
      { name: `${l.module}.activation_scaling_factor`, shape: [1], dtype: "F32" },
    ];
  },
  kernelParams: (l, dt, q) => int4Awq.kernelParams(l, dt, q),

  quantize(l, w, q, modelDtype, backend, ctx): LazyTensor[] {
    const p = planOf(ctx.plan, globalModule(l.module, l.layer), "W4A8_AWQ");
    const wsf2 = tensorScale(p.wAmax, FP8_MAX);
    const asf = tensorScale(p.actAmax, FP8_MAX);
    return [
      ...awqCalibrated(l, w, q, modelDtype, backend, ctx.plan!, ctx),
      f32Values(`${l.module}.weights_scaling_factor_2`, [1], () => Float32Array.of(wsf2)),
      f32Values(`${l.module}.activation_scaling_factor`, [1], () => Float32Array.of(asf)),
    ];
  },

  effectiveWeight(l, get, q): LazyTensor {
    const w = get(`${l.module}.weight`);
    const wsf2 = scalarOf(get(`${l.module}.weights_scaling_factor_2`));
    const [out, inF] = [w.shape[0]! * 2, w.shape[1]!];
    return f32Tensor(w.name, [out, inF], () =>
      Float32Array.from(w4a8E4m3Weights(w, get(`${l.module}.weights_scaling_factor`), wsf2, q.group_size), (b) => Math.fround(bitsToF32(e4m3ToF32Bits(b)) * wsf2)));
  },
};

/**
 * The e4m3 weights W4A8's FP8 MMA multiplies, e4m3(q · f16(s / wsf2)) as bytes [out, in] (the
 * weight is that times wsf2): what the runner replays and what the engine build stores (an FP8
 * GEMM with alpha = activation_scaling_factor · wsf2).
 */
export function w4a8E4m3Weights(w: LazyTensor, s: LazyTensor, wsf2: number, group: number): Uint8Array {
  const [out, inF] = [w.shape[0]! * 2, w.shape[1]!];
  const G = inF / group;
  const packed = bytesOf(w); // byte (r2, i): row 2·r2 in the low nibble, 2·r2 + 1 in the high one (signed)
  const sv = new Float32Array(out * G);
  s.writeRange(new Uint8Array(sv.buffer), "F32", 0, sv.length);
  const e8 = new Uint8Array(out * inF);
  const lut = new Uint8Array(16); // per (row, group): e4m3 of q · ratio for the 16 int4 values, q + 8 as the index
  for (let o = 0; o < out; o++) {
    const src = (o >> 1) * inF;
    const shift = o & 1 ? 4 : 0;
    for (let g = 0; g < G; g++) {
      const ratio = bitsToF32(roundToDtypeBits(f32Bits(Math.fround(sv[o * G + g]! / wsf2)), "F16"));
      for (let v = -8; v < 8; v++) lut[v + 8] = f32BitsToE4m3(f32Bits(Math.fround(v * ratio)));
      for (let i = g * group; i < (g + 1) * group; i++) e8[o * inF + i] = lut[(((packed[src + i]! >> shift) & 15) ^ 8)]!;
    }
  }
  return e8;
}
