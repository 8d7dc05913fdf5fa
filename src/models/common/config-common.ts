/**
 * Config pieces every family shares: conversion options, the base key set of a decoder config,
 * and the split/rope checks.
 */
import { defaultQuantConfig, type PretrainedConfig, type QuantConfig, quantConfigToJSON } from "../../format/checkpoint-config.ts";
import type { ModelDType } from "../../dtype.ts";
import { TrtbError } from "../../errors.ts";
import { type HFConfig, hfSourceDType, resolveDType } from "../../format/hf-config.ts";
import { Mapping } from "../../mapping.ts";
import { checkHeadSplit } from "./split.ts";

export interface FromSourceOptions {
  dtype?: ModelDType | "auto";
  mapping?: Mapping;
  quantConfig?: QuantConfig;
  /** Shard the embedding table over TP (upstream `--use_parallel_embedding`). */
  useParallelEmbedding?: boolean;
  /** 0: split the vocab dim, 1: split the hidden dim. */
  embeddingShardingDim?: 0 | 1;
  logitsDtype?: "float32" | "float16";
}

/** Rope types the runtimes implement; others are refused at conversion with a clear message. */
export const SUPPORTED_ROPE_TYPES = ["default", "linear", "llama3"] as const;

/** Checks that hold for every family: head/TP/PP divisibility. */
export function checkSplits(cfg: PretrainedConfig, m: Mapping): void {
  const tp = m.tpSize;
  checkHeadSplit(cfg.num_attention_heads, cfg.num_key_value_heads ?? cfg.num_attention_heads, tp);
  const I = cfg.intermediate_size ?? 4 * cfg.hidden_size;
  if (I % tp !== 0) throw new TrtbError("CONV_TP", `intermediate_size (${I}) is not divisible by tp_size (${tp})`);
  if (cfg.hidden_size % tp !== 0 && cfg.use_parallel_embedding && cfg.embedding_sharding_dim === 1)
    throw new TrtbError("CONV_TP", `hidden_size (${cfg.hidden_size}) is not divisible by tp_size (${tp})`);
  if (m.ppSize > cfg.num_hidden_layers)
    throw new TrtbError("CONV_PP", `pp_size (${m.ppSize}) is larger than num_hidden_layers (${cfg.num_hidden_layers})`);
}

/** head_dim, or hidden/heads when absent (must divide). */
export function hfHeadSize(hf: HFConfig): number {
  const d = hf.head_dim ?? hf.hidden_size / hf.num_attention_heads;
  if (!Number.isInteger(d))
    throw new TrtbError("CFG_INVALID", `${hf.architectures[0]}: hidden_size ${hf.hidden_size} is not divisible by num_attention_heads ${hf.num_attention_heads} and head_dim is not set`);
  return d;
}

export function checkRope(scaling: Record<string, unknown> | null, where: string): void {
  if (!scaling) return;
  const t = scaling.rope_type ?? scaling.type;
  if (!(SUPPORTED_ROPE_TYPES as readonly unknown[]).includes(t))
    throw new TrtbError("CFG_UNSUPPORTED", `${where}: rope scaling type ${JSON.stringify(t)} is not supported (supported: ${SUPPORTED_ROPE_TYPES.join(", ")})`);
}

/** The keys every decoder family writes, in upstream's order. */
export function baseConfig(fields: {
  architecture: string; dtype: ModelDType; vocabSize: number; hidden: number; layers: number; heads: number;
  kvHeads: number; headSize: number; act: string; intermediate: number; eps: number; posEmb: string;
  maxPos: number | null; rotaryDim: number; opts: FromSourceOptions; mapping: Mapping; withMoe?: boolean;
}): PretrainedConfig {
  const o = fields.opts;
  return {
    architecture: fields.architecture,
    dtype: fields.dtype,
    logits_dtype: o.logitsDtype ?? "float32",
    vocab_size: fields.vocabSize,
    hidden_size: fields.hidden,
    num_hidden_layers: fields.layers,
    num_attention_heads: fields.heads,
    num_key_value_heads: fields.kvHeads,
    head_size: fields.headSize,
    hidden_act: fields.act,
    intermediate_size: fields.intermediate,
    norm_epsilon: fields.eps,
    position_embedding_type: fields.posEmb,
    max_position_embeddings: fields.maxPos,
    rotary_embedding_dim: fields.rotaryDim,
    use_parallel_embedding: o.useParallelEmbedding ?? false,
    embedding_sharding_dim: o.embeddingShardingDim ?? 0,
    qk_layernorm: false,
    mapping: fields.mapping.toJSON(fields.withMoe ?? false),
    quantization: quantConfigToJSON(o.quantConfig ?? defaultQuantConfig()),
  } as PretrainedConfig;
}

/**
 * `baseConfig` filled from a Hugging Face config: the sizes every family copies the same way.
 * Families pass what differs (activation name, rotary dim, eps default, options).
 */
export function baseConfigFromHF(hf: HFConfig, f: {
  opts: FromSourceOptions; mapping: Mapping; act: string; headSize: number; rotaryDim?: number; epsDefault?: number; architecture?: string;
}): PretrainedConfig {
  return baseConfig({
    architecture: f.architecture ?? hf.architectures[0]!,
    dtype: resolveDType(f.opts.dtype ?? "auto", hfSourceDType(hf)),
    vocabSize: hf.vocab_size, hidden: hf.hidden_size, layers: hf.num_hidden_layers, heads: hf.num_attention_heads,
    kvHeads: hf.num_key_value_heads ?? hf.num_attention_heads, headSize: f.headSize, act: f.act,
    intermediate: hf.intermediate_size, eps: hf.rms_norm_eps ?? f.epsDefault ?? 1e-6, posEmb: "rope_gpt_neox",
    maxPos: hf.max_position_embeddings ?? null, rotaryDim: f.rotaryDim ?? f.headSize, opts: f.opts, mapping: f.mapping,
  });
}

export function mappingOf(opts: FromSourceOptions): Mapping {
  return opts.mapping ?? new Mapping();
}
