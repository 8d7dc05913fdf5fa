/**
 * Shared body of the two per-channel weight-only schemes, W8A16 (int8-wo.ts) and W4A16
 * (int4-wo.ts), in their architecture-independent form (spec §3.2, §7.9).
 *
 * The checkpoint keeps the fp weights ([out, in], model dtype, no per_channel_scale) and only sets
 * `quant_algo`; `trtllm-build` quantizes them for the GPU it builds on (`preprocess_weights` →
 * `weight_only_quantize_dict` → `symmetric_quantize`, then the SM-specific mixed-GEMM layout). That
 * is what modelopt's `int8_wo` / `int4_wo` export writes, and the only form that is not tied to one
 * GPU architecture. Nothing is quantized at conversion time.
 *
 * The CPU runner replays the build-time quantization so accuracy can be measured. Upstream
 * `symmetric_quantize` (cutlass_preprocessors.cpp, read at v0.11 `05316d33`), per rank, on the
 * transposed weight [in, out], per output column j (per (expert, column) for MoE):
 *     scale_f32[j] = max_i |w[i, j]| · 2^-(bits-1)          (amax/128 for int8, amax/8 for int4)
 *     stored[j]    = scale_f32[j] rounded to the model dtype  (per_channel_scale, ComputeType)
 *     q            = clamp(round(w / scale_f32[j]), -128..127 | -8..7), 0 where the scale is 0;
 *                    round() is C's: half away from zero; the division uses the f32 scale
 *     engine value = q · stored[j]
 * So the divisors are 128 / 8, not 127 / 7 (the question; checked in the source), and the
 * q range keeps -128 / -8. Row-parallel layers (dense, proj) are quantized per rank on their slice
 * of the input dim, so the runner simulates per rank before merging.
 *
 * Which weights: names containing qkv/dense/fc/proj/gate `.weight` (MoE experts too), minus
 * `exclude_modules` matched against the weight name (build) and module name (model side).
 */
import { type PretrainedConfig, type QuantAlgo, type QuantConfig, QuantConfigSchema } from "../format/checkpoint-config.ts";
import type { DType } from "../dtype.ts";
import type { ParamSpec } from "../tensor.ts";
import type { LazyTensor } from "../tensor/lazy.ts";
import type { QuantBackend } from "./backend.ts";
import type { FloatDType, QuantKernelParams } from "./kernel.ts";
import { excludeList, isExcluded, type LinearInfo } from "./modules.ts";
import { f32Tensor, matrixOf, type QFormatName, type QuantScheme, simulateF32 } from "./scheme.ts";

export function weightOnlyScheme(o: { algo: QuantAlgo; qformat: QFormatName; bits: 8 | 4; summary: string }): QuantScheme {
  const qmax = o.bits === 8 ? 127 : 7;
  const scheme: QuantScheme = {
    algo: o.algo,
    qformat: o.qformat,
    summary: o.summary,
    configure(user: Partial<QuantConfig>, _cfg: PretrainedConfig): QuantConfig {
      return QuantConfigSchema.parse({
        ...user,
        quant_algo: o.algo,
        // null keeps upstream's own defaults; a user list is written out in full (see modules.ts)
        exclude_modules: user.exclude_modules ? excludeList(user.exclude_modules) : null,
      });
    },
    quantizes(l: LinearInfo, _cfg: PretrainedConfig, q: QuantConfig): boolean {
      return !isExcluded(l.module, q.exclude_modules ?? ["*shared_expert_gate.weight"]);
    },
    params(l: LinearInfo, dtype: DType): ParamSpec[] {
      return [{ name: `${l.module}.weight`, shape: [...l.shape], dtype }];
    },
    kernelParams(l: LinearInfo, modelDtype: FloatDType): QuantKernelParams {
      const { rows, cols } = matrixOf(l.shape);
      return {
        format: "int8", srcDtype: modelDtype, scaleDtype: modelDtype, rows, cols, groupSize: cols,
        divisor: 2 ** (o.bits - 1), minScale: 0, zeroScale: 0, clamp: null, qmin: -qmax - 1, qmax,
        rounding: "half_away", divideByStoredScale: false,
      };
    },
    quantize(_l: LinearInfo, w: LazyTensor): LazyTensor[] {
      return [w]; // quantized by trtllm-build
    },
    effectiveWeight(l, get, q, modelDtype, backend: QuantBackend): LazyTensor {
      const w = get(`${l.module}.weight`);
      const p = scheme.kernelParams(l, modelDtype, q);
      return f32Tensor(w.name, w.shape, () => simulateF32(w, p, backend));
    },
  };
  return scheme;
}
