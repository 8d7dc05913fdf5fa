#!/usr/bin/env bun
/**
 * The README's main command: Python code generated from a prompt by the bundled tiny-pycode model
 * (a 5.8 M-parameter Llama trained on Python source, with its own tokenizer).
 *
 *   bun examples/quickstart.ts [prompt] [out_dir]
 *
 * 1. convert: Hugging Face dir → TRT-LLM checkpoint (the tokenizer files travel with it)
 * 2. with a CUDA GPU and the engine library (`bun run build` where the CUDA toolkit is): trtllm-build
 *    → engine directory, then generate on the GPU; elsewhere: generate with the CPU reference runner
 *    on the checkpoint. Greedy decoding, streamed to the screen.
 * 3. with a GPU: also examples/e2e_gpu.ts (ids-level checks against the CPU reference runner).
 */
import { join } from "node:path";
import { buildCheckpoint, convertCheckpoint, gpuAvailable, isTrtbError, LLM } from "../src/index.ts";
import { cudaLib } from "../src/ffi/index.ts";

const prompt = process.argv[2] ?? "import numpy as np\n\n\nclass ";
const work = process.argv[3] ?? "tllm_checkpoint_quickstart";
const hfDir = join(import.meta.dir, "tiny-pycode");
const ckpt = join(work, "checkpoint");
const engineDir = join(work, "engine");

const c = await convertCheckpoint({ modelDir: hfDir, outputDir: ckpt });
console.log(`== converted ${hfDir} → ${ckpt} (${c.config.architecture}, ${c.config.dtype}, + ${c.tokenizerFiles.join(", ")}) in ${c.seconds.toFixed(2)} s`);

let gpu: string | null = null;
try {
  if (gpuAvailable()) gpu = cudaLib().deviceProps(0).name;
} catch (e) {
  console.log(`(no GPU: ${isTrtbError(e) ? e.code : String(e)})`);
}
let model = ckpt;
if (gpu) {
  const b = await buildCheckpoint({ checkpointDir: ckpt, outputDir: engineDir, buildConfig: { max_batch_size: 8, max_seq_len: 1024 } });
  console.log(`== built ${engineDir} on ${gpu} in ${b.seconds.toFixed(2)} s`);
  model = engineDir;
} else {
  console.log("== no CUDA GPU / engine library here: generating with the CPU reference runner (fp32)");
}

using llm = await LLM.create({ model, backend: gpu ? "gpu" : "cpu" });
console.log(`== generating on the ${llm.backend} (greedy, 80 tokens):\n`);
process.stdout.write(prompt);
const it = llm.generateStream(prompt, { maxTokens: 80 });
let r = await it.next();
while (!r.done) {
  process.stdout.write(r.value);
  r = await it.next();
}
console.log(`\n\n== ${r.value.tokenIds.length} tokens in ${r.value.timing.seconds.toFixed(2)} s (${r.value.timing.tokensPerSecond.toFixed(0)} tok/s), finish: ${r.value.finishReason}`);

if (gpu) {
  console.log("\n== examples/e2e_gpu.ts: convert → build → generate on the tiny Llama, checked against the CPU reference runner ==");
  const p = Bun.spawnSync([process.execPath, join(import.meta.dir, "e2e_gpu.ts")], { stdout: "inherit", stderr: "inherit" });
  if (p.exitCode !== 0) process.exit(p.exitCode ?? 1);
}
