#!/usr/bin/env bun
/**
 * Conversion throughput and memory against `cp` of the same bytes, measured in the same run.
 *
 *   bun bench/convert.ts [--size-gb 2] [--dir D] [--tp 1,4] [--workers N] [--runs 3] [--keep]
 *
 * --workers: ranks written at once (default: the library's, one per core, at most one per rank).
 *
 * 1. Writes a synthetic Llama-shaped HF checkpoint (bench/_common.ts).
 * 2. Repeats --runs times, interleaved: `cp` of the shards, `cp` + `sync`, then `convertCheckpoint`
 *    bf16→bf16 in a child per tp size; each step starts after `sync` with its output removed.
 *    Disk and memory speed on the 2-core VM swing 2–5× between minutes, so the cases are
 *    interleaved (a slow minute hits all of them) and the best of each is kept.
 * 3. The child reports time, max RSS and the peak of RssAnon (the process's own memory: heap,
 *    buffers) sampled after every tensor. RSS also counts file pages of the memory maps, which the
 *    kernel can drop at any time; RssAnon is the figure the memory goal (≤ 2 × largest tensor +
 *    256 MB) is about.
 * Rates are over bytes written: at tp > 1 the replicated tensors (embedding, norms) are written once
 * per rank, so the output is larger than the input. The ratio is conversion MB/s over `cp` + `sync`
 * MB/s (goal ≥ 0.8, issue 17).
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { convertCheckpoint } from "../src/convert.ts";
import { type ChildResult, childRun, flags, MB, rssAnonKB, timeCp, writeSyntheticLlama } from "./_common.ts";

const GOAL = 0.8;
const argv = process.argv.slice(2);
const flag = flags(argv);

// child: one conversion, JSON on stdout
if (argv[0] === "--child") {
  const [, modelDir, outputDir, tp, workers] = argv;
  let peakAnon = rssAnonKB();
  const t0 = performance.now();
  const res = await convertCheckpoint({
    modelDir: modelDir!, outputDir: outputDir!, tpSize: Number(tp), workers: workers === "default" ? undefined : Number(workers),
    onProgress: () => { peakAnon = Math.max(peakAnon, rssAnonKB()); },
  });
  const seconds = (performance.now() - t0) / 1000;
  console.log(JSON.stringify({ seconds, bytes: res.bytes, peakAnonKB: peakAnon, maxRssKB: process.resourceUsage().maxRSS }));
  process.exit(0);
}

const runs = Number(flag("runs") ?? 3);
const tps = (flag("tp") ?? "1,4").split(",").map(Number);
const workers = flag("workers") ?? "default";
const root = flag("dir") ?? fs.mkdtempSync(path.join(os.tmpdir(), "trtb-bench-convert-"));
fs.mkdirSync(root, { recursive: true });
const src = writeSyntheticLlama(path.join(root, "hf"), Number(flag("size-gb") ?? 2));

const cpTimes: number[] = [];
const cpSyncTimes: number[] = [];
const conv = new Map<number, ChildResult[]>(tps.map((tp) => [tp, []]));
for (let r = 0; r < runs; r++) {
  cpTimes.push(timeCp(src.files, path.join(root, "cp"), false));
  cpSyncTimes.push(timeCp(src.files, path.join(root, "cp"), true));
  const line = [`run ${r + 1}/${runs}: cp ${cpTimes.at(-1)!.toFixed(2)} s, cp+sync ${cpSyncTimes.at(-1)!.toFixed(2)} s`];
  for (const tp of tps) {
    const out = path.join(root, `out-tp${tp}`);
    fs.rmSync(out, { recursive: true, force: true });
    const j = childRun([process.execPath, import.meta.path, "--child", src.dir, out, String(tp), workers], root);
    fs.rmSync(out, { recursive: true, force: true });
    conv.get(tp)!.push(j);
    line.push(`tp${tp} ${j.seconds.toFixed(2)} s`);
  }
  console.log(line.join(", "));
}

const cp = Math.min(...cpTimes);
const cpSync = Math.min(...cpSyncTimes);
const cpRate = src.bytes / MB / cp;
const cpSyncRate = src.bytes / MB / cpSync;
console.log(`\nsource ${(src.bytes / MB).toFixed(0)} MB in ${src.files.length} shards, largest tensor ${(src.largestTensor / MB).toFixed(0)} MB; best of ${runs} interleaved runs`);
console.log(`cp: ${cp.toFixed(2)} s  ${cpRate.toFixed(0)} MB/s;  cp + sync: ${cpSync.toFixed(2)} s  ${cpSyncRate.toFixed(0)} MB/s`);
for (const tp of tps) {
  const b = conv.get(tp)!.reduce((a, j) => (j.seconds < a.seconds ? j : a));
  const rate = b.bytes / MB / b.seconds;
  const ratio = rate / cpSyncRate;
  const w = workers === "default" ? `default (${Math.min(tp, os.availableParallelism())})` : workers;
  console.log(`tp=${tp} workers=${w}  ${b.seconds.toFixed(2)} s  ${(b.bytes / MB).toFixed(0)} MB written  ${rate.toFixed(0)} MB/s  ` +
    `ratio vs cp ${(rate / cpRate).toFixed(2)}x, vs cp+sync ${ratio.toFixed(2)}x (goal ≥ ${GOAL}: ${ratio >= GOAL ? "met" : "not met"})  ` +
    `maxRSS ${(b.maxRssKB / 1024).toFixed(0)} MiB (incl. mapped file pages)  peak RssAnon ${(b.peakAnonKB / 1024).toFixed(0)} MiB ` +
    `(goal ≤ 2×largest tensor + 256 MB = ${((2 * src.largestTensor + 256 * MB) / 2 ** 20).toFixed(0)} MiB)`);
}
if (!argv.includes("--keep")) fs.rmSync(root, { recursive: true, force: true });
