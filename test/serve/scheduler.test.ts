/**
 * The in-flight scheduler (src/serve/scheduler.ts) without HTTP, on tiny-pycode: over the CPU
 * backend, concurrent requests give the ids the CPU runner gives each alone (greedy and seeded),
 * whatever the batch size, token budget (chunked prefill) and KV cache size; requests queue when
 * the batch or the KV blocks are full; cancellation (queued or running) frees the blocks. Over the
 * GPU backend on the CPU emulation of the engine library (exact numerics): the same greedy ids.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { fakeBackend } from "../../src/builder/backend.ts";
import { buildCheckpoint } from "../../src/builder/checkpoint.ts";
import { convertCheckpoint } from "../../src/convert.ts";
import type { CpuRunner } from "../../src/runtime/cpu.ts";
import { GpuModelRunner } from "../../src/runtime/gpu/runner.ts";
import { loadCpuRunner } from "../../src/runtime/index.ts";
import { CpuStepBackend, GpuStepBackend, type StepBackend } from "../../src/serve/backend.ts";
import { type FinishReason, type ScheduledRequest, Scheduler } from "../../src/serve/scheduler.ts";
import type { SamplingOptions } from "../../src/runtime/sampling.ts";
import { expectCode, SHARED, tempDir } from "../helpers.ts";
import { EMU_INFO, EmuContext } from "../runtime/_emu.ts";

const PYCODE = join(SHARED, "models/tiny-pycode");
const work = tempDir("trtb-serve-sched-");
let cpu: CpuRunner;
let ckpt: string;

beforeAll(async () => {
  ckpt = join(work.path, "ckpt");
  await convertCheckpoint({ modelDir: PYCODE, outputDir: ckpt });
  cpu = await loadCpuRunner(ckpt);
});
process.on("exit", () => work[Symbol.dispose]());

// Prompts of different lengths (ids of tiny-pycode's vocabulary).
const PROMPTS = [
  [1, 300, 301, 302, 17, 45, 99, 1000, 12, 8, 60, 61, 62, 63, 64, 65, 66, 67],
  [1, 500, 42],
  [1, 900, 901, 902, 903, 904, 905, 906, 907],
  [1, 77],
  [1, 2000, 2001, 2002, 2003, 2004],
];

interface Out {
  tokens: number[];
  reason: FinishReason;
}

function submit(s: Scheduler, prompt: number[], maxNew: number, extra: Partial<ScheduledRequest> = {}): { done: Promise<Out>; cancel: () => void; tokens: number[] } {
  const tokens: number[] = [];
  let cancel!: () => void;
  const done = new Promise<Out>((resolve) => {
    const h = s.submit({
      prompt, maxNew, sampling: "greedy", onToken: (t) => {
        tokens.push(t);
        return true;
      }, onDone: (reason) => resolve({ tokens, reason }), ...extra,
    });
    cancel = h.cancel;
  });
  return { done, cancel, tokens };
}

function alone(prompt: number[], maxNew: number, sampling: "greedy" | SamplingOptions = "greedy"): number[] {
  return [...cpu.generateIds(prompt, { maxNewTokens: maxNew, sampling })];
}

describe("scheduler on the CPU backend", () => {
  test("concurrent requests = each alone, for batch sizes, token budgets (chunked prefill) and sampling", async () => {
    const NEW = 7;
    const want = PROMPTS.map((p) => alone(p, NEW));
    for (const [maxBatchSize, maxNumTokens] of [[16, 512], [2, 4], [3, 7], [1, 1]] as const) {
      const s = new Scheduler(new CpuStepBackend(cpu, { maxBatchSize, maxNumTokens }));
      const outs = await Promise.all(PROMPTS.map((p) => submit(s, p, NEW).done));
      expect(outs.map((o) => o.tokens)).toEqual(want);
      expect(outs.every((o) => o.reason === "length")).toBe(true);
      expect(s.stats.freeKvBlocks).toBe(s.stats.kvBlocks);
      expect(s.stats.running + s.stats.waiting).toBe(0);
    }
    // seeded sampling: each sequence has its own stream, as LLM.generate on the CPU
    const sampling = { temperature: 0.9, topK: 40, seed: 11 };
    const s = new Scheduler(new CpuStepBackend(cpu, { maxBatchSize: 3, maxNumTokens: 8 }));
    const outs = await Promise.all(PROMPTS.map((p) => submit(s, p, NEW, { sampling }).done));
    expect(outs.map((o) => o.tokens)).toEqual(PROMPTS.map((p) => alone(p, NEW, sampling)));
  }, 60_000);

  test("onToken returning false stops (\"stop\"); logits delivered match the runner's", async () => {
    const s = new Scheduler(new CpuStepBackend(cpu, { maxNumTokens: 5 }));
    const want = alone(PROMPTS[0]!, 6);
    let n = 0;
    const rows: Float32Array[] = [];
    const prompt: { pos0: number; rows: Float32Array }[] = [];
    const out = await new Promise<Out>((resolve) => {
      const tokens: number[] = [];
      s.submit({
        prompt: PROMPTS[0]!, maxNew: 6, sampling: "greedy", promptLogits: true, tokenLogits: true,
        onPromptLogits: (pos0, r) => prompt.push({ pos0, rows: r.slice() }),
        onToken: (t, l) => {
          tokens.push(t);
          rows.push(l!.slice());
          return ++n < 3;
        },
        onDone: (reason) => resolve({ tokens, reason }),
      });
    });
    expect(out).toEqual({ tokens: want.slice(0, 3), reason: "stop" });
    const full = cpu.forward([...PROMPTS[0]!, ...want.slice(0, 2)]);
    const V = cpu.cfg.vocab_size;
    const L = PROMPTS[0]!.length;
    expect(prompt.map((p) => p.pos0)).toEqual([0, 5, 10, 15]); // chunks of ≤ 5 tokens
    const all = new Float32Array(L * V);
    for (const p of prompt) all.set(p.rows, p.pos0 * V);
    expect(all).toEqual(full.slice(0, L * V));
    rows.forEach((r, i) => expect(r).toEqual(full.slice((L - 1 + i) * V, (L + i) * V)));
  }, 30_000);

  test("queues when the batch or the KV cache is full; cancellation frees blocks (queued and running)", async () => {
    // 2 blocks of 32 tokens: one request of ≤ 64 positions at a time
    const b = new CpuStepBackend(cpu, { maxBatchSize: 4, maxKvTokens: 64, tokensPerBlock: 32 });
    const s = new Scheduler(b);
    expect(b.kvBlocks).toBe(2);
    expectCode(() => s.submit({ prompt: PROMPTS[0]!, maxNew: 60, sampling: "greedy", onToken: () => true, onDone: () => {} }), "SERVE_TOO_LARGE");
    const seen: number[] = [];
    const a = submit(s, PROMPTS[1]!, 40, { onToken: () => (seen.push(1), true) });
    const c = submit(s, PROMPTS[3]!, 40);
    const q = submit(s, PROMPTS[2]!, 5);
    // wait until a runs: it holds both blocks, c and q wait
    while (seen.length < 2) await new Promise((r) => setImmediate(r));
    expect(s.stats.running).toBe(1);
    expect(s.stats.waiting).toBe(2);
    expect(s.stats.freeKvBlocks).toBe(0);
    c.cancel(); // queued: leaves the queue at once
    expect((await c.done).reason).toBe("cancelled");
    expect(s.stats.waiting).toBe(1);
    a.cancel(); // running: retired before the next step, its blocks freed; q goes on
    const ra = await a.done;
    expect(ra.reason).toBe("cancelled");
    expect(ra.tokens.length).toBeLessThan(40);
    expect((await q.done).tokens).toEqual(alone(PROMPTS[2]!, 5));
    await s.idle();
    expect(s.stats.freeKvBlocks).toBe(2);
    // batch full: maxBatchSize 1 runs one at a time, in order
    const one = new Scheduler(new CpuStepBackend(cpu, { maxBatchSize: 1 }));
    const order: number[] = [];
    await Promise.all(PROMPTS.slice(0, 3).map((p, i) => new Promise((resolve) => one.submit({ prompt: p, maxNew: 2, sampling: "greedy", onToken: () => true, onDone: (r) => resolve(order.push(i)) }))));
    expect(order).toEqual([0, 1, 2]);
  }, 30_000);

  test("bad requests are refused with codes; a callback that throws fails its request only", async () => {
    const s = new Scheduler(new CpuStepBackend(cpu));
    const base = { sampling: "greedy" as const, onToken: () => true, onDone: () => {} };
    expectCode(() => s.submit({ ...base, prompt: [], maxNew: 1 }), "TOK_EMPTY_PROMPT");
    expectCode(() => s.submit({ ...base, prompt: [1, 99999], maxNew: 1 }), "RUN_BAD_INPUT", /vocabulary/);
    expectCode(() => s.submit({ ...base, prompt: Array(1024).fill(5), maxNew: 1 }), "RUN_PROMPT_TOO_LONG");
    expectCode(() => s.submit({ ...base, prompt: [1], maxNew: 0 }), "RUN_BAD_INPUT");
    const bad = new Promise<FinishReason>((resolve) => s.submit({ ...base, prompt: [1, 5], maxNew: 3, onToken: () => { throw new Error("boom"); }, onDone: resolve }));
    const good = submit(s, PROMPTS[1]!, 3);
    expect(await bad).toBe("error");
    expect((await good.done).tokens).toEqual(alone(PROMPTS[1]!, 3));
    await s.close();
    expectCode(() => s.submit({ ...base, prompt: [1], maxNew: 1 }), "SERVE_SHUTTING_DOWN");
  });
});

describe("scheduler on the GPU backend (CPU emulation of the engine library)", () => {
  test("in-flight batches: the CPU runner's greedy ids; KV blocks all back", async () => {
    const eng = join(work.path, "engine");
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, backend: fakeBackend(), buildConfig: { max_batch_size: 3, max_num_tokens: 8, max_seq_len: 64 } });
    const ctx = new EmuContext();
    using runner = await GpuModelRunner.fromDir(eng, { context: { ctx, info: EMU_INFO }, maxKvTokens: 256, maxNumTokens: 8, numerics: "exact" });
    const backend: StepBackend = new GpuStepBackend(runner);
    expect(backend.maxBatchSize).toBe(3);
    expect(backend.maxNumTokens).toBe(8);
    const s = new Scheduler(backend);
    const NEW = 4;
    const outs = await Promise.all(PROMPTS.map((p) => submit(s, p, NEW).done));
    expect(outs.map((o) => o.tokens)).toEqual(PROMPTS.map((p) => alone(p, NEW)));
    expect(s.stats.freeKvBlocks).toBe(runner.kvBlocks);
    expect(ctx.launches).toBeGreaterThan(0); // decode steps replayed from graphs
    // the asynchronous step: a request that stops (onToken false) or is cancelled while the step runs
    // drops the token computed for nothing; the others are unaffected; all blocks come back
    let n = 0;
    const stopper = submit(s, PROMPTS[1]!, NEW, { onToken: () => ++n < 2 });
    const canceller = submit(s, PROMPTS[2]!, 30);
    const other = submit(s, PROMPTS[3]!, NEW);
    while (canceller.tokens.length < 2) await new Promise((r) => setImmediate(r));
    canceller.cancel();
    expect((await stopper.done).reason).toBe("stop");
    expect(n).toBe(2);
    expect((await canceller.done).reason).toBe("cancelled");
    expect((await other.done).tokens).toEqual(alone(PROMPTS[3]!, NEW));
    await s.idle();
    expect(s.stats.freeKvBlocks).toBe(runner.kvBlocks);
    // prompt logits through the GPU head equal the CPU runner's (exact numerics)
    const V = cpu.cfg.vocab_size;
    const got = new Float32Array(PROMPTS[0]!.length * V);
    await submit(s, PROMPTS[0]!, 1, { promptLogits: true, onPromptLogits: (pos0, r) => got.set(r, pos0 * V) }).done;
    const want = cpu.forward(PROMPTS[0]!);
    let err = 0;
    for (let i = 0; i < want.length; i++) err = Math.max(err, Math.abs(got[i]! - want[i]!));
    expect(err).toBeLessThan(1e-3);
  }, 120_000);
});
