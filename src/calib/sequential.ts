/**
 * The layer-by-layer AWQ search (the default for int4_awq / w4a8_awq). llm-awq `run_awq` calibrates
 * one decoder block at a time; here, in addition, everything already searched is fake-quantized
 * (fakeQuantAwq: exactly what the checkpoint will hold) before the next statistics are taken, so
 * each input group is searched on the activations the quantized model really feeds it:
 *
 *   x ← embeddings of every calibration sequence
 *   for each layer L, for each input group k of L (qkv; dense; fc + gate; proj), in order:
 *     run layer L on x (layers < L and groups < k of L already quantized) and collect the group's
 *     input statistics (mean |x|, XᵀX; kv amax when k = dense, i.e. after qkv is quantized)
 *     search the smoothing of group k (loss below), plan it (the same LinearPlan as plan.ts)
 *     replace group k's weights in the runner by their fake-quantized values
 *   x ← layer L (now all quantized) on x
 *
 * Loss per candidate smoothing (awq.ts candidates: s = 1 and the α grid):
 *   "linear"  the group's own output MSE through XᵀX (awq.ts searchLoss; ModelOpt awq_lite)
 *   "block"   (default) llm-awq's `module2inspect`: for qkv the attention sub-block's output (q, k,
 *             v quantized, attention, dense in fp), for fc + gate the MLP output (after proj in fp),
 *             run on the first `blockTokens` calibration tokens; dense and proj are their block's
 *             output already and keep the exact Gram loss. With `jointClip` (default) the block
 *             loss quantizes each candidate with its clip search applied (a GEMM-batched clip,
 *             awq.ts fakeQuantAwqFast), so scale and clip are chosen together.
 *             It compares with (`target`) the fp model's sub-block output on the fp model's own
 *             input ("fp-model", default) or the fp sub-block on the same, quantized input
 *             ("same-input", llm-awq).
 * Clip (when on): the plan keeps each group's full input XᵀX (`gram`), and the stored clip (and the
 * fake quantization here) picks each row's group ratios together on the row's whole output error
 * (awq-clip.ts clipRowFull: per group first, then coordinate descent with the cross-group terms);
 * the joint search still ranks candidates with the per-group clip (fakeQuantAwqFast).
 * Measured on tiny-pycode (bench/awq.ts, 128 eval windows; Δppl / RTN's Δppl, KL(bf16‖int4)):
 *   calibration 16 × 128   one pass 0.643, 7.00e-2   linear 0.706, 7.16e-2   block 0.730, 7.19e-2   block + joint clip 0.634, 6.80e-2
 *   calibration 64 × 128   one pass 0.779, 6.98e-2   linear 0.613, 6.70e-2   block 0.674, 6.71e-2   block + joint clip 0.570, 6.92e-2
 *   calibration 256 × 128                            linear 0.736, 7.02e-2   block 0.762, 7.09e-2
 * Block + joint clip had the least ppl increase at both sizes measured, so it is the default.
 * Then, all at 64 × 128 on top of that default (per-group clip unless said), one change each:
 *   full-row clip (now the default)  0.600, 6.46e-2, search 68 s (this code); a first version
 *                                    differing only in f64 rounding order and sweep count: 0.558,
 *                                    6.47e-2, and at 60 / 68 calibration sequences 0.535, 6.51e-2 /
 *                                    0.624, 6.47e-2, against the per-group clip's 0.604, 6.67e-2 /
 *                                    0.636, 7.11e-2
 *   full-row clip, also in the joint ranking 0.544, 6.53e-2 (search 134 s against ~85 s)
 *   full-row clip, clip grid 1 − k/40 (k < 20) 0.559, 6.30e-2 (search 188 s)
 *   clip grid 1 − k/40 (k < 20)      0.606, 6.62e-2     α grid 40           0.609, 7.16e-2
 *   no clip on q and k (llm-awq)     0.664, 6.90e-2     target same-input   0.635, 6.92e-2
 *   x-only scales (llm-awq: mean|x|^α) 0.799, 6.88e-2   x-only and duo candidates 0.665, 6.81e-2 (search 258 s)
 *   joint clip in the dense / proj Gram loss 0.682, 6.76e-2
 *   dense / proj loss against the fp model (‖Xq Q̂ᵀ − Xf Wᵀ‖², cross Gram) 0.630, 7.15e-2; with joint clip 0.606, 6.80e-2
 * KL moves by a few per cent while the Δppl ratio moves by ±0.1 between variants of nearly equal KL
 * (the per-group-clip default itself gives 0.604 / 0.570 / 0.636 at 60 / 64 / 68 sequences): on
 * these 128 windows Δppl is dominated by which tokens a variant happens to hurt, so KL is the
 * steadier guide. The full-row clip is the one change that lowered KL at every calibration size
 * tried (6.46–6.51e-2 against 6.67–7.11e-2), so it is the default, although at 64 × 128 this code's
 * Δppl ratio (0.600) is above the per-group clip's 0.570.
 * The weights in the runner are restored at the end. The result is a CalibPlan like planCalibration's.
 */
import { TrtbError } from "../errors.ts";
import type { CalibPlan, CalibStats, KvStats, LinearPlan, LinearStats } from "../quant/calib-plan.ts";
import type { CpuRunner } from "../runtime/cpu.ts";
import type { F32Tensor } from "../runtime/merge.ts";
import { AWQ_DEFAULT_GRID, type AwqCandidate, awqCandidates, awqPick, type AwqSearchResult, awqSearch, fakeQuantAwq, fakeQuantAwqFast, gramBlocks, smoothedGramSlice } from "./awq.ts";
import { linearPlan, type PlanOptions, SUFFIX_GROUPS } from "./plan.ts";
import { statsHooks, symmetrize } from "./stats.ts";

export type AwqLoss = "linear" | "block";
export const AWQ_DEFAULT_LOSS: AwqLoss = "block";
/** The block loss quantizes each candidate with its clip search applied (when clipping is on). */
export const AWQ_DEFAULT_JOINT_CLIP = true;
/** Calibration tokens the block loss runs per candidate (the first sequences up to this many). */
export const AWQ_DEFAULT_BLOCK_TOKENS = 8192;
export const AWQ_DEFAULT_TARGET = "fp-model";

export interface SequentialOptions extends PlanOptions {
  loss?: AwqLoss;
  blockTokens?: number;
  /** Block loss with each candidate's clip applied (default true; the linear loss ignores it). */
  jointClip?: boolean;
  /**
   * What the block loss compares against: "fp-model" (default; the fp model's sub-block output on
   * the fp model's own input) or "same-input" (the sub-block with fp weights on the quantized
   * model's input, as llm-awq).
   */
  target?: "same-input" | "fp-model";
}

interface Seq {
  x: Float32Array;
  S: number;
}

/** The layer-by-layer AWQ plan over `ids` (see the top of the file). `describe`: what the data was. */
export function awqSequentialPlan(runner: CpuRunner, ids: number[][], describe: string, opts: SequentialOptions): { plan: CalibPlan; stats: CalibStats; seconds: number } {
  const t0 = performance.now();
  const cfg = runner.cfg;
  const G = opts.groupSize ?? 128;
  const dt = opts.dtype;
  const clip = opts.awqClip ?? true;
  const lossKind = opts.loss ?? AWQ_DEFAULT_LOSS;
  const blockTokens = opts.blockTokens ?? AWQ_DEFAULT_BLOCK_TOKENS;
  const numLayers = cfg.num_hidden_layers;
  const linears = new Map<string, LinearPlan>();
  const allStats = new Map<string, LinearStats>();
  const kv: KvStats[] = Array.from({ length: numLayers }, () => ({ qAmax: 0, kAmax: 0, vAmax: 0 }));
  const fp = new Map<string, F32Tensor>();
  const prevHooks = runner.hooks;
  let seqs: Seq[] = ids.map((s) => ({ x: runner.embed(s), S: s.length }));
  const fpTarget = (opts.target ?? AWQ_DEFAULT_TARGET) === "fp-model" && lossKind === "block";
  let seqsFp: Seq[] = fpTarget ? seqs.map((s) => ({ x: s.x.slice(), S: s.S })) : [];
  const tokens = seqs.reduce((a, s) => a + s.S, 0);
  const total = numLayers * SUFFIX_GROUPS.length;
  let done = 0;
  try {
    for (let L = 0; L < numLayers; L++) {
      // the fp model's sub-block inputs of this layer (layer L is still all fp here)
      const fpIn = new Map<string, Seq[]>();
      if (fpTarget) {
        const c = new Map<string, number>();
        runner.hooks = {
          linearInput(module, x, S) {
            const key = /attention\.qkv$/.test(module) ? "qkv" : /mlp\.fc$/.test(module) ? "fc" : undefined;
            if (!key || (c.get(key) ?? 0) >= blockTokens) return;
            if (!fpIn.has(key)) fpIn.set(key, []);
            fpIn.get(key)!.push({ x: x.slice(), S });
            c.set(key, (c.get(key) ?? 0) + S);
          },
        };
        seqsFp = seqsFp.map((s) => ({ x: runner.runLayer(L, s.x, s.S), S: s.S }));
        runner.hooks = null;
      }
      for (const [k, group] of SUFFIX_GROUPS.entries()) {
        done++;
        const mods = group.map((s) => `transformer.layers.${L}.${s}`).filter((m) => runner.w.has(`${m}.weight`));
        if (mods.length === 0) continue;
        const ws = mods.map((m) => runner.w.get(`${m}.weight`)!);
        if (ws.some((w) => w.shape.length !== 2))
          throw new TrtbError("QUANT_UNSUPPORTED", `${mods[0]}: calibrated formats do not support mixture-of-experts weights ([${ws[0]!.shape}]); use int4_awq_rtn, int8_wo or int4_wo`);
        const useBlock = lossKind === "block" && (k === 0 || k === 2);
        // statistics of this group's input, the model upstream of it quantized
        const obs = statsHooks(runner, { gram: true, only: (m) => m === mods[0] || m === mods[1] });
        const inputs: Seq[] = [];
        let captured = 0;
        runner.hooks = {
          ...obs.hooks,
          linearInput(module, x, S, inF) {
            obs.hooks.linearInput!(module, x, S, inF);
            if (useBlock && module === mods[0] && captured < blockTokens) {
              inputs.push({ x: x.slice(), S });
              captured += S;
            }
          },
        };
        for (const s of seqs) runner.runLayer(L, s.x, s.S);
        runner.hooks = null;
        if (k === 1) kv[L] = obs.kv[L]!;
        const st = obs.linears.get(mods[0]!);
        if (!st || !st.gram) throw new TrtbError("QUANT_NEEDS_CALIB", `the layer-by-layer calibration saw no input of ${mods[0]}`);
        symmetrize(st.gram, st.inF);
        for (const m of mods) allStats.set(m, st);
        const inF = ws[0]!.shape[1]!;
        const wd = ws.map((w) => w.data);
        let r: AwqSearchResult;
        if (!useBlock) r = awqSearch(wd, inF, st.absSum, st.tokens, st.gram, G, dt, opts.awqGrid ?? AWQ_DEFAULT_GRID);
        else {
          const part = (x: Seq) => (k === 0 ? runner.attentionPart(L, x.x, x.S) : runner.mlpPart(L, x.x, x.S));
          const ref = fpTarget ? fpIn.get(k === 0 ? "qkv" : "fc")!.slice(0, inputs.length).map(part) : inputs.map(part);
          const loss = (c: AwqCandidate): number => {
            const pre = c.alpha === null ? undefined : c.p;
            const blocks = (opts.jointClip ?? AWQ_DEFAULT_JOINT_CLIP) && clip ? gramBlocks(st.gram!, inF, G, pre) : undefined;
            mods.forEach((m, j) => runner.w.set(`${m}.weight`, { shape: ws[j]!.shape, data: blocks ? fakeQuantAwqFast(wd[j]!, inF, G, pre, blocks, dt) : fakeQuantAwq(wd[j]!, inF, G, pre, undefined, dt) }));
            let e = 0, cnt = 0;
            inputs.forEach((x, i) => {
              const y = part(x);
              const y0 = ref[i]!;
              for (let t = 0; t < y.length; t++) e += (y[t]! - y0[t]!) ** 2;
              cnt += y.length;
            });
            return e / cnt;
          };
          try {
            r = awqPick(awqCandidates(wd, inF, st.absSum, st.tokens, G, dt, opts.awqGrid ?? AWQ_DEFAULT_GRID), loss);
          } finally {
            mods.forEach((m, j) => runner.w.set(`${m}.weight`, ws[j]!));
          }
        }
        const blocks = clip ? gramBlocks(st.gram, inF, G, r.pre) : undefined;
        const sg = clip ? smoothedGramSlice(st.gram, inF, 0, inF, r.pre) : undefined;
        mods.forEach((m, j) => {
          const w = ws[j]!;
          const p = linearPlan(w.data, w.shape[0]!, inF, st, r.pre);
          if (blocks) p.gramBlocks = blocks;
          if (clip) p.gram = st.gram;
          p.search = { alpha: r.alpha, lossRtn: r.lossRtn, lossBest: r.lossBest, loss: useBlock ? "block" : "linear" };
          linears.set(m, p);
          // from now on the model holds this linear quantized
          fp.set(`${m}.weight`, w);
          runner.w.set(`${m}.weight`, { shape: w.shape, data: fakeQuantAwq(w.data, inF, G, r.pre, blocks, dt, sg) });
        });
        opts.onProgress?.(done, total);
      }
      seqs = seqs.map((s) => ({ x: runner.runLayer(L, s.x, s.S), S: s.S }));
    }
  } finally {
    for (const [n, w] of fp) runner.w.set(n, w);
    runner.hooks = prevHooks;
  }
  const seconds = (performance.now() - t0) / 1000;
  const stats: CalibStats = { describe, sequences: ids.length, tokens, seconds, linears: allStats, kv, ids };
  return { plan: { describe, linears, kv, kvRule: opts.kvRule ?? "kv", awqClip: clip }, stats, seconds };
}
