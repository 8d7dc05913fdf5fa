/**
 * The OpenAI wire format of `trtllm serve`: request bodies of /v1/completions and
 * /v1/chat/completions checked field by field into one normalised request (a wrong type or value
 * is `SERVE_BAD_REQUEST` naming the field; features we do not implement are `SERVE_UNSUPPORTED`;
 * unknown fields are ignored, as OpenAI does), the OpenAI-style error body, and log-probabilities
 * of a logits row (log-softmax in float64, as `trtllm eval`).
 *
 * Sampling follows OpenAI: temperature defaults to 1 (sampling); temperature 0 is greedy. top_k
 * (vLLM's extension; -1 or 0 = off), seed, stop (string or list), stop_token_ids and ignore_eos
 * (vLLM's) are read.
 */
import { type ErrorCode, TrtbError } from "../errors.ts";
import { logSoftmax64 } from "../eval.ts";
import type { SamplingOptions } from "../runtime/sampling.ts";
import type { ChatMessage } from "../text/tokenizer.ts";

/** HTTP status of a library error met while serving a request (400 for what the client got wrong). */
export function httpStatus(code: ErrorCode | undefined): number {
  if (code === undefined) return 500;
  if (code === "SERVE_NOT_FOUND") return 404;
  if (code === "SERVE_METHOD") return 405;
  if (code === "SERVE_SHUTTING_DOWN") return 503;
  if (code.startsWith("SERVE_") || code.startsWith("TOK_") || code === "RUN_PROMPT_TOO_LONG" || code === "RUN_BAD_INPUT" || code === "LLM_BAD_INPUT") return 400;
  return 500;
}

/** OpenAI's error body. */
export function errorBody(status: number, message: string, code: string | null, param: string | null = null) {
  const type = status === 400 ? "invalid_request_error" : status === 404 ? "not_found_error" : status === 503 ? "service_unavailable" : "internal_error";
  return { error: { message, type, param, code } };
}

const bad = (param: string, msg: string) => new TrtbError("SERVE_BAD_REQUEST", `${param}: ${msg}`, { tensor: param });
const unsupported = (param: string, msg: string) => new TrtbError("SERVE_UNSUPPORTED", `${param}: ${msg}`, { tensor: param });

/** Parse a request body: a JSON object, or `SERVE_BAD_REQUEST`. */
export function parseBody(text: string): Record<string, unknown> {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (e) {
    throw new TrtbError("SERVE_BAD_REQUEST", `the body is not valid JSON (${(e as Error).message})`);
  }
  if (typeof v !== "object" || v === null || Array.isArray(v)) throw new TrtbError("SERVE_BAD_REQUEST", "the body must be a JSON object");
  return v as Record<string, unknown>;
}

/** One prompt as sent: text or token ids. */
export type WirePrompt = { text: string } | { ids: number[] };

export interface ParsedRequest {
  chat: boolean;
  model: string | undefined;
  /** Completions: one or more prompts (one choice each). Chat: none (see messages). */
  prompts: WirePrompt[];
  messages: ChatMessage[];
  /** undefined: the default (16 for completions, the room left for chat). */
  maxTokens: number | undefined;
  sampling: "greedy" | SamplingOptions;
  stop: string[];
  stopTokenIds: number[];
  ignoreEos: boolean;
  stream: boolean;
  includeUsage: boolean;
  echo: boolean;
  /** Completions: top log-probabilities per token (0 … 20), null: none. Chat: top_logprobs when logprobs is true. */
  logprobs: number | null;
  user: string | undefined;
}

function isInt(v: unknown): v is number {
  return typeof v === "number" && Number.isInteger(v);
}

class Fields {
  constructor(readonly o: Record<string, unknown>) {}
  has(k: string): boolean {
    return this.o[k] !== undefined && this.o[k] !== null;
  }
  str(k: string): string | undefined {
    if (!this.has(k)) return undefined;
    const v = this.o[k];
    if (typeof v !== "string") throw bad(k, `must be a string, got ${typeof v}`);
    return v;
  }
  bool(k: string): boolean | undefined {
    if (!this.has(k)) return undefined;
    const v = this.o[k];
    if (typeof v !== "boolean") throw bad(k, `must be true or false, got ${JSON.stringify(v)}`);
    return v;
  }
  num(k: string, lo: number, hi: number, loOpen = false): number | undefined {
    if (!this.has(k)) return undefined;
    const v = this.o[k];
    if (typeof v !== "number" || !Number.isFinite(v)) throw bad(k, `must be a number, got ${JSON.stringify(v)}`);
    if (v < lo || v > hi || (loOpen && v === lo)) throw bad(k, `must be in ${loOpen ? "(" : "["}${lo}, ${hi}], got ${v}`);
    return v;
  }
  int(k: string, lo: number, hi = Number.MAX_SAFE_INTEGER): number | undefined {
    if (!this.has(k)) return undefined;
    const v = this.o[k];
    if (!isInt(v)) throw bad(k, `must be an integer, got ${JSON.stringify(v)}`);
    if (v < lo || v > hi) throw bad(k, `must be an integer in [${lo}, ${hi}], got ${v}`);
    return v;
  }
}

function parsePrompts(v: unknown): WirePrompt[] {
  if (v === undefined || v === null) throw bad("prompt", "is required");
  if (typeof v === "string") return [{ text: v }];
  if (!Array.isArray(v) || v.length === 0) throw bad("prompt", "must be a string, a list of strings, a list of token ids or a list of lists of token ids");
  if (v.every((x) => typeof x === "string")) return v.map((text) => ({ text }));
  if (v.every(isInt)) return [{ ids: v as number[] }];
  if (v.every((x) => Array.isArray(x) && x.length > 0 && x.every(isInt))) return (v as number[][]).map((ids) => ({ ids }));
  throw bad("prompt", "must be a string, a list of strings, a list of token ids or a list of lists of token ids (non-empty)");
}

function parseMessages(v: unknown): ChatMessage[] {
  if (!Array.isArray(v) || v.length === 0) throw bad("messages", "must be a non-empty list of {role, content}");
  return v.map((m, i) => {
    if (typeof m !== "object" || m === null || Array.isArray(m)) throw bad(`messages[${i}]`, "must be an object {role, content}");
    const o = m as Record<string, unknown>;
    if (typeof o.role !== "string") throw bad(`messages[${i}].role`, "must be a string");
    let content = o.content;
    if (Array.isArray(content)) {
      // OpenAI content parts: text parts are joined; other kinds are refused
      const parts = content.map((p, j) => {
        const q = p as { type?: unknown; text?: unknown };
        if (typeof q !== "object" || q === null || q.type !== "text" || typeof q.text !== "string") throw unsupported(`messages[${i}].content[${j}]`, "only {type: \"text\", text} parts are supported");
        return q.text;
      });
      content = parts.join("");
    }
    if (content !== null && content !== undefined && typeof content !== "string") throw bad(`messages[${i}].content`, "must be a string, a list of text parts or null");
    return { ...o, role: o.role, content: (content ?? null) as string | null };
  });
}

/** Check a completions (`chat` false) or chat completions body. */
export function parseRequest(body: Record<string, unknown>, chat: boolean): ParsedRequest {
  const f = new Fields(body);
  const model = f.str("model");
  const prompts = chat ? [] : parsePrompts(body.prompt);
  const messages = chat ? parseMessages(body.messages) : [];
  const n = f.int("n", 1, 128);
  if (n !== undefined && n !== 1) throw unsupported("n", `only n = 1 is supported, got ${n}`);
  const bestOf = f.int("best_of", 1, 128);
  if (bestOf !== undefined && bestOf !== 1) throw unsupported("best_of", `only best_of = 1 is supported, got ${bestOf}`);
  if (f.bool("use_beam_search")) throw unsupported("use_beam_search", "beam search is not supported");
  for (const k of ["presence_penalty", "frequency_penalty"]) {
    const v = f.num(k, -2, 2);
    if (v !== undefined && v !== 0) throw unsupported(k, "penalties are not supported (only 0)");
  }
  const rp = f.num("repetition_penalty", 0, 100, true);
  if (rp !== undefined && rp !== 1) throw unsupported("repetition_penalty", "penalties are not supported (only 1)");
  if (f.has("logit_bias")) {
    const lb = body.logit_bias;
    if (typeof lb !== "object" || Array.isArray(lb)) throw bad("logit_bias", "must be an object");
    if (Object.keys(lb as object).length) throw unsupported("logit_bias", "logit_bias is not supported");
  }
  if (!chat && f.has("suffix")) {
    if (typeof body.suffix !== "string") throw bad("suffix", "must be a string");
    if (body.suffix !== "") throw unsupported("suffix", "suffix (insertion) is not supported");
  }
  const maxKey = chat && f.has("max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (f.has(maxKey) && !isInt(body[maxKey])) throw bad(maxKey, `must be an integer, got ${JSON.stringify(body[maxKey])}`);
  const maxTokens = f.has(maxKey) ? (body[maxKey] as number) : undefined;
  if (maxTokens !== undefined && maxTokens <= 0) throw bad(maxKey, `must be ≥ 1, got ${maxTokens}`);
  const temperature = f.num("temperature", 0, 100) ?? 1;
  const topP = f.num("top_p", 0, 1, true);
  let topK = f.int("top_k", -1);
  if (topK === -1) topK = 0;
  const seed = f.int("seed", 0);
  const sampling: "greedy" | SamplingOptions =
    temperature === 0 || topK === 1 ? "greedy" : { temperature, topK, topP, seed: seed ?? Math.floor(Math.random() * 2 ** 31) };
  let stop: string[] = [];
  if (f.has("stop")) {
    const s = body.stop;
    if (typeof s === "string") stop = [s];
    else if (Array.isArray(s) && s.every((x) => typeof x === "string")) stop = s as string[];
    else throw bad("stop", "must be a string or a list of strings");
    if (stop.some((x) => x === "")) throw bad("stop", "stop strings must not be empty");
  }
  let stopTokenIds: number[] = [];
  if (f.has("stop_token_ids")) {
    const s = body.stop_token_ids;
    if (!Array.isArray(s) || !s.every((x) => isInt(x) && x >= 0)) throw bad("stop_token_ids", "must be a list of token ids");
    stopTokenIds = s as number[];
  }
  const ignoreEos = f.bool("ignore_eos") ?? false;
  const stream = f.bool("stream") ?? false;
  let includeUsage = false;
  if (f.has("stream_options")) {
    const so = body.stream_options;
    if (typeof so !== "object" || so === null || Array.isArray(so)) throw bad("stream_options", "must be an object");
    includeUsage = new Fields(so as Record<string, unknown>).bool("include_usage") ?? false;
  }
  let logprobs: number | null = null;
  let echo = false;
  if (chat) {
    const want = f.bool("logprobs") ?? false;
    const top = f.int("top_logprobs", 0, 20);
    if (top !== undefined && !want) throw bad("top_logprobs", "needs logprobs: true");
    logprobs = want ? (top ?? 0) : null;
  } else {
    logprobs = f.int("logprobs", 0, 20) ?? null;
    echo = f.bool("echo") ?? false;
  }
  return { chat, model, prompts, messages, maxTokens, sampling, stop, stopTokenIds, ignoreEos, stream, includeUsage, echo, logprobs, user: f.str("user") };
}

/** Log-probability of `token` and the `k` most likely tokens (id, log-probability; descending, lower id first on ties) of one logits row. */
export function tokenLogprobs(row: ArrayLike<number>, token: number, k: number): { logprob: number; top: [number, number][] } {
  const lp = logSoftmax64(row);
  const top: [number, number][] = [];
  if (k > 0) {
    for (let i = 0; i < lp.length; i++) {
      const v = lp[i]!;
      if (top.length < k || v > top[top.length - 1]![1]) {
        let j = top.length < k ? top.length : top.length - 1;
        if (top.length < k) top.push([i, v]);
        else top[j] = [i, v];
        while (j > 0 && top[j - 1]![1] < top[j]![1]) {
          [top[j - 1], top[j]] = [top[j]!, top[j - 1]!];
          j--;
        }
      }
    }
  }
  return { logprob: lp[token]!, top };
}
