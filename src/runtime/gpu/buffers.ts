/**
 * Sizes and layouts of the GPU runner's device buffers: the activation buffers of a forward (one
 * allocation), the pinned input blocks of a prefill and of a decode step, the split-K attention
 * workspace. They depend only on the engine's model description and the runner's limits
 * (`BufferShape`, which `RunnerState` satisfies), so the state can size itself from here.
 */
import { type DeviceMem, type DevRef, type EngineContext, Program, SAMPLE_PARAMS_BYTES } from "../../ffi/engine.ts";
import type { EngineModelDesc } from "../../engine/plan.ts";

/** What the buffer sizes depend on (a `RunnerState` is one). */
export interface BufferShape {
  readonly desc: EngineModelDesc;
  readonly ctx: EngineContext;
  readonly numerics: "fast" | "exact";
  readonly maxNumTokens: number;
  readonly maxBatchSize: number;
  readonly maxSeqLen: number;
  readonly maxBlocksPerSeq: number;
  /** bytes per activation element */
  readonly aes: number;
  readonly sms: number;
  /** query rows per prefill attention tile */
  readonly bq: number;
  /** bytes per logits element (4, or 2 for f16 logits) */
  readonly les: number;
}

export const I32 = 4;
export const F32 = 4;
export const align = (n: number, a = 256) => Math.ceil(n / a) * a;
/** Query rows per prefill attention tile (trtb_engine.h, ATTN_PREFILL). */
export const PREFILL_TILE = 64;

/** Byte offsets into the input block of a prefill. */
export interface PrefillLayout {
  ids: number; pos: number; slot: number; tiles: number; cuQ: number; pos0: number; lastIdx: number; params: number; table: number;
  /** per token: 1 = LongRoPE's long table (read only by engines with `long_rope`) */
  ropeSel: number; bytes: number;
}
/** Byte offsets into the input block of a decode step. */
export interface DecodeLayout {
  ids: number; pos: number; slot: number; ctxLen: number; params: number; table: number; ropeSel: number; bytes: number;
}

/** Most prefill attention tiles of one chunk. */
export function maxTiles(s: BufferShape): number {
  return Math.ceil(s.maxNumTokens / s.bq) + s.maxBatchSize;
}

// ---- input layouts (byte offsets into the input block) ------------------------------------------

export function prefillLayout(s: BufferShape, T: number, nseq: number, nTiles: number): PrefillLayout {
  let o = 0;
  const take = (n: number) => {
    const at = o;
    o += align(n, 16);
    return at;
  };
  const ids = take(T * I32), pos = take(T * I32), slot = take(T * I32), tiles = take(2 * nTiles * I32);
  const cuQ = take((nseq + 1) * I32), pos0 = take(nseq * I32), lastIdx = take(nseq * I32);
  const params = take(nseq * SAMPLE_PARAMS_BYTES), table = take(nseq * s.maxBlocksPerSeq * I32), ropeSel = take(T * I32);
  return { ids, pos, slot, tiles, cuQ, pos0, lastIdx, params, table, ropeSel, bytes: o };
}

export function decodeLayout(s: BufferShape, B: number): DecodeLayout {
  let o = 0;
  const take = (n: number) => {
    const at = o;
    o += align(n, 16);
    return at;
  };
  const ids = take(B * I32), pos = take(B * I32), slot = take(B * I32), ctxLen = take(B * I32);
  const params = take(B * SAMPLE_PARAMS_BYTES), table = take(B * s.maxBlocksPerSeq * I32), ropeSel = take(B * I32);
  return { ids, pos, slot, ctxLen, params, table, ropeSel, bytes: o };
}

/** u32 counters at the start of the split-K attention workspace (trtb_engine.h, ATTN_DECODE). */
export const ATTN_COUNTERS = 65536;

/** Split-K factor of decode attention for B rows. */
export function nsplit(s: BufferShape, B: number): number {
  const want = Math.ceil((2 * s.sms) / Math.max(1, B * s.desc.num_kv_heads));
  return Math.max(1, Math.min(want, Math.ceil(s.maxSeqLen / 16), 128));
}

/**
 * The activation buffers of a forward of up to maxNumTokens tokens (maxBatchSize rows through the
 * head), in one allocation taken by `keep`; fills `iota` and zeroes the split-K counters.
 * Returns the buffers by name and the allocation's size.
 */
export function allocActivations(s: BufferShape, keep: (m: DeviceMem) => DeviceMem): { b: Record<string, DevRef>; bytes: number } {
  const d = s.desc;
  const ctx = s.ctx;
  const exact = s.numerics === "exact";
  const T = s.maxNumTokens;
  const H = d.hidden_size;
  const I = d.intermediate_size;
  const R = s.maxBatchSize;
  const es = s.aes;
  const nHD = d.num_heads * d.head_size;
  const nsplitMax = nsplit(s, 1);
  // FP8 engines feed their FP8 GEMMs f32 (h, ctx, act), quantized by ACT_FP8
  const ies = d.fp8 || d.sq || d.rowwise ? F32 : es;
  const sizes: Record<string, number> = {
    res: T * H * F32, h: T * H * ies, qkv: T * d.qkv_rows * F32, q: T * nHD * F32, ctx: T * nHD * ies, dense: T * H * F32,
    fc: T * 2 * I * (exact ? F32 : es), act: T * I * ies, proj: T * H * F32, hg: R * H * es, logits: R * d.lm_head_rows * s.les, outIds: R * I32,
    attnWs: ATTN_COUNTERS * 4 + R * d.num_heads * nsplitMax * (d.head_size + 2) * F32, iota: T * I32,
  };
  // exact numerics: the two 16-bit halves of a GEMM input of up to T rows
  if (exact) sizes.scratch = 2 * T * Math.max(H, nHD, I) * 2;
  // weight-only GEMMs beyond 64 rows expand their weights to 16 bits here (the largest matrix)
  if (d.weight_only && T > 64) sizes.deq = Math.max(d.qkv_rows * H, H * nHD, 2 * I * H) * 2;
  // FP8 engines: the e4m3 input of an FP8 GEMM (one byte per element)
  if (d.fp8 || d.sq || d.rowwise) sizes.xq = T * Math.max(H, nHD, I);
  // SmoothQuant and per-token engines: the int32 (f32) sums of one GEMM; per-token: one scale per row
  if (d.sq || d.rowwise) sizes.acc = T * Math.max(d.qkv_rows, H, 2 * I) * I32;
  if (d.rowwise) sizes.xs = T * F32;
  // … and in exact numerics both operands of one FP8 GEMM widened to bf16
  if ((d.fp8 || d.rowwise?.algo === "FP8") && exact) sizes.f8x = 2 * (T * Math.max(H, nHD, I) + Math.max(d.qkv_rows * H, H * nHD, 2 * I * H));
  if (d.moe) {
    const k = d.moe.top_k;
    Object.assign(sizes, { routeIds: T * k * I32, routeW: T * k * F32, moeOut: T * H * F32, xe: T * H * es, ye: T * H * F32, moeIdx: T * k * I32, moeW: T * k * F32 });
  }
  let total = 0;
  const offs: Record<string, number> = {};
  for (const [k, v] of Object.entries(sizes)) {
    offs[k] = total;
    total += align(v);
  }
  const act = keep(ctx.alloc(total, "activations"));
  const b: Record<string, DevRef> = {};
  for (const k of Object.keys(sizes)) b[k] = act.at(offs[k]!);
  const iota = new Int32Array(T);
  for (let i = 0; i < T; i++) iota[i] = i;
  ctx.upload(b.iota!, new Uint8Array(iota.buffer));
  // split-K attention counters start (and stay, between launches) at zero
  ctx.exec(new Program().memset(b.attnWs!, 0, ATTN_COUNTERS * 4));
  return { b, bytes: total };
}
