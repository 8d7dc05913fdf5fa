/**
 * `LLM`: text in, text out, after upstream's `tensorrt_llm.LLM` / `SamplingParams`.
 *
 *   await using llm = await LLM.create({ model: "./Llama-3.2-1B" });   // HF dir, checkpoint dir or engine dir
 *   const [out] = await llm.generate("def fib(n):", { maxTokens: 64 });
 *   for await (const delta of llm.generateStream("import os\n")) process.stdout.write(delta);
 *
 * What runs where (`backend`: "auto" picks the GPU when libtrtb_engine and a CUDA device are there):
 *
 * | model            | gpu                                                                 | cpu (fp32 reference runner)             |
 * |------------------|---------------------------------------------------------------------|-----------------------------------------|
 * | HF dir           | converted in memory → `build()` → engine, cached on disk (below)     | converted to a temp checkpoint, loaded, |
 * |                  | (with `quantization`: through a temp checkpoint, as `trtllm quantize`) | temp removed (weights held in fp32)     |
 * | checkpoint dir   | built in memory → engine, cached                                    | loaded (all ranks merged)               |
 * | engine dir       | loaded                                                              | refused (`LLM_BACKEND`)                 |
 *
 * Engine cache: `$XDG_CACHE_HOME/trtllm-build/engines/<key>` (else `~/.cache/…`; `cacheDir`
 * overrides, `false` disables). The key hashes the source directory's path, the names, sizes and
 * mtimes of its config and weight files, config.json's content, dtype, quantization, the build
 * config, the GPU's name and the toolkit version; a second `create` with the same inputs loads the
 * saved engine (`Engine.fromDir`) instead of building. Entries are written to a temp dir and renamed.
 *
 * Text: the tokenizer comes from `tokenizer`, else the model directory (convert / trtllm-build copy
 * it into checkpoints and engines). Prompts are encoded with the model's special tokens (BOS);
 * chat prompts (lists of messages) go through the chat template with the generation prompt.
 * Generation stops at the tokenizer's eos ids (unless `ignoreEos`), `stopTokenIds`, `stop` strings,
 * or `maxTokens` (capped, with a warning, where the prompt plus `maxTokens` would pass the
 * model's max_seq_len). Sampling: greedy unless temperature, topK or topP is given (as upstream);
 * CPU and GPU samplers draw different random streams, greedy output is the same.
 *
 * Streaming: on the CPU each delta is yielded as soon as its token is computed; the GPU runner
 * generates a batch in one synchronous call, so `generateStream` on the GPU yields its deltas when
 * that call returns (the `onText` callback of `generate` sees them as they are produced).
 */
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync, statSync } from "node:fs";
import { homedir, tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type Backend, defaultBackend } from "./builder/backend.ts";
import { build } from "./builder/build.ts";
import { convertCheckpoint } from "./convert.ts";
import type { ModelDType } from "./dtype.ts";
import { Engine, TOOLKIT_VERSION } from "./engine/engine.ts";
import type { BuildConfigInput } from "./engine/build-config.ts";
import { TrtbError } from "./errors.ts";
import { engineLib } from "./ffi/engine.ts";
import { cudaLib } from "./ffi/index.ts";
import { configMapping } from "./format/checkpoint-config.ts";
import { openHFCheckpoint } from "./format/hf-checkpoint.ts";
import { readHFConfig } from "./format/hf-config.ts";
import { log } from "./log.ts";
import { Mapping } from "./mapping.ts";
import { DecoderModel } from "./models/common/decoder-model.ts";
import { loadCheckpointRank } from "./models/common/model.ts";
import { familyForCheckpoint, familyForHF } from "./models/registry.ts";
import { schemeForQformat } from "./quant/apply.ts";
import type { QFormatName } from "./quant/scheme.ts";
import type { CpuRunner } from "./runtime/cpu.ts";
import { GpuModelRunner, type RunnerOptions } from "./runtime/gpu/index.ts";
import { loadCpuRunner } from "./runtime/index.ts";
import type { SamplingOptions } from "./runtime/sampling.ts";
import { carryTokenizerFiles } from "./text/files.ts";
import { type ChatMessage, loadTokenizer, type Tokenizer } from "./text/tokenizer.ts";
import { TextStream } from "./text/detokenize.ts";
import { readJsonFileSafe } from "./util/safe-read.ts";

/** What a directory holds, by its files. */
export type ModelKind = "hf" | "checkpoint" | "engine";

export interface LLMOptions {
  /** A Hugging Face model directory, a TRT-LLM checkpoint directory or an engine directory. */
  model: string;
  /** Weights dtype when converting an HF model (default "auto": the source's; float32 becomes float16). */
  dtype?: ModelDType | "auto";
  /** Quantize an HF model on the way (`trtllm quantize --qformat` names). */
  quantization?: QFormatName;
  /** BuildConfig fields for the engine built from an HF or checkpoint dir on the GPU. */
  buildConfig?: BuildConfigInput;
  /** Tensor parallelism of the conversion (CPU only: the GPU runtime runs one GPU per engine). Default 1. */
  tpSize?: number;
  /** Directory with tokenizer.json (default: the model directory). */
  tokenizer?: string;
  /** Default "auto": the GPU when the engine library and a CUDA device are there, else the CPU runner. */
  backend?: "auto" | "gpu" | "cpu";
  /** CUDA device (default 0). */
  device?: number;
  /** Root of the engine cache (default $XDG_CACHE_HOME/trtllm-build/engines); false: build every time, cache nothing. */
  cacheDir?: string | false;
  /** Options of the GPU runner (numerics, maxBatchSize, KV cache size, …). */
  runner?: RunnerOptions;
  /** Build backend for engines (default the CUDA backend on `device`; tests pass the fake one). */
  buildBackend?: Backend;
}

/** After upstream's `SamplingParams` (camelCase; `max_tokens` → `maxTokens`). */
export interface SamplingParams {
  /** Most new tokens per prompt (default 32, as upstream). Capped at the model's max_seq_len minus the prompt. */
  maxTokens?: number;
  /** Sampling temperature; 0 (or top_k 1) is greedy. Sampling is on only when temperature, topK or topP is given. */
  temperature?: number;
  /** Sample among the k most likely tokens (0: all). */
  topK?: number;
  /** Nucleus sampling threshold in (0, 1]. */
  topP?: number;
  /** Seed of the sampler (default 0). */
  seed?: number;
  /** Stop strings: generation ends where one appears; the text stops just before it. */
  stop?: string[];
  /** Further token ids that end generation (kept in tokenIds, not in text). */
  stopTokenIds?: number[];
  /** Do not stop at the tokenizer's eos ids. Default false. */
  ignoreEos?: boolean;
}

/** One prompt: text, a chat (messages rendered with the chat template), or token ids as they are (upstream's TokensPrompt). */
export type Prompt = string | ChatMessage[] | { promptTokenIds: number[] };

export interface CompletionOutput {
  /** Generated text (the prompt not included; stop string and eos not included). */
  text: string;
  /** Generated ids (the stop id, when one ended it, included). */
  tokenIds: number[];
  /** "stop": an eos / stop id or stop string ended it; "length": maxTokens (or max_seq_len) did. */
  finishReason: "stop" | "length";
  /** The stop id or stop string that ended it. */
  stopReason?: number | string;
  /** Tokens of the prompt (after the chat template and special tokens). */
  promptTokens: number;
  promptTokenIds: number[];
  timing: { seconds: number; tokensPerSecond: number };
}

export interface GenerateHooks {
  /** Called with each prompt's new text as it becomes final (index into the prompts). */
  onText?: (index: number, delta: string) => void;
}

const STOP_ALL = Symbol("all rows finished");

/** Sniff a directory: engine (config.json with pretrained_config + build_config), TRT-LLM checkpoint, or HF model. */
export function detectModelKind(dir: string): ModelKind {
  const file = join(dir, "config.json");
  if (!existsSync(file)) {
    const hint = existsSync(join(dir, "params.json")) ? " (a Meta checkpoint: convert it first with trtllm convert --meta_ckpt_dir)" : "";
    throw new TrtbError("LLM_UNKNOWN_MODEL", `${file}: not found; expected a Hugging Face model, a TRT-LLM checkpoint or an engine directory${hint}`, { file });
  }
  const j = readJsonFileSafe(file, { missing: "LLM_UNKNOWN_MODEL", json: "LLM_UNKNOWN_MODEL" }) as Record<string, unknown>;
  if (j && typeof j === "object" && "pretrained_config" in j && "build_config" in j) return "engine";
  if (j && typeof j.architecture === "string") return "checkpoint";
  if (j && Array.isArray(j.architectures)) return "hf";
  throw new TrtbError("LLM_UNKNOWN_MODEL", `${file}: neither an engine config (pretrained_config + build_config), a TRT-LLM checkpoint config (architecture) nor a Hugging Face config (architectures)`, { file });
}

/** Whether the GPU engine runtime can run here (libtrtb_engine loads and a CUDA device is visible). */
export function gpuAvailable(): boolean {
  try {
    engineLib();
    return cudaLib().deviceCount() > 0;
  } catch {
    return false;
  }
}

/** `$XDG_CACHE_HOME/trtllm-build/engines` (else `~/.cache/trtllm-build/engines`). */
export function defaultEngineCacheDir(): string {
  const base = process.env.XDG_CACHE_HOME || join(homedir(), ".cache");
  return join(base, "trtllm-build", "engines");
}

/** The identity of a model directory's config and weight files: name, size, mtime (sorted by name). */
function sourceFiles(dir: string): { name: string; size: number; mtimeMs: number }[] {
  const weight = /^(config\.json|.*\.safetensors|.*\.safetensors\.index\.json|.*\.pth|params\.json)$/;
  return readdirSync(dir)
    .filter((n) => weight.test(n))
    .sort()
    .map((name) => {
      const st = statSync(join(dir, name));
      return { name, size: st.size, mtimeMs: st.mtimeMs };
    });
}

/** The engine cache key of a build: a sha256 over everything that decides the engine's bytes. */
export function engineCacheKey(k: { dir: string; dtype: string; quantization: string | null; buildConfig: BuildConfigInput; gpu: string }): string {
  const h = new Bun.CryptoHasher("sha256");
  h.update(JSON.stringify({
    toolkit: TOOLKIT_VERSION,
    dir: resolve(k.dir),
    files: sourceFiles(k.dir),
    config: readFileSync(join(k.dir, "config.json"), "utf8"),
    dtype: k.dtype,
    quantization: k.quantization,
    buildConfig: k.buildConfig,
    gpu: k.gpu,
  }));
  return h.digest("hex").slice(0, 32);
}

/** What the two runners share for text generation. */
interface TextRunner {
  readonly kind: "cpu" | "gpu";
  readonly runner: CpuRunner | GpuModelRunner;
  /** Longest prompt + generation. */
  readonly maxSeqLen: number;
  /** Longest prompt, and where that limit comes from (for the error). */
  readonly maxInputLen: number;
  readonly limitWhere: string;
  readonly maxBatch: number;
  /**
   * Generate for rows that share `maxNew`; `onToken(row, id)` returns false once that row is done.
   * `onRowStart(row)`: called where a row starts after the others (the CPU runner runs rows in turn).
   */
  run(prompts: number[][], maxNew: number, sampling: "greedy" | SamplingOptions, onToken: (row: number, id: number) => boolean, onRowStart?: (row: number) => void): void;
  /** One prompt's ids as they are computed (CPU); undefined where the runner cannot stream (GPU). */
  stream?(prompt: number[], maxNew: number, sampling: "greedy" | SamplingOptions): Iterator<number>;
  destroy(): void;
}

class CpuTextRunner implements TextRunner {
  readonly kind = "cpu" as const;
  readonly maxSeqLen: number;
  readonly maxInputLen: number;
  readonly limitWhere: string;
  readonly maxBatch = Number.MAX_SAFE_INTEGER;
  constructor(readonly runner: CpuRunner, where: string) {
    this.maxSeqLen = runner.cfg.max_position_embeddings ?? Number.MAX_SAFE_INTEGER;
    this.maxInputLen = this.maxSeqLen - 1;
    this.limitWhere = `the model's max_position_embeddings ${this.maxSeqLen} (${where})`;
  }
  run(prompts: number[][], maxNew: number, sampling: "greedy" | SamplingOptions, onToken: (row: number, id: number) => boolean, onRowStart?: (row: number) => void): void {
    prompts.forEach((p, row) => {
      onRowStart?.(row);
      for (const id of this.runner.generateIds(p, { maxNewTokens: maxNew, sampling })) if (!onToken(row, id)) break;
    });
  }
  stream(prompt: number[], maxNew: number, sampling: "greedy" | SamplingOptions): Iterator<number> {
    return this.runner.generateIds(prompt, { maxNewTokens: maxNew, sampling });
  }
  destroy(): void {}
}

class GpuTextRunner implements TextRunner {
  readonly kind = "gpu" as const;
  readonly maxSeqLen: number;
  readonly maxInputLen: number;
  readonly limitWhere: string;
  readonly maxBatch: number;
  constructor(readonly runner: GpuModelRunner, where: string) {
    this.maxSeqLen = runner.maxSeqLen;
    this.maxInputLen = Math.min(runner.plan.limits.max_input_len, runner.maxSeqLen - 1);
    this.maxBatch = runner.maxBatchSize;
    this.limitWhere = `the engine's max_input_len ${this.maxInputLen} (${where}: build_config.max_input_len; rebuild with a larger --max_input_len)`;
  }
  run(prompts: number[][], maxNew: number, sampling: "greedy" | SamplingOptions, onToken: (row: number, id: number) => boolean): void {
    const live = prompts.map(() => true);
    try {
      this.runner.generate(prompts, {
        maxNewTokens: maxNew,
        sampling,
        onToken: (_step, toks) => {
          toks.forEach((id, row) => {
            if (id !== null && live[row]) live[row] = onToken(row, id);
          });
          if (!live.some(Boolean)) throw STOP_ALL; // every row is done: stop the runner early
        },
      });
    } catch (e) {
      if (e !== STOP_ALL) throw e;
    }
  }
  destroy(): void {
    this.runner.destroy();
  }
}

export class LLM implements Disposable {
  private disposed = false;

  private constructor(
    private readonly r: TextRunner,
    /** The tokenizer prompts are encoded with. */
    readonly tokenizer: Tokenizer,
    /** What `model` was. */
    readonly modelKind: ModelKind,
    /** The engine directory in the cache (HF / checkpoint models on the GPU with caching on). */
    readonly engineDir: string | undefined,
    /** True when the engine came from the cache instead of being built. */
    readonly cacheHit: boolean,
  ) {}

  /** "cpu" (fp32 reference runner) or "gpu" (engine runtime). */
  get backend(): "cpu" | "gpu" {
    return this.r.kind;
  }

  /** Longest prompt + generation. */
  get maxSeqLen(): number {
    return this.r.maxSeqLen;
  }

  /** The runner under the text API (the CPU reference runner or the engine's GPU runner), for step-level use such as `trtllm serve`. */
  get runner(): CpuRunner | GpuModelRunner {
    this.checkAlive();
    return this.r.runner;
  }

  get maxInputLen(): number {
    return this.r.maxInputLen;
  }

  static async create(opts: LLMOptions): Promise<LLM> {
    const dir = opts.model;
    if (typeof dir !== "string" || dir === "") throw new TrtbError("LLM_BAD_OPTION", "LLM.create: `model` must be a directory path");
    const kind = detectModelKind(dir);
    const tokDir = opts.tokenizer ?? dir;
    const tokenizer = loadTokenizerFor(tokDir, opts.tokenizer !== undefined);
    const want = opts.backend ?? "auto";
    if (!["auto", "gpu", "cpu"].includes(want)) throw new TrtbError("LLM_BAD_OPTION", `LLM.create: backend must be "auto", "gpu" or "cpu", got ${JSON.stringify(want)}`);
    const tp = opts.tpSize ?? 1;
    if (!(Number.isInteger(tp) && tp >= 1)) throw new TrtbError("LLM_BAD_OPTION", `LLM.create: tpSize must be an integer ≥ 1, got ${tp}`);
    if (kind !== "hf" && (opts.quantization || opts.dtype)) throw new TrtbError("LLM_BAD_OPTION", `LLM.create: dtype and quantization apply to Hugging Face models; ${dir} is a${kind === "engine" ? "n engine" : " TRT-LLM checkpoint"} directory`);
    let useGpu: boolean;
    if (want === "cpu") {
      if (kind === "engine") throw new TrtbError("LLM_BACKEND", `${dir} is an engine directory: engines run on the GPU; give its checkpoint (or the HF model) for the CPU runner`);
      useGpu = false;
    } else if (want === "gpu") useGpu = true;
    else useGpu = kind === "engine" || opts.runner?.context !== undefined || gpuAvailable();
    if (useGpu && tp > 1) throw new TrtbError("LLM_BACKEND", `tpSize ${tp}: the GPU runtime runs one GPU per engine (use tpSize 1, or backend "cpu")`);

    if (!useGpu) {
      return new LLM(new CpuTextRunner(await cpuRunnerFor(kind, opts), `${dir}/config.json`), tokenizer, kind, undefined, false);
    }
    const runnerOpts: RunnerOptions = { device: opts.device, ...opts.runner };
    if (kind === "engine") {
      const runner = await GpuModelRunner.fromDir(dir, runnerOpts);
      return new LLM(new GpuTextRunner(runner, `${dir}/config.json`), tokenizer, kind, dir, false);
    }
    const { runner, engineDir, hit } = await gpuRunnerFor(kind, opts, tokDir, runnerOpts);
    return new LLM(new GpuTextRunner(runner, engineDir ? `${engineDir}/config.json` : "the engine built in memory"), tokenizer, kind, engineDir, hit);
  }

  /** Generate for one prompt or a batch; one output per prompt, in order. */
  async generate(prompts: Prompt | Prompt[], params: SamplingParams = {}, hooks: GenerateHooks = {}): Promise<CompletionOutput[]> {
    this.checkAlive();
    const list = normalisePrompts(prompts);
    const p = this.prepare(list, params);
    const outs: CompletionOutput[] = new Array(list.length);
    // Rows are grouped by their (capped) maxNew, and a group is split by the runner's batch size.
    const groups = new Map<number, number[]>();
    p.rows.forEach((r, i) => groups.set(r.maxNew, [...(groups.get(r.maxNew) ?? []), i]));
    for (const [maxNew, idx] of groups) {
      for (let s = 0; s < idx.length; s += this.r.maxBatch) {
        const part = idx.slice(s, s + this.r.maxBatch);
        const streams = part.map((i) => this.newStream(p.rows[i]!.ids, params));
        const ids: number[][] = part.map(() => []);
        const stops: (number | string | undefined)[] = part.map(() => undefined);
        const t0 = performance.now();
        const starts = part.map(() => t0);
        const ends = part.map(() => t0);
        this.r.run(part.map((i) => p.rows[i]!.ids), maxNew, p.sampling, (row, id) => {
          ids[row]!.push(id);
          const st = streams[row]!.push(id);
          if (st.text) hooks.onText?.(part[row]!, st.text);
          if (st.done) stops[row] = st.stop;
          const more = !st.done && ids[row]!.length < maxNew;
          if (!more) ends[row] = performance.now();
          return more;
        }, (row) => { starts[row] = performance.now(); });
        part.forEach((i, row) => {
          const ts = streams[row]!;
          const tail = ts.done ? "" : ts.flush();
          if (tail) hooks.onText?.(i, tail);
          if (ends[row] === t0) ends[row] = performance.now();
          const seconds = (ends[row]! - starts[row]!) / 1000;
          outs[i] = this.output(ts, ids[row]!, p.rows[i]!.ids, seconds, stops[row]);
        });
      }
    }
    return outs;
  }

  /** The new text of one prompt, delta by delta (CPU: as each token is computed; GPU: see the module comment). */
  async *generateStream(prompt: Prompt, params: SamplingParams = {}): AsyncGenerator<string, CompletionOutput, undefined> {
    this.checkAlive();
    const p = this.prepare(normalisePrompts(prompt), params);
    const row = p.rows[0]!;
    if (!this.r.stream) {
      const deltas: string[] = [];
      const [out] = await this.generate([prompt as Prompt], params, { onText: (_i, d) => deltas.push(d) });
      for (const d of deltas) yield d;
      return out!;
    }
    const ts = this.newStream(row.ids, params);
    const ids: number[] = [];
    let stop: number | string | undefined;
    const t0 = performance.now();
    const it = this.r.stream(row.ids, row.maxNew, p.sampling);
    try {
      for (let n = it.next(); !n.done; n = it.next()) {
        ids.push(n.value);
        const st = ts.push(n.value);
        if (st.text) yield st.text;
        if (st.done) {
          stop = st.stop;
          break;
        }
      }
      const tail = ts.done ? "" : ts.flush();
      if (tail) yield tail;
    } finally {
      it.return?.();
    }
    return this.output(ts, ids, row.ids, (performance.now() - t0) / 1000, stop);
  }

  /** Free the runner (GPU memory). Idempotent. */
  dispose(): void {
    if (this.disposed) return;
    this.disposed = true;
    this.r.destroy();
  }

  [Symbol.dispose](): void {
    this.dispose();
  }

  private checkAlive(): void {
    if (this.disposed) throw new TrtbError("LLM_DISPOSED", "this LLM was disposed");
  }

  /** Encode, check lengths, cap maxTokens, resolve sampling. */
  private prepare(list: Prompt[], params: SamplingParams) {
    const maxTokens = params.maxTokens ?? 32;
    if (!(Number.isInteger(maxTokens) && maxTokens >= 1)) throw new TrtbError("LLM_BAD_OPTION", `SamplingParams.maxTokens must be an integer ≥ 1, got ${maxTokens}`);
    const sampled = params.temperature !== undefined || params.topK !== undefined || params.topP !== undefined;
    const sampling: "greedy" | SamplingOptions = sampled ? { temperature: params.temperature, topK: params.topK, topP: params.topP, seed: params.seed } : "greedy";
    for (const id of params.stopTokenIds ?? []) {
      if (!(Number.isInteger(id) && id >= 0 && id < this.tokenizer.vocabSize)) throw new TrtbError("LLM_BAD_OPTION", `SamplingParams.stopTokenIds: ${id} is not a token id (vocabulary of ${this.tokenizer.vocabSize})`);
    }
    let warned = false;
    const rows = list.map((prompt, i) => {
      const ids = encodePrompt(this.tokenizer, prompt, i);
      if (ids.length > this.r.maxInputLen)
        throw new TrtbError("RUN_PROMPT_TOO_LONG", `prompt ${i}: ${ids.length} tokens is longer than ${this.r.limitWhere}`);
      const room = this.r.maxSeqLen - ids.length;
      const maxNew = Math.min(maxTokens, room);
      if (maxNew < maxTokens && !warned) {
        warned = true;
        log.warn(`prompt ${i}: max_tokens ${maxTokens} capped at ${maxNew}: its ${ids.length} tokens + ${maxNew} new reach max_seq_len ${this.r.maxSeqLen}`);
      }
      return { ids, maxNew };
    });
    return { rows, sampling };
  }

  private newStream(promptIds: number[], params: SamplingParams): TextStream {
    const stopIds = [...(params.ignoreEos ? [] : this.tokenizer.eosIds), ...(params.stopTokenIds ?? [])];
    return new TextStream(this.tokenizer, { promptIds, stopIds, stopStrings: params.stop ?? [] });
  }

  private output(ts: TextStream, ids: number[], promptIds: number[], seconds: number, stop: number | string | undefined): CompletionOutput {
    const stopped = ts.done;
    const out: CompletionOutput = {
      text: ts.text,
      tokenIds: ids,
      finishReason: stopped ? "stop" : "length",
      promptTokens: promptIds.length,
      promptTokenIds: promptIds,
      timing: { seconds, tokensPerSecond: seconds > 0 ? ids.length / seconds : 0 },
    };
    if (stopped && stop !== undefined) out.stopReason = stop;
    return out;
  }
}

function normalisePrompts(prompts: Prompt | Prompt[]): Prompt[] {
  if (typeof prompts === "string") return [prompts];
  if (Array.isArray(prompts) && prompts.length === 0) throw new TrtbError("LLM_BAD_INPUT", "generate: give a prompt string, a list of them, or a list of chats (lists of {role, content})");
  if (!Array.isArray(prompts)) return [prompts];
  // A single chat ([{role, content}, …]) vs a batch of prompts.
  if (prompts.every((p) => typeof p === "object" && p !== null && !Array.isArray(p) && "role" in p)) return [prompts as ChatMessage[]];
  for (const [i, p] of prompts.entries()) {
    const ok = typeof p === "string" || Array.isArray(p) || (typeof p === "object" && p !== null && Array.isArray((p as { promptTokenIds?: unknown }).promptTokenIds));
    if (!ok) throw new TrtbError("LLM_BAD_INPUT", `generate: prompts[${i}] must be a string, a list of chat messages or {promptTokenIds}`);
  }
  return prompts as Prompt[];
}

function encodePrompt(tok: Tokenizer, prompt: Prompt, i: number): number[] {
  if (typeof prompt === "string") {
    if (prompt === "") throw new TrtbError("TOK_EMPTY_PROMPT", `prompt ${i} is empty`);
    return tok.encodePrompt(prompt);
  }
  if (!Array.isArray(prompt)) {
    const ids = prompt.promptTokenIds;
    if (ids.length === 0) throw new TrtbError("TOK_EMPTY_PROMPT", `prompt ${i}: promptTokenIds is empty`);
    for (const [j, id] of ids.entries()) {
      if (!(Number.isInteger(id) && id >= 0 && id < tok.vocabSize)) throw new TrtbError("LLM_BAD_INPUT", `prompt ${i}: promptTokenIds[${j}] = ${id} is not a token id (vocabulary of ${tok.vocabSize})`);
    }
    return [...ids];
  }
  const ids = tok.encodeChat(prompt, { addGenerationPrompt: true });
  if (ids.length === 0) throw new TrtbError("TOK_EMPTY_PROMPT", `prompt ${i}: the chat template renders to no tokens`);
  return ids;
}

/** The tokenizer, with a hint on where to point when it is missing. */
function loadTokenizerFor(dir: string, explicit: boolean): Tokenizer {
  try {
    return loadTokenizer(dir);
  } catch (e) {
    if (e instanceof TrtbError && e.code === "TOK_MISSING_FILE" && !explicit)
      throw new TrtbError("TOK_MISSING_FILE", `${e.message}; text needs the model's tokenizer: give --tokenizer_dir (tokenizer option) or rebuild with this toolkit, which copies it`, { file: join(dir, "tokenizer.json"), cause: e });
    throw e;
  }
}

async function cpuRunnerFor(kind: ModelKind, opts: LLMOptions): Promise<CpuRunner> {
  if (kind === "checkpoint") return loadCpuRunner(opts.model);
  // HF: convert to a temp checkpoint, load it (the runner holds fp32 copies), remove it.
  const tmp = mkdtempSync(join(tmpdir(), "trtb-llm-"));
  try {
    await convertCheckpoint({
      modelDir: opts.model, outputDir: tmp, dtype: opts.dtype ?? "auto", tpSize: opts.tpSize ?? 1, tokenizerDir: false,
      quantConfig: opts.quantization ? { quant_algo: schemeForQformat(opts.quantization).algo } : undefined,
    });
    return await loadCpuRunner(tmp);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

/** Build (or load from the cache) the engine of an HF or checkpoint directory, and a runner on it. */
async function gpuRunnerFor(kind: ModelKind, opts: LLMOptions, tokDir: string, runnerOpts: RunnerOptions): Promise<{ runner: GpuModelRunner; engineDir?: string; hit: boolean }> {
  const bc = opts.buildConfig ?? {};
  const quantization = opts.quantization ?? null;
  const dtype = opts.dtype ?? "auto";
  const gpu = opts.buildBackend?.device.name ?? cudaLib().deviceProps(opts.device ?? 0).name;
  const root = opts.cacheDir === false ? null : (opts.cacheDir ?? defaultEngineCacheDir());
  const entry = root ? join(root, engineCacheKey({ dir: opts.model, dtype, quantization, buildConfig: bc, gpu })) : undefined;
  if (entry && existsSync(join(entry, "config.json"))) {
    log.debug(`engine cache hit: ${entry}`);
    const engine = await Engine.fromDir(entry);
    return { runner: GpuModelRunner.fromEngine(engine, runnerOpts), engineDir: entry, hit: true };
  }
  // Quantized models go through a temp checkpoint (the converter's quantization path), others stay in memory.
  let tmpCkpt: string | undefined;
  let model: DecoderModel;
  try {
    if (kind === "hf" && quantization) {
      tmpCkpt = mkdtempSync(join(tmpdir(), "trtb-llm-"));
      await convertCheckpoint({ modelDir: opts.model, outputDir: tmpCkpt, dtype, tokenizerDir: false, quantConfig: { quant_algo: schemeForQformat(quantization).algo } });
    }
    model = kind === "hf" && !tmpCkpt ? await hfModel(opts.model, dtype) : await ckptModel(tmpCkpt ?? opts.model);
  } catch (e) {
    if (tmpCkpt) rmSync(tmpCkpt, { recursive: true, force: true });
    throw e;
  }
  try {
    const t0 = performance.now();
    const backend = opts.buildBackend ?? defaultBackend(opts.device ?? 0);
    let engine: Engine;
    try {
      engine = await build(model, bc, { backend });
    } finally {
      if (!opts.buildBackend) backend.close();
    }
    log.debug(`built the engine in ${((performance.now() - t0) / 1000).toFixed(2)} s`);
    if (entry) {
      const tmp = `${entry}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`;
      try {
        engine.save(tmp, { writeConfig: true });
        carryTokenizerFiles(tokDir, tmp);
        if (existsSync(entry)) rmSync(tmp, { recursive: true, force: true }); // another process cached it meanwhile
        else renameSync(tmp, entry);
      } catch (e) {
        rmSync(tmp, { recursive: true, force: true });
        throw e;
      }
      return { runner: GpuModelRunner.fromEngine(await Engine.fromDir(entry), runnerOpts), engineDir: entry, hit: false };
    }
    return { runner: GpuModelRunner.fromEngine(engine, runnerOpts), hit: false };
  } finally {
    model.close();
    if (tmpCkpt) rmSync(tmpCkpt, { recursive: true, force: true });
  }
}

/** One rank (tp=1) of an HF model, converted in memory (lazy views over the mapped source). */
async function hfModel(dir: string, dtype: ModelDType | "auto"): Promise<DecoderModel> {
  const hf = await readHFConfig(dir);
  const family = await familyForHF(hf.architectures[0]!);
  const mapping = new Mapping();
  const cfg = family.configFromHF(hf, { dtype, mapping });
  const src = openHFCheckpoint(dir);
  try {
    const model = DecoderModel.fromSource(family, cfg, mapping, src, dir);
    model.adoptSource(src);
    return model;
  } catch (e) {
    src.close();
    throw e;
  }
}

async function ckptModel(dir: string): Promise<DecoderModel> {
  const { readCheckpointConfig } = await import("./format/checkpoint.ts");
  const cfg = await readCheckpointConfig(dir);
  const world = configMapping(cfg).worldSize;
  if (world > 1) throw new TrtbError("LLM_BACKEND", `${dir}: a checkpoint of ${world} ranks; the GPU runtime runs one GPU per engine (convert with tp_size 1, or use backend "cpu")`);
  const family = await familyForCheckpoint(cfg.architecture);
  return loadCheckpointRank(dir, 0, (c, m) => new DecoderModel(family, c, m));
}
