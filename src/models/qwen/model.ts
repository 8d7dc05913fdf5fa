/**
 * Qwen2 / Qwen2.5 / Qwen3 → `QWenForCausalLM` (docs/families.md §1): the family and its class.
 *
 * Qwen3's q/k norms are applied per head before RoPE with `norm_epsilon` (HF's rms_norm_eps).
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import type { Mapping } from "../../mapping.ts";
import type { FromSourceOptions } from "../common/config-common.ts";
import { type DecoderLayout, LLAMA_LAYOUT } from "../common/decoder.ts";
import { DecoderModel, fromCheckpoint, fromHuggingFace, withLmHeadSource } from "../common/decoder-model.ts";
import type { Family } from "../common/family.ts";
import { decoderSemantics } from "../common/semantics.ts";
import { isQwen3, qwenConfigFromHF } from "./config.ts";
import { QWEN_TABLE } from "./weights.ts";

export const qwenFamily: Family = {
  name: "qwen",
  hfArchitectures: ["Qwen2ForCausalLM", "Qwen3ForCausalLM"],
  trtArchitectures: ["Qwen2ForCausalLM", "Qwen3ForCausalLM", "QWenForCausalLM"],
  configFromHF: qwenConfigFromHF,
  table: (cfg, src) => withLmHeadSource(QWEN_TABLE, cfg, src, "model.embed_tokens.weight"),
  layout: (cfg): DecoderLayout => ({ ...LLAMA_LAYOUT, qkvBias: cfg.attn_bias === true, qkNorm: isQwen3(cfg) }),
  semantics: (cfg) => ({ ...decoderSemantics(cfg), qkNorm: cfg.qk_layernorm === true || isQwen3(cfg) }),
};

export class QWenForCausalLM extends DecoderModel {
  constructor(config: PretrainedConfig, mapping: Mapping) {
    super(qwenFamily, config, mapping);
  }
  static fromHuggingFace(dir: string, opts: FromSourceOptions = {}): Promise<QWenForCausalLM> {
    return fromHuggingFace(qwenFamily, dir, opts, (c, m) => new QWenForCausalLM(c, m));
  }
  static fromCheckpoint(dir: string, rank = 0): Promise<QWenForCausalLM> {
    return fromCheckpoint(dir, rank, (c, m) => new QWenForCausalLM(c, m));
  }
}
