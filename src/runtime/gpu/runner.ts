/**
 * The GPU runtime of an engine (ModelRunner-style): upload the weight blob once, keep a paged KV
 * cache, and run forward passes as op programs on one stream.
 *
 *   forwardLogits(ids)            logits [S, V] per sequence (testing, `trtllm run --output_logits`)
 *   generate(batch, opts)         packed prefill of all prompts, then one decode step per token for
 *                                 the whole batch, replayed from a CUDA graph per batch size
 *
 * Per layer (f32 residual stream; GEMMs read the model dtype and accumulate in f32):
 *   h = norm_in(res)                                           [fused into the previous add]
 *   qkv = h · Wqkv (+bias) → q/k norm, RoPE, k/v into the cache   (QKV_ROPE)
 *   ctx = attention(q, cache)                                   (prefill tiles or split-K decode)
 *   res += [post_norm](ctx · Wdense + bias); h = norm(res)       (ADD_NORM)
 *   y = act(h · Wgate_up) · Wdown  | MoE: route, per expert the same, weighted scatter-add
 *   res += [post_ff_norm](y + bias); h = next norm_in or ln_f (res)
 *   logits = h[last rows] · Wlm_head (f32), [soft-cap], sample
 *
 * numerics "exact" keeps every activation and the KV cache in f32 (see RunnerOptions.numerics).
 *
 * MoE layers need the routing on the host (tokens are grouped per expert for the GEMMs), so a
 * Mixtral forward runs in segments and its decode steps are not captured in a graph.
 */
import { TrtbError } from "../../errors.ts";
import { log } from "../../log.ts";
import {
  type DeviceMem, type DevRef, type Dt, type EngineContext, type EngineDeviceInfo, engineLib, type Graph, type PinnedHost, Program,
  SAMPLE_PARAMS_BYTES,
} from "../../ffi/engine.ts";
import { Engine } from "../../engine/engine.ts";
import { type EngineModelDesc, type EnginePlan, type PlanGemmSite, tacticFor, woSite } from "../../engine/plan.ts";
import { woPackedBytes } from "../../engine/wo-layout.ts";
import { BlockAllocator, slotOf } from "./kv-cache.ts";
import { GREEDY, type SampleRow, type SamplingOptions, samplingRow, writeSampleRow } from "./sampling.ts";
import { DeviceWeights } from "./weights.ts";

export type { SamplingOptions } from "./sampling.ts";

export interface RunnerOptions {
  /** CUDA device (default 0). */
  device?: number;
  /** Most sequences per call (≤ the engine's max_batch_size; default min(engine, 64)). */
  maxBatchSize?: number;
  /** Most tokens per forward pass (≤ the engine's max_num_tokens; default the engine's). */
  maxNumTokens?: number;
  /** Tokens the KV cache holds (default: min(maxBatchSize × max_seq_len, fraction of free memory)). */
  maxKvTokens?: number;
  /** Share of free device memory the KV cache may take when maxKvTokens is not given (0.9). */
  kvCacheFreeGpuMemFraction?: number;
  /** Replay decode steps from CUDA graphs (default true). */
  cudaGraphs?: boolean;
  /** Run on this context instead of a new one on `device` (embedding; a CPU emulation in tests). */
  context?: { ctx: EngineContext; info: EngineDeviceInfo };
  /**
   * "fast" (default): activations enter the GEMMs and the KV cache in the model dtype, as
   * TensorRT-LLM does (logits within ~1e-2 of fp32). "exact": activations and the KV cache stay
   * f32; GEMMs read f32 inputs (GEMV for ≤ 8 rows, else two 16-bit halves: 2× GEMM work), so
   * results follow the fp32 CPU reference runner (same greedy ids even at near-ties).
   */
  numerics?: "fast" | "exact";
}

export interface GenerateOptions {
  maxNewTokens: number;
  /** "greedy" (default) or sampling parameters. */
  sampling?: "greedy" | SamplingOptions;
  /** Stop a row after it produces this token (the token is kept). */
  endId?: number;
  /** Pad finished rows to a common length with this id (default: rows keep their own lengths). */
  padId?: number;
  /** Called after every step with the new token of each row (null for rows already finished). */
  onToken?: (step: number, tokens: (number | null)[]) => void;
}

export interface GenerateResult {
  /** Prompt followed by the generated tokens, per row. */
  outputIds: number[][];
  /** Generated tokens only, per row. */
  newTokens: number[][];
  /** Milliseconds (host clock, synchronized): prefill (incl. first token) and all decode steps. */
  prefillMs: number;
  decodeMs: number;
  decodeSteps: number;
}

interface PrefillLayout {
  ids: number; pos: number; slot: number; tiles: number; cuQ: number; pos0: number; lastIdx: number; params: number; table: number; bytes: number;
}
interface DecodeLayout {
  ids: number; pos: number; slot: number; ctxLen: number; params: number; table: number; bytes: number;
}

const I32 = 4;
const F32 = 4;
/** u32 counters at the start of the split-K attention workspace (trtb_engine.h, ATTN_DECODE). */
const ATTN_COUNTERS = 65536;
/** Query rows per prefill attention tile (trtb_engine.h, ATTN_PREFILL). */
const PREFILL_TILE = 64;
const align = (n: number, a = 256) => Math.ceil(n / a) * a;

interface SeqPiece {
  /** index of the sequence in the caller's batch */
  seq: number;
  /** first position of this piece and its token count */
  pos0: number;
  n: number;
  /** the piece ends the prompt: its last token's logits are wanted */
  last: boolean;
}

export class GpuModelRunner implements Disposable {
  readonly desc: EngineModelDesc;
  readonly plan: EnginePlan;
  readonly maxBatchSize: number;
  readonly maxNumTokens: number;
  readonly maxSeqLen: number;
  readonly tokensPerBlock: number;
  readonly maxBlocksPerSeq: number;
  readonly kvTokens: number;
  readonly dt: Dt;
  readonly numerics: "fast" | "exact";
  /** dtype of activations entering GEMMs (and of h, ctx, act) and of the KV cache */
  readonly #adt: Dt;
  readonly #aes: number;
  readonly #kvdt: Dt;
  readonly #ctx: EngineContext;
  readonly #ownsCtx: boolean;
  readonly #es: number;
  readonly #weights: DeviceWeights;
  readonly #mem: DeviceMem[] = [];
  readonly #kv: DeviceMem;
  readonly #kvLayerBytes: number;
  readonly #alloc: BlockAllocator;
  readonly #b: Record<string, DevRef> = {};
  readonly #din: DeviceMem;
  readonly #hin: PinnedHost;
  readonly #hout: PinnedHost;
  readonly #hmoe: PinnedHost | null;
  readonly #graphs = new Map<number, Graph>();
  readonly #useGraphs: boolean;
  readonly #sms: number;
  readonly #nsplitMax: number;
  readonly #bq: number;
  #destroyed = false;

  private constructor(engine: Engine, opts: RunnerOptions) {
    const plan = (this.plan = engine.plan);
    const d = (this.desc = plan.model);
    if (plan.mapping.world_size > 1)
      throw new TrtbError("RUN_UNSUPPORTED",
        `this engine has ${plan.mapping.world_size} ranks (tp ${plan.mapping.tp_size}, pp ${plan.mapping.pp_size}); running multi-GPU engines is not supported yet — build from a tp=1, pp=1 checkpoint`);
    if (d.embedding_hidden_split) throw new TrtbError("RUN_UNSUPPORTED", "engines with a hidden-split embedding are not supported");
    const lim = plan.limits;
    this.maxBatchSize = Math.max(1, Math.min(lim.max_batch_size, opts.maxBatchSize ?? 64));
    this.maxNumTokens = Math.max(this.maxBatchSize, Math.min(lim.max_num_tokens, opts.maxNumTokens ?? lim.max_num_tokens));
    this.maxSeqLen = lim.max_seq_len;
    this.tokensPerBlock = lim.tokens_per_block;
    this.maxBlocksPerSeq = Math.ceil(this.maxSeqLen / this.tokensPerBlock);
    this.dt = d.dtype === "bfloat16" ? "BF16" : "F16";
    this.#es = 2;
    this.numerics = opts.numerics ?? "fast";
    const exact = this.numerics === "exact";
    this.#adt = exact ? "F32" : this.dt;
    this.#aes = exact ? 4 : 2;
    this.#kvdt = exact ? "F32" : this.dt;
    this.#useGraphs = (opts.cudaGraphs ?? true) && !d.moe;
    this.#bq = PREFILL_TILE;

    let info: EngineDeviceInfo;
    let ctx: EngineContext;
    if (opts.context) {
      ({ ctx, info } = opts.context);
    } else {
      const lib = engineLib();
      const device = opts.device ?? 0;
      info = lib.deviceInfo(device);
      ctx = lib.createContext(device);
    }
    this.#ctx = ctx;
    this.#ownsCtx = !opts.context;
    this.#sms = info.multiprocessors;
    if (plan.device && (plan.device.name !== info.name || plan.device.sm !== `${info.major}.${info.minor}`))
      log.warn(`engine was tuned on ${plan.device.name} (sm ${plan.device.sm}); running on ${info.name}: saved GEMM tactics that do not apply fall back to cuBLASLt's heuristic`);
    try {
      // weights: one allocation, the blob uploaded window by window
      this.#weights = new DeviceWeights(ctx, engine, (m) => this.#keep(m));

      // activations
      const T = this.maxNumTokens;
      const H = d.hidden_size;
      const I = d.intermediate_size;
      const R = this.maxBatchSize;
      const es = this.#aes;
      const nHD = d.num_heads * d.head_size;
      this.#nsplitMax = this.#nsplit(1);
      const sizes: Record<string, number> = {
        res: T * H * F32, h: T * H * es, qkv: T * d.qkv_rows * F32, q: T * nHD * F32, ctx: T * nHD * es, dense: T * H * F32,
        fc: T * 2 * I * (exact ? F32 : es), act: T * I * es, proj: T * H * F32, hg: R * H * es, logits: R * d.lm_head_rows * F32, outIds: R * I32,
        attnWs: ATTN_COUNTERS * 4 + R * d.num_heads * this.#nsplitMax * (d.head_size + 2) * F32, iota: T * I32,
      };
      // exact numerics: the two 16-bit halves of a GEMM input of up to T rows
      if (exact) sizes.scratch = 2 * T * Math.max(H, nHD, I) * 2;
      // weight-only GEMMs beyond 64 rows expand their weights to 16 bits here (the largest matrix)
      if (d.weight_only && T > 64) sizes.deq = Math.max(d.qkv_rows * H, H * nHD, 2 * I * H) * 2;
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
      const act = this.#keep(ctx.alloc(total, "activations"));
      for (const k of Object.keys(sizes)) this.#b[k] = act.at(offs[k]!);
      const iota = new Int32Array(T);
      for (let i = 0; i < T; i++) iota[i] = i;
      ctx.upload(this.#b.iota!, new Uint8Array(iota.buffer));
      // split-K attention counters start (and stay, between launches) at zero
      ctx.exec(new Program().memset(this.#b.attnWs!, 0, ATTN_COUNTERS * 4));

      // inputs: one device block + pinned mirror (layouts below)
      const inBytes = Math.max(this.#prefillLayout(T, R, this.#maxTiles()).bytes, this.#decodeLayout(R).bytes);
      this.#din = this.#keep(ctx.alloc(inBytes, "inputs"));
      this.#hin = ctx.hostAlloc(inBytes);
      this.#hout = ctx.hostAlloc(R * I32);
      this.#hmoe = d.moe ? ctx.hostAlloc(2 * T * d.moe.top_k * 4) : null;

      // KV cache
      const L = d.layers.length;
      const tokenBytes = L * 2 * d.num_kv_heads * d.head_size * (exact ? F32 : this.#es);
      const blockBytes = tokenBytes * this.tokensPerBlock;
      let tokens = opts.maxKvTokens ?? this.maxBatchSize * this.maxSeqLen;
      if (opts.maxKvTokens === undefined) {
        const free = ctx.memInfo().free;
        const cap = Math.floor((free * (opts.kvCacheFreeGpuMemFraction ?? 0.9)) / tokenBytes);
        tokens = Math.min(tokens, cap);
      }
      const numBlocks = Math.max(1, Math.floor(tokens / this.tokensPerBlock));
      this.kvTokens = numBlocks * this.tokensPerBlock;
      this.#kvLayerBytes = (numBlocks * blockBytes) / L;
      this.#kv = this.#keep(ctx.alloc(numBlocks * blockBytes, "kv cache"));
      this.#alloc = new BlockAllocator(numBlocks, this.tokensPerBlock);
      log.debug(`runner: weights ${(engine.weightBytes / 2 ** 30).toFixed(2)} GiB, activations ${(total / 2 ** 20).toFixed(0)} MiB, KV cache ${this.kvTokens} tokens (${((numBlocks * blockBytes) / 2 ** 30).toFixed(2)} GiB)`);
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  /** Load `rank{rank}.engine` of an engine directory onto the GPU. */
  static async fromDir(dir: string, opts: RunnerOptions & { rank?: number } = {}): Promise<GpuModelRunner> {
    const engine = await Engine.fromDir(dir, opts.rank ?? 0);
    return new GpuModelRunner(engine, opts);
  }

  /** Run an engine held in memory (built, not necessarily saved). */
  static fromEngine(engine: Engine, opts: RunnerOptions = {}): GpuModelRunner {
    return new GpuModelRunner(engine, opts);
  }

  get vocabSize(): number {
    return this.desc.vocab_size;
  }

  /** The context, for benchmarks (timers, reference rates). */
  get context(): EngineContext {
    return this.#ctx;
  }

  #keep(m: DeviceMem): DeviceMem {
    this.#mem.push(m);
    return m;
  }

  #nsplit(B: number): number {
    const want = Math.ceil((2 * this.#sms) / Math.max(1, B * this.desc.num_kv_heads));
    return Math.max(1, Math.min(want, Math.ceil(this.maxSeqLen / 16), 128));
  }

  #maxTiles(): number {
    return Math.ceil(this.maxNumTokens / this.#bq) + this.maxBatchSize;
  }

  // ---- input layouts (byte offsets into the input block) ----------------------------------------

  #prefillLayout(T: number, nseq: number, nTiles: number): PrefillLayout {
    let o = 0;
    const take = (n: number) => {
      const at = o;
      o += align(n, 16);
      return at;
    };
    const ids = take(T * I32), pos = take(T * I32), slot = take(T * I32), tiles = take(2 * nTiles * I32);
    const cuQ = take((nseq + 1) * I32), pos0 = take(nseq * I32), lastIdx = take(nseq * I32);
    const params = take(nseq * SAMPLE_PARAMS_BYTES), table = take(nseq * this.maxBlocksPerSeq * I32);
    return { ids, pos, slot, tiles, cuQ, pos0, lastIdx, params, table, bytes: o };
  }

  #decodeLayout(B: number): DecodeLayout {
    let o = 0;
    const take = (n: number) => {
      const at = o;
      o += align(n, 16);
      return at;
    };
    const ids = take(B * I32), pos = take(B * I32), slot = take(B * I32), ctxLen = take(B * I32);
    const params = take(B * SAMPLE_PARAMS_BYTES), table = take(B * this.maxBlocksPerSeq * I32);
    return { ids, pos, slot, ctxLen, params, table, bytes: o };
  }

  #hi32(off: number, n: number): Int32Array {
    return new Int32Array(this.#hin.u8.buffer, this.#hin.u8.byteOffset + off, n);
  }

  #tactic(site: string, m: number): number {
    const s: PlanGemmSite | undefined = this.plan.gemm.sites[site];
    if (!s) return -1;
    const i = tacticFor(s, m);
    return i >= 0 ? this.#weights.tactics[i]! : -1;
  }

  // ---- forward -----------------------------------------------------------------------------------

  /**
   * Emit the embedding and every layer for T tokens whose inputs are at `inp` in the device input
   * block; `attention(p, l)` emits layer l's attention (writes b.ctx). MoE layers flush the program
   * (run it, wait) and continue in a new one, so the caller gets back the program to continue.
   */
  #emitLayers(p0: Program, T: number, inp: { ids: DevRef; pos: DevRef; slot: DevRef }, attention: (p: Program, l: number) => void): Program {
    const d = this.desc;
    const b = this.#b;
    const dt = this.dt;
    const adt = this.#adt;
    const H = d.hidden_size;
    const I = d.intermediate_size;
    const eps = d.norm_eps;
    let p = p0;
    p.embed({ ids: inp.ids, table: this.#weights.get("embedding").ref, tableDtype: dt, rows: d.embedding_rows, vocabStart: d.embedding_vocab_start, H, scale: d.embed_scale, out: b.res!, T });
    p.addNorm({ res: b.res!, normW: this.#weights.get("layers.0.input_norm").ref, eps, out: b.h, outDtype: adt, H, T });
    const L = d.layers.length;
    for (let l = 0; l < L; l++) {
      const P = `layers.${l}.`;
      this.#gemm(p, "qkv", `${P}qkv`, b.h!, b.qkv!, T, d.qkv_rows, H, "F32");
      p.qkvRope({
        qkv: b.qkv!, ld: d.qkv_rows, bias: this.#weights.opt(`${P}qkv_bias`), qNorm: this.#weights.opt(`${P}q_norm`), kNorm: this.#weights.opt(`${P}k_norm`), eps,
        pos: inp.pos, slot: inp.slot, kv: this.#kv.at(l * this.#kvLayerBytes), kvDtype: this.#kvdt, tpb: this.tokensPerBlock, nH: d.num_heads,
        nKV: d.num_kv_heads, D: d.head_size, rot: d.rotary_dim, invFreq: this.#weights.get("rope.inv_freq").ref, qOut: b.q!, T,
      });
      attention(p, l);
      const nHD = d.num_heads * d.head_size;
      this.#gemm(p, "dense", `${P}dense`, b.ctx!, b.dense!, T, H, nHD, "F32");
      p.addNorm({
        res: b.res!, delta: b.dense, deltaBias: this.#weights.opt(`${P}dense_bias`), deltaNorm: d.sandwich_norms ? this.#weights.get(`${P}post_norm`).ref : undefined,
        normW: this.#weights.get(d.sandwich_norms ? `${P}pre_ff_norm` : `${P}post_norm`).ref, eps, out: b.h, outDtype: adt, H, T,
      });
      let delta: DevRef;
      if (d.moe) {
        p = this.#emitMoe(p, l, T);
        delta = b.moeOut!;
      } else {
        const fcDt = this.#gemm(p, "gate_up", `${P}gate_up`, b.h!, b.fc!, T, 2 * I, H, dt);
        p.gatedAct({ in: b.fc!, inDtype: fcDt, bias: this.#weights.opt(`${P}gate_up_bias`), out: b.act!, outDtype: adt, I, T, act: d.act });
        this.#gemm(p, "down", `${P}down`, b.act!, b.proj!, T, H, I, "F32");
        delta = b.proj!;
      }
      const next = l + 1 < L ? `layers.${l + 1}.input_norm` : "ln_f";
      p.addNorm({
        res: b.res!, delta, deltaBias: this.#weights.opt(`${P}down_bias`), deltaNorm: d.sandwich_norms ? this.#weights.get(`${P}post_ff_norm`).ref : undefined,
        normW: this.#weights.get(next).ref, eps, out: b.h, outDtype: adt, H, T,
      });
    }
    return p;
  }

  /**
   * One GEMM with the site's tactic for M rows against weight tensor `weight` (matrix `expert` of
   * a stacked MoE tensor); weight-only tensors (with `<weight>.scale`) go through the `<site>.wo`
   * tactics. Returns the output dtype (f32 in exact numerics).
   */
  #gemm(p: Program, site: string, weight: string, x: DevRef, y: DevRef, M: number, N: number, K: number, yFast: Dt, expert = 0): Dt {
    const exact = this.numerics === "exact";
    const yDtype: Dt = exact ? "F32" : yFast;
    const w = this.#weights.get(weight);
    const scale = this.#weights.find(`${weight}.scale`);
    const scratch = exact ? this.#b.scratch : undefined;
    if (scale) {
      const bits = this.desc.weight_only?.bits;
      if (!bits) throw new TrtbError("ENGINE_FORMAT", `${weight} has scales but the plan declares no weight-only quantization`);
      p.gemmWo({
        w: w.ref.add(expert * woPackedBytes(N, K, bits)), scale: scale.ref.add(expert * N * F32), x, y, M, N, K, bits, ab: this.dt, yDtype,
        xDtype: this.#adt, scratch, deq: this.#b.deq, tactic: this.#tactic(woSite(site), M),
      });
    } else {
      p.gemm({ w: w.ref.add(expert * N * K * this.#es), x, y, M, N, K, ab: this.dt, yDtype, xDtype: this.#adt, scratch, tactic: this.#tactic(site, M) });
    }
    return yDtype;
  }

  /** MoE layer l: route on the GPU, group tokens per expert on the host, expert GEMMs, weighted sum. */
  #emitMoe(p: Program, l: number, T: number): Program {
    const d = this.desc;
    const moe = d.moe!;
    const b = this.#b;
    const dt = this.dt;
    const H = d.hidden_size;
    const I = d.intermediate_size;
    const k = moe.top_k;
    const P = `layers.${l}.`;
    p.moeRoute({ x: b.h!, xDtype: this.#adt, router: this.#weights.get(`${P}router`).ref, E: moe.num_experts, H, topK: k, ids: b.routeIds!, w: b.routeW!, T });
    this.#ctx.exec(p);
    const ids = new Int32Array(this.#ctx.download(b.routeIds!, T * k * I32).buffer);
    const ws = new Float32Array(this.#ctx.download(b.routeW!, T * k * F32).buffer);
    const lists = moe.local_experts.map(() => ({ idx: [] as number[], w: [] as number[] }));
    for (let t = 0; t < T; t++) {
      for (let j = 0; j < k; j++) {
        const e = moe.local_experts.indexOf(ids[t * k + j]!);
        if (e < 0) continue;
        lists[e]!.idx.push(t);
        lists[e]!.w.push(ws[t * k + j]!);
      }
    }
    const hm = this.#hmoe!;
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
      q.gatherRows({ src: b.h!, dst: b.xe!, idx, R: ne, rowBytes: H * this.#aes });
      const fcDt = this.#gemm(q, "experts.gate_up", `${P}experts.gate_up`, b.xe!, b.fc!, ne, 2 * I, H, dt, e);
      q.gatedAct({ in: b.fc!, inDtype: fcDt, out: b.act!, outDtype: this.#adt, I, T: ne, act: d.act });
      this.#gemm(q, "experts.down", `${P}experts.down`, b.act!, b.ye!, ne, H, I, "F32", e);
      q.scatterAdd({ y: b.ye!, out: b.moeOut!, idx, w: b.moeW!.add(starts[e]! * F32), R: ne, H });
    });
    return q;
  }

  /** logits rows = h[rows of `idx`] · lm_head, soft-capped; optionally sampled into outIds (+ copy to host). */
  #emitHead(p: Program, R: number, idx: DevRef | null, sample: DevRef | null): void {
    const d = this.desc;
    const b = this.#b;
    const H = d.hidden_size;
    const V = d.lm_head_rows;
    let x = b.h!;
    if (idx) {
      p.gatherRows({ src: b.h!, dst: b.hg!, idx, R, rowBytes: H * this.#aes });
      x = b.hg!;
    }
    this.#gemm(p, "lm_head", "lm_head", x, b.logits!, R, V, H, "F32");
    if (d.final_softcap !== null) p.softcap({ x: b.logits!, n: R * V, cap: d.final_softcap });
    if (sample) {
      p.sample({ logits: b.logits!, ld: V, V: d.vocab_size, params: sample, out: b.outIds!, R });
      p.memcpy(this.#hout.at(0), b.outIds!, R * I32);
    }
  }

  /** Write the prefill inputs of `pieces` into the pinned block; returns the layout and counts. */
  #writePrefill(pieces: SeqPiece[], tokens: number[][], tables: number[][], params: SampleRow[] | null) {
    const T = pieces.reduce((a, s) => a + s.n, 0);
    const tiles: [number, number][] = [];
    pieces.forEach((s, i) => {
      for (let q0 = 0; q0 < s.n; q0 += this.#bq) tiles.push([i, q0]);
    });
    const lay = this.#prefillLayout(T, pieces.length, tiles.length);
    const ids = this.#hi32(lay.ids, T), pos = this.#hi32(lay.pos, T), slot = this.#hi32(lay.slot, T);
    const cuQ = this.#hi32(lay.cuQ, pieces.length + 1), pos0 = this.#hi32(lay.pos0, pieces.length);
    const lastIdx = this.#hi32(lay.lastIdx, pieces.length), tl = this.#hi32(lay.tiles, 2 * tiles.length);
    const table = this.#hi32(lay.table, pieces.length * this.maxBlocksPerSeq);
    let t = 0;
    let nLast = 0;
    pieces.forEach((s, i) => {
      cuQ[i] = t;
      pos0[i] = s.pos0;
      const tb = tables[s.seq]!;
      table.fill(0, i * this.maxBlocksPerSeq, (i + 1) * this.maxBlocksPerSeq);
      table.set(tb, i * this.maxBlocksPerSeq);
      for (let j = 0; j < s.n; j++) {
        const p = s.pos0 + j;
        ids[t] = tokens[s.seq]![p]!;
        pos[t] = p;
        slot[t] = slotOf(tb, p, this.tokensPerBlock);
        t++;
      }
      if (s.last) lastIdx[nLast++] = t - 1;
    });
    cuQ[pieces.length] = t;
    tiles.forEach(([i, q0], j) => {
      tl[2 * j] = i;
      tl[2 * j + 1] = q0;
    });
    if (params) {
      let r = 0;
      pieces.forEach((s) => {
        if (s.last) writeSampleRow(this.#hin.dv, lay.params + r * SAMPLE_PARAMS_BYTES, params[s.seq]!, 0);
        if (s.last) r++;
      });
    }
    return { lay, T, nTiles: tiles.length, nLast };
  }

  /** Prefill program for the written inputs; the caller adds the head. */
  #prefillProgram(lay: PrefillLayout, T: number, nTiles: number): Program {
    const d = this.desc;
    const din = this.#din;
    const p = new Program();
    p.memcpy(din.at(0), this.#hin.at(0), lay.bytes);
    return this.#emitLayers(p, T, { ids: din.at(lay.ids), pos: din.at(lay.pos), slot: din.at(lay.slot) }, (pp, l) => {
      pp.attnPrefill({
        q: this.#b.q!, kv: this.#kv.at(l * this.#kvLayerBytes), kvDtype: this.#kvdt, blockTable: din.at(lay.table), maxBlocks: this.maxBlocksPerSeq,
        tiles: din.at(lay.tiles), nTiles, cuQ: din.at(lay.cuQ), pos0: din.at(lay.pos0), nH: d.num_heads, nKV: d.num_kv_heads, D: d.head_size,
        tpb: this.tokensPerBlock, scale: d.attn_scale, softcap: d.attn_softcap ?? 0, window: d.windows[l] ?? 0, out: this.#b.ctx!, outDtype: this.#adt,
      });
    });
  }

  /** Split prompts into prefill chunks of at most maxNumTokens tokens (long prompts span chunks). */
  #chunks(lens: number[]): SeqPiece[][] {
    const out: SeqPiece[][] = [];
    let cur: SeqPiece[] = [];
    let used = 0;
    const cap = this.maxNumTokens;
    lens.forEach((len, seq) => {
      let p = 0;
      while (p < len) {
        if (used === cap || cur.length === this.maxBatchSize) {
          out.push(cur);
          cur = [];
          used = 0;
        }
        const n = Math.min(len - p, cap - used);
        cur.push({ seq, pos0: p, n, last: p + n === len });
        used += n;
        p += n;
      }
    });
    if (cur.length) out.push(cur);
    return out;
  }

  #check(batch: number[][], extra = 0): void {
    this.#guard();
    if (batch.length === 0) throw new TrtbError("RUN_BAD_INPUT", "empty batch");
    if (batch.length > this.maxBatchSize) throw new TrtbError("RUN_BAD_INPUT", `batch of ${batch.length} sequences exceeds the runner's max batch size ${this.maxBatchSize}`);
    const V = this.desc.vocab_size;
    batch.forEach((row, b) => {
      if (row.length === 0) throw new TrtbError("RUN_BAD_INPUT", `sequence ${b} is empty`);
      if (row.length + extra > this.maxSeqLen)
        throw new TrtbError("RUN_BAD_INPUT", `sequence ${b}: ${row.length} tokens${extra ? ` + ${extra} new` : ""} exceed the engine's max_seq_len ${this.maxSeqLen}`);
      row.forEach((id, i) => {
        if (!(Number.isInteger(id) && id >= 0 && id < V)) throw new TrtbError("RUN_BAD_INPUT", `sequence ${b}: token id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
      });
    });
  }

  #guard(): void {
    if (this.#destroyed) throw new TrtbError("NATIVE_DESTROYED", "the runner is destroyed");
  }

  /** Logits f32 [S × V] for each sequence (all positions), computed with a packed prefill. */
  forwardLogits(ids: number[] | number[][]): Float32Array[] {
    const batch = (Array.isArray(ids[0]) ? ids : [ids]) as number[][];
    this.#check(batch);
    const V = this.desc.vocab_size;
    const Vr = this.desc.lm_head_rows;
    const tables = batch.map((r) => this.#alloc.allocate(r.length));
    try {
      const out = batch.map((r) => new Float32Array(r.length * V));
      for (const pieces of this.#chunks(batch.map((r) => r.length))) {
        const { lay, T, nTiles } = this.#writePrefill(pieces, batch, tables, null);
        let p = this.#prefillProgram(lay, T, nTiles);
        this.#ctx.exec(p);
        // all rows through lm_head in groups of maxBatchSize rows
        const rowOf: [number, number][] = [];
        for (const s of pieces) for (let j = 0; j < s.n; j++) rowOf.push([s.seq, s.pos0 + j]);
        for (let r0 = 0; r0 < T; r0 += this.maxBatchSize) {
          const n = Math.min(this.maxBatchSize, T - r0);
          p = new Program();
          this.#emitHead(p, n, this.#b.iota!.add(r0 * I32), null);
          this.#ctx.exec(p);
          const buf = new Float32Array(this.#ctx.download(this.#b.logits!, n * Vr * F32).buffer);
          for (let i = 0; i < n; i++) {
            const [seq, pos] = rowOf[r0 + i]!;
            out[seq]!.set(buf.subarray(i * Vr, i * Vr + V), pos * V);
          }
        }
      }
      return out;
    } finally {
      for (const t of tables) this.#alloc.release(t);
    }
  }

  /** Generate up to `maxNewTokens` tokens after each prompt (greedy unless `sampling` says otherwise). */
  generate(batch: number[][], opts: GenerateOptions): GenerateResult {
    const maxNew = opts.maxNewTokens;
    if (!(Number.isInteger(maxNew) && maxNew >= 0)) throw new TrtbError("RUN_BAD_INPUT", `maxNewTokens must be a non-negative integer, got ${maxNew}`);
    this.#check(batch, maxNew);
    const B = batch.length;
    const params = batch.map((_, i) => samplingRow(opts.sampling, i));
    const seqs = batch.map((r) => [...r]);
    const newTokens: number[][] = batch.map(() => []);
    const done = batch.map(() => false);
    if (maxNew === 0) return { outputIds: seqs, newTokens, prefillMs: 0, decodeMs: 0, decodeSteps: 0 };
    const tables = batch.map((r) => this.#alloc.allocate(r.length + maxNew));
    try {
      const t0 = performance.now();
      // prefill: the first new token of every row
      const first: number[] = new Array(B).fill(0);
      for (const pieces of this.#chunks(batch.map((r) => r.length))) {
        const { lay, T, nTiles, nLast } = this.#writePrefill(pieces, batch, tables, params);
        const p = this.#prefillProgram(lay, T, nTiles);
        if (nLast > 0) {
          const din = this.#din;
          this.#emitHead(p, nLast, din.at(lay.lastIdx), din.at(lay.params));
        }
        this.#ctx.exec(p);
        this.#ctx.sync();
        const outs = new Int32Array(this.#hout.u8.buffer, this.#hout.u8.byteOffset, Math.max(nLast, 1));
        let r = 0;
        for (const s of pieces) if (s.last) first[s.seq] = outs[r++]!;
      }
      const record = (step: number, toks: number[]) => {
        const shown: (number | null)[] = toks.map((tok, b) => {
          if (done[b]) return null;
          seqs[b]!.push(tok);
          newTokens[b]!.push(tok);
          if ((opts.endId !== undefined && tok === opts.endId) || newTokens[b]!.length >= maxNew) done[b] = true;
          return tok;
        });
        opts.onToken?.(step, shown);
      };
      record(0, first);
      const t1 = performance.now();
      let steps = 0;
      for (let s = 1; s < maxNew && done.some((x) => !x); s++) {
        const toks = this.#decodeStep(batch.map((r) => r.length), seqs, tables, params, s);
        record(s, toks);
        steps++;
      }
      const t2 = performance.now();
      if (opts.padId !== undefined) {
        const w = Math.max(...seqs.map((r) => r.length));
        for (const r of seqs) while (r.length < w) r.push(opts.padId);
      }
      return { outputIds: seqs, newTokens, prefillMs: t1 - t0, decodeMs: t2 - t1, decodeSteps: steps };
    } finally {
      for (const t of tables) this.#alloc.release(t);
    }
  }

  /** One decode step for all rows (finished rows recompute harmlessly); returns the new tokens. */
  #decodeStep(promptLens: number[], seqs: number[][], tables: number[][], params: SampleRow[], step: number): number[] {
    const B = seqs.length;
    const lay = this.#decodeLayout(B);
    const ids = this.#hi32(lay.ids, B), pos = this.#hi32(lay.pos, B), slot = this.#hi32(lay.slot, B), ctxLen = this.#hi32(lay.ctxLen, B);
    const table = this.#hi32(lay.table, B * this.maxBlocksPerSeq);
    for (let b = 0; b < B; b++) {
      const p = promptLens[b]! + step - 1;
      const row = seqs[b]!;
      ids[b] = row[Math.min(p, row.length - 1)]!;
      pos[b] = p;
      ctxLen[b] = p + 1;
      slot[b] = slotOf(tables[b]!, p, this.tokensPerBlock);
      table.fill(0, b * this.maxBlocksPerSeq, (b + 1) * this.maxBlocksPerSeq);
      table.set(tables[b]!, b * this.maxBlocksPerSeq);
      writeSampleRow(this.#hin.dv, lay.params + b * SAMPLE_PARAMS_BYTES, params[b]!, step);
    }
    const g = this.#graphs.get(B);
    if (g) {
      this.#ctx.launch(g);
    } else {
      const p = this.#decodeProgram(B, lay);
      this.#ctx.exec(p);
      // First run eager (loads kernels, validates), then capture for the next steps.
      if (this.#useGraphs) {
        this.#ctx.sync();
        this.#graphs.set(B, this.#ctx.capture(this.#decodeProgram(B, lay)));
      }
    }
    this.#ctx.sync();
    return Array.from(new Int32Array(this.#hout.u8.buffer, this.#hout.u8.byteOffset, B));
  }

  #decodeProgram(B: number, lay: DecodeLayout): Program {
    const d = this.desc;
    const din = this.#din;
    const nsplit = this.#nsplit(B);
    let p = new Program();
    p.memcpy(din.at(0), this.#hin.at(0), lay.bytes);
    p = this.#emitLayers(p, B, { ids: din.at(lay.ids), pos: din.at(lay.pos), slot: din.at(lay.slot) }, (pp, l) => {
      pp.attnDecode({
        q: this.#b.q!, kv: this.#kv.at(l * this.#kvLayerBytes), kvDtype: this.#kvdt, blockTable: din.at(lay.table), maxBlocks: this.maxBlocksPerSeq,
        ctxLen: din.at(lay.ctxLen), nH: d.num_heads, nKV: d.num_kv_heads, D: d.head_size, tpb: this.tokensPerBlock, scale: d.attn_scale,
        softcap: d.attn_softcap ?? 0, window: d.windows[l] ?? 0, nsplit, ws: this.#b.attnWs!, out: this.#b.ctx!, outDtype: this.#adt, B,
      });
    });
    this.#emitHead(p, B, null, din.at(lay.params));
    return p;
  }

  /**
   * GPU time of each op of one decode step for `batch` (prompts are prefilled first), measured op
   * by op with events: where a step's time goes. Totals per op kind, in ms.
   */
  profileDecode(batch: number[][]): { total: number; byOp: Record<string, { count: number; ms: number }>; gemm: Record<string, number> } {
    this.#check(batch, 2);
    const B = batch.length;
    const tables = batch.map((r) => this.#alloc.allocate(r.length + 2));
    try {
      const params = batch.map(() => GREEDY);
      for (const pieces of this.#chunks(batch.map((r) => r.length))) {
        const { lay, T, nTiles } = this.#writePrefill(pieces, batch, tables, params);
        this.#ctx.exec(this.#prefillProgram(lay, T, nTiles));
      }
      const seqs = batch.map((r) => [...r, r[r.length - 1]!]);
      const lay = this.#decodeLayout(B);
      // inputs of step 1 (as #decodeStep writes them)
      const ids = this.#hi32(lay.ids, B), pos = this.#hi32(lay.pos, B), slot = this.#hi32(lay.slot, B), ctxLen = this.#hi32(lay.ctxLen, B);
      const table = this.#hi32(lay.table, B * this.maxBlocksPerSeq);
      for (let b = 0; b < B; b++) {
        const p = batch[b]!.length;
        ids[b] = seqs[b]![p]!;
        pos[b] = p;
        ctxLen[b] = p + 1;
        slot[b] = slotOf(tables[b]!, p, this.tokensPerBlock);
        table.fill(0, b * this.maxBlocksPerSeq, (b + 1) * this.maxBlocksPerSeq);
        table.set(tables[b]!, b * this.maxBlocksPerSeq);
        writeSampleRow(this.#hin.dv, lay.params + b * SAMPLE_PARAMS_BYTES, GREEDY, 1);
      }
      const ops = this.#decodeProgram(B, lay).split();
      for (const op of ops) this.#ctx.exec(op); // warm-up
      const byOp: Record<string, { count: number; ms: number }> = {};
      const gemm: Record<string, number> = {};
      let total = 0;
      const sites = ["qkv", "dense", "gate_up", "down", "lm_head"];
      let gi = 0;
      for (const op of ops) {
        const name = op.ops[0]!;
        let best = Infinity;
        for (let r = 0; r < 3; r++) {
          this.#ctx.timerStart();
          this.#ctx.exec(op);
          best = Math.min(best, this.#ctx.timerStop());
        }
        const e = (byOp[name] ??= { count: 0, ms: 0 });
        e.count++;
        e.ms += best;
        total += best;
        if (name === "GEMM" || name === "GEMM_WO") {
          // emitted per layer in the order qkv, dense, gate_up, down; lm_head last (16-bit or weight-only)
          const site = gi >= this.desc.layers.length * 4 ? "lm_head" : sites[gi % 4]!;
          gemm[site] = (gemm[site] ?? 0) + best;
          gi++;
        }
      }
      return { total, byOp, gemm };
    } finally {
      for (const t of tables) this.#alloc.release(t);
    }
  }

  /** GPU time of each op of a prefill of `prompt` (one chunk), op by op with events, totals per op kind. */
  profilePrefill(prompt: number[]): { total: number; byOp: Record<string, { count: number; ms: number }> } {
    this.#check([prompt]);
    if (prompt.length > this.maxNumTokens) throw new TrtbError("RUN_BAD_INPUT", `profilePrefill takes at most ${this.maxNumTokens} tokens`);
    const tables = [this.#alloc.allocate(prompt.length)];
    try {
      const pieces: SeqPiece[] = [{ seq: 0, pos0: 0, n: prompt.length, last: true }];
      const { lay, T, nTiles } = this.#writePrefill(pieces, [prompt], tables, [GREEDY]);
      const p = this.#prefillProgram(lay, T, nTiles);
      this.#emitHead(p, 1, this.#din.at(lay.lastIdx), this.#din.at(lay.params));
      const ops = p.split();
      for (const op of ops) this.#ctx.exec(op); // warm-up
      const byOp: Record<string, { count: number; ms: number }> = {};
      let total = 0;
      for (const op of ops) {
        this.#ctx.timerStart();
        this.#ctx.exec(op);
        const ms = this.#ctx.timerStop();
        const e = (byOp[op.ops[0]!] ??= { count: 0, ms: 0 });
        e.count++;
        e.ms += ms;
        total += ms;
      }
      return { total, byOp };
    } finally {
      for (const t of tables) this.#alloc.release(t);
    }
  }

  /** Free the GPU memory, graphs and context. Idempotent. */
  destroy(): void {
    if (this.#destroyed) return;
    this.#destroyed = true;
    for (const g of this.#graphs.values()) g.destroy();
    this.#graphs.clear();
    this.#hin?.destroy();
    this.#hout?.destroy();
    this.#hmoe?.destroy();
    if (this.#ownsCtx) this.#ctx?.destroy();
    else for (const m of this.#mem) m.destroy();
  }

  [Symbol.dispose](): void {
    this.destroy();
  }
}
