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
 * `--logits_dtype float16` engine against the float32-logits engine of the same float16 checkpoint
 * (fast numerics both): the logits differ by their f16 rounding (half an ulp, 2^-11 ≈ 4.9e-4 of
 * each value) plus what a different lm_head tactic's accumulation order adds (~1e-6). Not yet
 * measured on a GPU; the CPU emulation gives ≤ 4.9e-4 by construction.
 */
export const GPU_F16_LOGITS_REL_TOL = 1e-3;
