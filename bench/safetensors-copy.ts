#!/usr/bin/env bun
/**
 * Copy throughput and memory of the safetensors reader + writer against `cp`.
 *
 *   bun bench/safetensors-copy.ts [--size-gb 2] [--dir D] [--runs 4] [--keep]
 *
 * 1. Writes a synthetic Llama-shaped BF16 file (embedding, lm_head, layers of q/k/v/o/gate/up/down
 *    and norms until --size-gb is reached) with SafetensorsWriter.
 * 2. Times `cp` (copy_file_range: no user-space copy) and `dd bs=64M` (read + write through a
 *    buffer) with the page cache warm, each with and without an fsync of the copy.
 * 3. Copies every tensor through openSafetensors + SafetensorsWriter in a child process, in two
 *    ways: `write` (positioned write straight from the mapped source view) and `writeWith`
 *    (`dst.set(src)` into a shared map of the destination). The child reports copy time, commit
 *    time (fsync + rename) and memory; the first copy is compared with the source (`cmp`).
 *    After one untimed round, variants run interleaved for --runs rounds, each after `sync`;
 *    the best and the median of each are reported.
 *
 * Memory: max RSS comes from `/usr/bin/time -v` (else the child's own `resourceUsage().maxRSS`).
 * RSS counts every resident page mapped into the process, including file pages of the memory maps
 * (the source windows, and for writeWith the destination windows), which the kernel can drop or
 * write back at any time. The child also samples /proc/self/status after every tensor: RssAnon is
 * the memory that is really the process's own (JS heap, buffers); RssFile is the mapped file pages.
 */
import fs from "node:fs";
import os from "node:os";
import path from "node:path";
import { openSafetensors, SafetensorsWriter, type SafetensorsTensorSpec } from "../src/format/safetensors.ts";

const MB = 1e6;
const argv = process.argv.slice(2);
const flag = (name: string): string | undefined => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1] : undefined;
};
/** Timed rounds; the best of each variant is reported. */
const RUNS = Number(flag("runs") ?? "4");

// ---------------------------------------------------------------------------------------------
// Child: one copy, reporting JSON on stdout.

interface ProcMem {
  rssAnonKB: number;
  rssFileKB: number;
  rssShmemKB: number;
}

function procMem(): ProcMem {
  const s = fs.readFileSync("/proc/self/status", "utf8");
  const kb = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+) kB`, "m").exec(s)?.[1] ?? NaN);
  return { rssAnonKB: kb("RssAnon"), rssFileKB: kb("RssFile"), rssShmemKB: kb("RssShmem") };
}

function child(mode: "write" | "writeWith", src: string, dst: string): void {
  const base = procMem();
  const peak = { ...base };
  const sample = () => {
    const m = procMem();
    peak.rssAnonKB = Math.max(peak.rssAnonKB, m.rssAnonKB);
    peak.rssFileKB = Math.max(peak.rssFileKB, m.rssFileKB);
    peak.rssShmemKB = Math.max(peak.rssShmemKB, m.rssShmemKB);
  };
  const t0 = performance.now();
  const r = openSafetensors(src);
  const w = SafetensorsWriter.create(dst, r.infos(), { metadata: r.metadata });
  for (const name of r.names()) {
    const bytes = r.get(name).bytes();
    if (mode === "write") w.write(name, bytes);
    else w.writeWith(name, (d) => d.set(bytes));
    sample();
  }
  const t1 = performance.now();
  w.commit();
  const t2 = performance.now();
  r.close();
  sample();
  console.log(JSON.stringify({ copyS: (t1 - t0) / 1e3, commitS: (t2 - t1) / 1e3, base, peak, maxRssKB: process.resourceUsage().maxRSS }));
}

// ---------------------------------------------------------------------------------------------
// Parent

function llamaSpecs(targetBytes: number): SafetensorsTensorSpec[] {
  // Llama-3.2-1B-like widths: hidden 2048, 32 heads, 8 kv heads, intermediate 8192, vocab 128256.
  const h = 2048, kv = 512, ff = 8192, vocab = 128256;
  const specs: SafetensorsTensorSpec[] = [
    { name: "model.embed_tokens.weight", dtype: "BF16", shape: [vocab, h] },
    { name: "lm_head.weight", dtype: "BF16", shape: [vocab, h] },
    { name: "model.norm.weight", dtype: "BF16", shape: [h] },
  ];
  const bytes = () => specs.reduce((s, t) => s + 2 * t.shape.reduce((a, b) => a * b, 1), 0);
  for (let l = 0; bytes() < targetBytes; l++) {
    const p = `model.layers.${l}`;
    specs.push(
      { name: `${p}.input_layernorm.weight`, dtype: "BF16", shape: [h] },
      { name: `${p}.post_attention_layernorm.weight`, dtype: "BF16", shape: [h] },
      { name: `${p}.self_attn.q_proj.weight`, dtype: "BF16", shape: [h, h] },
      { name: `${p}.self_attn.k_proj.weight`, dtype: "BF16", shape: [kv, h] },
      { name: `${p}.self_attn.v_proj.weight`, dtype: "BF16", shape: [kv, h] },
      { name: `${p}.self_attn.o_proj.weight`, dtype: "BF16", shape: [h, h] },
      { name: `${p}.mlp.gate_proj.weight`, dtype: "BF16", shape: [ff, h] },
      { name: `${p}.mlp.up_proj.weight`, dtype: "BF16", shape: [ff, h] },
      { name: `${p}.mlp.down_proj.weight`, dtype: "BF16", shape: [h, ff] },
    );
  }
  return specs;
}

/** 64 MiB of xorshift noise; tensors are filled from it at rotating offsets. */
function noisePool(): Uint8Array {
  const u32 = new Uint32Array(16 * 2 ** 20);
  let x = 0x9e3779b9;
  for (let i = 0; i < u32.length; i++) {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    u32[i] = x >>> 0;
  }
  return new Uint8Array(u32.buffer);
}

function time(fn: () => void): number {
  const t = performance.now();
  fn();
  return (performance.now() - t) / 1e3;
}

function sh(cmd: string[]): void {
  const r = Bun.spawnSync(cmd, { stdout: "ignore", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`${cmd.join(" ")} failed: ${r.stderr.toString()}`);
}

function runChild(mode: string, src: string, dst: string) {
  const useTime = fs.existsSync("/usr/bin/time");
  // time's report goes to a file: on a pipe shared with the Bun child it was cut short.
  const report = `${dst}.time.txt`;
  const cmd = [...(useTime ? ["/usr/bin/time", "-v", "-o", report] : []), process.execPath, import.meta.path, "--child", mode, src, dst];
  const r = Bun.spawnSync(cmd, { stdout: "pipe", stderr: "pipe" });
  if (r.exitCode !== 0) throw new Error(`child ${mode} failed (${r.exitCode}): ${r.stderr.toString()}`);
  const out = JSON.parse(r.stdout.toString().trim().split("\n").pop()!);
  let timeKB = NaN;
  if (useTime) {
    timeKB = Number(/Maximum resident set size \(kbytes\): (\d+)/.exec(fs.readFileSync(report, "utf8"))?.[1]);
    fs.rmSync(report);
  }
  return { ...out, maxRssKB: Number.isFinite(timeKB) ? timeKB : out.maxRssKB, rssSource: Number.isFinite(timeKB) ? "/usr/bin/time -v" : "resourceUsage" } as {
    copyS: number; commitS: number; base: ProcMem; peak: ProcMem; maxRssKB: number; rssSource: string;
  };
}

function parent(): void {
  const sizeGB = Number(flag("size-gb") ?? "2");
  if (!(sizeGB > 0)) throw new Error("--size-gb must be > 0");
  const dir = fs.mkdtempSync(path.join(flag("dir") ?? os.tmpdir(), "trtb-bench-"));
  const src = path.join(dir, "src.safetensors");
  const dst = path.join(dir, "dst.safetensors");
  const log = (s: string) => console.log(s);
  try {
    const specs = llamaSpecs(sizeGB * 1e9);
    const pool = noisePool();
    let rot = 0;
    const tWrite = time(() => {
      const w = SafetensorsWriter.create(src, specs, { metadata: { format: "pt" } });
      for (const s of specs)
        w.writeWith(s.name, (d) => {
          for (let o = 0; o < d.length; o += pool.length) {
            const n = Math.min(pool.length, d.length - o);
            const from = (rot = (rot + 4099) % (pool.length - n + 1));
            d.set(pool.subarray(from, from + n), o);
          }
        });
      w.commit();
    });
    const size = fs.statSync(src).size;
    log(`source: ${specs.length} tensors, ${(size / MB).toFixed(0)} MB, written by SafetensorsWriter in ${tWrite.toFixed(2)} s (${(size / MB / tWrite).toFixed(0)} MB/s incl. fsync)`);
    log(`machine: ${os.cpus().length} cores, ${(os.totalmem() / 2 ** 30).toFixed(1)} GiB RAM, Bun ${Bun.version}, dir ${dir}`);

    // Warm the page cache and run one untimed round. Variants are then interleaved round by round,
    // each timed run starting after `sync`, so that no variant inherits another's writeback. Page
    // cache writes on a VM are noisy (fresh guest pages can cost a host fault), so both the best
    // and the median of the rounds are reported.
    sh(["cat", src]);
    type Run = { copyS: number; totalS: number; child?: ReturnType<typeof runChild> };
    const cpLike = (cmd: string[], withSync: boolean) => (): Run => {
      const t0 = performance.now();
      sh(cmd);
      const t1 = performance.now();
      if (withSync) sh(["sync", dst]);
      const t2 = performance.now();
      return { copyS: (t1 - t0) / 1e3, totalS: (t2 - t0) / 1e3 };
    };
    const ours = (mode: "write" | "writeWith") => (): Run => {
      const c = runChild(mode, src, dst);
      return { copyS: c.copyS, totalS: c.copyS + c.commitS, child: c };
    };
    const variants: [name: string, run: () => Run][] = [
      ["cp", cpLike(["cp", src, dst], true)],
      ["dd bs=64M", cpLike(["dd", `if=${src}`, `of=${dst}`, "bs=64M", "status=none"], true)],
      ["write", ours("write")],
      ["writeWith", ours("writeWith")],
    ];
    const runs = new Map<string, Run[]>(variants.map(([n]) => [n, []]));
    for (let round = -1; round < RUNS; round++) {
      for (const [name, run] of variants) {
        sh(["sync"]);
        const r = run();
        if (round === -1 && (name === "write" || name === "writeWith")) sh(["cmp", src, dst]); // byte-identical
        fs.rmSync(dst);
        if (round >= 0) runs.get(name)!.push(r);
      }
    }
    const best = (xs: number[]) => Math.min(...xs);
    const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
    const stat = (name: string, f: (r: Run) => number) => ({ best: best(runs.get(name)!.map(f)), median: median(runs.get(name)!.map(f)) });
    const cp = stat("cp", (r) => r.copyS);
    const cpSync = stat("cp", (r) => r.totalS);

    log("");
    log(`rounds: ${RUNS}; seconds per round: ${variants.map(([n]) => `${n} ${runs.get(n)!.map((r) => r.copyS.toFixed(2)).join(" ")}`).join("; ")}`);
    log("");
    log(`${"".padEnd(34)}${"best s".padStart(8)}${"MB/s".padStart(7)}${"median s".padStart(10)}${"MB/s".padStart(7)}   vs cp (best, median)`);
    const row = (what: string, st: { best: number; median: number }, ref: { best: number; median: number }, refName: string) =>
      log(`${what.padEnd(34)}${st.best.toFixed(3).padStart(8)}${(size / MB / st.best).toFixed(0).padStart(7)}${st.median.toFixed(3).padStart(10)}${(size / MB / st.median).toFixed(0).padStart(7)}   ` +
        `${(ref.best / st.best).toFixed(2)}×, ${(ref.median / st.median).toFixed(2)}× ${refName}`);
    for (const [name] of variants) {
      const label = name === "cp" ? "cp (warm cache)" : name === "dd bs=64M" ? "dd bs=64M (read+write, 2 copies)" : `${name}: copy`;
      row(label, stat(name, (r) => r.copyS), cp, "cp");
    }
    for (const [name] of variants) {
      const label = name === "cp" || name.startsWith("dd") ? `${name} + fsync` : `${name}: copy + commit`;
      row(label, stat(name, (r) => r.totalS), cpSync, "cp+fsync");
    }
    const mems: string[] = [];
    const mb = (kb: number) => `${(kb / 1024).toFixed(0)} MB`;
    for (const mode of ["write", "writeWith"]) {
      const r = runs.get(mode)!.map((x) => x.child!).reduce((a, b) => (a.maxRssKB >= b.maxRssKB ? a : b)); // worst run
      mems.push(
        `${mode}: max RSS ${mb(r.maxRssKB)} (${r.rssSource}); RssAnon ${mb(r.base.rssAnonKB)} at start, peak ${mb(r.peak.rssAnonKB)} (+${mb(r.peak.rssAnonKB - r.base.rssAnonKB)} for the copy); peak RssFile ${mb(r.peak.rssFileKB)} (mapped file pages)`,
      );
    }
    log("");
    log("memory of the copy (child process):");
    for (const m of mems) log(`  ${m}`);
    log("");
    log("RSS counts resident file pages of the memory maps (source windows; for writeWith also the destination");
    log("windows) — page cache the kernel can drop or write back, not memory the process owns. RssAnon is what");
    log("the process owns (JS heap, buffers); the goal is RssAnon growth under 256 MB.");
  } finally {
    if (!argv.includes("--keep")) fs.rmSync(dir, { recursive: true, force: true });
  }
}

if (argv[0] === "--child") child(argv[1] as "write" | "writeWith", argv[2]!, argv[3]!);
else parent();
