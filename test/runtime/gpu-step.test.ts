/**
 * The GPU runner's step-level API (allocateKv / prefillStep / decodeRows / releaseKv) on the CPU
 * emulation of the engine library: sequences that join at different times, chunked prefill across
 * calls, decode rows at different positions in one step, graphs replayed as the row count changes —
 * against the CPU runner's greedy ids and logits (exact numerics) and `generate`'s sampled ids.
 */
import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { fakeBackend } from "../../src/builder/backend.ts";
import { buildCheckpoint } from "../../src/builder/checkpoint.ts";
import { convertCheckpoint } from "../../src/convert.ts";
import { loadCpuRunner } from "../../src/runtime/index.ts";
import { GpuModelRunner } from "../../src/runtime/gpu/runner.ts";
import { asI32, expectCode, fixture, readRaw, relMaxErr, tempDir } from "../helpers.ts";
import { EMU_INFO, EmuContext } from "./_emu.ts";

describe("GPU runner step API (emulated)", () => {
  test("in-flight: staggered joins, chunked prefill, mixed positions; equals the CPU runner and generate()", async () => {
    using t = tempDir();
    const ckpt = join(t.path, "ckpt");
    const eng = join(t.path, "eng");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: ckpt });
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, backend: fakeBackend(), buildConfig: { max_num_tokens: 64, max_batch_size: 4 } });
    const ctx = new EmuContext();
    using runner = await GpuModelRunner.fromDir(eng, { context: { ctx, info: EMU_INFO }, maxKvTokens: 512, numerics: "exact", maxNumTokens: 8 });
    const cpu = await loadCpuRunner(ckpt);
    const ref = readRaw(join(fixture("llama"), "reference.safetensors"));
    const row = Array.from(asI32(ref.get("input_ids")!)).slice(0, 12);
    const a = row.slice(0, 10);
    const b = row.slice(3, 6);
    const NEW = 5;
    const free0 = runner.freeKvBlocks;
    const ta = runner.allocateKv(a.length + NEW);
    const tb = runner.allocateKv(b.length + NEW);
    expect(runner.freeKvBlocks).toBe(free0 - runner.kvBlocksFor(a.length + NEW) - runner.kvBlocksFor(b.length + NEW));
    const sa = [...a];
    const sb = [...b];
    // pass 1: first 8 tokens of a (no token yet), with all their logits
    let out = runner.prefillStep([{ tokens: sa, pos0: 0, n: 8, table: ta, logits: "all" }]);
    expect(out.tokens).toEqual([null]);
    const full = cpu.forward(a);
    expect(relMaxErr(out.logits[0]!, full.subarray(0, 8 * runner.vocabSize))).toBeLessThan(1e-5);
    // pass 2: the rest of a (first token drawn) and all of b
    out = runner.prefillStep([
      { tokens: sa, pos0: 8, n: 2, table: ta, sample: "greedy", logits: "last" },
      { tokens: sb, pos0: 0, n: 3, table: tb, sample: "greedy" },
    ]);
    expect(relMaxErr(out.logits[0]!, full.subarray(9 * runner.vocabSize))).toBeLessThan(1e-5);
    expect(out.logits[1]).toBeNull();
    sa.push(out.tokens[0]!);
    sb.push(out.tokens[1]!);
    // decode: a alone once, then a and b together (different positions), then b alone
    const dec = (rows: { s: number[]; t: number[]; p: number }[]) => {
      const o = runner.decodeRows(rows.map((r) => ({ token: r.s.at(-1)!, pos: r.s.length - 1, table: r.t, step: r.s.length - r.p, logits: true })));
      rows.forEach((r, i) => r.s.push(o.tokens[i]!));
      return o;
    };
    dec([{ s: sa, t: ta, p: a.length }]);
    const both = dec([{ s: sa, t: ta, p: a.length }, { s: sb, t: tb, p: b.length }]);
    expect(relMaxErr(both.logits[1]!, cpu.step(sb.slice(0, -1), cpu.newCache()))).toBeLessThan(1e-5);
    dec([{ s: sa, t: ta, p: a.length }, { s: sb, t: tb, p: b.length }]);
    dec([{ s: sb, t: tb, p: b.length }]);
    // launched without waiting: another call on the runner completes it first; the wait is idempotent
    const wait = runner.launchDecodeRows([{ token: sa.at(-1)!, pos: sa.length - 1, table: ta, step: sa.length - a.length }]);
    expect(runner.freeKvBlocks).toBeGreaterThan(0);
    const w1 = wait();
    expect(wait()).toBe(w1);
    sa.push(w1.tokens[0]!);
    expect(sa).toEqual(cpu.greedy(a, NEW));
    expect(sb.length).toBe(b.length + 4);
    expect(sb).toEqual(cpu.greedy(b, 4));
    expect(ctx.launches).toBeGreaterThan(0); // decode steps of 1 and 2 rows replayed from graphs
    runner.releaseKv(ta);
    runner.releaseKv(tb);
    expect(runner.freeKvBlocks).toBe(free0);

    // sampled: the same random stream as generate() (seeded per sequence, step = new-token index)
    const sampling = { temperature: 0.8, topK: 20, seed: 3 };
    const want = runner.generate([b], { maxNewTokens: 4, sampling }).newTokens[0]!;
    const t2 = runner.allocateKv(b.length + 4);
    const s2 = [...b];
    s2.push(runner.prefillStep([{ tokens: s2, pos0: 0, n: s2.length, table: t2, sample: sampling }]).tokens[0]!);
    for (let st = 1; st < 4; st++) s2.push(runner.decodeRows([{ token: s2.at(-1)!, pos: s2.length - 1, table: t2, sample: sampling, step: st }]).tokens[0]!);
    expect(s2.slice(b.length)).toEqual(want);
    runner.releaseKv(t2);

    // limits
    expectCode(() => runner.allocateKv(runner.maxSeqLen + 1), "RUN_BAD_INPUT");
    expect(runner.kvTokens).toBe(runner.maxSeqLen);
    const all = runner.allocateKv(runner.maxSeqLen);
    expectCode(() => runner.allocateKv(1), "RUN_KV_CACHE_FULL");
    runner.releaseKv(all);
    const t3 = runner.allocateKv(4);
    expectCode(() => runner.prefillStep([{ tokens: row, pos0: 0, n: 9, table: t3 }]), "RUN_BAD_INPUT", /max_num_tokens/);
    const long = Array.from({ length: runner.tokensPerBlock + 4 }, (_, i) => row[i % row.length]!);
    expectCode(() => runner.prefillStep([{ tokens: long, pos0: runner.tokensPerBlock - 2, n: 4, table: t3 }]), "RUN_BAD_INPUT", /KV blocks/);
    expectCode(() => runner.decodeRows([{ token: 1 << 20, pos: 0, table: t3, step: 1 }]), "RUN_BAD_INPUT", /vocabulary/);
    runner.releaseKv(t3);
    expect(runner.freeKvBlocks).toBe(free0);
  });
});
