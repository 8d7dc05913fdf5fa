/**
 * The CPU runner's matrix products: libtrtb's threaded, vectorised f32 GEMM (`trtb_gemm_f32`) when
 * the library loads, else plain TypeScript loops (the original reference: f64 accumulation). Both
 * compute the same definition; the native one sums in f32 in an order that depends only on the
 * inner length, so a one-token step still gives the bits of that row of a full prefill.
 */
import { type Native, nativeLib } from "../ffi/index.ts";

let useNative = true;

/** Tests and benches: `"ts"` forces the TypeScript loops, `"auto"` (default) uses libtrtb when it loads. Returns the previous setting. */
export function setCpuGemmBackend(b: "auto" | "ts"): "auto" | "ts" {
  const old = useNative ? "auto" : "ts";
  useNative = b === "auto";
  return old;
}

/** The library the runner's products go through now, or null for the TypeScript loops. */
export function cpuGemmLib(): Native | null {
  return useNative ? nativeLib() : null;
}

/** TypeScript reference: y[s, o] = Σ_i x[s·inF + i] · w[(rowOffset + o)·inF + i] (+ b[rowOffset + o]). */
export function linearTs(x: Float32Array, S: number, w: Float32Array, inF: number, b: Float32Array | undefined, rowOffset: number, rows: number): Float32Array {
  const y = new Float32Array(S * rows);
  for (let s = 0; s < S; s++) {
    const xo = s * inF;
    for (let o = 0; o < rows; o++) {
      const wo = (rowOffset + o) * inF;
      let acc = 0;
      for (let i = 0; i < inF; i++) acc += x[xo + i]! * w[wo + i]!;
      y[s * rows + o] = acc + (b ? b[rowOffset + o]! : 0);
    }
  }
  return y;
}

/** y[S, rows] = x[S, inF] · w[rowOffset : rowOffset + rows, inF]ᵀ (+ b), natively when libtrtb loads. */
export function linearF32(x: Float32Array, S: number, w: Float32Array, inF: number, b: Float32Array | undefined, rowOffset: number, rows: number): Float32Array {
  const lib = cpuGemmLib();
  if (!lib) return linearTs(x, S, w, inF, b, rowOffset, rows);
  const y = new Float32Array(S * rows);
  const wv = rowOffset === 0 && w.length === rows * inF ? w : w.subarray(rowOffset * inF, (rowOffset + rows) * inF);
  const bv = b ? (rowOffset === 0 && b.length === rows ? b : b.subarray(rowOffset, rowOffset + rows)) : null;
  lib.gemmF32(x, wv, bv, y, S, rows, inF);
  return y;
}

/** Query rows per block of `attention` (scores of one block: ATTN_ROW_BLOCK × positions floats). */
const ATTN_ROW_BLOCK = 64;

const silu = (v: number) => v / (1 + Math.exp(-v));
const geluTanh = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

/**
 * The gated MLP's middle: out[s·I + i] = act(a[aOff + s·lda + i]) · g[gOff + s·ldg + i] for S × I,
 * natively (f32, a few ulp) when libtrtb loads, else in f64 like the runner's `act`.
 */
export function gatedAct(out: Float32Array, act: "silu" | "gelu_tanh", a: Float32Array, aOff: number, lda: number, g: Float32Array, gOff: number, ldg: number, S: number, I: number): void {
  const lib = cpuGemmLib();
  if (lib) return lib.gatedAct(a.subarray(aOff), g.subarray(gOff), out, S, I, act, lda, ldg);
  const f = act === "silu" ? silu : geluTanh;
  for (let s = 0; s < S; s++) for (let i = 0; i < I; i++) out[s * I + i] = f(a[aOff + s * lda + i]!) * g[gOff + s * ldg + i]!;
}

/** One attention call: S new positions after pos0 cached ones, GQA heads, the family's score rules. */
export interface AttentionSpec {
  S: number;
  pos0: number;
  nH: number;
  nKV: number;
  d: number;
  /** Multiplies q·k. */
  scale: number;
  /** Logit soft-cap (tanh(x / c) · c), or null. */
  softcap: number | null;
  /** Sliding window (positions attended, the current one included), or null for all. */
  window: number | null;
}

/**
 * Causal softmax attention of q [S, nH·d] over the cache K, V ([pos0 + S, nKV·d], these S
 * positions included) → context [S, nH·d]. Native: per head, scores = q·Kᵀ and context = P·V
 * through `trtb_gemm_f32` (f32 sums; P is zero outside each row's window, which leaves the sums
 * unchanged, so a step matches the prefill bit for bit); softmax in f64 here.
 */
export function attention(q: Float32Array, K: Float32Array, V: Float32Array, a: AttentionSpec): Float32Array {
  const lib = cpuGemmLib();
  if (!lib) return attentionTs(q, K, V, a);
  const { S, pos0, nH, nKV, d, scale, softcap, window } = a;
  const group = nH / nKV;
  const ctx = new Float32Array(S * nH * d);
  const kv = nKV * d;
  // Row blocks: block [s0, s1) needs positions < pos0 + s1 only, so the masked triangle beyond
  // the block is never computed; within it, P is zeroed where a row may not look.
  const B = Math.min(S, ATTN_ROW_BLOCK);
  const p = new Float32Array(B * (pos0 + S));
  const e = new Float64Array(pos0 + S);
  for (let s0 = 0; s0 < S; s0 += B) {
    const s1 = Math.min(S, s0 + B);
    const T = pos0 + s1;
    const lo0 = window === null ? 0 : Math.max(0, pos0 + s0 - window + 1); // first position any row of the block sees
    for (let h = 0; h < nH; h++) {
      const kh = Math.floor(h / group);
      const qh = q.subarray(s0 * nH * d + h * d);
      lib.gemmF32(qh, K.subarray(lo0 * kv + kh * d), null, p, s1 - s0, T - lo0, d, { ldx: nH * d, ldw: kv, ldy: T - lo0 });
      const W = T - lo0;
      for (let s = s0; s < s1; s++) {
        const pos = pos0 + s;
        const lo = window === null ? 0 : Math.max(0, pos - window + 1);
        const row = (s - s0) * W - lo0;
        let mx = -Infinity;
        for (let t = lo; t <= pos; t++) {
          let v = p[row + t]! * scale;
          if (softcap !== null) v = Math.tanh(v / softcap) * softcap;
          e[t] = v;
          if (v > mx) mx = v;
        }
        let sum = 0;
        for (let t = lo; t <= pos; t++) sum += e[t] = Math.exp(e[t]! - mx);
        for (let t = lo; t <= pos; t++) p[row + t] = e[t]! / sum;
        for (let t = lo0; t < lo; t++) p[row + t] = 0;
        for (let t = pos + 1; t < T; t++) p[row + t] = 0;
      }
      lib.gemmF32(p, V.subarray(lo0 * kv + kh * d), null, ctx.subarray(s0 * nH * d + h * d), s1 - s0, d, W, { ldx: W, ldw: kv, ldy: nH * d, wKN: true });
    }
  }
  return ctx;
}

/** TypeScript reference of `attention` (f64 sums). */
export function attentionTs(q: Float32Array, K: Float32Array, V: Float32Array, a: AttentionSpec): Float32Array {
  const { S, pos0, nH, nKV, d, scale, softcap, window } = a;
  const ctx = new Float32Array(S * nH * d);
  const scores = new Float64Array(pos0 + S);
  const group = nH / nKV;
  for (let h = 0; h < nH; h++) {
    const kh = Math.floor(h / group);
    for (let s = 0; s < S; s++) {
      const p = pos0 + s;
      const lo = window === null ? 0 : Math.max(0, p - window + 1);
      const n = p - lo + 1;
      for (let t = lo; t <= p; t++) {
        let acc = 0;
        for (let i = 0; i < d; i++) acc += q[(s * nH + h) * d + i]! * K[(t * nKV + kh) * d + i]!;
        acc *= scale;
        if (softcap !== null) acc = Math.tanh(acc / softcap) * softcap;
        scores[t - lo] = acc;
      }
      let mx = -Infinity;
      for (let i = 0; i < n; i++) mx = Math.max(mx, scores[i]!);
      let sum = 0;
      for (let i = 0; i < n; i++) {
        scores[i] = Math.exp(scores[i]! - mx);
        sum += scores[i]!;
      }
      for (let i = 0; i < n; i++) scores[i] = scores[i]! / sum;
      for (let i = 0; i < d; i++) {
        let acc = 0;
        for (let t = lo; t <= p; t++) acc += scores[t - lo]! * V[(t * nKV + kh) * d + i]!;
        ctx[(s * nH + h) * d + i] = acc;
      }
    }
  }
  return ctx;
}
