/**
 * The engine plan's model description, derived from the checkpoint config and the family's
 * semantics (`Family.semantics`): the same reading the CPU reference runner applies, so both
 * runtimes interpret every family the same way.
 */
import { configQuant, headSize, numKvHeads, type PretrainedConfig } from "../format/checkpoint-config.ts";
import { TrtbError } from "../errors.ts";
import { Mapping } from "../mapping.ts";
import { kvHeadsPerRank, padVocab } from "../models/common/split.ts";
import type { Family } from "../models/common/family.ts";
import type { ModelSemantics } from "../models/common/semantics.ts";
import type { EngineModelDesc } from "../engine/plan.ts";
import type { LazyTensor } from "../tensor/lazy.ts";
import { toFloat32 } from "../numeric.ts";

/**
 * Derive one rank's model description; throws `BUILD_UNSUPPORTED` for what the runtime cannot run.
 * `has(name)` says whether the rank's weights hold a tensor (biases are read off the weights).
 */
export function describeModel(cfg: PretrainedConfig, rank: number, family: Pick<Family, "semantics">, has: (name: string) => boolean = () => false): EngineModelDesc {
  if (cfg.dtype !== "float16" && cfg.dtype !== "bfloat16")
    throw new TrtbError("BUILD_UNSUPPORTED", `dtype ${cfg.dtype} is not supported by the CUDA backend (float16, bfloat16); convert with --dtype bfloat16 or float16`);
  let st: ModelSemantics;
  try {
    st = family.semantics(cfg);
  } catch (e) {
    throw new TrtbError("BUILD_UNSUPPORTED", (e as Error).message, { cause: e });
  }
  const m = Mapping.fromJSON(cfg.mapping, rank);
  const tp = m.tpSize;
  const H = cfg.hidden_size;
  const V = cfg.vocab_size;
  const nH = cfg.num_attention_heads;
  const nKV = numKvHeads(cfg);
  const d = headSize(cfg);
  const I = cfg.intermediate_size ?? 4 * H;
  const layers = m.ppLayers(cfg.num_hidden_layers);
  const moeCfg = cfg.moe as { num_experts?: number; top_k?: number } | undefined;
  const moe = moeCfg?.num_experts ? { num_experts: moeCfg.num_experts, top_k: moeCfg.top_k ?? 2, local_experts: m.epExperts(moeCfg.num_experts) } : null;
  const qa = configQuant(cfg).quant_algo;
  const weightOnly = qa === "W8A16" || qa === "W4A16" ? { algo: qa, bits: qa === "W8A16" ? 8 : 4 } as const
    : qa === "W4A16_AWQ" ? { algo: qa, bits: 4, group_size: configQuant(cfg).group_size } as const : null;
  const parallelEmb = cfg.use_parallel_embedding && tp > 1;
  const embDim0 = parallelEmb && cfg.embedding_sharding_dim === 0;
  const embRows = embDim0 ? Math.ceil(V / tp) : V;
  return {
    architecture: cfg.architecture,
    dtype: cfg.dtype,
    vocab_size: V,
    lm_head_rows: padVocab(V, tp) / tp,
    embedding_rows: embRows,
    embedding_vocab_start: embDim0 ? m.tpRank * embRows : 0,
    embedding_hidden_split: parallelEmb && cfg.embedding_sharding_dim === 1,
    hidden_size: H,
    layers,
    num_heads: nH / tp,
    num_kv_heads: kvHeadsPerRank(nKV, tp),
    head_size: d,
    qkv_rows: (nH / tp + 2 * kvHeadsPerRank(nKV, tp)) * d,
    intermediate_size: moe ? I / m.moeTpSize : I / tp,
    act: st.act,
    norm_eps: cfg.norm_epsilon,
    embed_scale: st.embedScale,
    attn_scale: st.attnScale,
    attn_softcap: st.attnSoftcap,
    final_softcap: st.finalSoftcap,
    windows: layers.map((l) => st.window(l)),
    sandwich_norms: st.sandwich,
    qk_norm: st.qkNorm,
    rotary_dim: st.rotaryDim,
    bias: {
      qkv: has("transformer.layers.0.attention.qkv.bias"),
      dense: has("transformer.layers.0.attention.dense.bias"),
      mlp: has("transformer.layers.0.mlp.proj.bias") || has("transformer.layers.0.mlp.fc.bias"),
    },
    moe,
    first_pp_rank: m.isFirstPpRank(),
    last_pp_rank: m.isLastPpRank(),
    weight_only: weightOnly,
    fp8: qa === "FP8" || qa === "W4A8_AWQ" ? { linears: {} } : null, // W4A8_AWQ runs as FP8 GEMMs (weights expanded at build)
    // SmoothQuant: modelopt's, and the legacy converter's static variants (int8 GEMM, a = 1: the input scale is in sq_pre)
    sq: qa === "W8A8_SQ_PER_CHANNEL" || qa === "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN" || qa === "W8A8_SQ_PER_TENSOR_PLUGIN" ? { linears: {} } : null,
    // per-token activations: FP8 rowwise, and the legacy SmoothQuant per-token variants (linears filled by build.ts)
    rowwise: qa === "FP8_PER_CHANNEL_PER_TOKEN" ? { algo: "FP8", clamp: fp8Clamp(configQuant(cfg).clamp_val), linears: [] }
      : qa === "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN" || qa === "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN" ? { algo: "INT8", clamp: null, linears: [] } : null,
    long_rope: st.longRope ? { original_max_positions: st.longRope.originalMax, mscale: st.longRope.mscale } : null,
    // float16 logits need float16 GEMM inputs (no bfloat16 → float16 cuBLASLt GEMM; build.ts checks)
    logits_dtype: cfg.logits_dtype === "float16" && cfg.dtype === "float16" ? "float16" : "float32",
  };
}

/** FP8 rowwise's activation clamp (QuantConfig clamp_val [min, max]; null: none). */
function fp8Clamp(v: readonly number[] | null | undefined): [number, number] | null {
  if (v == null) return null;
  if (!(v.length === 2 && Number.isFinite(v[0]) && Number.isFinite(v[1]) && v[0]! < v[1]!))
    throw new TrtbError("BUILD_UNSUPPORTED", `quantization.clamp_val ${JSON.stringify(v)} is not [min, max] with min < max`);
  return [v[0]!, v[1]!];
}

/**
 * The plan's `kv_cache` for a checkpoint with kv_cache_quant_algo INT8 / FP8 (null without): one
 * scale per local layer from `transformer.layers.{i}.attention.kv_cache_scaling_factor` (F32 [1],
 * local index i as the rank's checkpoint stores it). Throws CKPT_MISSING_TENSOR,
 * CKPT_DTYPE_MISMATCH, CKPT_SHAPE_MISMATCH or CKPT_BAD_VALUE (not finite and > 0).
 */
export function describeKvCache(cfg: PretrainedConfig, nLayers: number, get: (name: string) => LazyTensor | undefined, rank = 0): EngineModelDesc["kv_cache"] {
  const algo = configQuant(cfg).kv_cache_quant_algo;
  if (algo === null) return null;
  const scales: number[] = [];
  for (let i = 0; i < nLayers; i++) {
    const name = `transformer.layers.${i}.attention.kv_cache_scaling_factor`;
    const t = get(name);
    if (!t) throw new TrtbError("CKPT_MISSING_TENSOR", `rank ${rank}: kv_cache_quant_algo ${algo} needs ${name} (F32 [1]); the checkpoint has none (quantize with --kv_cache_dtype ${algo.toLowerCase()} and calibration data)`, { tensor: name });
    if (t.dtype !== "F32") throw new TrtbError("CKPT_DTYPE_MISMATCH", `rank ${rank}: ${name} is ${t.dtype}, expected F32`, { tensor: name });
    if (t.numel !== 1 || t.shape.length > 1) throw new TrtbError("CKPT_SHAPE_MISMATCH", `rank ${rank}: ${name} has shape [${t.shape.join(", ")}], expected [1]`, { tensor: name });
    const s = toFloat32(t.bytes(), "F32")[0]!;
    if (!(Number.isFinite(s) && s > 0)) throw new TrtbError("CKPT_BAD_VALUE", `rank ${rank}: ${name} is ${s}; a KV cache scale must be finite and > 0`, { tensor: name });
    scales.push(s);
  }
  return { algo, scales };
}
