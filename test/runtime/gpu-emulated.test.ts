/**
 * The GPU runtime's orchestration on a CPU emulation of the engine library (test/runtime/_emu.ts):
 * build (fake backend) → engine file → GpuModelRunner → op programs, executed by the emulator.
 * Runs everywhere (CI included): it checks the input layouts, the paged KV cache, prefill tiles
 * and chunking, decode steps and graph replay, MoE grouping, against the fixtures' references and
 * the CPU runner. The kernels themselves are checked on a GPU (gpu-kernels.test.ts).
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fakeBackend } from "../../src/builder/backend.ts";
import { buildCheckpoint } from "../../src/builder/checkpoint.ts";
import { convertCheckpoint } from "../../src/convert.ts";
import { Engine } from "../../src/engine/engine.ts";
import { quantize } from "../../src/quantize.ts";
import { loadCpuRunner } from "../../src/runtime/index.ts";
import { GpuModelRunner } from "../../src/runtime/gpu/runner.ts";
import { asF32, asI32, fixture, readRaw, relMaxErr, SHARED, tempDir } from "../helpers.ts";
import { EMU_INFO, EmuContext } from "./_emu.ts";
import { HEAD_CASES, headCaseCheckpoint, headPrompts } from "./_heads.ts";

const TINY = join(SHARED, "models/tiny-pycode");
/** Fast numerics (bf16 activations into GEMMs, bf16 KV), emulated in f64 math. */
const EMU_LOGITS_REL_TOL = 1e-2;
/**
 * Quantized KV cache, exact numerics, against the CPU runner's quant-sim: the same quantized
 * values (1-byte cache, rules of trtb_quantize) and f32 rounding differences only; a K/V value on
 * a rounding boundary could land one step off, which this still allows.
 */
const KVQ_EXACT_REL_TOL = 1e-4;
/** Quantized KV cache, fast numerics (bf16 activations move K/V before quantization), against quant-sim. */
const KVQ_FAST_REL_TOL = 5e-2;

async function emuEngine(name: string, dir: string): Promise<{ eng: string; ckpt: string }> {
  const ckpt = join(dir, `${name}-ckpt`);
  const eng = join(dir, `${name}-eng`);
  await convertCheckpoint({ modelDir: fixture(name), outputDir: ckpt });
  await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, backend: fakeBackend(), buildConfig: { max_num_tokens: 64, max_batch_size: 4 } });
  return { eng, ckpt };
}

async function emuRunner(eng: string, opts: { maxNumTokens?: number; cudaGraphs?: boolean; numerics?: "fast" | "exact" } = {}) {
  const ctx = new EmuContext();
  const runner = await GpuModelRunner.fromDir(eng, { context: { ctx, info: EMU_INFO }, maxKvTokens: 512, ...opts });
  return { runner, ctx };
}

describe("GPU runtime on the CPU emulation", () => {
  for (const name of ["llama", "mistral", "llama3-tied", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "mixtral"]) {
    test(name, async () => {
      using t = tempDir();
      const { eng, ckpt } = await emuEngine(name, t.path);
      const ref = readRaw(join(fixture(name), "reference.safetensors"));
      const [B, S] = ref.get("input_ids")!.shape as [number, number];
      const ids = asI32(ref.get("input_ids")!);
      const rows = Array.from({ length: B }, (_, b) => Array.from(ids.subarray(b * S, (b + 1) * S)));
      const V = ref.get("logits")!.shape[2]!;
      const refLogits = asF32(ref.get("logits")!);
      const cpu = await loadCpuRunner(ckpt);
      // fast numerics: logits within the bf16 tolerance of transformers' fp32 logits
      const fast = await emuRunner(eng);
      const logits = fast.runner.forwardLogits(rows);
      const err = Math.max(...rows.map((_, b) => relMaxErr(logits[b]!, refLogits.subarray(b * S * V, (b + 1) * S * V))));
      expect(err).toBeLessThanOrEqual(EMU_LOGITS_REL_TOL);
      fast.runner.generate([rows[0]!], { maxNewTokens: 4 });
      if (name !== "mixtral") expect(fast.ctx.launches).toBeGreaterThan(0); // decode steps replayed from a graph
      fast.runner.destroy();
      // exact numerics: the CPU runner's logits to f32 rounding, and its greedy ids
      const exact = await emuRunner(eng, { numerics: "exact" });
      const ex = exact.runner.forwardLogits([rows[1]!])[0]!;
      expect(relMaxErr(ex, cpu.forward(rows[1]!))).toBeLessThan(1e-5);
      const greedy = Array.from(asI32(ref.get("greedy_ids")!));
      const nNew = greedy.length - S;
      const short = rows[1]!.slice(0, 5);
      const g = exact.runner.generate([rows[0]!, short], { maxNewTokens: nNew });
      expect(g.outputIds[0]).toEqual(greedy);
      expect(g.outputIds[1]).toEqual(cpu.greedy(short, nNew));
      expect(g.decodeSteps).toBe(nNew - 1);
      exact.runner.destroy();
    });
  }

  test("float16 checkpoints (fp16 weights, activations and KV cache)", async () => {
    using t = tempDir();
    const ckpt = join(t.path, "ckpt");
    const eng = join(t.path, "eng");
    await convertCheckpoint({ modelDir: fixture("qwen2"), outputDir: ckpt, dtype: "float16" });
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, backend: fakeBackend(), buildConfig: { max_num_tokens: 64, max_batch_size: 4 } });
    const ref = readRaw(join(fixture("qwen2"), "reference.safetensors"));
    const row = Array.from(asI32(ref.get("input_ids")!)).slice(0, 12);
    const V = ref.get("logits")!.shape[2]!;
    const { runner } = await emuRunner(eng);
    expect(runner.dt).toBe("F16");
    expect(relMaxErr(runner.forwardLogits([row])[0]!, asF32(ref.get("logits")!).subarray(0, 12 * V))).toBeLessThan(EMU_LOGITS_REL_TOL);
    runner.destroy();
    const cpu = await loadCpuRunner(ckpt);
    const { runner: exact } = await emuRunner(eng, { numerics: "exact" });
    expect(exact.generate([row], { maxNewTokens: 6 }).outputIds[0]).toEqual(cpu.greedy(row, 6));
    exact.destroy();
  });

  // Weight-only engines: the build quantizes like the CPU runner replays, so exact numerics must
  // match the CPU runner on the same W8A16/W4A16 checkpoint (packing, scales, MoE expert offsets).
  for (const [name, algo] of [["llama", "W8A16"], ["phi3", "W4A16"], ["qwen2", "W8A16"], ["mixtral", "W4A16"]] as const) {
    test(`weight-only ${algo} engine: ${name}`, async () => {
      using t = tempDir();
      const ckpt = join(t.path, "ckpt");
      const eng = join(t.path, "eng");
      await convertCheckpoint({ modelDir: fixture(name), outputDir: ckpt, quantConfig: { quant_algo: algo } });
      await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, backend: fakeBackend(), buildConfig: { max_num_tokens: 128, max_batch_size: 4 } });
      const cpu = await loadCpuRunner(ckpt);
      const ref = readRaw(join(fixture(name), "reference.safetensors"));
      const row = Array.from(asI32(ref.get("input_ids")!)).slice(0, 12);
      const { runner } = await emuRunner(eng, { numerics: "exact" });
      expect(runner.plan.model.weight_only?.bits).toBe(algo === "W8A16" ? 8 : 4);
      expect(runner.plan.tensors.find((x) => x.name === "layers.0.qkv")?.dtype).toBe("I8");
      expect(relMaxErr(runner.forwardLogits([row])[0]!, cpu.forward(row))).toBeLessThan(1e-5);
      expect(runner.generate([row], { maxNewTokens: 4 }).outputIds[0]).toEqual(cpu.greedy(row, 4));
      runner.destroy();
    });
  }

  // Quantized KV cache engines (kv_cache_quant_algo INT8 / FP8, alone and with weight-only
  // weights): the plan carries the checkpoint's per-layer scales; QKV_ROPE stores k and v as 1-byte
  // values quantized after RoPE, and every query (prefill and decode) attends to the dequantized
  // cache, as the CPU runner's quant-sim does (src/runtime/quant-sim.ts).
  for (const [name, algo, wq] of [["llama", "INT8", null], ["llama", "FP8", null], ["qwen2", "FP8", "W8A16"], ["phi3", "INT8", "W4A16"], ["gemma2", "FP8", null]] as const) {
    test(`${algo} KV cache${wq ? ` + ${wq}` : ""}: ${name}`, async () => {
      using t = tempDir();
      const ckpt = join(t.path, "ckpt");
      const eng = join(t.path, "eng");
      await quantize(fixture(name), ckpt, { kv_cache_quant_algo: algo, ...(wq ? { quant_algo: wq } : {}) }, { calibDataset: "random", calibSize: 2, calibMaxSeqLength: 16 });
      await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, backend: fakeBackend(), buildConfig: { max_num_tokens: 64, max_batch_size: 4 } });
      const q = readRaw(join(ckpt, "rank0.safetensors"));
      const cpu = await loadCpuRunner(ckpt); // with quant-sim hooks: quantized K/V
      const ref = readRaw(join(fixture(name), "reference.safetensors"));
      const ids = Array.from(asI32(ref.get("input_ids")!));
      const row = ids.slice(0, 12);
      const { runner } = await emuRunner(eng, { numerics: "exact" });
      const kvq = runner.plan.model.kv_cache!;
      expect(runner.plan.format_version).toBe(3);
      expect(kvq.algo).toBe(algo);
      expect(kvq.scales).toEqual(runner.plan.model.layers.map((_, i) => asF32(q.get(`transformer.layers.${i}.attention.kv_cache_scaling_factor`)!)[0]!));
      expect(runner.kvDtype).toBe(algo === "INT8" ? "I8" : "F8_E4M3");
      expect(runner.plan.model.weight_only?.algo ?? null).toBe(wq);
      const exact = runner.forwardLogits([row])[0]!;
      const cpuLogits = cpu.forward(row);
      const err = relMaxErr(exact, cpuLogits);
      expect(err).toBeLessThan(KVQ_EXACT_REL_TOL);
      // prefill (two sequences, one of them longer than a pass) then decode steps from graphs
      const long = [...ids, ...ids].slice(0, 70);
      const g = runner.generate([row, long], { maxNewTokens: 5 });
      expect(g.outputIds[0]).toEqual(cpu.greedy(row, 5));
      expect(g.outputIds[1]).toEqual(cpu.greedy(long, 5));
      runner.destroy();
      // the quantization is real: the unquantized model's logits are further away than the tolerance
      const fp = join(t.path, "fp");
      await convertCheckpoint({ modelDir: fixture(name), outputDir: fp });
      expect(relMaxErr(exact, (await loadCpuRunner(fp)).forward(row))).toBeGreaterThan(10 * Math.max(err, 1e-6));
      // fast numerics: the same 1-byte cache, bf16 activations into the GEMMs
      const fast = await emuRunner(eng);
      expect(fast.runner.kvDtype).toBe(runner.kvDtype);
      expect(relMaxErr(fast.runner.forwardLogits([row])[0]!, cpuLogits)).toBeLessThan(KVQ_FAST_REL_TOL);
      fast.runner.destroy();
    }, 60_000);
  }

  // A trained model with a real calibration (tiny-pycode: Llama, 6 layers, D 64), both KV formats.
  test.skipIf(!existsSync(TINY))("INT8 / FP8 KV cache on tiny-pycode, calibrated on its held-out text", async () => {
    using t = tempDir();
    const text = readFileSync(join(TINY, "heldout-public.py.txt"), "utf8");
    writeFileSync(join(t.path, "calib.txt"), text.slice(0, 8000));
    const ref = readRaw(join(TINY, "reference.safetensors"));
    const row = Array.from(asI32(ref.get("input_ids")!)).slice(0, 24);
    for (const algo of ["INT8", "FP8"] as const) {
      const ckpt = join(t.path, `ckpt-${algo}`);
      const eng = join(t.path, `eng-${algo}`);
      await quantize(TINY, ckpt, { kv_cache_quant_algo: algo }, { calibDataset: join(t.path, "calib.txt"), calibSize: 2, calibMaxSeqLength: 64 });
      await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, backend: fakeBackend(), buildConfig: { max_num_tokens: 64, max_batch_size: 2 } });
      const cpu = await loadCpuRunner(ckpt);
      const { runner } = await emuRunner(eng, { numerics: "exact" });
      expect(runner.plan.model.kv_cache?.scales.length).toBe(6);
      expect(relMaxErr(runner.forwardLogits([row])[0]!, cpu.forward(row))).toBeLessThan(KVQ_EXACT_REL_TOL);
      expect(runner.generate([row], { maxNewTokens: 4 }).outputIds[0]).toEqual(cpu.greedy(row, 4));
      runner.destroy();
    }
  }, 120_000);

  test("a quantized KV cache takes 1 byte per element: twice the tokens of bf16 in the same memory", async () => {
    using t = tempDir();
    const { eng } = await emuEngine("llama", t.path);
    const ckpt = join(t.path, "q");
    const qeng = join(t.path, "qeng");
    await quantize(fixture("llama"), ckpt, { kv_cache_quant_algo: "FP8" }, { calibDataset: "random", calibSize: 2, calibMaxSeqLength: 16 });
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: qeng, backend: fakeBackend(), buildConfig: { max_num_tokens: 64, max_batch_size: 4, max_seq_len: 4096 } });
    const opts = { context: { ctx: new EmuContext(), info: EMU_INFO }, kvCacheFreeGpuMemFraction: 1e-4 };
    const bf = await GpuModelRunner.fromDir(eng, opts);
    const q8 = await GpuModelRunner.fromDir(qeng, { ...opts, context: { ctx: new EmuContext(), info: EMU_INFO } });
    expect(bf.kvDtype).toBe("BF16");
    expect(q8.kvBlocks).toBeGreaterThanOrEqual(2 * bf.kvBlocks);
    expect(q8.kvBlocks).toBeLessThanOrEqual(2 * bf.kvBlocks + 1);
    bf.destroy();
    q8.destroy();
    // a version-2 plan has no kv_cache field: a 16-bit cache
    const old = await Engine.fromDir(eng, 0);
    delete old.plan.model.kv_cache;
    const r2 = GpuModelRunner.fromEngine(old, { context: { ctx: new EmuContext(), info: EMU_INFO }, maxKvTokens: 256 });
    expect(r2.kvDtype).toBe("BF16");
    r2.destroy();
  });

  // A head size off the 64/128/256 grid with partial rotary (Phi-3 layout, D 80, rotary dim 32):
  // the builder's allowed set, the rotary table, the cache and workspace sizes per head; the kernels
  // at every head size run on a GPU (gpu-kernels.test.ts, gpu-heads.test.ts).
  test("head size 80 with partial rotary (synthetic Phi-3 shape)", async () => {
    using t = tempDir();
    const hc = HEAD_CASES.find((c) => c.family === "phi3" && c.D === 80)!;
    const ckpt = await headCaseCheckpoint(hc, t.path);
    const eng = join(t.path, "eng");
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, backend: fakeBackend(), buildConfig: { max_num_tokens: 64, max_batch_size: 4 } });
    const cpu = await loadCpuRunner(ckpt);
    const [long, short] = headPrompts();
    const { runner } = await emuRunner(eng, { numerics: "exact" });
    expect(runner.plan.model.head_size).toBe(80);
    expect(runner.plan.model.rotary_dim).toBe(32);
    expect(relMaxErr(runner.forwardLogits([long])[0]!, cpu.forward(long))).toBeLessThan(1e-5); // 100 tokens: chunked, 64 a pass
    const g = runner.generate([long, short], { maxNewTokens: 4 });
    expect(g.outputIds[0]).toEqual(cpu.greedy(long, 4));
    expect(g.outputIds[1]).toEqual(cpu.greedy(short, 4));
    runner.destroy();
    const fast = await emuRunner(eng);
    expect(relMaxErr(fast.runner.forwardLogits([short])[0]!, cpu.forward(short))).toBeLessThan(EMU_LOGITS_REL_TOL);
    fast.runner.destroy();
  }, 60_000);

  test("chunked prefill (prompt longer than max tokens per pass) and end ids", async () => {
    using t = tempDir();
    const { eng, ckpt } = await emuEngine("llama", t.path);
    const { runner } = await emuRunner(eng, { maxNumTokens: 8, numerics: "exact" });
    const ref = readRaw(join(fixture("llama"), "reference.safetensors"));
    const row = Array.from(asI32(ref.get("input_ids")!)).slice(0, 12);
    const cpu = await loadCpuRunner(ckpt);
    const full = runner.forwardLogits([row])[0]!;
    expect(relMaxErr(full, cpu.forward(row))).toBeLessThan(EMU_LOGITS_REL_TOL);
    const g = runner.generate([row, row.slice(0, 3), row.slice(2)], { maxNewTokens: 6 });
    expect(g.outputIds[0]).toEqual(cpu.greedy(row, 6));
    expect(g.outputIds[1]).toEqual(cpu.greedy(row.slice(0, 3), 6));
    const first = g.newTokens[0]![0]!;
    const stop = runner.generate([row, row.slice(0, 3)], { maxNewTokens: 6, endId: first, padId: 0 });
    expect(stop.newTokens[0]).toEqual([first]);
    expect(stop.outputIds[0]!.length).toBe(stop.outputIds[1]!.length);
    runner.destroy();
  });
});
