import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../../cli/_main.ts";
import { main } from "../../cli/trtllm.ts";
import { SafetensorsWriter } from "../../src/format/safetensors.ts";
import { captureCli } from "./_capture.ts";
import { asF32, fixture, readRaw, tempDir } from "../helpers.ts";

const io = captureCli();
const { printed, logged } = io;
const cli = (...args: string[]) => runCli(main, [...args, "--log_level", "error"]);
const quantOf = (dir: string) => JSON.parse(readFileSync(join(dir, "config.json"), "utf8")).quantization;

describe("trtllm quantize", () => {
  test("int4_awq_rtn tp=2, then run on the CPU", async () => {
    using out = tempDir();
    const ckpt = join(out.path, "ckpt");
    expect(await cli("quantize", "--model_dir", fixture("qwen2"), "--output_dir", ckpt, "--qformat", "int4_awq_rtn", "--group_size", "64", "--tp_size", "2")).toBe(0);
    expect(io.errors).not.toHaveBeenCalled();
    expect(quantOf(ckpt)).toMatchObject({ quant_algo: "W4A16_AWQ", group_size: 64, pre_quant_scale: true });
    const r1 = readRaw(join(ckpt, "rank1.safetensors"));
    expect(r1.get("transformer.layers.0.mlp.proj.weight")!.dtype).toBe("I8");

    const ref = readRaw(join(fixture("qwen2"), "reference.safetensors"));
    const input = join(out.path, "in.safetensors");
    const w = SafetensorsWriter.create(input, [{ name: "input_ids", dtype: "I32", shape: [2, 12] }]);
    w.write("input_ids", ref.get("input_ids")!.bytes);
    w.commit();
    const outFile = join(out.path, "out.safetensors");
    expect(await cli("run", "--checkpoint_dir", ckpt, "--input_file", input, "--output_logits", outFile)).toBe(0);
    expect(asF32(readRaw(outFile).get("logits")!).length).toBe(2 * 12 * 256);
  });

  test("fp8_rowwise with the Meta recipe and exclude_modules; int8_wo; int4_wo", async () => {
    using out = tempDir();
    expect(await cli("quantize", "--model_dir", fixture("llama"), "--output_dir", out.path, "--qformat", "fp8_rowwise", "--use_meta_fp8_rowwise_recipe", "--exclude_modules", "transformer.layers.1.mlp.gate, *foo")).toBe(0);
    expect(quantOf(out.path)).toMatchObject({ quant_algo: "FP8_PER_CHANNEL_PER_TOKEN", use_meta_recipe: true, clamp_val: [-1200, 1200] });
    expect(quantOf(out.path).exclude_modules).toEqual(expect.arrayContaining(["transformer.layers.1.mlp.gate", "*foo", "*attention"]));
    for (const [qf, algo] of [["int8_wo", "W8A16"], ["int4_wo", "W4A16"]]) {
      expect(await cli("quantize", "--model_dir", fixture("llama"), "--output_dir", out.path, "--qformat", qf!)).toBe(0);
      expect(quantOf(out.path).quant_algo).toBe(algo);
    }
  });

  test("bad flags: one clear message, nothing written", async () => {
    using out = tempDir();
    const cases: [string[], string][] = [
      [["quantize", "--model_dir", fixture("llama"), "--output_dir", out.path, "--qformat", "int4_awq_rtn", "--group_size", "96"], "--group_size must be 64 or 128"],
      [["quantize", "--model_dir", fixture("mixtral"), "--output_dir", out.path, "--qformat", "fp8_rowwise"], "mixture-of-experts"],
      [["quantize", "--model_dir", fixture("llama"), "--output_dir", out.path, "--qformat", "int4_awq_rtn", "--tp_size", "3"], "not divisible by tp_size (3)"],
      [["convert", "--model_dir", fixture("llama"), "--output_dir", out.path, "--use_weight_only", "--use_fp8_rowwise"], "only one of"],
    ];
    for (const [args, msg] of cases) {
      io.errors.mockClear();
      expect(await cli(...args)).toBe(1);
      expect(logged()).toContain(msg);
    }
    expect(existsSync(join(out.path, "config.json"))).toBe(false);
    expect(await cli("quantize", "--model_dir", fixture("llama"), "--output_dir", out.path, "--qformat", "int3")).toBe(2);
  });

  test("--help lists every flag", async () => {
    expect(await cli("quantize", "--help")).toBe(0);
    for (const f of ["--model_dir", "--output_dir", "--qformat", "int4_awq_rtn", "fp8_rowwise", "--group_size", "--tp_size", "--pp_size", "--dtype", "--device", "--exclude_modules"])
      expect(printed()).toContain(f);
  });
});

describe("trtllm convert quantization flags (upstream's names)", () => {
  test("--use_weight_only --weight_only_precision int8|int4, --use_fp8_rowwise", async () => {
    using out = tempDir();
    for (const [flags, algo] of [[["--use_weight_only"], "W8A16"], [["--use_weight_only", "--weight_only_precision", "int4"], "W4A16"], [["--use_fp8_rowwise"], "FP8_PER_CHANNEL_PER_TOKEN"]] as const) {
      expect(await cli("convert", "--model_dir", fixture("llama"), "--output_dir", out.path, "--tp_size", "2", ...flags)).toBe(0);
      expect(quantOf(out.path).quant_algo).toBe(algo);
    }
    expect(readRaw(join(out.path, "rank0.safetensors")).get("transformer.layers.0.mlp.fc.weight")!.dtype).toBe("F8_E4M3");
  });
});

describe("trtllm quantize --smoothquant α --per_channel / --per_token (legacy plugin layout)", () => {
  test("selects the plugin variant (tp 2, random calibration ids)", async () => {
    using out = tempDir();
    for (const [flags, algo] of [
      [["--per_token", "--per_channel"], "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN"], [["--per_token"], "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN"],
      [["--per_channel"], "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN"],
    ] as const) {
      const ckpt = join(out.path, algo);
      expect(await cli("quantize", "--model_dir", fixture("llama"), "--output_dir", ckpt, "--smoothquant", "0.6", ...flags, "--calib_dataset", "random", "--calib_size", "2", "--calib_max_seq_length", "8", "--tp_size", "2")).toBe(0);
      expect(quantOf(ckpt)).toMatchObject({ quant_algo: algo, smoothquant_val: 0.6 });
      const r1 = readRaw(join(ckpt, "rank1.safetensors"));
      expect(r1.get("transformer.layers.0.attention.dense.smoother")!.dtype).toBe("F32");
      expect(r1.get("transformer.layers.0.input_layernorm.scale_to_int")!.shape).toEqual([1]);
    }
  });

  test("bad combinations: one clear message, nothing written", async () => {
    using out = tempDir();
    const base = ["quantize", "--model_dir", fixture("llama"), "--output_dir", out.path, "--calib_dataset", "random"];
    for (const [args, msg] of [
      [["--per_token"], "needs --smoothquant"],
      [["--per_channel"], "needs --smoothquant"],
      [["--smoothquant", "2", "--per_channel"], "--smoothquant α must be in [0, 1]"],
      [["--smoothquant", "0.5", "--per_token", "--qformat", "fp8"], "cannot be combined with --qformat fp8"],
    ] as const) {
      io.errors.mockClear();
      expect(await cli(...base, ...args)).toBe(1);
      expect(logged()).toContain(msg);
    }
    expect(existsSync(join(out.path, "config.json"))).toBe(false);
  });

  test("--help describes --per_channel and --per_token", async () => {
    expect(await cli("quantize", "--help")).toBe(0);
    for (const f of ["--per_channel", "--per_token", "W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN", "W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN", "W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN"]) expect(printed()).toContain(f);
  });
});
