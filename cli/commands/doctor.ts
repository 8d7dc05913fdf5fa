/** `trtllm doctor`: what this installation can do here — native library, CUDA driver and GPUs. */
import { defineCommand } from "citty";
import { cudaLib, isTrtbError, nativeLib, setLogLevel } from "../../src/index.ts";
import { commonArgs } from "./_shared.ts";

export default defineCommand({
  meta: { name: "doctor", description: "Report the native library, CUDA driver and GPUs this installation finds (set TRTB_DEBUG_FFI=1 to see every path tried)" },
  args: {
    json: { type: "boolean", description: "Print the report as JSON", default: false },
    ...commonArgs,
  },
  run({ args }) {
    setLogLevel(args.verbose ? "debug" : args.log_level);
    const native = nativeLib();
    const report: Record<string, unknown> = {
      platform: `${process.platform}-${process.arch}`,
      bun: Bun.version,
      native: native ? { path: native.path, abi: native.abiVersion } : { error: "not loaded; conversions use the TypeScript fallback (slower)" },
    };
    try {
      const cuda = cudaLib();
      const n = cuda.deviceCount();
      report.cuda = { devices: Array.from({ length: n }, (_, i) => cuda.deviceProps(i)) };
    } catch (e) {
      report.cuda = { error: isTrtbError(e) ? `${e.code}: ${e.message}` : String(e) };
    }
    if (args.json) return void console.log(JSON.stringify(report, null, 2));
    console.log(`platform  ${report.platform} (bun ${report.bun})`);
    console.log(`native    ${native ? `${native.path} (ABI ${native.abiVersion})` : "not loaded: conversion falls back to TypeScript"}`);
    const c = report.cuda as { devices?: { name: string; major: number; minor: number; totalMemory?: number }[]; error?: string };
    if (c.error) console.log(`cuda      ${c.error}`);
    else for (const [i, d] of c.devices!.entries()) console.log(`gpu ${i}     ${d.name} (sm_${d.major}${d.minor})`);
  },
});
