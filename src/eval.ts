/**
 * `evaluate(opts)`: perplexity of a checkpoint (CPU reference runner) or an engine (GPU) over fixed
 * windows of a token stream, and with a reference model, the comparison `llama-perplexity
 * --kl-divergence` gives: KL(ref‖candidate) mean / p99 / max over every scored token, top-1
 * agreement, and the first scored position where the greedy (argmax) outputs part.
 *
 * The convention (printed by `trtllm eval`, returned as `convention`):
 *
 *   stream   .txt: the whole file, tokenized as one text without special tokens.
 *            .jsonl: one document per non-blank line, {"text": …} tokenized without special tokens
 *            or {"messages": […]} rendered with the chat template (which writes its own special
 *            tokens); documents are joined with the tokenizer's EOS between them (none after the
 *            last; no separator when the tokenizer has no EOS).
 *            .safetensors: `input_ids` int32/int64, [N, S] or [S], flattened row-major, rows joined
 *            as they are (no separator).
 *   windows  window k holds stream tokens [k·stride, k·stride + window), k = 0 … K−1, full windows
 *            only: K = ⌊(N − window) / stride⌋ + 1, capped by maxWindows. stride ≤ window; the
 *            default stride = window gives llama-perplexity's non-overlapping chunks.
 *   BOS      with BOS on, the window's first token is replaced by BOS (as llama-perplexity does), so
 *            a window is always `window` tokens fed to the model. "auto" turns it on when the
 *            tokenizer adds a BOS to an encoded text (tokenizer_config add_bos_token / the
 *            post-processor), as llama.cpp's add_bos does.
 *   scored   each window scores its last n = min(stride, window − 1 − ⌊window/2⌋) tokens, i.e.
 *            window positions j = window − n … window − 1, each from the logits at position j − 1
 *            (so every scored token has ≥ window − n tokens of context). With stride = window this
 *            is exactly llama-perplexity's (first = n_ctx/2; it scores tokens first+1 … n_ctx−1);
 *            with stride ≤ ⌊window/2⌋ − 1 the scored spans of consecutive windows tile the stream.
 *   figures  nll = mean over scored tokens of −log softmax(logits)[target] in float64; ppl = e^nll.
 *            KL(ref‖cand) per scored token = Σ_v p_ref(v)·(log p_ref(v) − log p_cand(v)) over the
 *            full vocabulary in float64 from both log-softmaxes; p99 is the nearest-rank 99th
 *            percentile (sorted ascending, element ⌈0.99·n⌉ − 1). top-1 agreement = fraction of
 *            scored tokens where both argmaxes (first maximum) are equal; the first greedy divergence
 *            is the first scored token (window order, then position) where they differ.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { extname, join, resolve } from "node:path";
import { readEngineConfig } from "./engine/engine.ts";
import { TrtbError } from "./errors.ts";
import { openSafetensors } from "./format/safetensors.ts";
import { Mapping } from "./mapping.ts";
import { GpuModelRunner } from "./runtime/gpu/index.ts";
import { loadCpuRunner } from "./runtime/index.ts";
import { loadTokenizer, TOKENIZER_JSON, type Tokenizer } from "./text/index.ts";
import { writeFileAtomic } from "./util/fs.ts";

/** llama-perplexity's default context (`-c 512`). */
export const EVAL_DEFAULT_WINDOW = 512;
/** The smallest window that scores a token (window − 1 − ⌊window/2⌋ ≥ 1). */
export const EVAL_MIN_WINDOW = 3;
/** Windows the GPU runner takes in one forwardLogits call (at most). */
const GPU_WINDOWS_PER_CALL = 8;
/** Host bytes of f32 logits one batch of windows may take, per model (large vocabularies get fewer windows per call). */
const LOGITS_BATCH_BYTES = 512 * 2 ** 20;

export type EvalBos = "auto" | boolean;

export interface EvalOptions {
  /** The candidate: a TRT-LLM checkpoint directory (CPU runner) or an engine directory (rank0.engine; GPU). */
  model: string;
  /** .txt, .jsonl or a .safetensors file of `input_ids`. */
  data: string;
  /** A second checkpoint or engine: adds KL(ref‖model), top-1 agreement, first greedy divergence, the reference's ppl. */
  reference?: string;
  /** Tokens per window (default 512). */
  window?: number;
  /** Tokens between window starts, 1 … window (default window: non-overlapping). */
  stride?: number;
  /** Evaluate at most this many windows (the first ones). */
  maxWindows?: number;
  /** Replace each window's first token by BOS: "auto" (default) when the tokenizer adds one, or on / off. */
  bos?: EvalBos;
  /** Where the tokenizer is, when neither model directory holds tokenizer.json (e.g. the Hugging Face directory). */
  tokenizerDir?: string;
  /** CUDA device for engines (default 0). */
  device?: number;
  /** Called after each window: windows done, windows in all. */
  onProgress?: (done: number, total: number) => void;
}

export interface EvalConvention {
  window: number;
  stride: number;
  /** Windows evaluated. */
  windows: number;
  /** Windows the stream holds (before maxWindows). */
  windowsAvailable: number;
  /** Scored tokens per window: min(stride, window − 1 − ⌊window/2⌋). */
  scoredPerWindow: number;
  /** First scored window position (window − scoredPerWindow); positions before it are context only. */
  firstScoredPosition: number;
  tokensScored: number;
  /** The BOS id put at position 0 of every window, or null when windows are fed as they are. */
  bos: number | null;
  bosMode: EvalBos;
  /** How the stream was made. */
  stream: { format: "txt" | "jsonl" | "safetensors"; tokens: number; documents: number; separator: number | null };
  /** The convention in one line, as `trtllm eval` prints it. */
  summary: string;
}

export interface EvalModelInfo {
  dir: string;
  kind: "checkpoint" | "engine";
  vocabSize: number;
}

export interface EvalDivergence {
  /** Window index k. */
  window: number;
  /** Window position j of the token whose prediction differs (from the logits at j − 1). */
  position: number;
  /** k·stride + j: the same token's index in the stream. */
  streamIndex: number;
  referenceToken: number;
  candidateToken: number;
}

export interface EvalResult {
  convention: EvalConvention;
  model: EvalModelInfo;
  /** Tokenizer directory used (null when ids input needed none). */
  tokenizerDir: string | null;
  ppl: number;
  /** Mean negative log-likelihood (nats) per scored token. */
  nll: number;
  /** Tokens in the stream. */
  tokens: number;
  /** Seconds spent in the candidate's forward passes and scoring. */
  seconds: number;
  /** Window tokens run through the candidate per second (windows × window / seconds). */
  tokensPerSecond: number;
  reference?: EvalModelInfo & { seconds: number; tokensPerSecond: number };
  referencePpl?: number;
  referenceNll?: number;
  kl?: { mean: number; p99: number; max: number };
  top1Agreement?: number;
  firstGreedyDivergence?: EvalDivergence | null;
}

// ---- the model side: checkpoint or engine ---------------------------------------------------------

interface LogitsModel {
  info: EvalModelInfo;
  /** Context limit in tokens, when the model declares one. */
  maxSeqLen: number | undefined;
  /** Windows processed per `forward` call. */
  batch: number;
  forward(windows: number[][]): Float32Array[];
  destroy(): void;
}

/** What a directory is: an engine (rank0.engine) or a TRT-LLM checkpoint (config.json). */
export function evalModelKind(dir: string): "checkpoint" | "engine" {
  if (!existsSync(dir) || !statSync(dir).isDirectory()) throw new TrtbError("EVAL_NOT_MODEL", `${dir}: not a directory (expected a TRT-LLM checkpoint or an engine directory)`, { file: dir });
  if (existsSync(join(dir, "rank0.engine"))) return "engine";
  if (existsSync(join(dir, "config.json")) && existsSync(join(dir, "rank0.safetensors"))) return "checkpoint";
  if (existsSync(join(dir, "config.json"))) {
    throw new TrtbError("EVAL_NOT_MODEL", `${dir}: config.json but no rank0.safetensors: not a TRT-LLM checkpoint (a Hugging Face model directory? convert it first: trtllm convert / quantize)`, { file: dir });
  }
  throw new TrtbError("EVAL_NOT_MODEL", `${dir}: neither an engine directory (rank0.engine) nor a TRT-LLM checkpoint (config.json + rank{N}.safetensors)`, { file: dir });
}

async function openModel(dir: string, device: number): Promise<LogitsModel> {
  const kind = evalModelKind(dir);
  if (kind === "checkpoint") {
    const r = await loadCpuRunner(dir);
    return {
      info: { dir, kind, vocabSize: r.cfg.vocab_size },
      maxSeqLen: r.cfg.max_position_embeddings ?? undefined,
      batch: 1,
      forward: (ws) => ws.map((w) => r.forward(w)),
      destroy: () => {},
    };
  }
  const cfg = await readEngineConfig(dir);
  const ws = Mapping.fromJSON(cfg.pretrained_config.mapping).worldSize;
  if (ws !== 1) throw new TrtbError("RUN_UNSUPPORTED", `${dir}: eval runs single-rank engines; this one has ${ws} ranks`, { file: dir });
  const r = await GpuModelRunner.fromDir(dir, { device, maxBatchSize: GPU_WINDOWS_PER_CALL });
  return {
    info: { dir, kind, vocabSize: r.vocabSize },
    maxSeqLen: r.maxSeqLen,
    batch: r.maxBatchSize,
    forward: (w) => r.forwardLogits(w),
    destroy: () => r.destroy(),
  };
}

// ---- the data side: a token stream ----------------------------------------------------------------

export interface EvalStream {
  ids: number[];
  format: "txt" | "jsonl" | "safetensors";
  documents: number;
  separator: number | null;
}

/** Whether `tok` adds a BOS when it encodes a text with special tokens (llama.cpp's add_bos). */
export function tokenizerAddsBos(tok: Tokenizer): boolean {
  if (tok.bosId === undefined) return false;
  return tok.encode("a", { addSpecialTokens: true })[0] === tok.bosId && tok.encode("a", { addSpecialTokens: false })[0] !== tok.bosId;
}

function dataFormat(file: string): EvalStream["format"] {
  const ext = extname(file).toLowerCase();
  if (ext === ".txt") return "txt";
  if (ext === ".jsonl") return "jsonl";
  if (ext === ".safetensors") return "safetensors";
  throw new TrtbError("EVAL_DATA_INVALID", `${file}: unknown data format ${JSON.stringify(ext)} (expected .txt, .jsonl or .safetensors of input_ids)`, { file });
}

function checkDataFile(file: string): void {
  if (!existsSync(file)) throw new TrtbError("EVAL_DATA_MISSING", `${file}: no such file`, { file });
  if (!statSync(file).isFile()) throw new TrtbError("EVAL_DATA_MISSING", `${file}: not a file`, { file });
  if (statSync(file).size === 0) throw new TrtbError("EVAL_DATA_EMPTY", `${file}: empty (0 bytes)`, { file });
}

/** The token stream of a data file (see the convention at the top). `tok` is needed for .txt / .jsonl. */
export function readEvalStream(file: string, tok: Tokenizer | undefined): EvalStream {
  const format = dataFormat(file);
  checkDataFile(file);
  if (format === "safetensors") return readIdsStream(file);
  if (!tok) throw new TrtbError("EVAL_NO_TOKENIZER", `${file}: text input needs a tokenizer`, { file });
  const text = readFileSync(file, "utf8");
  if (format === "txt") {
    if (text.trim() === "") throw new TrtbError("EVAL_DATA_EMPTY", `${file}: no text (${text.length} whitespace characters only)`, { file });
    return { ids: tok.encode(text, { addSpecialTokens: false }), format, documents: 1, separator: null };
  }
  const sep = tok.eosIds[0] ?? null;
  const ids: number[] = [];
  let documents = 0;
  let lines = 0;
  for (const [i, line] of text.split("\n").entries()) {
    if (line.trim() === "") continue;
    lines++;
    const where = `${file}:${i + 1}`;
    let doc: unknown;
    try {
      doc = JSON.parse(line);
    } catch (e) {
      throw new TrtbError("EVAL_DATA_INVALID", `${where}: not valid JSON (${(e as Error).message})`, { file, cause: e });
    }
    const o = doc as { text?: unknown; messages?: unknown };
    let docIds: number[];
    if (doc !== null && typeof doc === "object" && typeof o.text === "string") docIds = tok.encode(o.text, { addSpecialTokens: false });
    else if (doc !== null && typeof doc === "object" && Array.isArray(o.messages)) {
      try {
        docIds = tok.encodeChat(o.messages as never);
      } catch (e) {
        if (e instanceof TrtbError) throw new TrtbError(e.code, `${where}: ${e.message}`, { file, cause: e });
        throw e;
      }
    } else throw new TrtbError("EVAL_DATA_INVALID", `${where}: expected an object with "text" (a string) or "messages" (a list)`, { file });
    if (docIds.length === 0) continue;
    if (documents > 0 && sep !== null) ids.push(sep);
    for (const id of docIds) ids.push(id);
    documents++;
  }
  if (documents === 0) throw new TrtbError("EVAL_DATA_EMPTY", `${file}: no usable text (${lines} non-blank line(s), none with non-empty "text" or "messages")`, { file });
  return { ids, format, documents, separator: documents > 1 ? sep : null };
}

function readIdsStream(file: string): EvalStream {
  const src = openSafetensors(file);
  try {
    if (!src.has("input_ids")) throw new TrtbError("EVAL_DATA_INVALID", `${file}: no tensor named input_ids`, { file });
    const t = src.get("input_ids");
    if (t.shape.length !== 1 && t.shape.length !== 2) throw new TrtbError("EVAL_DATA_INVALID", `${file}: input_ids must be [N, S] or [S], got [${t.shape}]`, { file, tensor: "input_ids" });
    if (t.dtype !== "I32" && t.dtype !== "I64") throw new TrtbError("EVAL_DATA_INVALID", `${file}: input_ids must be I32 or I64, got ${t.dtype}`, { file, tensor: "input_ids" });
    const n = t.shape.reduce((a, b) => a * b, 1);
    if (n === 0) throw new TrtbError("EVAL_DATA_EMPTY", `${file}: input_ids [${t.shape}] holds no tokens`, { file, tensor: "input_ids" });
    const b = t.bytes();
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const ids = t.dtype === "I32" ? Array.from({ length: n }, (_, i) => dv.getInt32(i * 4, true)) : Array.from({ length: n }, (_, i) => Number(dv.getBigInt64(i * 8, true)));
    return { ids, format: "safetensors", documents: t.shape.length === 2 ? t.shape[0]! : 1, separator: null };
  } finally {
    src.close();
  }
}

// ---- windows and scores ---------------------------------------------------------------------------

export interface EvalWindows {
  window: number;
  stride: number;
  windows: number;
  windowsAvailable: number;
  scoredPerWindow: number;
  firstScoredPosition: number;
}

/** The window plan for a stream of `tokens` tokens (see the convention); `file` names the data in errors. */
export function planWindows(tokens: number, window: number, stride: number, maxWindows: number | undefined, file: string): EvalWindows {
  if (!Number.isInteger(window) || window < EVAL_MIN_WINDOW) throw new TrtbError("EVAL_BAD_OPTION", `window must be an integer ≥ ${EVAL_MIN_WINDOW}, got ${window}`);
  if (!Number.isInteger(stride) || stride < 1 || stride > window) throw new TrtbError("EVAL_BAD_OPTION", `stride must be an integer in 1 … window (${window}), got ${stride}`);
  if (maxWindows !== undefined && (!Number.isInteger(maxWindows) || maxWindows < 1)) throw new TrtbError("EVAL_BAD_OPTION", `maxWindows must be an integer ≥ 1, got ${maxWindows}`);
  if (tokens < window) throw new TrtbError("EVAL_TOO_SHORT", `${file}: ${tokens} tokens, fewer than one window of ${window}`, { file });
  const windowsAvailable = Math.floor((tokens - window) / stride) + 1;
  const scoredPerWindow = Math.min(stride, window - 1 - Math.floor(window / 2));
  return { window, stride, windows: Math.min(windowsAvailable, maxWindows ?? Infinity), windowsAvailable, scoredPerWindow, firstScoredPosition: window - scoredPerWindow };
}

/** log-softmax of one logits row in float64. */
export function logSoftmax64(row: ArrayLike<number>): Float64Array {
  const n = row.length;
  let m = -Infinity;
  for (let i = 0; i < n; i++) if (row[i]! > m) m = row[i]!;
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(row[i]! - m);
  const lse = m + Math.log(s);
  const out = new Float64Array(n);
  for (let i = 0; i < n; i++) out[i] = row[i]! - lse;
  return out;
}

function argmax(row: ArrayLike<number>): number {
  let best = 0;
  for (let i = 1; i < row.length; i++) if (row[i]! > row[best]!) best = i;
  return best;
}

/** KL(p‖q) = Σ p·(log p − log q) from two log-softmax rows. */
export function klFromLogProbs(lp: Float64Array, lq: Float64Array): number {
  let kl = 0;
  for (let i = 0; i < lp.length; i++) {
    const p = Math.exp(lp[i]!);
    if (p > 0) kl += p * (lp[i]! - lq[i]!);
  }
  return kl;
}

/** Nearest-rank percentile (q in (0, 1]) of ascending-sorted values. */
export function nearestRank(sorted: ArrayLike<number>, q: number): number {
  return sorted[Math.max(0, Math.ceil(q * sorted.length) - 1)]!;
}

function conventionSummary(c: Omit<EvalConvention, "summary">, tok: Tokenizer | undefined): string {
  const src = c.stream.format === "txt" ? "txt, tokenized whole without special tokens"
    : c.stream.format === "jsonl" ? `jsonl, ${c.stream.documents} document(s)${c.stream.separator !== null ? ` joined by EOS id ${c.stream.separator}` : ""}`
    : `input_ids, ${c.stream.documents} row(s) flattened`;
  const bosName = c.bos === null ? undefined : tok?.idToToken(c.bos);
  const bos = c.bos === null ? "no BOS (windows fed as they are)" : `BOS ${bosName !== undefined ? `${bosName} ` : ""}(id ${c.bos}) replaces token 0 of each window`;
  const last = c.window - 1;
  return `window ${c.window}, stride ${c.stride}: ${c.windows} of ${c.windowsAvailable} window(s) [k·${c.stride}, k·${c.stride}+${c.window}) of a ${c.stream.tokens}-token stream (${src}); ${bos}; ` +
    `each window scores its last ${c.scoredPerWindow} tokens (positions ${c.firstScoredPosition}…${last}, each from the logits one position before) → ${c.tokensScored} tokens scored`;
}

// ---- evaluate -------------------------------------------------------------------------------------

function findTokenizerDir(opts: EvalOptions): string | undefined {
  if (opts.tokenizerDir !== undefined) return opts.tokenizerDir;
  for (const d of [opts.model, opts.reference]) if (d !== undefined && existsSync(join(d, TOKENIZER_JSON))) return d;
  return undefined;
}

/** Perplexity of `opts.model` on `opts.data`, and with `opts.reference`, KL(ref‖model) and agreement (see the top of this file). */
export async function evaluate(opts: EvalOptions): Promise<EvalResult> {
  const window = opts.window ?? EVAL_DEFAULT_WINDOW;
  const stride = opts.stride ?? window;
  const bosMode = opts.bos ?? "auto";
  const device = opts.device ?? 0;
  const format = dataFormat(opts.data);
  checkDataFile(opts.data);
  // Cheap checks before any model loads.
  planWindows(Number.MAX_SAFE_INTEGER, window, stride, opts.maxWindows, opts.data);
  evalModelKind(opts.model);
  if (opts.reference !== undefined) evalModelKind(opts.reference);

  const tokDir = findTokenizerDir(opts);
  const needTok = format !== "safetensors" || bosMode === true;
  if (needTok && tokDir === undefined) {
    const dirs = [opts.model, opts.reference].filter((d) => d !== undefined).join(" or ");
    const why = format !== "safetensors" ? `${opts.data} is text` : "bos is on";
    throw new TrtbError("EVAL_NO_TOKENIZER", `${why}, but there is no ${TOKENIZER_JSON} in ${dirs}: pass tokenizerDir (--tokenizer_dir), e.g. the Hugging Face model directory`, { file: opts.model });
  }
  const tok = tokDir !== undefined ? loadTokenizer(tokDir) : undefined;
  let bos: number | null = null;
  if (bosMode === true) {
    if (tok!.bosId === undefined) throw new TrtbError("EVAL_BAD_OPTION", `bos is on, but the tokenizer in ${tokDir} defines no BOS token`);
    bos = tok!.bosId;
  } else if (bosMode === "auto" && tok && tokenizerAddsBos(tok)) bos = tok.bosId!;

  const stream = readEvalStream(opts.data, tok);
  const plan = planWindows(stream.ids.length, window, stride, opts.maxWindows, opts.data);

  const models: LogitsModel[] = [];
  try {
    const cand = await openModel(opts.model, device);
    models.push(cand);
    const ref = opts.reference !== undefined ? await openModel(opts.reference, device) : undefined;
    if (ref) models.push(ref);
    const V = cand.info.vocabSize;
    if (ref && ref.info.vocabSize !== V) throw new TrtbError("EVAL_VOCAB_MISMATCH", `${opts.reference}: vocabulary of ${ref.info.vocabSize} tokens, ${opts.model} has ${V}: KL needs the same vocabulary`, { file: opts.reference });
    for (const m of models) {
      if (m.maxSeqLen !== undefined && window > m.maxSeqLen) throw new TrtbError("EVAL_BAD_OPTION", `window ${window} exceeds ${m.info.dir}'s context of ${m.maxSeqLen} tokens`, { file: m.info.dir });
    }
    const used = plan.windows * stride + window - stride; // stream tokens the windows cover
    for (let i = 0; i < used; i++) {
      const id = stream.ids[i]!;
      if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new TrtbError("EVAL_DATA_INVALID", `${opts.data}: token ${i} is id ${id}, outside the model's vocabulary [0, ${V})`, { file: opts.data });
    }
    if (bos !== null && bos >= V) throw new TrtbError("EVAL_BAD_OPTION", `BOS id ${bos} is outside the model's vocabulary [0, ${V})`);

    const batch = Math.max(1, Math.min(cand.batch, ref?.batch ?? Infinity, Math.floor(LOGITS_BATCH_BYTES / (window * V * 4))));
    const first = plan.firstScoredPosition;
    const kls: number[] = [];
    let nll = 0, refNll = 0, agree = 0, scored = 0, secs = 0, refSecs = 0;
    let divergence: EvalDivergence | null = null;
    for (let k0 = 0; k0 < plan.windows; k0 += batch) {
      const ks = Array.from({ length: Math.min(batch, plan.windows - k0) }, (_, i) => k0 + i);
      const inputs = ks.map((k) => {
        const w = stream.ids.slice(k * stride, k * stride + window);
        if (bos !== null) w[0] = bos;
        return w;
      });
      let t0 = performance.now();
      const refLogits = ref?.forward(inputs);
      refSecs += (performance.now() - t0) / 1000;
      t0 = performance.now();
      const logits = cand.forward(inputs);
      ks.forEach((k, b) => {
        const L = logits[b]!;
        const R = refLogits?.[b];
        for (let j = first; j < window; j++) {
          const target = stream.ids[k * stride + j]!;
          const row = L.subarray((j - 1) * V, j * V);
          const lq = logSoftmax64(row);
          nll -= lq[target]!;
          scored++;
          if (R) {
            const rrow = R.subarray((j - 1) * V, j * V);
            const lp = logSoftmax64(rrow);
            refNll -= lp[target]!;
            kls.push(klFromLogProbs(lp, lq));
            const a = argmax(rrow), c = argmax(row);
            if (a === c) agree++;
            else if (divergence === null) divergence = { window: k, position: j, streamIndex: k * stride + j, referenceToken: a, candidateToken: c };
          }
        }
      });
      secs += (performance.now() - t0) / 1000;
      opts.onProgress?.(k0 + ks.length, plan.windows);
    }

    const conv: Omit<EvalConvention, "summary"> = {
      ...plan,
      tokensScored: scored,
      bos,
      bosMode,
      stream: { format: stream.format, tokens: stream.ids.length, documents: stream.documents, separator: stream.separator },
    };
    const convention: EvalConvention = { ...conv, summary: conventionSummary(conv, tok) };
    const meanNll = nll / scored;
    const runTokens = plan.windows * window;
    const res: EvalResult = {
      convention,
      model: cand.info,
      tokenizerDir: tokDir !== undefined ? resolve(tokDir) : null,
      ppl: Math.exp(meanNll),
      nll: meanNll,
      tokens: stream.ids.length,
      seconds: secs,
      tokensPerSecond: runTokens / secs,
    };
    if (ref) {
      const sorted = Float64Array.from(kls).sort();
      let sum = 0;
      for (const x of kls) sum += x;
      res.reference = { ...ref.info, seconds: refSecs, tokensPerSecond: runTokens / refSecs };
      res.referenceNll = refNll / scored;
      res.referencePpl = Math.exp(refNll / scored);
      res.kl = { mean: sum / scored, p99: nearestRank(sorted, 0.99), max: sorted[sorted.length - 1]! };
      res.top1Agreement = agree / scored;
      res.firstGreedyDivergence = divergence;
    }
    return res;
  } finally {
    for (const m of models) m.destroy();
  }
}

/** Write an evaluation result as JSON (atomically: temp file + rename). */
export function writeEvalJson(file: string, res: EvalResult): void {
  writeFileAtomic(file, JSON.stringify(res, null, 2) + "\n");
}
