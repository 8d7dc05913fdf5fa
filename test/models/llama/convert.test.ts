/**
 * Llama-family conversion checked against the spec (trtllm-checkpoint.md §1–2), not against our own
 * output: expected tensors are rebuilt here from the raw HF bytes with plain slicing.
 */
import { describe, expect, test } from "bun:test";
import { cpSync, existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { convertCheckpoint } from "../../../src/convert.ts";
import { TrtbError } from "../../../src/errors.ts";
import { LLaMAForCausalLM } from "../../../src/models/llama/model.ts";
import { Mapping } from "../../../src/mapping.ts";
import { castArrayTS } from "../../../src/numeric.ts";
import type { TensorView } from "../../../src/tensor.ts";
import { bytesEqual, catRows, cols, fixture, type RawTensor, readRaw, readRawDir, rows, tempDir, zeroRows } from "../../helpers.ts";

const PARALLEL = [[1, 1], [2, 1], [1, 2], [2, 2]] as const;

/** Expected tensors of one rank per spec §2.2–2.7, from raw HF tensors (bf16 kept). */
function expectedRank(hf: Map<string, RawTensor>, c: { H: number; nH: number; nKV: number; d: number; V: number; L: number; tied: boolean }, tp: number, pp: number, rank: number) {
  const tpRank = rank % tp;
  const ppRank = Math.floor(rank / tp);
  const get = (n: string) => {
    const t = hf.get(n);
    if (!t) throw new Error(`fixture lacks ${n}`);
    return t;
  };
  // pp_layers = array_split(range(L), pp)
  const base = Math.floor(c.L / pp);
  const extra = c.L % pp;
  const start = ppRank * base + Math.min(ppRank, extra);
  const count = base + (ppRank < extra ? 1 : 0);
  const out = new Map<string, RawTensor>();
  if (ppRank === 0) out.set("transformer.vocab_embedding.weight", get("model.embed_tokens.weight"));
  for (let i = 0; i < count; i++) {
    const L = start + i;
    const P = `model.layers.${L}.`;
    const T = `transformer.layers.${i}.`;
    const q = get(`${P}self_attn.q_proj.weight`);
    const k = get(`${P}self_attn.k_proj.weight`);
    const v = get(`${P}self_attn.v_proj.weight`);
    const qPer = (c.nH / tp) * c.d;
    let kr: RawTensor;
    let vr: RawTensor;
    if (c.nKV >= tp) {
      const kvPer = (c.nKV / tp) * c.d;
      kr = rows(k, tpRank * kvPer, kvPer);
      vr = rows(v, tpRank * kvPer, kvPer);
    } else {
      const head = Math.floor((tpRank * c.nKV) / tp); // §2.3: rank r gets KV head floor(r·nKV/tp)
      kr = rows(k, head * c.d, c.d);
      vr = rows(v, head * c.d, c.d);
    }
    out.set(`${T}attention.qkv.weight`, catRows(rows(q, tpRank * qPer, qPer), kr, vr));
    const o = get(`${P}self_attn.o_proj.weight`);
    out.set(`${T}attention.dense.weight`, cols(o, tpRank * (o.shape[1]! / tp), o.shape[1]! / tp));
    out.set(`${T}input_layernorm.weight`, get(`${P}input_layernorm.weight`));
    out.set(`${T}post_layernorm.weight`, get(`${P}post_attention_layernorm.weight`));
    const g = get(`${P}mlp.gate_proj.weight`);
    const u = get(`${P}mlp.up_proj.weight`);
    const dn = get(`${P}mlp.down_proj.weight`);
    const I = g.shape[0]!;
    out.set(`${T}mlp.fc.weight`, rows(g, tpRank * (I / tp), I / tp)); // fc ← gate_proj (§2.4)
    out.set(`${T}mlp.gate.weight`, rows(u, tpRank * (I / tp), I / tp)); // gate ← up_proj
    out.set(`${T}mlp.proj.weight`, cols(dn, tpRank * (I / tp), I / tp));
  }
  if (ppRank === pp - 1) {
    out.set("transformer.ln_f.weight", get("model.norm.weight"));
    const head = c.tied ? get("model.embed_tokens.weight") : get("lm_head.weight");
    const vpad = Math.ceil(c.V / tp) * tp;
    const padded = vpad > c.V ? catRows(head, zeroRows(head, vpad - c.V)) : head;
    out.set("lm_head.weight", rows(padded, tpRank * (vpad / tp), vpad / tp));
  }
  return out;
}

function fixtureDims(name: string) {
  const cfg = JSON.parse(readFileSync(join(fixture(name), "config.json"), "utf8"));
  return {
    H: cfg.hidden_size, nH: cfg.num_attention_heads, nKV: cfg.num_key_value_heads, d: cfg.head_dim ?? cfg.hidden_size / cfg.num_attention_heads,
    V: cfg.vocab_size, L: cfg.num_hidden_layers, tied: cfg.tie_word_embeddings === true, raw: cfg,
  };
}

describe("Llama conversion matches the spec tensor by tensor", () => {
  for (const name of ["llama", "mistral", "llama3-tied"]) {
    for (const [tp, pp] of PARALLEL) {
      test(`${name} tp=${tp} pp=${pp}`, async () => {
        using out = tempDir();
        const dims = fixtureDims(name);
        await convertCheckpoint({ modelDir: fixture(name), outputDir: out.path, tpSize: tp, ppSize: pp });
        const cfg = JSON.parse(readFileSync(join(out.path, "config.json"), "utf8"));
        expect(cfg.architecture).toBe(dims.raw.architectures[0]);
        expect(cfg.dtype).toBe("bfloat16");
        expect(cfg.mapping).toEqual({ world_size: tp * pp, tp_size: tp, pp_size: pp });
        expect(Object.keys(cfg.quantization).sort()).toEqual(["exclude_modules", "group_size", "has_zero_point", "kv_cache_quant_algo", "pre_quant_scale", "quant_algo", "smoothquant_val"]);
        expect(cfg.quantization.quant_algo).toBeNull();
        expect([cfg.vocab_size, cfg.hidden_size, cfg.num_hidden_layers, cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_size])
          .toEqual([dims.V, dims.H, dims.L, dims.nH, dims.nKV, dims.d]);
        expect([cfg.hidden_act, cfg.position_embedding_type, cfg.intermediate_size, cfg.norm_epsilon]).toEqual(["silu", "rope_gpt_neox", 384, 1e-5]);
        expect(cfg.tie_word_embeddings).toBe(dims.tied);
        const rp = dims.raw.rope_parameters;
        expect(cfg.rotary_base).toBe(rp.rope_theta);
        if (rp.rope_type === "default") expect(cfg.rotary_scaling).toBeNull();
        else expect(cfg.rotary_scaling).toEqual({ factor: 8, high_freq_factor: 4, low_freq_factor: 1, original_max_position_embeddings: 64, rope_type: "llama3" });

        const hf = readRawDir(fixture(name));
        for (let r = 0; r < tp * pp; r++) {
          const got = readRaw(join(out.path, `rank${r}.safetensors`));
          const want = expectedRank(hf, dims, tp, pp, r);
          expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
          for (const [n, w] of want) {
            const g = got.get(n)!;
            expect({ n, dtype: g.dtype, shape: g.shape }).toEqual({ n, dtype: "BF16", shape: w.shape });
            if (!bytesEqual(g.bytes, w.bytes)) throw new Error(`rank ${r}: ${n} bytes differ from the spec`);
          }
        }
      });
    }
  }
});

describe("dtype conversion", () => {
  for (const [dtype, st] of [["float16", "F16"], ["float32", "F32"]] as const) {
    test(`--dtype ${dtype}: every tensor is the RNE cast of the source`, async () => {
      using out = tempDir();
      await convertCheckpoint({ modelDir: fixture("mistral"), outputDir: out.path, dtype });
      const hf = readRawDir(fixture("mistral"));
      const got = readRaw(join(out.path, "rank0.safetensors"));
      const src = hf.get("model.layers.1.mlp.down_proj.weight")!;
      const g = got.get("transformer.layers.1.mlp.proj.weight")!;
      expect(g.dtype).toBe(st);
      const want = new Uint8Array((src.bytes.length / 2) * (st === "F32" ? 4 : 2));
      castArrayTS(src.bytes, "BF16", want, st);
      expect(bytesEqual(g.bytes, want)).toBe(true);
      expect(JSON.parse(readFileSync(join(out.path, "config.json"), "utf8")).dtype).toBe(dtype);
    });
  }
});

/** A copy of a fixture whose config.json is rewritten by `edit`. */
function editedFixture(dir: string, name: string, edit: (cfg: Record<string, unknown>) => void): string {
  cpSync(fixture(name), dir, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(dir, "config.json"), "utf8"));
  edit(cfg);
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg));
  return dir;
}

describe("config generations", () => {
  test("transformers-4 keys (rope_theta, rope_scaling, torch_dtype) give the same checkpoint", async () => {
    using a = tempDir();
    using b = tempDir();
    using src = tempDir();
    editedFixture(src.path, "llama3-tied", (c) => {
      const { rope_theta, ...scaling } = c.rope_parameters as Record<string, unknown>;
      delete c.rope_parameters;
      c.rope_theta = rope_theta;
      c.rope_scaling = scaling;
      c.torch_dtype = c.dtype;
      delete c.dtype;
    });
    await convertCheckpoint({ modelDir: fixture("llama3-tied"), outputDir: a.path });
    await convertCheckpoint({ modelDir: src.path, outputDir: b.path });
    expect(readFileSync(join(b.path, "config.json"), "utf8")).toBe(readFileSync(join(a.path, "config.json"), "utf8"));
    expect(bytesEqual(readFileSync(join(a.path, "rank0.safetensors")), readFileSync(join(b.path, "rank0.safetensors")))).toBe(true);
  });
});

async function code(p: Promise<unknown>): Promise<string> {
  try {
    await p;
    return "no error";
  } catch (e) {
    if (e instanceof TrtbError) return e.code;
    throw e;
  }
}

describe("bad input gives exact error codes and leaves no checkpoint", () => {
  test("tp that does not divide the heads → CONV_TP", async () => {
    using out = tempDir();
    expect(await code(convertCheckpoint({ modelDir: fixture("llama"), outputDir: out.path, tpSize: 4 }))).toBe("CONV_TP");
    expect(existsSync(join(out.path, "config.json"))).toBe(false);
  });
  test("pp larger than the layer count → CONV_PP", async () => {
    using out = tempDir();
    expect(await code(convertCheckpoint({ modelDir: fixture("llama"), outputDir: out.path, ppSize: 3 }))).toBe("CONV_PP");
  });
  test("untied model without lm_head.weight → CONV_MISSING_SOURCE (never tied silently)", async () => {
    using src = tempDir();
    using out = tempDir();
    editedFixture(src.path, "llama3-tied", (c) => { c.tie_word_embeddings = false; });
    expect(await code(convertCheckpoint({ modelDir: src.path, outputDir: out.path }))).toBe("CONV_MISSING_SOURCE");
  });
  test("unknown architecture → CFG_UNSUPPORTED_ARCH, listing the supported ones", async () => {
    using src = tempDir();
    using out = tempDir();
    editedFixture(src.path, "mistral", (c) => { c.architectures = ["FalconForCausalLM"]; });
    try {
      await convertCheckpoint({ modelDir: src.path, outputDir: out.path });
      throw new Error("expected an error");
    } catch (e) {
      expect((e as TrtbError).code).toBe("CFG_UNSUPPORTED_ARCH");
      expect((e as Error).message).toContain("LlamaForCausalLM");
    }
  });
  test("unsupported rope scaling → CFG_UNSUPPORTED", async () => {
    using src = tempDir();
    using out = tempDir();
    editedFixture(src.path, "mistral", (c) => { c.rope_parameters = { rope_theta: 10000, rope_type: "yarn", factor: 4 }; });
    expect(await code(convertCheckpoint({ modelDir: src.path, outputDir: out.path }))).toBe("CFG_UNSUPPORTED");
  });
  test("missing config.json → HF_NO_CONFIG", async () => {
    using out = tempDir();
    expect(await code(convertCheckpoint({ modelDir: out.path, outputDir: join(out.path, "o") }))).toBe("HF_NO_CONFIG");
  });
  test("a rerun replaces an earlier, larger checkpoint (stale ranks removed)", async () => {
    using out = tempDir();
    await convertCheckpoint({ modelDir: fixture("mistral"), outputDir: out.path, tpSize: 2, ppSize: 2 });
    await convertCheckpoint({ modelDir: fixture("mistral"), outputDir: out.path });
    expect(existsSync(join(out.path, "rank0.safetensors"))).toBe(true);
    expect(existsSync(join(out.path, "rank1.safetensors"))).toBe(false);
  });
});

describe("model API", () => {
  test("fromHuggingFace → saveCheckpoint → fromCheckpoint round trip", async () => {
    using out = tempDir();
    const mapping = new Mapping({ tpSize: 2, rank: 1 });
    {
      using m = await LLaMAForCausalLM.fromHuggingFace(fixture("llama"), { mapping });
      m.saveCheckpoint(out.path);
    }
    using back = await LLaMAForCausalLM.fromCheckpoint(out.path, 1);
    expect(back.mapping.tpRank).toBe(1);
    expect(back.weights.get("transformer.layers.0.attention.qkv.weight")!.shape).toEqual([(1 + 2) * 64, 128]);
  });
  test("load(): missing, misshapen and extra tensors", async () => {
    using m = await LLaMAForCausalLM.fromHuggingFace(fixture("llama"));
    const weights = new Map(m.weights);
    weights.delete("transformer.ln_f.weight");
    expect(() => m.load(weights)).toThrow(expect.objectContaining({ code: "CKPT_MISSING_TENSOR" }));
    const bad = new Map<string, TensorView>(m.weights);
    const emb = m.weights.get("transformer.vocab_embedding.weight")!;
    bad.set(emb.name, { name: emb.name, dtype: emb.dtype, shape: [128, 256], bytes: () => emb.bytes() });
    try {
      m.load(bad);
    } catch (e) {
      expect((e as TrtbError).code).toBe("CKPT_SHAPE_MISMATCH");
      expect((e as Error).message).toContain("[128,256]");
      expect((e as Error).message).toContain("[256,128]");
    }
  });
});

describe("--workers", () => {
  test("ranks written by worker threads are byte-identical to a sequential run", async () => {
    using seq = tempDir();
    using par = tempDir();
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: seq.path, tpSize: 2, ppSize: 2 });
    let last = 0;
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: par.path, tpSize: 2, ppSize: 2, workers: 3, onProgress: (d, t) => { last = d / t; } });
    expect(last).toBe(1);
    for (const f of ["config.json", "rank0.safetensors", "rank1.safetensors", "rank2.safetensors", "rank3.safetensors"])
      expect(bytesEqual(readFileSync(join(seq.path, f)), readFileSync(join(par.path, f)))).toBe(true);
  });
  test("a worker reports failures with their TrtbError code", async () => {
    using out = tempDir();
    const w = new Worker(new URL("../../../src/convert-worker.ts", import.meta.url).href);
    const reply = await new Promise<{ type: string; code?: string; message: string }>((resolve) => {
      w.onmessage = (e) => resolve(e.data);
      w.postMessage({ opts: { modelDir: join(out.path, "absent"), outputDir: out.path, mappingJSON: { tpSize: 1 } }, ranks: [0] });
    });
    w.terminate();
    expect(reply).toMatchObject({ type: "error", code: "HF_NO_CONFIG" });
  });
});
