/**
 * Mixtral → `MixtralForCausalLM`: the Llama code path with a mixture-of-experts MLP (docs/families.md
 * §4): the family and its class.
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import type { Mapping } from "../../mapping.ts";
import type { FromSourceOptions } from "../common/config-common.ts";
import { type DecoderLayout, LLAMA_LAYOUT } from "../common/decoder.ts";
import { DecoderModel, fromCheckpoint, fromHuggingFace, withLmHeadSource } from "../common/decoder-model.ts";
import type { Family } from "../common/family.ts";
import { decoderSemantics } from "../common/semantics.ts";
import { mixtralConfigFromHF } from "./config.ts";
import { MIXTRAL_TABLE } from "./weights.ts";

export const mixtralFamily: Family = {
  name: "mixtral",
  hfArchitectures: ["MixtralForCausalLM"],
  trtArchitectures: ["MixtralForCausalLM"],
  configFromHF: mixtralConfigFromHF,
  table: (cfg, src) => withLmHeadSource(MIXTRAL_TABLE, cfg, src, "model.embed_tokens.weight"),
  layout: (cfg): DecoderLayout => {
    const moe = cfg.moe as { num_experts: number; top_k: number };
    return { ...LLAMA_LAYOUT, qkvBias: cfg.attn_bias === true, denseBias: cfg.attn_bias === true, moe: { numExperts: moe.num_experts, topK: moe.top_k } };
  },
  semantics: decoderSemantics,
};

export class MixtralForCausalLM extends DecoderModel {
  constructor(config: PretrainedConfig, mapping: Mapping) {
    super(mixtralFamily, config, mapping);
  }
  static fromHuggingFace(dir: string, opts: FromSourceOptions = {}): Promise<MixtralForCausalLM> {
    return fromHuggingFace(mixtralFamily, dir, opts, (c, m) => new MixtralForCausalLM(c, m));
  }
  static fromCheckpoint(dir: string, rank = 0): Promise<MixtralForCausalLM> {
    return fromCheckpoint(dir, rank, (c, m) => new MixtralForCausalLM(c, m));
  }
}
