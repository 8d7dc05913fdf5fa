/**
 * What a GPU runner holds while it lives, built once from an engine and its RunnerOptions: the
 * limits and dtypes, the context, the weights, the activation buffers, the device input block and
 * its pinned mirror, and the paged KV pool with its block allocator. GpuModelRunner owns one;
 * emit.ts, schedule.ts and profile.ts read it. Internal (not exported from index.ts).
 */
import { TrtbError } from "../../errors.ts";
import { log } from "../../log.ts";
import { type DeviceMem, type DevRef, type Dt, type EngineContext, type EngineDeviceInfo, engineLib, type KvDt, type PinnedHost } from "../../ffi/engine.ts";
import type { Engine } from "../../engine/engine.ts";
import { type EngineModelDesc, type EnginePlan, logitsDtypeOf } from "../../engine/plan.ts";
import { BlockAllocator } from "./kv-cache.ts";
import { allocActivations, decodeLayout, F32, I32, maxTiles, PREFILL_TILE, prefillLayout } from "./buffers.ts";
import { DeviceWeights } from "./weights.ts";

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
   * results follow the fp32 CPU reference runner (same greedy ids even at near-ties); the logits
   * stay f32 on the device even in a `--logits_dtype float16` engine.
   */
  numerics?: "fast" | "exact";
}

export class RunnerState {
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
  readonly adt: Dt;
  readonly aes: number;
  /** KV cache elements: adt, or 1-byte I8 / F8_E4M3 for a quantized cache (plan kv_cache) in both numerics */
  readonly kvdt: KvDt;
  /** bytes per KV cache element */
  readonly kves: number;
  /** per local layer: the kv_scale the QKV_ROPE and attention ops get (1 for a 16-bit / f32 cache) */
  readonly kvScales: number[];
  readonly ctx: EngineContext;
  readonly ownsCtx: boolean;
  /** bytes per weight element (16-bit) */
  readonly es: number;
  readonly weights: DeviceWeights;
  /** allocations freed one by one when the context is not ours */
  readonly mem: DeviceMem[] = [];
  readonly kv: DeviceMem;
  readonly kvLayerBytes: number;
  readonly alloc: BlockAllocator;
  /** activation buffers by name (emit.ts, allocActivations) */
  readonly b: Record<string, DevRef>;
  readonly din: DeviceMem;
  readonly hin: PinnedHost;
  readonly hout: PinnedHost;
  readonly hmoe: PinnedHost | null;
  readonly sms: number;
  /** query rows per prefill attention tile */
  readonly bq: number;
  /** dtype of the logits on the device (lm_head's output, read by soft-cap and sampling; F16 in a `--logits_dtype float16` engine, fast numerics) */
  readonly ldt: Dt;
  /** bytes per logits element */
  readonly les: number;

  constructor(engine: Engine, opts: RunnerOptions) {
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
    this.es = 2;
    this.numerics = opts.numerics ?? "fast";
    const exact = this.numerics === "exact";
    this.adt = exact ? "F32" : this.dt;
    this.aes = exact ? 4 : 2;
    const kvq = d.kv_cache ?? null;
    this.kvdt = kvq ? (kvq.algo === "INT8" ? "I8" : "F8_E4M3") : exact ? "F32" : this.dt;
    this.kves = kvq ? 1 : exact ? F32 : this.es;
    this.kvScales = d.layers.map((_, l) => kvq?.scales[l] ?? 1);
    if (kvq && !(kvq.scales.length === d.layers.length && kvq.scales.every((v) => Number.isFinite(v) && v > 0)))
      throw new TrtbError("ENGINE_FORMAT", `the plan's kv_cache has ${kvq.scales.length} scales for ${d.layers.length} layers, each must be finite and > 0`);
    this.bq = PREFILL_TILE;
    this.ldt = !exact && logitsDtypeOf(d) === "float16" ? "F16" : "F32";
    this.les = this.ldt === "F16" ? 2 : F32;

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
    this.ctx = ctx;
    this.ownsCtx = !opts.context;
    this.sms = info.multiprocessors;
    if (plan.device && (plan.device.name !== info.name || plan.device.sm !== `${info.major}.${info.minor}`))
      log.warn(`engine was tuned on ${plan.device.name} (sm ${plan.device.sm}); running on ${info.name}: saved GEMM tactics that do not apply fall back to cuBLASLt's heuristic`);
    const keep = (m: DeviceMem) => {
      this.mem.push(m);
      return m;
    };
    try {
      // weights: one allocation, the blob uploaded window by window
      this.weights = new DeviceWeights(ctx, engine, keep);

      // activations
      const T = this.maxNumTokens;
      const R = this.maxBatchSize;
      const act = allocActivations(this, keep);
      this.b = act.b;

      // inputs: one device block + pinned mirror (layouts in schedule.ts)
      const inBytes = Math.max(prefillLayout(this, T, R, maxTiles(this)).bytes, decodeLayout(this, R).bytes);
      this.din = keep(ctx.alloc(inBytes, "inputs"));
      this.hin = ctx.hostAlloc(inBytes);
      this.hout = ctx.hostAlloc(R * I32);
      this.hmoe = d.moe ? ctx.hostAlloc(2 * T * d.moe.top_k * 4) : null;

      // KV cache
      const L = d.layers.length;
      const tokenBytes = L * 2 * d.num_kv_heads * d.head_size * this.kves;
      const blockBytes = tokenBytes * this.tokensPerBlock;
      let tokens = opts.maxKvTokens ?? this.maxBatchSize * this.maxSeqLen;
      if (opts.maxKvTokens === undefined) {
        const free = ctx.memInfo().free;
        const cap = Math.floor((free * (opts.kvCacheFreeGpuMemFraction ?? 0.9)) / tokenBytes);
        tokens = Math.min(tokens, cap);
      }
      const numBlocks = Math.max(1, Math.floor(tokens / this.tokensPerBlock));
      this.kvTokens = numBlocks * this.tokensPerBlock;
      this.kvLayerBytes = (numBlocks * blockBytes) / L;
      this.kv = keep(ctx.alloc(numBlocks * blockBytes, "kv cache"));
      this.alloc = new BlockAllocator(numBlocks, this.tokensPerBlock);
      log.debug(`runner: weights ${(engine.weightBytes / 2 ** 30).toFixed(2)} GiB, activations ${(act.bytes / 2 ** 20).toFixed(0)} MiB, KV cache ${this.kvTokens} tokens (${((numBlocks * blockBytes) / 2 ** 30).toFixed(2)} GiB)`);
    } catch (e) {
      this.destroy();
      throw e;
    }
  }

  /** Free the pinned blocks and the device memory (with the context when it is ours). Once. */
  destroy(): void {
    this.hin?.destroy();
    this.hout?.destroy();
    this.hmoe?.destroy();
    if (this.ownsCtx) this.ctx?.destroy();
    else for (const m of this.mem) m.destroy();
  }
}
