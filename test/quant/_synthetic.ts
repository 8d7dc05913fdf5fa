/** A synthetic Hugging Face Llama checkpoint (bf16, one file) of any shape, for tests that need more layers or other sizes than the fixtures. */
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
}

export function writeSyntheticLlama(dir: string, o: SyntheticLlama): void {
  const d = o.H / o.nH;
  const specs: { name: string; dtype: "BF16"; shape: number[] }[] = [];
  const add = (name: string, shape: number[]) => specs.push({ name, dtype: "BF16", shape });
  add("model.embed_tokens.weight", [o.V, o.H]);
  for (let l = 0; l < o.L; l++) {
    const P = `model.layers.${l}.`;
    add(`${P}input_layernorm.weight`, [o.H]);
    add(`${P}self_attn.q_proj.weight`, [o.nH * d, o.H]);
    add(`${P}self_attn.k_proj.weight`, [o.nKV * d, o.H]);
    add(`${P}self_attn.v_proj.weight`, [o.nKV * d, o.H]);
    add(`${P}self_attn.o_proj.weight`, [o.H, o.nH * d]);
    add(`${P}post_attention_layernorm.weight`, [o.H]);
    add(`${P}mlp.gate_proj.weight`, [o.I, o.H]);
    add(`${P}mlp.up_proj.weight`, [o.I, o.H]);
    add(`${P}mlp.down_proj.weight`, [o.H, o.I]);
  }
  add("model.norm.weight", [o.H]);
  add("lm_head.weight", [o.V, o.H]);
  let seed = o.seed ?? 12345;
  const rnd = () => ((seed = (Math.imul(seed, 1103515245) + 12345) >>> 0) / 2 ** 32 - 0.5) * 0.2;
  const w = SafetensorsWriter.create(join(dir, "model.safetensors"), specs);
  for (const s of specs) {
    w.writeWith(s.name, (dst) => {
      const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
      const norm = s.name.endsWith("norm.weight");
      for (let i = 0; i < dst.byteLength / 2; i++) dv.setUint16(i * 2, f32ToBf16Bits(norm ? 1 + rnd() : rnd()), true);
    });
  }
  w.commit();
  writeFileSync(join(dir, "config.json"), JSON.stringify({
    architectures: ["LlamaForCausalLM"], hidden_size: o.H, intermediate_size: o.I, num_attention_heads: o.nH,
    num_key_value_heads: o.nKV, num_hidden_layers: o.L, vocab_size: o.V, rms_norm_eps: 1e-6, torch_dtype: "bfloat16",
    rope_theta: 10000, max_position_embeddings: 128, hidden_act: "silu", tie_word_embeddings: false,
  }));
}
