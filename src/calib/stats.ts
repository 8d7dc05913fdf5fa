/**
 * The statistics pass: run the calibration sequences through the CPU runner once, with observer
 * hooks on every decoder linear's input and on the qkv output, and collect (src/quant/calib-plan.ts):
 *   per linear input: per-channel max |x| and Σ|x| (mean), token count, optionally XᵀX (AWQ);
 *   per layer: amax of the q, k and v parts of the qkv projection output (before RoPE);
 *   per linear output: max |y| (legacy SmoothQuant's static scale_y).
 * Weight statistics (per-channel max) are taken from the weights directly by the plan (plan.ts).
 * `mlp.fc` and `mlp.gate` see the same input, so they share one statistics object.
 *
 * This is the CPU statistics pass. A GPU pass through the engine runtime would fill the same
 * `CalibStats` (the seam: anything that yields per-linear input tensors and qkv outputs).
 */
import { headSize, numKvHeads } from "../format/checkpoint-config.ts";
import type { CalibStats, KvStats, LinearStats } from "../quant/calib-plan.ts";
import type { CpuRunner, CpuRunnerHooks } from "../runtime/cpu.ts";
import type { CalibData } from "./data.ts";
import { linearF32 } from "../runtime/cpu-gemm.ts";

export interface StatsOptions {
  /** Collect XᵀX per linear input (the AWQ search); costs tokens × in² per input. */
  gram?: boolean;
  /** Observe only these linears' inputs (default all). */
  only?: (module: string) => boolean;
  onProgress?: (done: number, total: number) => void;
}

/** g += xᵀx for x [S, n] (the f32 GEMM on xᵀ; summed per call into f64). */
function addGram(g: Float64Array, x: Float32Array, S: number, n: number): void {
  const xt = new Float32Array(n * S);
  for (let s = 0; s < S; s++) for (let i = 0; i < n; i++) xt[i * S + s] = x[s * n + i]!;
  const y = linearF32(xt, n, xt, S, undefined, 0, n);
  for (let k = 0; k < n * n; k++) g[k] = g[k]! + y[k]!;
}

export function symmetrize(g: Float64Array, n: number): void {
  for (let i = 0; i < n; i++) for (let j = i + 1; j < n; j++) g[j * n + i] = g[i * n + j]!;
}

/** The observer hooks and what they fill. */
export function statsHooks(runner: CpuRunner, opts: StatsOptions = {}): { hooks: CpuRunnerHooks; linears: Map<string, LinearStats>; kv: KvStats[]; outAmax: Map<string, number> } {
  const cfg = runner.cfg;
  const d = headSize(cfg);
  const qW = cfg.num_attention_heads * d;
  const kvW = numKvHeads(cfg) * d;
  const linears = new Map<string, LinearStats>();
  const outAmax = new Map<string, number>();
  const kv: KvStats[] = Array.from({ length: cfg.num_hidden_layers }, () => ({ qAmax: 0, kAmax: 0, vAmax: 0 }));
  let lastX: Float32Array | null = null;
  let lastStats: LinearStats | null = null;
  const hooks: CpuRunnerHooks = {
    linearInput(module, x, S, inF) {
      if (opts.only && !opts.only(module)) return;
      if (x === lastX && lastStats && module.endsWith(".mlp.gate")) {
        if (!linears.has(module)) linears.set(module, lastStats); // same input as mlp.fc
        return;
      }
      let st = linears.get(module);
      if (!st) {
        st = { inF, outF: 0, tokens: 0, absMax: new Float32Array(inF), absSum: new Float64Array(inF), gram: opts.gram ? new Float64Array(inF * inF) : undefined };
        linears.set(module, st);
      }
      for (let s = 0; s < S; s++)
        for (let i = 0; i < inF; i++) {
          const a = Math.abs(x[s * inF + i]!);
          if (a > st.absMax[i]!) st.absMax[i] = a;
          st.absSum[i] = st.absSum[i]! + a;
        }
      st.tokens += S;
      if (st.gram) addGram(st.gram, x, S, inF);
      lastX = x;
      lastStats = st;
    },
    linearOutput(module, y, S, outF) {
      const st = linears.get(module);
      if (st && st.outF === 0) st.outF = outF;
      let ym = outAmax.get(module) ?? 0;
      for (let i = 0; i < S * outF; i++) ym = Math.max(ym, Math.abs(y[i]!));
      outAmax.set(module, ym);
      const m = /^transformer\.layers\.(\d+)\.attention\.qkv$/.exec(module);
      if (!m) return;
      const k = kv[Number(m[1])]!;
      for (let s = 0; s < S; s++) {
        const o = s * outF;
        for (let i = 0; i < qW; i++) k.qAmax = Math.max(k.qAmax, Math.abs(y[o + i]!));
        for (let i = qW; i < qW + kvW; i++) k.kAmax = Math.max(k.kAmax, Math.abs(y[o + i]!));
        for (let i = qW + kvW; i < qW + 2 * kvW; i++) k.vAmax = Math.max(k.vAmax, Math.abs(y[o + i]!));
      }
    },
  };
  return { hooks, linears, kv, outAmax };
}

/** Run every calibration sequence once and return the statistics. */
export function collectCalibStats(runner: CpuRunner, data: CalibData, opts: StatsOptions = {}): CalibStats {
  const t0 = performance.now();
  const { hooks, linears, kv, outAmax } = statsHooks(runner, opts);
  const prev = runner.hooks;
  runner.hooks = hooks;
  try {
    data.sequences.forEach((seq, i) => {
      runner.step(seq, runner.newCache()); // last-position logits only: the hooks see every layer
      opts.onProgress?.(i + 1, data.sequences.length);
    });
  } finally {
    runner.hooks = prev;
  }
  for (const st of new Set(linears.values())) if (st.gram) symmetrize(st.gram, st.inF);
  return { describe: data.describe, sequences: data.sequences.length, tokens: data.tokens, seconds: (performance.now() - t0) / 1000, linears, kv, ids: data.sequences, outAmax };
}
