#!/usr/bin/env bun
/**
 * Quick check of the native layer on this machine: which libraries load, which GPU, and rough
 * throughput of convert / transpose on CPU and GPU (one run each, after a warm-up).
 *
 *   bun scripts/gpu-smoke.ts [--mib 256]
 */
import { parseArgs } from "node:util";
import { cudaLib, nativeLib } from "../src/ffi/index.ts";
import { isTrtbError } from "../src/errors.ts";

const { values } = parseArgs({ args: process.argv.slice(2), options: { mib: { type: "string", default: "256" } } });
const mib = Number(values.mib);
const n = Math.floor((mib << 20) / 4); // f32 elements
const side = Math.floor(Math.sqrt(n));

function time(label: string, bytesMoved: number, fn: () => void): void {
  fn(); // warm-up
  const t0 = performance.now();
  fn();
  const ms = performance.now() - t0;
  console.log(`${label.padEnd(44)} ${ms.toFixed(2).padStart(9)} ms  ${(bytesMoved / ms / 1e6).toFixed(1).padStart(8)} GB/s`);
}

const cpu = nativeLib();
console.log(`libtrtb: ${cpu ? `${cpu.path} (ABI ${cpu.abiVersion})` : "not found"}`);
if (cpu) {
  const src = new Uint8Array(n * 4);
  const dst = new Uint8Array(n * 2);
  const t = new Uint8Array(side * side * 4);
  time(`cpu convert F32->BF16 ${mib} MiB`, n * 6, () => cpu.convert(src, "F32", dst, "BF16"));
  time(`cpu convert F32->F16 ${mib} MiB`, n * 6, () => cpu.convert(src, "F32", dst, "F16"));
  time(`cpu transpose ${side}x${side} f32`, side * side * 8, () => cpu.transpose2d(src.subarray(0, t.byteLength), t, side, side, 4));
}

try {
  const c = cudaLib();
  const p = c.deviceProps(0);
  console.log(
    `libtrtb_cuda: ${c.path} (ABI ${c.abiVersion}, runtime ${c.runtimeVersion}, driver ${c.driverVersion}, features ${JSON.stringify(c.features)})`,
  );
  console.log(`device 0 of ${c.deviceCount()}: ${p.name}, sm_${p.major}${p.minor}, ${p.multiprocessors} SMs, ${(p.totalMemory / 2 ** 30).toFixed(1)} GiB`);
  using a = c.alloc(n * 4);
  using b = c.alloc(n * 2);
  using t = c.alloc(side * side * 4);
  const s = c.defaultStream(0);
  time(`gpu convert F32->BF16 ${mib} MiB`, n * 6, () => {
    c.convert(a, "F32", b, "BF16");
    s.synchronize();
  });
  time(`gpu convert F32->F16 ${mib} MiB`, n * 6, () => {
    c.convert(a, "F32", b, "F16");
    s.synchronize();
  });
  time(`gpu transpose ${side}x${side} f32`, side * side * 8, () => {
    c.transpose2d(a.subarray(0, side * side * 4), t, side, side, 4);
    s.synchronize();
  });
  const host = new Uint8Array(n * 4);
  time(`upload ${mib} MiB (pageable)`, n * 4, () => a.upload(host));
} catch (e) {
  console.log(`libtrtb_cuda: ${isTrtbError(e) ? `${e.code}: ${e.message.split("\n")[0]}` : String(e)}`);
}
