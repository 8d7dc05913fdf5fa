/**
 * Tensor layouts of the non-Llama families, rebuilt here from the raw HF bytes per the spec
 * (trtllm-checkpoint.md §2.4, §2.10) and docs/families.md — not from our converter's output.
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { convertCheckpoint } from "../../src/convert.ts";
import { bf16BitsToF32, castArrayTS, f32ToBf16Bits } from "../../src/numeric.ts";
import { bytesEqual, catRows, cols, fixture, type RawTensor, readRaw, readRawDir, rows, tempDir } from "../helpers.ts";

async function convert(name: string, tp: number) {
  const dir = tempDir();
  await convertCheckpoint({ modelDir: fixture(name), outputDir: dir.path, tpSize: tp });
  const ranks = Array.from({ length: tp }, (_, r) => readRaw(join(dir.path, `rank${r}.safetensors`)));
  const cfg = JSON.parse(readFileSync(join(dir.path, "config.json"), "utf8"));
  return { dir, ranks, cfg, hf: readRawDir(fixture(name)) };
}

function expectTensor(got: RawTensor | undefined, want: RawTensor, what: string) {
  if (!got) throw new Error(`${what}: missing`);
  expect({ what, dtype: got.dtype, shape: got.shape }).toEqual({ what, dtype: want.dtype, shape: want.shape });
  if (!bytesEqual(got.bytes, want.bytes)) throw new Error(`${what}: bytes differ from the spec`);
}

/** bf16(f32(w) + 1): Gemma norms, one rounding. */
function plusOne(t: RawTensor): RawTensor {
  const out = new Uint8Array(t.bytes.length);
  const i = new DataView(t.bytes.buffer, t.bytes.byteOffset, t.bytes.byteLength);
  const o = new DataView(out.buffer);
  for (let k = 0; k < t.bytes.length / 2; k++) o.setUint16(k * 2, f32ToBf16Bits(bf16BitsToF32(i.getUint16(k * 2, true)) + 1), true);
  return { ...t, bytes: out };
}

const D = 64; // head size of every fixture
const TP = 2;

describe("Qwen2 (tp=2): q/k/v biases fused and split like the weights, no o_proj bias", () => {
  test("layout", async () => {
    const { dir, ranks, cfg, hf } = await convert("qwen2", TP);
    using _ = dir;
    expect([cfg.architecture, cfg.qwen_type, cfg.attn_bias]).toEqual(["Qwen2ForCausalLM", "qwen2", true]);
    for (let r = 0; r < TP; r++) {
      const P = "model.layers.1.self_attn.";
      // nH=2, nKV=1 < tp: each rank gets q head r and the (duplicated) single kv head.
      const bias = catRows(rows(hf.get(`${P}q_proj.bias`)!, r * D, D), hf.get(`${P}k_proj.bias`)!, hf.get(`${P}v_proj.bias`)!);
      expectTensor(ranks[r]!.get("transformer.layers.1.attention.qkv.bias"), bias, `rank${r} qkv.bias`);
      expect(ranks[r]!.has("transformer.layers.1.attention.dense.bias")).toBe(false);
      expectTensor(ranks[r]!.get("transformer.layers.1.mlp.fc.weight"), rows(hf.get("model.layers.1.mlp.gate_proj.weight")!, r * 192, 192), `rank${r} fc`);
    }
  });
});

describe("Qwen3: per-head q/k norms", () => {
  test("layout", async () => {
    const { dir, ranks, cfg, hf } = await convert("qwen3", TP);
    using _ = dir;
    expect([cfg.qwen_type, cfg.attn_bias]).toEqual(["qwen3", false]);
    for (const r of [0, 1]) {
      expectTensor(ranks[r]!.get("transformer.layers.0.attention.q_layernorm.weight"), hf.get("model.layers.0.self_attn.q_norm.weight")!, "q_layernorm");
      expectTensor(ranks[r]!.get("transformer.layers.0.attention.k_layernorm.weight"), hf.get("model.layers.0.self_attn.k_norm.weight")!, "k_layernorm");
    }
  });
});

describe("Gemma / Gemma2 (tp=2): norms +1, lm_head = embedding, parallel embedding", () => {
  for (const name of ["gemma", "gemma2"]) {
    test(name, async () => {
      const { dir, ranks, cfg, hf } = await convert(name, TP);
      using _ = dir;
      expect(cfg.use_parallel_embedding).toBe(true);
      expect(cfg.inter_layernorms).toBe(name === "gemma2");
      const emb = hf.get("model.embed_tokens.weight")!;
      for (let r = 0; r < TP; r++) {
        const g = ranks[r]!;
        expectTensor(g.get("transformer.vocab_embedding.weight"), rows(emb, r * 128, 128), `rank${r} embedding`);
        expectTensor(g.get("lm_head.weight"), rows(emb, r * 128, 128), `rank${r} lm_head`);
        expectTensor(g.get("transformer.ln_f.weight"), plusOne(hf.get("model.norm.weight")!), "ln_f");
        for (const [trt, src] of [["input_layernorm", "input_layernorm"], ["post_layernorm", "post_attention_layernorm"],
          ...(name === "gemma2" ? [["pre_feedforward_layernorm", "pre_feedforward_layernorm"], ["post_feedforward_layernorm", "post_feedforward_layernorm"]] : [])]) {
          expectTensor(g.get(`transformer.layers.1.${trt}.weight`), plusOne(hf.get(`model.layers.1.${src}.weight`)!), `${trt}`);
        }
        if (name === "gemma") expect(g.has("transformer.layers.0.pre_feedforward_layernorm.weight")).toBe(false);
      }
      if (name === "gemma2") {
        expect([cfg.query_pre_attn_scalar, cfg.attn_logit_softcapping, cfg.final_logit_softcapping, cfg.sliding_window]).toEqual([64, 50, 30, 16]);
        expect(cfg.layer_types).toEqual(["sliding_attention", "full_attention"]);
      }
    });
  }
});

describe("Phi-3 (tp=2): fused qkv split per head group, gate_up stored [up_r; gate_r] per rank", () => {
  test("layout", async () => {
    const { dir, ranks, cfg, hf } = await convert("phi3", TP);
    using _ = dir;
    expect(cfg.hidden_act).toBe("swiglu");
    const qkv = hf.get("model.layers.0.self_attn.qkv_proj.weight")!; // [q(128); k(64); v(64)]
    const gu = hf.get("model.layers.0.mlp.gate_up_proj.weight")!; // [gate(384); up(384)]
    for (let r = 0; r < TP; r++) {
      const g = ranks[r]!;
      expectTensor(g.get("transformer.layers.0.attention.qkv.weight"), catRows(rows(qkv, r * D, D), rows(qkv, 128, D), rows(qkv, 192, D)), `rank${r} qkv`);
      expectTensor(g.get("transformer.layers.0.mlp.fc.weight"), catRows(rows(gu, 384 + r * 192, 192), rows(gu, r * 192, 192)), `rank${r} fc`);
      expect(g.has("transformer.layers.0.mlp.gate.weight")).toBe(false);
      const down = hf.get("model.layers.0.mlp.down_proj.weight")!;
      expectTensor(g.get("transformer.layers.0.mlp.proj.weight"), cols(down, r * 192, 192), `rank${r} proj`);
    }
  });
});

describe("Mixtral (tp=2 → moe_tp=2): router f32, experts stacked [w3_r; w1_r]", () => {
  test("layout", async () => {
    const { dir, ranks, cfg, hf } = await convert("mixtral", TP);
    using _ = dir;
    expect(cfg.hidden_act).toBe("swiglu");
    expect(cfg.moe).toEqual({ num_experts: 4, top_k: 2, normalization_mode: 1 });
    expect(cfg.mapping).toEqual({ world_size: 2, tp_size: 2, pp_size: 1, moe_tp_size: 2, moe_ep_size: 1 });
    const P = "model.layers.1.block_sparse_moe.";
    const gate = hf.get(`${P}gate.weight`)!;
    const routerF32 = new Uint8Array(gate.bytes.length * 2);
    castArrayTS(gate.bytes, "BF16", routerF32, "F32");
    for (let r = 0; r < TP; r++) {
      const g = ranks[r]!;
      expectTensor(g.get("transformer.layers.1.mlp.router.weight"), { dtype: "F32", shape: [4, 128], bytes: routerF32 }, "router");
      const fc = catRows(...[0, 1, 2, 3].map((e) => catRows(rows(hf.get(`${P}experts.${e}.w3.weight`)!, r * 192, 192), rows(hf.get(`${P}experts.${e}.w1.weight`)!, r * 192, 192))));
      expectTensor(g.get("transformer.layers.1.mlp.fc.weight"), { ...fc, shape: [4, 384, 128] }, `rank${r} fc`);
      const proj = catRows(...[0, 1, 2, 3].map((e) => cols(hf.get(`${P}experts.${e}.w2.weight`)!, r * 192, 192)));
      expectTensor(g.get("transformer.layers.1.mlp.proj.weight"), { ...proj, shape: [4, 128, 192] }, `rank${r} proj`);
    }
  });
});
