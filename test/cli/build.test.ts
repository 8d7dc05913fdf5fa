/**
 * `trtllm-build` flags → BuildConfig, the no-op report for plugin flags, clear errors for unknown
 * flags and values, --workers, --dry_run, and the GPU-less error. Builds here use the fake backend
 * (`TRTB_BUILD_BACKEND=fake`: untuned tactics), so they run without a GPU.
 */
import { afterEach, beforeEach, describe, expect, type Mock, spyOn, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { ARGS, main, parseBuildArgs } from "../../cli/commands/build.ts";
import { runCli } from "../../cli/_main.ts";
import { main as trtllm } from "../../cli/trtllm.ts";
import { openEngineFile } from "../../src/engine/engine-file.ts";
import { convertCheckpoint } from "../../src/convert.ts";
import { isTrtbError } from "../../src/errors.ts";
import { engineLib } from "../../src/ffi/engine.ts";
import { log } from "../../src/log.ts";
import { fixture, tempDir } from "../helpers.ts";

let stdout: Mock<(...a: unknown[]) => void>;
let errors: Mock<typeof log.error>;
let infos: Mock<typeof log.info>;
let level: number;
const savedBackend = process.env.TRTB_BUILD_BACKEND;
beforeEach(() => {
  level = log.level;
  stdout = spyOn(console, "log").mockImplementation(() => {});
  errors = spyOn(log, "error").mockImplementation(Object.assign(() => {}, { raw: () => {} }));
  infos = spyOn(log, "info").mockImplementation(Object.assign(() => {}, { raw: () => {} }));
  process.env.TRTB_BUILD_BACKEND = "fake";
});
afterEach(() => {
  stdout.mockRestore();
  errors.mockRestore();
  infos.mockRestore();
  log.level = level;
  if (savedBackend === undefined) delete process.env.TRTB_BUILD_BACKEND;
  else process.env.TRTB_BUILD_BACKEND = savedBackend;
});
const logged = () => errors.mock.calls.map((c) => String(c[0] instanceof Error ? c[0].message : c[0])).join("\n");
const info = () => infos.mock.calls.map((c) => String(c[0])).join("\n");
const cli = (...args: string[]) => runCli(main, [...args, "--log_level", "info"]);

describe("trtllm-build", () => {
  test("upstream flags map onto BuildConfig; plugin flags are reported as no-ops", () => {
    const given = new Set(["checkpoint_dir", "max_batch_size", "max_decoder_seq_len", "kv_cache_type", "gemm_plugin", "context_fmha", "tokens_per_block", "gather_all_token_logits", "fast_build", "strip_plan"]);
    const p = parseBuildArgs({
      checkpoint_dir: "c", output_dir: "o", max_batch_size: "8", max_decoder_seq_len: "4096", kv_cache_type: "paged", gemm_plugin: "auto",
      context_fmha: "enable", tokens_per_block: "64", gather_all_token_logits: true, fast_build: true, strip_plan: true, workers: "2", logits_dtype: "float16",
    }, given);
    expect(p.buildConfig).toMatchObject({ max_batch_size: 8, max_seq_len: 4096, kv_cache_type: "PAGED", gather_context_logits: true, gather_generation_logits: true, use_strip_plan: true });
    expect(p.buildConfig.plugin_config).toMatchObject({ gemm_plugin: "auto", context_fmha: true, tokens_per_block: 64, manage_weights: true });
    expect(p.noOps).toEqual(["--gemm_plugin auto", "--context_fmha enable", "--strip_plan", "--fast_build"]);
    expect(p.workers).toBe(2);
    expect(p.logitsDtype).toBe("float16");
    expect(parseBuildArgs({ checkpoint_dir: "c", gemm_plugin: "disable" }, new Set()).buildConfig.plugin_config!.gemm_plugin).toBeNull();
  });

  test("--help explains every flag", async () => {
    expect(await runCli(main, ["--help"], (s) => console.log(s))).toBe(0);
    const help = stdout.mock.calls.map((c) => c.join(" ")).join("\n");
    for (const f of Object.keys(ARGS).filter((f) => !f.startsWith("_"))) expect(help).toContain(`--${f}`);
  });

  test("builds every rank, with the no-op line, config.json last; --workers 2 in child processes; --dry_run writes nothing", async () => {
    using t = tempDir();
    const ckpt = join(t.path, "ckpt");
    await convertCheckpoint({ modelDir: fixture("qwen2"), outputDir: ckpt, tpSize: 2 });
    const out = join(t.path, "engine");
    expect(await cli("--checkpoint_dir", ckpt, "--output_dir", out, "--gemm_plugin", "auto", "--gpt_attention_plugin", "auto", "--max_num_tokens", "64")).toBe(0);
    expect(errors).not.toHaveBeenCalled();
    expect(info()).toContain("no effect on the CUDA backend (it always uses its own fused kernels): --gpt_attention_plugin auto, --gemm_plugin auto");
    expect(readdirSync(out).sort()).toEqual(["config.json", "generation_config.json", "model.cache", "rank0.engine", "rank1.engine"]);
    const cfg = JSON.parse(readFileSync(join(out, "config.json"), "utf8"));
    expect(cfg.build_config.max_num_tokens).toBe(64);
    expect(cfg.build_config.plugin_config.gemm_plugin).toBe("auto");

    const out2 = join(t.path, "engine2");
    expect(await cli("--checkpoint_dir", ckpt, "--output_dir", out2, "--workers", "2", "--max_num_tokens", "64")).toBe(0);
    expect(readdirSync(out2).sort()).toEqual(["config.json", "generation_config.json", "model.cache", "rank0.engine", "rank1.engine"]);

    const out3 = join(t.path, "engine3");
    expect(await cli("--checkpoint_dir", ckpt, "--output_dir", out3, "--dry_run")).toBe(0);
    expect(existsSync(out3)).toBe(false);
  });

  test("a W4A16 checkpoint (tp=2) builds weight-only engines, also with --workers 2", async () => {
    using t = tempDir();
    const ckpt = join(t.path, "ckpt");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: ckpt, tpSize: 2, quantConfig: { quant_algo: "W4A16" } });
    for (const workers of ["1", "2"]) {
      const out = join(t.path, `engine-${workers}`);
      expect(await cli("--checkpoint_dir", ckpt, "--output_dir", out, "--workers", workers, "--max_num_tokens", "64")).toBe(0);
      expect(errors).not.toHaveBeenCalled();
      expect(readdirSync(out).sort()).toEqual(["config.json", "generation_config.json", "model.cache", "rank0.engine", "rank1.engine"]);
      expect(JSON.parse(readFileSync(join(out, "config.json"), "utf8")).pretrained_config.quantization.quant_algo).toBe("W4A16");
    }
    // the same weights whether ranks were built in this process or in child processes
    for (const rank of [0, 1]) {
      const blobs = ["engine-1", "engine-2"].map((d) => {
        const f = openEngineFile(join(t.path, d, `rank${rank}.engine`));
        const parts: Buffer[] = [];
        f.forEachWindow((_, b) => parts.push(Buffer.from(b)));
        return { tensors: f.plan.tensors, blob: Buffer.concat(parts) };
      });
      expect(blobs[1]!.tensors).toEqual(blobs[0]!.tensors);
      expect(blobs[0]!.tensors.find((x) => x.name === "layers.0.qkv")!.dtype).toBe("I8");
      expect(blobs[1]!.blob.equals(blobs[0]!.blob)).toBe(true);
    }
  });

  test("bad flags, values and unsupported features: exit 1, one clear message, no stack", async () => {
    using t = tempDir();
    const ckpt = join(t.path, "ckpt");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: ckpt });
    const out = join(t.path, "o");
    const cases: [string[], string][] = [
      [["--output_dir", out], "--checkpoint_dir is required"],
      [["--checkpoint_dir", ckpt, "--output_dir", out, "--bogus", "1"], "unknown flag --bogus"],
      [["--checkpoint_dir", ckpt, "--output_dir", out, "--gemm_plugin", "fast"], "--gemm_plugin must be one of"],
      [["--checkpoint_dir", ckpt, "--output_dir", out, "--context_fmha", "yes"], "--context_fmha must be one of enable, disable"],
      [["--checkpoint_dir", ckpt, "--output_dir", out, "--max_batch_size", "many"], "--max_batch_size must be an integer"],
      [["--checkpoint_dir", ckpt, "--output_dir", out, "--kv_cache_type", "ring"], "--kv_cache_type must be one of"],
      [["--checkpoint_dir", ckpt, "--output_dir", out, "--kv_cache_type", "continuous"], "kv_cache_type CONTINUOUS"],
      [["--checkpoint_dir", ckpt, "--output_dir", out, "--max_beam_width", "4"], "beam search"],
      [["--checkpoint_dir", ckpt, "--output_dir", out, "--lora_dir", "x"], "LoRA"],
      [["--checkpoint_dir", ckpt, "--output_dir", out, "--speculative_decoding_mode", "medusa"], "--speculative_decoding_mode medusa is not supported"],
      [["--checkpoint_dir", ckpt, "--output_dir", out, "--tokens_per_block", "48"], "power of 2"],
      [["--checkpoint_dir", join(t.path, "nope"), "--output_dir", out], "config.json: not found"],
    ];
    for (const [args, msg] of cases) {
      errors.mockClear();
      expect(await cli(...args)).toBe(1);
      expect(errors).toHaveBeenCalledTimes(1);
      expect(logged()).toContain(msg);
      expect(typeof errors.mock.calls[0]![0]).toBe("string");
    }
    expect(existsSync(join(out, "config.json"))).toBe(false);
  });

  let haveEngineLib = true;
  try {
    engineLib();
  } catch {
    haveEngineLib = false;
  }
  test.skipIf(haveEngineLib)("without the engine library: BUILD_NO_GPU naming what was looked for", async () => {
    using t = tempDir();
    const ckpt = join(t.path, "ckpt");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: ckpt });
    delete process.env.TRTB_BUILD_BACKEND;
    expect(await cli("--checkpoint_dir", ckpt, "--output_dir", join(t.path, "o"))).toBe(1);
    expect(logged()).toContain("building an engine needs a CUDA GPU");
    expect(logged()).toContain("libtrtb_engine.so");
    errors.mockClear();
    expect(await cli("--checkpoint_dir", ckpt, "--output_dir", join(t.path, "o"), "--verbose")).toBe(1);
    expect(isTrtbError(errors.mock.calls[0]![0]) && (errors.mock.calls[0]![0] as { code: string }).code).toBe("BUILD_NO_GPU");
  });

  test("trtllm run --engine_dir on a tp=2 engine directory: clear error", async () => {
    using t = tempDir();
    const ckpt = join(t.path, "ckpt");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: ckpt, tpSize: 2 });
    const out = join(t.path, "e");
    expect(await cli("--checkpoint_dir", ckpt, "--output_dir", out, "--max_num_tokens", "32")).toBe(0);
    errors.mockClear();
    const input = join(fixture("llama"), "reference.safetensors");
    expect(await runCli(trtllm, ["run", "--engine_dir", out, "--input_file", input])).toBe(1);
    expect(logged()).toContain("2 ranks");
  });
});
