/**
 * Every fixture family through convert → trtllm-build (CUDA backend, tuned on this GPU) → the GPU
 * runtime, against the fixture's transformers reference (logits) and the CPU reference runner on the
 * same checkpoint (greedy ids). Skipped where the engine library or a GPU is missing (CI).
 *
 * Fixtures: $TRTB_FIXTURES, else .devfix/ in the repo (copied there for the GPU machine), else
 * ../shared/fixtures/hf-tiny.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, readdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { buildCheckpoint } from "../../src/builder/checkpoint.ts";
import { convertCheckpoint } from "../../src/convert.ts";
import { quantize } from "../../src/quantize.ts";
import { loadCpuRunner } from "../../src/runtime/index.ts";
import { isTrtbError } from "../../src/errors.ts";
import { GpuModelRunner } from "../../src/runtime/gpu/runner.ts";
import { asF32, asI32, FIXTURES, readRaw, relMaxErr, tempDir } from "../helpers.ts";
import { GPU_EXACT_REL_TOL, GPU_F16_LOGITS_REL_TOL, GPU_KVQ_EXACT_REL_TOL, GPU_KVQ_FAST_REL_TOL, GPU_LOGITS_REL_TOL } from "./_gpu-tol.ts";
import { f16BitsToF32, f32ToF16Bits } from "../../src/numeric.ts";
import { gpuOrSkip } from "./_gpu.ts";

const DEVFIX = resolve(import.meta.dir, "../../.devfix");
const FIX = process.env.TRTB_FIXTURES ?? (existsSync(DEVFIX) ? DEVFIX : FIXTURES);
const fixture = (name: string) => join(FIX, name);

const gpu = gpuOrSkip("test/runtime/gpu-families.test.ts");

const FAMILIES = ["llama", "mistral", "llama3-tied", "qwen2", "qwen3", "gemma", "gemma2", "phi3", "mixtral"].filter((f) => existsSync(fixture(f)));
const work = tempDir("trtb-gpu-");
afterAll(() => work[Symbol.dispose]());
const cacheFile = join(work.path, "shared.cache");
const measured: Record<string, number> = {};
const measuredExact: Record<string, number> = {};

type WoAlgo = "W8A16" | "W4A16" | "W4A16_AWQ";
async function engineFor(name: string, tp = 1, quantAlgo?: WoAlgo): Promise<string> {
  const tag = `${name}-tp${tp}${quantAlgo ? `-${quantAlgo}` : ""}`;
  const ckpt = join(work.path, tag);
  const eng = join(work.path, `${tag}-engine`);
  if (!existsSync(join(eng, "config.json"))) {
    await convertCheckpoint({ modelDir: fixture(name), outputDir: ckpt, tpSize: tp, ...(quantAlgo ? { quantConfig: { quant_algo: quantAlgo } } : {}) });
    await buildCheckpoint({
      checkpointDir: ckpt, outputDir: eng, buildConfig: { max_num_tokens: 128, max_batch_size: 8 },
      inputTimingCache: existsSync(cacheFile) ? cacheFile : null, outputTimingCache: cacheFile,
    });
  }
  return eng;
}

describe.skipIf(!gpu)("GPU engine vs references (all fixture families)", () => {
  for (const name of FAMILIES) {
    test(name, async () => {
      const eng = await engineFor(name);
      const ref = readRaw(join(fixture(name), "reference.safetensors"));
      const [B, S] = ref.get("input_ids")!.shape as [number, number];
      const ids = asI32(ref.get("input_ids")!);
      const rows = Array.from({ length: B }, (_, b) => Array.from(ids.subarray(b * S, (b + 1) * S)));
      const refLogits = asF32(ref.get("logits")!);
      const V = ref.get("logits")!.shape[2]!;
      const greedyRef = Array.from(asI32(ref.get("greedy_ids")!));
      const nNew = greedyRef.length - S;
      using runner = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096 });
      const logits = runner.forwardLogits(rows);
      let err = 0;
      rows.forEach((_, b) => {
        err = Math.max(err, relMaxErr(logits[b]!, refLogits.subarray(b * S * V, (b + 1) * S * V)));
      });
      measured[name] = err;
      console.log(`${name}: fast logits max|Δ|/max|ref| = ${err.toExponential(3)}`);
      expect(err).toBeLessThanOrEqual(GPU_LOGITS_REL_TOL);
      const cpu = await loadCpuRunner(join(work.path, `${name}-tp1`));
      const short = rows[1]!.slice(0, 7);
      const cpuShort = cpu.greedy(short, nNew);
      const fastGreedy = runner.generate([rows[0]!, short], { maxNewTokens: nNew });
      const agree = [fastGreedy.outputIds[0]!.join() === greedyRef.join(), fastGreedy.outputIds[1]!.join() === cpuShort.join()];
      console.log(`${name}: fast greedy identical to reference/CPU: ${agree.join("/")}`);

      // exact numerics: f32 activations and KV cache → the CPU runner's logits and greedy ids
      using exact = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096, numerics: "exact" });
      const ex = exact.forwardLogits(rows);
      const exErr = Math.max(...rows.map((r, b) => relMaxErr(ex[b]!, cpu.forward(r))));
      measuredExact[name] = exErr;
      console.log(`${name}: exact logits vs CPU runner max|Δ|/max|ref| = ${exErr.toExponential(3)}`);
      expect(exErr).toBeLessThanOrEqual(GPU_EXACT_REL_TOL);
      const single = exact.generate([rows[0]!], { maxNewTokens: nNew });
      expect(single.outputIds[0]).toEqual(greedyRef);
      // a batch of two prompts of different lengths gives each row its own greedy continuation
      const batch = exact.generate([rows[0]!, short], { maxNewTokens: nNew });
      expect(batch.outputIds[0]).toEqual(greedyRef);
      expect(batch.outputIds[1]).toEqual(cpuShort);
    });
  }

  // Weight-only engines: the build quantizes exactly as the CPU runner replays it, so the CPU runner
  // on the same W8A16/W4A16 checkpoint is the reference. Prompts of 12 tokens run our tensor-core
  // kernel; the 100-token prompt (> 64 rows) the expand + cuBLASLt path. Mixtral's fast numerics
  // are only compared on the short prompt: its router sees bf16 activations (as upstream's does),
  // and over 100 tokens some token's top-2 choice is a near tie that bf16 rounding flips (seen on
  // H100: logits off by 0.16–0.46 where that token went to another expert, bf16 and W8A16 engines
  // alike; exact numerics match the CPU runner to 5e-6 on the same prompts).
  // W4A16_AWQ: modelopt's layout filled by round-to-nearest (group 128), the checkpoint's int4 values
  // and group scales as stored; mixtral's experts stay 16-bit (excluded by the AWQ scheme).
  const WO: [string, WoAlgo][] = [["llama", "W8A16"], ["llama", "W4A16"], ["qwen2", "W8A16"], ["qwen3", "W4A16"], ["gemma2", "W4A16"], ["phi3", "W8A16"], ["mixtral", "W8A16"],
    ["llama", "W4A16_AWQ"], ["qwen3", "W4A16_AWQ"], ["phi3", "W4A16_AWQ"], ["mixtral", "W4A16_AWQ"]];
  for (const [name, algo] of WO.filter(([n]) => FAMILIES.includes(n))) {
    test(`weight-only ${algo}: ${name}`, async () => {
      const eng = await engineFor(name, 1, algo);
      const cpu = await loadCpuRunner(join(work.path, `${name}-tp1-${algo}`));
      const ref = readRaw(join(fixture(name), "reference.safetensors"));
      const row = Array.from(asI32(ref.get("input_ids")!)).slice(0, 12);
      const V = ref.get("logits")!.shape[2]!;
      const long = Array.from({ length: 100 }, (_, i) => (row[i % row.length]! + (i >> 4)) % V);
      using fast = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096 });
      expect(fast.plan.model.weight_only?.algo).toBe(algo);
      const errs = (name === "mixtral" ? [row] : [row, long]).map((r) => relMaxErr(fast.forwardLogits([r])[0]!, cpu.forward(r)));
      console.log(`${name} ${algo}: fast logits vs CPU runner (same checkpoint) max|Δ|/max|ref| = ${errs.map((e) => e.toExponential(3)).join(" / ")} (12 / 100 tokens)`);
      for (const e of errs) expect(e).toBeLessThanOrEqual(GPU_LOGITS_REL_TOL);
      using exact = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096, numerics: "exact" });
      const exErrs = [row, long].map((r) => relMaxErr(exact.forwardLogits([r])[0]!, cpu.forward(r)));
      console.log(`${name} ${algo}: exact logits vs CPU runner max|Δ|/max|ref| = ${exErrs.map((e) => e.toExponential(3)).join(" / ")}`);
      for (const e of exErrs) expect(e).toBeLessThanOrEqual(GPU_EXACT_REL_TOL);
      const g = exact.generate([row, row.slice(0, 5)], { maxNewTokens: 8 });
      expect(g.outputIds[0]).toEqual(cpu.greedy(row, 8));
      expect(g.outputIds[1]).toEqual(cpu.greedy(row.slice(0, 5), 8));
    });
  }

  // --logits_dtype float16: lm_head (cuBLASLt / GEMV tactics tuned for an F16 output) writes f16
  // logits, soft-cap (gemma2) and sampling read them, the API widens them; against the float32-logits
  // engine of the same float16 checkpoint: logits within GPU_F16_LOGITS_REL_TOL, greedy ids identical.
  for (const name of ["qwen2", "gemma2", "llama"].filter((n) => FAMILIES.includes(n))) {
    test(`float16 logits (--logits_dtype float16): ${name}`, async () => {
      const ckpt = join(work.path, `${name}-f16ckpt`);
      if (!existsSync(join(ckpt, "config.json"))) await convertCheckpoint({ modelDir: fixture(name), outputDir: ckpt, dtype: "float16" });
      const eng = async (ld: "float32" | "float16") => {
        const dir = join(work.path, `${name}-f16ckpt-logits-${ld}`);
        if (!existsSync(join(dir, "config.json")))
          await buildCheckpoint({
            checkpointDir: ckpt, outputDir: dir, logitsDtype: ld, buildConfig: { max_num_tokens: 128, max_batch_size: 8 },
            inputTimingCache: existsSync(cacheFile) ? cacheFile : null, outputTimingCache: cacheFile,
          });
        return dir;
      };
      const ref = readRaw(join(fixture(name), "reference.safetensors"));
      const [B, S] = ref.get("input_ids")!.shape as [number, number];
      const ids = asI32(ref.get("input_ids")!);
      const rows = Array.from({ length: B }, (_, b) => Array.from(ids.subarray(b * S, (b + 1) * S)));
      const nNew = asI32(ref.get("greedy_ids")!).length - S;
      using r32 = await GpuModelRunner.fromDir(await eng("float32"), { maxBatchSize: 4, maxKvTokens: 4096 });
      using r16 = await GpuModelRunner.fromDir(await eng("float16"), { maxBatchSize: 4, maxKvTokens: 4096 });
      expect(r32.logitsDtype).toBe("F32");
      expect(r16.logitsDtype).toBe("F16");
      expect(r16.plan.gemm.sites.lm_head!.y).toBe("F16");
      const a = r32.forwardLogits(rows);
      const h = r16.forwardLogits(rows);
      const f16round = (v: number) => f16BitsToF32(f32ToF16Bits(v));
      const err = Math.max(...rows.map((_, b) => relMaxErr(h[b]!, a[b]!)));
      console.log(`${name}: f16 logits vs f32 logits (same f16 checkpoint) max|Δ|/max|f32| = ${err.toExponential(3)}`);
      rows.forEach((_, b) => expect(h[b]!.every((v) => f16round(v) === v)).toBe(true)); // they really are f16
      expect(err).toBeLessThanOrEqual(GPU_F16_LOGITS_REL_TOL);
      // greedy (prefill + graph-replayed decode steps) identical
      const short = rows[1]!.slice(0, 7);
      const g32 = r32.generate([rows[0]!, short], { maxNewTokens: nNew });
      const g16 = r16.generate([rows[0]!, short], { maxNewTokens: nNew });
      expect(g16.outputIds).toEqual(g32.outputIds);
      // step level: decode-row logits are widened f16 too
      const table = r16.allocateKv(short.length + 1);
      const pre = r16.prefillStep([{ tokens: short, pos0: 0, n: short.length, table, sample: "greedy", logits: "last" }]);
      const dec = r16.decodeRows([{ token: pre.tokens[0]!, pos: short.length, table, step: 1, logits: true }]);
      r16.releaseKv(table);
      expect(pre.tokens[0]).toBe(g16.newTokens[1]![0]!);
      expect(dec.tokens[0]).toBe(g16.newTokens[1]![1]!);
      expect(dec.logits[0]!.every((v) => f16round(v) === v)).toBe(true);
      expect(relMaxErr(pre.logits[0]!, a[1]!.subarray(6 * r16.vocabSize, 7 * r16.vocabSize))).toBeLessThanOrEqual(GPU_F16_LOGITS_REL_TOL);
    });
  }

  // Quantized KV cache engines (kv_cache_quant_algo INT8 / FP8, alone and with weight-only weights):
  // 1-byte cache written by QKV_ROPE with the layer's scale, read by both attention kernels (SIMT
  // prefill, split-K decode). Reference: the CPU runner with quant-sim on the same checkpoint
  // (scales from a short "random" calibration). The 100-token prompt spans two prefill tiles, and
  // its decode steps run split-K (several splits, then the merge).
  const KVQ: [string, "INT8" | "FP8", "W8A16" | "W4A16" | null][] = [
    ["llama", "INT8", null], ["llama", "FP8", null], ["qwen2", "FP8", "W8A16"], ["phi3", "INT8", "W4A16"], ["gemma2", "FP8", null], ["qwen3", "INT8", null],
  ];
  for (const [name, kv, wq] of KVQ.filter(([n]) => FAMILIES.includes(n))) {
    test(`${kv} KV cache${wq ? ` + ${wq}` : ""}: ${name}`, async () => {
      const tag = `${name}-kv${kv}${wq ? `-${wq}` : ""}`;
      const ckpt = join(work.path, tag);
      const eng = join(work.path, `${tag}-engine`);
      await quantize(fixture(name), ckpt, { kv_cache_quant_algo: kv, ...(wq ? { quant_algo: wq } : {}) }, { calibDataset: "random", calibSize: 4, calibMaxSeqLength: 32 });
      await buildCheckpoint({
        checkpointDir: ckpt, outputDir: eng, buildConfig: { max_num_tokens: 128, max_batch_size: 8 },
        inputTimingCache: existsSync(cacheFile) ? cacheFile : null, outputTimingCache: cacheFile,
      });
      const cpu = await loadCpuRunner(ckpt);
      const ref = readRaw(join(fixture(name), "reference.safetensors"));
      const row = Array.from(asI32(ref.get("input_ids")!)).slice(0, 12);
      const V = ref.get("logits")!.shape[2]!;
      const long = Array.from({ length: 100 }, (_, i) => (row[i % row.length]! + (i >> 4)) % V);
      using exact = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096, numerics: "exact" });
      expect(exact.plan.model.kv_cache?.algo).toBe(kv);
      expect(exact.kvDtype).toBe(kv === "INT8" ? "I8" : "F8_E4M3");
      const exErrs = [row, long].map((r) => relMaxErr(exact.forwardLogits([r])[0]!, cpu.forward(r)));
      console.log(`${tag}: exact logits vs CPU runner (quant-sim) max|Δ|/max|ref| = ${exErrs.map((e) => e.toExponential(3)).join(" / ")} (12 / 100 tokens)`);
      for (const e of exErrs) expect(e).toBeLessThanOrEqual(GPU_KVQ_EXACT_REL_TOL);
      const g = exact.generate([row, long, row.slice(0, 5)], { maxNewTokens: 8 });
      expect(g.outputIds[0]).toEqual(cpu.greedy(row, 8));
      expect(g.outputIds[1]).toEqual(cpu.greedy(long, 8));
      expect(g.outputIds[2]).toEqual(cpu.greedy(row.slice(0, 5), 8));
      using fast = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096 });
      const errs = [row, long].map((r) => relMaxErr(fast.forwardLogits([r])[0]!, cpu.forward(r)));
      console.log(`${tag}: fast logits vs CPU runner (quant-sim) max|Δ|/max|ref| = ${errs.map((e) => e.toExponential(3)).join(" / ")}`);
      for (const e of errs) expect(e).toBeLessThanOrEqual(GPU_KVQ_FAST_REL_TOL);
      const fg = fast.generate([row], { maxNewTokens: 8 });
      console.log(`${tag}: fast greedy identical to CPU runner: ${fg.outputIds[0]!.join() === cpu.greedy(row, 8).join()}`);
      // the decode graphs replay the same steps as eager decode
      using eager = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096, cudaGraphs: false });
      expect(eager.generate([row], { maxNewTokens: 8 }).outputIds).toEqual(fg.outputIds);
    });
  }

  test("decode from CUDA graphs equals eager decode; sampling is seeded", async () => {
    const eng = await engineFor("llama");
    const ref = readRaw(join(fixture("llama"), "reference.safetensors"));
    const ids = Array.from(asI32(ref.get("input_ids")!)).slice(0, 12);
    using eager = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096, cudaGraphs: false });
    using graphs = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096 });
    const a = eager.generate([ids, ids.slice(3)], { maxNewTokens: 24 });
    const b = graphs.generate([ids, ids.slice(3)], { maxNewTokens: 24 });
    expect(b.outputIds).toEqual(a.outputIds);
    const s = { temperature: 1.0, topK: 20, seed: 1234 };
    const s1 = graphs.generate([ids, ids], { maxNewTokens: 16, sampling: s });
    const s2 = graphs.generate([ids, ids], { maxNewTokens: 16, sampling: s });
    expect(s2.outputIds).toEqual(s1.outputIds);
    const s3 = graphs.generate([ids], { maxNewTokens: 16, sampling: { ...s, seed: 99 } });
    expect(s3.outputIds[0]!.length).toBe(ids.length + 16);
    // end id: stop at the first greedy token
    const first = a.newTokens[0]![0]!;
    const stop = graphs.generate([ids], { maxNewTokens: 8, endId: first, padId: 0 });
    expect(stop.newTokens[0]).toEqual([first]);
  });

  test("tp=2 checkpoint: one engine per rank; running it is refused clearly", async () => {
    const eng = await engineFor("llama", 2);
    expect(readdirSync(eng).filter((f) => f.endsWith(".engine")).sort()).toEqual(["rank0.engine", "rank1.engine"]);
    let err: unknown;
    try {
      await GpuModelRunner.fromDir(eng);
    } catch (e) {
      err = e;
    }
    expect(isTrtbError(err) && err.code === "RUN_UNSUPPORTED").toBe(true);
  });

  afterAll(() => {
    if (Object.keys(measured).length) console.log(`GPU logits error by family: fast vs transformers ${JSON.stringify(measured)}; exact vs CPU runner ${JSON.stringify(measuredExact)}`);
  });
});
