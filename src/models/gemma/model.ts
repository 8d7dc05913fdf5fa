/**
 * Gemma / Gemma2 → `GemmaForCausalLM` (docs/families.md §2): the family and its class.
 *
 * The embedding is stored unscaled; runtimes multiply it by sqrt(hidden_size) (f32 in our runners).
 */
import { headSize, type PretrainedConfig } from "../../format/checkpoint-config.ts";
import type { Mapping } from "../../mapping.ts";
import type { FromSourceOptions } from "../common/config-common.ts";
import { type DecoderLayout, LLAMA_LAYOUT } from "../common/decoder.ts";
import { DecoderModel, fromCheckpoint, fromHuggingFace } from "../common/decoder-model.ts";
import type { Family } from "../common/family.ts";
import { configNumber, decoderSemantics } from "../common/semantics.ts";
import { gemmaConfigFromHF, isGemma2 } from "./config.ts";
import { GEMMA_TABLE } from "./weights.ts";

export const gemmaFamily: Family = {
  name: "gemma",
  hfArchitectures: ["GemmaForCausalLM", "Gemma2ForCausalLM"],
  trtArchitectures: ["GemmaForCausalLM", "Gemma2ForCausalLM"],
  configFromHF: gemmaConfigFromHF,
  table: () => GEMMA_TABLE,
  layout: (cfg): DecoderLayout => ({ ...LLAMA_LAYOUT, sandwichNorms: isGemma2(cfg) }),
  semantics: (cfg) => ({
    ...decoderSemantics(cfg),
    embedScale: Math.fround(Math.sqrt(cfg.hidden_size)),
    attnScale: 1 / Math.sqrt(configNumber(cfg, "query_pre_attn_scalar") ?? headSize(cfg)),
    attnSoftcap: configNumber(cfg, "attn_logit_softcapping"),
    finalSoftcap: configNumber(cfg, "final_logit_softcapping"),
    sandwich: isGemma2(cfg),
  }),
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
