#!/usr/bin/env bun
/**
 * The README's main command: the whole workflow on the bundled tiny Llama.
 *
 *   bun examples/quickstart.ts
 *
 * Always: convert (tp=2) and run the CPU reference runner. With a CUDA GPU and the engine library
 * (`bun run build` on a machine with the CUDA toolkit): also build an engine and generate on the GPU.
 */
import { isTrtbError } from "../src/errors.ts";
import { engineLib } from "../src/ffi/engine.ts";
import { cudaLib } from "../src/ffi/index.ts";

const run = (script: string) => {
  const p = Bun.spawnSync([process.execPath, `${import.meta.dir}/${script}`], { stdout: "inherit", stderr: "inherit" });
  if (p.exitCode !== 0) process.exit(p.exitCode ?? 1);
};

console.log("== convert + CPU reference runner ==");
run("convert_llama.ts");

let gpu: string | null = null;
try {
  if (cudaLib().deviceCount() > 0) {
    engineLib();
    gpu = cudaLib().deviceProps(0).name;
  }
} catch (e) {
  console.log(`\n(no GPU engine here: ${isTrtbError(e) ? e.code : String(e)}; skipping build + GPU generation)`);
}
if (gpu) {
  console.log(`\n== convert → build → generate on ${gpu} ==`);
  run("e2e_gpu.ts");
}
