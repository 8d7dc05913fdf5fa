/**
 * In-flight batching over a StepBackend (backend.ts). Requests queue first come, first served;
 * every iteration of the loop:
 *
 *   1. collects the decode step still running on an asynchronous backend (the GPU's);
 *   2. retires cancelled sequences (their KV blocks go back at once);
 *   3. admits queued requests while the batch has room (maxBatchSize) and the KV cache has the
 *      blocks of prompt + max new tokens (reserved whole at admission, so a running sequence never
 *      runs out and nothing is preempted); the head of the queue waits when it does not fit;
 *   4. runs one prefill pass over prompt chunks of the sequences still prefilling, oldest first,
 *      within maxNumTokens tokens (a long prompt spans iterations: chunked prefill); a sequence
 *      whose prompt is complete gets its first token;
 *   5. runs one decode step over every live sequence (prefilled, under its max new tokens). On a
 *      synchronous backend (the CPU's) the new tokens go to their requests first — `onToken` says
 *      whether a request wants more — so finished sequences do not decode; an asynchronous backend
 *      launches the step first and the tokens are handed out (detokenized, streamed) while the GPU
 *      runs it — a sequence that stopped meanwhile computed one token for nothing, dropped;
 *   6. retires finished sequences, frees their blocks, and yields to the event loop (HTTP,
 *      streams) before the next iteration. The loop sleeps when there is no work and wakes on submit.
 *
 * A backend error fails the sequences of that pass (their `onDone` gets it) and the loop goes on.
 */
import { TrtbError } from "../errors.ts";
import type { SamplingOptions } from "../runtime/sampling.ts";
import type { BackendSeq, DecodeItem, PrefillChunk, StepBackend, StepToken } from "./backend.ts";

export type FinishReason = "stop" | "length" | "cancelled" | "error";

export interface ScheduledRequest {
  /** Prompt ids (1 … backend.maxInputLen). */
  prompt: number[];
  /** Most new tokens (≥ 1; prompt + maxNew ≤ backend.maxSeqLen). */
  maxNew: number;
  sampling: "greedy" | SamplingOptions;
  /** Deliver the prompt's logits (rows 0 … promptLen-1, chunk by chunk) to onPromptLogits. */
  promptLogits?: boolean;
  /** Deliver each new token's logits (the row it was drawn from) to onToken. */
  tokenLogits?: boolean;
  /** Logits of prompt rows [pos0, pos0 + rows) as [rows × V]. */
  onPromptLogits?: (pos0: number, logits: Float32Array) => void;
  /** A new token; return false to finish the request ("stop"). */
  onToken: (token: number, logits: Float32Array | null) => boolean;
  /** Called once at the end: "length" when maxNew tokens were made, "stop" when onToken said so. */
  onDone: (reason: FinishReason, error?: unknown) => void;
}

export interface RequestHandle {
  readonly id: number;
  /** Cancel: a queued request leaves the queue, a running one is retired before the next step; its blocks are freed. */
  cancel(): void;
}

export interface SchedulerStats {
  waiting: number;
  running: number;
  kvBlocks: number;
  freeKvBlocks: number;
  /** Iterations run, and the decode rows and prefill tokens they processed. */
  iterations: number;
  decodeRows: number;
  prefillTokens: number;
  /** Host-clock milliseconds spent in decode steps and prefill passes. */
  decodeMs: number;
  prefillMs: number;
}

export interface StepEvent {
  /** Rows of the decode step (0: none) and prompt tokens of the prefill pass. */
  decodeRows: number;
  prefillTokens: number;
  running: number;
  waiting: number;
}

interface Seq extends BackendSeq {
  readonly req: ScheduledRequest;
  /** Prompt positions in the KV cache. */
  prefilled: number;
  cancelled: boolean;
  done: boolean;
}

const yieldToEventLoop = () => new Promise<void>((r) => setImmediate(r));

export class Scheduler {
  readonly #queue: Seq[] = [];
  readonly #running: Seq[] = [];
  #nextId = 1;
  #loop: Promise<void> | null = null;
  #closed = false;
  /** the decode step an asynchronous backend is running */
  #inflight: { rows: Seq[]; wait: () => StepToken[]; t0: number } | null = null;
  readonly #stats = { iterations: 0, decodeRows: 0, prefillTokens: 0, decodeMs: 0, prefillMs: 0 };

  constructor(
    readonly backend: StepBackend,
    /** Called after every iteration (metrics). */
    readonly onStep?: (e: StepEvent) => void,
  ) {}

  get stats(): SchedulerStats {
    return {
      waiting: this.#queue.length, running: this.#running.length, kvBlocks: this.backend.kvBlocks, freeKvBlocks: this.backend.freeBlocks(), ...this.#stats,
    };
  }

  /** Queue a request; it starts when the batch and the KV cache have room for it. */
  submit(req: ScheduledRequest): RequestHandle {
    if (this.#closed) throw new TrtbError("SERVE_SHUTTING_DOWN", "the scheduler is closed");
    const b = this.backend;
    const n = req.prompt.length;
    if (n === 0) throw new TrtbError("TOK_EMPTY_PROMPT", "the prompt has no tokens");
    if (n > b.maxInputLen) throw new TrtbError("RUN_PROMPT_TOO_LONG", `the prompt's ${n} tokens are more than ${b.limitWhere}`);
    for (const [i, id] of req.prompt.entries()) {
      if (!(Number.isInteger(id) && id >= 0 && id < b.vocabSize)) throw new TrtbError("RUN_BAD_INPUT", `prompt token ${i} is id ${id}, outside the vocabulary [0, ${b.vocabSize})`);
    }
    if (!(Number.isInteger(req.maxNew) && req.maxNew >= 1)) throw new TrtbError("RUN_BAD_INPUT", `maxNew must be an integer ≥ 1, got ${req.maxNew}`);
    if (n + req.maxNew > b.maxSeqLen) throw new TrtbError("RUN_BAD_INPUT", `${n} prompt tokens + ${req.maxNew} new pass max_seq_len ${b.maxSeqLen}`);
    const capacity = n + req.maxNew;
    if (b.blocksFor(capacity) > b.kvBlocks)
      throw new TrtbError("SERVE_TOO_LARGE", `${n} prompt tokens + ${req.maxNew} new need ${b.blocksFor(capacity)} KV blocks; the cache has ${b.kvBlocks} in all`);
    const seq: Seq = {
      id: this.#nextId++, tokens: [...req.prompt], promptLen: n, capacity, sampling: req.sampling, req, prefilled: 0, cancelled: false, done: false,
    };
    this.#queue.push(seq);
    this.#kick();
    return { id: seq.id, cancel: () => this.#cancel(seq) };
  }

  /** Resolves when nothing is queued or running (or in flight). */
  async idle(): Promise<void> {
    while (this.#loop) await this.#loop;
  }

  /** Refuse new requests; with `drain` wait for the running and queued ones, else cancel them. */
  async close(opts: { drain?: boolean } = {}): Promise<void> {
    this.#closed = true;
    if (!opts.drain) for (const s of [...this.#queue, ...this.#running]) this.#cancel(s);
    await this.idle();
  }

  #cancel(seq: Seq): void {
    if (seq.done || seq.cancelled) return;
    seq.cancelled = true;
    const qi = this.#queue.indexOf(seq);
    if (qi >= 0) {
      this.#queue.splice(qi, 1);
      this.#finish(seq, "cancelled");
    }
    // A running sequence is retired at the start of the next iteration (a step is not interrupted).
    this.#kick();
  }

  #finish(seq: Seq, reason: FinishReason, error?: unknown): void {
    if (seq.done) return;
    seq.done = true;
    this.backend.free(seq);
    const ri = this.#running.indexOf(seq);
    if (ri >= 0) this.#running.splice(ri, 1);
    try {
      seq.req.onDone(reason, error);
    } catch {
      // a callback's failure is the caller's; the loop goes on
    }
  }

  #kick(): void {
    if (this.#loop) return;
    // The first iteration runs after the caller's turn (never inside submit).
    this.#loop = yieldToEventLoop().then(() => this.#run()).finally(() => {
      this.#loop = null;
      if (this.#queue.length || this.#running.length) this.#kick();
    });
  }

  async #run(): Promise<void> {
    while (this.#queue.length || this.#running.length || this.#inflight) {
      this.#iterate();
      await yieldToEventLoop();
    }
  }

  /** Hand a token to its request; finish the sequence when it says stop or reached maxNew. */
  #notify(seq: Seq, token: number, logits: Float32Array | null): void {
    if (seq.done) return;
    let more: boolean;
    try {
      more = seq.req.onToken(token, logits);
    } catch (e) {
      this.#finish(seq, "error", e);
      return;
    }
    if (!more) this.#finish(seq, "stop");
    else if (seq.tokens.length - seq.promptLen >= seq.req.maxNew) this.#finish(seq, "length");
  }

  #iterate(): void {
    const b = this.backend;
    /** tokens computed this iteration, handed to their requests below */
    const pending: [Seq, number, Float32Array | null][] = [];
    const accept = (s: Seq, token: number, logits: Float32Array | null) => {
      if (s.done || s.cancelled) return; // stopped while its step ran: the token is dropped
      s.tokens.push(token);
      pending.push([s, token, logits]);
    };
    const notifyAll = () => {
      for (const [s, t, l] of pending.splice(0)) this.#notify(s, t, l);
    };
    // 1. the decode step in flight (asynchronous backends)
    if (this.#inflight) {
      const { rows, wait, t0 } = this.#inflight;
      this.#inflight = null;
      try {
        const outs = wait();
        rows.forEach((s, i) => accept(s, outs[i]!.token!, outs[i]!.logits));
      } catch (e) {
        for (const s of rows) this.#finish(s, "error", e);
      }
      this.#stats.decodeMs += performance.now() - t0;
    }
    // 2. retire cancelled (the device is idle now: their blocks can go to others)
    for (const s of [...this.#running]) if (s.cancelled) this.#finish(s, "cancelled");
    // 3. admit, first come first served
    while (this.#queue.length && this.#running.length < b.maxBatchSize) {
      const s = this.#queue[0]!;
      if (!b.reserve(s)) break;
      this.#queue.shift();
      this.#running.push(s);
    }
    // 4. a prefill pass over prompt chunks within maxNumTokens, oldest sequences first
    const chunks: PrefillChunk[] = [];
    let budget = b.maxNumTokens;
    for (const s of this.#running) {
      if (s.prefilled === s.promptLen) continue;
      if (budget === 0 || chunks.length === b.maxBatchSize) break;
      const n = Math.min(s.promptLen - s.prefilled, budget);
      const last = s.prefilled + n === s.promptLen;
      const logits = s.req.promptLogits ? "all" : last && s.req.tokenLogits ? "last" : "none";
      chunks.push({ seq: s, pos0: s.prefilled, n, last, logits });
      budget -= n;
    }
    let prefillTokens = 0;
    if (chunks.length) {
      const t0 = performance.now();
      let outs;
      try {
        outs = b.admit(chunks);
      } catch (e) {
        for (const c of chunks) this.#finish(c.seq as Seq, "error", e);
        outs = null;
      }
      this.#stats.prefillMs += performance.now() - t0;
      chunks.forEach((c, i) => {
        const s = c.seq as Seq;
        const o = outs?.[i];
        if (!o || s.done) return;
        s.prefilled += c.n;
        prefillTokens += c.n;
        if (c.logits === "all" && o.logits) {
          try {
            s.req.onPromptLogits?.(c.pos0, o.logits);
          } catch (e) {
            this.#finish(s, "error", e);
            return;
          }
        }
        if (c.last) {
          const row = !o.logits ? null : c.logits === "all" ? o.logits.subarray((c.n - 1) * b.vocabSize) : o.logits;
          accept(s, o.token!, s.req.tokenLogits ? row : null);
        }
      });
    }
    // 5. one decode step over the live sequences. A synchronous backend learns first which
    //    sequences the new tokens end; an asynchronous one launches, then streams while it runs.
    const asyncStep = b.launch !== undefined;
    if (!asyncStep) notifyAll();
    const live = this.#running.filter((s) => !s.done && !s.cancelled && s.prefilled === s.promptLen && s.tokens.length - s.promptLen < s.req.maxNew);
    const rows: DecodeItem[] = live.map((s) => ({ seq: s, logits: !!s.req.tokenLogits }));
    if (rows.length) {
      const t0 = performance.now();
      if (asyncStep) {
        try {
          this.#inflight = { rows: live, wait: b.launch!(rows), t0 };
        } catch (e) {
          for (const s of live) this.#finish(s, "error", e);
        }
      } else {
        try {
          const outs = b.step(rows);
          live.forEach((s, i) => accept(s, outs[i]!.token!, outs[i]!.logits));
        } catch (e) {
          for (const s of live) this.#finish(s, "error", e);
        }
        this.#stats.decodeMs += performance.now() - t0;
      }
    }
    notifyAll();
    this.#stats.iterations++;
    this.#stats.decodeRows += rows.length;
    this.#stats.prefillTokens += prefillTokens;
    this.onStep?.({ decodeRows: rows.length, prefillTokens, running: this.#running.length, waiting: this.#queue.length });
  }
}
