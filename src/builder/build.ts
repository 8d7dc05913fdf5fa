/**
 * `build(model, buildConfig)` → `Engine` (upstream's API, spec §4–5):
 *
 *   resolve BuildConfig (max_seq_len deduction, checks) → check what the backend can run →
 *   describe the model → lay out the weights (lazy) → time the GEMM tactics on the device
 *   (timing cache first) → Engine (config + plan + lazy weights), saved by `engine.save(dir)`.
 */
import { configQuant, type PretrainedConfig } from "../format/checkpoint-config.ts";
import { TrtbError } from "../errors.ts";
import { log } from "../log.ts";
import type { DecoderModel } from "../models/common/decoder-model.ts";
import { Engine, type EngineConfig, TOOLKIT_VERSION } from "../engine/engine.ts";
import { layoutTensors } from "../engine/engine-file.ts";
import { ENGINE_FORMAT, ENGINE_FORMAT_VERSION, type EnginePlan } from "../engine/plan.ts";
import { type BuildConfig, type BuildConfigInput } from "../engine/build-config.ts";
import { resolveBuildConfig } from "./config.ts";
import { describeKvCache, describeModel } from "./describe.ts";
import { engineTensors, fp8Linears, rowwiseLinears, sqLinears } from "./layout.ts";
import { gemmSites, selectTactics, TimingCache, tokenBuckets } from "./tactics.ts";
import { type Backend, defaultBackend } from "./backend.ts";

export interface BuildOptions {
  /** Defaults to the CUDA backend on device 0 (`TRTB_BUILD_BACKEND=fake` for GPU-less tests). */
  backend?: Backend;
  /** Timing cache to read and extend (shared across ranks and builds). */
  timingCache?: TimingCache;
  /**
   * Override `pretrained_config.logits_dtype` (upstream `--logits_dtype`). float16: lm_head writes
   * f16 logits (half the logits memory), soft-cap and sampling read them; the host API widens them
   * to Float32Array. Needs a float16 model (`checkLogitsDtype`).
   */
  logitsDtype?: "float16" | "float32";
}

/**
 * `--logits_dtype float16` needs a float16 model: there is no bfloat16 → float16 cuBLASLt GEMM for
 * lm_head to write f16 logits from bf16 weights (BUILD_UNSUPPORTED). A checkpoint config that says
 * float16 for a bfloat16 model builds with float32 logits (build() warns).
 */
export function checkLogitsDtype(cfg: PretrainedConfig, logitsDtype?: "float16" | "float32"): void {
  if (logitsDtype === "float16" && cfg.dtype !== "float16")
    throw new TrtbError("BUILD_UNSUPPORTED", `--logits_dtype float16 needs a float16 model; this checkpoint is ${cfg.dtype} (convert with --dtype float16, or keep float32 logits)`);
}

/** What the CUDA backend cannot build, as one clear error (checked before any work). */
export function checkBuildable(cfg: PretrainedConfig, bc: BuildConfig): void {
  const q = configQuant(cfg);
  const ok = q.quant_algo === "W8A16" || q.quant_algo === "W4A16" || q.quant_algo === "W4A16_AWQ" || q.quant_algo === "W4A8_AWQ" || q.quant_algo === "FP8" || q.quant_algo === "W8A8_SQ_PER_CHANNEL" ||
    q.quant_algo === "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN" || q.quant_algo === "W8A8_SQ_PER_TENSOR_PLUGIN" ||
    q.quant_algo === "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN" || q.quant_algo === "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN" || q.quant_algo === "FP8_PER_CHANNEL_PER_TOKEN";
  const kvOk = q.kv_cache_quant_algo === null || q.kv_cache_quant_algo === "INT8" || q.kv_cache_quant_algo === "FP8";
  if ((q.quant_algo !== null && !ok) || !kvOk)
    throw new TrtbError("BUILD_UNSUPPORTED",
      `quant_algo ${q.quant_algo ?? "none"}, kv_cache_quant_algo ${q.kv_cache_quant_algo ?? "none"} is not supported by the CUDA backend; it builds float16/bfloat16 checkpoints, weight-only W8A16 / W4A16 ones (trtllm quantize --qformat int8_wo / int4_wo), W4A16_AWQ (--qformat int4_awq / int4_awq_rtn), W4A8_AWQ (--qformat w4a8_awq), FP8 per tensor (--qformat fp8), FP8 rowwise (--qformat fp8_rowwise), SmoothQuant W8A8_SQ_PER_CHANNEL (--qformat int8_sq) and the legacy plugin variants (--smoothquant α [--per_channel] [--per_token]), each with a 16-bit or an INT8 / FP8 KV cache (--kv_cache_dtype int8 / fp8)`);
  if ((q.quant_algo === "FP8" || q.quant_algo === "W8A8_SQ_PER_CHANNEL") && cfg.moe && (cfg.moe as { num_experts?: number }).num_experts)
    throw new TrtbError("BUILD_UNSUPPORTED", `${q.quant_algo} mixture-of-experts engines are not supported by the CUDA backend`);
  if (q.quant_algo === "W4A16_AWQ" && !(q.group_size === 64 || q.group_size === 128))
    throw new TrtbError("BUILD_UNSUPPORTED", `W4A16_AWQ group_size ${q.group_size} is not supported by the CUDA backend (64 or 128)`);
  const no = (cond: boolean, what: string) => {
    if (cond) throw new TrtbError("BUILD_UNSUPPORTED", `${what} is not supported by the CUDA backend`);
  };
  no(bc.kv_cache_type !== "PAGED", `kv_cache_type ${bc.kv_cache_type} (it always uses a paged KV cache; use paged)`);
  no(bc.max_beam_width !== 1, `beam search (max_beam_width ${bc.max_beam_width})`);
  no(bc.max_draft_len > 0 || bc.speculative_decoding_mode !== 1, "speculative decoding");
  no(bc.max_prompt_embedding_table_size > 0, "prompt tuning (max_prompt_embedding_table_size)");
  no(bc.lora_config.lora_dir.length > 0 || bc.plugin_config.lora_plugin !== null, "LoRA");
  no(bc.use_mrope, "mrope");
  no(cfg.position_embedding_type !== "rope_gpt_neox" && cfg.position_embedding_type !== "long_rope", `position_embedding_type ${cfg.position_embedding_type}`);
}

/**
 * Head sizes the CUDA backend's attention kernels are instantiated for (cshim/engine/kernels/
 * attention.cuh, TRTBE_ATTN_HEAD_SIZES): prefill of a 16-bit KV cache runs on tensor cores at each.
 */
export const CUDA_HEAD_SIZES: readonly number[] = [32, 64, 80, 96, 128, 256];

/**
 * Build one rank's engine. `model` is one rank of a checkpoint (`LLaMAForCausalLM.fromCheckpoint(dir,
 * rank)` etc.); the GEMM tactics are timed on the backend's device.
 */
export async function build(model: DecoderModel, buildConfig: BuildConfig | BuildConfigInput = {}, opts: BuildOptions = {}): Promise<Engine> {
  const t0 = performance.now();
  const cfg = structuredClone(model.config) as PretrainedConfig;
  const bc = resolveBuildConfig(cfg, buildConfig);
  checkBuildable(cfg, bc);
  checkLogitsDtype(cfg, opts.logitsDtype);
  if (opts.logitsDtype) cfg.logits_dtype = opts.logitsDtype;
  const rank = model.mapping.rank;
  const desc = describeModel(cfg, rank, model.family, (n) => model.weights.has(n));
  if (cfg.logits_dtype !== (desc.logits_dtype ?? "float32") && rank === 0)
    log.warn(`pretrained_config.logits_dtype is ${cfg.logits_dtype} but the ${cfg.dtype} engine computes ${desc.logits_dtype} logits (float16 logits need a float16 model)`);
  desc.kv_cache = describeKvCache(cfg, desc.layers.length, (n) => model.weights.get(n), rank);
  if (!CUDA_HEAD_SIZES.includes(desc.head_size))
    throw new TrtbError("BUILD_UNSUPPORTED", `head size ${desc.head_size} is not supported by the CUDA backend (${CUDA_HEAD_SIZES.join(", ")})`);
  if (desc.num_heads % desc.num_kv_heads !== 0 || desc.num_heads / desc.num_kv_heads > 16)
    throw new TrtbError("BUILD_UNSUPPORTED", `${desc.num_heads} query heads over ${desc.num_kv_heads} KV heads (at most 16 per KV head)`);
  if (desc.hidden_size > 16384 || desc.hidden_size % 8 !== 0) throw new TrtbError("BUILD_UNSUPPORTED", `hidden size ${desc.hidden_size} (multiple of 8, ≤ 16384)`);
  if (desc.moe && (desc.moe.num_experts > 256 || desc.moe.top_k > 16)) throw new TrtbError("BUILD_UNSUPPORTED", `MoE with ${desc.moe.num_experts} experts, top-${desc.moe.top_k}`);
  const tensors = engineTensors(model, desc);
  if (desc.fp8) desc.fp8.linears = fp8Linears(model, desc);
  if (desc.sq) desc.sq.linears = sqLinears(model, desc);
  if (desc.rowwise) desc.rowwise.linears = rowwiseLinears(model, desc);

  const plan: EnginePlan = {
    format: ENGINE_FORMAT,
    format_version: ENGINE_FORMAT_VERSION,
    backend: "cuda",
    rank,
    mapping: {
      world_size: model.mapping.worldSize, tp_size: model.mapping.tpSize, pp_size: model.mapping.ppSize,
      moe_tp_size: model.mapping.moeTpSize, moe_ep_size: model.mapping.moeEpSize,
    },
    model: desc,
    limits: {
      max_batch_size: bc.max_batch_size, max_input_len: bc.max_input_len, max_seq_len: bc.max_seq_len!,
      max_num_tokens: bc.max_num_tokens!, max_beam_width: bc.max_beam_width, tokens_per_block: bc.plugin_config.tokens_per_block,
    },
    gemm: { tactics: [], sites: {} },
    device: null,
    tensors: [],
    build: { seconds: 0, timing_cache_hits: 0, timing_cache_misses: 0 },
  };
  if (!bc.dry_run) {
    const backend = opts.backend ?? defaultBackend();
    try {
      const cache = opts.timingCache ?? new TimingCache();
      const h0 = cache.hits;
      const m0 = cache.misses;
      const buckets = tokenBuckets(Math.max(bc.max_num_tokens!, bc.max_batch_size));
      plan.gemm = selectTactics(backend, gemmSites(desc, tensors), buckets, cache);
      plan.device = backend.device;
      plan.backend = backend.name;
      plan.build.timing_cache_hits = cache.hits - h0;
      plan.build.timing_cache_misses = cache.misses - m0;
    } finally {
      if (!opts.backend) backend.close();
    }
  }
  plan.build.seconds = (performance.now() - t0) / 1000;
  // Place the tensors now so the plan is complete in memory too (the writer recomputes the same).
  plan.tensors = layoutTensors(tensors).tensors;
  const pretrained = structuredClone(model.config) as PretrainedConfig;
  if (opts.logitsDtype) pretrained.logits_dtype = opts.logitsDtype;
  const config: EngineConfig = { version: TOOLKIT_VERSION, pretrained_config: pretrained, build_config: bc };
  log.debug(`rank ${rank}: ${tensors.length} engine tensors, ${plan.gemm.tactics.length} distinct GEMM tactics, build ${plan.build.seconds.toFixed(2)} s`);
  return Engine.fromParts(config, plan, tensors, null);
}
