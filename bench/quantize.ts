#!/usr/bin/env bun
/**
 * Quantization throughput: CPU against `cp` of the same bytes, GPU kernels against the GPU's own
 * device-to-device copy bandwidth, and GPU end to end against a host-to-device copy — all measured
 * in the same run.
 *
 *   bun bench/quantize.ts [--size-gb 2] [--dir D] [--formats int4_awq_rtn,fp8_rowwise] [--device cpu|cuda]
 *                         [--runs 3] [--json FILE] [--keep] [--kernels-only]
 *
 * 1. Writes a synthetic Llama-shaped HF checkpoint (bf16 values of a few 1e-2, two shards + index;
 *    H=4096, GQA 32/8, I=14336, V=32000, enough layers to reach --size-gb).
 * 2. CPU: `cp` of the shards (page cache warm, best of --runs; also `cp` + `sync`, since our writer
 *    fsyncs), then `quantize()` per format in a child
 *    process (best of --runs) with time, max RSS (/usr/bin/time -v, reported to a file: its stderr
 *    breaks under Bun's pipes) and the peak RssAnon sampled after every tensor. Rates are source bytes
 *    per second; the ratio is quantize's rate over cp's.
 * 3. --device cuda, in addition:
 *    - device copy bandwidth: cudaMemcpy D2D of 1 GiB, counting bytes read + written;
 *    - kernel bandwidth per format on one layer's MLP matrices already on the device (14336×4096 and
 *      4096×14336 bf16), counting source bytes read + quantized bytes and scales written, as a share
 *      of the copy bandwidth; plus a bit-for-bit check against the CPU kernel;
 *    - host-to-device: upload of every source tensor from the mapped shards (what the end-to-end
 *      path does), and `quantize(..., { device: "cuda" })` end to end, as a share of that.
 * Timings of GPU work: host clock around N launches and one stream synchronize (METHOD.md), median
 * of 5 such measurements after a warm-up.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { cudaLib } from "../src/ffi/index.ts";
import { openHFCheckpoint } from "../src/format/hf-checkpoint.ts";
import { Mapping } from "../src/mapping.ts";
import { cpuQuantBackend } from "../src/quant/backend.ts";
import type { QuantKernelParams } from "../src/quant/kernel.ts";
import { quantSizes } from "../src/quant/kernel.ts";
import { quantize } from "../src/quantize.ts";
import { schemeForQformat } from "../src/quant/apply.ts";
import type { LinearInfo } from "../src/quant/modules.ts";

import { bestChildRun, type ChildResult, cpBaselines as cpRuns, DIMS, fillNoise, flags, MB, rssAnonKB, writeSyntheticLlama } from "./_common.ts";

const argv = process.argv.slice(2);
const flag = flags(argv);

// ---------------------------------------------------------------------------------------------
// child: one quantization, JSON on stdout
if (argv[0] === "--child") {
  const [, modelDir, outputDir, qformat, device] = argv;
  let peakAnon = rssAnonKB();
  const t0 = performance.now();
  const res = await quantize(modelDir!, outputDir!, { quant_algo: schemeForQformat(qformat!).algo, group_size: 128 }, {
    mapping: new Mapping(), device: device as "cpu" | "cuda",
    onProgress: () => { peakAnon = Math.max(peakAnon, rssAnonKB()); },
  });
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ seconds, bytes: res.bytes, peakAnonKB: peakAnon, maxRssKB: process.resourceUsage().maxRSS }));
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------
const sizeGB = Number(flag("size-gb") ?? 2);
const RUNS = Number(flag("runs") ?? 3);
const device = (flag("device") ?? "cpu") as "cpu" | "cuda";
const formats = (flag("formats") ?? "int4_awq_rtn,fp8_rowwise").split(",");
const root = flag("dir") ?? fs.mkdtempSync(path.join(os.tmpdir(), "trtb-bench-quant-"));
const jsonOut = flag("json");
/** Only the GPU copy and kernel measurements (no checkpoint, no CPU, no end to end). */
const kernelsOnly = argv.includes("--kernels-only");
const src = path.join(root, "hf");
fs.mkdirSync(src, { recursive: true });
const results: Record<string, unknown> = { sizeGB, formats, device, host: { cpus: os.cpus().length, model: os.cpus()[0]?.model } };

const { H, I } = DIMS;

const rows: string[] = [];
let files: string[] = [];

/** The synthetic HF checkpoint in `src`; returns the shard bytes. */
function prepareCheckpoint(): number {
  const syn = writeSyntheticLlama(src, sizeGB);
  files = syn.files;
  results.layers = syn.layers;
  return syn.bytes;
}

const cpBaselines = () => cpRuns(files, path.join(root, "cp"), RUNS);

/** Best of RUNS end-to-end quantizations in a child process. */
function runChild(qformat: string, dev: "cpu" | "cuda"): ChildResult {
  const out = path.join(root, `out-${qformat}-${dev}`);
  const best = bestChildRun([process.execPath, import.meta.path, "--child", src, out, qformat, dev], root, RUNS,
    () => fs.rmSync(out, { recursive: true, force: true }));
  if (!argv.includes("--keep")) fs.rmSync(out, { recursive: true, force: true });
  return best;
}

let bytes = 0;
let cp = { plain: Number.NaN, durable: Number.NaN };
if (!kernelsOnly) {
  bytes = prepareCheckpoint();
  results.sourceBytes = bytes;
  cp = cpBaselines();
  results.cp = { seconds: cp.plain, MBps: bytes / MB / cp.plain, syncSeconds: cp.durable, syncMBps: bytes / MB / cp.durable };
  rows.push(`source ${(bytes / MB).toFixed(0)} MB (${results.layers} layers) in ${files.length} shards; ${os.cpus().length} CPUs`);
  rows.push(`cp (warm, best of ${RUNS}): ${cp.plain.toFixed(2)} s  ${(bytes / MB / cp.plain).toFixed(0)} MB/s;  cp + sync: ${cp.durable.toFixed(2)} s  ${(bytes / MB / cp.durable).toFixed(0)} MB/s`);
  const largest = I * H * 2;
  for (const qf of formats) {
    const b = runChild(qf, "cpu");
    const rate = bytes / MB / b.seconds;
    const vsCp = (bytes / MB / cp.plain);
    const vsSync = (bytes / MB / cp.durable);
    results[`cpu_${qf}`] = { ...b, MBps: rate, ratioVsCp: rate / vsCp, ratioVsCpSync: rate / vsSync };
    rows.push(`cpu  ${qf.padEnd(13)} ${b.seconds.toFixed(2)} s  ${rate.toFixed(0)} MB/s of source (${(b.bytes / MB).toFixed(0)} MB written)  ratio vs cp ${(rate / vsCp).toFixed(2)}x, vs cp+sync ${(rate / vsSync).toFixed(2)}x  ` +
      `maxRSS ${(b.maxRssKB / 1024).toFixed(0)} MiB (incl. mapped pages)  peak RssAnon ${(b.peakAnonKB / 1024).toFixed(0)} MiB (largest tensor ${(largest / 2 ** 20).toFixed(0)} MiB)`);
  }
}

// ---- GPU --------------------------------------------------------------------------------------
if (device === "cuda") {
  const cuda = cudaLib();
  const props = cuda.deviceProps(0);
  results.gpu = { name: props.name, sm: `${props.major}${props.minor}`, multiprocessors: props.multiprocessors };
  const stream = cuda.createStream(0);
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const timeIt = (n: number, fn: () => void): number => {
    fn();
    stream.synchronize();
    const ts: number[] = [];
    for (let rep = 0; rep < 5; rep++) {
      const t0 = performance.now();
      for (let i = 0; i < n; i++) fn();
      stream.synchronize();
      ts.push((performance.now() - t0) / 1000 / n);
    }
    return median(ts);
  };

  // device copy bandwidth
  const copyBytes = 1 << 30;
  const a = cuda.alloc(copyBytes);
  const b = cuda.alloc(copyBytes);
  {
    const h = new Uint8Array(copyBytes);
    fillNoise(h);
    a.upload(h, stream);
  }
  const tCopy = timeIt(10, () => cuda.copy(a, b, stream));
  const d2d = (2 * copyBytes) / tCopy / 1e9;
  results.d2dGBps = d2d;
  rows.push(`gpu  ${props.name}: device copy ${d2d.toFixed(0)} GB/s (read + write, 1 GiB)`);

  // kernels on one layer's MLP matrices
  const cpu = cpuQuantBackend();
  for (const qf of formats) {
    const scheme = schemeForQformat(qf);
    let kBytes = 0;
    let kTime = 0;
    let identical = true;
    for (const [rowsN, colsN, kind] of [[I, H, "fc"], [H, I, "proj"]] as const) {
      const l: LinearInfo = { module: `transformer.layers.1.mlp.${kind}`, localLayer: 1, layer: 1, kind, shape: [rowsN, colsN], rowParallel: kind === "proj" };
      const p: QuantKernelParams = scheme.kernelParams(l, "BF16", scheme.configure({ group_size: 128 }, { moe: undefined, architecture: "LlamaForCausalLM" } as never));
      const sz = quantSizes(p);
      const srcBytes = rowsN * colsN * 2;
      const host = new Uint8Array(srcBytes);
      fillNoise(host);
      const ds = a.subarray(0, srcBytes);
      ds.upload(host, stream);
      const dq = b.subarray(0, sz.q);
      const dsc = cuda.alloc(sz.scales);
      const t = timeIt(20, () => cuda.quantize(p, ds, dq, dsc, stream));
      kBytes += srcBytes + sz.q + sz.scales;
      kTime += t;
      const q = new Uint8Array(sz.q), s = new Uint8Array(sz.scales);
      cpu.quantize(p, host, q, s);
      const gq = dq.download(undefined, stream), gs = dsc.download(undefined, stream);
      identical &&= Buffer.compare(gq, q) === 0 && Buffer.compare(gs, s) === 0;
      dsc.destroy();
    }
    const gbps = kBytes / kTime / 1e9;
    results[`kernel_${qf}`] = { GBps: gbps, shareOfD2D: gbps / d2d, identicalToCpu: identical };
    rows.push(`gpu  ${qf.padEnd(13)} kernel ${gbps.toFixed(0)} GB/s = ${((gbps / d2d) * 100).toFixed(0)}% of device copy  (${(kTime * 1e6).toFixed(0)} us for one layer's fc + proj; bit-identical to CPU: ${identical})`);
  }
  a.destroy();
  b.destroy();

  if (kernelsOnly) {
    stream.destroy();
  } else {
    // host-to-device copy of every source tensor from the mapped shards
    const ck = openHFCheckpoint(src);
    const names = ck.names();
    const maxT = Math.max(...names.map((n) => ck.get(n).bytes().byteLength));
    const dbuf = cuda.alloc(maxT);
    const h2dOnce = () => { for (const n of names) { const v = ck.get(n).bytes(); dbuf.subarray(0, v.byteLength).upload(v, stream); } };
    h2dOnce();
    let h2dBest = Infinity;
    for (let r = 0; r < RUNS; r++) {
      const t0 = performance.now();
      h2dOnce();
      h2dBest = Math.min(h2dBest, (performance.now() - t0) / 1000);
    }
    dbuf.destroy();
    ck.close();
    const h2dRate = bytes / MB / h2dBest;
    results.h2d = { seconds: h2dBest, MBps: h2dRate };
    rows.push(`gpu  host→device copy of the source tensors: ${h2dBest.toFixed(2)} s  ${h2dRate.toFixed(0)} MB/s`);
    for (const qf of formats) {
      const e = runChild(qf, "cuda");
      const rate = bytes / MB / e.seconds;
      const cpRate = bytes / MB / cp.plain;
      results[`cuda_${qf}`] = { ...e, MBps: rate, shareOfH2D: rate / h2dRate, ratioVsCp: rate / cpRate };
      rows.push(`gpu  ${qf.padEnd(13)} end to end ${e.seconds.toFixed(2)} s  ${rate.toFixed(0)} MB/s = ${((rate / h2dRate) * 100).toFixed(0)}% of the host→device copy rate; ratio vs cp ${(rate / cpRate).toFixed(2)}x`);
    }
    stream.destroy();
  }
}

console.log("");
for (const r of rows) console.log(r);
if (jsonOut) fs.writeFileSync(jsonOut, JSON.stringify(results, null, 2));
if (!argv.includes("--keep")) fs.rmSync(root, { recursive: true, force: true });
