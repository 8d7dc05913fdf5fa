/**
 * The TRT-LLM checkpoint `config.json` (spec §1.2–1.4): `PretrainedConfig` with its `mapping` and
 * `quantization` sub-dicts. Read with zod (unknown top-level keys are kept, as upstream does);
 * written with the safe minimal key sets for `mapping` and `quantization` that every release
 * from 0.10 to 1.3 accepts.
 */
import { z } from "zod";
import { TrtbError } from "../errors.ts";
import { Mapping } from "../mapping.ts";

export const QUANT_ALGOS = [
  "W8A16", "W4A16", "W4A16_AWQ", "W4A8_AWQ", "W4A16_GPTQ", "W8A16_GPTQ",
  "W8A8_SQ_PER_CHANNEL", "W8A8_SQ_PER_TENSOR_PLUGIN", "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN",
  "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN", "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN",
  "FP8", "FP8_PER_CHANNEL_PER_TOKEN", "MIXED_PRECISION",
] as const;
export type QuantAlgo = (typeof QUANT_ALGOS)[number];
export const KV_CACHE_QUANT_ALGOS = ["INT8", "FP8"] as const;
export type KvCacheQuantAlgo = (typeof KV_CACHE_QUANT_ALGOS)[number];

export const QuantConfigSchema = z.object({
  quant_algo: z.enum(QUANT_ALGOS).nullable().default(null),
  kv_cache_quant_algo: z.enum(KV_CACHE_QUANT_ALGOS).nullable().default(null),
  group_size: z.number().int().positive().default(128),
  smoothquant_val: z.number().nullable().default(0.5),
  clamp_val: z.array(z.number()).length(2).nullable().optional(),
  use_meta_recipe: z.boolean().optional(),
  has_zero_point: z.boolean().default(false),
  pre_quant_scale: z.boolean().default(false),
  exclude_modules: z.array(z.string()).nullable().default(null),
}).strict();
export type QuantConfig = z.infer<typeof QuantConfigSchema>;

export function defaultQuantConfig(over: Partial<QuantConfig> = {}): QuantConfig {
  return QuantConfigSchema.parse(over);
}

/** The minimal `quantization` dict (§1.4): only keys every target release knows, plus clamp_val when set. */
export function quantConfigToJSON(q: QuantConfig): Record<string, unknown> {
  const j: Record<string, unknown> = {
    quant_algo: q.quant_algo, kv_cache_quant_algo: q.kv_cache_quant_algo, group_size: q.group_size,
    smoothquant_val: q.smoothquant_val, has_zero_point: q.has_zero_point, pre_quant_scale: q.pre_quant_scale,
    exclude_modules: q.exclude_modules,
  };
  if (q.clamp_val) j.clamp_val = q.clamp_val;
  // FP8 rowwise only (a ≥0.15 key): which of upstream's two FP8-rowwise layouts the checkpoint has.
  if (q.use_meta_recipe !== undefined) j.use_meta_recipe = q.use_meta_recipe;
  return j;
}

const MappingSchema = z.object({
  world_size: z.number().int().positive(),
  tp_size: z.number().int().positive().default(1),
  pp_size: z.number().int().positive().default(1),
}).passthrough();

export const PretrainedConfigSchema = z.object({
  architecture: z.string(),
  dtype: z.enum(["float16", "bfloat16", "float32"]),
  logits_dtype: z.enum(["float16", "float32", "bfloat16"]).default("float32"),
  vocab_size: z.number().int().positive(),
  hidden_size: z.number().int().positive(),
  num_hidden_layers: z.number().int().positive(),
  num_attention_heads: z.number().int().positive(),
  num_key_value_heads: z.number().int().positive().optional(),
  head_size: z.number().int().positive().optional(),
  hidden_act: z.string(),
  intermediate_size: z.number().int().positive().optional(),
  norm_epsilon: z.number().positive().default(1e-5),
  position_embedding_type: z.string().default("learned_absolute"),
  max_position_embeddings: z.number().int().positive().nullable().optional(),
  rotary_embedding_dim: z.number().int().positive().optional(),
  rotary_base: z.number().positive().optional(),
  rotary_scaling: z.record(z.string(), z.unknown()).nullable().optional(),
  mapping: MappingSchema.optional(),
  quantization: z.record(z.string(), z.unknown()).optional(),
  use_parallel_embedding: z.boolean().default(false),
  embedding_sharding_dim: z.number().int().min(0).max(1).default(0),
  qk_layernorm: z.boolean().default(false),
}).passthrough();

/** A checkpoint config as read or about to be written: every key, typed where we use it. */
export type PretrainedConfig = z.infer<typeof PretrainedConfigSchema> & Record<string, unknown>;

export function parsePretrainedConfig(json: unknown, file = "config.json"): PretrainedConfig {
  const r = PretrainedConfigSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new TrtbError("CFG_INVALID", `${file}: ${issue.path.join(".") || "(top level)"}: ${issue.message}`, { file });
  }
  const cfg = r.data as PretrainedConfig;
  if (cfg.quantization !== undefined) {
    const q = QuantConfigSchema.safeParse(cfg.quantization);
    if (!q.success) {
      const issue = q.error.issues[0]!;
      throw new TrtbError("CFG_INVALID", `${file}: quantization.${issue.path.join(".")}: ${issue.message}`, { file });
    }
  }
  return cfg;
}

export function configQuant(cfg: PretrainedConfig): QuantConfig {
  return QuantConfigSchema.parse(cfg.quantization ?? {});
}

export function configMapping(cfg: PretrainedConfig, rank = 0): Mapping {
  return Mapping.fromJSON(cfg.mapping, rank);
}

/** Derived sizes every family uses. */
export function headSize(cfg: PretrainedConfig): number {
  return cfg.head_size ?? cfg.hidden_size / cfg.num_attention_heads;
}
export function numKvHeads(cfg: PretrainedConfig): number {
  return cfg.num_key_value_heads ?? cfg.num_attention_heads;
}

/** Pretty JSON with Python-like float rendering of whole floats is not needed: readers parse numbers. */
export function configToJSONText(cfg: PretrainedConfig): string {
  return `${JSON.stringify(cfg, null, 4)}\n`;
}
