#!/usr/bin/env bun
/**
 * The LLM API on the bundled tiny-pycode model, end to end, with figures from one run:
 *
 *   bun bench/llm.ts [--json out.json]
 *
 * - `LLM.create` from the Hugging Face directory, cold (convert in memory + build + cache the engine
 *   on a GPU; convert to a temp checkpoint on the CPU) and again (engine cache hit): seconds and ratio.
 * - `generate`: greedy continuation of TRAINING.json's prompts (text must equal TRAINING.json's
 *   transformers samples), tokens/s for one prompt and for the batch.
 * - on a GPU, `evaluate`: the engine against the bf16 checkpoint on held-out text (ppl both, KL).
 */
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { buildCheckpoint, convertCheckpoint, evaluate, gpuAvailable, LLM } from "../src/index.ts";

const HF = join(import.meta.dir, "../examples/tiny-pycode");
const SHARED = join(import.meta.dir, "../../shared/models/tiny-pycode");
const jsonOut = process.argv.includes("--json") ? process.argv[process.argv.indexOf("--json") + 1] : undefined;
const samples = JSON.parse(readFileSync(join(SHARED, "TRAINING.json"), "utf8")).samples as Record<string, string>;
const work = mkdtempSync(join(tmpdir(), "trtb-bench-llm-"));
const out: Record<string, unknown> = {};
const gpu = gpuAvailable();
out.backend = gpu ? "gpu" : "cpu";

try {
  const cacheDir = join(work, "cache");
  const buildConfig = { max_batch_size: 8, max_seq_len: 1024 };
  let t = performance.now();
  const cold = await LLM.create({ model: HF, cacheDir, buildConfig });
  const coldS = (performance.now() - t) / 1000;
  cold.dispose();
  t = performance.now();
  using llm = await LLM.create({ model: HF, cacheDir, buildConfig });
  const warmS = (performance.now() - t) / 1000;
  out.create = { coldSeconds: coldS, cacheHitSeconds: warmS, cacheHit: llm.cacheHit, ratio: warmS / coldS };
  console.log(`LLM.create on the ${llm.backend}: cold ${coldS.toFixed(2)} s, again ${warmS.toFixed(2)} s (cache hit ${llm.cacheHit}) = ${(warmS / coldS).toFixed(3)}× cold`);

  const prompts = Object.keys(samples);
  let exact = 0;
  for (const p of prompts) {
    const [r] = await llm.generate(p, { maxTokens: 60 });
    const same = p + r!.text === samples[p];
    if (same) exact++;
    console.log(`greedy ${JSON.stringify(p)}: ${r!.tokenIds.length} tokens, ${r!.timing.tokensPerSecond.toFixed(0)} tok/s, equals TRAINING.json: ${same}`);
  }
  const t1 = performance.now();
  const [one] = await llm.generate(prompts[0]!, { maxTokens: 256, ignoreEos: true });
  const oneS = (performance.now() - t1) / 1000;
  const batch = Array.from({ length: 8 }, (_, i) => prompts[i % prompts.length]!);
  const t8 = performance.now();
  const rs = await llm.generate(batch, { maxTokens: 256, ignoreEos: true });
  const batchS = (performance.now() - t8) / 1000;
  const batchTok = rs.reduce((n, r) => n + r.tokenIds.length, 0);
  out.generate = {
    samplesExact: exact, samples: prompts.length,
    batch1: { tokens: one!.tokenIds.length, seconds: oneS, tokensPerSecond: one!.tokenIds.length / oneS },
    batch8: { tokens: batchTok, seconds: batchS, tokensPerSecond: batchTok / batchS },
  };
  console.log(`generate 256 tokens: batch 1 ${(one!.tokenIds.length / oneS).toFixed(0)} tok/s; batch 8 ${(batchTok / batchS).toFixed(0)} tok/s (${batchTok} tokens in ${batchS.toFixed(2)} s)`);

  if (gpu) {
    const ckpt = join(work, "ckpt");
    const eng = join(work, "engine");
    await convertCheckpoint({ modelDir: HF, outputDir: ckpt, dtype: "bfloat16" });
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, buildConfig });
    const e = await evaluate({ model: eng, reference: ckpt, data: join(SHARED, "heldout-public.py.txt"), window: 512, maxWindows: 16 });
    out.eval = { engine: e.ppl, checkpoint: e.referencePpl, kl: e.kl, top1: e.top1Agreement, tokens: e.tokens, engineTokensPerSecond: e.tokensPerSecond };
    console.log(`eval 16×512: engine ppl ${e.ppl.toFixed(4)} vs checkpoint (CPU) ${e.referencePpl!.toFixed(4)}; KL mean ${e.kl!.mean.toExponential(2)} p99 ${e.kl!.p99.toExponential(2)} max ${e.kl!.max.toExponential(2)}; top-1 ${(100 * e.top1Agreement!).toFixed(2)}%; engine ${e.tokensPerSecond.toFixed(0)} tok/s`);
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
if (jsonOut) await Bun.write(jsonOut, `${JSON.stringify(out, null, 1)}\n`);
