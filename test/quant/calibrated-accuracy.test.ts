/**
 * Accuracy of the calibrated formats on tiny-pycode with evaluate() (ppl and KL(bf16‖format)),
 * calibrating on the first half of heldout-public.py.txt (up to the first line break after half its
 * characters; 8 chunks × 128 tokens) and evaluating on the second half (disjoint; 4 windows × 128).
 *
 * Measured (this split, CPU runner, 2026-12; bench/calib.ts gives the bigger run: 16 × 128
 * calibration, 16 windows):       small (this test)        bench (16 × 128, 16 windows)
 *   FP8 per tensor     KL         8.85e-3                  9.28e-3  (Δppl +0.091)
 *   INT8 KV cache      KL         4.75e-3                  4.41e-3  (Δppl +0.035)
 *   FP8 KV cache       KL         4.20e-3                  3.17e-3  (Δppl −0.021)
 *   int4 g128 RTN      KL         9.83e-2                  9.30e-2  (Δppl +0.695)
 *   int4 g128 AWQ      KL         8.47e-2 (grid 10, clip)  7.40e-2  (Δppl +0.672, grid 20, clip)   one pass
 *   int4 g128 AWQ      KL         7.00e-2 (grid 10, full-row clip)                                   layer by layer (default)
 *   W8A8 unsmoothed    KL                                  9.72e-2  (Δppl +1.100)
 *   W8A8 SmoothQuant   KL                                  1.04e-2  (Δppl +0.165, α 0.5; α 0.8: 6.66e-3, +0.090)
 *   W4A8_AWQ g128      KL                                  8.65e-2  (Δppl +0.658, grid 10)
 * The goal for AWQ (at most half RTN's ppl increase) is NOT met on this model: the search
 * lowers KL by 14–29 %; on 128 windows (bench/awq.ts) AWQ's Δppl is 0.60–0.78 of RTN's, and on 16
 * or 4 windows Δppl is too noisy to rank the variants. The test holds what is measured.
 */
import { beforeAll, expect, test } from "bun:test";
import { join } from "node:path";
import { evaluate, type EvalResult } from "../../src/eval.ts";
import type { CalibStats } from "../../src/quant/calib-plan.ts";
import { quantize, type QuantizeOptions } from "../../src/quantize.ts";
import { tempDir } from "../helpers.ts";
import { TINY_PYCODE, tinyPycodeHalves } from "./_tiny.ts";

const MODEL = TINY_PYCODE;
/** The goals. */
const FP8_KL_MAX = 0.01;
const KV_KL_MAX = 0.01;
/** AWQ layer by layer (the default: block loss, joint clip, full-row clip) KL / RTN KL at g128 (measured 0.712 here: 6.995e-2 / 9.826e-2; 0.794 with the per-group clip). */
const AWQ_KL_RATIO_MAX = 0.74;
/*
 * No Δppl bound here: on 4 windows the ppl increase is mostly noise (measured: RTN +0.554; layer by
 * layer, block loss + joint clip +0.306, KL ratio 0.79 with the per-group clip, +0.916, KL ratio 0.71
 * with the full-row clip; the same with the linear loss +0.597, 0.78; one pass +0.638, 0.86).
 * bench/awq.ts measures Δppl on 128 windows.
 */
/** AWQ one pass KL / RTN KL at g128 (measured 0.862 here, 0.80 on the bench run). */
const AWQ_ONEPASS_KL_RATIO_MAX = 0.92;
/** SmoothQuant KL / unsmoothed W8A8 KL (measured 0.11 on the bench run). */
const SQ_KL_RATIO_MAX = 0.3;

const work = tempDir();
let stats: CalibStats;
let bf16 = "";
let evalTxt = "";

beforeAll(async () => {
  ({ stats, bf16, evalTxt } = await tinyPycodeHalves(work.path, true));
}, 300_000);

async function run(q: Record<string, unknown>, o: QuantizeOptions = {}): Promise<EvalResult> {
  const out = join(work.path, "q");
  await quantize(MODEL, out, q, { calibStats: stats, awqGrid: 10, ...o });
  return await evaluate({ model: out, reference: bf16, data: evalTxt, window: 128, maxWindows: 4 });
}
const kl = async (q: Record<string, unknown>, o: QuantizeOptions = {}) => (await run(q, o)).kl!.mean;

test("FP8 per tensor and INT8 / FP8 KV cache stay within KL 0.01", async () => {
  expect(await kl({ quant_algo: "FP8" })).toBeLessThanOrEqual(FP8_KL_MAX);
  expect(await kl({ kv_cache_quant_algo: "INT8" })).toBeLessThanOrEqual(KV_KL_MAX);
  expect(await kl({ kv_cache_quant_algo: "FP8" })).toBeLessThanOrEqual(KV_KL_MAX);
}, 300_000);

test("SmoothQuant W8A8 beats the same W8A8 without smoothing", async () => {
  const plain = await kl({ quant_algo: "W8A8_SQ_PER_CHANNEL" }, { noSmoothing: true });
  const sq = await kl({ quant_algo: "W8A8_SQ_PER_CHANNEL", smoothquant_val: 0.5 });
  expect(sq).toBeLessThan(plain * SQ_KL_RATIO_MAX);
}, 300_000);

test("AWQ int4 g128 (layer by layer, the default; and one pass) beats round-to-nearest at the same group size", async () => {
  const q = { quant_algo: "W4A16_AWQ", group_size: 128 };
  const rtn = await run(q, { calibStats: undefined });
  const seq = await run(q);
  const one = await run(q, { awqMode: "onepass" });
  const inc = (e: EvalResult) => e.ppl - e.referencePpl!;
  console.log(`AWQ g128 (4 windows): bf16 ppl ${rtn.referencePpl!.toFixed(4)}; RTN Δppl ${inc(rtn).toFixed(4)} KL ${rtn.kl!.mean.toExponential(3)}; ` +
    `layer by layer Δppl ${inc(seq).toFixed(4)} KL ${seq.kl!.mean.toExponential(3)}; one pass Δppl ${inc(one).toFixed(4)} KL ${one.kl!.mean.toExponential(3)}`);
  expect(seq.kl!.mean).toBeLessThan(rtn.kl!.mean * AWQ_KL_RATIO_MAX);
  expect(seq.kl!.mean).toBeLessThan(one.kl!.mean); // here the layer-by-layer search beats the one-pass one (8.47e-2)
  expect(one.kl!.mean).toBeLessThan(rtn.kl!.mean * AWQ_ONEPASS_KL_RATIO_MAX);
}, 900_000);
