/**
 * Quantized checkpoints against the spec (§1.4, §3.2, §3.3, §3.9): for each format, the rank files'
 * names, dtypes and shapes, and every quantized value and scale re-derived independently
 * (test/quant/_ref.ts) from the fp checkpoint of the same mapping; untouched tensors byte-identical;
 * the config's quantization block; exclude_modules; the Meta FP8 recipe; MoE; TP/group errors.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { convertCheckpoint } from "../../src/convert.ts";
import { isTrtbError } from "../../src/errors.ts";
import { Mapping } from "../../src/mapping.ts";
import { LLaMAForCausalLM } from "../../src/models/llama/model.ts";
import { fnmatchCase } from "../../src/quant/modules.ts";
import { quantize } from "../../src/quantize.ts";
import { bytesEqual, fixture, readRaw, type RawTensor, tempDir } from "../helpers.ts";
import { decodeFloats, f32, nearestE4m3, rne, roundTo, unpackInt4Rows } from "./_ref.ts";
import { writeSyntheticLlama } from "./_synthetic.ts";

const LINEAR = /^transformer\.layers\.\d+\.(attention\.(qkv|dense)|mlp\.(fc|gate|proj))\.weight$/;

async function fpAndQuant(model: string, quant: Record<string, unknown>, tp = 1, pp = 1) {
  const fp = tempDir();
  const q = tempDir();
  await convertCheckpoint({ modelDir: model, outputDir: fp.path, tpSize: tp, ppSize: pp });
  await quantize(model, q.path, quant, { mapping: new Mapping({ tpSize: tp, ppSize: pp }) });
  const ranks = Array.from({ length: tp * pp }, (_, r) => ({ fp: readRaw(join(fp.path, `rank${r}.safetensors`)), q: readRaw(join(q.path, `rank${r}.safetensors`)) }));
  const config = JSON.parse(readFileSync(join(q.path, "config.json"), "utf8"));
  return { fp, q, ranks, config, [Symbol.dispose]: () => { fp[Symbol.dispose](); q[Symbol.dispose](); } };
}

/** The fp weight's values as a [rows, cols] matrix. */
function matrix(t: RawTensor): { rows: number; cols: number; v: Float64Array } {
  const cols = t.shape[t.shape.length - 1]!;
  return { rows: t.shape.slice(0, -1).reduce((a, b) => a * b, 1), cols, v: decodeFloats(t.bytes, t.dtype) };
}

function expectAwqLinear(fpW: RawTensor, q: Map<string, RawTensor>, prefix: string, G: number) {
  const { rows, cols, v } = matrix(fpW);
  const w = q.get(`${prefix}.weight`)!;
  const s = q.get(`${prefix}.weights_scaling_factor`)!;
  const pre = q.get(`${prefix}.prequant_scaling_factor`)!;
  expect([w.dtype, w.shape]).toEqual(["I8", [rows / 2, cols]]);
  expect([s.dtype, s.shape]).toEqual(["BF16", [rows, cols / G]]);
  expect([pre.dtype, pre.shape]).toEqual(["BF16", [cols]]);
  expect(Array.from(decodeFloats(pre.bytes, "BF16")).every((x) => x === 1)).toBe(true);
  const qv = unpackInt4Rows(w.bytes, rows, cols);
  const sv = decodeFloats(s.bytes, "BF16");
  let bad = 0;
  for (let r = 0; r < rows; r++)
    for (let g = 0; g < cols / G; g++) {
      let amax = 0;
      for (let c = g * G; c < (g + 1) * G; c++) amax = Math.max(amax, Math.abs(v[r * cols + c]!));
      const scale = roundTo(f32(amax / 7), "BF16") || 1;
      if (sv[r * (cols / G) + g] !== scale) bad++;
      for (let c = g * G; c < (g + 1) * G; c++) if (qv[r * cols + c] !== Math.max(-8, Math.min(7, rne(f32(v[r * cols + c]! / scale))))) bad++;
    }
  expect({ prefix, bad }).toEqual({ prefix, bad: 0 });
}

function expectFp8Linear(fpW: RawTensor, q: Map<string, RawTensor>, prefix: string, clamp: [number, number]) {
  const { rows, cols, v } = matrix(fpW);
  const w = q.get(`${prefix}.weight`)!;
  const s = q.get(`${prefix}.per_channel_scale`)!;
  expect([w.dtype, w.shape]).toEqual(["F8_E4M3", [rows, cols]]);
  expect([s.dtype, s.shape]).toEqual(["F32", [rows]]);
  const sv = decodeFloats(s.bytes, "F32");
  let bad = 0;
  for (let r = 0; r < rows; r++) {
    const xs = Array.from(v.subarray(r * cols, (r + 1) * cols), (x) => Math.max(clamp[0], Math.min(clamp[1], x)));
    const scale = Math.max(f32(Math.max(...xs.map(Math.abs)) / 448), f32(1 / (448 * 512)));
    if (sv[r] !== scale) bad++;
    xs.forEach((x, c) => { if (w.bytes[r * cols + c] !== nearestE4m3(f32(x / scale))) bad++; });
  }
  expect({ prefix, bad }).toEqual({ prefix, bad: 0 });
}

describe("W4A16_AWQ (int4_awq_rtn)", () => {
  for (const [tp, pp] of [[1, 1], [2, 1], [1, 2]] as const) {
    test(`llama tp=${tp} pp=${pp}, group 64: every linear re-derived; everything else unchanged`, async () => {
      using c = await fpAndQuant(fixture("llama"), { quant_algo: "W4A16_AWQ", group_size: 64 }, tp, pp);
      expect(c.config.quantization).toMatchObject({ quant_algo: "W4A16_AWQ", group_size: 64, pre_quant_scale: true, has_zero_point: false, kv_cache_quant_algo: null });
      expect(c.config.quantization.exclude_modules).toEqual(expect.arrayContaining(["*lm_head", "*router", "*vocab_embedding"]));
      for (const { fp, q } of c.ranks) {
        for (const [name, t] of fp) {
          if (LINEAR.test(name)) expectAwqLinear(t, q, name.slice(0, -".weight".length), 64);
          else expect({ name, same: bytesEqual(q.get(name)!.bytes, t.bytes), dtype: q.get(name)!.dtype }).toEqual({ name, same: true, dtype: t.dtype });
        }
        expect(q.size).toBe(fp.size + 2 * [...fp.keys()].filter((n) => LINEAR.test(n)).length);
      }
    });
  }

  test("group 128 on a synthetic model; row-parallel input dims that do not split into groups are refused before writing", async () => {
    using src = tempDir();
    using out = tempDir();
    writeSyntheticLlama(src.path, { V: 64, H: 256, nH: 4, nKV: 2, I: 384, L: 1 });
    await quantize(src.path, out.path, { quant_algo: "W4A16_AWQ" }, {});
    const q = readRaw(join(out.path, "rank0.safetensors"));
    expect(q.get("transformer.layers.0.mlp.proj.weights_scaling_factor")!.shape).toEqual([256, 3]);
    // I = 384 over tp 2 gives 192 input channels per rank for mlp.proj: not a multiple of 128
    let err: unknown;
    try {
      await quantize(src.path, out.path, { quant_algo: "W4A16_AWQ", group_size: 128 }, { mapping: new Mapping({ tpSize: 2 }) });
    } catch (e) {
      err = e;
    }
    expect(isTrtbError(err) && err.code).toBe("QUANT_GROUP");
    expect((err as Error).message).toContain("transformer.layers.0.mlp.proj: 192 input channels per rank are not a multiple of group_size 128");
    expect(existsSync(join(out.path, "config.json"))).toBe(true); // the earlier checkpoint is untouched
    expect(JSON.parse(readFileSync(join(out.path, "config.json"), "utf8")).mapping.tp_size).toBe(1);
  });

  test("mixtral: experts stay in the model dtype (excluded as transformer.layers.*.mlp), attention is quantized", async () => {
    using c = await fpAndQuant(fixture("mixtral"), { quant_algo: "W4A16_AWQ", group_size: 64 }, 2);
    expect(c.config.quantization.exclude_modules).toContain("transformer.layers.*.mlp");
    for (const { fp, q } of c.ranks) {
      for (const name of ["transformer.layers.0.mlp.fc.weight", "transformer.layers.1.mlp.proj.weight", "transformer.layers.0.mlp.router.weight"])
        expect(bytesEqual(q.get(name)!.bytes, fp.get(name)!.bytes)).toBe(true);
      expectAwqLinear(fp.get("transformer.layers.1.attention.qkv.weight")!, q, "transformer.layers.1.attention.qkv", 64);
    }
  });

  test("quantized ranks load back through fromCheckpoint (declared params match the scheme)", async () => {
    using out = tempDir();
    await quantize(fixture("llama"), out.path, { quant_algo: "W4A16_AWQ", group_size: 64 }, { mapping: new Mapping({ tpSize: 2 }) });
    const m = await LLaMAForCausalLM.fromCheckpoint(out.path, 1);
    expect(m.weights.get("transformer.layers.0.attention.dense.weight")!.dtype).toBe("I8");
    m.close();
  });
});

describe("FP8_PER_CHANNEL_PER_TOKEN (fp8_rowwise)", () => {
  test("llama tp=2: MLP linears e4m3 + f32 per-channel scales re-derived; attention and norms unchanged", async () => {
    using c = await fpAndQuant(fixture("llama"), { quant_algo: "FP8_PER_CHANNEL_PER_TOKEN" }, 2);
    expect(c.config.quantization).toMatchObject({ quant_algo: "FP8_PER_CHANNEL_PER_TOKEN", clamp_val: [-1200, 1200], use_meta_recipe: false });
    expect(c.config.quantization.exclude_modules).toEqual(expect.arrayContaining(["*attention", "*input_layernorm", "*lm_head"]));
    for (const { fp, q } of c.ranks)
      for (const [name, t] of fp) {
        if (/\.mlp\.(fc|gate|proj)\.weight$/.test(name)) expectFp8Linear(t, q, name.slice(0, -7), [-1200, 1200]);
        else expect({ name, same: bytesEqual(q.get(name)!.bytes, t.bytes) }).toEqual({ name, same: true });
      }
  });

  test("clamp_val is applied to the weights before the scale", async () => {
    using c = await fpAndQuant(fixture("qwen2"), { quant_algo: "FP8_PER_CHANNEL_PER_TOKEN", clamp_val: [-0.05, 0.04] });
    const { fp, q } = c.ranks[0]!;
    expectFp8Linear(fp.get("transformer.layers.1.mlp.proj.weight")!, q, "transformer.layers.1.mlp.proj", [-0.05, 0.04]);
    expect(c.config.quantization.clamp_val).toEqual([-0.05, 0.04]);
  });

  test("Meta recipe: the first and last decoder layers stay fp (global indices, also across pipeline stages)", async () => {
    using src = tempDir();
    writeSyntheticLlama(src.path, { V: 64, H: 64, nH: 2, nKV: 1, I: 128, L: 4 });
    using c = await fpAndQuant(src.path, { quant_algo: "FP8_PER_CHANNEL_PER_TOKEN", use_meta_recipe: true }, 1, 2);
    expect(c.config.quantization.use_meta_recipe).toBe(true);
    const dtypeOf = (r: number, i: number) => c.ranks[r]!.q.get(`transformer.layers.${i}.mlp.fc.weight`)!.dtype;
    expect([dtypeOf(0, 0), dtypeOf(0, 1), dtypeOf(1, 0), dtypeOf(1, 1)]).toEqual(["BF16", "F8_E4M3", "F8_E4M3", "BF16"]);
  });

  test("refused for MoE and sandwich-norm models", async () => {
    using out = tempDir();
    for (const f of ["mixtral", "gemma2"]) {
      const e = await quantize(fixture(f), out.path, { quant_algo: "FP8_PER_CHANNEL_PER_TOKEN" }).catch((x) => x);
      expect(isTrtbError(e) && e.code).toBe("QUANT_UNSUPPORTED");
    }
  });
});

describe("W8A16 / W4A16 (portable form)", () => {
  for (const algo of ["W8A16", "W4A16"]) {
    test(`${algo}: rank files identical to the fp conversion, quant_algo set, no per_channel_scale`, async () => {
      using c = await fpAndQuant(fixture("qwen2"), { quant_algo: algo }, 2);
      expect(c.config.quantization).toMatchObject({ quant_algo: algo, exclude_modules: null });
      for (const { fp, q } of c.ranks) {
        expect([...q.keys()].sort()).toEqual([...fp.keys()].sort());
        for (const [name, t] of fp) expect({ name, same: bytesEqual(q.get(name)!.bytes, t.bytes) }).toEqual({ name, same: true });
      }
    });
  }
});

describe("exclude_modules", () => {
  test("user patterns keep modules fp and are written with upstream's defaults and a .weight twin", async () => {
    using c = await fpAndQuant(fixture("llama"), { quant_algo: "W4A16_AWQ", group_size: 64, exclude_modules: ["transformer.layers.0.mlp.fc", "*.1.attention.dense"] });
    const { fp, q } = c.ranks[0]!;
    for (const n of ["transformer.layers.0.mlp.fc.weight", "transformer.layers.1.attention.dense.weight"]) expect(bytesEqual(q.get(n)!.bytes, fp.get(n)!.bytes)).toBe(true);
    expect(q.get("transformer.layers.1.mlp.fc.weight")!.dtype).toBe("I8");
    expect(q.get("transformer.layers.0.attention.dense.weight")!.dtype).toBe("I8");
    expect(c.config.quantization.exclude_modules).toEqual(expect.arrayContaining([
      "transformer.layers.0.mlp.fc", "transformer.layers.0.mlp.fc.weight", "*.1.attention.dense", "*lm_head", "*router",
    ]));
  });

  test("fnmatchcase semantics", () => {
    expect(fnmatchCase("transformer.layers.10.mlp.fc", "*mlp.fc")).toBe(true);
    expect(fnmatchCase("lm_head", "*lm_head")).toBe(true);
    expect(fnmatchCase("transformer.layers.1.mlp.fc", "transformer.layers.?.mlp.fc")).toBe(true);
    expect(fnmatchCase("transformer.layers.12.mlp.fc", "transformer.layers.?.mlp.fc")).toBe(false);
    expect(fnmatchCase("transformer.layers.3.mlp", "transformer.layers.[0-4].mlp")).toBe(true);
    expect(fnmatchCase("transformer.layers.5.mlp", "transformer.layers.[!0-4].mlp")).toBe(true);
    expect(fnmatchCase("transformer.layers.0.mlp.fc", "transformer.layers.0.mlp")).toBe(false);
    expect(fnmatchCase("a.b", "a?b")).toBe(true);
    expect(fnmatchCase("Lm_head", "*lm_head")).toBe(false);
  });
});

test("unsupported algorithms and options are refused with clear codes", async () => {
  using out = tempDir();
  const codeOf = (p: Promise<unknown>) => p.then(() => "none", (e) => (isTrtbError(e) ? e.code : String(e)));
  expect(await codeOf(quantize(fixture("llama"), out.path, { quant_algo: "W4A16_GPTQ" }))).toBe("QUANT_UNSUPPORTED");
  expect(await codeOf(quantize(fixture("llama"), out.path, { quant_algo: "W4A16_AWQ", group_size: 32 }))).toBe("QUANT_CONFIG");
  expect(await codeOf(quantize(fixture("llama"), out.path, { quant_algo: "W8A16", kv_cache_quant_algo: "FP8" }))).toBe("CALIB_NO_DATA");
  expect(await codeOf(quantize(fixture("llama"), out.path, {}))).toBe("QUANT_CONFIG");
  expect(existsSync(join(out.path, "config.json"))).toBe(false);
});
