#!/usr/bin/env bun
/**
 * Convert → build → generate, end to end on the GPU, with the library API:
 *
 *   bun examples/e2e_gpu.ts [hf_dir] [work_dir]
 *
 * 1. Hugging Face checkpoint → TRT-LLM checkpoint (config.json + rank0.safetensors)
 * 2. trtllm-build: engine directory (config.json + rank0.engine), GEMM tactics timed on this GPU
 * 3. the GPU runtime: greedy and sampled generation for a batch of prompts of different lengths;
 *    the exact-numerics runner checked token for token against the CPU reference runner
 *
 * Defaults to the bundled tiny model. Needs a CUDA GPU and libtrtb_engine (`bun run build`).
 */
import { join } from "node:path";
import { buildCheckpoint } from "../src/builder/index.ts";
import { convertCheckpoint, loadCpuRunner } from "../src/index.ts";
import { GpuModelRunner } from "../src/runtime/gpu/index.ts";

const hfDir = process.argv[2] ?? join(import.meta.dir, "tiny-llama");
const work = process.argv[3] ?? "e2e_gpu_out";
const ckpt = join(work, "tllm_checkpoint");
const engineDir = join(work, "engine");

const c = await convertCheckpoint({ modelDir: hfDir, outputDir: ckpt });
console.log(`converted ${c.config.architecture} in ${c.seconds.toFixed(2)} s`);

const b = await buildCheckpoint({ checkpointDir: ckpt, outputDir: engineDir, buildConfig: { max_batch_size: 8, max_num_tokens: 256 } });
console.log(`built ${b.ranks.length} engine(s) in ${b.seconds.toFixed(2)} s → ${engineDir}`);

using runner = await GpuModelRunner.fromDir(engineDir, { maxBatchSize: 8 });
const prompts = [[1, 15, 42, 7, 99], [1, 300, 12], [1, 5, 9, 200, 31, 8, 77, 3]].map((p) => p.map((id) => id % runner.vocabSize));
const greedy = runner.generate(prompts, { maxNewTokens: 16 });
greedy.newTokens.forEach((row, i) => console.log(`[${i}] greedy: ${row.join(" ")}`));
console.log(`decode: ${((greedy.decodeSteps * prompts.length) / (greedy.decodeMs / 1000)).toFixed(0)} tok/s (batch ${prompts.length})`);

// The default numerics round activations to bf16 like TensorRT-LLM; "exact" keeps them (and the KV
// cache) in f32 and follows the fp32 CPU reference runner token for token.
const cpu = await loadCpuRunner(ckpt);
using exact = await GpuModelRunner.fromDir(engineDir, { maxBatchSize: 8, numerics: "exact" });
const exactIds = exact.generate(prompts, { maxNewTokens: 16 }).outputIds;
const same = prompts.every((p, i) => JSON.stringify(cpu.greedy(p, 16)) === JSON.stringify(exactIds[i]));
const fastSame = prompts.filter((_, i) => JSON.stringify(exactIds[i]) === JSON.stringify(greedy.outputIds[i])).length;
console.log(`exact numerics: greedy ids identical to the CPU reference runner: ${same}; fast numerics agree on ${fastSame}/${prompts.length} rows`);

const sampled = runner.generate(prompts, { maxNewTokens: 16, sampling: { temperature: 0.8, topK: 40, topP: 0.95, seed: 42 } });
sampled.newTokens.forEach((row, i) => console.log(`[${i}] sampled: ${row.join(" ")}`));
if (!same) process.exit(1);
