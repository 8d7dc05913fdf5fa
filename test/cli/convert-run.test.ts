import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../../cli/_main.ts";
import { main } from "../../cli/trtllm.ts";
import { SafetensorsWriter } from "../../src/format/safetensors.ts";
import { captureCli } from "./_capture.ts";
import { asF32, asI32, fixture, readRaw, relMaxErr, tempDir } from "../helpers.ts";
import { LOGITS_REL_TOL } from "../runtime/reference.ts";

const io = captureCli();
const { printed, logged } = io;
const cli = (...args: string[]) => runCli(main, [...args, "--log_level", "error"]);

describe("trtllm convert + run", () => {
  test("convert tp=2 pp=2, then run reproduces the reference logits and greedy ids", async () => {
    using out = tempDir();
    const ckpt = join(out.path, "ckpt");
    expect(await cli("convert", "--model_dir", fixture("qwen2"), "--output_dir", ckpt, "--tp_size", "2", "--pp_size", "2")).toBe(0);
    expect(["config.json", "rank0.safetensors", "rank3.safetensors"].every((f) => existsSync(join(ckpt, f)))).toBe(true);

    // The reference's input_ids as the input file.
    const ref = readRaw(join(fixture("qwen2"), "reference.safetensors"));
    const input = join(out.path, "in.safetensors");
    const w = SafetensorsWriter.create(input, [{ name: "input_ids", dtype: "I32", shape: [2, 12] }]);
    w.write("input_ids", ref.get("input_ids")!.bytes);
    w.commit();
    const outFile = join(out.path, "out.safetensors");
    expect(await cli("run", "--checkpoint_dir", ckpt, "--input_file", input, "--output_logits", outFile, "--max_new_tokens", "8")).toBe(0);
    const got = readRaw(outFile);
    expect(got.get("logits")!.shape).toEqual([2, 12, 256]);
    expect(relMaxErr(asF32(got.get("logits")!), asF32(ref.get("logits")!))).toBeLessThanOrEqual(LOGITS_REL_TOL);
    expect(got.get("output_ids")!.shape).toEqual([2, 20]);
    expect(Array.from(asI32(got.get("output_ids")!)).slice(0, 20)).toEqual(Array.from(asI32(ref.get("greedy_ids")!)));
    expect(printed()).toContain(Array.from(asI32(ref.get("greedy_ids")!)).slice(12).join(" "));
    expect(io.errors).not.toHaveBeenCalled();
  });

  test("convert --meta_ckpt_dir", async () => {
    using out = tempDir();
    expect(await cli("convert", "--meta_ckpt_dir", fixture("llama-meta-mp2"), "--output_dir", out.path, "--tp_size", "2")).toBe(0);
    expect(JSON.parse(readFileSync(join(out.path, "config.json"), "utf8")).mapping.tp_size).toBe(2);
  });

  test("bad flags and inputs: exit 1 with one clear message", async () => {
    using out = tempDir();
    const cases: [string[], string][] = [
      [["convert", "--output_dir", out.path], "give --model_dir"],
      [["convert", "--model_dir", fixture("llama"), "--output_dir", out.path, "--tp_size", "zero"], "--tp_size must be an integer"],
      [["convert", "--model_dir", fixture("llama"), "--output_dir", out.path, "--tp_size", "4"], "not divisible by tp_size (4)"],
      [["convert", "--model_dir", join(out.path, "nope"), "--output_dir", out.path], "config.json: not found"],
      [["run", "--checkpoint_dir", out.path, "--input_file", join(out.path, "x.safetensors")], "x.safetensors"],
    ];
    for (const [args, msg] of cases) {
      io.errors.mockClear();
      expect(await cli(...args)).toBe(1);
      expect(io.errors).toHaveBeenCalledTimes(1);
      expect(logged()).toContain(msg);
      expect(typeof io.errors.mock.calls[0]![0]).toBe("string"); // no stack without --verbose
    }
    expect(existsSync(join(out.path, "config.json"))).toBe(false);
  });

  test("--help explains every flag", async () => {
    expect(await cli("convert", "--help")).toBe(0);
    const help = printed();
    for (const f of ["--model_dir", "--meta_ckpt_dir", "--output_dir", "--dtype", "--tp_size", "--pp_size", "--workers", "--use_parallel_embedding", "--verbose"]) expect(help).toContain(f);
  });
});
