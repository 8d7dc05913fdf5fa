/**
 * Gemma / Gemma2 → `GemmaForCausalLM` (docs/families.md §2).
 *
 * Spec notes:
 * - Every RMSNorm weight is stored as `hf + 1.0`, computed in f32 and rounded once to the model
 *   dtype (input, post-attention, Gemma2's pre/post feed-forward, final norm).
 * - The embedding is stored unscaled; runtimes multiply it by sqrt(hidden_size) (f32 in our runners).
 * - `lm_head` is always a copy of the embedding (Gemma ties them).
 * - `post_layernorm` is HF `post_attention_layernorm`. In Gemma (1) it is the pre-MLP norm, as in
 *   Llama; in Gemma2 (`inter_layernorms: true`) it normalises the attention output, and
 *   `pre_feedforward_layernorm` / `post_feedforward_layernorm` wrap the MLP.
 * - `use_parallel_embedding` is forced to tp > 1 (dim 0), as upstream 1.x does.
 * - Gemma2's alternating local/global attention is not part of upstream's config; we also write the
 *   HF `sliding_window` and `layer_types` as extra top-level keys (readers ignore unknown keys) so our
 *   runtimes apply the window.
 */
import type { PretrainedConfig } from "../../config.ts";
import { TrtbError } from "../../errors.ts";
import { type HFConfig, hfRope } from "../../format/hf-config.ts";
import type { Mapping } from "../../mapping.ts";
import { baseConfigFromHF, checkSplits, type FromSourceOptions, hfHeadSize, mappingOf } from "../common/config-common.ts";
import type { FamilyTable, NameRow } from "../common/convert.ts";
import { type DecoderLayout, LLAMA_LAYOUT } from "../common/decoder.ts";
import { DecoderModel, fromCheckpoint, fromHuggingFace } from "../common/decoder-model.ts";
import type { Family } from "../common/family.ts";

const isGemma2 = (c: PretrainedConfig) => c.inter_layernorms === true;
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

export function gemmaConfigFromHF(hf: HFConfig, opts: FromSourceOptions = {}): PretrainedConfig {
  const arch = hf.architectures[0]!;
  const gemma2 = arch === "Gemma2ForCausalLM";
  const act = (hf.hidden_activation as string | undefined) ?? hf.hidden_act ?? "gelu_pytorch_tanh";
  if (act !== "gelu_pytorch_tanh" && act !== "gelu")
    throw new TrtbError("CFG_UNSUPPORTED", `${arch}: activation ${JSON.stringify(act)} is not supported (expected gelu_pytorch_tanh)`);
  const rope = hfRope(hf);
  if (rope.scaling) throw new TrtbError("CFG_UNSUPPORTED", `${arch}: rope scaling is not supported for Gemma`);
  const mapping = mappingOf(opts);
  const d = hfHeadSize(hf);
  // Upstream forces the embedding to be sharded when tp > 1.
  const o: FromSourceOptions = { ...opts, useParallelEmbedding: mapping.tpSize > 1, embeddingShardingDim: 0 };
  const cfg = baseConfigFromHF(hf, { opts: o, mapping, act: "gelu_pytorch_tanh", headSize: d });
  Object.assign(cfg, {
    rotary_base: rope.theta,
    rotary_scaling: null,
    attn_bias: false,
    mlp_bias: false,
    inter_layernorms: gemma2,
    share_embedding_table: true,
    tie_word_embeddings: true,
  });
  if (gemma2) {
    Object.assign(cfg, {
      query_pre_attn_scalar: hf.query_pre_attn_scalar ?? d,
      attn_logit_softcapping: hf.attn_logit_softcapping ?? null,
      final_logit_softcapping: hf.final_logit_softcapping ?? null,
    });
    if (typeof hf.sliding_window === "number") {
      cfg.sliding_window = hf.sliding_window;
      // transformers 5 lists layer kinds; 4.x made even layers sliding.
      cfg.layer_types = Array.isArray(hf.layer_types)
        ? hf.layer_types
        : Array.from({ length: hf.num_hidden_layers }, (_, l) => (l % 2 === 0 ? "sliding_attention" : "full_attention"));
    }
  }
  checkSplits(cfg, mapping);
  return cfg;
}

export const gemmaFamily: Family = {
  name: "gemma",
  hfArchitectures: ["GemmaForCausalLM", "Gemma2ForCausalLM"],
  trtArchitectures: ["GemmaForCausalLM", "Gemma2ForCausalLM"],
  configFromHF: gemmaConfigFromHF,
  table: () => GEMMA_TABLE,
  layout: (cfg): DecoderLayout => ({ ...LLAMA_LAYOUT, sandwichNorms: isGemma2(cfg) }),
};

export class GemmaForCausalLM extends DecoderModel {
  constructor(config: PretrainedConfig, mapping: Mapping) {
    super(gemmaFamily, config, mapping);
  }
  static fromHuggingFace(dir: string, opts: FromSourceOptions = {}): Promise<GemmaForCausalLM> {
    return fromHuggingFace(gemmaFamily, dir, opts, (c, m) => new GemmaForCausalLM(c, m));
  }
  static fromCheckpoint(dir: string, rank = 0): Promise<GemmaForCausalLM> {
    return fromCheckpoint(dir, rank, (c, m) => new GemmaForCausalLM(c, m));
  }
}
