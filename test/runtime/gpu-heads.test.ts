/**
 * Every head size the CUDA backend builds (32, 64, 80, 96, 128, 256; Phi-3 shapes with full and
 * partial rotary): a synthetic checkpoint (test/runtime/_heads.ts) → trtllm-build (tuned on this
 * GPU) → the GPU runtime, against the CPU reference runner on the same checkpoint. Fast numerics
 * within GPU_LOGITS_REL_TOL, exact numerics within GPU_EXACT_REL_TOL and identical greedy ids
 * (one-pass and chunked prefill, decode steps). Skipped where the engine library or a GPU is
 * missing (CI; gpu-emulated.test.ts runs one odd head size there).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync } from "node:fs";
import { join } from "node:path";
import { buildCheckpoint } from "../../src/builder/checkpoint.ts";
import { loadCpuRunner } from "../../src/runtime/index.ts";
import { GpuModelRunner } from "../../src/runtime/gpu/runner.ts";
import { relMaxErr, tempDir } from "../helpers.ts";
import { HEAD_CASES, headCaseCheckpoint, headPrompts } from "./_heads.ts";
import { GPU_EXACT_REL_TOL, GPU_LOGITS_REL_TOL } from "./_gpu-tol.ts";
import { gpuOrSkip } from "./_gpu.ts";

const gpu = gpuOrSkip("test/runtime/gpu-heads.test.ts");

const work = tempDir("trtb-gpu-heads-");
afterAll(() => work[Symbol.dispose]());
const cacheFile = join(work.path, "shared.cache");
const measured: Record<string, [number, number]> = {};

describe.skipIf(!gpu)("GPU engine vs CPU runner at every head size", () => {
  HEAD_CASES.forEach((hc, i) => {
    test(hc.name, async () => {
      const dir = join(work.path, `case${i}`);
      mkdirSync(dir, { recursive: true });
      const ckpt = await headCaseCheckpoint(hc, dir);
      const eng = join(dir, "engine");
      await buildCheckpoint({
        checkpointDir: ckpt, outputDir: eng, buildConfig: { max_num_tokens: 128, max_batch_size: 8 },
        inputTimingCache: existsSync(cacheFile) ? cacheFile : null, outputTimingCache: cacheFile,
      });
      const cpu = await loadCpuRunner(ckpt);
      const [long, short] = headPrompts();
      const cpuLong = cpu.forward(long), cpuShort = cpu.forward(short);
      const nNew = 8;
      const greedyLong = cpu.greedy(long, nNew), greedyShort = cpu.greedy(short, nNew);

      // fast numerics (bf16 KV cache, tensor-core prefill)
      using fast = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096 });
      expect(fast.plan.model.head_size).toBe(hc.D);
      expect(fast.plan.model.rotary_dim).toBe(Math.floor(hc.D * (hc.rotary ?? 1)));
      const [fl, fs] = fast.forwardLogits([long, short]);
      const fastErr = Math.max(relMaxErr(fl!, cpuLong), relMaxErr(fs!, cpuShort));
      const fg = fast.generate([long, short], { maxNewTokens: nNew });
      console.log(`${hc.name}: fast logits vs CPU runner max|Δ|/max|ref| = ${fastErr.toExponential(3)} (tol ${GPU_LOGITS_REL_TOL}); fast greedy identical: ${fg.outputIds[0]!.join() === greedyLong.join()}/${fg.outputIds[1]!.join() === greedyShort.join()}`);
      expect(fastErr).toBeLessThanOrEqual(GPU_LOGITS_REL_TOL);

      // exact numerics (f32 KV cache, SIMT prefill): logits and greedy ids of the CPU runner
      using exact = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096, numerics: "exact" });
      const [el, es] = exact.forwardLogits([long, short]);
      const exErr = Math.max(relMaxErr(el!, cpuLong), relMaxErr(es!, cpuShort));
      measured[hc.name] = [fastErr, exErr];
      console.log(`${hc.name}: exact logits vs CPU runner max|Δ|/max|ref| = ${exErr.toExponential(3)} (tol ${GPU_EXACT_REL_TOL})`);
      expect(exErr).toBeLessThanOrEqual(GPU_EXACT_REL_TOL);
      const g = exact.generate([long, short], { maxNewTokens: nNew });
      expect(g.outputIds[0]).toEqual(greedyLong);
      expect(g.outputIds[1]).toEqual(greedyShort);

      // chunked prefill (32 tokens a pass: later chunks attend to a cached prefix)
      using chunked = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 4096, numerics: "exact", maxNumTokens: 32 });
      const chErr = relMaxErr(chunked.forwardLogits([long])[0]!, cpuLong);
      console.log(`${hc.name}: exact chunked-prefill logits vs CPU runner = ${chErr.toExponential(3)}`);
      expect(chErr).toBeLessThanOrEqual(GPU_EXACT_REL_TOL);
      expect(chunked.generate([long], { maxNewTokens: nNew }).outputIds[0]).toEqual(greedyLong);
    }, 300_000);
  });

  afterAll(() => {
    if (Object.keys(measured).length) console.log(`GPU logits error by head size [fast, exact] vs CPU runner: ${JSON.stringify(measured)}`);
  });
});
