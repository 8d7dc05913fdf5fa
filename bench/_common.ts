/**
 * Shared pieces of the benchmarks: flags, a synthetic Llama-shaped HF checkpoint, the `cp`
 * baselines, and best-of-N child runs with memory figures. Each bench measures its baseline in the
 * same run as what it compares.
 */
import { spawnSync } from "node:child_process";
import fs from "node:fs";
import path from "node:path";
import { SafetensorsWriter } from "../src/format/safetensors.ts";

export const MB = 1e6;

export function flags(argv: string[]) {
  return (name: string): string | undefined => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
}

/** The process's own memory (heap, buffers), without mapped file pages. */
export function rssAnonKB(): number {
  const s = fs.readFileSync("/proc/self/status", "utf8");
  return Number(/^RssAnon:\s+(\d+) kB/m.exec(s)?.[1] ?? Number.NaN);
}

export const sync = () => void spawnSync("sync");

// ---------------------------------------------------------------------------------------------
// Synthetic checkpoint: Llama-3-8B layer shapes (H 4096, GQA 32/8, I 14336) with a 32k vocab,
// as many layers as reach `sizeGB`, in two shards + index.

export const DIMS = { H: 4096, nH: 32, nKV: 8, d: 128, I: 14336, V: 32000 };
type Spec = { name: string; dtype: "BF16"; shape: number[] };

function layerSpecs(l: number): Spec[] {
  const { H, nH, nKV, d, I } = DIMS;
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

// Realistic weights: bf16 of uniform(-0.05, 0.05) (never zeros or denormals, which can time differently).
const noise = new Uint8Array(1 << 22);
{
  const dv = new DataView(noise.buffer);
  const f = new Float32Array(1);
  const u = new Uint32Array(f.buffer);
  let s = 0x12345678;
  for (let i = 0; i < noise.length / 2; i++) {
    s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
    f[0] = (s / 2 ** 32 - 0.5) * 0.1;
    dv.setUint16(i * 2, u[0]! >>> 16, true);
  }
}
let phaseCounter = 0;
/** Fill `dst` with the noise, starting at a different even offset for every tensor. */
export function fillNoise(dst: Uint8Array): void {
  let phase = (phaseCounter++ * 8198) % noise.length;
  for (let o = 0; o < dst.length; ) {
    const n = Math.min(noise.length - phase, dst.length - o);
    dst.set(noise.subarray(phase, phase + n), o);
    o += n;
    phase = 0;
  }
}

export interface Synthetic {
  dir: string;
  files: string[];
  bytes: number;
  layers: number;
  largestTensor: number;
}

/** Write the checkpoint into `dir` (created) and warm the page cache with it. */
export function writeSyntheticLlama(dir: string, sizeGB: number): Synthetic {
  const { H, nH, nKV, d, I, V } = DIMS;
  const layerBytes = 2 * (H * (nH + 2 * nKV) * d + H * nH * d + 3 * H * I + 2 * H);
  const L = Math.max(1, Math.ceil((sizeGB * 1e9 - 2 * V * H * 2) / layerBytes));
  const shards: Spec[][] = [[{ name: "model.embed_tokens.weight", dtype: "BF16", shape: [V, H] }], []];
  for (let l = 0; l < L; l++) shards[l < L / 2 ? 0 : 1]!.push(...layerSpecs(l));
  shards[1]!.push({ name: "model.norm.weight", dtype: "BF16", shape: [H] }, { name: "lm_head.weight", dtype: "BF16", shape: [V, H] });
  const files = shards.map((_, i) => `model-0000${i + 1}-of-00002.safetensors`);
  fs.mkdirSync(dir, { recursive: true });
  console.log(`writing synthetic checkpoint: ${L} layers, H=${H}, I=${I}, V=${V} in ${dir}`);
  const weightMap: Record<string, string> = {};
  shards.forEach((specs, i) => {
    const w = SafetensorsWriter.create(path.join(dir, files[i]!), specs);
    for (const s of specs) {
      w.writeWith(s.name, fillNoise);
      weightMap[s.name] = files[i]!;
    }
    w.commit();
  });
  fs.writeFileSync(path.join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  fs.writeFileSync(path.join(dir, "config.json"), JSON.stringify({
    architectures: ["LlamaForCausalLM"], hidden_size: H, intermediate_size: I, num_attention_heads: nH, num_key_value_heads: nKV,
    num_hidden_layers: L, vocab_size: V, rms_norm_eps: 1e-5, torch_dtype: "bfloat16", rope_theta: 500000, max_position_embeddings: 8192, hidden_act: "silu",
  }));
  for (const f of files) spawnSync("cat", [path.join(dir, f)], { stdio: ["ignore", "ignore", "inherit"] });
  const bytes = files.reduce((a, f) => a + fs.statSync(path.join(dir, f)).size, 0);
  return { dir, files: files.map((f) => path.join(dir, f)), bytes, layers: L, largestTensor: I * H * 2 };
}

/**
 * Seconds of one `cp` of `files` into a fresh `scratchDir`, after `sync`: plain (data left in the
 * page cache) or followed by `sync` (durable, as our writer is: every rank file is fsynced before
 * it is renamed into place).
 */
export function timeCp(files: string[], scratchDir: string, withSync: boolean): number {
  fs.rmSync(scratchDir, { recursive: true, force: true });
  fs.mkdirSync(scratchDir);
  sync();
  const t0 = performance.now();
  const res = spawnSync("cp", [...files, scratchDir]);
  if (res.status !== 0) throw new Error(`cp failed: ${res.stderr}`);
  if (withSync) sync();
  const t = (performance.now() - t0) / 1000;
  fs.rmSync(scratchDir, { recursive: true, force: true });
  return t;
}

/** Best-of-`runs` seconds of `cp` of `files`, plain and followed by `sync` (see timeCp). */
export function cpBaselines(files: string[], scratchDir: string, runs: number): { plain: number; durable: number } {
  let plain = Infinity;
  let durable = Infinity;
  for (let r = 0; r < runs; r++) {
    plain = Math.min(plain, timeCp(files, scratchDir, false));
    durable = Math.min(durable, timeCp(files, scratchDir, true));
  }
  return { plain, durable };
}

export interface ChildResult {
  seconds: number;
  bytes: number;
  peakAnonKB: number;
  maxRssKB: number;
}

/**
 * Run `cmd` (a child printing ChildResult JSON last) once after `sync`. Max RSS comes from
 * `/usr/bin/time -v`, reported to a file (its stderr writes fail on the non-blocking pipes Bun
 * gives it).
 */
export function childRun(cmd: string[], scratchDir: string): ChildResult {
  const time = fs.existsSync("/usr/bin/time") ? "/usr/bin/time" : null;
  sync();
  const report = path.join(scratchDir, "time.txt");
  const res = Bun.spawnSync(time ? [time, "-v", "-o", report, ...cmd] : cmd, { stdout: "pipe", stderr: "pipe" });
  if (res.exitCode !== 0) throw new Error(`${cmd.slice(1).join(" ")} failed: ${res.stderr.toString()}`);
  const j = JSON.parse(res.stdout.toString().trim().split("\n").pop()!) as ChildResult;
  const tv = time ? /Maximum resident set size \(kbytes\): (\d+)/.exec(fs.readFileSync(report, "utf8")) : null;
  if (tv) j.maxRssKB = Number(tv[1]);
  return j;
}

/** Run `cmd` `runs` times (each after `sync`, `before` ahead of each), keep the fastest. */
export function bestChildRun(cmd: string[], scratchDir: string, runs: number, before: () => void = () => {}): ChildResult {
  let best: ChildResult | null = null;
  for (let r = 0; r < runs; r++) {
    before();
    const j = childRun(cmd, scratchDir);
    if (!best || j.seconds < best.seconds) best = j;
  }
  return best!;
}
