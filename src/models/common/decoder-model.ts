/**
 * `DecoderModel`: one rank of a decoder-only model of any family, plus the shared constructors
 * every family class (`LLaMAForCausalLM`, `QWenForCausalLM`, …) exposes.
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import { TrtbError } from "../../errors.ts";
import { openHFCheckpoint } from "../../format/hf-checkpoint.ts";
import { readHFConfig } from "../../format/hf-config.ts";
import { log } from "../../log.ts";
import { Mapping } from "../../mapping.ts";
import type { TensorSource } from "../../tensor.ts";
import { type ConvertContext, convertRank, type FamilyTable } from "./convert.ts";
import { decoderParams } from "./decoder.ts";
import type { Family, FromSourceOptions } from "./family.ts";
import { loadCheckpointRank, type ParamSpec, PretrainedModel } from "./model.ts";

export class DecoderModel extends PretrainedModel {
  constructor(readonly family: Family, config: PretrainedConfig, mapping: Mapping) {
    super(config, mapping);
  }

  expectedParams(): ParamSpec[] {
    return decoderParams(this.config, this.mapping, this.family.layout(this.config));
  }

  /** Fill this rank's weights from an open HF-named source (one source serves all ranks). */
  convertFrom(src: TensorSource, srcLabel: string): this {
    const ctx: ConvertContext = { cfg: this.config, mapping: this.mapping, src, srcLabel };
    this.load(convertRank(ctx, this.family.table(this.config, src))); // checks the table against the declared parameters
    return this;
  }

  static fromSource(family: Family, cfg: PretrainedConfig, mapping: Mapping, src: TensorSource, srcLabel: string): DecoderModel {
    return new DecoderModel(family, cfg, mapping).convertFrom(src, srcLabel);
  }
}

/** Shared `fromHuggingFace`: read config, check the architecture belongs to `family`, convert one rank. */
export async function fromHuggingFace<M extends DecoderModel>(
  family: Family,
  dir: string,
  opts: FromSourceOptions,
  make: (cfg: PretrainedConfig, m: Mapping) => M,
): Promise<M> {
  const hf = await readHFConfig(dir);
  const arch = hf.architectures[0]!;
  if (!family.hfArchitectures.includes(arch))
    throw new TrtbError("CFG_UNSUPPORTED_ARCH", `${dir}: architecture ${arch} is not handled by the ${family.name} family (expected ${family.hfArchitectures.join(" or ")})`);
  const mapping = opts.mapping ?? new Mapping();
  const cfg = family.configFromHF(hf, { ...opts, mapping });
  const src = openHFCheckpoint(dir);
  try {
    const model = make(cfg, mapping).convertFrom(src, dir);
    model.adoptSource(src);
    return model;
  } catch (e) {
    src.close();
    throw e;
  }
}

export function fromCheckpoint<M extends DecoderModel>(dir: string, rank: number, make: (cfg: PretrainedConfig, m: Mapping) => M): Promise<M> {
  return loadCheckpointRank(dir, rank, make);
}

/** Resolve lm_head's source: its own tensor, or the embedding when the config says tied. Never silently. */
export function withLmHeadSource(table: FamilyTable, cfg: PretrainedConfig, src: TensorSource, embedName: string): FamilyTable {
  const row = table.last.find((r) => r.trt === "lm_head.weight");
  if (!row || typeof row.src !== "string") return table;
  if (src.has(row.src)) {
    if (cfg.tie_word_embeddings !== true || !src.has(embedName)) return table;
    // Tied, yet a separate lm_head is stored: transformers ties the two (the embedding wins), so do
    // the same; when they differ, say so, naming both tensors.
    const head = src.get(row.src);
    const emb = src.get(embedName);
    const same = head.dtype === emb.dtype && head.shape.length === emb.shape.length && head.shape.every((d, i) => d === emb.shape[i]) &&
      Buffer.from(head.bytes().buffer, head.bytes().byteOffset, head.bytes().byteLength).equals(Buffer.from(emb.bytes().buffer, emb.bytes().byteOffset, emb.bytes().byteLength));
    if (!same)
      log.warn(`tie_word_embeddings is true but ${row.src} differs from ${embedName}; using ${embedName} for lm_head, as transformers does (set tie_word_embeddings to false to keep ${row.src})`);
    return { ...table, last: table.last.map((r) => (r === row ? { ...r, src: embedName } : r)) };
  }
  if (cfg.tie_word_embeddings !== true)
    throw new TrtbError("CONV_MISSING_SOURCE",
      `tensor ${row.src} not found and the config has tie_word_embeddings=false; refusing to tie lm_head to the embedding silently`,
      { tensor: row.src });
  return { ...table, last: table.last.map((r) => (r === row ? { ...r, src: embedName } : r)) };
}
