/**
 * The legacy converter's SmoothQuant plugin layout (spec §3.6; upstream get_tllm_linear_sq_weight /
 * generate_int8 / smooth_llama_model) on tiny-pycode (hidden 256, 4 heads, 2 KV heads) at tp 1, tp 2
 * and pp 2, for all four variants. Every stored value is rebuilt here from the fp checkpoint of
 * the same mapping (the raw source, split), the full model's weights and one calibration pass:
 *   s      = max(max|x|^α / max|W_col|^(1−α), 1e-5) over the group (qkv; dense; fc+gate; proj),
 *            pre = bf16(1/s) (the factor int8_sq stores as prequant_scaling_factor)
 *   norms  input_layernorm.weight = bf16(g·pre_qkv), post_layernorm.weight = bf16(g·pre_fc), scale_to_int [1] = 1
 *   W'     = W / pre; amax per row (per channel; dense/proj: the full row) or per tensor (qkv: the
 *            full q, k and v parts each; others: the full weight)
 *   weight = clamp(RNE(W'·f32(127/amax)), ±127), per_channel_scale = f32(1/f32(127/amax)) [1,out] or [1,1]
 *   dense/proj smoother [1, in_local] = f32(1/pre) of the rank's input slice
 * Static variants (no PER_TOKEN), sx = f32(127/max_i f32(max|x_i|·pre_i)), sy = f32(127/max|y|):
 *   per_channel_scale = f32(sy / f32(sx·f32(127/amax))), act_scale [1,1] = f32(max|y|/127) on every linear,
 *   scale_to_int = sx of qkv / fc, attention|mlp.quantization_scaling_factor [1] = sx of dense / proj
 * Calibration: heldout-public.py.txt's first 4 chunks of 64 tokens.
 */
import { beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { convertCheckpoint } from "../../src/convert.ts";
import { Mapping } from "../../src/mapping.ts";
import type { CalibStats } from "../../src/quant/calib-plan.ts";
import { quantize } from "../../src/quantize.ts";
import type { CpuRunner } from "../../src/runtime/cpu.ts";
import { expectCodeAsync, SHARED, readRaw, type RawTensor, tempDir } from "../helpers.ts";
import { decodeFloats, f32, rne, roundTo } from "./_ref.ts";
import { tinyPycodeLayoutStats } from "./_tiny.ts";

const MODEL = join(SHARED, "models/tiny-pycode");
const LINEAR = /^transformer\.layers\.(\d+)\.(attention\.(qkv|dense)|mlp\.(fc|gate|proj))\.weight$/;
const MAPPINGS: [number, number][] = [[1, 1], [2, 1], [1, 2]];
const ALPHA = 0.5;
const Q_W = 4 * 64, KV_W = 2 * 64;

let stats: CalibStats;
let runner: CpuRunner;
const work = tempDir();

beforeAll(async () => {
  ({ stats, runner } = await tinyPycodeLayoutStats(work.path));
});

const fullW = (name: string) => runner.w.get(name)!;
const globalOf = (name: string, layers: number[]) => name.replace(/^transformer\.layers\.(\d+)\./, (_, i) => `transformer.layers.${layers[Number(i)]}.`);
const floats = (t: RawTensor) => Array.from(decodeFloats(t.bytes, t.dtype));

/** bf16(1/s) of a group (SmoothQuant eq. 4 over the group's full weights). */
function preOf(global: string): number[] {
  const group = /mlp\.(fc|gate)$/.test(global) ? ["mlp.fc", "mlp.gate"].map((s) => global.replace(/mlp\.(fc|gate)$/, s)) : [global];
  const st = stats.linears.get(group[0]!)!;
  return Array.from({ length: st.inF }, (_, i) => {
    let wm = 0;
    for (const g of group) { const W = fullW(`${g}.weight`); for (let o = 0; o < W.shape[0]!; o++) wm = Math.max(wm, Math.abs(W.data[o * st.inF + i]!)); }
    const s = Math.max(st.absMax[i]! ** ALPHA / wm ** (1 - ALPHA), 1e-5);
    return roundTo(1 / s, "BF16");
  });
}

async function fpAndQuant(algo: string, tp: number, pp: number) {
  const fp = join(work.path, `fp-${tp}-${pp}`);
  const q = join(work.path, `q-${tp}-${pp}`);
  await convertCheckpoint({ modelDir: MODEL, outputDir: fp, tpSize: tp, ppSize: pp });
  await quantize(MODEL, q, { quant_algo: algo as "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN", smoothquant_val: ALPHA }, { mapping: new Mapping({ tpSize: tp, ppSize: pp }), calibStats: stats });
  const ranks = Array.from({ length: tp * pp }, (_, r) => ({ fp: readRaw(join(fp, `rank${r}.safetensors`)), q: readRaw(join(q, `rank${r}.safetensors`)), tpRank: r % tp, layers: new Mapping({ tpSize: tp, ppSize: pp, rank: r }).ppLayers(6) }));
  return { ranks, config: JSON.parse(readFileSync(join(q, "config.json"), "utf8")) };
}

const VARIANTS = [
  ["W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN", true, true], ["W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN", false, true],
  ["W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN", true, false], ["W8A8_SQ_PER_TENSOR_PLUGIN", false, false],
] as const;
/** sx of a linear: 127 / max|x·pre| over the calibration tokens. */
const sxOf = (global: string, pre: number[]) => {
  const st = stats.linears.get(global)!;
  let m = 0;
  for (let i = 0; i < st.inF; i++) m = Math.max(m, f32(st.absMax[i]! * pre[i]!));
  return f32(127 / m);
};

for (const [algo, perChannel, perToken] of VARIANTS)
  describe(`SmoothQuant plugin ${algo}`, () => {
    for (const [tp, pp] of MAPPINGS)
      test(`tp ${tp} pp ${pp}: folded norms, smoother, int8 weights, ${perChannel ? "per-channel" : "per-tensor"} scales${perToken ? "" : ", static activation scales"}`, async () => {
        const c = await fpAndQuant(algo, tp, pp);
        expect(c.config.quantization).toMatchObject({ quant_algo: algo, smoothquant_val: ALPHA, kv_cache_quant_algo: null });
        let bad = 0;
        let linears = 0;
        for (const r of c.ranks) {
          // exactly the fp names plus the scales, smoothers and scale_to_int
          const want = new Set(r.fp.keys());
          for (const n of r.fp.keys()) {
            const m = LINEAR.exec(n);
            if (m) {
              want.add(n.replace(/weight$/, "per_channel_scale"));
              if (/dense|proj/.test(n)) want.add(n.replace(/weight$/, "smoother"));
              if (!perToken) want.add(n.replace(/weight$/, "act_scale"));
              if (!perToken && /dense|proj/.test(n)) want.add(n.replace(/(attention|mlp)\.(dense|proj)\.weight$/, "$1.quantization_scaling_factor"));
            }
            if (/layernorm\.weight$/.test(n) && n.startsWith("transformer.layers.")) want.add(n.replace(/weight$/, "scale_to_int"));
          }
          expect([...r.q.keys()].sort()).toEqual([...want].sort());
          for (const [name, fpW] of r.fp) {
            const norm = /^(transformer\.layers\.\d+\.)(input|post)_layernorm\.weight$/.exec(name);
            if (norm) {
              const reader = globalOf(`${norm[1]}${norm[2] === "input" ? "attention.qkv" : "mlp.fc"}`, r.layers);
              const pre = preOf(reader);
              const g = floats(fpW);
              const t = r.q.get(name)!;
              expect([t.dtype, t.shape]).toEqual(["BF16", fpW.shape]);
              expect(floats(t)).toEqual(g.map((v, i) => roundTo(f32(v * pre[i]!), "BF16")));
              const s2i = r.q.get(name.replace(/weight$/, "scale_to_int"))!;
              expect([s2i.dtype, s2i.shape, floats(s2i)]).toEqual(["F32", [1], [perToken ? 1 : sxOf(reader, pre)]]);
              continue;
            }
            if (!LINEAR.test(name)) continue;
            linears++;
            const module = name.slice(0, -".weight".length);
            const global = globalOf(module, r.layers);
            const rowParallel = /dense|proj/.test(module);
            const isQkv = /qkv$/.test(module);
            const [out, inL] = fpW.shape as [number, number];
            const pre = preOf(global);
            const inF = pre.length;
            const preL = rowParallel ? pre.slice(r.tpRank * inL, (r.tpRank + 1) * inL) : pre;
            const W = fullW(`${global}.weight`);
            const full = (o: number, i: number) => Math.abs(f32(W.data[o * inF + i]! / pre[i]!));
            const wv = decodeFloats(fpW.bytes, fpW.dtype);
            const local = (o: number, i: number) => f32(wv[o * inL + i]! / preL[i]!);
            // the amax each local row is scaled by
            const amax = new Float64Array(out);
            if (perChannel) {
              for (let o = 0; o < out; o++) {
                let m = 0;
                if (rowParallel) for (let i = 0; i < inF; i++) m = Math.max(m, full(o, i));
                else for (let i = 0; i < inL; i++) m = Math.max(m, Math.abs(local(o, i)));
                amax[o] = m;
              }
            } else if (isQkv) {
              const seg = [0, 0, 0];
              for (let o = 0; o < W.shape[0]!; o++) for (let i = 0; i < inF; i++) { const k = o < Q_W ? 0 : o < Q_W + KV_W ? 1 : 2; seg[k] = Math.max(seg[k]!, full(o, i)); }
              const qL = Q_W / tp, kvL = KV_W / tp;
              for (let o = 0; o < out; o++) amax[o] = seg[o < qL ? 0 : o < qL + kvL ? 1 : 2]!;
            } else {
              let m = 0;
              for (let o = 0; o < W.shape[0]!; o++) for (let i = 0; i < inF; i++) m = Math.max(m, full(o, i));
              amax.fill(m);
            }
            const wq = r.q.get(name)!, pcs = r.q.get(`${module}.per_channel_scale`)!;
            const scaleShape = perChannel || isQkv ? [1, out] : [1, 1];
            expect([wq.dtype, wq.shape, pcs.dtype, pcs.shape]).toEqual(["I8", [out, inL], "F32", scaleShape]);
            const sv = decodeFloats(pcs.bytes, "F32");
            const qv = new Int8Array(wq.bytes.buffer, wq.bytes.byteOffset, wq.bytes.length);
            const sx = sxOf(global, pre);
            const yMax = stats.outAmax!.get(global)!;
            const sy = f32(127 / yMax);
            if (!perToken) {
              const as = r.q.get(`${module}.act_scale`)!;
              expect([as.dtype, as.shape, floats(as)]).toEqual(["F32", [1, 1], [f32(yMax / 127)]]);
              if (rowParallel) {
                const qsf = r.q.get(module.replace(/\.(dense|proj)$/, ".quantization_scaling_factor"))!;
                expect([qsf.dtype, qsf.shape, floats(qsf)]).toEqual(["F32", [1], [sx]]);
              }
            }
            for (let o = 0; o < out; o++) {
              const toInt = f32(127 / amax[o]!);
              if (sv[scaleShape[1] === 1 ? 0 : o] !== (perToken ? f32(1 / toInt) : f32(sy / f32(sx * toInt)))) bad++;
              for (let i = 0; i < inL; i++) if (qv[o * inL + i] !== Math.max(-127, Math.min(127, rne(f32(local(o, i) * toInt))))) bad++;
            }
            if (rowParallel) {
              const sm = r.q.get(`${module}.smoother`)!;
              expect([sm.dtype, sm.shape]).toEqual(["F32", [1, inL]]);
              expect(floats(sm)).toEqual(preL.map((p) => f32(1 / p)));
            }
          }
        }
        expect(linears).toBe(5 * c.ranks.reduce((a, r) => a + r.layers.length, 0));
        expect(bad).toBe(0);
      }, 120_000);
  });

test("static variants without output statistics: QUANT_NEEDS_CALIB naming scale_y", async () => {
  const { outAmax: _, ...noY } = stats;
  await expectCodeAsync(quantize(MODEL, join(work.path, "never"), { quant_algo: "W8A8_SQ_PER_TENSOR_PLUGIN" }, { calibStats: noY }), "QUANT_NEEDS_CALIB", /scale_y/);
});
