/**
 * `LLaMAForCausalLM` (Llama 1/2/3/3.1/3.2, Mistral), after upstream's class of the same name:
 * `fromHuggingFace`, `fromMetaCkpt`, `fromCheckpoint`, `saveCheckpoint`, `load`.
 */
import type { PretrainedConfig } from "../../config.ts";
import { TrtbError } from "../../errors.ts";
import { readHFConfig } from "../../format/hf-config.ts";
import { openHFCheckpoint } from "../../format/hf-checkpoint.ts";
import { Mapping } from "../../mapping.ts";
import type { TensorSource } from "../../tensor.ts";
import { type ConvertContext, convertRank, type FamilyTable } from "../convert.ts";
import { type DecoderLayout, decoderParams, LLAMA_LAYOUT } from "../decoder.ts";
import type { Family } from "../family.ts";
import { loadCheckpointRank, type ParamSpec, PretrainedModel } from "../model.ts";
import { type FromSourceOptions, llamaConfigFromHF } from "./config.ts";
import { LLAMA_TABLE } from "./weights.ts";

/** Resolve lm_head's source: its own tensor, or the embedding when the config says tied. Never silently. */
export function withLmHeadSource(table: FamilyTable, cfg: PretrainedConfig, src: TensorSource, embedName: string, srcLabel: string): FamilyTable {
  const row = table.last.find((r) => r.trt === "lm_head.weight");
  if (!row || typeof row.src !== "string") return table;
  if (src.has(row.src)) return table;
  if (cfg.tie_word_embeddings !== true)
    throw new TrtbError("CONV_MISSING_SOURCE",
      `${srcLabel}: tensor ${row.src} not found and config.json has tie_word_embeddings=false; refusing to tie lm_head to the embedding silently`,
      { tensor: row.src });
  return { ...table, last: table.last.map((r) => (r === row ? { ...r, src: embedName } : r)) };
}

export const llamaFamily: Family = {
  name: "llama",
  hfArchitectures: ["LlamaForCausalLM", "MistralForCausalLM"],
  trtArchitectures: ["LlamaForCausalLM", "MistralForCausalLM", "LLaMAForCausalLM"],
  configFromHF: llamaConfigFromHF,
  table: (cfg, src) => withLmHeadSource(LLAMA_TABLE, cfg, src, "model.embed_tokens.weight", "model_dir"),
  layout: (cfg): DecoderLayout => ({
    ...LLAMA_LAYOUT,
    qkvBias: cfg.attn_bias === true,
    denseBias: cfg.attn_bias === true,
    mlpBias: cfg.mlp_bias === true,
  }),
};

/** One rank of a decoder model of some family. */
export class DecoderModel extends PretrainedModel {
  constructor(readonly family: Family, config: PretrainedConfig, mapping: Mapping) {
    super(config, mapping);
  }
  expectedParams(): ParamSpec[] {
    return decoderParams(this.config, this.mapping, this.family.layout(this.config));
  }

  /** Convert one rank from an open HF-named source (shared by all ranks of a conversion). */
  static fromSource(family: Family, cfg: PretrainedConfig, mapping: Mapping, src: TensorSource, srcLabel: string): DecoderModel {
    const model = new DecoderModel(family, cfg, mapping);
    const ctx: ConvertContext = { cfg, mapping, src, srcLabel };
    const weights = convertRank(ctx, family.table(cfg, src));
    model.load(weights); // checks the table against the declared parameters
    return model;
  }
}

export class LLaMAForCausalLM extends DecoderModel {
  constructor(config: PretrainedConfig, mapping: Mapping) {
    super(llamaFamily, config, mapping);
  }

  /** Convert a Hugging Face Llama/Mistral directory for `opts.mapping`'s rank (default rank 0 of 1). */
  static async fromHuggingFace(dir: string, opts: FromSourceOptions = {}): Promise<LLaMAForCausalLM> {
    const hf = await readHFConfig(dir);
    const arch = hf.architectures[0]!;
    if (!llamaFamily.hfArchitectures.includes(arch))
      throw new TrtbError("CFG_UNSUPPORTED", `${dir}: architecture ${arch} is not a Llama-family model (expected ${llamaFamily.hfArchitectures.join(" or ")})`);
    const cfg = llamaConfigFromHF(hf, opts);
    const mapping = opts.mapping ?? new Mapping();
    const src = openHFCheckpoint(dir);
    try {
      const model = new LLaMAForCausalLM(cfg, mapping);
      const ctx: ConvertContext = { cfg, mapping, src, srcLabel: dir };
      model.load(convertRank(ctx, llamaFamily.table(cfg, src)));
      model.adoptSource(src);
      return model;
    } catch (e) {
      src.close();
      throw e;
    }
  }

  /** Convert a Meta checkpoint (params.json + consolidated.NN.pth) for `opts.mapping`'s rank; any tp. */
  static async fromMetaCkpt(dir: string, opts: FromSourceOptions = {}): Promise<LLaMAForCausalLM> {
    const { openMetaSource } = await import("./meta.ts");
    const { cfg, src, label } = await openMetaSource(dir, opts);
    try {
      const model = new LLaMAForCausalLM(cfg, opts.mapping ?? new Mapping());
      model.load(convertRank({ cfg, mapping: model.mapping, src, srcLabel: label }, llamaFamily.table(cfg, src)));
      model.adoptSource(src);
      return model;
    } catch (e) {
      src.close();
      throw e;
    }
  }

  static fromCheckpoint(dir: string, rank = 0): Promise<LLaMAForCausalLM> {
    return loadCheckpointRank(dir, rank, (cfg, m) => new LLaMAForCausalLM(cfg, m));
  }
}
