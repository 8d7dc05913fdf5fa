/**
 * `trtllm serve`: an OpenAI-compatible HTTP server on `Bun.serve` over the in-flight scheduler.
 *
 *   GET  /v1/models             the one model served
 *   POST /v1/completions        prompt as text, list of texts, token ids or lists of ids (a choice
 *                               each); max_tokens (default 16), temperature, top_p, top_k, seed,
 *                               stop, stop_token_ids, ignore_eos, n = 1, echo, logprobs (0 … 20:
 *                               tokens, token_logprobs, top_logprobs, text_offset; with echo also
 *                               over the prompt, the first token null — lm-eval's local-completions)
 *   POST /v1/chat/completions   messages through the model's chat template; logprobs / top_logprobs
 *   stream: true                server-sent events: `data: {chunk}` … `data: [DONE]`;
 *                               stream_options.include_usage adds a usage chunk
 *   GET  /health                200, or 503 while draining
 *   GET  /metrics               Prometheus text (metrics.ts)
 *
 * Every request's failure is answered (400 for what the client got wrong, OpenAI's error body with
 * our error code) and the server goes on. A client that disconnects cancels its request (the
 * request's abort signal, or the event stream's cancel): the scheduler retires it before the next
 * step and frees its KV blocks. `close({ drain: true })` (Ctrl-C in the CLI) answers new requests
 * with 503, lets running and queued requests finish, then stops listening.
 *
 * The model: an `LLM` (HF, checkpoint or engine directory: the GPU engine runner where there is
 * one, else the CPU reference runner) whose runner and tokenizer the server drives step by step.
 */
import { randomUUID } from "node:crypto";
import { TrtbError } from "../errors.ts";
import { LLM, type LLMOptions } from "../llm.ts";
import { log } from "../log.ts";
import { GpuModelRunner } from "../runtime/gpu/runner.ts";
import { TextStream } from "../text/detokenize.ts";
import type { Tokenizer } from "../text/tokenizer.ts";
import { CpuStepBackend, GpuStepBackend, type StepBackend } from "./backend.ts";
import { ServerMetrics } from "./metrics.ts";
import { errorBody, httpStatus, type ParsedRequest, parseBody, parseRequest, tokenLogprobs } from "./protocol.ts";
import { type FinishReason, type RequestHandle, type ScheduledRequest, Scheduler } from "./scheduler.ts";

export interface ServeOptions {
  /** A Hugging Face, TRT-LLM checkpoint or engine directory (or pass `llm`). */
  model?: string;
  /** Serve this LLM (not disposed by close). */
  llm?: LLM;
  /** Default "auto": the GPU when there is one (engines always), else the CPU reference runner. */
  backend?: "auto" | "gpu" | "cpu";
  tokenizer?: string;
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 8000; 0 picks a free port. */
  port?: number;
  /** The model id of /v1/models and of responses (default: the model path). */
  servedModelName?: string;
  /** Most sequences per step (GPU: ≤ the engine's max_batch_size; CPU default 16). */
  maxBatchSize?: number;
  /** Most prompt tokens per prefill pass (GPU: ≤ the engine's max_num_tokens; CPU default 512). */
  maxNumTokens?: number;
  /** Tokens of KV cache (GPU: the runner's maxKvTokens; CPU: accounted, default maxBatchSize × max_seq_len). */
  maxKvTokens?: number;
  /** Further LLM.create options (dtype, buildConfig, runner, cacheDir, …). */
  llmOptions?: Omit<LLMOptions, "model" | "backend" | "tokenizer">;
}

/** One log-probability entry (a prompt token's first entry has none). */
interface LpEntry {
  id: number;
  logprob: number | null;
  top: [number, number][] | null;
}

/** One prompt's generation, as the scheduler feeds it. */
interface Job {
  index: number;
  promptIds: number[];
  echoText: string;
  ts: TextStream;
  gen: number[];
  text: string;
  finish: "stop" | "length" | null;
  error: unknown;
  cancelled: boolean;
  lp: LpEntry[] | null;
  /** lp entries and echo already sent on the stream, and the text offset the next entry starts at */
  lpSent: number;
  lpOffset: number;
  echoSent: boolean;
  /** what is submitted to the scheduler */
  sreq: ScheduledRequest;
  handle?: RequestHandle;
  done: Promise<void>;
  onText?: (job: Job, delta: string) => void;
  onEnd?: (job: Job) => void;
}

const enc = new TextEncoder();

function json(status: number, body: unknown): Response {
  return new Response(JSON.stringify(body), { status, headers: { "Content-Type": "application/json" } });
}

export class OpenAIServer implements AsyncDisposable {
  readonly scheduler: Scheduler;
  readonly metrics: ServerMetrics;
  readonly modelName: string;
  readonly created = Math.floor(Date.now() / 1000);
  readonly #server: ReturnType<typeof Bun.serve>;
  readonly #pieces = new Map<number, string>();
  #draining = false;
  #closed: Promise<void> | null = null;

  private constructor(readonly llm: LLM, readonly backend: StepBackend, readonly ownsLlm: boolean, opts: ServeOptions) {
    this.modelName = opts.servedModelName ?? opts.model ?? "model";
    this.scheduler = new Scheduler(backend, (e) => {
      this.metrics.iterations.inc();
      if (e.decodeRows) this.metrics.batch.observe(e.decodeRows);
      if (e.prefillTokens) this.metrics.prefill.observe(e.prefillTokens);
    });
    const sch = this.scheduler;
    this.metrics = new ServerMetrics({
      waiting: () => sch.stats.waiting, running: () => sch.stats.running, maxBatchSize: backend.maxBatchSize, kvBlocks: backend.kvBlocks,
      freeKvBlocks: () => backend.freeBlocks(),
    });
    const port = opts.port ?? 8000;
    if (!(Number.isInteger(port) && port >= 0 && port < 65536)) throw new TrtbError("SERVE_BAD_OPTION", `port must be an integer in 0 … 65535, got ${opts.port}`);
    this.#server = Bun.serve({
      hostname: opts.host ?? "127.0.0.1",
      port,
      idleTimeout: 0,
      maxRequestBodySize: 64 * 2 ** 20,
      fetch: (req) => this.#fetch(req),
      error: (e) => json(500, errorBody(500, `internal error: ${e.message}`, null)),
    });
  }

  /** Load the model (or take `llm`), start listening. */
  static async start(opts: ServeOptions): Promise<OpenAIServer> {
    let llm = opts.llm;
    const owns = !llm;
    if (!llm) {
      if (!opts.model) throw new TrtbError("SERVE_BAD_OPTION", "serve: give a model directory (or an LLM)");
      const runner = { ...opts.llmOptions?.runner };
      if (opts.maxBatchSize !== undefined) runner.maxBatchSize = opts.maxBatchSize;
      if (opts.maxNumTokens !== undefined) runner.maxNumTokens = opts.maxNumTokens;
      if (opts.maxKvTokens !== undefined) runner.maxKvTokens = opts.maxKvTokens;
      llm = await LLM.create({ ...opts.llmOptions, model: opts.model, backend: opts.backend, tokenizer: opts.tokenizer, runner });
    }
    try {
      const r = llm.runner;
      const backend = r instanceof GpuModelRunner
        ? new GpuStepBackend(r, opts.model ? `${opts.model}/config.json` : "the engine")
        : new CpuStepBackend(r, { maxBatchSize: opts.maxBatchSize, maxNumTokens: opts.maxNumTokens, maxKvTokens: opts.maxKvTokens }, opts.model ? `${opts.model}/config.json` : "config.json");
      return new OpenAIServer(llm, backend, owns, opts);
    } catch (e) {
      if (owns) llm.dispose();
      throw e;
    }
  }

  get port(): number {
    return this.#server.port!;
  }

  get url(): string {
    return `http://${this.#server.hostname}:${this.port}`;
  }

  get tokenizer(): Tokenizer {
    return this.llm.tokenizer;
  }

  /** Stop: with `drain` (default) new requests get 503 while running and queued ones finish; else they are cancelled. */
  close(opts: { drain?: boolean } = {}): Promise<void> {
    this.#closed ??= (async () => {
      this.#draining = true;
      await this.scheduler.close({ drain: opts.drain ?? true });
      // let the last responses flush, bounded
      await Promise.race([this.#server.stop(false), new Promise((r) => setTimeout(r, 2000))]);
      await this.#server.stop(true);
      if (this.ownsLlm) this.llm.dispose();
    })();
    return this.#closed;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close({ drain: false });
  }

  // ---- routing ----------------------------------------------------------------------------------

  async #fetch(req: Request): Promise<Response> {
    const path = new URL(req.url).pathname;
    const route = ["/v1/completions", "/v1/chat/completions", "/v1/models", "/health", "/metrics"].includes(path) ? path : "other";
    let res: Response;
    try {
      res = await this.#route(req, path);
    } catch (e) {
      res = this.#error(e);
    }
    this.metrics.requests.inc({ route, code: String(res.status) });
    return res;
  }

  #error(e: unknown): Response {
    const code = e instanceof TrtbError ? e.code : undefined;
    const status = httpStatus(code);
    if (status === 500) log.error(e);
    const param = e instanceof TrtbError && code?.startsWith("SERVE_") ? (e.details.tensor ?? null) : null;
    return json(status, errorBody(status, e instanceof Error ? e.message : String(e), code ?? null, param));
  }

  async #route(req: Request, path: string): Promise<Response> {
    const method = (want: string) => {
      if (req.method !== want) throw new TrtbError("SERVE_METHOD", `${path} takes ${want}, not ${req.method}`);
    };
    switch (path) {
      case "/health":
        method("GET");
        return this.#draining ? json(503, { status: "draining" }) : json(200, { status: "ok" });
      case "/metrics":
        method("GET");
        return new Response(this.metrics.render(), { headers: { "Content-Type": "text/plain; version=0.0.4; charset=utf-8" } });
      case "/v1/models":
        method("GET");
        return json(200, {
          object: "list",
          data: [{ id: this.modelName, object: "model", created: this.created, owned_by: "trtllm-build", root: this.modelName, max_model_len: this.backend.maxSeqLen }],
        });
      case "/v1/completions":
      case "/v1/chat/completions": {
        method("POST");
        if (this.#draining) throw new TrtbError("SERVE_SHUTTING_DOWN", "the server is shutting down");
        const p = parseRequest(parseBody(await req.text()), path === "/v1/chat/completions");
        return this.#generate(req, p);
      }
      default:
        throw new TrtbError("SERVE_NOT_FOUND", `no route ${req.method} ${path}`);
    }
  }

  // ---- generation -------------------------------------------------------------------------------

  #piece(id: number): string {
    let s = this.#pieces.get(id);
    if (s === undefined) {
      s = this.tokenizer.decode([id], { skipSpecialTokens: false });
      if (this.#pieces.size < 1 << 20) this.#pieces.set(id, s);
    }
    return s;
  }

  /** Prompts → ids and limits, all checked before anything is queued. */
  #prepare(p: ParsedRequest): { ids: number[]; echo: string; maxNew: number }[] {
    const tok = this.tokenizer;
    const b = this.backend;
    const items = p.chat
      ? [{ ids: tok.encodeChat(p.messages, { addGenerationPrompt: true }), echo: "" }]
      : p.prompts.map((w, i) => {
        if ("text" in w) {
          if (w.text === "") throw new TrtbError("TOK_EMPTY_PROMPT", `prompt ${i} is empty`);
          return { ids: tok.encodePrompt(w.text), echo: w.text };
        }
        for (const [j, id] of w.ids.entries()) {
          if (!(id >= 0 && id < b.vocabSize)) throw new TrtbError("SERVE_BAD_REQUEST", `prompt ${i}: token ${j} is id ${id}, outside the vocabulary [0, ${b.vocabSize})`, { tensor: "prompt" });
        }
        return { ids: [...w.ids], echo: tok.decode(w.ids, { skipSpecialTokens: true }) };
      });
    for (const s of p.stopTokenIds) if (s >= tok.vocabSize) throw new TrtbError("SERVE_BAD_REQUEST", `stop_token_ids: ${s} is not a token id`, { tensor: "stop_token_ids" });
    return items.map((it, i) => {
      if (it.ids.length === 0) throw new TrtbError("TOK_EMPTY_PROMPT", `prompt ${i} renders to no tokens`);
      if (it.ids.length > b.maxInputLen) throw new TrtbError("RUN_PROMPT_TOO_LONG", `prompt ${i}: ${it.ids.length} tokens is longer than ${b.limitWhere}`);
      const room = b.maxSeqLen - it.ids.length;
      const maxNew = Math.min(p.maxTokens ?? (p.chat ? room : 16), room);
      if (b.blocksFor(it.ids.length + maxNew) > b.kvBlocks)
        throw new TrtbError("SERVE_TOO_LARGE", `prompt ${i}: ${it.ids.length} tokens + ${maxNew} new need more KV blocks than the cache holds (${b.kvBlocks} of ${b.tokensPerBlock} tokens); lower max_tokens`);
      return { ...it, maxNew };
    });
  }

  #generate(req: Request, p: ParsedRequest): Response | Promise<Response> {
    const items = this.#prepare(p);
    const arrival = performance.now();
    const stopIds = [...(p.ignoreEos ? [] : this.tokenizer.eosIds), ...p.stopTokenIds];
    const wantLp = p.logprobs !== null;
    const k = p.logprobs ?? 0;
    const jobs: Job[] = items.map((it, index) => {
      let resolve!: () => void;
      const done = new Promise<void>((r) => (resolve = r));
      const job: Job = {
        index, promptIds: it.ids, echoText: p.echo ? it.echo : "", ts: new TextStream(this.tokenizer, { promptIds: it.ids, stopIds, stopStrings: p.stop }),
        gen: [], text: "", finish: null, error: undefined, cancelled: false, lp: wantLp ? [] : null, lpSent: 0, lpOffset: 0, echoSent: !p.echo, done,
        sreq: undefined as unknown as ScheduledRequest,
      };
      if (job.lp && p.echo) job.lp.push({ id: it.ids[0]!, logprob: null, top: null });
      let last = arrival;
      const onToken = (tok: number, logits: Float32Array | null): boolean => {
        const now = performance.now();
        if (job.gen.length === 0) this.metrics.ttft.observe((now - arrival) / 1000);
        else this.metrics.itl.observe((now - last) / 1000);
        last = now;
        this.metrics.generationTokens.inc();
        if (job.lp && logits) {
          const r = tokenLogprobs(logits, tok, k);
          job.lp.push({ id: tok, logprob: r.logprob, top: r.top });
        }
        job.gen.push(tok);
        const st = job.ts.push(tok);
        if (st.text) {
          job.text += st.text;
          job.onText?.(job, st.text);
        }
        if (st.done) job.finish = "stop";
        return !st.done;
      };
      const onPromptLogits = (pos0: number, rows: Float32Array) => {
        const V = this.backend.vocabSize;
        const n = rows.length / V;
        for (let j = 0; j < n; j++) {
          const next = pos0 + j + 1;
          if (next >= it.ids.length) break;
          const r = tokenLogprobs(rows.subarray(j * V, (j + 1) * V), it.ids[next]!, k);
          job.lp!.push({ id: it.ids[next]!, logprob: r.logprob, top: r.top });
        }
      };
      const onDone = (reason: FinishReason, error?: unknown) => {
        if (reason === "length") {
          const tail = job.ts.flush();
          job.finish = "length";
          if (tail) {
            job.text += tail;
            job.onText?.(job, tail);
          }
        } else if (reason === "stop") job.finish = "stop";
        else if (reason === "cancelled") job.cancelled = true;
        else job.error = error ?? new Error("generation failed");
        this.metrics.finished.inc({ reason });
        if (reason === "stop" || reason === "length") this.metrics.e2e.observe((performance.now() - arrival) / 1000);
        resolve();
        job.onEnd?.(job);
      };
      job.sreq = {
        prompt: it.ids, maxNew: it.maxNew, sampling: p.sampling, promptLogits: wantLp && p.echo, tokenLogits: wantLp, onToken, onPromptLogits, onDone,
      };
      return job;
    });
    const cancelAll = () => {
      for (const j of jobs) j.handle?.cancel();
    };
    const submit = () => {
      try {
        for (const j of jobs) {
          j.handle = this.scheduler.submit(j.sreq);
          this.metrics.promptTokens.inc({}, j.promptIds.length);
        }
      } catch (e) {
        cancelAll();
        throw e;
      }
    };
    const id = `${p.chat ? "chatcmpl" : "cmpl"}-${randomUUID().replaceAll("-", "")}`;
    const usage = () => {
      const prompt = jobs.reduce((a, j) => a + j.promptIds.length, 0);
      const completion = jobs.reduce((a, j) => a + j.gen.length, 0);
      return { prompt_tokens: prompt, completion_tokens: completion, total_tokens: prompt + completion };
    };
    req.signal.addEventListener("abort", cancelAll, { once: true });
    if (p.stream) return this.#streamResponse(p, id, jobs, submit, cancelAll, usage);
    submit();
    return this.#jsonResponse(p, id, jobs, usage);
  }

  /** The logprobs object of `entries` (completions: text offsets from `job.lpOffset`, which moves on). */
  #lpJson(p: ParsedRequest, entries: LpEntry[], job: Job) {
    if (p.chat) {
      const item = (id: number, logprob: number) => {
        const token = this.#piece(id);
        return { token, logprob, bytes: Array.from(enc.encode(token)) };
      };
      return { content: entries.map((e) => ({ ...item(e.id, e.logprob!), top_logprobs: (e.top ?? []).map(([t, v]) => item(t, v)) })) };
    }
    let off = job.lpOffset;
    const text_offset: number[] = [];
    const tokens = entries.map((e) => {
      const s = this.#piece(e.id);
      text_offset.push(off);
      if (!this.tokenizer.specialIds.has(e.id)) off += s.length; // echoed text leaves special tokens out
      return s;
    });
    job.lpOffset = off;
    return {
      tokens, token_logprobs: entries.map((e) => e.logprob), text_offset,
      top_logprobs: entries.map((e) => (e.top ? Object.fromEntries(e.top.map(([t, v]) => [this.#piece(t), v])) : null)),
    };
  }

  async #jsonResponse(p: ParsedRequest, id: string, jobs: Job[], usage: () => object): Promise<Response> {
    await Promise.all(jobs.map((j) => j.done));
    const failed = jobs.find((j) => j.error !== undefined);
    if (failed) throw failed.error;
    // the client went away (nobody reads this) or the server was closed without draining
    if (jobs.some((j) => j.cancelled)) return json(503, errorBody(503, "the request was cancelled", "SERVE_SHUTTING_DOWN"));
    const choices = jobs.map((j) => {
      const logprobs = j.lp ? this.#lpJson(p, j.lp, j) : null;
      return p.chat
        ? { index: j.index, message: { role: "assistant", content: j.text }, logprobs, finish_reason: j.finish }
        : { index: j.index, text: j.echoText + j.text, logprobs, finish_reason: j.finish };
    });
    return json(200, { id, object: p.chat ? "chat.completion" : "text_completion", created: Math.floor(Date.now() / 1000), model: this.modelName, choices, usage: usage() });
  }

  #streamResponse(p: ParsedRequest, id: string, jobs: Job[], submit: () => void, cancelAll: () => void, usage: () => object): Response {
    const created = Math.floor(Date.now() / 1000);
    const object = p.chat ? "chat.completion.chunk" : "text_completion";
    let ctl!: ReadableStreamDefaultController<Uint8Array>;
    let open = true;
    const send = (data: unknown) => {
      if (!open) return;
      try {
        ctl.enqueue(enc.encode(`data: ${typeof data === "string" ? data : JSON.stringify(data)}\n\n`));
      } catch {
        open = false;
      }
    };
    const chunk = (job: Job, text: string, finish: string | null) => {
      let lp = null;
      if (job.lp) {
        lp = this.#lpJson(p, job.lp.slice(job.lpSent), job);
        job.lpSent = job.lp.length;
      }
      const prefix = job.echoSent ? "" : job.echoText;
      job.echoSent = true;
      const choice = p.chat
        ? { index: job.index, delta: finish ? {} : { content: text }, logprobs: lp, finish_reason: finish }
        : { index: job.index, text: prefix + text, logprobs: lp, finish_reason: finish };
      send({ id, object, created, model: this.modelName, choices: [choice] });
    };
    let remaining = jobs.length;
    for (const j of jobs) {
      j.onText = (job, delta) => chunk(job, delta, null);
      j.onEnd = (job) => {
        if (job.error !== undefined) {
          const e = job.error;
          const code = e instanceof TrtbError ? e.code : null;
          send(errorBody(httpStatus(code ?? undefined), e instanceof Error ? e.message : String(e), code));
        } else if (!job.cancelled) chunk(job, "", job.finish);
        if (--remaining === 0) {
          if (p.includeUsage) send({ id, object, created, model: this.modelName, choices: [], usage: usage() });
          send("[DONE]");
          if (open) {
            open = false;
            ctl.close();
          }
        }
      };
    }
    // the stream's start runs now, so `ctl` is set before the first token can come
    const body = new ReadableStream<Uint8Array>({
      start: (c) => {
        ctl = c;
        if (p.chat) for (const j of jobs) send({ id, object, created, model: this.modelName, choices: [{ index: j.index, delta: { role: "assistant", content: "" }, logprobs: null, finish_reason: null }] });
      },
      cancel: () => {
        open = false;
        cancelAll();
      },
    });
    submit(); // a request the scheduler refuses throws (400) before any byte is sent
    return new Response(body, { headers: { "Content-Type": "text/event-stream", "Cache-Control": "no-cache", Connection: "keep-alive" } });
  }
}

/** Start an OpenAI-compatible server (see OpenAIServer). */
export function serve(opts: ServeOptions): Promise<OpenAIServer> {
  return OpenAIServer.start(opts);
}
