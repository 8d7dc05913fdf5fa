/**
 * build() → Engine → save → Engine.fromDir without a GPU (fake backend: untuned tactics): the
 * engine directory layout, config.json, the plan, the weight layout and the file format's checks.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fakeBackend } from "../../src/builder/backend.ts";
import { buildCheckpoint } from "../../src/builder/checkpoint.ts";
import { build } from "../../src/builder/build.ts";
import { TimingCache, tokenBuckets } from "../../src/builder/tactics.ts";
import { Engine } from "../../src/engine/engine.ts";
import { unpackInt4Rows, woGroupScaleIndex, woUnpackTS } from "../../src/engine/wo-layout.ts";
import { ENGINE_MAGIC, openEngineFile } from "../../src/engine/engine-file.ts";
import { type EngineModelDesc, logitsDtypeOf } from "../../src/engine/plan.ts";
import { convertCheckpoint } from "../../src/convert.ts";
import { isTrtbError } from "../../src/errors.ts";
import { LLaMAForCausalLM } from "../../src/models/llama/model.ts";
import { toFloat32 } from "../../src/numeric.ts";
import { fixture, readRaw, tempDir } from "../helpers.ts";
import { writeSyntheticLlama } from "../quant/_synthetic.ts";

const err = async (fn: () => unknown) => {
  try {
    await fn();
  } catch (e) {
    return isTrtbError(e) ? e : (e as Error);
  }
  throw new Error("expected an error");
};

describe("engine build and file (fake backend)", () => {
  test("build(model) → save → fromDir: config.json, plan, weight layout", async () => {
    using t = tempDir();
    const ckpt = join(t.path, "ckpt");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: ckpt });
    using model = await LLaMAForCausalLM.fromCheckpoint(ckpt, 0);
    const engine = await build(model, { max_batch_size: 4, max_num_tokens: 64 }, { backend: fakeBackend() });
    const out = join(t.path, "engine");
    engine.save(out);
    expect(readdirSync(out).sort()).toEqual(["config.json", "rank0.engine"]);
    const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    expect(Object.keys(cfg).sort()).toEqual(["build_config", "pretrained_config", "version"]);
    expect(cfg.build_config).toMatchObject({ max_batch_size: 4, max_num_tokens: 64, max_seq_len: 512, max_input_len: 512, kv_cache_type: "PAGED" });
    expect("dry_run" in cfg.build_config).toBe(false);
    expect(cfg.pretrained_config.architecture).toBe("LlamaForCausalLM");

    const back = await Engine.fromDir(out, 0);
    const plan = back.plan;
    expect(plan.model).toMatchObject({ hidden_size: 128, num_heads: 2, num_kv_heads: 1, head_size: 64, qkv_rows: 256, intermediate_size: 384, act: "silu" });
    expect(plan.limits).toEqual({ max_batch_size: 4, max_input_len: 512, max_seq_len: 512, max_num_tokens: 64, max_beam_width: 1, tokens_per_block: 32 });
    expect(Object.keys(plan.gemm.sites)).toEqual(["qkv", "dense", "gate_up", "down", "lm_head"]);
    expect(plan.gemm.sites.qkv!.buckets.map((b) => b[0])).toEqual(tokenBuckets(64));
    for (const t of plan.tensors) expect(t.offset % 256).toBe(0);

    // weights as laid out: gate_up = [mlp.gate; mlp.fc], norms in f32, the rest byte-identical
    const src = readRaw(join(ckpt, "rank0.safetensors"));
    const file = openEngineFile(join(out, "rank0.engine"));
    const gu = file.readTensor("layers.0.gate_up");
    const gate = src.get("transformer.layers.0.mlp.gate.weight")!.bytes;
    const fc = src.get("transformer.layers.0.mlp.fc.weight")!.bytes;
    expect(Buffer.compare(Buffer.from(gu.subarray(0, gate.length)), Buffer.from(gate))).toBe(0);
    expect(Buffer.compare(Buffer.from(gu.subarray(gate.length)), Buffer.from(fc))).toBe(0);
    const norm = new Float32Array(file.readTensor("layers.1.post_norm").buffer);
    expect(Array.from(norm)).toEqual(Array.from(toFloat32(src.get("transformer.layers.1.post_layernorm.weight")!.bytes, "BF16")));
    expect(Buffer.compare(Buffer.from(file.readTensor("lm_head")), Buffer.from(src.get("lm_head.weight")!.bytes))).toBe(0);
    expect(file.readTensor("rope.inv_freq").byteLength).toBe(32 * 4);
    let seen = 0;
    back.forEachWeightWindow((off, bytes) => {
      expect(off).toBe(seen);
      seen += bytes.byteLength;
    });
    expect(seen).toBe(back.weightBytes);
  });

  test("every family lays out; tp=2 gives one engine per rank; timing cache written and reused", async () => {
    using t = tempDir();
    for (const [name, tp] of [["qwen3", 1], ["gemma2", 1], ["phi3", 1], ["mixtral", 1], ["llama3-tied", 2]] as const) {
      const ckpt = join(t.path, name);
      const out = join(t.path, `${name}-e`);
      await convertCheckpoint({ modelDir: fixture(name), outputDir: ckpt, tpSize: tp });
      const r = await buildCheckpoint({ checkpointDir: ckpt, outputDir: out, backend: fakeBackend(), buildConfig: { max_num_tokens: 32 } });
      expect(r.ranks.map((x) => x.rank)).toEqual([...Array(tp).keys()]);
      expect(existsSync(join(out, "model.cache"))).toBe(true);
      const e = await Engine.fromDir(out, tp - 1);
      const names = e.plan.tensors.map((x) => x.name);
      if (name === "qwen3") expect(names).toContain("layers.0.q_norm");
      if (name === "gemma2") expect(e.plan.model).toMatchObject({ sandwich_norms: true, windows: [16, null], attn_softcap: 50, final_softcap: 30 });
      if (name === "mixtral") expect(names).toContain("layers.1.experts.gate_up");
      if (name === "llama3-tied") expect(e.plan.model.num_heads).toBe(1);
      // a second build reads the cache: every bucket is a hit
      const again = await buildCheckpoint({ checkpointDir: ckpt, outputDir: out, backend: fakeBackend(), buildConfig: { max_num_tokens: 32 }, inputTimingCache: join(out, "model.cache") });
      expect(again.ranks[0]!.cacheMisses).toBe(0);
    }
    const c = TimingCache.load(join(t.path, "qwen3-e", "model.cache"));
    expect(c.entries.size).toBeGreaterThan(0);
  });

  test("weight-only W8A16 / W4A16 checkpoints: packed I8 weights, f32 scales, .wo GEMM sites", async () => {
    using t = tempDir();
    for (const [algo, bits] of [["W8A16", 8], ["W4A16", 4]] as const) {
      const ckpt = join(t.path, `ckpt-${algo}`);
      const out = join(t.path, `eng-${algo}`);
      await convertCheckpoint({ modelDir: fixture("llama"), outputDir: ckpt, quantConfig: { quant_algo: algo, exclude_modules: ["*layers.0.mlp.*"] } });
      await buildCheckpoint({ checkpointDir: ckpt, outputDir: out, backend: fakeBackend(), buildConfig: { max_num_tokens: 32 } });
      const e = await Engine.fromDir(out, 0);
      expect(e.plan.model.weight_only).toEqual({ algo, bits });
      const byName = new Map(e.plan.tensors.map((x) => [x.name, x]));
      // qkv [256, 128]: 16 row tiles × (128 / k tile) tiles of 512 bytes
      const kt = bits === 8 ? 32 : 64;
      expect(byName.get("layers.0.qkv")).toMatchObject({ dtype: "I8", shape: [256, (128 * bits) / 8], bytes: 16 * (128 / kt) * 512 });
      expect(byName.get("layers.0.qkv.scale")).toMatchObject({ dtype: "F32", shape: [256] });
      // layer 0's MLP is excluded: 16-bit gate_up/down there, packed in layer 1
      expect(byName.get("layers.0.gate_up")!.dtype).toBe("BF16");
      expect(byName.has("layers.0.gate_up.scale")).toBe(false);
      expect(byName.get("layers.1.gate_up")!.dtype).toBe("I8");
      expect(byName.get("layers.1.down.scale")!.shape).toEqual([128]);
      expect(byName.has("lm_head.scale")).toBe(false);
      const sites = e.plan.gemm.sites;
      expect(sites["qkv.wo"]!.wbits).toBe(bits);
      expect(sites.qkv).toBeUndefined();
      expect(sites.gate_up).toBeDefined();
      expect(sites["gate_up.wo"]).toBeDefined();
      expect(sites.lm_head!.wbits).toBeUndefined();
      const cache = TimingCache.load(join(out, "model.cache"));
      expect([...cache.entries.keys()].some((k) => k.includes(`|w${bits}/BF16>F32|`))).toBe(true);
    }
    // a fused [gate; fc] GEMM cannot be half quantized
    const half = join(t.path, "half");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: half, quantConfig: { quant_algo: "W8A16", exclude_modules: ["*mlp.gate"] } });
    const e = await err(() => buildCheckpoint({ checkpointDir: half, outputDir: join(t.path, "half-e"), backend: fakeBackend() }));
    expect((e as { code?: string }).code).toBe("BUILD_UNSUPPORTED");
    expect(e.message).toContain("exclude both");
  });

  test("FP8 rowwise checkpoints: e4m3 MLP weights as stored, per-row scales, per-token plan, FP8 sites writing f32 sums", async () => {
    using t = tempDir();
    const fp8 = join(t.path, "fp8");
    const out = join(t.path, "fp8-e");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: fp8, quantConfig: { quant_algo: "FP8_PER_CHANNEL_PER_TOKEN", exclude_modules: ["*layers.0.mlp.*"] } });
    await buildCheckpoint({ checkpointDir: fp8, outputDir: out, backend: fakeBackend(), buildConfig: { max_num_tokens: 32 } });
    const e = await Engine.fromDir(out, 0);
    const L = e.plan.model.layers.length;
    // the MLPs of every layer but the excluded layer 0 are FP8
    expect(e.plan.model.rowwise).toEqual({ algo: "FP8", clamp: [-1200, 1200], linears: Array.from({ length: L - 1 }, (_, i) => [`layers.${i + 1}.gate_up`, `layers.${i + 1}.down`]).flat() });
    const byName = new Map(e.plan.tensors.map((x) => [x.name, x]));
    const ck = readRaw(join(fp8, "rank0.safetensors"));
    const I = e.plan.model.intermediate_size;
    expect(byName.get("layers.1.gate_up")).toMatchObject({ dtype: "F8_E4M3", shape: [2 * I, e.plan.model.hidden_size] });
    expect(byName.get("layers.0.gate_up")!.dtype).toBe("BF16");
    expect(byName.get("layers.1.qkv")!.dtype).toBe("BF16");
    // row scales: [gate; fc] in the fused order, the checkpoint's per_channel_scale values
    const file = openEngineFile(join(out, "rank0.engine"));
    const f32 = (b: Uint8Array) => Array.from(toFloat32(b, "F32"));
    const gate = f32(ck.get("transformer.layers.1.mlp.gate.per_channel_scale")!.bytes), fc = f32(ck.get("transformer.layers.1.mlp.fc.per_channel_scale")!.bytes);
    expect(f32(file.readTensor("layers.1.gate_up.row_scale"))).toEqual([...gate, ...fc]);
    const gu = file.readTensor("layers.1.gate_up");
    const gw = ck.get("transformer.layers.1.mlp.gate.weight")!.bytes;
    expect(Buffer.compare(Buffer.from(gu.subarray(0, gw.length)), Buffer.from(gw))).toBe(0);
    expect(Buffer.compare(Buffer.from(gu.subarray(gw.length)), Buffer.from(ck.get("transformer.layers.1.mlp.fc.weight")!.bytes))).toBe(0);
    expect(byName.has("layers.1.down.sq_div")).toBe(false);
    const sites = e.plan.gemm.sites;
    expect(sites["gate_up.fp8"]).toMatchObject({ ab: "F8_E4M3", y: "F32", n: 2 * I });
    expect(sites.gate_up).toBeDefined(); // layer 0 stays 16-bit
    expect(sites["qkv.fp8"]).toBeUndefined();
  });

  test("W4A16_AWQ checkpoints: the checkpoint's int4 values tiled, group scales in the kernel's order, prequant where the input is made, grouped .wo sites", async () => {
    using t = tempDir();
    const ckpt = join(t.path, "ckpt");
    const out = join(t.path, "eng");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: ckpt, quantConfig: { quant_algo: "W4A16_AWQ", group_size: 64, exclude_modules: ["*layers.0.mlp.*"] } });
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: out, backend: fakeBackend(), buildConfig: { max_num_tokens: 32 } });
    const e = await Engine.fromDir(out, 0);
    expect(e.plan.model.weight_only).toEqual({ algo: "W4A16_AWQ", bits: 4, group_size: 64 });
    const byName = new Map(e.plan.tensors.map((x) => [x.name, x]));
    // qkv [256, 128]: 16 row tiles × 2 k tiles of 512 bytes; 2 groups of 64 columns per row
    expect(byName.get("layers.0.qkv")).toMatchObject({ dtype: "I8", shape: [256, 64], bytes: 16 * 2 * 512 });
    expect(byName.get("layers.0.qkv.gscale")).toMatchObject({ dtype: "BF16", shape: [16, 2, 8, 2] });
    expect(byName.has("layers.0.qkv.scale")).toBe(false);
    // prequant: folded into the norms before qkv / gate_up, a vector for dense and down
    expect(byName.has("layers.0.qkv.pre")).toBe(false);
    expect(byName.has("layers.1.gate_up.pre")).toBe(false);
    expect(byName.get("layers.0.dense.pre")).toMatchObject({ dtype: "F32", shape: [128] });
    expect(byName.get("layers.1.down.pre")).toMatchObject({ dtype: "F32", shape: [384] });
    expect(byName.get("layers.0.gate_up")!.dtype).toBe("BF16"); // excluded
    expect(byName.has("layers.0.down.pre")).toBe(false);
    expect(byName.get("layers.1.gate_up.gscale")!.shape).toEqual([768 / 16, 2, 8, 2]);
    expect(byName.get("layers.1.down.gscale")!.shape).toEqual([8, 384 / 64, 8, 2]);
    // the engine holds the checkpoint's q and scales, rearranged (no requantization)
    const blob = new Uint8Array(e.weightBytes);
    e.forEachWeightWindow((off, bytes) => blob.set(bytes, off));
    const raw = readRaw(join(ckpt, "rank0.safetensors"));
    const at = (name: string) => { const x = byName.get(name)!; return blob.subarray(x.offset, x.offset + x.bytes); };
    for (const [eng, mods] of [["layers.1.qkv", ["attention.qkv"]], ["layers.1.gate_up", ["mlp.gate", "mlp.fc"]]] as const) {
      const ws = mods.map((m) => raw.get(`transformer.layers.1.${m}.weight`)!);
      const N = ws.reduce((a, w) => a + w.shape[0]! * 2, 0);
      const K = ws[0]!.shape[1]!;
      const q = new Int8Array(N * K);
      let r0 = 0;
      for (const w of ws) {
        unpackInt4Rows(w.bytes, w.shape[0]! * 2, K, q, r0);
        r0 += w.shape[0]! * 2;
      }
      expect(woUnpackTS(at(eng), N, K, 4)).toEqual(q);
      const sc = mods.flatMap((m) => Array.from(toFloat32(raw.get(`transformer.layers.1.${m}.weights_scaling_factor`)!.bytes, "BF16")));
      const tiled = toFloat32(at(`${eng}.gscale`), "BF16");
      for (let r = 0; r < N; r += 7) for (let g = 0; g < K / 64; g++) expect(tiled[woGroupScaleIndex(r, g, K / 64)]).toBe(sc[r * (K / 64) + g]!);
    }
    const sites = e.plan.gemm.sites;
    expect(sites["qkv.wo"]).toMatchObject({ wbits: 4, wgroup: 64 });
    expect(sites.qkv).toBeUndefined();
    expect(sites.gate_up).toBeDefined(); // layer 0 stays 16-bit
    expect(sites["gate_up.wo"]!.wgroup).toBe(64);
    expect([...TimingCache.load(join(out, "model.cache")).entries.keys()].some((k) => k.includes("|w4g64/BF16>F32|"))).toBe(true);
    // a prequant scale that is not one: input_norm holds norm · pre (f32); gate and fc read one
    // input, so different smoothing of the two cannot be one GEMM
    const raw2 = join(t.path, "ckpt2");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: raw2, quantConfig: { quant_algo: "W4A16_AWQ", group_size: 64 } });
    const file = join(raw2, "rank0.safetensors");
    const bytes = new Uint8Array(readFileSync(file));
    const n = Number(new DataView(bytes.buffer).getBigUint64(0, true));
    const hdr = JSON.parse(new TextDecoder().decode(bytes.subarray(8, 8 + n)));
    const flip = (name: string) => {
      expect(hdr[name].dtype).toBe("BF16");
      bytes[8 + n + hdr[name].data_offsets[0] + 1]! ^= 0x01; // 1.0 → 0.0078 (bf16 0x3f80 → 0x3e80 … first element)
      writeFileSync(file, bytes);
    };
    flip("transformer.layers.1.attention.qkv.prequant_scaling_factor");
    await buildCheckpoint({ checkpointDir: raw2, outputDir: join(t.path, "e1"), backend: fakeBackend(), buildConfig: { max_num_tokens: 32 } });
    const e1 = await Engine.fromDir(join(t.path, "e1"), 0);
    const blob1 = new Uint8Array(e1.weightBytes);
    e1.forEachWeightWindow((off, b) => blob1.set(b, off));
    const t1 = e1.plan.tensors.find((x) => x.name === "layers.1.input_norm")!;
    const folded = new Float32Array(blob1.slice(t1.offset, t1.offset + t1.bytes).buffer);
    const raw2t = readRaw(file);
    const norm = toFloat32(raw2t.get("transformer.layers.1.input_layernorm.weight")!.bytes, "BF16");
    const qpre = toFloat32(raw2t.get("transformer.layers.1.attention.qkv.prequant_scaling_factor")!.bytes, "BF16");
    expect(qpre[0]).not.toBe(1);
    expect(Array.from(folded)).toEqual(Array.from(norm, (v, j) => Math.fround(v * qpre[j]!)));
    flip("transformer.layers.1.mlp.gate.prequant_scaling_factor");
    const e2 = await err(() => buildCheckpoint({ checkpointDir: raw2, outputDir: join(t.path, "e2"), backend: fakeBackend() }));
    expect((e2 as { code?: string }).code).toBe("BUILD_UNSUPPORTED");
    expect(e2.message).toContain("different prequant_scaling_factor");
  });

  test("head sizes: 32/64/80/96/128/256 build, others are refused naming the supported set", async () => {
    using t = tempDir();
    for (const [D, ok] of [[96, true], [80, true], [32, true], [48, false]] as const) {
      const hf = join(t.path, `hf${D}`);
      mkdirSync(hf);
      writeSyntheticLlama(hf, { V: 64, H: 4 * D, nH: 4, nKV: 2, I: 8 * D, L: 1 });
      const ckpt = join(t.path, `ckpt${D}`);
      await convertCheckpoint({ modelDir: hf, outputDir: ckpt });
      const run = () => buildCheckpoint({ checkpointDir: ckpt, outputDir: join(t.path, `e${D}`), backend: fakeBackend(), buildConfig: { max_num_tokens: 32 } });
      if (ok) {
        await run();
        expect((await Engine.fromDir(join(t.path, `e${D}`), 0)).plan.model).toMatchObject({ head_size: D, num_heads: 4, num_kv_heads: 2, rotary_dim: D });
      } else {
        const e = await err(run);
        expect((e as { code?: string }).code).toBe("BUILD_UNSUPPORTED");
        expect(e.message).toContain(`head size ${D} is not supported by the CUDA backend (32, 64, 80, 96, 128, 256)`);
      }
    }
  });

  test("--logits_dtype: float16 recorded in the plan (lm_head GEMM site writes F16), float32 by default, needs a float16 model", async () => {
    using t = tempDir();
    const f16 = join(t.path, "ckpt-f16");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: f16, dtype: "float16" });
    using model = await LLaMAForCausalLM.fromCheckpoint(f16, 0);
    const opts = { backend: fakeBackend() };
    const dflt = await build(model, { max_num_tokens: 32 }, opts);
    expect(dflt.plan.model.logits_dtype).toBe("float32");
    expect(dflt.plan.gemm.sites.lm_head!.y).toBe("F32");
    const half = await build(model, { max_num_tokens: 32 }, { ...opts, logitsDtype: "float16" });
    expect(half.plan.model.logits_dtype).toBe("float16");
    expect(half.plan.gemm.sites.lm_head!.y).toBe("F16");
    for (const s of ["qkv", "dense", "down"]) expect(half.plan.gemm.sites[s]!.y).toBe("F32"); // only the head changes
    expect(half.config.pretrained_config.logits_dtype).toBe("float16");
    const out = join(t.path, "eng-f16");
    half.save(out);
    const back = await Engine.fromDir(out, 0);
    expect(back.plan.model.logits_dtype).toBe("float16");
    expect(back.config.pretrained_config.logits_dtype).toBe("float16");

    // plans written before the field existed mean float32
    const { logits_dtype: _, ...old } = back.plan.model;
    expect(logitsDtypeOf(old as EngineModelDesc)).toBe("float32");
    expect(logitsDtypeOf(back.plan.model)).toBe("float16");

    // bfloat16 model: --logits_dtype float16 is refused before anything is written; a checkpoint
    // config saying float16 builds float32 logits
    const bf = join(t.path, "ckpt-bf16");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: bf });
    const e = await err(() => buildCheckpoint({ checkpointDir: bf, outputDir: join(t.path, "x"), backend: fakeBackend(), logitsDtype: "float16" }));
    expect((e as { code?: string }).code).toBe("BUILD_UNSUPPORTED");
    expect(e.message).toContain("float16 model");
    expect(existsSync(join(t.path, "x"))).toBe(false);
    const cfgPath = join(bf, "config.json");
    writeFileSync(cfgPath, JSON.stringify({ ...JSON.parse(readFileSync(cfgPath, "utf8")), logits_dtype: "float16" }));
    using bfModel = await LLaMAForCausalLM.fromCheckpoint(bf, 0);
    expect(bfModel.config.logits_dtype).toBe("float16");
    const bfEng = await build(bfModel, { max_num_tokens: 32 }, opts);
    expect(bfEng.plan.model.logits_dtype).toBe("float32");
    expect(bfEng.plan.gemm.sites.lm_head!.y).toBe("F32");
  });

  test("unsupported checkpoints and broken files fail with clear codes", async () => {
    using t = tempDir();
    const ckpt = join(t.path, "ckpt");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: ckpt });
    const cfgPath = join(ckpt, "config.json");
    const orig = readFileSync(cfgPath, "utf8");
    const q = JSON.parse(orig);
    q.quantization.quant_algo = "W4A16_GPTQ";
    writeFileSync(cfgPath, JSON.stringify(q));
    const e1 = await err(() => buildCheckpoint({ checkpointDir: ckpt, outputDir: join(t.path, "x"), backend: fakeBackend() }));
    expect((e1 as { code?: string }).code).toBe("BUILD_UNSUPPORTED");
    expect(e1.message).toContain("W4A16_GPTQ");
    // an AWQ config over 16-bit weights: the scales the config promises are missing
    q.quantization.quant_algo = "W4A16_AWQ";
    q.quantization.group_size = 128;
    writeFileSync(cfgPath, JSON.stringify(q));
    const e4 = await err(() => buildCheckpoint({ checkpointDir: ckpt, outputDir: join(t.path, "x"), backend: fakeBackend() }));
    expect((e4 as { code?: string }).code).toBe("CKPT_SHAPE_MISMATCH"); // 16-bit [out, in] where the scheme stores [out/2, in] int4
    expect(e4.message).toContain("transformer.layers.0.attention.qkv.weight has shape [256,128], expected [128,128]");
    q.quantization.group_size = 32;
    writeFileSync(cfgPath, JSON.stringify(q));
    const e5 = await err(() => buildCheckpoint({ checkpointDir: ckpt, outputDir: join(t.path, "x"), backend: fakeBackend() }));
    expect((e5 as { code?: string }).code).toBe("BUILD_UNSUPPORTED");
    expect(e5.message).toContain("group_size 32");
    delete q.quantization.group_size;
    q.quantization.quant_algo = null;
    q.quantization.kv_cache_quant_algo = "FP8";
    writeFileSync(cfgPath, JSON.stringify(q));
    const e3 = await err(() => buildCheckpoint({ checkpointDir: ckpt, outputDir: join(t.path, "x"), backend: fakeBackend() }));
    expect((e3 as { code?: string }).code).toBe("CKPT_MISSING_TENSOR"); // an FP8 KV cache builds, with its scales (kv-cache.test.ts)
    expect(e3.message).toContain("kv_cache_scaling_factor");
    writeFileSync(cfgPath, orig);
    const e2 = await err(() => buildCheckpoint({ checkpointDir: ckpt, outputDir: join(t.path, "x"), backend: fakeBackend(), buildConfig: { kv_cache_type: "CONTINUOUS" } }));
    expect((e2 as { code?: string }).code).toBe("BUILD_UNSUPPORTED");

    const out = join(t.path, "e");
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: out, backend: fakeBackend(), buildConfig: { max_num_tokens: 32 } });
    const file = join(out, "rank0.engine");
    const good = readFileSync(file);
    expect(good.subarray(0, 8).toString("latin1")).toBe(ENGINE_MAGIC);
    const cases: [Buffer, string][] = [
      [Buffer.concat([Buffer.from("NOTANENG"), good.subarray(8)]), "bad magic"],
      [good.subarray(0, 1000), "truncated"],
      [(() => { const b = Buffer.from(good); b[70] = b[70]! ^ 1; return b; })(), "checksum"],
    ];
    for (const [bytes, msg] of cases) {
      writeFileSync(file, bytes);
      const e = await err(() => Engine.fromDir(out, 0));
      expect((e as { code?: string }).code).toBe("ENGINE_FORMAT");
      expect(e.message).toContain(msg);
    }
    expect((await err(() => Engine.fromDir(out, 1)) as { code?: string }).code).toBe("ENGINE_RANK");
    expect((await err(() => Engine.fromDir(join(t.path, "none"), 0)) as { code?: string }).code).toBe("ENGINE_NOT_FOUND");
  });
});
