/**
 * FP8 (per tensor, rowwise), SmoothQuant W8A8 (modelopt's, the legacy plugin variants) and AWQ engines on the GPU: tiny-pycode (a trained Llama) quantized with `quantize
 * --qformat fp8` on its held-out text → trtllm-build (FP8 sites tuned on this GPU) → the GPU
 * runtime, against the CPU runner on the same checkpoint (which simulates FP8 activations) and the
 * bf16 model. Tolerances as in gpu-emulated.test.ts (the same program on the CPU emulation):
 * exact numerics within FP8 rounding of the CPU runner (greedy identical), fast numerics as close
 * to the bf16 model as FP8 itself is. Skipped where the engine library or a GPU is missing (CI).
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { buildCheckpoint } from "../../src/builder/checkpoint.ts";
import { convertCheckpoint } from "../../src/convert.ts";
import { quantize, type QuantizeOptions } from "../../src/quantize.ts";
import { loadCpuRunner } from "../../src/runtime/index.ts";
import type { CpuRunner } from "../../src/runtime/cpu.ts";
import { GpuModelRunner } from "../../src/runtime/gpu/runner.ts";
import { loadTokenizer } from "../../src/text/index.ts";
import { relMaxErr, SHARED, tempDir } from "../helpers.ts";
import { FP8_EXACT_KL_FRACTION, FP8_FAST_KL_RATIO, GPU_EXACT_REL_TOL, GPU_LOGITS_REL_TOL, INT8_EXACT_KL_FRACTION, meanKl } from "./_gpu-tol.ts";
import { gpuOrSkip } from "./_gpu.ts";

const gpu = gpuOrSkip("test/runtime/gpu-fp8.test.ts");

const MODEL = join(SHARED, "models/tiny-pycode");
const work = tempDir("trtb-gpu-fp8-");
afterAll(() => work[Symbol.dispose]());

describe.skipIf(!gpu)("GPU engine: FP8 per tensor and SmoothQuant W8A8 (tiny-pycode)", () => {
  let cpu8: CpuRunner, cpu16: CpuRunner, prompts: number[][];
  const eng = join(work.path, "eng");
  beforeAll(async () => {
    const text = readFileSync(join(MODEL, "heldout-public.py.txt"), "utf8");
    writeFileSync(join(work.path, "calib.txt"), text.slice(0, 60000));
    await quantize(MODEL, join(work.path, "fp8"), { quant_algo: "FP8" }, { calibDataset: join(work.path, "calib.txt"), calibSize: 16, calibMaxSeqLength: 256 });
    await convertCheckpoint({ modelDir: MODEL, outputDir: join(work.path, "bf16") });
    await buildCheckpoint({ checkpointDir: join(work.path, "fp8"), outputDir: eng, buildConfig: { max_num_tokens: 256, max_batch_size: 8 } });
    cpu8 = await loadCpuRunner(join(work.path, "fp8"));
    cpu16 = await loadCpuRunner(join(work.path, "bf16"));
    const ids = loadTokenizer(MODEL).encode(text.slice(70000, 90000));
    prompts = [ids.slice(0, 40), ids.slice(500, 700), ids.slice(1000, 1012)];
  }, 300_000);

  test("exact numerics: within FP8 rounding of the CPU runner; greedy identical (prefill and graph decode)", async () => {
    using r = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096, numerics: "exact" });
    const V = cpu8.cfg.vocab_size;
    const lg = r.forwardLogits(prompts);
    prompts.forEach((p, i) => {
      const ref8 = cpu8.forward(p);
      const ref16 = cpu16.forward(p);
      const kl = meanKl(ref8, lg[i]!, V);
      const klFp8 = meanKl(ref16, ref8, V);
      console.log(`fp8 exact, prompt ${i} (${p.length} tokens): KL(cpu ‖ engine) ${kl.toExponential(3)}, max rel ${relMaxErr(lg[i]!, ref8).toExponential(3)}; KL(bf16 ‖ cpu fp8) ${klFp8.toExponential(3)}`);
      expect(kl).toBeLessThan(FP8_EXACT_KL_FRACTION * klFp8);
    });
    const g = r.generate([prompts[0]!, prompts[2]!], { maxNewTokens: 16 });
    expect(g.outputIds[0]).toEqual(cpu8.greedy(prompts[0]!, 16));
    expect(g.outputIds[1]).toEqual(cpu8.greedy(prompts[2]!, 16));
  }, 120_000);

  test("fast numerics: as close to the bf16 model as the CPU runner's FP8 is", async () => {
    using r = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096 });
    const V = cpu8.cfg.vocab_size;
    const lg = r.forwardLogits(prompts);
    prompts.forEach((p, i) => {
      const ref16 = cpu16.forward(p);
      const klEng = meanKl(ref16, lg[i]!, V);
      const klCpu = meanKl(ref16, cpu8.forward(p), V);
      console.log(`fp8 fast, prompt ${i}: KL(bf16 ‖ engine) ${klEng.toExponential(3)}, KL(bf16 ‖ cpu fp8) ${klCpu.toExponential(3)}`);
      expect(klEng).toBeLessThan(FP8_FAST_KL_RATIO * klCpu);
    });
    const g = r.generate([prompts[0]!], { maxNewTokens: 16 });
    const ref = cpu8.greedy(prompts[0]!, 16);
    console.log(`fp8 fast greedy identical to the CPU runner: ${g.outputIds[0]!.join() === ref.join()}`);
  }, 120_000);

  /** tiny-pycode quantized with `quant` on the held-out calibration text, built in work/eng-<tag>. */
  async function calibratedEngine(tag: string, quant: Record<string, unknown>, opts: Partial<QuantizeOptions>) {
    const ckpt = join(work.path, tag);
    const eng = join(work.path, `eng-${tag}`);
    await quantize(MODEL, ckpt, quant, { calibDataset: join(work.path, "calib.txt"), ...opts });
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, buildConfig: { max_num_tokens: 256, max_batch_size: 8 } });
    return { cpu: await loadCpuRunner(ckpt), eng };
  }
  const runner = (eng: string, numerics: "exact" | "fast") => GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096, numerics });
  /**
   * Per prompt: exact numerics within `exactFraction` of the format's own KL from bf16 (activation
   * rounding flips), fast numerics within FP8_FAST_KL_RATIO of it.
   */
  function expectKlBounds(tag: string, cpu: CpuRunner, ex: GpuModelRunner, fast: GpuModelRunner, exactFraction: number) {
    const V = cpu.cfg.vocab_size;
    const le = ex.forwardLogits(prompts);
    const lf = fast.forwardLogits(prompts);
    prompts.forEach((p, i) => {
      const ref = cpu.forward(p);
      const ref16 = cpu16.forward(p);
      const klQ = meanKl(ref16, ref, V);
      const klE = meanKl(ref, le[i]!, V);
      const klF = meanKl(ref16, lf[i]!, V);
      console.log(`${tag} prompt ${i}: exact KL(cpu ‖ engine) ${klE.toExponential(3)} (max rel ${relMaxErr(le[i]!, ref).toExponential(3)}); fast KL(bf16 ‖ engine) ${klF.toExponential(3)}; KL(bf16 ‖ cpu ${tag}) ${klQ.toExponential(3)}`);
      expect(klE).toBeLessThan(exactFraction * klQ);
      expect(klF).toBeLessThan(FP8_FAST_KL_RATIO * klQ);
    });
  }

  test("SmoothQuant W8A8 (int8_sq): exact within int8 rounding of the CPU runner, fast as close to bf16 as SQ is", async () => {
    const { cpu, eng } = await calibratedEngine("sq", { quant_algo: "W8A8_SQ_PER_CHANNEL" }, { calibSize: 16, calibMaxSeqLength: 256 });
    using ex = await runner(eng, "exact");
    using fast = await runner(eng, "fast");
    expectKlBounds("sq", cpu, ex, fast, INT8_EXACT_KL_FRACTION);
    expect(ex.generate([prompts[0]!], { maxNewTokens: 16 }).outputIds[0]).toEqual(cpu.greedy(prompts[0]!, 16));
  }, 180_000);

  test("W4A16_AWQ (int4_awq, calibrated): exact numerics match the CPU runner, fast within bf16 rounding of it", async () => {
    const { cpu, eng } = await calibratedEngine("awq", { quant_algo: "W4A16_AWQ", group_size: 128 }, { calibSize: 8, calibMaxSeqLength: 128, awqMode: "onepass" });
    using ex = await runner(eng, "exact");
    using fast = await runner(eng, "fast");
    const V = cpu.cfg.vocab_size;
    expect(ex.plan.model.weight_only).toEqual({ algo: "W4A16_AWQ", bits: 4, group_size: 128 });
    const le = ex.forwardLogits(prompts);
    const lf = fast.forwardLogits(prompts);
    prompts.forEach((p, i) => {
      const ref = cpu.forward(p);
      const ref16 = cpu16.forward(p);
      const errE = relMaxErr(le[i]!, ref);
      const errF = relMaxErr(lf[i]!, ref);
      console.log(`awq prompt ${i} (${p.length} tokens): exact max rel ${errE.toExponential(3)}, fast max rel ${errF.toExponential(3)}; KL(bf16 ‖ engine fast) ${meanKl(ref16, lf[i]!, V).toExponential(3)}, KL(bf16 ‖ cpu awq) ${meanKl(ref16, ref, V).toExponential(3)}`);
      expect(errE).toBeLessThan(GPU_EXACT_REL_TOL);
      expect(errF).toBeLessThan(GPU_LOGITS_REL_TOL);
    });
    const g = ex.generate([prompts[0]!, prompts[2]!], { maxNewTokens: 16 });
    expect(g.outputIds[0]).toEqual(cpu.greedy(prompts[0]!, 16));
    expect(g.outputIds[1]).toEqual(cpu.greedy(prompts[2]!, 16));
  }, 180_000);

  test("W4A8_AWQ (w4a8_awq, calibrated): FP8 GEMMs over the expanded int4 weights; exact within FP8 rounding of the CPU runner, fast as close to bf16 as W4A8 is", async () => {
    const { cpu, eng } = await calibratedEngine("w4a8", { quant_algo: "W4A8_AWQ", group_size: 128 }, { calibSize: 8, calibMaxSeqLength: 128, awqMode: "onepass" });
    using ex = await runner(eng, "exact");
    using fast = await runner(eng, "fast");
    expectKlBounds("w4a8", cpu, ex, fast, FP8_EXACT_KL_FRACTION);
    expect(ex.generate([prompts[0]!], { maxNewTokens: 16 }).outputIds[0]).toEqual(cpu.greedy(prompts[0]!, 16));
  }, 180_000);

  test("legacy static SmoothQuant (W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN): exact within int8 rounding of the CPU runner", async () => {
    const { cpu, eng } = await calibratedEngine("sqp", { quant_algo: "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN", smoothquant_val: 0.5 }, { calibSize: 16, calibMaxSeqLength: 256 });
    using ex = await runner(eng, "exact");
    using fast = await runner(eng, "fast");
    expectKlBounds("sq plugin", cpu, ex, fast, INT8_EXACT_KL_FRACTION);
  }, 180_000);

  // per-token activations (ACT_ROWQ): SmoothQuant's per-token plugin variants and FP8 rowwise (no calibration)
  for (const [tag, quant, frac] of [
    ["sq per-token", { quant_algo: "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN", smoothquant_val: 0.5 }, INT8_EXACT_KL_FRACTION],
    ["sq per-tensor per-token", { quant_algo: "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN", smoothquant_val: 0.5 }, INT8_EXACT_KL_FRACTION],
    ["fp8 rowwise", { quant_algo: "FP8_PER_CHANNEL_PER_TOKEN" }, FP8_EXACT_KL_FRACTION],
  ] as const)
    test(`per-token activations, ${tag}: exact within rounding of the CPU runner, fast as close to bf16 as the format is`, async () => {
      const { cpu, eng } = await calibratedEngine(tag.replaceAll(" ", "-"), quant, { calibSize: 16, calibMaxSeqLength: 256 });
      using ex = await runner(eng, "exact");
      using fast = await runner(eng, "fast");
      expect(ex.plan.model.rowwise?.algo).toBe(quant.quant_algo.startsWith("FP8") ? "FP8" : "INT8");
      expectKlBounds(tag, cpu, ex, fast, frac);
    }, 180_000);

  test("FP8 weights with an FP8 KV cache: exact numerics within FP8 rounding of the CPU runner (quant-sim)", async () => {
    const ckpt = join(work.path, "fp8-kv");
    const e = join(work.path, "eng-kv");
    await quantize(MODEL, ckpt, { quant_algo: "FP8", kv_cache_quant_algo: "FP8" }, { calibDataset: join(work.path, "calib.txt"), calibSize: 16, calibMaxSeqLength: 256 });
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: e, buildConfig: { max_num_tokens: 256, max_batch_size: 8 } });
    const cpu = await loadCpuRunner(ckpt);
    using r = await GpuModelRunner.fromDir(e, { maxBatchSize: 4, maxKvTokens: 4096, numerics: "exact" });
    expect(r.plan.model.kv_cache?.algo).toBe("FP8");
    const V = cpu.cfg.vocab_size;
    const lg = r.forwardLogits(prompts);
    prompts.forEach((p, i) => {
      const ref = cpu.forward(p);
      const kl = meanKl(ref, lg[i]!, V);
      const klQ = meanKl(cpu16.forward(p), ref, V);
      console.log(`fp8 + fp8 kv exact, prompt ${i}: KL(cpu ‖ engine) ${kl.toExponential(3)}; KL(bf16 ‖ cpu) ${klQ.toExponential(3)}`);
      expect(kl).toBeLessThan(FP8_EXACT_KL_FRACTION * klQ);
    });
    const g = r.generate([prompts[0]!], { maxNewTokens: 16 });
    expect(g.outputIds[0]).toEqual(cpu.greedy(prompts[0]!, 16));
  }, 180_000);
});
