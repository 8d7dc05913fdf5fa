/** Tolerances of the GPU engine tests (gpu-families.test.ts, gpu-heads.test.ts). */

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
 * Quantized KV cache (INT8 / FP8), exact numerics, against the CPU runner's quant-sim on the same
 * checkpoint: both quantize K/V after RoPE by the same rules, but the GPU's K/V differ from the
 * CPU's by ~1e-6 before quantization, so a value next to a rounding boundary can land one step
 * (s) off; one such step moves logits by ~1e-3 of their range. The CPU emulation measures 3e-7.
 */
export const GPU_KVQ_EXACT_REL_TOL = 5e-3;
/**
 * Quantized KV cache, fast numerics (bf16 GEMM inputs move K/V before quantization, so many cache
 * values differ by one quantization step: up to 2^-4 relative for e4m3) against quant-sim's f32
 * reference. The CPU emulation measures 1.3e-2 (INT8) and 2.0e-2 (FP8) on the llama fixture.
 */
export const GPU_KVQ_FAST_REL_TOL = 5e-2;
