/**
 * The conversion's streamed write path on tensors many times the write chunk (256 KiB): direct
 * writes from several source views (fused qkv of row slices), column slices and casts assembled a
 * chunk at a time, padded lm_head rows, parallel workers; every rank file is checked byte for byte
 * against the spec's rules applied to the raw source bytes (test/helpers.ts, independent of src/).
 * Also: a NaN far past the first chunk is reported at its index in the whole tensor.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { convertCheckpoint } from "../src/convert.ts";
import { SafetensorsWriter } from "../src/format/safetensors.ts";
import { log } from "../src/log.ts";
import { castArrayTS } from "../src/numeric.ts";
import { bytesEqual, catRows, cols, expectCodeAsync, type RawTensor, readRaw, readRawDir, rows, tempDir, zeroRows } from "./helpers.ts";

// nKV ≥ tp for every tp below; V = 1002 pads lm_head at tp 4 (1004 rows); 2 layers.
const D = { H: 512, nH: 8, nKV: 4, d: 64, I: 1536, V: 1002, L: 2 };

/** A synthetic HF Llama: finite random bf16 weights, untied lm_head, two shards. */
function writeModel(dir: string, nanAt?: { tensor: string; index: number }): void {
  const { H, nH, nKV, d, I, V, L } = D;
  const specs: { name: string; dtype: "BF16"; shape: number[] }[][] = [[{ name: "model.embed_tokens.weight", dtype: "BF16", shape: [V, H] }], []];
  for (let l = 0; l < L; l++) {
    const P = `model.layers.${l}.`;
    specs[l === 0 ? 0 : 1]!.push(
      { name: `${P}input_layernorm.weight`, dtype: "BF16", shape: [H] },
      { name: `${P}post_attention_layernorm.weight`, dtype: "BF16", shape: [H] },
      { name: `${P}self_attn.q_proj.weight`, dtype: "BF16", shape: [nH * d, H] },
      { name: `${P}self_attn.k_proj.weight`, dtype: "BF16", shape: [nKV * d, H] },
      { name: `${P}self_attn.v_proj.weight`, dtype: "BF16", shape: [nKV * d, H] },
      { name: `${P}self_attn.o_proj.weight`, dtype: "BF16", shape: [H, nH * d] },
      { name: `${P}mlp.gate_proj.weight`, dtype: "BF16", shape: [I, H] },
      { name: `${P}mlp.up_proj.weight`, dtype: "BF16", shape: [I, H] },
      { name: `${P}mlp.down_proj.weight`, dtype: "BF16", shape: [H, I] },
    );
  }
  specs[1]!.push({ name: "model.norm.weight", dtype: "BF16", shape: [H] }, { name: "lm_head.weight", dtype: "BF16", shape: [V, H] });
  let s = 0x9e3779b9;
  const weightMap: Record<string, string> = {};
  specs.forEach((list, i) => {
    const file = `model-0000${i + 1}-of-00002.safetensors`;
    const w = SafetensorsWriter.create(join(dir, file), list);
    for (const t of list) {
      w.writeWith(t.name, (dst) => {
        const u16 = new Uint16Array(dst.buffer, dst.byteOffset, dst.length / 2);
        for (let k = 0; k < u16.length; k++) {
          s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0;
          u16[k] = (s % 0x3f00) | (s & 0x80000000 ? 0x8000 : 0); // exponent < 0x7f: finite, |x| < 1
        }
        if (nanAt?.tensor === t.name) u16[nanAt.index] = 0x7fc0;
      });
      weightMap[t.name] = file;
    }
    w.commit();
  });
  writeFileSync(join(dir, "model.safetensors.index.json"), JSON.stringify({ metadata: {}, weight_map: weightMap }));
  writeFileSync(join(dir, "config.json"), JSON.stringify({
    architectures: ["LlamaForCausalLM"], hidden_size: H, intermediate_size: I, num_attention_heads: nH, num_key_value_heads: nKV,
    num_hidden_layers: L, vocab_size: V, rms_norm_eps: 1e-5, torch_dtype: "bfloat16", rope_theta: 10000, max_position_embeddings: 256, hidden_act: "silu",
  }));
}

/** Rank `r`'s tensors at `tp` (pp 1) per the spec (trtllm-checkpoint.md §2), from the raw bf16 source. */
function expectedRank(hf: Map<string, RawTensor>, tp: number, r: number): Map<string, RawTensor> {
  const { nH, nKV, d, I, V, L } = D;
  const get = (n: string) => hf.get(n)!;
  const out = new Map<string, RawTensor>();
  out.set("transformer.vocab_embedding.weight", get("model.embed_tokens.weight"));
  for (let l = 0; l < L; l++) {
    const P = `model.layers.${l}.`;
    const T = `transformer.layers.${l}.`;
    const qPer = (nH / tp) * d;
    const kvPer = (nKV / tp) * d;
    out.set(`${T}attention.qkv.weight`, catRows(rows(get(`${P}self_attn.q_proj.weight`), r * qPer, qPer),
      rows(get(`${P}self_attn.k_proj.weight`), r * kvPer, kvPer), rows(get(`${P}self_attn.v_proj.weight`), r * kvPer, kvPer)));
    out.set(`${T}attention.dense.weight`, cols(get(`${P}self_attn.o_proj.weight`), r * ((nH * d) / tp), (nH * d) / tp));
    out.set(`${T}input_layernorm.weight`, get(`${P}input_layernorm.weight`));
    out.set(`${T}post_layernorm.weight`, get(`${P}post_attention_layernorm.weight`));
    out.set(`${T}mlp.fc.weight`, rows(get(`${P}mlp.gate_proj.weight`), r * (I / tp), I / tp));
    out.set(`${T}mlp.gate.weight`, rows(get(`${P}mlp.up_proj.weight`), r * (I / tp), I / tp));
    out.set(`${T}mlp.proj.weight`, cols(get(`${P}mlp.down_proj.weight`), r * (I / tp), I / tp));
  }
  out.set("transformer.ln_f.weight", get("model.norm.weight"));
  const head = get("lm_head.weight");
  const vpad = Math.ceil(V / tp) * tp;
  const padded = vpad > V ? catRows(head, zeroRows(head, vpad - V)) : head;
  out.set("lm_head.weight", rows(padded, r * (vpad / tp), vpad / tp));
  return out;
}

function castRaw(t: RawTensor, to: "F32"): RawTensor {
  const bytes = new Uint8Array((t.bytes.length / 2) * 4);
  castArrayTS(t.bytes, "BF16", bytes, to);
  return { dtype: to, shape: t.shape, bytes };
}

describe("streamed conversion writes exactly the spec's bytes", () => {
  let src: ReturnType<typeof tempDir>;
  let hf: Map<string, RawTensor>;
  beforeAll(() => {
    src = tempDir();
    writeModel(src.path);
    hf = readRawDir(src.path);
  });
  afterAll(() => src[Symbol.dispose]());
  for (const [tp, workers, dtype] of [[1, 1, "bfloat16"], [2, 2, "bfloat16"], [4, 1, "bfloat16"], [4, 2, "bfloat16"], [2, 1, "float32"]] as const) {
    test(`tp=${tp} workers=${workers} ${dtype}`, async () => {
      using out = tempDir();
      await convertCheckpoint({ modelDir: src.path, outputDir: out.path, tpSize: tp, workers, dtype });
      for (let r = 0; r < tp; r++) {
        const got = readRaw(join(out.path, `rank${r}.safetensors`));
        const want = expectedRank(hf, tp, r);
        expect([...got.keys()].sort()).toEqual([...want.keys()].sort());
        for (const [n, w0] of want) {
          const w = dtype === "float32" ? castRaw(w0, "F32") : w0;
          const g = got.get(n)!;
          expect({ n, dtype: g.dtype, shape: g.shape }).toEqual({ n, dtype: w.dtype, shape: w.shape });
          if (!bytesEqual(g.bytes, w.bytes)) throw new Error(`tp ${tp} rank ${r}: ${n} bytes differ from the spec`);
        }
      }
    });
  }
});

describe("a NaN past the first write chunk", () => {
  // down_proj is [512, 1536]: flat index 400,000 is [260, 640], 800 KB into the tensor.
  const index = 260 * D.I + 640;
  for (const [tp, where] of [[1, "[260, 640]"], [2, "[260, 640]"]] as const) {
    test(`tp=${tp}: NUM_NONFINITE names the tensor and the index in the whole tensor; --allow_nonfinite warns once`, async () => {
      using src = tempDir();
      writeModel(src.path, { tensor: "model.layers.1.mlp.down_proj.weight", index });
      using out = tempDir();
      // tp 1: a direct copy (checked chunk by chunk); tp 2: a column slice, assembled chunk by chunk
      // (rank 0 holds column 640 of 768).
      // workers: 1 keeps the warning on this thread, where it is captured.
      await expectCodeAsync(convertCheckpoint({ modelDir: src.path, outputDir: out.path, tpSize: tp, workers: 1 }), "NUM_NONFINITE",
        new RegExp(`transformer\\.layers\\.1\\.mlp\\.proj\\.weight.*index \\${where.replace("]", "\\]")}`));
      const warnings: string[] = [];
      const warn = log.warn;
      log.warn = Object.assign((m: unknown) => void warnings.push(String(m)), { raw: () => {} }) as typeof log.warn;
      try {
        await convertCheckpoint({ modelDir: src.path, outputDir: out.path, tpSize: tp, workers: 1, allowNonfinite: true });
      } finally {
        log.warn = warn;
      }
      expect(warnings.filter((m) => m.includes("non-finite"))).toHaveLength(1);
    });
  }
});

test("a NaN in a rank written by a worker thread: NUM_NONFINITE comes back with its code and index", async () => {
  using src = tempDir();
  // Column 1408 of down_proj is column 640 of rank 1's half; with 2 workers rank 1 is written by the worker thread.
  writeModel(src.path, { tensor: "model.layers.1.mlp.down_proj.weight", index: 260 * D.I + 1408 });
  using out = tempDir();
  await expectCodeAsync(convertCheckpoint({ modelDir: src.path, outputDir: out.path, tpSize: 2, workers: 2 }), "NUM_NONFINITE",
    /transformer\.layers\.1\.mlp\.proj\.weight.*index \[260, 640\]/);
});
