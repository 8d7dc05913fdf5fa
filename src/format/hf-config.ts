/**
 * Hugging Face `config.json`, normalised across transformers 4 and 5:
 *
 *   transformers 4: `rope_theta`, `rope_scaling` ({type|rope_type, factor, …}), `torch_dtype`
 *   transformers 5: `rope_parameters` ({rope_theta, rope_type, factor, …}), `dtype`
 *
 * Families read the raw object for their own keys; the shared pieces (architecture, dtype, rope)
 * are resolved here once.
 */
import { z } from "zod";
import type { ModelDType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import { readJsonFileSafe } from "../util/safe-read.ts";

/**
 * Bounds on the sizes a config may declare: far above any released model, low enough that a
 * typo or a hostile `1e9` is refused before anything is sized from it.
 */
export const CONFIG_BOUNDS = {
  hidden_size: 2 ** 17,
  num_hidden_layers: 1024,
  num_attention_heads: 2048,
  head_dim: 2048,
  intermediate_size: 2 ** 20,
  vocab_size: 2 ** 24,
  max_position_embeddings: 2 ** 27,
} as const;

const size = (max: number) => z.number().int().positive().max(max);

export const HFConfigSchema = z.object({
  architectures: z.array(z.string()).min(1),
  model_type: z.string().optional(),
  hidden_size: size(CONFIG_BOUNDS.hidden_size),
  num_hidden_layers: size(CONFIG_BOUNDS.num_hidden_layers),
  num_attention_heads: size(CONFIG_BOUNDS.num_attention_heads),
  num_key_value_heads: size(CONFIG_BOUNDS.num_attention_heads).nullish(),
  head_dim: size(CONFIG_BOUNDS.head_dim).nullish(),
  intermediate_size: size(CONFIG_BOUNDS.intermediate_size),
  vocab_size: size(CONFIG_BOUNDS.vocab_size),
  max_position_embeddings: size(CONFIG_BOUNDS.max_position_embeddings).nullish(),
  rms_norm_eps: z.number().positive().optional(),
  hidden_act: z.string().optional(),
  tie_word_embeddings: z.boolean().optional(),
  dtype: z.string().nullish(),
  torch_dtype: z.string().nullish(),
  rope_theta: z.number().positive().optional(),
  rope_scaling: z.record(z.string(), z.unknown()).nullish(),
  rope_parameters: z.record(z.string(), z.unknown()).nullish(),
}).passthrough().superRefine((c, ctx) => {
  // Cross-field rules: the attention shape must be one a model can have.
  const kv = c.num_key_value_heads ?? c.num_attention_heads;
  if (c.num_attention_heads % kv !== 0)
    ctx.addIssue({ code: "custom", path: ["num_key_value_heads"], message: `${kv} KV heads do not divide ${c.num_attention_heads} attention heads` });
  if (c.head_dim == null && c.hidden_size % c.num_attention_heads !== 0)
    ctx.addIssue({ code: "custom", path: ["hidden_size"], message: `${c.hidden_size} is not divisible by num_attention_heads ${c.num_attention_heads} and head_dim is not set` });
});
export type HFConfig = z.infer<typeof HFConfigSchema> & Record<string, unknown>;

export async function readHFConfig(dir: string): Promise<HFConfig> {
  const file = `${dir}/config.json`;
  const json = readJsonFileSafe(file, { missing: "HF_NO_CONFIG", json: "HF_CONFIG_JSON" }, `is ${dir} a Hugging Face model directory?`);
  return parseHFConfig(json, file);
}

export function parseHFConfig(json: unknown, file = "config.json"): HFConfig {
  const r = HFConfigSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new TrtbError("HF_CONFIG_INVALID", `${file}: ${issue.path.join(".") || "(top level)"}: ${issue.message}`, { file });
  }
  return r.data as HFConfig;
}

/** The source dtype (`dtype` in transformers 5, `torch_dtype` in 4). */
export function hfSourceDType(cfg: HFConfig): string | undefined {
  return cfg.dtype ?? cfg.torch_dtype ?? undefined;
}

/**
 * Resolve `--dtype`: explicit values win; `auto` follows the source, float32 becoming float16
 * (upstream's rule, spec §7.18); a source without a dtype falls back to float16.
 */
export function resolveDType(requested: ModelDType | "auto", source: string | undefined): ModelDType {
  if (requested !== "auto") return requested;
  if (source === "bfloat16") return "bfloat16";
  if (source === "float16" || source === "float32" || source === undefined || source === null) return "float16";
  throw new TrtbError("CFG_DTYPE", `unsupported source dtype ${JSON.stringify(source)}; pass --dtype float16|bfloat16|float32`);
}

export interface RopeSettings {
  theta: number;
  /** HF rope scaling dict without rope_theta (upstream's `rotary_scaling`), or null for default rope. */
  scaling: Record<string, unknown> | null;
}

/** Rope base and scaling from either config generation. `defaultTheta` is the family default. */
export function hfRope(cfg: HFConfig, defaultTheta = 10000): RopeSettings {
  const params = cfg.rope_parameters;
  if (params) {
    const { rope_theta, ...rest } = params as { rope_theta?: unknown } & Record<string, unknown>;
    const theta = typeof rope_theta === "number" ? rope_theta : (cfg.rope_theta ?? defaultTheta);
    const type = rest.rope_type ?? rest.type;
    const keys = Object.keys(rest).filter((k) => k !== "rope_type" && k !== "type" && k !== "partial_rotary_factor");
    const isDefault = (type === undefined || type === "default") && keys.length === 0;
    return { theta, scaling: isDefault ? null : rest };
  }
  const scaling = cfg.rope_scaling ?? null;
  if (scaling && (scaling.rope_type ?? scaling.type) === "default") return { theta: cfg.rope_theta ?? defaultTheta, scaling: null };
  return { theta: cfg.rope_theta ?? defaultTheta, scaling };
}

export function ropeType(scaling: Record<string, unknown> | null | undefined): string {
  if (!scaling) return "default";
  const t = scaling.rope_type ?? scaling.type;
  return typeof t === "string" ? t : "default";
}

/** Partial rotary factor (Phi-3, some others): transformers 5 puts it inside rope_parameters. */
export function hfPartialRotaryFactor(cfg: HFConfig): number {
  const p = cfg.rope_parameters?.partial_rotary_factor ?? cfg.partial_rotary_factor;
  return typeof p === "number" ? p : 1.0;
}
