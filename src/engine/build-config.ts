/**
 * `BuildConfig` and `PluginConfig` (spec §5.1–5.2), with upstream's field names and defaults: what
 * `trtllm-build` takes and what an engine's config.json records (`build_config`). The builder
 * normalises it before anything else (src/builder/config.ts, spec §5.4):
 *
 *   kv_cache_type: explicit value (must agree with plugin paged_kv_cache), else from
 *                  paged_kv_cache, else PAGED; written by enum name ("PAGED").
 *   max_seq_len:   when unset, max_position_embeddings (2048 if null) × rotary_scaling.factor,
 *                  unless the scaling type is su / longrope / llama3 (factor treated as 1).
 *   max_input_len: clipped to max_seq_len.
 *   max_num_tokens ≤ max_seq_len × max_batch_size; ≥ tokens_per_block (context FMHA on);
 *   opt_num_tokens defaults to min(max_batch_size × max_beam_width, max_num_tokens), ≤ max_num_tokens.
 *
 * `toJSON` gives `BuildConfig.to_dict()` minus `dry_run` and `visualize_network` (what an engine's
 * config.json holds).
 */
import { z } from "zod";
import type { PretrainedConfig } from "../format/checkpoint-config.ts";
import { TrtbError } from "../errors.ts";
import { log } from "../log.ts";

// ---- PluginConfig -------------------------------------------------------------------------------

/** Values a dtype-style plugin option takes (`auto` = the model dtype; null = off). */
export const PLUGIN_DTYPES = ["auto", "float16", "float32", "bfloat16", "int32", "disable"] as const;
const pluginDtype = z.enum([...PLUGIN_DTYPES, "fp8", "nvfp4"]).nullable();

/** Plugin fields, defaults as upstream 1.x (spec §5.2). */
export const PluginConfigSchema = z.object({
  dtype: z.string().default("float16"),
  bert_attention_plugin: pluginDtype.default("auto"),
  gpt_attention_plugin: pluginDtype.default("auto"),
  gemm_plugin: pluginDtype.default(null),
  gemm_swiglu_plugin: pluginDtype.default(null),
  fp8_rowwise_gemm_plugin: pluginDtype.default(null),
  qserve_gemm_plugin: pluginDtype.default(null),
  identity_plugin: pluginDtype.default(null),
  nccl_plugin: pluginDtype.default("auto"),
  lora_plugin: pluginDtype.default(null),
  dora_plugin: z.boolean().default(false),
  weight_only_groupwise_quant_matmul_plugin: pluginDtype.default(null),
  weight_only_quant_matmul_plugin: pluginDtype.default(null),
  smooth_quant_plugins: z.boolean().default(true),
  smooth_quant_gemm_plugin: pluginDtype.default(null),
  layernorm_quantization_plugin: pluginDtype.default(null),
  rmsnorm_quantization_plugin: pluginDtype.default(null),
  quantize_per_token_plugin: z.boolean().default(false),
  quantize_tensor_plugin: z.boolean().default(false),
  moe_plugin: pluginDtype.default("auto"),
  mamba_conv1d_plugin: pluginDtype.default("auto"),
  low_latency_gemm_plugin: pluginDtype.default(null),
  low_latency_gemm_swiglu_plugin: pluginDtype.default(null),
  context_fmha: z.boolean().default(true),
  bert_context_fmha_fp32_acc: z.boolean().default(false),
  paged_kv_cache: z.boolean().nullable().default(null),
  remove_input_padding: z.boolean().default(true),
  norm_quant_fusion: z.boolean().default(false),
  reduce_fusion: z.boolean().default(false),
  user_buffer: z.boolean().default(false),
  tokens_per_block: z.number().int().positive().default(32),
  use_paged_context_fmha: z.boolean().default(true),
  use_fp8_context_fmha: z.boolean().default(true),
  multiple_profiles: z.boolean().default(false),
  paged_state: z.boolean().default(true),
  streamingllm: z.boolean().default(false),
  manage_weights: z.boolean().default(false),
  use_fused_mlp: z.boolean().default(true),
  pp_reduce_scatter: z.boolean().default(false),
}).strict();
export type PluginConfig = z.infer<typeof PluginConfigSchema>;

/** Plugin fields that are on/off switches (`--<field> enable|disable` on the command line). */
export const PLUGIN_BOOL_FIELDS = [
  "dora_plugin", "smooth_quant_plugins", "quantize_per_token_plugin", "quantize_tensor_plugin", "context_fmha",
  "bert_context_fmha_fp32_acc", "paged_kv_cache", "remove_input_padding", "norm_quant_fusion", "reduce_fusion", "user_buffer",
  "use_paged_context_fmha", "use_fp8_context_fmha", "multiple_profiles", "paged_state", "streamingllm", "use_fused_mlp",
  "pp_reduce_scatter",
] as const satisfies readonly (keyof PluginConfig)[];
/** Plugin fields that take a dtype (`--<field> auto|float16|float32|bfloat16|int32|disable`). */
export const PLUGIN_DTYPE_FIELDS = [
  "bert_attention_plugin", "gpt_attention_plugin", "gemm_plugin", "gemm_swiglu_plugin", "fp8_rowwise_gemm_plugin",
  "qserve_gemm_plugin", "identity_plugin", "nccl_plugin", "lora_plugin", "weight_only_groupwise_quant_matmul_plugin",
  "weight_only_quant_matmul_plugin", "smooth_quant_gemm_plugin", "layernorm_quantization_plugin", "rmsnorm_quantization_plugin",
  "moe_plugin", "mamba_conv1d_plugin", "low_latency_gemm_plugin", "low_latency_gemm_swiglu_plugin",
] as const satisfies readonly (keyof PluginConfig)[];

// ---- BuildConfig ---------------------------------------------------------------------------------

export const KV_CACHE_TYPES = ["continuous", "paged", "disabled"] as const;
export type KvCacheType = "CONTINUOUS" | "PAGED" | "DISABLED";

const LoraConfigSchema = z.object({
  lora_dir: z.array(z.string()).default([]),
  lora_ckpt_source: z.enum(["hf", "nemo"]).default("hf"),
  max_lora_rank: z.number().int().default(64),
  lora_target_modules: z.array(z.string()).default([]),
  trtllm_modules_to_hf_modules: z.record(z.string(), z.unknown()).default({}),
}).passthrough();

/** Upstream `SpeculativeDecodingMode` (an IntFlag; serialized as its integer). NONE = 1. */
export const SPECULATIVE_DECODING_MODES = {
  none: 1, draft_tokens_external: 2, medusa: 4, lookahead_decoding: 8, explicit_draft_tokens: 16, eagle: 32,
} as const;

export const BuildConfigSchema = z.object({
  max_input_len: z.number().int().positive().default(1024),
  max_seq_len: z.number().int().positive().nullable().default(null),
  opt_batch_size: z.number().int().positive().default(8),
  max_batch_size: z.number().int().positive().default(2048),
  max_beam_width: z.number().int().positive().default(1),
  max_num_tokens: z.number().int().positive().nullable().default(8192),
  opt_num_tokens: z.number().int().positive().nullable().default(null),
  max_prompt_embedding_table_size: z.number().int().min(0).default(0),
  kv_cache_type: z.preprocess(
    (v) => (typeof v === "string" ? v.toUpperCase() : v),
    z.enum(["CONTINUOUS", "PAGED", "DISABLED"]).nullable(),
  ).default(null),
  gather_context_logits: z.boolean().default(false),
  gather_generation_logits: z.boolean().default(false),
  strongly_typed: z.boolean().default(true),
  force_num_profiles: z.number().int().positive().nullable().default(null),
  profiling_verbosity: z.enum(["layer_names_only", "detailed", "none"]).default("layer_names_only"),
  enable_debug_output: z.boolean().default(false),
  max_draft_len: z.number().int().min(0).default(0),
  speculative_decoding_mode: z.number().int().default(SPECULATIVE_DECODING_MODES.none),
  use_refit: z.boolean().default(false),
  input_timing_cache: z.string().nullable().default(null),
  output_timing_cache: z.string().nullable().default("model.cache"),
  lora_config: LoraConfigSchema.default(() => LoraConfigSchema.parse({})),
  weight_sparsity: z.boolean().default(false),
  weight_streaming: z.boolean().default(false),
  plugin_config: PluginConfigSchema.default(() => PluginConfigSchema.parse({})),
  use_strip_plan: z.boolean().default(false),
  max_encoder_input_len: z.number().int().positive().default(1024),
  dry_run: z.boolean().default(false),
  visualize_network: z.string().nullable().default(null),
  monitor_memory: z.boolean().default(false),
  use_mrope: z.boolean().default(false),
}).strict();

export type BuildConfig = z.infer<typeof BuildConfigSchema>;
/** What callers may pass: any subset, nested plugin_config as a subset too. */
export type BuildConfigInput = Partial<Omit<BuildConfig, "plugin_config">> & { plugin_config?: Partial<PluginConfig> };

/** Parse a (partial) build config: defaults filled, unknown keys and bad values → `BUILD_CONFIG`. */
export function parseBuildConfig(input: unknown = {}, where = "build config"): BuildConfig {
  const r = BuildConfigSchema.safeParse(input ?? {});
  if (!r.success) {
    const issue = r.error.issues[0]!;
    const path = issue.path.join(".") || "(top level)";
    const msg = issue.code === "unrecognized_keys" ? `unknown key(s) ${(issue as { keys: string[] }).keys.join(", ")}` : issue.message;
    throw new TrtbError("BUILD_CONFIG", `${where}: ${path}: ${msg}`);
  }
  return r.data;
}

/** The `build_config` object of an engine's config.json (upstream drops dry_run, visualize_network). */
export function buildConfigToJSON(bc: BuildConfig): Record<string, unknown> {
  const { dry_run: _d, visualize_network: _v, ...rest } = structuredClone(bc);
  return rest;
}
