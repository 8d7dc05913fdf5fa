/**
 * Phi-3 name table: Hugging Face → TRT-LLM (docs/families.md §3).
 *
 * - HF `qkv_proj` is already [q; k; v]; per rank we write [q_r; k_r; v_r] like Llama (KV heads
 *   duplicated when nKV < tp).
 * - HF `gate_up_proj` is [gate; up]. TRT-LLM's MLP applies swiglu = silu(second half) · first half
 *   *per rank*, so each rank gets [up_r; gate_r] (each half split over tp, then joined). Upstream's
 *   split_weights.py chunks the whole swapped tensor instead, which only agrees at tp = 1.
 * - No `mlp.gate` tensor.
 */
import type { FamilyTable } from "../common/convert.ts";

export const PHI3_TABLE: FamilyTable = {
  first: [{ trt: "transformer.vocab_embedding.weight", src: "model.embed_tokens.weight", split: "embedding" }],
  layer: [
    { trt: "transformer.layers.{i}.input_layernorm.weight", src: "model.layers.{L}.input_layernorm.weight", split: "replicate" },
    { trt: "transformer.layers.{i}.attention.qkv.weight", src: "model.layers.{L}.self_attn.qkv_proj.weight", split: "qkv" },
    { trt: "transformer.layers.{i}.attention.dense.weight", src: "model.layers.{L}.self_attn.o_proj.weight", split: "row" },
    { trt: "transformer.layers.{i}.post_layernorm.weight", src: "model.layers.{L}.post_attention_layernorm.weight", split: "replicate" },
    { trt: "transformer.layers.{i}.mlp.fc.weight", src: "model.layers.{L}.mlp.gate_up_proj.weight", split: "fused_halves", swapHalves: true },
    { trt: "transformer.layers.{i}.mlp.proj.weight", src: "model.layers.{L}.mlp.down_proj.weight", split: "row" },
  ],
  last: [
    { trt: "transformer.ln_f.weight", src: "model.norm.weight", split: "replicate" },
    { trt: "lm_head.weight", src: "lm_head.weight", split: "lm_head" },
  ],
};
