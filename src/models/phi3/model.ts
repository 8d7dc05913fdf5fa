/**
 * Phi-3 (mini/medium) → `Phi3ForCausalLM` (docs/families.md §3).
 *
 * Spec notes:
 * - HF `qkv_proj` is already [q; k; v]; per rank we write [q_r; k_r; v_r] like Llama (KV heads
 *   duplicated when nKV < tp).
 * - HF `gate_up_proj` is [gate; up]. TRT-LLM's MLP applies swiglu = silu(second half) · first half
 *   *per rank*, so each rank gets [up_r; gate_r] (each half split over tp, then joined). Upstream's
 *   split_weights.py chunks the whole swapped tensor instead, which only agrees at tp = 1.
 * - `hidden_act: "swiglu"`, no `mlp.gate` tensor, no biases. `rotary_embedding_dim` =
 *   head_size · partial_rotary_factor.
 * - long_rope (max_position_embeddings ≥ 128000, the 128k variants) is refused for now.
 */
import type { PretrainedConfig } from "../../config.ts";
import { TrtbError } from "../../errors.ts";
import { type HFConfig, hfPartialRotaryFactor, hfRope } from "../../format/hf-config.ts";
import type { Mapping } from "../../mapping.ts";
import { baseConfigFromHF, checkSplits, type FromSourceOptions, hfHeadSize, mappingOf } from "../common/config-common.ts";
import type { FamilyTable } from "../common/convert.ts";
import { type DecoderLayout, LLAMA_LAYOUT } from "../common/decoder.ts";
import { DecoderModel, fromCheckpoint, fromHuggingFace, withLmHeadSource } from "../common/decoder-model.ts";
import type { Family } from "../common/family.ts";

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

export function phi3ConfigFromHF(hf: HFConfig, opts: FromSourceOptions = {}): PretrainedConfig {
  const arch = hf.architectures[0]!;
  const act = hf.hidden_act ?? "silu";
  if (act !== "silu") throw new TrtbError("CFG_UNSUPPORTED", `${arch}: hidden_act ${JSON.stringify(act)} is not supported (expected "silu")`);
  if ((hf.max_position_embeddings ?? 0) >= 128000)
    throw new TrtbError("CFG_UNSUPPORTED", `${arch}: long_rope models (max_position_embeddings ≥ 128000) are not supported yet`);
  const rope = hfRope(hf);
  if (rope.scaling) throw new TrtbError("CFG_UNSUPPORTED", `${arch}: rope scaling ${JSON.stringify(rope.scaling)} is not supported for Phi-3`);
  const mapping = mappingOf(opts);
  const d = hfHeadSize(hf);
  const pct = hfPartialRotaryFactor(hf);
  const cfg = baseConfigFromHF(hf, { opts, mapping, act: "swiglu", headSize: d, rotaryDim: Math.floor(d * pct), epsDefault: 1e-5 });
  Object.assign(cfg, {
    rotary_base: rope.theta,
    rotary_scaling: null,
    rotary_pct: pct,
    tie_word_embeddings: hf.tie_word_embeddings === true,
  });
  checkSplits(cfg, mapping);
  return cfg;
}

export const phi3Family: Family = {
  name: "phi3",
  hfArchitectures: ["Phi3ForCausalLM"],
  trtArchitectures: ["Phi3ForCausalLM"],
  configFromHF: phi3ConfigFromHF,
  table: (cfg, src) => withLmHeadSource(PHI3_TABLE, cfg, src, "model.embed_tokens.weight"),
  layout: (): DecoderLayout => ({ ...LLAMA_LAYOUT, mlp: "fused" }),
};

export class Phi3ForCausalLM extends DecoderModel {
  constructor(config: PretrainedConfig, mapping: Mapping) {
    super(phi3Family, config, mapping);
  }
  static fromHuggingFace(dir: string, opts: FromSourceOptions = {}): Promise<Phi3ForCausalLM> {
    return fromHuggingFace(phi3Family, dir, opts, (c, m) => new Phi3ForCausalLM(c, m));
  }
  static fromCheckpoint(dir: string, rank = 0): Promise<Phi3ForCausalLM> {
    return fromCheckpoint(dir, rank, (c, m) => new Phi3ForCausalLM(c, m));
  }
}
