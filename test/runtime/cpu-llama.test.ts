import { describe, expect, test } from "bun:test";
import { join } from "node:path";
import { convertCheckpoint } from "../../src/convert.ts";
import { SafetensorsWriter } from "../../src/format/safetensors.ts";
import { loadCpuRunner } from "../../src/runtime/index.ts";
import { f32ToBf16Bits } from "../../src/numeric.ts";
import { fixture, relMaxErr, tempDir } from "../helpers.ts";
import { checkAgainstReference } from "./reference.ts";

describe("CPU runner vs transformers reference (Llama family)", () => {
  for (const name of ["llama", "mistral", "llama3-tied"]) {
    for (const [tp, pp] of [[1, 1], [2, 1], [1, 2], [2, 2]] as const) {
      test(`${name} tp=${tp} pp=${pp}`, async () => {
        using out = tempDir();
        await convertCheckpoint({ modelDir: fixture(name), outputDir: out.path, tpSize: tp, ppSize: pp });
        checkAgainstReference(await loadCpuRunner(out.path), name);
      });
    }
  }
});

/** A synthetic Llama with shapes the fixtures lack: V % tp ≠ 0 (lm_head padding), nKV < tp (KV duplication). */
function writeSyntheticLlama(dir: string, o: { V: number; H: number; nH: number; nKV: number; I: number; L: number }) {
  const d = o.H / o.nH;
  const specs: { name: string; dtype: "BF16"; shape: number[] }[] = [];
  const add = (name: string, shape: number[]) => specs.push({ name, dtype: "BF16", shape });
  add("model.embed_tokens.weight", [o.V, o.H]);
  add("model.norm.weight", [o.H]);
  add("lm_head.weight", [o.V, o.H]);
  for (let l = 0; l < o.L; l++) {
    const P = `model.layers.${l}.`;
    add(`${P}input_layernorm.weight`, [o.H]);
    add(`${P}post_attention_layernorm.weight`, [o.H]);
    add(`${P}self_attn.q_proj.weight`, [o.nH * d, o.H]);
    add(`${P}self_attn.k_proj.weight`, [o.nKV * d, o.H]);
    add(`${P}self_attn.v_proj.weight`, [o.nKV * d, o.H]);
    add(`${P}self_attn.o_proj.weight`, [o.H, o.nH * d]);
    add(`${P}mlp.gate_proj.weight`, [o.I, o.H]);
    add(`${P}mlp.up_proj.weight`, [o.I, o.H]);
    add(`${P}mlp.down_proj.weight`, [o.H, o.I]);
  }
  let seed = 12345;
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
  Bun.write(join(dir, "config.json"), JSON.stringify({
    architectures: ["LlamaForCausalLM"], hidden_size: o.H, intermediate_size: o.I, num_attention_heads: o.nH,
    num_key_value_heads: o.nKV, num_hidden_layers: o.L, vocab_size: o.V, rms_norm_eps: 1e-6, torch_dtype: "bfloat16",
    rope_theta: 10000, max_position_embeddings: 128, hidden_act: "silu", tie_word_embeddings: false,
  }));
}

test("lm_head padding (V=255, tp=4) and KV duplication (nKV=2 < tp=4): sharded logits equal unsharded", async () => {
  using src = tempDir();
  using one = tempDir();
  using four = tempDir();
  writeSyntheticLlama(src.path, { V: 255, H: 64, nH: 4, nKV: 2, I: 96, L: 2 });
  await Bun.sleep(0);
  await convertCheckpoint({ modelDir: src.path, outputDir: one.path });
  await convertCheckpoint({ modelDir: src.path, outputDir: four.path, tpSize: 4, ppSize: 2 });
  const a = await loadCpuRunner(one.path);
  const b = await loadCpuRunner(four.path);
  const ids = [1, 7, 254, 3, 99, 42];
  // Merging must be exact: identical weights give identical logits.
  expect(relMaxErr(b.forward(ids), a.forward(ids))).toBe(0);
  expect(b.greedy(ids, 4)).toEqual(a.greedy(ids, 4));
});
