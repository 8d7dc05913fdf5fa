/**
 * W4A16_AWQ without calibration (`--qformat int4_awq_rtn`): ModelOpt's int4 AWQ checkpoint layout
 * (spec §3.3) filled by round-to-nearest, with activation-smoothing scales of one. Any tool that
 * reads modelopt `int4_awq` exports reads this; accuracy is RTN's, not AWQ's.
 *
 * Per quantized linear P (per rank, after the TP split of the fp weight):
 *   P.weight                   I8   [out/2, in]      int4 packed along OUT: byte (o2, i) holds
 *                                                    Wq[2·o2, i] in the low nibble, Wq[2·o2+1, i]
 *                                                    in the high nibble, two's complement
 *                                                    (modelopt pack_int4_in_uint8)
 *   P.weights_scaling_factor   dtype [out, in/group] one scale per (output row, group of `group`
 *                                                    input columns); modelopt's orientation. The
 *                                                    build transposes it only when rows > cols
 *                                                    (true for real layers), so it is not
 *                                                    pre-transposed (spec §7.19)
 *   P.prequant_scaling_factor  dtype [in]           ones (no smoothing); q, k, v share it
 *   P.bias                     unchanged
 *
 * Math: s = amax(group) / 7 in f32 (modelopt get_scaling_factor_from_weight; an all-zero group gets
 * 1.0), stored in the model dtype; Wq = clamp(round_half_even(W / s_stored), -8, 7). We divide by
 * the *stored* scale (modelopt divides by its f32 scale, then TRT-LLM casts the scale to the model
 * dtype at build): the difference is at most one int4 step on rare ties, and it makes
 * |W − Wq·s_stored| ≤ s_stored/2 hold exactly for what the engine uses. Scales in the model dtype
 * follow the issue; modelopt writes f32 and the build casts, both load.
 *
 * Config: quant_algo W4A16_AWQ, group_size (64 or 128), pre_quant_scale true, has_zero_point false,
 * exclude_modules listing what stays fp (lm_head, router, embeddings; for MoE models the expert
 * block `transformer.layers.*.mlp`, see below). Not done: modelopt's vocab padding to a multiple
 * of 64 (only needed when lm_head is quantized, which we never do).
 *
 * MoE experts stay in the model dtype: TRT-LLM's grouped MoE weights are stored preprocessed for
 * one GPU architecture (no portable form), so the MoE module is excluded.
 *
 * TP: column layers keep the full input dim; row layers (dense, proj) split it, so in/tp must be a
 * multiple of group_size. The row count per rank must be even.
 */
import { type PretrainedConfig, type QuantConfig, QuantConfigSchema } from "../format/checkpoint-config.ts";
import type { DType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import type { ParamSpec } from "../tensor.ts";
import type { LazyTensor } from "../tensor/lazy.ts";
import type { QuantBackend } from "./backend.ts";
import type { FloatDType, QuantKernelParams } from "./kernel.ts";
import { OnesTensor, QuantizedLinear, QuantTensor, ScaleTensor } from "./lazy.ts";
import { excludeList, isExcluded, type LinearInfo } from "./modules.ts";
import { bytesOf, dequantizeF32, f32Tensor, inputSlice, matrixOf, type QuantScheme, type SchemeContext } from "./scheme.ts";
import { type CalibPlan, globalModule, planOf } from "./calib-plan.ts";
import { clipRowFull, clipRowToBlocks, smoothedGramSlice } from "./awq-clip.ts";
import { smoothedRank } from "./int8-sq.ts";
import { cast } from "../tensor/lazy.ts";

export const AWQ_GROUP_SIZES = [64, 128] as const;
/** The MoE expert module, excluded for MoE models (see the file comment). */
export const AWQ_MOE_EXCLUDE = "transformer.layers.*.mlp";

const isMoe = (cfg: PretrainedConfig) => ((cfg.moe as { num_experts?: number } | undefined)?.num_experts ?? 0) > 0;

export const int4Awq: QuantScheme = {
  algo: "W4A16_AWQ",
  qformat: "int4_awq_rtn",
  summary: "int4 group-wise, modelopt AWQ layout, round-to-nearest scales (no calibration)",

  configure(user: Partial<QuantConfig>, cfg: PretrainedConfig): QuantConfig {
    const g = user.group_size ?? 128;
    if (!(AWQ_GROUP_SIZES as readonly number[]).includes(g))
      throw new TrtbError("QUANT_CONFIG", `W4A16_AWQ: group_size must be ${AWQ_GROUP_SIZES.join(" or ")}, got ${g}`);
    return QuantConfigSchema.parse({
      ...user,
      quant_algo: "W4A16_AWQ",
      group_size: g,
      has_zero_point: false,
      pre_quant_scale: true,
      exclude_modules: excludeList(user.exclude_modules, isMoe(cfg) ? [AWQ_MOE_EXCLUDE] : []),
    });
  },

  quantizes(l: LinearInfo, _cfg: PretrainedConfig, q: QuantConfig): boolean {
    return l.shape.length === 2 && !isExcluded(l.module, q.exclude_modules ?? []);
  },

  params(l: LinearInfo, dtype: DType, q: QuantConfig): ParamSpec[] {
    const [out, inF] = l.shape as [number, number];
    const G = q.group_size;
    if (inF % G !== 0)
      throw new TrtbError("QUANT_GROUP",
        `${l.module}: ${inF} input channels per rank are not a multiple of group_size ${G}` +
        (l.rowParallel ? " (row-parallel layers split the input dim over tp_size: pick a tp_size or group_size that divides it)" : ""));
    if (out % 2 !== 0) throw new TrtbError("QUANT_SHAPE", `${l.module}: int4 packing along the output dim needs an even row count per rank, got ${out}`);
    return [
      { name: `${l.module}.weight`, shape: [out / 2, inF], dtype: "I8" },
      { name: `${l.module}.weights_scaling_factor`, shape: [out, inF / G], dtype },
      { name: `${l.module}.prequant_scaling_factor`, shape: [inF], dtype },
    ];
  },

  kernelParams(l: LinearInfo, modelDtype: FloatDType, q: QuantConfig): QuantKernelParams {
    const { rows, cols } = matrixOf(l.shape);
    return {
      format: "int4_packed_rows", srcDtype: modelDtype, scaleDtype: modelDtype, rows, cols, groupSize: q.group_size,
      divisor: 7, minScale: 0, zeroScale: 1, clamp: null, qmin: -8, qmax: 7, rounding: "half_even", divideByStoredScale: true,
    };
  },

  quantize(l, w, q, modelDtype, backend: QuantBackend, ctx?: SchemeContext): LazyTensor[] {
    if (ctx?.plan) return awqCalibrated(l, w, q, modelDtype, backend, ctx.plan, ctx);
    const [wSpec, sSpec, pSpec] = int4Awq.params(l, modelDtype, q) as [ParamSpec, ParamSpec, ParamSpec];
    const owner = new QuantizedLinear(w, int4Awq.kernelParams(l, modelDtype, q), backend);
    return [
      new QuantTensor(wSpec.name, "I8", wSpec.shape, owner),
      new ScaleTensor(sSpec.name, sSpec.shape, owner),
      new OnesTensor(pSpec.name, modelDtype, pSpec.shape),
    ];
  },

  effectiveWeight(l, get, q, modelDtype, backend): LazyTensor {
    const w = get(`${l.module}.weight`);
    const s = get(`${l.module}.weights_scaling_factor`);
    const pre = get(`${l.module}.prequant_scaling_factor`);
    const [out, inF] = [w.shape[0]! * 2, w.shape[1]!];
    const p = { ...int4Awq.kernelParams({ ...l, shape: [out, inF] }, modelDtype, q), scaleDtype: s.dtype as FloatDType };
    return f32Tensor(w.name, [out, inF], () => {
      const v = dequantizeF32(p, bytesOf(w), bytesOf(s), backend);
      // activations are multiplied by the prequant scale before the GEMM: fold it into the columns
      const ps = new Float32Array(inF);
      pre.writeRange(new Uint8Array(ps.buffer), "F32", 0, inF);
      for (let o = 0; o < out; o++) for (let i = 0; i < inF; i++) v[o * inF + i] = Math.fround(v[o * inF + i]! * ps[i]!);
      return v;
    });
  },
};

/**
 * W4A16_AWQ from calibration (`--qformat int4_awq`): the rank weight divided column-wise by its
 * slice of the searched prequant (src/calib/awq.ts), clipped per (row, group) when the plan's clip
 * search is on (awq-clip.ts: on the whole row when the plan has the full Gram, the layer-by-layer
 * search's plans; for a row-parallel rank on its own columns' part of it), then the same int4
 * kernel as above on the f32 result. The stored
 * prequant_scaling_factor is the plan's (model dtype), sliced for row-parallel layers.
 */
export function awqCalibrated(l: LinearInfo, w: LazyTensor, q: QuantConfig, modelDtype: FloatDType, backend: QuantBackend, plan: CalibPlan, ctx: SchemeContext): LazyTensor[] {
  const [wSpec, sSpec, pSpec] = int4Awq.params(l, modelDtype, q) as [ParamSpec, ParamSpec, ParamSpec];
  const p = planOf(plan, globalModule(l.module, l.layer), "AWQ");
  const [out, inF] = l.shape as [number, number];
  const G = q.group_size;
  const pre = p.pre ? inputSlice(p.pre, l, ctx.mapping) : undefined;
  const g0 = l.rowParallel ? (ctx.mapping.tpRank * inF) / G : 0;
  const smoothed = f32Tensor(`${l.module}.weight`, l.shape, () => {
    const v = smoothedRank(w, pre);
    if (plan.awqClip && p.gram) {
      // the full-row clip (layer-by-layer plans) on this rank's columns of the input Gram
      const sg = smoothedGramSlice(p.gram, Math.round(Math.sqrt(p.gram.length)), g0 * G, inF, pre);
      for (let o = 0; o < out; o++) clipRowFull(v, o * inF, inF, G, sg, modelDtype);
    } else if (plan.awqClip && p.gramBlocks) for (let o = 0; o < out; o++) clipRowToBlocks(v, o * inF, inF, G, p.gramBlocks, g0, modelDtype);
    return v;
  });
  const owner = new QuantizedLinear(smoothed, { ...int4Awq.kernelParams(l, modelDtype, q), srcDtype: "F32" }, backend);
  const preT = pre
    ? cast(f32Tensor(pSpec.name, pSpec.shape, () => Float32Array.from(pre)), modelDtype)
    : new OnesTensor(pSpec.name, modelDtype, pSpec.shape);
  return [new QuantTensor(wSpec.name, "I8", wSpec.shape, owner), new ScaleTensor(sSpec.name, sSpec.shape, owner), preT];
}
