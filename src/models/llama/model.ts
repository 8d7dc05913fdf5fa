/**
 * `LLaMAForCausalLM` (Llama 1/2/3/3.1/3.2, Mistral), after upstream's class of the same name:
 * `fromHuggingFace`, `fromMetaCkpt`, `fromCheckpoint`, `saveCheckpoint`, `load`.
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import { Mapping } from "../../mapping.ts";
import { type DecoderLayout, LLAMA_LAYOUT } from "../common/decoder.ts";
import { DecoderModel, fromCheckpoint, fromHuggingFace, withLmHeadSource } from "../common/decoder-model.ts";
import type { Family } from "../common/family.ts";
import { decoderSemantics } from "../common/semantics.ts";
import { type FromSourceOptions, llamaConfigFromHF } from "./config.ts";
import { LLAMA_TABLE } from "./weights.ts";

export const llamaFamily: Family = {
  name: "llama",
  hfArchitectures: ["LlamaForCausalLM", "MistralForCausalLM"],
  trtArchitectures: ["LlamaForCausalLM", "MistralForCausalLM", "LLaMAForCausalLM"],
  configFromHF: llamaConfigFromHF,
  table: (cfg, src) => withLmHeadSource(LLAMA_TABLE, cfg, src, "model.embed_tokens.weight"),
  layout: (cfg): DecoderLayout => ({
    ...LLAMA_LAYOUT,
    qkvBias: cfg.attn_bias === true,
    denseBias: cfg.attn_bias === true,
    mlpBias: cfg.mlp_bias === true,
  }),
  semantics: decoderSemantics,
  openMeta: (dir, opts) => import("./meta.ts").then((m) => m.openMetaSource(dir, opts)),
};

export class LLaMAForCausalLM extends DecoderModel {
  constructor(config: PretrainedConfig, mapping: Mapping) {
    super(llamaFamily, config, mapping);
  }

  /** Convert a Hugging Face Llama/Mistral directory for `opts.mapping`'s rank (default rank 0 of 1). */
  static fromHuggingFace(dir: string, opts: FromSourceOptions = {}): Promise<LLaMAForCausalLM> {
    return fromHuggingFace(llamaFamily, dir, opts, (c, m) => new LLaMAForCausalLM(c, m));
  }

  /** Convert a Meta checkpoint (params.json + consolidated.NN.pth) for `opts.mapping`'s rank; any tp. */
  static async fromMetaCkpt(dir: string, opts: FromSourceOptions = {}): Promise<LLaMAForCausalLM> {
    const mapping = opts.mapping ?? new Mapping();
    const { cfg, src, label } = await llamaFamily.openMeta!(dir, { ...opts, mapping });
    try {
      const model = new LLaMAForCausalLM(cfg, mapping).convertFrom(src, label);
      model.adoptSource(src);
      return model;
    } catch (e) {
      src.close();
      throw e;
    }
  }

  static fromCheckpoint(dir: string, rank = 0): Promise<LLaMAForCausalLM> {
    return fromCheckpoint(dir, rank, (c, m) => new LLaMAForCausalLM(c, m));
  }
}
