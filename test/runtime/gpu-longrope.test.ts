/**
 * Phi-3 LongRoPE on the GPU (test/fixtures/phi3-longrope, original_max_position_embeddings 64):
 * convert → trtllm-build (tuned on this GPU) → the GPU runtime, against transformers (logits of a
 * 40-token and a 100-token prompt; greedy of a 56-token prompt decoded across the switch with a
 * cache, `greedy_cached_ids`) and the CPU runner on the same checkpoint (exact numerics; a 100-token
 * prompt prefilled in 32-token passes, which must still use the long table for all of it).
 * Skipped where the engine library or a GPU is missing (CI; gpu-emulated.test.ts runs the same
 * orchestration on the CPU emulation).
 */
import { afterAll, describe, expect, test } from "bun:test";
import { join } from "node:path";
import { buildCheckpoint } from "../../src/builder/checkpoint.ts";
import { convertCheckpoint } from "../../src/convert.ts";
import { loadCpuRunner } from "../../src/runtime/index.ts";
import { GpuModelRunner } from "../../src/runtime/gpu/runner.ts";
import { asF32, asI32, readRaw, relMaxErr, tempDir } from "../helpers.ts";
import { GPU_EXACT_REL_TOL, GPU_LOGITS_REL_TOL } from "./_gpu-tol.ts";
import { gpuOrSkip } from "./_gpu.ts";

const gpu = gpuOrSkip("test/runtime/gpu-longrope.test.ts");

const DIR = join(import.meta.dir, "../fixtures/phi3-longrope");
const work = tempDir("trtb-gpu-longrope-");
afterAll(() => work[Symbol.dispose]());

describe.skipIf(!gpu)("GPU engine: Phi-3 LongRoPE", () => {
  test("short / long prompts vs transformers; exact numerics and greedy across the switch vs the CPU runner", async () => {
    const ckpt = join(work.path, "ckpt");
    const eng = join(work.path, "eng");
    await convertCheckpoint({ modelDir: DIR, outputDir: ckpt });
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, buildConfig: { max_num_tokens: 128, max_batch_size: 4 } });
    const ref = readRaw(join(DIR, "reference.safetensors"));
    const ids = (k: string) => Array.from(asI32(ref.get(k)!));
    const [short, long] = [ids("short_ids"), ids("long_ids")];
    const cpu = await loadCpuRunner(ckpt);

    using fast = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 2048 });
    const lg = fast.forwardLogits([short, long]);
    const errs = [relMaxErr(lg[0]!, asF32(ref.get("short_logits")!)), relMaxErr(lg[1]!, asF32(ref.get("long_logits")!))];
    console.log(`longrope fast logits vs transformers: short ${errs[0]!.toExponential(3)}, long ${errs[1]!.toExponential(3)}`);
    for (const e of errs) expect(e).toBeLessThanOrEqual(GPU_LOGITS_REL_TOL);

    using exact = await GpuModelRunner.fromDir(eng, { maxBatchSize: 4, maxKvTokens: 2048, numerics: "exact", maxNumTokens: 32 });
    const ex = exact.forwardLogits([short, long]);
    const exErr = Math.max(relMaxErr(ex[0]!, cpu.forward(short)), relMaxErr(ex[1]!, cpu.forward(long)));
    console.log(`longrope exact logits vs CPU runner (32-token passes): ${exErr.toExponential(3)}`);
    expect(exErr).toBeLessThanOrEqual(GPU_EXACT_REL_TOL);
    const greedy = ids("greedy_cached_ids");
    const g = exact.generate([greedy.slice(0, 56), long.slice(0, 70)], { maxNewTokens: 16 });
    expect(g.outputIds[0]).toEqual(greedy);
    expect(g.outputIds[1]).toEqual(cpu.greedy(long.slice(0, 70), 16));
    const gf = fast.generate([greedy.slice(0, 56)], { maxNewTokens: 16 });
    console.log(`longrope fast greedy identical to transformers' cached decode: ${gf.outputIds[0]!.join() === greedy.join()}`);
  }, 120_000);
});
