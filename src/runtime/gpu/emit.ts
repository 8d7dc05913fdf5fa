/**
 * Op programs of the GPU runner's forward passes: the activation buffers they work in, the
 * embedding and every layer (GEMMs with the plan's tactic for the row count, weight-only GEMMs,
 * MoE with host-side grouping per expert), the LM head with sampling, and the whole prefill and
 * decode-step programs over the inputs schedule.ts wrote.
 */
import { TrtbError } from "../../errors.ts";
import { type DeviceMem, type DevRef, type Dt, Program } from "../../ffi/engine.ts";
import { fp8Site, type PlanGemmSite, tacticFor, woSite } from "../../engine/plan.ts";
import { woPackedBytes } from "../../engine/wo-layout.ts";
import { allocActivations, ATTN_COUNTERS, type DecodeLayout, F32, I32, nsplit, type PrefillLayout } from "./buffers.ts";
import type { RunnerState } from "./state.ts";

/** Context tactic id of GEMM site `site` for m rows (-1: cuBLASLt's heuristic). */
function tactic(s: RunnerState, site: string, m: number): number {
  const st: PlanGemmSite | undefined = s.plan.gemm.sites[site];
  if (!st) return -1;
  const i = tacticFor(st, m);
  return i >= 0 ? s.weights.tactics[i]! : -1;
}

// ---- forward ------------------------------------------------------------------------------------

/**
 * Emit the embedding and every layer for T tokens whose inputs are at `inp` in the device input
 * block; `attention(p, l)` emits layer l's attention (writes b.ctx). MoE layers flush the program
 * (run it, wait) and continue in a new one, so the caller gets back the program to continue.
 */
function emitLayers(s: RunnerState, p0: Program, T: number, inp: { ids: DevRef; pos: DevRef; slot: DevRef; ropeSel: DevRef }, attention: (p: Program, l: number, outDtype: Dt) => void): Program {
  const d = s.desc;
  const b = s.b;
  const w = s.weights;
  const dt = s.dt;
  const adt = s.adt;
  const H = d.hidden_size;
  const I = d.intermediate_size;
  const eps = d.norm_eps;
  let p = p0;
  // FP8 linears take their input quantized from the f32 the norm / activation / attention computes
  // (as the CPU runner does): in fast numerics the norm and the gated activation write the e4m3
  // input itself (into xq); attention, and everything in exact numerics, writes f32 that the GEMM
  // quantizes. Other linears take the activation dtype.
  const f8 = d.fp8?.linears;
  const exact = s.numerics === "exact";
  const sq = d.sq?.linears;
  const rw = new Set(d.rowwise?.linears);
  const inDt = (name: string): Dt => (f8?.[name] || sq?.[name] || rw.has(name) ? "F32" : adt);
  const fused = (name: string) => !exact && !!f8?.[name];
  /** Where the producer of linear `name`'s input writes (default buffer `buf`), and the GEMM's x. */
  const into = (name: string, buf: DevRef) =>
    fused(name) ? { out: b.xq!, outDtype: "F8_E4M3" as const, outScale: f8![name]!.a } : { out: buf, outDtype: inDt(name) };
  const xOf = (name: string, buf: DevRef) => (fused(name) ? b.xq! : buf);
  p.embed({ ids: inp.ids, table: w.get("embedding").ref, tableDtype: dt, rows: d.embedding_rows, vocabStart: d.embedding_vocab_start, H, scale: d.embed_scale, out: b.res!, T });
  p.addNorm({ res: b.res!, normW: w.get("layers.0.input_norm").ref, eps, ...into("layers.0.qkv", b.h!), H, T });
  const L = d.layers.length;
  for (let l = 0; l < L; l++) {
    const P = `layers.${l}.`;
    gemm(s, p, "qkv", `${P}qkv`, xOf(`${P}qkv`, b.h!), b.qkv!, T, d.qkv_rows, H, "F32", 0, fused(`${P}qkv`));
    p.qkvRope({
      qkv: b.qkv!, ld: d.qkv_rows, bias: w.opt(`${P}qkv_bias`), qNorm: w.opt(`${P}q_norm`), kNorm: w.opt(`${P}k_norm`), eps,
      pos: inp.pos, slot: inp.slot, kv: s.kv.at(l * s.kvLayerBytes), kvDtype: s.kvdt, tpb: s.tokensPerBlock, nH: d.num_heads,
      nKV: d.num_kv_heads, D: d.head_size, rot: d.rotary_dim, invFreq: w.get("rope.inv_freq").ref, qOut: b.q!, T, kvScale: s.kvScales[l],
      ...(d.long_rope ? { ropeSel: inp.ropeSel, mscale: d.long_rope.mscale } : {}),
    });
    attention(p, l, inDt(`${P}dense`));
    const nHD = d.num_heads * d.head_size;
    const densePre = w.opt(`${P}dense.pre`); // AWQ: the prequant scale on the attention output
    if (densePre) p.mulCols({ x: b.ctx!, dtype: inDt(`${P}dense`), v: densePre, rows: T, cols: nHD });
    gemm(s, p, "dense", `${P}dense`, b.ctx!, b.dense!, T, H, nHD, "F32");
    p.addNorm({
      res: b.res!, delta: b.dense, deltaBias: w.opt(`${P}dense_bias`), deltaNorm: d.sandwich_norms ? w.get(`${P}post_norm`).ref : undefined,
      normW: w.get(d.sandwich_norms ? `${P}pre_ff_norm` : `${P}post_norm`).ref, eps, ...into(`${P}gate_up`, b.h!), H, T,
    });
    let delta: DevRef;
    if (d.moe) {
      p = emitMoe(s, p, l, T);
      delta = b.moeOut!;
    } else {
      const fcDt = gemm(s, p, "gate_up", `${P}gate_up`, xOf(`${P}gate_up`, b.h!), b.fc!, T, 2 * I, H, dt, 0, fused(`${P}gate_up`));
      p.gatedAct({ in: b.fc!, inDtype: fcDt, bias: w.opt(`${P}gate_up_bias`), ...into(`${P}down`, b.act!), I, T, act: d.act, mul: w.opt(`${P}down.pre`) });
      gemm(s, p, "down", `${P}down`, xOf(`${P}down`, b.act!), b.proj!, T, H, I, "F32", 0, fused(`${P}down`));
      delta = b.proj!;
    }
    const next = l + 1 < L ? `layers.${l + 1}.input_norm` : "ln_f";
    p.addNorm({
      res: b.res!, delta, deltaBias: w.opt(`${P}down_bias`), deltaNorm: d.sandwich_norms ? w.get(`${P}post_ff_norm`).ref : undefined,
      normW: w.get(next).ref, eps, ...(l + 1 < L ? into(`layers.${l + 1}.qkv`, b.h!) : { out: b.h, outDtype: adt }), H, T,
    });
  }
  return p;
}

/**
 * One GEMM with the site's tactic for M rows against weight tensor `weight` (matrix `expert` of
 * a stacked MoE tensor); weight-only tensors (with `<weight>.scale`, or AWQ's group-wise `<weight>.gscale`) go through the `<site>.wo`
 * tactics; FP8 weights quantize x first unless `xIsFp8` (its producer wrote e4m3 already). Returns
 * the output dtype (f32 in exact numerics).
 */
function gemm(s: RunnerState, p: Program, site: string, weight: string, x: DevRef, y: DevRef, M: number, N: number, K: number, yFast: Dt, expert = 0, xIsFp8 = false): Dt {
  const exact = s.numerics === "exact";
  const yDtype: Dt = exact ? "F32" : yFast;
  const w = s.weights.get(weight);
  const scale = s.weights.find(`${weight}.scale`);
  const gscale = s.weights.find(`${weight}.gscale`);
  const scratch = exact ? s.b.scratch : undefined;
  const f8 = s.desc.fp8?.linears[weight];
  const sq = s.desc.sq?.linears[weight];
  const rw = s.desc.rowwise;
  if (rw?.linears.includes(weight)) {
    // per-token activations: x (f32) quantized row by row (scales in xs), then the int8 / FP8 GEMM
    // whose sums are scaled by xs[m] · row_scale[n]
    const b = s.b;
    const fp8 = rw.algo === "FP8";
    const ws = s.weights.get(`${weight}.row_scale`).ref;
    p.quantRows({ x, xDtype: "F32", div: s.weights.opt(`${weight}.sq_div`), out: b.xq!, outDtype: fp8 ? "F8_E4M3" : "I8", M, K, xs: b.xs!, lo: rw.clamp?.[0], hi: rw.clamp?.[1] });
    if (fp8) p.gemmFp8({ w: w.ref, x: b.xq!, y, M, N, K, yDtype, alpha: 1, tactic: tactic(s, fp8Site(site), M), scratch: exact ? b.f8x : undefined, acc: b.acc!, xs: b.xs!, ws });
    else p.gemmI8({ w: w.ref, x: b.xq!, acc: b.acc!, y, M, N, K, yDtype, a: 1, ws, tactic: -1, xs: b.xs! });
  } else if (sq) {
    // SmoothQuant: x (f32) smoothed and quantized to int8, int32 GEMM, per-channel dequant
    p.quantI8({ x, pre: s.weights.opt(`${weight}.sq_pre`), out: s.b.xq!, M, K, scale: sq.a });
    p.gemmI8({ w: w.ref, x: s.b.xq!, acc: s.b.acc!, y, M, N, K, yDtype, a: sq.a, ws: s.weights.get(`${weight}.sq_scale`).ref, tactic: -1 });
  } else if (f8) {
    // FP8: the input quantized once (f32 in exact numerics: the CPU runner's bits), then one GEMM
    // per weight scale (gate_up's [up; gate] halves keep their own), each scaled by a · w.
    if (!xIsFp8) p.quantFp8({ x, xDtype: "F32", out: s.b.xq!, M, K, scale: f8.a });
    const n = N / f8.w.length;
    const ye = yDtype === "F32" ? F32 : s.es;
    f8.w.forEach((ws, i) => {
      p.gemmFp8({ w: w.ref.add(i * n * K), x: s.b.xq!, y: y.add(i * n * ye), M, N: n, K, yDtype, ldy: N, alpha: Math.fround(f8.a * ws), tactic: tactic(s, fp8Site(site), M), scratch: exact ? s.b.f8x : undefined });
    });
  } else if (gscale) {
    // AWQ: group-wise scales; x has the prequant scale applied by its producer (norm weight, MUL_COLS, gated activation)
    const group = s.desc.weight_only?.group_size;
    if (!group) throw new TrtbError("ENGINE_FORMAT", `${weight} has group scales but the plan declares no W4A16_AWQ quantization`);
    p.gemmWo({
      w: w.ref, gscale: gscale.ref, group, x, y, M, N, K, bits: 4, ab: s.dt, yDtype,
      xDtype: s.adt, scratch, deq: s.b.deq, tactic: tactic(s, woSite(site), M),
    });
  } else if (scale) {
    const bits = s.desc.weight_only?.bits;
    if (!bits) throw new TrtbError("ENGINE_FORMAT", `${weight} has scales but the plan declares no weight-only quantization`);
    p.gemmWo({
      w: w.ref.add(expert * woPackedBytes(N, K, bits)), scale: scale.ref.add(expert * N * F32), x, y, M, N, K, bits, ab: s.dt, yDtype,
      xDtype: s.adt, scratch, deq: s.b.deq, tactic: tactic(s, woSite(site), M),
    });
  } else {
    p.gemm({ w: w.ref.add(expert * N * K * s.es), x, y, M, N, K, ab: s.dt, yDtype, xDtype: s.adt, scratch, tactic: tactic(s, site, M) });
  }
  return yDtype;
}

/** MoE layer l: route on the GPU, group tokens per expert on the host, expert GEMMs, weighted sum. */
function emitMoe(s: RunnerState, p: Program, l: number, T: number): Program {
  const d = s.desc;
  const moe = d.moe!;
  const b = s.b;
  const dt = s.dt;
  const H = d.hidden_size;
  const I = d.intermediate_size;
  const k = moe.top_k;
  const P = `layers.${l}.`;
  p.moeRoute({ x: b.h!, xDtype: s.adt, router: s.weights.get(`${P}router`).ref, E: moe.num_experts, H, topK: k, ids: b.routeIds!, w: b.routeW!, T });
  s.ctx.exec(p);
  const ids = new Int32Array(s.ctx.download(b.routeIds!, T * k * I32).buffer);
  const ws = new Float32Array(s.ctx.download(b.routeW!, T * k * F32).buffer);
  const lists = moe.local_experts.map(() => ({ idx: [] as number[], w: [] as number[] }));
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < k; j++) {
      const e = moe.local_experts.indexOf(ids[t * k + j]!);
      if (e < 0) continue;
      lists[e]!.idx.push(t);
      lists[e]!.w.push(ws[t * k + j]!);
    }
  }
  const hm = s.hmoe!;
  const n = T * k;
  const hIdx = new Int32Array(hm.u8.buffer, hm.u8.byteOffset, n);
  const hW = new Float32Array(hm.u8.buffer, hm.u8.byteOffset + n * 4, n);
  const q = new Program();
  q.memset(b.moeOut!, 0, T * H * F32);
  let off = 0;
  const starts: number[] = [];
  for (const li of lists) {
    starts.push(off);
    hIdx.set(li.idx, off);
    hW.set(li.w, off);
    off += li.idx.length;
  }
  q.memcpy(b.moeIdx!, hm.at(0), n * 4);
  q.memcpy(b.moeW!, hm.at(n * 4), n * 4);
  lists.forEach((li, e) => {
    const ne = li.idx.length;
    if (ne === 0) return;
    const idx = b.moeIdx!.add(starts[e]! * I32);
    q.gatherRows({ src: b.h!, dst: b.xe!, idx, R: ne, rowBytes: H * s.aes });
    const fcDt = gemm(s, q, "experts.gate_up", `${P}experts.gate_up`, b.xe!, b.fc!, ne, 2 * I, H, dt, e);
    q.gatedAct({ in: b.fc!, inDtype: fcDt, out: b.act!, outDtype: s.adt, I, T: ne, act: d.act });
    gemm(s, q, "experts.down", `${P}experts.down`, b.act!, b.ye!, ne, H, I, "F32", e);
    q.scatterAdd({ y: b.ye!, out: b.moeOut!, idx, w: b.moeW!.add(starts[e]! * F32), R: ne, H });
  });
  return q;
}

/** logits rows (s.ldt: f32, or f16 logits) = h[rows of `idx`] · lm_head, soft-capped; optionally sampled into outIds (+ copy to host). */
export function emitHead(s: RunnerState, p: Program, R: number, idx: DevRef | null, sample: DevRef | null): void {
  const d = s.desc;
  const b = s.b;
  const H = d.hidden_size;
  const V = d.lm_head_rows;
  let x = b.h!;
  if (idx) {
    p.gatherRows({ src: b.h!, dst: b.hg!, idx, R, rowBytes: H * s.aes });
    x = b.hg!;
  }
  gemm(s, p, "lm_head", "lm_head", x, b.logits!, R, V, H, s.ldt);
  if (d.final_softcap !== null) p.softcap({ x: b.logits!, dtype: s.ldt, n: R * V, cap: d.final_softcap });
  if (sample) {
    p.sample({ logits: b.logits!, dtype: s.ldt, ld: V, V: d.vocab_size, params: sample, out: b.outIds!, R });
    p.memcpy(s.hout.at(0), b.outIds!, R * I32);
  }
}

// ---- whole passes -------------------------------------------------------------------------------

/** Prefill program for the written inputs; the caller adds the head. */
export function prefillProgram(s: RunnerState, lay: PrefillLayout, T: number, nTiles: number): Program {
  const d = s.desc;
  const din = s.din;
  const p = new Program();
  p.memcpy(din.at(0), s.hin.at(0), lay.bytes);
  return emitLayers(s, p, T, { ids: din.at(lay.ids), pos: din.at(lay.pos), slot: din.at(lay.slot), ropeSel: din.at(lay.ropeSel) }, (pp, l, outDtype) => {
    pp.attnPrefill({
      q: s.b.q!, kv: s.kv.at(l * s.kvLayerBytes), kvDtype: s.kvdt, blockTable: din.at(lay.table), maxBlocks: s.maxBlocksPerSeq,
      tiles: din.at(lay.tiles), nTiles, cuQ: din.at(lay.cuQ), pos0: din.at(lay.pos0), nH: d.num_heads, nKV: d.num_kv_heads, D: d.head_size,
      tpb: s.tokensPerBlock, scale: d.attn_scale, softcap: d.attn_softcap ?? 0, window: d.windows[l] ?? 0, out: s.b.ctx!, outDtype,
      kvScale: s.kvScales[l],
    });
  });
}

/** One decode step for B rows whose inputs are laid out as `lay`: layers, head, sampling into hout. */
export function decodeProgram(s: RunnerState, B: number, lay: DecodeLayout): Program {
  const d = s.desc;
  const din = s.din;
  const ns = nsplit(s, B);
  let p = new Program();
  p.memcpy(din.at(0), s.hin.at(0), lay.bytes);
  p = emitLayers(s, p, B, { ids: din.at(lay.ids), pos: din.at(lay.pos), slot: din.at(lay.slot), ropeSel: din.at(lay.ropeSel) }, (pp, l, outDtype) => {
    pp.attnDecode({
      q: s.b.q!, kv: s.kv.at(l * s.kvLayerBytes), kvDtype: s.kvdt, blockTable: din.at(lay.table), maxBlocks: s.maxBlocksPerSeq,
      ctxLen: din.at(lay.ctxLen), nH: d.num_heads, nKV: d.num_kv_heads, D: d.head_size, tpb: s.tokensPerBlock, scale: d.attn_scale,
      softcap: d.attn_softcap ?? 0, window: d.windows[l] ?? 0, nsplit: ns, ws: s.b.attnWs!, out: s.b.ctx!, outDtype, B,
      kvScale: s.kvScales[l],
    });
  });
  emitHead(s, p, B, null, din.at(lay.params));
  return p;
}
