/**
 * Calibrated formats against the spec (§3.3, §3.4, §3.7, §3.8, §3.10) on tiny-pycode (a trained
 * Llama, hidden 256) at tp 1, tp 2 and pp 2: names, dtypes, shapes, the config's quantization block,
 * and every stored value rebuilt here from the fp checkpoint of the same mapping (the raw source,
 * split) and the statistics of one calibration pass — never from the quantized output:
 *   FP8     weight = e4m3(W / (amax(W_full)/448)), activation scale = max|x|/448
 *   KV      kv_cache_scaling_factor = max(|k|,|v|)/bound (modelopt) or max(|q|,|k|,|v|)/127 (legacy)
 *   int8_sq pre = 1/(max|x|^α / max|W_col|^(1−α)) in bf16; weight int8 of W/pre per full output row
 *   AWQ     prequant = the search's pre (sliced for row layers), int4 of W/pre by group (clip off here)
 *   W4A8    + weights_scaling_factor_2 = amax(W/pre)/448, activation scale = max|x·pre|/448
 * Calibration: heldout-public.py.txt's first 4 chunks of 64 tokens.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { awqSequentialPlan, planCalibration } from "../../src/calib/index.ts";
import { convertCheckpoint } from "../../src/convert.ts";
import { Mapping } from "../../src/mapping.ts";
import type { CalibStats } from "../../src/quant/calib-plan.ts";
import { quantize } from "../../src/quantize.ts";
import type { CpuRunner } from "../../src/runtime/cpu.ts";
import { SHARED, readRaw, type RawTensor, tempDir } from "../helpers.ts";
import { decodeFloats, f32, nearestE4m3, rne, roundTo, unpackInt4Rows } from "./_ref.ts";
import { tinyPycodeLayoutStats } from "./_tiny.ts";

const MODEL = join(SHARED, "models/tiny-pycode");
const LINEAR = /^transformer\.layers\.(\d+)\.(attention\.(qkv|dense)|mlp\.(fc|gate|proj))\.weight$/;
const MAPPINGS: [number, number][] = [[1, 1], [2, 1], [1, 2]];

let stats: CalibStats;
let runner: CpuRunner;
const work = tempDir();

beforeAll(async () => {
  ({ stats, runner } = await tinyPycodeLayoutStats(work.path, true));
});

async function fpAndQuant(quant: Record<string, unknown>, tp: number, pp: number, extra: Record<string, unknown> = {}) {
  const fp = join(work.path, `fp-${tp}-${pp}`);
  const q = join(work.path, `q-${tp}-${pp}`);
  await convertCheckpoint({ modelDir: MODEL, outputDir: fp, tpSize: tp, ppSize: pp });
  await quantize(MODEL, q, quant, { mapping: new Mapping({ tpSize: tp, ppSize: pp }), calibStats: stats, ...extra });
  const ranks = Array.from({ length: tp * pp }, (_, r) => ({ fp: readRaw(join(fp, `rank${r}.safetensors`)), q: readRaw(join(q, `rank${r}.safetensors`)), tpRank: r % tp, layers: new Mapping({ tpSize: tp, ppSize: pp, rank: r }).ppLayers(6) }));
  return { ranks, config: JSON.parse(readFileSync(join(q, "config.json"), "utf8")) };
}

const fullW = (name: string) => runner.w.get(name)!;
const globalOf = (name: string, layers: number[]) => name.replace(/^transformer\.layers\.(\d+)\./, (_, i) => `transformer.layers.${layers[Number(i)]}.`);
const scalar = (t: RawTensor) => decodeFloats(t.bytes, t.dtype)[0]!;
const maxOf = (v: ArrayLike<number>) => { let m = 0; for (let i = 0; i < v.length; i++) m = Math.max(m, Math.abs(v[i]!)); return m; };
const inputStats = (module: string) => stats.linears.get(module)!;
/** The rank's slice of a full input vector. */
const sliceIn = (v: ArrayLike<number>, rowParallel: boolean, inLocal: number, tpRank: number) => Array.from(rowParallel ? Array.from(v).slice(tpRank * inLocal, (tpRank + 1) * inLocal) : Array.from(v));

function forEachLinear(c: Awaited<ReturnType<typeof fpAndQuant>>, fn: (r: (typeof c.ranks)[number], name: string, module: string, global: string, fpW: RawTensor, rowParallel: boolean) => void) {
  let n = 0;
  for (const r of c.ranks)
    for (const [name, t] of r.fp) {
      if (!LINEAR.test(name)) continue;
      const module = name.slice(0, -".weight".length);
      fn(r, name, module, globalOf(module, r.layers), t, /dense|proj/.test(module));
      n++;
    }
  expect(n).toBe(5 * c.ranks.reduce((a, r) => a + r.layers.length, 0));
}

describe("FP8 per tensor (qformat fp8)", () => {
  for (const [tp, pp] of MAPPINGS)
    test(`tp ${tp} pp ${pp}: e4m3 weights, full-tensor weight scale, calibrated activation scale`, async () => {
      const c = await fpAndQuant({ quant_algo: "FP8" }, tp, pp);
      expect(c.config.quantization).toMatchObject({ quant_algo: "FP8", kv_cache_quant_algo: null });
      let bad = 0;
      forEachLinear(c, (r, name, module, global, fpW) => {
        const w = r.q.get(name)!, ws = r.q.get(`${module}.weights_scaling_factor`)!, as = r.q.get(`${module}.activation_scaling_factor`)!;
        expect([w.dtype, w.shape, ws.dtype, ws.shape, as.dtype, as.shape]).toEqual(["F8_E4M3", fpW.shape, "F32", [1], "F32", [1]]);
        const wsf = f32(maxOf(fullW(`${global}.weight`).data) / 448);
        expect(scalar(ws)).toBe(wsf);
        expect(scalar(as)).toBe(f32(maxOf(inputStats(global).absMax) / 448));
        const v = decodeFloats(fpW.bytes, fpW.dtype);
        for (let i = 0; i < v.length; i++) if (w.bytes[i] !== nearestE4m3(f32(v[i]! / wsf))) bad++;
      });
      expect(bad).toBe(0);
    }, 120_000);
});

describe("KV cache (kv_cache_scaling_factor per layer)", () => {
  for (const [tp, pp] of MAPPINGS)
    for (const [algo, bound, rule] of [["FP8", 448, "kv"], ["INT8", 127, "kv"], ["INT8", 127, "qkv"]] as const)
      test(`tp ${tp} pp ${pp}: ${algo} (${rule} rule), alone and with FP8 weights`, async () => {
        const c = await fpAndQuant({ quant_algo: rule === "kv" && algo === "FP8" ? "FP8" : null, kv_cache_quant_algo: algo }, tp, pp, { kvScaleRule: rule });
        expect(c.config.quantization.kv_cache_quant_algo).toBe(algo);
        for (const r of c.ranks)
          r.layers.forEach((L, i) => {
            const t = r.q.get(`transformer.layers.${i}.attention.kv_cache_scaling_factor`)!;
            expect([t.dtype, t.shape]).toEqual(["F32", [1]]);
            const k = stats.kv[L]!;
            expect(scalar(t)).toBe(f32((rule === "kv" ? Math.max(k.kAmax, k.vAmax) : Math.max(k.qAmax, k.kAmax, k.vAmax)) / bound));
          });
      });
});

describe("SmoothQuant W8A8_SQ_PER_CHANNEL (qformat int8_sq)", () => {
  const ALPHA = 0.5;
  for (const [tp, pp] of MAPPINGS)
    test(`tp ${tp} pp ${pp}: smoothing, int8 per full output row, static activation scale`, async () => {
      const c = await fpAndQuant({ quant_algo: "W8A8_SQ_PER_CHANNEL", smoothquant_val: ALPHA }, tp, pp);
      expect(c.config.quantization).toMatchObject({ quant_algo: "W8A8_SQ_PER_CHANNEL", smoothquant_val: ALPHA });
      let bad = 0;
      forEachLinear(c, (r, name, module, global, fpW, rowParallel) => {
        const [out, inL] = fpW.shape as [number, number];
        const group = /mlp\.(fc|gate)$/.test(global) ? ["mlp.fc", "mlp.gate"].map((s) => global.replace(/mlp\.(fc|gate)$/, s)) : [global];
        const st = inputStats(group[0]!);
        const inF = st.inF;
        const pre = Array.from({ length: inF }, (_, i) => {
          let wm = 0;
          for (const g of group) { const W = fullW(`${g}.weight`); for (let o = 0; o < W.shape[0]!; o++) wm = Math.max(wm, Math.abs(W.data[o * inF + i]!)); }
          const s = Math.max(st.absMax[i]! ** ALPHA / wm ** (1 - ALPHA), 1e-5);
          return roundTo(1 / s, "BF16");
        });
        const W = fullW(`${global}.weight`);
        const wq = r.q.get(name)!, ws = r.q.get(`${module}.weights_scaling_factor`)!, as = r.q.get(`${module}.activation_scaling_factor`)!, pq = r.q.get(`${module}.prequant_scaling_factor`)!;
        expect([wq.dtype, wq.shape, ws.dtype, ws.shape, as.dtype, as.shape, pq.dtype, pq.shape]).toEqual(["I8", [out, inL], "F32", [out], "F32", [1], "BF16", [inL]]);
        const preL = sliceIn(pre, rowParallel, inL, r.tpRank);
        expect(Array.from(decodeFloats(pq.bytes, "BF16"))).toEqual(preL);
        let amaxX = 0;
        for (let i = 0; i < inF; i++) amaxX = Math.max(amaxX, f32(st.absMax[i]! * pre[i]!));
        expect(scalar(as)).toBe(f32(amaxX / 127));
        // per-row scale: the full row of W/pre (row-parallel layers: before the input split)
        const wv = decodeFloats(fpW.bytes, fpW.dtype);
        const sv = decodeFloats(ws.bytes, "F32");
        const qv = new Int8Array(wq.bytes.buffer, wq.bytes.byteOffset, wq.bytes.length);
        for (let o = 0; o < out; o++) {
          let m = 0;
          if (rowParallel) for (let i = 0; i < inF; i++) m = Math.max(m, Math.abs(f32(W.data[o * inF + i]! / pre[i]!)));
          else for (let i = 0; i < inL; i++) m = Math.max(m, Math.abs(f32(wv[o * inL + i]! / preL[i]!)));
          const s = f32(m / 127);
          if (sv[o] !== s) bad++;
          for (let i = 0; i < inL; i++) if (qv[o * inL + i] !== Math.max(-128, Math.min(127, rne(f32(f32(wv[o * inL + i]! / preL[i]!) / s))))) bad++;
        }
      });
      expect(bad).toBe(0);
    }, 120_000);
});

describe("AWQ with calibration (int4_awq, w4a8_awq)", () => {
  const G = 128;
  const cases: ["onepass" | "sequential", "W4A16_AWQ" | "W4A8_AWQ", number, number][] = [
    ...(["W4A16_AWQ", "W4A8_AWQ"] as const).flatMap((algo) => MAPPINGS.map(([tp, pp]) => ["onepass", algo, tp, pp] as ["onepass", typeof algo, number, number])),
    // the layer-by-layer search (the default) changes only the plan: its pre, sliced the same way
    ["sequential", "W4A16_AWQ", 2, 1],
    ["sequential", "W4A8_AWQ", 1, 2],
  ];
  for (const [mode, algo, tp, pp] of cases)
      test(`${algo} (${mode}) tp ${tp} pp ${pp}: searched prequant (shared by qkv and fc/gate), int4 of W/pre by group`, async () => {
        const c = await fpAndQuant({ quant_algo: algo, group_size: G }, tp, pp, { awqClip: false, awqGrid: 2, awqMode: mode });
        expect(c.config.quantization).toMatchObject({ quant_algo: algo, group_size: G, pre_quant_scale: true, has_zero_point: false });
        const opts = { smoothing: "awq", dtype: "BF16", groupSize: G, awqGrid: 2, awqClip: false } as const;
        const seq = mode === "sequential" ? awqSequentialPlan(runner, stats.ids!, stats.describe, opts) : undefined;
        const plan = seq ? seq.plan : planCalibration(runner.w, 6, stats, opts);
        const inputStats = (m: string) => (seq ? seq.stats : stats).linears.get(m)!;
        let bad = 0;
        forEachLinear(c, (r, name, module, global, fpW, rowParallel) => {
          const [out, inL] = fpW.shape as [number, number];
          const p = plan.linears.get(global)!;
          const preL = sliceIn(p.pre ?? new Float32Array(plan.linears.get(global)!.wAmaxPerOut.length ? inputStats(global).inF : 0).fill(1), rowParallel, inL, r.tpRank);
          if (/mlp\.gate$/.test(global)) expect(p.pre).toBe(plan.linears.get(global.replace(/gate$/, "fc"))!.pre);
          const wq = r.q.get(name)!, ws = r.q.get(`${module}.weights_scaling_factor`)!, pq = r.q.get(`${module}.prequant_scaling_factor`)!;
          expect([wq.dtype, wq.shape, ws.dtype, ws.shape, pq.dtype, pq.shape]).toEqual(["I8", [out / 2, inL], "BF16", [out, inL / G], "BF16", [inL]]);
          expect(Array.from(decodeFloats(pq.bytes, "BF16"))).toEqual(preL);
          const wv = decodeFloats(fpW.bytes, fpW.dtype);
          const qv = unpackInt4Rows(wq.bytes, out, inL);
          const sv = decodeFloats(ws.bytes, "BF16");
          for (let o = 0; o < out; o++)
            for (let g = 0; g < inL / G; g++) {
              const x = Array.from({ length: G }, (_, k) => f32(wv[o * inL + g * G + k]! / preL[g * G + k]!));
              const s = roundTo(f32(maxOf(x) / 7), "BF16") || 1;
              if (sv[o * (inL / G) + g] !== s) bad++;
              x.forEach((xv, k) => { if (qv[o * inL + g * G + k] !== Math.max(-8, Math.min(7, rne(f32(xv / s))))) bad++; });
            }
          if (algo === "W4A8_AWQ") {
            const w2 = r.q.get(`${module}.weights_scaling_factor_2`)!, as = r.q.get(`${module}.activation_scaling_factor`)!;
            expect([w2.dtype, w2.shape, as.dtype, as.shape]).toEqual(["F32", [1], "F32", [1]]);
            const W = fullW(`${global}.weight`), st = inputStats(global), pre = p.pre;
            let wa = 0, xa = 0;
            for (let k = 0; k < W.data.length; k++) wa = Math.max(wa, Math.abs(pre ? f32(W.data[k]! / pre[k % st.inF]!) : W.data[k]!));
            for (let i = 0; i < st.inF; i++) xa = Math.max(xa, f32(st.absMax[i]! * (pre ? pre[i]! : 1)));
            expect([scalar(w2), scalar(as)]).toEqual([f32(wa / 448), f32(xa / 448)]);
          }
        });
        expect(bad).toBe(0);
      }, 240_000);
});
