/**
 * FP8_PER_CHANNEL_PER_TOKEN (`--qformat fp8_rowwise`, `convert --use_fp8_rowwise`): e4m3 weights
 * with one f32 scale per output channel for the MLP linears; activations are quantized per token at
 * run time (spec §3.9). No calibration.
 *
 * Per quantized linear P in {mlp.fc, mlp.gate, mlp.proj}:
 *   P.weight             F8_E4M3 [out_local, in_local]
 *   P.per_channel_scale  F32     [out_local]
 * Math (TRT-LLM's fp8 rowwise weight conversion): x = clamp(w as f32, clamp_val[0], clamp_val[1]);
 * s = max(amax_row(x) / 448, 1/(448·512)) in f32; P.weight = e4m3(clamp(x / s, -448, 448)), round to
 * nearest even. clamp_val defaults to [-1200, 1200] (`--use_fp8_rowwise`'s value) and is also
 * written to the config, where upstream uses it to clamp activations before their per-token
 * quantization.
 *
 * Attention stays in the model dtype. Upstream has two generations of this mode: ≤0.14 quantizes
 * only the MLPs and always skips the first and last decoder layers; ≥0.15 quantizes attention too
 * unless `use_meta_recipe`, honours `exclude_modules`, and with the Meta recipe skips attention, the
 * input norms and the first and last layers. We write the ≥0.15 form that means "MLPs only":
 *   use_meta_recipe false (default): every layer's MLP; exclude_modules adds `*attention` and
 *     `*input_layernorm` so upstream keeps those in the model dtype;
 *   use_meta_recipe true (`--use_meta_fp8_rowwise_recipe`): as above, minus the first and last
 *     decoder layers (global indices 0 and L−1).
 * The config therefore carries `use_meta_recipe` and `clamp_val`, keys QuantConfig only knows from
 * 0.15 on: FP8 rowwise checkpoints target TRT-LLM ≥ 0.15.
 *
 * Refused: MoE models (upstream leaves experts unquantized in this mode and would feed fp8 norms
 * into them) and models with sandwich norms (Gemma2: `post_layernorm` is not the pre-MLP norm, which
 * upstream's FP8 rowwise norm replacement assumes).
 */
import { type PretrainedConfig, type QuantConfig, QuantConfigSchema } from "../format/checkpoint-config.ts";
import type { DType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import type { ParamSpec } from "../tensor.ts";
import type { LazyTensor } from "../tensor/lazy.ts";
import type { FloatDType, QuantKernelParams } from "./kernel.ts";
import { QuantizedLinear, QuantTensor, ScaleTensor } from "./lazy.ts";
import { excludeList, isExcluded, type LinearInfo } from "./modules.ts";
import { bytesOf, dequantizeF32, f32Tensor, matrixOf, type QuantScheme } from "./scheme.ts";

export const FP8_DEFAULT_CLAMP: readonly [number, number] = [-1200, 1200];
/** Smallest per-channel scale: 1/(448·512), as upstream clamps it. */
export const FP8_MIN_SCALE = Math.fround(1 / (448 * 512));

export const fp8Rowwise: QuantScheme = {
  algo: "FP8_PER_CHANNEL_PER_TOKEN",
  qformat: "fp8_rowwise",
  summary: "fp8 e4m3 MLP weights with per-channel scales, per-token activations (no calibration)",

  configure(user: Partial<QuantConfig>, cfg: PretrainedConfig): QuantConfig {
    if (((cfg.moe as { num_experts?: number } | undefined)?.num_experts ?? 0) > 0)
      throw new TrtbError("QUANT_UNSUPPORTED", `${cfg.architecture}: FP8 rowwise does not support mixture-of-experts models (upstream leaves experts unquantized); use int4_awq_rtn, int8_wo or int4_wo`);
    if (cfg.inter_layernorms === true)
      throw new TrtbError("QUANT_UNSUPPORTED", `${cfg.architecture}: FP8 rowwise does not support models with sandwich norms (Gemma2)`);
    const clamp = user.clamp_val ?? FP8_DEFAULT_CLAMP;
    if (!(clamp.length === 2 && clamp[0]! < clamp[1]!)) throw new TrtbError("QUANT_CONFIG", `clamp_val must be [min, max] with min < max, got ${JSON.stringify(clamp)}`);
    return QuantConfigSchema.parse({
      ...user,
      quant_algo: "FP8_PER_CHANNEL_PER_TOKEN",
      clamp_val: [...clamp],
      use_meta_recipe: user.use_meta_recipe ?? false,
      exclude_modules: excludeList(user.exclude_modules, ["*attention", "*input_layernorm"]),
    });
  },

  quantizes(l: LinearInfo, cfg: PretrainedConfig, q: QuantConfig): boolean {
    if (l.kind === "qkv" || l.kind === "dense" || l.shape.length !== 2) return false;
    if (q.use_meta_recipe && (l.layer === 0 || l.layer === cfg.num_hidden_layers - 1)) return false;
    return !isExcluded(l.module, q.exclude_modules ?? []);
  },

  params(l: LinearInfo): ParamSpec[] {
    const [out, inF] = l.shape as [number, number];
    return [
      { name: `${l.module}.weight`, shape: [out, inF], dtype: "F8_E4M3" },
      { name: `${l.module}.per_channel_scale`, shape: [out], dtype: "F32" },
    ];
  },

  kernelParams(l: LinearInfo, modelDtype: FloatDType, q: QuantConfig): QuantKernelParams {
    const { rows, cols } = matrixOf(l.shape);
    const c = q.clamp_val ?? FP8_DEFAULT_CLAMP;
    return {
      format: "fp8_e4m3", srcDtype: modelDtype, scaleDtype: "F32", rows, cols, groupSize: cols, divisor: 448,
      minScale: FP8_MIN_SCALE, zeroScale: 0, clamp: [c[0]!, c[1]!], qmin: 0, qmax: 0, rounding: "half_even", divideByStoredScale: false,
    };
  },

  quantize(l, w, q, modelDtype, backend): LazyTensor[] {
    const [wSpec, sSpec] = fp8Rowwise.params(l, modelDtype as DType, q) as [ParamSpec, ParamSpec];
    const owner = new QuantizedLinear(w, fp8Rowwise.kernelParams(l, modelDtype, q), backend);
    return [new QuantTensor(wSpec.name, "F8_E4M3", wSpec.shape, owner), new ScaleTensor(sSpec.name, sSpec.shape, owner)];
  },

  effectiveWeight(l, get, q, modelDtype, backend): LazyTensor {
    const w = get(`${l.module}.weight`);
    const s = get(`${l.module}.per_channel_scale`);
    const p = { ...fp8Rowwise.kernelParams(l, modelDtype, q), scaleDtype: s.dtype as FloatDType };
    return f32Tensor(w.name, w.shape, () => dequantizeF32(p, bytesOf(w), bytesOf(s), backend));
  },
};
