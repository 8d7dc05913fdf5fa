/** Tolerances of the GPU engine tests (gpu-families, gpu-heads, gpu-fp8 and their emulated twins). */
import { klFromLogProbs, logSoftmax64 } from "../../src/eval.ts";

/**
 * max|Δ| / max|ref| of engine logits (fast numerics) against transformers' fp32 logits. The engine
 * keeps the residual stream in f32 but rounds every GEMM input (normed activations, attention
 * output, MLP activation), the KV cache, and q / probabilities in the tensor-core attention to
 * bf16, as TensorRT-LLM does. Measured on H100: 8.4e-4 (gemma) … 8.5e-3 (llama/mistral).
 */
export const GPU_LOGITS_REL_TOL = 1.5e-2;
/**
 * Exact numerics (f32 activations and KV cache; GEMM inputs used to ~16 bits) against the fp32 CPU
 * runner on the same checkpoint. Measured on H100: 8.5e-7 … 9.8e-6.
 */
export const GPU_EXACT_REL_TOL = 2e-5;
/**
 * `--logits_dtype float16` engine against the float32-logits engine of the same float16 checkpoint
 * (fast numerics both): the logits differ by their f16 rounding (half an ulp, 2^-11 ≈ 4.9e-4 of
 * each value) plus what a different lm_head tactic's accumulation order adds (~1e-6). Measured on
 * the H200: 2.6e-4 (llama), 3.8e-4 (qwen2), 5.8e-4 (gemma2, soft-capped); the CPU emulation gives
 * ≤ 4.9e-4 by construction.
 */
export const GPU_F16_LOGITS_REL_TOL = 1e-3;

/**
 * FP8 engine, fast numerics: mean KL(bf16 model ‖ engine) at most this multiple of KL(bf16 model ‖
 * CPU runner on the FP8 checkpoint). Measured on tiny-pycode, 40 held-out tokens: 8.5e-3 vs 1.07e-2.
 */
export const FP8_FAST_KL_RATIO = 1.5;
/**
 * FP8 engine, exact numerics (f32 activations): the GEMMs sum e4m3 products in another order than
 * the CPU runner, so a value landing within ~1e-7 of an e4m3 midpoint can round the other way in the
 * next layer's input; rare, but one such flip moves the logits by ~1e-2 (measured on 40 held-out
 * tokens of tiny-pycode: positions 0–7 within 3e-7, then one flip in position 8's K/V and 1e-2–4e-2
 * for every later position). Mean KL(CPU runner ‖ engine) at most this fraction of KL(bf16 ‖ CPU
 * runner on the FP8 checkpoint); greedy ids identical. Measured: emulation 9.96e-4 / 1.07e-2 = 0.093
 * (40 tokens); H200 2.5e-4 / 1.23e-2 = 0.02 (40 tokens), 3.07e-3 / 8.77e-3 = 0.35 (200 tokens: more
 * positions, more flips), FP8 + FP8 KV 3.81e-3 / 1.57e-2 = 0.24. A wrong scale or layout gives a KL
 * of the order of KL(bf16 ‖ CPU) or far above it.
 */
export const FP8_EXACT_KL_FRACTION = 0.5;
/**
 * SmoothQuant W8A8 engine, exact numerics: the int32 sums are exact, but the engine's f32 inputs
 * differ from the CPU runner's by ~1e-7, and int8's uniform step (amax / 127) puts more values
 * within that of a rounding midpoint than e4m3's relative steps do (measured on 40 held-out tokens
 * of tiny-pycode: positions 0–9 within 4e-7, then one flip in position 10's K/V; KL 1.97e-3 against
 * KL(bf16 ‖ CPU runner) 8.44e-3 = 0.23; H200: 0.15, 0.31 and 1e-11 on 40, 200 and 12 tokens). Same
 * form as FP8_EXACT_KL_FRACTION; greedy ids identical.
 */
export const INT8_EXACT_KL_FRACTION = 0.4;

/** Mean over positions of KL(p ‖ q) of two [S, V] logit arrays (`trtllm eval`'s KL, src/eval.ts). */
export function meanKl(p: Float32Array, q: Float32Array, V: number): number {
  const S = p.length / V;
  let tot = 0;
  for (let s = 0; s < S; s++) tot += klFromLogProbs(logSoftmax64(p.subarray(s * V, (s + 1) * V)), logSoftmax64(q.subarray(s * V, (s + 1) * V)));
  return tot / S;
}

/**
 * Quantized KV cache (INT8 / FP8), exact numerics, against the CPU runner's quant-sim on the same
 * checkpoint: both quantize K/V after RoPE by the same rules, but the GPU's K/V differ from the
 * CPU's by ~1e-6 before quantization, so a value next to a rounding boundary can land one step
 * (s) off; one such step moves logits by ~1e-3 of their range. The CPU emulation measures 3e-7.
 */
export const GPU_KVQ_EXACT_REL_TOL = 5e-3;
/**
 * Quantized KV cache, fast numerics (bf16 GEMM inputs move K/V before quantization, so many cache
 * values differ by one quantization step: up to 2^-4 relative for e4m3) against quant-sim's f32
 * reference. The CPU emulation measures 1.3e-2 (INT8) and 2.0e-2 (FP8) on the llama fixture; the
 * H200 1.4e-2 … 1.6e-2 (llama INT8), 1.7e-2 … 2.0e-2 (llama FP8), 4.7e-2 … 5.2e-2 (qwen2 FP8 + W8A16).
 */
export const GPU_KVQ_FAST_REL_TOL = 8e-2;
