/**
 * Quantized KV cache engines on the build side (fake backend): a checkpoint with
 * kv_cache_quant_algo INT8 / FP8 (alone or with weight-only W8A16 / W4A16) builds, the plan
 * carries one scale per local layer (`model.kv_cache`), and a missing or bad
 * `kv_cache_scaling_factor` fails with a clear code. The runtime side: gpu-emulated.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fakeBackend } from "../../src/builder/backend.ts";
import { buildCheckpoint } from "../../src/builder/checkpoint.ts";
import { describeKvCache } from "../../src/builder/describe.ts";
import { Engine } from "../../src/engine/engine.ts";
import { ENGINE_FORMAT_VERSION } from "../../src/engine/plan.ts";
import type { ErrorCode } from "../../src/errors.ts";
import { serializeSafetensors } from "../../src/format/safetensors-writer.ts";
import { quantize } from "../../src/quantize.ts";
import { asF32, expectCodeAsync, fixture, readRaw, type RawTensor, tempDir } from "../helpers.ts";

const CALIB = { calibDataset: "random", calibSize: 2, calibMaxSeqLength: 16 } as const;
const SCALE = (i: number) => `transformer.layers.${i}.attention.kv_cache_scaling_factor`;

function writeRank(file: string, tensors: Map<string, RawTensor>): void {
  writeFileSync(file, serializeSafetensors([...tensors].map(([name, t]) => ({ name, dtype: t.dtype as "F32", shape: t.shape, data: t.bytes }))));
}

describe("quantized KV cache engines (build)", () => {
  for (const [algo, wq] of [["INT8", null], ["FP8", null], ["FP8", "W8A16"], ["INT8", "W4A16"]] as const)
    test(`kv_cache_quant_algo ${algo}${wq ? ` with ${wq}` : ""} builds; the plan carries the per-layer scales`, async () => {
      using t = tempDir();
      const ckpt = join(t.path, "ckpt");
      const out = join(t.path, "eng");
      await quantize(fixture("llama"), ckpt, { kv_cache_quant_algo: algo, ...(wq ? { quant_algo: wq } : {}) }, CALIB);
      await buildCheckpoint({ checkpointDir: ckpt, outputDir: out, backend: fakeBackend(), buildConfig: { max_num_tokens: 32, max_batch_size: 2 } });
      const plan = (await Engine.fromDir(out, 0)).plan;
      expect(ENGINE_FORMAT_VERSION).toBeGreaterThanOrEqual(3); // the quantized KV cache arrived in version 3
      expect(plan.format_version).toBe(ENGINE_FORMAT_VERSION);
      const q = readRaw(join(ckpt, "rank0.safetensors"));
      const want = plan.model.layers.map((_, i) => asF32(q.get(SCALE(i))!)[0]!);
      expect(want.every((s) => s > 0)).toBe(true);
      expect(plan.model.kv_cache).toEqual({ algo, scales: want });
      expect(plan.model.weight_only?.algo ?? null).toBe(wq);
      // the scales are plan data, not engine tensors
      expect(plan.tensors.some((x) => x.name.includes("kv_cache_scaling_factor"))).toBe(false);
    });

  test("unquantized checkpoints: kv_cache null", async () => {
    using t = tempDir();
    const ckpt = join(t.path, "ckpt");
    const out = join(t.path, "eng");
    await quantize(fixture("llama"), ckpt, { quant_algo: "W8A16" });
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: out, backend: fakeBackend(), buildConfig: { max_num_tokens: 32, max_batch_size: 2 } });
    expect((await Engine.fromDir(out, 0)).plan.model.kv_cache).toBeNull();
    const cfg = JSON.parse(readFileSync(join(ckpt, "config.json"), "utf8"));
    expect(describeKvCache(cfg, 2, () => undefined)).toBeNull();
  });

  test("a missing or bad kv_cache_scaling_factor, or an unbuildable weight format, fails with a clear code", async () => {
    using t = tempDir();
    const ckpt = join(t.path, "ckpt");
    await quantize(fixture("llama"), ckpt, { kv_cache_quant_algo: "INT8" }, CALIB);
    const file = join(ckpt, "rank0.safetensors");
    const good = readRaw(file);
    const f32 = (v: number[]) => new Uint8Array(new Float32Array(v).buffer);
    const cases: [string, (m: Map<string, RawTensor>) => void, ErrorCode, RegExp][] = [
      ["missing", (m) => m.delete(SCALE(1)), "CKPT_MISSING_TENSOR", /layers\.1\.attention\.kv_cache_scaling_factor/],
      ["bf16", (m) => m.set(SCALE(0), { dtype: "BF16", shape: [1], bytes: new Uint8Array([0x80, 0x3c]) }), "CKPT_DTYPE_MISMATCH", /kv_cache_scaling_factor is BF16, expected F32/],
      ["two values", (m) => m.set(SCALE(0), { dtype: "F32", shape: [2], bytes: f32([0.1, 0.2]) }), "CKPT_SHAPE_MISMATCH", /expected \[1\]/],
      ["zero", (m) => m.set(SCALE(1), { dtype: "F32", shape: [1], bytes: f32([0]) }), "CKPT_BAD_VALUE", /finite and > 0/],
      ["negative", (m) => m.set(SCALE(0), { dtype: "F32", shape: [1], bytes: f32([-0.5]) }), "CKPT_BAD_VALUE", /is -0\.5/],
      ["NaN", (m) => m.set(SCALE(0), { dtype: "F32", shape: [1], bytes: f32([NaN]) }), "CKPT_BAD_VALUE", /is NaN/],
      ["inf", (m) => m.set(SCALE(0), { dtype: "F32", shape: [1], bytes: f32([Infinity]) }), "CKPT_BAD_VALUE", /is Infinity/],
    ];
    for (const [, edit, code, msg] of cases) {
      const m = new Map(good);
      edit(m);
      writeRank(file, m);
      await expectCodeAsync(buildCheckpoint({ checkpointDir: ckpt, outputDir: join(t.path, "x"), backend: fakeBackend() }), code, msg);
    }
    writeRank(file, good);
    // a weight format the CUDA backend does not build (GPTQ), with a quantized KV cache
    const cfgPath = join(ckpt, "config.json");
    const cfg = JSON.parse(readFileSync(cfgPath, "utf8"));
    cfg.quantization.quant_algo = "W4A16_GPTQ";
    writeFileSync(cfgPath, JSON.stringify(cfg));
    await expectCodeAsync(buildCheckpoint({ checkpointDir: ckpt, outputDir: join(t.path, "x"), backend: fakeBackend() }), "BUILD_UNSUPPORTED", /quant_algo W4A16_GPTQ, kv_cache_quant_algo INT8/);
  });
});
