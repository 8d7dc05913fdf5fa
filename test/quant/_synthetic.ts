/**
 * A synthetic Hugging Face Llama (or Phi-3) checkpoint (bf16, one file) of any shape, for tests that
 * need more layers or other sizes than the fixtures.
 */
import { join } from "node:path";
import { writeFileSync } from "node:fs";
import { SafetensorsWriter } from "../../src/format/safetensors.ts";
import { f32ToBf16Bits } from "../../src/numeric.ts";

export interface SyntheticLlama {
  V: number;
  H: number;
  nH: number;
  nKV: number;
  I: number;
  L: number;
  seed?: number;
  /** Head size (default H / nH; given, config.json carries it as head_dim). */
  headDim?: number;
  /** "phi3": Phi3ForCausalLM with fused qkv_proj / gate_up_proj (default "llama"). */
  family?: "llama" | "phi3";
  /** Phi-3 only: rope_parameters.partial_rotary_factor (rotary dim = head size × factor). */
  partialRotaryFactor?: number;
  /**
   * Scale weights by fan-in like a trained model (embeddings of rms 1, each matrix of rms
   * gain / √fan-in, the residual branches' output projections half that) instead of the default
   * uniform ±0.1, so that the residual stream dominates and bf16 rounding is not amplified layer
   * by layer (the default gives logits errors of ~1e-2 relative in bf16 at H = 512).
   */
  fanInInit?: boolean;
}

export function writeSyntheticLlama(dir: string, o: SyntheticLlama): void {
  const d = o.headDim ?? o.H / o.nH;
  const phi3 = o.family === "phi3";
  const specs: { name: string; dtype: "BF16"; shape: number[] }[] = [];
  const add = (name: string, shape: number[]) => specs.push({ name, dtype: "BF16", shape });
  add("model.embed_tokens.weight", [o.V, o.H]);
  for (let l = 0; l < o.L; l++) {
    const P = `model.layers.${l}.`;
    add(`${P}input_layernorm.weight`, [o.H]);
    if (phi3) add(`${P}self_attn.qkv_proj.weight`, [(o.nH + 2 * o.nKV) * d, o.H]);
    else {
      add(`${P}self_attn.q_proj.weight`, [o.nH * d, o.H]);
      add(`${P}self_attn.k_proj.weight`, [o.nKV * d, o.H]);
      add(`${P}self_attn.v_proj.weight`, [o.nKV * d, o.H]);
    }
    add(`${P}self_attn.o_proj.weight`, [o.H, o.nH * d]);
    add(`${P}post_attention_layernorm.weight`, [o.H]);
    if (phi3) add(`${P}mlp.gate_up_proj.weight`, [2 * o.I, o.H]);
    else {
      add(`${P}mlp.gate_proj.weight`, [o.I, o.H]);
      add(`${P}mlp.up_proj.weight`, [o.I, o.H]);
    }
    add(`${P}mlp.down_proj.weight`, [o.H, o.I]);
  }
  add("model.norm.weight", [o.H]);
  add("lm_head.weight", [o.V, o.H]);
  let seed = o.seed ?? 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.2;
  // uniform ±0.1 has rms 0.1 / √3; fanInInit rescales it to rms `scale`
  const scaleOf = (name: string, shape: number[]): number => {
    if (!o.fanInInit || shape.length !== 2) return 1;
    const rms = name.includes("embed_tokens") ? 1 : (/o_proj|down_proj/.test(name) ? 0.5 : 1) / Math.sqrt(shape[1]!);
    return rms / (0.1 / Math.sqrt(3));
  };
  const w = SafetensorsWriter.create(join(dir, "model.safetensors"), specs);
  for (const s of specs) {
    const k = scaleOf(s.name, s.shape);
    w.writeWith(s.name, (dst) => {
      const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
      const norm = s.name.endsWith("norm.weight");
      for (let i = 0; i < dst.byteLength / 2; i++) dv.setUint16(i * 2, f32ToBf16Bits(norm ? 1 + rnd() : rnd() * k), true);
    });
  }
  w.commit();
  const common = {
    hidden_size: o.H, intermediate_size: o.I, num_attention_heads: o.nH, num_key_value_heads: o.nKV, num_hidden_layers: o.L,
    vocab_size: o.V, torch_dtype: "bfloat16", max_position_embeddings: phi3 ? 4096 : 128, hidden_act: "silu", tie_word_embeddings: false,
    ...(o.headDim !== undefined ? { head_dim: o.headDim } : {}),
  };
  writeFileSync(join(dir, "config.json"), JSON.stringify(phi3
    ? {
      architectures: ["Phi3ForCausalLM"], model_type: "phi3", ...common, rms_norm_eps: 1e-5, sliding_window: null,
      rope_parameters: { rope_type: "default", rope_theta: 10000, partial_rotary_factor: o.partialRotaryFactor ?? 1.0 },
    }
    : { architectures: ["LlamaForCausalLM"], ...common, rms_norm_eps: 1e-6, rope_theta: 10000 }));
}
