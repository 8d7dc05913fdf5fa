#!/usr/bin/env bun
/**
 * Conversion throughput and memory against `cp` of the same bytes, measured in the same run.
 *
 *   bun bench/convert.ts [--size-gb 2] [--dir D] [--tp 1,4] [--workers N] [--keep]
 *
 * 1. Writes a synthetic Llama-shaped HF checkpoint (BF16, two shards + index; H=4096, GQA 32/8,
 *    I=14336, V=32000, enough layers to reach --size-gb).
 * 2. Times `cp` of the shard files (page cache warm; best of three, each after `sync`).
 * 3. Runs `convertCheckpoint` bf16→bf16 in a child per tp size (best of three), which reports
 *    time, max RSS (/usr/bin/time -v) and the peak of RssAnon (the process's own memory: heap,
 *    buffers) sampled after every tensor. RSS also counts file pages of the memory maps, which the
 *    kernel can drop at any time; RssAnon is the figure the goal (≤ 2 × largest tensor + 256 MB)
 *    is about.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { convertCheckpoint } from "../src/convert.ts";
import { SafetensorsWriter } from "../src/format/safetensors.ts";

const MB = 1e6;
const RUNS = 3;
const argv = process.argv.slice(2);
const flag = (name: string) => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};

function rssAnonKB(): number {
  const s = fs.readFileSync("/proc/self/status", "utf8");
  return Number(/^RssAnon:\s+(\d+) kB/m.exec(s)?.[1] ?? Number.NaN);
}

// ---------------------------------------------------------------------------------------------
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

// ---------------------------------------------------------------------------------------------
const sizeGB = Number(flag("size-gb") ?? 2);
const root = flag("dir") ?? fs.mkdtempSync(path.join(os.tmpdir(), "trtb-bench-convert-"));
const tps = (flag("tp") ?? "1,4").split(",").map(Number);
const workers = Number(flag("workers") ?? 1);
const src = path.join(root, "hf");
fs.mkdirSync(src, { recursive: true });

const H = 4096, nH = 32, nKV = 8, d = 128, I = 14336, V = 32000;
const layerBytes = 2 * (H * (nH + 2 * nKV) * d + H * nH * d + 3 * H * I + 2 * H);
const L = Math.max(1, Math.ceil((sizeGB * 1e9 - 2 * V * H * 2) / layerBytes));

type Spec = { name: string; dtype: "BF16"; shape: number[] };
function layerSpecs(l: number): Spec[] {
  const P = `model.layers.${l}.`;
  return [
    { name: `${P}input_layernorm.weight`, dtype: "BF16", shape: [H] },
    { name: `${P}post_attention_layernorm.weight`, dtype: "BF16", shape: [H] },
    { name: `${P}self_attn.q_proj.weight`, dtype: "BF16", shape: [nH * d, H] },
    { name: `${P}self_attn.k_proj.weight`, dtype: "BF16", shape: [nKV * d, H] },
    { name: `${P}self_attn.v_proj.weight`, dtype: "BF16", shape: [nKV * d, H] },
    { name: `${P}self_attn.o_proj.weight`, dtype: "BF16", shape: [H, nH * d] },
    { name: `${P}mlp.gate_proj.weight`, dtype: "BF16", shape: [I, H] },
    { name: `${P}mlp.up_proj.weight`, dtype: "BF16", shape: [I, H] },
    { name: `${P}mlp.down_proj.weight`, dtype: "BF16", shape: [H, I] },
  ];
}

const noise = new Uint8Array(1 << 20);
for (let i = 0; i < noise.length; i++) noise[i] = (Math.imul(i, 2654435761) >>> 13) & 0x3f; // small bf16 values
function writeShard(file: string, specs: Spec[]) {
  const w = SafetensorsWriter.create(file, specs);
  for (const s of specs) w.writeWith(s.name, (dst) => {
    for (let o = 0; o < dst.length; o += noise.length) dst.set(noise.subarray(0, Math.min(noise.length, dst.length - o)), o);
  });
  w.commit();
}

const shards: Spec[][] = [[{ name: "model.embed_tokens.weight", dtype: "BF16", shape: [V, H] }], []];
for (let l = 0; l < L; l++) shards[l < L / 2 ? 0 : 1]!.push(...layerSpecs(l));
shards[1]!.push({ name: "model.norm.weight", dtype: "BF16", shape: [H] }, { name: "lm_head.weight", dtype: "BF16", shape: [V, H] });
const files = shards.map((_, i) => `model-0000${i + 1}-of-00002.safetensors`);
const weightMap: Record<string, string> = {};
shards.forEach((s, i) => { for (const t of s) weightMap[t.name] = files[i]!; });
console.log(`writing synthetic checkpoint: ${L} layers, H=${H}, I=${I}, V=${V} in ${src}`);
shards.forEach((s, i) => writeShard(path.join(src, files[i]!), s));
fs.writeFileSync(path.join(src, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
fs.writeFileSync(path.join(src, "config.json"), JSON.stringify({
  architectures: ["LlamaForCausalLM"], hidden_size: H, intermediate_size: I, num_attention_heads: nH, num_key_value_heads: nKV,
  num_hidden_layers: L, vocab_size: V, rms_norm_eps: 1e-5, torch_dtype: "bfloat16", rope_theta: 500000, max_position_embeddings: 8192, hidden_act: "silu",
}));
const bytes = files.reduce((a, f) => a + fs.statSync(path.join(src, f)).size, 0);
const largest = I * H * 2;

const sync = () => spawnSync("sync");
// warm the page cache
for (const f of files) spawnSync("cat", [path.join(src, f)], { stdio: ["ignore", "ignore", "inherit"] });

// Two baselines: plain `cp` (data left in the page cache), and `cp` + `sync` (durable on disk, as
// our writer is: every rank file is fsynced before it is renamed into place).
let cpBest = Infinity;
let cpSyncBest = Infinity;
const cpDst = path.join(root, "cp");
for (let r = 0; r < RUNS; r++) {
  for (const durable of [false, true]) {
    fs.rmSync(cpDst, { recursive: true, force: true });
    fs.mkdirSync(cpDst);
    sync();
    const t0 = performance.now();
    const res = spawnSync("cp", [...files.map((f) => path.join(src, f)), cpDst]);
    if (res.status !== 0) throw new Error(`cp failed: ${res.stderr}`);
    if (durable) sync();
    const t = (performance.now() - t0) / 1000;
    if (durable) cpSyncBest = Math.min(cpSyncBest, t);
    else cpBest = Math.min(cpBest, t);
  }
}
fs.rmSync(cpDst, { recursive: true, force: true });

const time = fs.existsSync("/usr/bin/time") ? "/usr/bin/time" : null;
const rows: string[] = [];
for (const tp of tps) {
  let best: { seconds: number; bytes: number; peakAnonKB: number; maxRssKB: number } | null = null;
  for (let r = 0; r < RUNS; r++) {
    const out = path.join(root, `out-tp${tp}`);
    fs.rmSync(out, { recursive: true, force: true });
    sync();
    const cmd = [process.execPath, import.meta.path, "--child", src, out, String(tp), String(workers)];
    // time's report goes to a file: its stderr writes fail on the non-blocking pipe Bun gives it.
    const report = path.join(root, "time.txt");
    const res = Bun.spawnSync(time ? [time, "-v", "-o", report, ...cmd] : cmd, { stdout: "pipe", stderr: "pipe" });
    if (res.exitCode !== 0) throw new Error(`conversion failed: ${res.stderr.toString()}`);
    const j = JSON.parse(res.stdout.toString().trim().split("\n").pop()!);
    const tv = time ? /Maximum resident set size \(kbytes\): (\d+)/.exec(fs.readFileSync(report, "utf8")) : null;
    if (tv) j.maxRssKB = Number(tv[1]);
    if (!best || j.seconds < best.seconds) best = j;
    fs.rmSync(out, { recursive: true, force: true });
  }
  const b = best!;
  // Rates are over bytes written: at tp > 1 the replicated tensors (embedding, norms) are written
  // once per rank, so the output is larger than the input.
  const rate = b.bytes / MB / b.seconds;
  const cpRate = bytes / MB / cpBest;
  const cpSyncRate = bytes / MB / cpSyncBest;
  rows.push(`tp=${tp} workers=${Math.min(workers, tp)}  ${b.seconds.toFixed(2)} s  ${(b.bytes / MB).toFixed(0)} MB written  ${rate.toFixed(0)} MB/s  ratio vs cp ${(rate / cpRate).toFixed(2)}x, vs cp+sync ${(rate / cpSyncRate).toFixed(2)}x (goal ≥ 0.7)  ` +
    `maxRSS ${(b.maxRssKB / 1024).toFixed(0)} MiB (incl. mapped file pages)  peak RssAnon ${(b.peakAnonKB / 1024).toFixed(0)} MiB ` +
    `(goal ≤ 2×largest tensor + 256 MB = ${((2 * largest + 256 * MB) / 2 ** 20).toFixed(0)} MiB)`);
}
console.log(`\nsource ${(bytes / MB).toFixed(0)} MB in ${files.length} shards, largest tensor ${(largest / MB).toFixed(0)} MB`);
console.log(`cp (warm, best of ${RUNS}): ${cpBest.toFixed(2)} s  ${(bytes / MB / cpBest).toFixed(0)} MB/s;  cp + sync: ${cpSyncBest.toFixed(2)} s  ${(bytes / MB / cpSyncBest).toFixed(0)} MB/s`);
for (const r of rows) console.log(r);
if (!argv.includes("--keep")) fs.rmSync(root, { recursive: true, force: true });
