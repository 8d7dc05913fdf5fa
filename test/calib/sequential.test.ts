/**
 * The layer-by-layer AWQ search (src/calib/sequential.ts) on tiny-pycode: what it fake-quantizes
 * while searching is exactly what the checkpoint then holds (the effective weights the CPU runner
 * loads from the written int4 checkpoint, bit for bit), the runner's weights come back unchanged,
 * and the plan has the layout the schemes read.
 */
import { beforeAll, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { awqSequentialPlan, calibrationStats } from "../../src/calib/index.ts";
import { fakeQuantAwq, fakeQuantAwqFast, gramBlocks, smoothedGramSlice } from "../../src/calib/awq.ts";
import { convertCheckpoint } from "../../src/convert.ts";
import type { CalibStats } from "../../src/quant/calib-plan.ts";
import { loadCpuRunner } from "../../src/runtime/index.ts";
import type { CpuRunner } from "../../src/runtime/cpu.ts";
import { SHARED, tempDir } from "../helpers.ts";

const f32 = Math.fround;

const MODEL = join(SHARED, "models/tiny-pycode");
const work = tempDir();
let stats: CalibStats;
let runner: CpuRunner;

beforeAll(async () => {
  const text = readFileSync(join(MODEL, "heldout-public.py.txt"), "utf8");
  writeFileSync(join(work.path, "calib.txt"), text.slice(0, 20000));
  ({ stats, runner } = await calibrationStats({ modelDir: MODEL, dataset: join(work.path, "calib.txt"), calibSize: 3, calibMaxSeqLength: 32 }));
}, 120_000);

test("the searched model is the stored checkpoint, bit for bit; the runner's fp weights are restored", async () => {
  const before = new Map([...runner.w].map(([n, t]) => [n, t.data.slice()]));
  const { plan } = awqSequentialPlan(runner, stats.ids!, stats.describe, { smoothing: "awq", dtype: "BF16", groupSize: 128, awqGrid: 4, loss: "block" });
  for (const [n, t] of runner.w) expect(Buffer.from(t.data.buffer).equals(Buffer.from(before.get(n)!.buffer))).toBe(true);
  expect(plan.linears.size).toBe(6 * 5);
  expect(plan.kv.every((k) => k.kAmax > 0 && k.vAmax > 0)).toBe(true);
  const out = join(work.path, "q");
  await convertCheckpoint({ modelDir: MODEL, outputDir: out, quantConfig: { quant_algo: "W4A16_AWQ", group_size: 128 }, calibration: plan });
  const q = await loadCpuRunner(out);
  let n = 0;
  for (const [m, p] of plan.linears) {
    const w = runner.w.get(`${m}.weight`)!;
    const inF = w.shape[1]!;
    expect(p.search?.loss).toBe(/qkv|mlp\.(fc|gate)/.test(m) ? "block" : "linear");
    expect(p.gram?.length).toBe(inF * inF);
    const expected = fakeQuantAwq(w.data, inF, 128, p.pre, p.gramBlocks, "BF16", smoothedGramSlice(p.gram!, inF, 0, inF, p.pre));
    const got = q.w.get(`${m}.weight`)!.data;
    expect(got.length).toBe(expected.length);
    let bad = 0;
    for (let k = 0; k < got.length; k++) if (got[k] !== expected[k]) bad++;
    expect(`${m}: ${bad} differ`).toBe(`${m}: 0 differ`);
    n++;
  }
  expect(n).toBe(30);
}, 300_000);

test("the batched clip of the joint search agrees with the stored clip search", () => {
  const st = stats.linears.get("transformer.layers.2.attention.qkv")!;
  const w = runner.w.get("transformer.layers.2.attention.qkv.weight")!;
  const n = w.shape[1]!;
  // Gram of this pass's inputs, the stored pre of one: the clip decision is all that differs
  const g = new Float64Array(n * n);
  for (let i = 0; i < n; i++) g[i * n + i] = st.absSum[i]! ** 2 / st.tokens + 1e-3; // a diagonal Gram, enough to exercise the ratios
  const pre = Float32Array.from({ length: n }, (_, i) => (i % 3 === 0 ? 0.5 : 1));
  const blocks = gramBlocks(g, n, 128, pre);
  const a = fakeQuantAwq(w.data, n, 128, pre, blocks, "BF16");
  const b = fakeQuantAwqFast(w.data, n, 128, pre, blocks, "BF16");
  let same = 0;
  for (let k = 0; k < a.length; k++) if (a[k] === b[k]) same++;
  expect(same / a.length).toBeGreaterThan(0.99);
});

test("the full-row clip never has a larger row output error than the per-group clip; one group per row: the same choice", () => {
  const w = runner.w.get("transformer.layers.1.mlp.proj.weight")!;
  const n = w.shape[1]!;
  // a Gram with correlated channels (a shared component, a few large ones), from a fixed LCG
  let seed = 7;
  const rnd = () => ((seed = (seed * 1103515245 + 12345) % 2147483648) / 2147483648 - 0.5);
  const T = 300;
  const x = new Float64Array(T * n);
  for (let t = 0; t < T; t++) {
    const c = rnd();
    for (let i = 0; i < n; i++) x[t * n + i] = rnd() + c + (i % 97 === 0 ? 4 * rnd() : 0);
  }
  const gram = new Float64Array(n * n);
  for (let t = 0; t < T; t++) for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) gram[i * n + j] = gram[i * n + j]! + x[t * n + i]! * x[t * n + j]!;
  const st = { gram };
  const pre = Float32Array.from({ length: n }, (_, i) => (i % 5 === 0 ? 0.5 : 1));
  const sg = smoothedGramSlice(st.gram!, n, 0, n, pre);
  const rowErr = (q: Float32Array) => {
    let e = 0;
    const d = new Float64Array(n);
    for (let o = 0; o < 64; o++) {
      for (let i = 0; i < n; i++) d[i] = f32(w.data[o * n + i]! / pre[i]!) - f32(q[o * n + i]! / pre[i]!);
      for (let i = 0; i < n; i++) for (let j = 0; j < n; j++) e += d[i]! * sg[i * n + j]! * d[j]!;
    }
    return e;
  };
  const rows = w.data.subarray(0, 64 * n);
  const full = fakeQuantAwq(rows, n, 128, pre, undefined, "BF16", sg);
  const blocks = fakeQuantAwq(rows, n, 128, pre, gramBlocks(st.gram!, n, 128, pre), "BF16");
  const [ef, eb] = [rowErr(full), rowErr(blocks)];
  expect(ef).toBeLessThan(eb); // on this Gram the cross-group terms change some choices
  // 128 inputs, group 128: one group, nothing to descend over
  const one = rows.subarray(0, 8 * 128);
  const sg1 = smoothedGramSlice(st.gram!, n, 0, 128, pre);
  expect(Array.from(fakeQuantAwq(one, 128, 128, pre, undefined, "BF16", sg1))).toEqual(Array.from(fakeQuantAwq(one, 128, 128, pre, gramBlocks(sg1, 128, 128, undefined), "BF16")));
});
