/**
 * Accuracy of quantized checkpoints: the CPU runner's logits on each fixture's reference inputs vs
 * transformers' fp32 logits, as relative RMS error ‖Δ‖/‖ref‖ (worst batch row, tp = 1 and 2).
 *
 * Budgets were set from measurements (2026-11, the fixtures' random tiny models: hidden 128, so int4
 * noise is large) at about 1.2× the worst measured value, and each budget must stay below what a
 * layout bug produces: the second half of this file writes checkpoints with swapped nibbles or
 * transposed / reversed scales and requires them to fail the same budget.
 *
 * Measured (tp=1 / tp=2):            llama          qwen2          mixtral        gemma
 *   W8A16  (int8_wo)                 .0186/.0165    .0193/.0187    .0166/.0169    .0060/.0059
 *   W4A16  (int4_wo)                 .303/.297      .312/.296      .327/.315      .087/.092
 *   W4A16_AWQ (int4_awq_rtn, g64)    .295/.295      .294/.294      .291/.291      .090/.090
 *   FP8 rowwise                      .050/.046      .044/.043      (refused)      .017/.017
 * Layout bugs (AWQ): swapped nibbles .68–1.43, scales transposed .20–.70; (FP8) scales reversed .14–.33.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync } from "node:fs";
import { join } from "node:path";
import type { QuantAlgo } from "../../src/format/checkpoint-config.ts";
import type { DType } from "../../src/dtype.ts";
import { SafetensorsWriter } from "../../src/format/safetensors.ts";
import { Mapping } from "../../src/mapping.ts";
import { quantize } from "../../src/quantize.ts";
import { loadCpuRunner } from "../../src/runtime/index.ts";
import { asF32, asI32, fixture, type RawTensor, readRaw, tempDir } from "../helpers.ts";

type Family = "llama" | "qwen2" | "mixtral" | "gemma";

/**
 * Relative RMS error budgets of the logits, per scheme and family. FP8 rowwise includes the runner's
 * per-token e4m3 quantization of the MLP inputs (measured llama 0.0610, qwen2 < 0.055, gemma
 * 0.0240; weights alone gave ≤ 0.06 / 0.055 / 0.021).
 */
export const LOGITS_RMS_BUDGET: Record<QuantAlgo & ("W8A16" | "W4A16" | "W4A16_AWQ" | "FP8_PER_CHANNEL_PER_TOKEN"), Partial<Record<Family, number>>> = {
  W8A16: { llama: 0.023, qwen2: 0.024, mixtral: 0.021, gemma: 0.0075 },
  W4A16: { llama: 0.37, qwen2: 0.38, mixtral: 0.4, gemma: 0.11 },
  W4A16_AWQ: { llama: 0.36, qwen2: 0.36, mixtral: 0.36, gemma: 0.11 },
  FP8_PER_CHANNEL_PER_TOKEN: { llama: 0.065, qwen2: 0.055, gemma: 0.026 },
};
/** AWQ group size used for the measurements. */
const GROUP = 64;

function relRms(got: Float32Array, ref: Float32Array): number {
  let d = 0;
  let r = 0;
  for (let i = 0; i < ref.length; i++) {
    d += (got[i]! - ref[i]!) ** 2;
    r += ref[i]! ** 2;
  }
  return Math.sqrt(d / r);
}

async function logitsError(dir: string, family: Family): Promise<number> {
  const ref = readRaw(join(fixture(family), "reference.safetensors"));
  const ids = asI32(ref.get("input_ids")!);
  const [B, S] = ref.get("input_ids")!.shape as [number, number];
  const logits = asF32(ref.get("logits")!);
  const V = ref.get("logits")!.shape[2]!;
  const runner = await loadCpuRunner(dir);
  let worst = 0;
  for (let b = 0; b < B; b++)
    worst = Math.max(worst, relRms(runner.forward(Array.from(ids.subarray(b * S, (b + 1) * S))), logits.subarray(b * S * V, (b + 1) * S * V)));
  return worst;
}

describe("quantized logits stay within their budgets", () => {
  for (const [algo, perFamily] of Object.entries(LOGITS_RMS_BUDGET))
    for (const [family, budget] of Object.entries(perFamily))
      for (const tp of [1, 2]) {
        test(`${algo} ${family} tp=${tp}: relative RMS ≤ ${budget}`, async () => {
          using out = tempDir();
          await quantize(fixture(family), out.path, { quant_algo: algo as QuantAlgo, group_size: GROUP }, { mapping: new Mapping({ tpSize: tp }) });
          const err = await logitsError(out.path, family as Family);
          expect(err).toBeLessThanOrEqual(budget);
          expect(err).toBeGreaterThan(1e-3); // something was quantized (the fp conversion measures ~6e-7)
        });
      }
});

// ---------------------------------------------------------------------------------------------
// The budgets catch layout bugs: corrupt a correct checkpoint the way a writer bug would, and
// require the runner's error to exceed the budget.

function rewriteRanks(dir: string, fn: (name: string, t: RawTensor) => RawTensor): void {
  for (const f of readdirSync(dir).filter((x) => x.endsWith(".safetensors"))) {
    const file = join(dir, f);
    const tensors = [...readRaw(file)].map(([name, t]) => [name, fn(name, t)] as const);
    const w = SafetensorsWriter.create(file, tensors.map(([name, t]) => ({ name, dtype: t.dtype as DType, shape: t.shape })));
    for (const [name, t] of tensors) w.write(name, t.bytes);
    w.commit();
  }
}

const swapNibbles = (n: string, t: RawTensor): RawTensor =>
  n.endsWith(".weight") && t.dtype === "I8" ? { ...t, bytes: t.bytes.map((b) => ((b >> 4) | (b << 4)) & 0xff) } : t;

/** Scales written as [in/group, out] but labelled [out, in/group] (the transposed-scale bug). */
const transposeScales = (n: string, t: RawTensor): RawTensor => {
  if (!n.endsWith(".weights_scaling_factor")) return t;
  const [R, C] = t.shape as [number, number];
  const es = t.bytes.length / (R * C);
  const out = new Uint8Array(t.bytes.length);
  for (let r = 0; r < R; r++) for (let c = 0; c < C; c++) out.set(t.bytes.subarray((r * C + c) * es, (r * C + c + 1) * es), (c * R + r) * es);
  return { ...t, bytes: out };
};

/** Per-channel scales in reverse row order (a wrong row mapping). */
const reverseScales = (n: string, t: RawTensor): RawTensor => {
  if (!n.endsWith(".per_channel_scale")) return t;
  const rows = t.shape[0]!;
  const out = new Uint8Array(t.bytes.length);
  for (let r = 0; r < rows; r++) out.set(t.bytes.subarray((rows - 1 - r) * 4, (rows - r) * 4), r * 4);
  return { ...t, bytes: out };
};

describe("a layout bug fails the budget", () => {
  const cases: [QuantAlgo & keyof typeof LOGITS_RMS_BUDGET, string, (n: string, t: RawTensor) => RawTensor][] = [
    ["W4A16_AWQ", "swapped nibbles", swapNibbles],
    ["W4A16_AWQ", "transposed scales", transposeScales],
    ["FP8_PER_CHANNEL_PER_TOKEN", "reversed per-channel scales", reverseScales],
  ];
  for (const [algo, what, fn] of cases)
    for (const family of ["llama", "gemma"] as const)
      test(`${algo} ${family}: ${what}`, async () => {
        using out = tempDir();
        await quantize(fixture(family), out.path, { quant_algo: algo, group_size: GROUP }, { mapping: new Mapping({ tpSize: 2 }) });
        rewriteRanks(out.path, fn);
        expect(await logitsError(out.path, family)).toBeGreaterThan(LOGITS_RMS_BUDGET[algo][family]! * 1.5);
      });
});
