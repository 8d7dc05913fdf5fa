/**
 * A family's semantics: how a TRT-LLM checkpoint of it computes, beyond its tensors' names and
 * shapes. The CPU reference runner, the engine builder (which stores them in the engine plan) and
 * through it the GPU runtime all read these fields, so every family is interpreted one way.
 *
 * `decoderSemantics(cfg)` reads what upstream's config says for any decoder (activation, rotary
 * settings, sliding window, MoE top-k); each family's `semantics(cfg)` starts from it and sets its
 * own differences (Gemma's embedding scale and soft-caps, Qwen3's q/k norms, Phi-3's fused MLP).
 */
import { headSize, type PretrainedConfig } from "../../format/checkpoint-config.ts";
import { TrtbError } from "../../errors.ts";
import { type LongRope, longRopeOf, ropeInvFreq } from "./rope.ts";

export interface ModelSemantics {
  act: "silu" | "gelu_tanh";
  /** Multiplier of the embedding output (Gemma: sqrt(hidden_size), rounded to f32). */
  embedScale: number;
  /** Multiplier of q·k. */
  attnScale: number;
  attnSoftcap: number | null;
  finalSoftcap: number | null;
  /** Sliding window for a given global layer, or null for full attention. */
  window: (layer: number) => number | null;
  /** Norms around attention and MLP outputs too (Gemma2: post_layernorm, pre/post feed-forward). */
  sandwich: boolean;
  /** Per-head RMSNorm on q and k before RoPE (Qwen3). */
  qkNorm: boolean;
  /** `mlp.fc` holds [up_r; gate_r] per rank, with no separate `mlp.gate` (Phi-3). */
  fusedGateUp: boolean;
  rotaryDim: number;
  /** inv_freq of RoPE (LongRoPE: the short table). */
  invFreq: Float32Array;
  /** LongRoPE's two tables, switch point and attention factor (null: plain RoPE). */
  longRope: LongRope | null;
  moeTopK: number;
}

export function decoderSemantics(cfg: PretrainedConfig): ModelSemantics {
  const d = headSize(cfg);
  const act = cfg.hidden_act;
  const actKind = act === "silu" || act === "swiglu" ? "silu" : act === "gelu" || act === "gelu_pytorch_tanh" || act === "gelu_tanh" || act === "geglu" ? "gelu_tanh" : null;
  if (!actKind) throw new TrtbError("RUN_UNSUPPORTED", `hidden_act ${JSON.stringify(act)} is not supported by the CPU runner`);
  const rotaryDim = cfg.rotary_embedding_dim ?? d;
  const windowSize = configNumber(cfg, "sliding_window");
  const layerTypes = Array.isArray(cfg.layer_types) ? (cfg.layer_types as string[]) : null;
  const moe = cfg.moe as { num_experts?: number; top_k?: number } | undefined;
  const longRope = longRopeOf(cfg, rotaryDim);
  return {
    act: actKind,
    embedScale: 1,
    attnScale: 1 / Math.sqrt(d),
    attnSoftcap: null,
    finalSoftcap: null,
    window: (l) => {
      if (windowSize === null) return null;
      if (layerTypes) return layerTypes[l] === "sliding_attention" ? windowSize : null;
      return windowSize;
    },
    sandwich: false,
    qkNorm: cfg.qk_layernorm === true,
    fusedGateUp: false,
    rotaryDim,
    invFreq: longRope?.shortInvFreq ?? ropeInvFreq(rotaryDim, (cfg.rotary_base as number | undefined) ?? 10000, cfg.rotary_scaling as Record<string, unknown> | null),
    longRope,
    moeTopK: moe?.num_experts ? (moe.top_k ?? 2) : 0,
  };
}

/** A numeric extra key of the config, or null. */
export function configNumber(cfg: PretrainedConfig, key: string): number | null {
  return typeof cfg[key] === "number" ? (cfg[key] as number) : null;
}
