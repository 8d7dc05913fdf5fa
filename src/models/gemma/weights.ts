/**
 * Gemma / Gemma2 name table: Hugging Face → TRT-LLM (docs/families.md §2).
 *
 * - Every RMSNorm weight is stored as `hf + 1.0`, computed in f32 and rounded once to the model
 *   dtype (input, post-attention, Gemma2's pre/post feed-forward, final norm).
 * - `lm_head` is always a copy of the embedding (Gemma ties them).
 * - `post_layernorm` is HF `post_attention_layernorm`. In Gemma (1) it is the pre-MLP norm, as in
 *   Llama; in Gemma2 (`inter_layernorms: true`) it normalises the attention output, and
 *   `pre_feedforward_layernorm` / `post_feedforward_layernorm` wrap the MLP.
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import type { FamilyTable, NameRow } from "../common/convert.ts";
import { isGemma2 } from "./config.ts";

const norm = (trt: string, src: string, when?: (c: PretrainedConfig) => boolean): NameRow =>
  ({ trt, src, split: "replicate", transform: "plus_one", ...(when ? { when } : {}) });

export const GEMMA_TABLE: FamilyTable = {
  first: [{ trt: "transformer.vocab_embedding.weight", src: "model.embed_tokens.weight", split: "embedding" }],
  layer: [
    norm("transformer.layers.{i}.input_layernorm.weight", "model.layers.{L}.input_layernorm.weight"),
    {
      trt: "transformer.layers.{i}.attention.qkv.weight",
      src: ["model.layers.{L}.self_attn.q_proj.weight", "model.layers.{L}.self_attn.k_proj.weight", "model.layers.{L}.self_attn.v_proj.weight"],
      split: "qkv",
    },
    { trt: "transformer.layers.{i}.attention.dense.weight", src: "model.layers.{L}.self_attn.o_proj.weight", split: "row" },
    norm("transformer.layers.{i}.post_layernorm.weight", "model.layers.{L}.post_attention_layernorm.weight"),
    norm("transformer.layers.{i}.pre_feedforward_layernorm.weight", "model.layers.{L}.pre_feedforward_layernorm.weight", isGemma2),
    norm("transformer.layers.{i}.post_feedforward_layernorm.weight", "model.layers.{L}.post_feedforward_layernorm.weight", isGemma2),
    { trt: "transformer.layers.{i}.mlp.fc.weight", src: "model.layers.{L}.mlp.gate_proj.weight", split: "column" },
    { trt: "transformer.layers.{i}.mlp.gate.weight", src: "model.layers.{L}.mlp.up_proj.weight", split: "column" },
    { trt: "transformer.layers.{i}.mlp.proj.weight", src: "model.layers.{L}.mlp.down_proj.weight", split: "row" },
  ],
  last: [
    norm("transformer.ln_f.weight", "model.norm.weight"),
    { trt: "lm_head.weight", src: "model.embed_tokens.weight", split: "lm_head", note: "Gemma always ties lm_head to the embedding" },
  ],
};
