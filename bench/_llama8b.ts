/**
 * The Llama-3-8B-shaped random bf16 TRT-LLM checkpoint of the engine benchmarks (bench/engine.ts,
 * bench/serve-load.ts), written with our own writer: H 4096, 32/8 heads of 128, I 14336,
 * V 128256, `L` layers (32: 16 GB). Weights are a pool of random bf16 values tiled from rotating
 * offsets (non-zero, never repeating at a scale the GPU could cache); norms are ones. Each layer
 * also has `attention.kv_cache_scaling_factor` (F32 [1], KV_SCALE), unused unless a variant's config
 * sets kv_cache_quant_algo (bench/engine.ts `-int8kv` / `-fp8kv`).
 * `fp8`: the decoder linears as FP8 per tensor (quant_algo FP8): random e4m3 bytes (no NaN
 * patterns) with weight scale 0.02 / 448 and activation scale 4 / 448, the embedding and lm_head
 * bf16 — the shape and bytes of a modelopt FP8 checkpoint (values are random either way).
 * `sq`: the same as SmoothQuant W8A8_SQ_PER_CHANNEL: random int8 bytes, per-channel weight scales
 * 0.02 / 127, activation scale 4 / 127, prequant (smoothing) ones.
 * `awq`: W4A16_AWQ (modelopt's layout, group 128): random int4 pairs packed along the output dim
 * (I8 [out/2, in]), group scales 0.02 / 7 (bf16 [out, in/128]), prequant ones.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { SafetensorsWriter } from "../src/format/safetensors.ts";
import { f32BitsToBf16Bits, f32Bits } from "../src/numeric.ts";

export const LLAMA8B = { H: 4096, NH: 32, NKV: 8, D: 128, I: 14336, V: 128256 } as const;
/** KV cache scale of every layer: K/V of these random weights reach about ±4 (4/127 for INT8; FP8 then uses ±133 of its ±448). */
export const KV_SCALE = 0.03;

export function writeLlama8bCheckpoint(ckpt: string, L: number, opts: { fp8?: boolean; sq?: boolean; awq?: boolean; fp8rowwise?: boolean } = {}): void {
  const { H, NH, NKV, D, I, V } = LLAMA8B;
  mkdirSync(ckpt, { recursive: true });
  const specs: { name: string; dtype: "BF16" | "F8_E4M3" | "I8" | "F32"; shape: number[] }[] = [];
  const LINEAR = /\.(attention\.(qkv|dense)|mlp\.(fc|gate|proj))\.weight$/;
  const add = (name: string, shape: number[]) => {
    const f8 = (opts.fp8 && LINEAR.test(name)) || (opts.fp8rowwise && /\.mlp\.(fc|gate|proj)\.weight$/.test(name));
    const i8 = opts.sq && LINEAR.test(name);
    const i4 = opts.awq && LINEAR.test(name);
    specs.push({ name, dtype: f8 ? "F8_E4M3" : i8 || i4 ? "I8" : "BF16", shape: i4 ? [shape[0]! / 2, shape[1]!] : shape });
    const m = name.slice(0, -".weight".length);
    if (i4)
      specs.push({ name: `${m}.weights_scaling_factor`, dtype: "BF16", shape: [shape[0]!, shape[1]! / 128] }, { name: `${m}.prequant_scaling_factor`, dtype: "BF16", shape: [shape[1]!] });
    if (f8 && opts.fp8rowwise) specs.push({ name: `${m}.per_channel_scale`, dtype: "F32", shape: [shape[0]!] });
    else if (f8) specs.push({ name: `${m}.weights_scaling_factor`, dtype: "F32", shape: [1] }, { name: `${m}.activation_scaling_factor`, dtype: "F32", shape: [1] });
    if (i8)
      specs.push(
        { name: `${m}.weights_scaling_factor`, dtype: "F32", shape: [shape[0]!] }, { name: `${m}.activation_scaling_factor`, dtype: "F32", shape: [1] },
        { name: `${m}.prequant_scaling_factor`, dtype: "BF16", shape: [shape[1]!] },
      );
  };
  add("transformer.vocab_embedding.weight", [V, H]);
  for (let l = 0; l < L; l++) {
    const P = `transformer.layers.${l}.`;
    add(`${P}input_layernorm.weight`, [H]);
    add(`${P}attention.qkv.weight`, [(NH + 2 * NKV) * D, H]);
    add(`${P}attention.dense.weight`, [H, NH * D]);
    add(`${P}post_layernorm.weight`, [H]);
    add(`${P}mlp.fc.weight`, [I, H]);
    add(`${P}mlp.gate.weight`, [I, H]);
    add(`${P}mlp.proj.weight`, [H, I]);
    specs.push({ name: `${P}attention.kv_cache_scaling_factor`, dtype: "F32", shape: [1] });
  }
  add("transformer.ln_f.weight", [H]);
  add("lm_head.weight", [V, H]);
  // A pool of random bf16 values, tiled over the tensors from rotating offsets: non-zero, non-repeating
  // at any scale the GPU could cache.
  const POOL = 32 << 20;
  const pool = new Uint16Array(POOL + 1);
  let s = 0x12345678;
  for (let i = 0; i < pool.length; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    pool[i] = f32BitsToBf16Bits(f32Bits(((s / 2 ** 32) - 0.5) * 0.04));
  }
  const ones = new Uint16Array(Math.max(H, I)).map(() => f32BitsToBf16Bits(f32Bits(1)));
  // the same pool's bytes as e4m3 values (a copy, NaN patterns made finite)
  const bytes = new Uint8Array(opts.fp8 || opts.sq || opts.awq || opts.fp8rowwise ? pool.buffer.slice(0) : new ArrayBuffer(0));
  const awqScale = new Uint16Array(I).fill(f32BitsToBf16Bits(f32Bits(0.02 / 7)));
  for (let i = 0; i < bytes.length; i++) if ((bytes[i]! & 0x7f) === 0x7f) bytes[i] = bytes[i]! ^ 0x01; // no e4m3 NaN
  const w = SafetensorsWriter.create(join(ckpt, "rank0.safetensors"), specs);
  let buf = new Uint16Array(0);
  let rot = 0;
  for (const sp of specs) {
    const n = sp.shape.reduce((a, b) => a * b, 1);
    if (sp.name.endsWith("norm.weight") || sp.name.endsWith(".prequant_scaling_factor")) {
      w.write(sp.name, new Uint8Array(ones.buffer, 0, n * 2));
      continue;
    }
    if (sp.dtype === "BF16" && sp.name.endsWith(".weights_scaling_factor")) {
      w.writeWith(sp.name, (dst) => {
        const u = new Uint8Array(awqScale.buffer);
        for (let o = 0; o < n * 2; o += u.length) dst.set(u.subarray(0, Math.min(u.length, n * 2 - o)), o);
      });
      continue;
    }
    if (sp.dtype === "F32") {
      const bound = opts.sq ? 127 : 448;
      const v = sp.name.endsWith(".kv_cache_scaling_factor") ? KV_SCALE : sp.name.endsWith(".weights_scaling_factor") || sp.name.endsWith(".per_channel_scale") ? 0.02 / bound : 4 / bound;
      w.write(sp.name, new Uint8Array(new Float32Array(n).fill(v).buffer));
      continue;
    }
    if (sp.dtype === "F8_E4M3" || sp.dtype === "I8") {
      w.writeWith(sp.name, (dst) => {
        for (let o = 0; o < n; ) {
          rot = (rot + 7919) % POOL;
          const k = Math.min(n - o, 2 * POOL - 2 * rot);
          dst.set(bytes.subarray(2 * rot, 2 * rot + k), o);
          o += k;
        }
      });
      continue;
    }
    if (buf.length < n) buf = new Uint16Array(n);
    for (let o = 0; o < n; ) {
      rot = (rot + 7919) % POOL;
      const k = Math.min(n - o, POOL - rot);
      buf.set(pool.subarray(rot, rot + k), o);
      o += k;
    }
    w.write(sp.name, new Uint8Array(buf.buffer, 0, n * 2));
  }
  w.commit();
  writeFileSync(join(ckpt, "config.json"), JSON.stringify({
    architecture: "LlamaForCausalLM", dtype: "bfloat16", logits_dtype: "float32", vocab_size: V, hidden_size: H, num_hidden_layers: L,
    num_attention_heads: NH, num_key_value_heads: NKV, head_size: D, hidden_act: "silu", intermediate_size: I, norm_epsilon: 1e-5,
    position_embedding_type: "rope_gpt_neox", max_position_embeddings: 8192, rotary_embedding_dim: D, rotary_base: 500000, rotary_scaling: null,
    use_parallel_embedding: false, embedding_sharding_dim: 0, qk_layernorm: false, mapping: { world_size: 1, tp_size: 1, pp_size: 1 },
    quantization: { quant_algo: opts.fp8 ? "FP8" : opts.fp8rowwise ? "FP8_PER_CHANNEL_PER_TOKEN" : opts.sq ? "W8A8_SQ_PER_CHANNEL" : opts.awq ? "W4A16_AWQ" : null, kv_cache_quant_algo: null, group_size: 128, smoothquant_val: 0.5, has_zero_point: false, pre_quant_scale: !!opts.awq, exclude_modules: null, ...(opts.fp8rowwise ? { clamp_val: [-1200, 1200] } : {}) },
    tie_word_embeddings: false,
  }, null, 4));
}
