#!/usr/bin/env bun
/**
 * Convert a Hugging Face Llama checkpoint with the library API, as upstream's examples do:
 *
 *   bun examples/convert_llama.ts [hf_dir] [out_dir] [tp]
 *
 * fromHuggingFace → saveCheckpoint for every rank, then fromCheckpoint to load one back, and the
 * CPU reference runner for a few greedy tokens. Defaults to the bundled tiny model.
 */
import { join } from "node:path";
import { LLaMAForCausalLM, loadCpuRunner, Mapping } from "../src/index.ts";

const hfDir = process.argv[2] ?? join(import.meta.dir, "tiny-llama");
const outDir = process.argv[3] ?? "tllm_checkpoint_tiny";
const tp = Number(process.argv[4] ?? 2);

for (let rank = 0; rank < tp; rank++) {
  // Each rank is a lazy view over the mapped source; saving copies each byte once.
  using model = await LLaMAForCausalLM.fromHuggingFace(hfDir, { dtype: "auto", mapping: new Mapping({ tpSize: tp, rank }) });
  model.saveCheckpoint(outDir, { saveConfig: rank === 0 });
  console.log(`rank ${rank}: ${model.weights.size} tensors, ${(model.totalBytes() / 1e6).toFixed(2)} MB`);
}

using back = await LLaMAForCausalLM.fromCheckpoint(outDir, 0);
console.log(`read back rank 0: ${back.config.architecture}, tp=${back.mapping.tpSize}, dtype ${back.config.dtype}`);

const runner = await loadCpuRunner(outDir);
const prompt = [1, 15, 42, 7, 99];
console.log(`greedy after [${prompt}]: ${runner.greedy(prompt, 8).slice(prompt.length).join(" ")}`);
