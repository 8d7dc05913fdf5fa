/**
 * Llama-family name table: Hugging Face → TRT-LLM (spec §2.2). Also used by Mistral, and by Meta
 * checkpoints once their shards are presented under HF names (see meta.ts).
 *
 * Note the MLP naming: TRT-LLM `mlp.fc` is the activated branch = HF `gate_proj`, `mlp.gate` = HF
 * `up_proj` (§2.4, §7.1).
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import type { FamilyTable } from "../common/convert.ts";

const attnBias = (c: PretrainedConfig) => c.attn_bias === true;
const mlpBias = (c: PretrainedConfig) => c.mlp_bias === true;

export const LLAMA_TABLE: FamilyTable = {
  first: [
    { trt: "transformer.vocab_embedding.weight", src: "model.embed_tokens.weight", split: "embedding" },
  ],
  layer: [
    { trt: "transformer.layers.{i}.input_layernorm.weight", src: "model.layers.{L}.input_layernorm.weight", split: "replicate" },
    {
      trt: "transformer.layers.{i}.attention.qkv.weight",
      src: ["model.layers.{L}.self_attn.q_proj.weight", "model.layers.{L}.self_attn.k_proj.weight", "model.layers.{L}.self_attn.v_proj.weight"],
      split: "qkv",
    },
    {
      trt: "transformer.layers.{i}.attention.qkv.bias",
      src: ["model.layers.{L}.self_attn.q_proj.bias", "model.layers.{L}.self_attn.k_proj.bias", "model.layers.{L}.self_attn.v_proj.bias"],
      split: "qkv", when: attnBias, note: "attention_bias models",
    },
    { trt: "transformer.layers.{i}.attention.dense.weight", src: "model.layers.{L}.self_attn.o_proj.weight", split: "row" },
    { trt: "transformer.layers.{i}.attention.dense.bias", src: "model.layers.{L}.self_attn.o_proj.bias", split: "replicate", when: attnBias, note: "attention_bias models" },
    { trt: "transformer.layers.{i}.post_layernorm.weight", src: "model.layers.{L}.post_attention_layernorm.weight", split: "replicate" },
    { trt: "transformer.layers.{i}.mlp.fc.weight", src: "model.layers.{L}.mlp.gate_proj.weight", split: "column" },
    { trt: "transformer.layers.{i}.mlp.fc.bias", src: "model.layers.{L}.mlp.gate_proj.bias", split: "column", when: mlpBias, note: "mlp_bias models" },
    { trt: "transformer.layers.{i}.mlp.gate.weight", src: "model.layers.{L}.mlp.up_proj.weight", split: "column" },
    { trt: "transformer.layers.{i}.mlp.gate.bias", src: "model.layers.{L}.mlp.up_proj.bias", split: "column", when: mlpBias, note: "mlp_bias models" },
    { trt: "transformer.layers.{i}.mlp.proj.weight", src: "model.layers.{L}.mlp.down_proj.weight", split: "row" },
    { trt: "transformer.layers.{i}.mlp.proj.bias", src: "model.layers.{L}.mlp.down_proj.bias", split: "replicate", when: mlpBias, note: "mlp_bias models" },
  ],
  last: [
    { trt: "transformer.ln_f.weight", src: "model.norm.weight", split: "replicate" },
    // Tied models: the source name is swapped for model.embed_tokens.weight by the family (never silently).
    { trt: "lm_head.weight", src: "lm_head.weight", split: "lm_head" },
  ],
};
