#!/usr/bin/env bun
/**
 * The CPU reference runner's speed on tiny-pycode against a plain numpy/OpenBLAS fp32 forward of
 * the same model (bench/peer_numpy_forward.py), both measured in this run:
 *
 *   bun bench/cpu-runner.ts [--prompt 256] [--new 64] [--reps 5] [--rounds 2] [--no-ts] [--json out.json]
 *
 * - prefill: logits of every position of a `--prompt`-token prompt (best of `--reps`, fresh cache);
 * - decode: `--new` one-token steps after that prompt (KV cache), tokens/s of the steps alone;
 * - ours with libtrtb's GEMM at the default thread count (one per CPU) and at 1 thread, the
 *   TypeScript-only path (`setCpuGemmBackend("ts")`: the runner as it was before the GEMM, on a
 *   shorter prompt), numpy with OpenBLAS's default threads and with 1 (OPENBLAS_CORETYPE and
 *   OPENBLAS_L2_SIZE unset for the peer alone; it reports the kernel OpenBLAS picked).
 * Runs are interleaved in `--rounds` rounds and each figure is the best over them, so load from
 * elsewhere on the machine hits both sides alike. The baseline is numpy's faster setting. The
 * peer's logits are checked against ours (max|Δ| / max|ref|, prefill and the last decode step); a
 * difference over LOGITS_REL_TOL fails the bench, since then it would not compare the same function.
 */
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { convertCheckpoint, loadCpuRunner } from "../src/index.ts";
import { nativeLib } from "../src/ffi/index.ts";
import { setCpuGemmBackend } from "../src/runtime/cpu-gemm.ts";
import type { CpuRunner } from "../src/runtime/cpu.ts";
import { flags } from "./_common.ts";

/** Ours vs the peer's logits, max|Δ| / max|ref|: the runner tests' bound against transformers. */
const LOGITS_REL_TOL = 1e-3;

const flag = flags(process.argv);
const P = Number(flag("prompt") ?? 256);
const N = Number(flag("new") ?? 64);
const REPS = Number(flag("reps") ?? 5);
const ROUNDS = Number(flag("rounds") ?? 2);
const withTs = !process.argv.includes("--no-ts");
const jsonOut = flag("json");
const SHARED = join(import.meta.dir, "../../shared/models/tiny-pycode");
const MODEL = flag("model") ?? (existsSync(SHARED) ? SHARED : join(import.meta.dir, "../examples/tiny-pycode"));
const PEER = join(import.meta.dir, "peer_numpy_forward.py");

const lib = nativeLib();
if (!lib) throw new Error("libtrtb not found: run `bun run build` (this bench measures its GEMM)");
const work = mkdtempSync(join(tmpdir(), "trtb-bench-cpu-"));

function relMaxErr(got: Float32Array, ref: Float32Array): number {
  let md = 0;
  let mr = 0;
  for (let i = 0; i < ref.length; i++) {
    md = Math.max(md, Math.abs(got[i]! - ref[i]!));
    mr = Math.max(mr, Math.abs(ref[i]!));
  }
  return md / mr;
}

interface Figures { prefillTokS: number; decodeTokS: number }
const best = (a: Figures | undefined, b: Figures): Figures =>
  a ? { prefillTokS: Math.max(a.prefillTokS, b.prefillTokS), decodeTokS: Math.max(a.decodeTokS, b.decodeTokS) } : b;

function measureOurs(r: CpuRunner, prompt: number[], dec: number[], reps: number): Figures & { prefill: Float32Array; last: Float32Array } {
  r.step(prompt.slice(0, 8), r.newCache()); // warm-up (JIT)
  let pf = Infinity;
  let prefill: Float32Array = new Float32Array(0);
  for (let i = 0; i < reps; i++) {
    const t = performance.now();
    prefill = r.step(prompt, r.newCache(), { allLogits: true });
    pf = Math.min(pf, performance.now() - t);
  }
  let dt = Infinity;
  let last: Float32Array = new Float32Array(0);
  for (let i = 0; i < Math.max(1, Math.min(reps, 3)); i++) {
    const cache = r.newCache();
    r.step(prompt, cache);
    const t = performance.now();
    for (const tok of dec) last = r.step([tok], cache);
    dt = Math.min(dt, performance.now() - t);
  }
  return { prefillTokS: (prompt.length / pf) * 1e3, decodeTokS: (dec.length / dt) * 1e3, prefill, last };
}

interface Peer extends Figures { blas: unknown; raw: Record<string, unknown> }
function measurePeer(prompt: number[], dec: number[], threads: "default" | 1): Peer {
  const env: Record<string, string | undefined> = { ...process.env, PYTHONUNBUFFERED: "1" };
  delete env.OPENBLAS_CORETYPE; // slows a current numpy where it is set (env README); this command only
  delete env.OPENBLAS_L2_SIZE;
  if (threads === 1) env.OPENBLAS_NUM_THREADS = "1";
  else delete env.OPENBLAS_NUM_THREADS;
  const args = [PEER, "--model", MODEL, "--ids", prompt.join(","), "--decode-ids", dec.join(","), "--reps", String(REPS),
    "--out", join(work, "peer-prefill.f32"), "--out-decode", join(work, "peer-decode.f32")];
  const p = spawnSync("python3", args, { env, encoding: "utf8", timeout: 600_000 });
  if (p.status !== 0) throw new Error(`numpy peer failed (${p.status}): ${p.stderr}`);
  const raw = JSON.parse(p.stdout.trim().split("\n").pop()!) as Record<string, unknown>;
  return { prefillTokS: raw.prefill_tok_s as number, decodeTokS: raw.decode_tok_s as number, blas: raw.blas, raw };
}
const readF32 = (f: string) => new Float32Array(readFileSync(f).buffer.slice(0));

try {
  const ckpt = join(work, "ckpt");
  await convertCheckpoint({ modelDir: MODEL, outputDir: ckpt });
  const runner = await loadCpuRunner(ckpt);
  const V = runner.cfg.vocab_size;
  let s = 7;
  const rnd = () => (s = (Math.imul(s, 1103515245) + 12345) >>> 0);
  const prompt = Array.from({ length: P }, () => 3 + (rnd() % (V - 3)));
  const dec = Array.from({ length: N }, () => 3 + (rnd() % (V - 3)));
  const cpus = lib.setNumThreads(0);
  lib.setNumThreads(cpus);
  const autoThreads = navigator.hardwareConcurrency;
  console.log(`tiny-pycode CPU runner: prompt ${P}, decode ${N} steps, best of ${REPS} reps x ${ROUNDS} rounds; GEMM kernels ${lib.gemmIsa()}, ${autoThreads} CPUs`);

  let oursAuto: Figures | undefined;
  let ours1: Figures | undefined;
  let npAuto: Peer | undefined;
  let np1: Peer | undefined;
  let check = { prefill: Number.NaN, decode: Number.NaN };
  for (let round = 0; round < ROUNDS; round++) {
    lib.setNumThreads(0);
    const a = measureOurs(runner, prompt, dec, REPS);
    oursAuto = best(oursAuto, a);
    const pa = measurePeer(prompt, dec, "default");
    if (round === 0) {
      check = { prefill: relMaxErr(a.prefill, readF32(join(work, "peer-prefill.f32"))), decode: relMaxErr(a.last, readF32(join(work, "peer-decode.f32"))) };
    }
    npAuto = npAuto ? { ...npAuto, ...best(npAuto, pa) } : pa;
    lib.setNumThreads(1);
    ours1 = best(ours1, measureOurs(runner, prompt, dec, REPS));
    const p1 = measurePeer(prompt, dec, 1);
    np1 = np1 ? { ...np1, ...best(np1, p1) } : p1;
  }
  lib.setNumThreads(0);

  let ts: Figures | undefined;
  const tsP = Math.min(P, 64);
  const tsN = Math.min(N, 16);
  if (withTs) {
    setCpuGemmBackend("ts");
    ts = measureOurs(runner, prompt.slice(0, tsP), dec.slice(0, tsN), 1);
    setCpuGemmBackend("auto");
  }

  const base = { prefillTokS: Math.max(npAuto!.prefillTokS, np1!.prefillTokS), decodeTokS: Math.max(npAuto!.decodeTokS, np1!.decodeTokS) };
  const row = (name: string, f: Figures) =>
    console.log(`  ${name.padEnd(44)} prefill ${f.prefillTokS.toFixed(0).padStart(6)} tok/s (${(f.prefillTokS / base.prefillTokS).toFixed(2)}x)   decode ${f.decodeTokS.toFixed(0).padStart(5)} tok/s (${(f.decodeTokS / base.decodeTokS).toFixed(2)}x)`);
  console.log(`numpy ${(npAuto!.raw.numpy as string) ?? "?"}, BLAS: ${JSON.stringify(npAuto!.blas)}`);
  console.log("ratios against the baseline (numpy's faster setting, per column):");
  row(`ours, libtrtb GEMM, ${autoThreads} threads`, oursAuto!);
  row("ours, libtrtb GEMM, 1 thread", ours1!);
  if (ts) row(`ours, TypeScript loops (prompt ${tsP}, ${tsN} steps)`, ts);
  row("numpy/OpenBLAS, default threads", npAuto!);
  row("numpy/OpenBLAS, OPENBLAS_NUM_THREADS=1", np1!);
  const bestOurs = best(oursAuto, ours1!);
  console.log(`ours (best) / numpy (best): prefill ${(bestOurs.prefillTokS / base.prefillTokS).toFixed(2)}x, decode ${(bestOurs.decodeTokS / base.decodeTokS).toFixed(2)}x`);
  console.log(`logits vs the numpy peer (max|Δ| / max|ref|): prefill ${check.prefill.toExponential(2)}, last decode step ${check.decode.toExponential(2)} (bound ${LOGITS_REL_TOL})`);
  if (jsonOut)
    writeFileSync(jsonOut, JSON.stringify({ prompt: P, decodeSteps: N, isa: lib.gemmIsa(), cpus: autoThreads, oursAuto, ours1, ts, numpyDefault: npAuto!.raw, numpy1: np1!.raw, baseline: base, logitsRelErr: check }, null, 2));
  if (!(check.prefill <= LOGITS_REL_TOL && check.decode <= LOGITS_REL_TOL)) {
    console.error("the numpy peer's logits differ from ours: the comparison is not of the same function");
    process.exitCode = 1;
  }
} finally {
  rmSync(work, { recursive: true, force: true });
}
