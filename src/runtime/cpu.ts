/**
 * The CPU reference runner: fp32 forward pass over a TRT-LLM checkpoint, written to be obviously
 * right rather than fast. It is the oracle the converters, quantizers and the GPU engine are
 * checked against, so every family's semantics live here in plain loops. The matrix products and
 * the attention softmax·V go through cpu-gemm.ts (libtrtb's f32 GEMM, or TypeScript loops without it).
 *
 * Per layer (Llama; family switches noted):
 *   h   = x + attn(norm_in(x))                [Gemma2: x + norm_post(attn(norm_in(x)))]
 *   out = h + mlp(norm_post(h))               [Gemma2: h + norm_postff(mlp(norm_preff(h)))]
 *   attn: fused qkv (+bias), [Qwen3: per-head RMSNorm on q, k], RoPE rotate-half, causal softmax
 *         with GQA, [Gemma2: logit soft-cap, sliding window on some layers], dense (+bias)
 *   mlp:  proj(act(fc(x)) * gate(x)); fused fc = [linear; activated]; MoE: softmax router, top-k,
 *         renormalised, experts as fused fc.
 */
import { headSize, numKvHeads, type PretrainedConfig } from "../format/checkpoint-config.ts";
import { TrtbError } from "../errors.ts";
import type { F32Tensor, FullWeights } from "./merge.ts";
import type { ModelSemantics } from "../models/common/semantics.ts";
import { attention, gatedAct, linearF32 } from "./cpu-gemm.ts";
import { Sampler, type SamplingOptions } from "./sampling.ts";

// ---------------------------------------------------------------------------------------------
// small dense helpers (row-major)

/** y[s, o] = sum_i x[s, i] · W[o, i] (+ b[o]): libtrtb's f32 GEMM, else the TypeScript loop (cpu-gemm.ts). */
function linear(x: Float32Array, S: number, W: F32Tensor, b?: F32Tensor, rowOffset = 0, rows = W.shape[0]!): Float32Array {
  return linearF32(x, S, W.data, W.shape[W.shape.length - 1]!, b?.data, rowOffset, rows);
}

function rmsNorm(x: Float32Array, S: number, n: number, w: Float32Array, eps: number): Float32Array {
  const y = new Float32Array(S * n);
  for (let s = 0; s < S; s++) {
    let ss = 0;
    for (let i = 0; i < n; i++) ss += x[s * n + i]! ** 2;
    const r = 1 / Math.sqrt(ss / n + eps);
    for (let i = 0; i < n; i++) y[s * n + i] = x[s * n + i]! * r * w[i]!;
  }
  return y;
}

const silu = (v: number) => v / (1 + Math.exp(-v));
const geluTanh = (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3)));

function softmaxInPlace(a: Float64Array | Float32Array, n: number): void {
  let mx = -Infinity;
  for (let i = 0; i < n; i++) mx = Math.max(mx, a[i]!);
  let sum = 0;
  for (let i = 0; i < n; i++) {
    a[i] = Math.exp(a[i]! - mx);
    sum += a[i]!;
  }
  for (let i = 0; i < n; i++) a[i] = a[i]! / sum;
}

// ---------------------------------------------------------------------------------------------

/**
 * An optional observer / fake-quantizer the runner calls around its decoder linears and the KV
 * cache: calibration statistics (src/calib/) and simulated activation / KV-cache quantization
 * (src/runtime/quant-sim.ts). Kept apart from `linear`: the hooks see and may replace a linear's
 * input, see its output, and may change K and V before they enter the cache.
 * `module` is the global TRT-LLM module name, e.g. `transformer.layers.3.attention.qkv`.
 */
export interface CpuRunnerHooks {
  /** Input x [S, inF] of a decoder linear; return an array to feed instead (fake quantization), or nothing. */
  linearInput?(module: string, x: Float32Array, S: number, inF: number): Float32Array | void;
  /** Output y [S, outF] of a decoder linear (bias added; before RoPE for qkv). */
  linearOutput?(module: string, y: Float32Array, S: number, outF: number): void;
  /** K and V [S, nKV·d] of `layer` after RoPE / q-k norm, before they are stored and attended to; may change them in place. */
  kv?(layer: number, k: Float32Array, v: Float32Array, S: number): void;
}

export class CpuRunner {
  /**
   * `settings`: the family's semantics (`family.semantics(cfg)`), which this runner applies.
   * `hooks`: see CpuRunnerHooks (settable later; null for none).
   */
  constructor(readonly cfg: PretrainedConfig, readonly w: FullWeights, readonly settings: ModelSemantics, public hooks: CpuRunnerHooks | null = null) {}

  /** A decoder linear with the hooks around it (`linear` itself is untouched). */
  private hooked(module: string, x: Float32Array, S: number, W: F32Tensor, b?: F32Tensor): Float32Array {
    const h = this.hooks;
    if (!h) return linear(x, S, W, b);
    const xin = h.linearInput?.(module, x, S, W.shape[W.shape.length - 1]!) ?? x;
    const y = linear(xin, S, W, b);
    h.linearOutput?.(module, y, S, W.shape[0]!);
    return y;
  }

  private t(name: string): F32Tensor {
    const t = this.w.get(name);
    if (!t) throw new TrtbError("RUN_MISSING_TENSOR", `checkpoint has no tensor ${name}`, { tensor: name });
    return t;
  }
  private opt(name: string): F32Tensor | undefined {
    return this.w.get(name);
  }

  /** Logits [S, vocab] for one sequence. */
  forward(ids: readonly number[]): Float32Array {
    return this.step(ids, this.newCache(), { allLogits: true });
  }

  /** An empty KV cache for `step` (one sequence). */
  newCache(): CpuKvCache {
    return new CpuKvCache(this.cfg.num_hidden_layers, numKvHeads(this.cfg) * headSize(this.cfg));
  }

  /**
   * Append `ids` to the sequence held by `cache` (positions cache.length …) and return the logits of
   * the last new position ([vocab]), or of every new position ([S, vocab]) with `allLogits`. The
   * arithmetic is the same as one `forward` over the whole sequence, so results are bit-identical.
   */
  step(ids: readonly number[], cache: CpuKvCache, opts: { allLogits?: boolean } = {}): Float32Array {
    const cfg = this.cfg;
    const st = this.settings;
    const H = cfg.hidden_size;
    const V = cfg.vocab_size;
    const S = ids.length;
    const pos0 = cache.length;
    const eps = cfg.norm_epsilon;
    if (S === 0) throw new TrtbError("RUN_BAD_INPUT", "step: no token ids given");
    let x = this.embed(ids, pos0);
    cache.reserve(pos0 + S);
    for (let l = 0; l < cfg.num_hidden_layers; l++) x = this.layer(l, x, S, pos0, cache);
    cache.length = pos0 + S;
    const rowsOut = opts.allLogits ? S : 1;
    if (!opts.allLogits) x = x.subarray((S - 1) * H, S * H);
    x = rmsNorm(x, rowsOut, H, this.t("transformer.ln_f.weight").data, eps);
    const logits = linear(x, rowsOut, this.t("lm_head.weight"), undefined, 0, V);
    if (st.finalSoftcap !== null) for (let i = 0; i < logits.length; i++) logits[i] = Math.tanh(logits[i]! / st.finalSoftcap) * st.finalSoftcap;
    return logits;
  }

  /** The scaled embeddings [S, hidden] of `ids` (positions pos0 … for the error message). */
  embed(ids: readonly number[], pos0 = 0): Float32Array {
    const H = this.cfg.hidden_size;
    const V = this.cfg.vocab_size;
    const emb = this.t("transformer.vocab_embedding.weight");
    const x = new Float32Array(ids.length * H);
    for (let s = 0; s < ids.length; s++) {
      const id = ids[s]!;
      if (!(id >= 0 && id < V)) throw new TrtbError("RUN_BAD_INPUT", `token id ${id} at position ${pos0 + s} is outside the vocabulary [0, ${V})`);
      for (let i = 0; i < H; i++) x[s * H + i] = Math.fround(emb.data[id * H + i]! * this.settings.embedScale);
    }
    return x;
  }

  /**
   * One decoder layer on its own (layer-by-layer calibration, src/calib/sequential.ts): hidden states
   * x [S, hidden] of one sequence starting at position 0 → the layer's output, same arithmetic as `step`.
   */
  runLayer(l: number, x: Float32Array, S: number): Float32Array {
    const cache = this.newCache();
    cache.reserve(S);
    return this.layer(l, x, S, 0, cache);
  }

  /** Layer l's attention sub-block on its normalised input hn [S, hidden] of one sequence from position 0: the dense output (before any sandwich norm). */
  attentionPart(l: number, hn: Float32Array, S: number): Float32Array {
    const cache = this.newCache();
    cache.reserve(S);
    return this.attention(l, hn, S, 0, cache);
  }

  /** Layer l's MLP sub-block (dense, not MoE) on its normalised input [S, hidden]: the proj output (before any sandwich norm). */
  mlpPart(l: number, mn: Float32Array, S: number): Float32Array {
    return this.mlp(`transformer.layers.${l}.`, mn, S);
  }

  private layer(l: number, x: Float32Array, S: number, pos0: number, cache: CpuKvCache): Float32Array {
    const cfg = this.cfg;
    const st = this.settings;
    const H = cfg.hidden_size;
    const eps = cfg.norm_epsilon;
    const P = `transformer.layers.${l}.`;
    const hn = rmsNorm(x, S, H, this.t(`${P}input_layernorm.weight`).data, eps);
    let attn = this.attention(l, hn, S, pos0, cache);
    if (st.sandwich) attn = rmsNorm(attn, S, H, this.t(`${P}post_layernorm.weight`).data, eps);
    const h1 = new Float32Array(S * H);
    for (let i = 0; i < h1.length; i++) h1[i] = x[i]! + attn[i]!;

    const preName = st.sandwich ? `${P}pre_feedforward_layernorm.weight` : `${P}post_layernorm.weight`;
    const mn = rmsNorm(h1, S, H, this.t(preName).data, eps);
    let mlp = this.opt(`${P}mlp.router.weight`) ? this.moe(P, mn, S) : this.mlp(P, mn, S);
    if (st.sandwich) mlp = rmsNorm(mlp, S, H, this.t(`${P}post_feedforward_layernorm.weight`).data, eps);
    const out = new Float32Array(S * H);
    for (let i = 0; i < out.length; i++) out[i] = h1[i]! + mlp[i]!;
    return out;
  }

  private attention(l: number, hn: Float32Array, S: number, pos0: number, cache: CpuKvCache): Float32Array {
    const cfg = this.cfg;
    const st = this.settings;
    const H = cfg.hidden_size;
    const eps = cfg.norm_epsilon;
    const P = `transformer.layers.${l}.`;
    const nH = cfg.num_attention_heads;
    const nKV = numKvHeads(cfg);
    const d = headSize(cfg);

    const qkvW = this.t(`${P}attention.qkv.weight`);
    const qkv = this.hooked(`${P}attention.qkv`, hn, S, qkvW, this.opt(`${P}attention.qkv.bias`));
    const rows = qkvW.shape[0]!;
    const q = new Float32Array(S * nH * d);
    const k = new Float32Array(S * nKV * d);
    const v = new Float32Array(S * nKV * d);
    for (let s = 0; s < S; s++) {
      q.set(qkv.subarray(s * rows, s * rows + nH * d), s * nH * d);
      k.set(qkv.subarray(s * rows + nH * d, s * rows + (nH + nKV) * d), s * nKV * d);
      v.set(qkv.subarray(s * rows + (nH + nKV) * d, s * rows + (nH + 2 * nKV) * d), s * nKV * d);
    }
    if (st.qkNorm) {
      const qn = rmsNorm(q, S * nH, d, this.t(`${P}attention.q_layernorm.weight`).data, eps);
      const kn = rmsNorm(k, S * nKV, d, this.t(`${P}attention.k_layernorm.weight`).data, eps);
      q.set(qn);
      k.set(kn);
    }
    // LongRoPE: a step whose sequence reaches past original_max_position_embeddings rotates its
    // positions with the long table; the cache keeps the rotation its positions were stored with.
    const lr = st.longRope;
    const inv = lr && pos0 + S > lr.originalMax ? lr.longInvFreq : st.invFreq;
    const mscale = lr ? lr.mscale : 1;
    this.rope(q, S, nH, d, pos0, inv, mscale);
    this.rope(k, S, nKV, d, pos0, inv, mscale);
    this.hooks?.kv?.(l, k, v, S);
    // K and V of all positions so far: the cache's, then these S.
    const K = cache.k[l]!;
    const Vc = cache.v[l]!;
    K.set(k, pos0 * nKV * d);
    Vc.set(v, pos0 * nKV * d);

    const ctx = attention(q, K, Vc, { S, pos0, nH, nKV, d, scale: st.attnScale, softcap: st.attnSoftcap, window: st.window(l) });
    return this.hooked(`${P}attention.dense`, ctx, S, this.t(`${P}attention.dense.weight`), this.opt(`${P}attention.dense.bias`));
  }

  /** RoPE rotate-half over the first rotary_dim of each head; `mscale` multiplies cos and sin (LongRoPE). */
  private rope(x: Float32Array, S: number, heads: number, d: number, pos0: number, invFreq: Float32Array, mscale: number): void {
    const { rotaryDim } = this.settings;
    const half = rotaryDim / 2;
    for (let s = 0; s < S; s++) {
      for (let i = 0; i < half; i++) {
        const ang = Math.fround((pos0 + s) * invFreq[i]!);
        const c = Math.fround(Math.fround(Math.cos(ang)) * mscale);
        const sn = Math.fround(Math.fround(Math.sin(ang)) * mscale);
        for (let h = 0; h < heads; h++) {
          const o = (s * heads + h) * d;
          const a = x[o + i]!;
          const b = x[o + i + half]!;
          x[o + i] = a * c - b * sn;
          x[o + i + half] = b * c + a * sn;
        }
      }
    }
  }

  private act(v: number): number {
    return this.settings.act === "silu" ? silu(v) : geluTanh(v);
  }

  /** Gated MLP (fc, gate, proj) or fused fc = [linear; activated] (Phi-3). */
  private mlp(P: string, x: Float32Array, S: number): Float32Array {
    const fc = this.t(`${P}mlp.fc.weight`);
    const gate = this.opt(`${P}mlp.gate.weight`);
    const proj = this.t(`${P}mlp.proj.weight`);
    const I = proj.shape[1]!;
    const hmid = new Float32Array(S * I);
    if (gate) {
      const a = this.hooked(`${P}mlp.fc`, x, S, fc, this.opt(`${P}mlp.fc.bias`));
      const g = this.hooked(`${P}mlp.gate`, x, S, gate, this.opt(`${P}mlp.gate.bias`));
      gatedAct(hmid, this.settings.act, a, 0, I, g, 0, I, S, I);
    } else {
      const both = this.hooked(`${P}mlp.fc`, x, S, fc, this.opt(`${P}mlp.fc.bias`));
      gatedAct(hmid, this.settings.act, both, I, 2 * I, both, 0, 2 * I, S, I);
    }
    return this.hooked(`${P}mlp.proj`, hmid, S, proj, this.opt(`${P}mlp.proj.bias`));
  }

  /** Mixtral MoE: softmax over experts, top-k, renormalise, sum of expert MLPs. */
  private moe(P: string, x: Float32Array, S: number): Float32Array {
    const H = this.cfg.hidden_size;
    const router = this.t(`${P}mlp.router.weight`);
    const fc = this.t(`${P}mlp.fc.weight`); // [E, 2I, H] = [w3; w1]
    const proj = this.t(`${P}mlp.proj.weight`); // [E, H, I]
    const E = fc.shape[0]!;
    const I = proj.shape[2]!;
    const k = this.settings.moeTopK;
    const logits = linear(x, S, router);
    const out = new Float32Array(S * H);
    for (let s = 0; s < S; s++) {
      const p = Float64Array.from(logits.subarray(s * E, (s + 1) * E));
      softmaxInPlace(p, E);
      const order = [...Array(E).keys()].sort((a, b) => p[b]! - p[a]! || a - b).slice(0, k);
      const norm = order.reduce((acc, e) => acc + p[e]!, 0);
      const xs = x.subarray(s * H, (s + 1) * H);
      for (const e of order) {
        const wE: F32Tensor = { shape: [2 * I, H], data: fc.data.subarray(e * 2 * I * H, (e + 1) * 2 * I * H) };
        const pE: F32Tensor = { shape: [H, I], data: proj.data.subarray(e * H * I, (e + 1) * H * I) };
        const both = linear(xs, 1, wE);
        const hmid = new Float32Array(I);
        for (let i = 0; i < I; i++) hmid[i] = both[i]! * this.act(both[I + i]!);
        const y = linear(hmid, 1, pE);
        const wgt = p[e]! / norm;
        for (let i = 0; i < H; i++) out[s * H + i] = out[s * H + i]! + wgt * y[i]!;
      }
    }
    return out;
  }

  /** Greedy decoding: ids followed by up to `maxNewTokens` argmax tokens (KV cache; stops after `endId`). */
  greedy(ids: readonly number[], maxNewTokens: number, endId?: number): number[] {
    const seq = [...ids];
    for (const tok of this.generateIds(ids, { maxNewTokens })) {
      seq.push(tok);
      if (endId !== undefined && tok === endId) break;
    }
    return seq;
  }

  /**
   * Generated ids one at a time (greedy unless `sampling` says otherwise), with a KV cache: the
   * prompt is run once, then one position per id. Stop early by leaving the loop.
   */
  *generateIds(prompt: readonly number[], opts: { maxNewTokens: number; sampling?: "greedy" | SamplingOptions }): Generator<number, void, undefined> {
    if (prompt.length === 0) throw new TrtbError("RUN_BAD_INPUT", "generate: the prompt has no token ids");
    const sampler = new Sampler(opts.sampling);
    const cache = this.newCache();
    let logits = this.step(prompt, cache);
    for (let n = 0; n < opts.maxNewTokens; n++) {
      const tok = sampler.sample(logits);
      yield tok;
      if (n + 1 < opts.maxNewTokens) logits = this.step([tok], cache);
    }
  }
}

/** Per-layer K and V (after RoPE and q/k-norm) of the positions a `CpuRunner.step` sequence has seen. */
export class CpuKvCache {
  /** Positions held. */
  length = 0;
  readonly k: Float32Array[];
  readonly v: Float32Array[];
  private capacity = 0;

  constructor(readonly layers: number, readonly width: number) {
    this.k = Array.from({ length: layers }, () => new Float32Array(0));
    this.v = Array.from({ length: layers }, () => new Float32Array(0));
  }

  /** Room for `positions` positions (grows by doubling; keeps what is held). */
  reserve(positions: number): void {
    if (positions <= this.capacity) return;
    const cap = Math.max(positions, this.capacity * 2, 64);
    for (let l = 0; l < this.layers; l++) {
      const k = new Float32Array(cap * this.width);
      k.set(this.k[l]!.subarray(0, this.length * this.width));
      this.k[l] = k;
      const v = new Float32Array(cap * this.width);
      v.set(this.v[l]!.subarray(0, this.length * this.width));
      this.v[l] = v;
    }
    this.capacity = cap;
  }
}
