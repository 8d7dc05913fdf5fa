/**
 * `generation_config.json` of a Hugging Face model: the special ids generation stops on (eos may be
 * one id or a list, e.g. Llama-3.1-Instruct's `[128001, 128008, 128009]`), bos/pad, and the default
 * sampling settings (`do_sample`, `temperature`, `top_k`, `top_p`, `max_new_tokens` / `max_length`).
 *
 * Unknown keys are kept in `raw`; the keys we read are validated (zod), and a bad one gives
 * `GEN_CONFIG_INVALID` naming the file and the field.
 */
import { join } from "node:path";
import { z } from "zod";
import { TrtbError } from "../errors.ts";
import { GEN_CONFIG_JSON, readJsonFile } from "./json.ts";

const TokenId = z.number().int().nonnegative();

export const GenerationConfigSchema = z
  .object({
    bos_token_id: TokenId.nullish(),
    eos_token_id: z.union([TokenId, z.array(TokenId)]).nullish(),
    pad_token_id: TokenId.nullish(),
    do_sample: z.boolean().nullish(),
    temperature: z.number().nonnegative().nullish(),
    top_k: z.number().int().nonnegative().nullish(),
    top_p: z.number().gt(0).max(1).nullish(),
    repetition_penalty: z.number().positive().nullish(),
    max_new_tokens: z.number().int().positive().nullish(),
    max_length: z.number().int().positive().nullish(),
  })
  .passthrough();

export interface GenerationConfig {
  /** The file it was read from, when it was read from one. */
  file?: string;
  bosId?: number;
  /** Every eos id, in file order (empty when the file names none). */
  eosIds: number[];
  padId?: number;
  doSample?: boolean;
  temperature?: number;
  topK?: number;
  topP?: number;
  repetitionPenalty?: number;
  maxNewTokens?: number;
  maxLength?: number;
  /** The whole file as parsed, unknown keys included. */
  raw: Record<string, unknown>;
}

export const GENERATION_CONFIG_FILE = "generation_config.json";

/** Read `dir/generation_config.json`; `undefined` when the directory has none. */
export function readGenerationConfig(dir: string): GenerationConfig | undefined {
  const file = join(dir, GENERATION_CONFIG_FILE);
  const json = readJsonFile(file, false, GEN_CONFIG_JSON);
  return json === undefined ? undefined : parseGenerationConfig(json, file);
}

export function parseGenerationConfig(json: unknown, file = GENERATION_CONFIG_FILE): GenerationConfig {
  const r = GenerationConfigSchema.safeParse(json);
  if (!r.success) {
    const issue = r.error.issues[0]!;
    throw new TrtbError("GEN_CONFIG_INVALID", `${file}: ${issue.path.join(".") || "(top level)"}: ${issue.message}`, { file });
  }
  const d = r.data;
  const eos = d.eos_token_id;
  const out: GenerationConfig = { file, eosIds: eos == null ? [] : typeof eos === "number" ? [eos] : [...new Set(eos)], raw: d as Record<string, unknown> };
  if (d.bos_token_id != null) out.bosId = d.bos_token_id;
  if (d.pad_token_id != null) out.padId = d.pad_token_id;
  if (d.do_sample != null) out.doSample = d.do_sample;
  if (d.temperature != null) out.temperature = d.temperature;
  if (d.top_k != null) out.topK = d.top_k;
  if (d.top_p != null) out.topP = d.top_p;
  if (d.repetition_penalty != null) out.repetitionPenalty = d.repetition_penalty;
  if (d.max_new_tokens != null) out.maxNewTokens = d.max_new_tokens;
  if (d.max_length != null) out.maxLength = d.max_length;
  return out;
}

export interface SamplingDefaults {
  /** True unless the file says `do_sample: true` (transformers' rule: sampling settings apply only then). */
  greedy: boolean;
  temperature: number;
  topK: number;
  topP: number;
}

/** The sampling a model's generation config asks for, with transformers' defaults (1.0, 50, 1.0) where unset. */
export function samplingDefaults(gc?: GenerationConfig): SamplingDefaults {
  return { greedy: gc?.doSample !== true, temperature: gc?.temperature ?? 1, topK: gc?.topK ?? 50, topP: gc?.topP ?? 1 };
}
