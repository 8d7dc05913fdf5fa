#!/usr/bin/env bun
/**
 * Conversion throughput and memory against `cp` of the same bytes, measured in the same run.
 *
 *   bun bench/convert.ts [--size-gb 2] [--dir D] [--tp 1,4] [--workers N] [--runs 3] [--keep]
 *
 * 1. Writes a synthetic Llama-shaped HF checkpoint (bench/_common.ts).
 * 2. Times `cp` of the shards, plain and followed by `sync` (best of --runs, each after `sync`).
 * 3. Runs `convertCheckpoint` bf16→bf16 in a child per tp size (best of --runs), which reports time,
 *    max RSS and the peak of RssAnon (the process's own memory: heap, buffers) sampled after every
 *    tensor. RSS also counts file pages of the memory maps, which the kernel can drop at any time;
 *    RssAnon is the figure the goal (≤ 2 × largest tensor + 256 MB) is about.
 * Rates are over bytes written: at tp > 1 the replicated tensors (embedding, norms) are written once
 * per rank, so the output is larger than the input.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { convertCheckpoint } from "../src/convert.ts";
import { bestChildRun, cpBaselines, flags, MB, rssAnonKB, writeSyntheticLlama } from "./_common.ts";

const argv = process.argv.slice(2);
const flag = flags(argv);

// child: one conversion, JSON on stdout
if (argv[0] === "--child") {
  const [, modelDir, outputDir, tp, workers] = argv;
  let peakAnon = rssAnonKB();
  const t0 = performance.now();
  const res = await convertCheckpoint({
    modelDir: modelDir!, outputDir: outputDir!, tpSize: Number(tp), workers: Number(workers ?? 1),
    onProgress: () => { peakAnon = Math.max(peakAnon, rssAnonKB()); },
  });
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ seconds, bytes: res.bytes, peakAnonKB: peakAnon, maxRssKB: process.resourceUsage().maxRSS }));
  process.exit(0);
}

const runs = Number(flag("runs") ?? 3);
const tps = (flag("tp") ?? "1,4").split(",").map(Number);
const workers = Number(flag("workers") ?? 1);
const root = flag("dir") ?? fs.mkdtempSync(path.join(os.tmpdir(), "trtb-bench-convert-"));
const src = writeSyntheticLlama(path.join(root, "hf"), Number(flag("size-gb") ?? 2));
const cp = cpBaselines(src.files, path.join(root, "cp"), runs);

const rows: string[] = [];
for (const tp of tps) {
  const out = path.join(root, `out-tp${tp}`);
  const b = bestChildRun([process.execPath, import.meta.path, "--child", src.dir, out, String(tp), String(workers)], root, runs,
    () => fs.rmSync(out, { recursive: true, force: true }));
  fs.rmSync(out, { recursive: true, force: true });
  const rate = b.bytes / MB / b.seconds;
  const cpRate = src.bytes / MB / cp.plain;
  const cpSyncRate = src.bytes / MB / cp.durable;
  rows.push(`tp=${tp} workers=${Math.min(workers, tp)}  ${b.seconds.toFixed(2)} s  ${(b.bytes / MB).toFixed(0)} MB written  ${rate.toFixed(0)} MB/s  ` +
    `ratio vs cp ${(rate / cpRate).toFixed(2)}x, vs cp+sync ${(rate / cpSyncRate).toFixed(2)}x (goal ≥ 0.7)  ` +
    `maxRSS ${(b.maxRssKB / 1024).toFixed(0)} MiB (incl. mapped file pages)  peak RssAnon ${(b.peakAnonKB / 1024).toFixed(0)} MiB ` +
    `(goal ≤ 2×largest tensor + 256 MB = ${((2 * src.largestTensor + 256 * MB) / 2 ** 20).toFixed(0)} MiB)`);
}
console.log(`\nsource ${(src.bytes / MB).toFixed(0)} MB in ${src.files.length} shards, largest tensor ${(src.largestTensor / MB).toFixed(0)} MB`);
console.log(`cp (warm, best of ${runs}): ${cp.plain.toFixed(2)} s  ${(src.bytes / MB / cp.plain).toFixed(0)} MB/s;  cp + sync: ${cp.durable.toFixed(2)} s  ${(src.bytes / MB / cp.durable).toFixed(0)} MB/s`);
for (const r of rows) console.log(r);
if (!argv.includes("--keep")) fs.rmSync(root, { recursive: true, force: true });
