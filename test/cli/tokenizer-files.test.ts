/**
 * Self-contained artifacts: convert / quantize copy the model's tokenizer files (and
 * generation_config.json) into the checkpoint, trtllm-build passes them on to the engine directory,
 * `--tokenizer_dir` overrides the source, and a named directory without a tokenizer is TOK_MISSING_FILE.
 * Builds use the fake backend (no GPU).
 */
import { afterEach, beforeEach, describe, expect, test } from "bun:test";
import { existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../../cli/_main.ts";
import { main as build } from "../../cli/commands/build.ts";
import { main } from "../../cli/trtllm.ts";
import { buildCheckpoint, convertCheckpoint, quantize } from "../../src/index.ts";
import { captureCli } from "./_capture.ts";
import { expectCode, fixture, SHARED, tempDir } from "../helpers.ts";

const PYCODE = join(SHARED, "models/tiny-pycode");
const TOK = ["tokenizer.json", "tokenizer_config.json", "generation_config.json"];
const io = captureCli();
const cli = (...args: string[]) => runCli(main, [...args, "--log_level", "error"]);
const saved = process.env.TRTB_BUILD_BACKEND;
beforeEach(() => { process.env.TRTB_BUILD_BACKEND = "fake"; });
afterEach(() => {
  if (saved === undefined) delete process.env.TRTB_BUILD_BACKEND;
  else process.env.TRTB_BUILD_BACKEND = saved;
});

const same = (a: string, b: string) => readFileSync(a).equals(readFileSync(b));

describe("tokenizer files travel with checkpoints and engines", () => {
  test("convert → checkpoint → trtllm-build → engine: each directory has the tokenizer", async () => {
    using d = tempDir();
    const ckpt = join(d.path, "ckpt");
    const engine = join(d.path, "engine");
    expect(await cli("convert", "--model_dir", PYCODE, "--output_dir", ckpt)).toBe(0);
    for (const f of TOK) expect(same(join(ckpt, f), join(PYCODE, f))).toBe(true);
    expect(await runCli(build, ["--checkpoint_dir", ckpt, "--output_dir", engine, "--max_batch_size", "2", "--max_num_tokens", "64", "--log_level", "error"])).toBe(0);
    for (const f of TOK) expect(same(join(engine, f), join(PYCODE, f))).toBe(true);
    expect(io.errors).not.toHaveBeenCalled();
  });

  test("--tokenizer_dir overrides; stale tokenizer files of an earlier model are removed", async () => {
    using d = tempDir();
    const ckpt = join(d.path, "ckpt");
    mkdirSync(ckpt);
    writeFileSync(join(ckpt, "tokenizer.model"), "stale");
    // tiny-llama has no tokenizer: take tiny-pycode's
    const r = await convertCheckpoint({ modelDir: fixture("llama"), outputDir: ckpt, tokenizerDir: PYCODE });
    expect(r.tokenizerFiles).toEqual(TOK);
    expect(existsSync(join(ckpt, "tokenizer.model"))).toBe(false);
    expect(same(join(ckpt, "tokenizer.json"), join(PYCODE, "tokenizer.json"))).toBe(true);
    const q = join(d.path, "q");
    expect((await quantize(PYCODE, q, { quant_algo: "W8A16" })).tokenizerFiles).toEqual(TOK);
    const none = join(d.path, "none");
    expect((await convertCheckpoint({ modelDir: PYCODE, outputDir: none, tokenizerDir: false })).tokenizerFiles).toEqual([]);
    const engine = join(d.path, "engine");
    await buildCheckpoint({ checkpointDir: none, outputDir: engine, buildConfig: { max_batch_size: 1, max_num_tokens: 64 }, tokenizerDir: PYCODE });
    for (const f of TOK) expect(existsSync(join(engine, f))).toBe(true);
  });

  test("a --tokenizer_dir without a tokenizer is TOK_MISSING_FILE, before anything is written", async () => {
    using d = tempDir();
    const out = join(d.path, "ckpt");
    let err: unknown;
    await convertCheckpoint({ modelDir: PYCODE, outputDir: out, tokenizerDir: d.path }).catch((e) => { err = e; });
    expectCode(() => { throw err; }, "TOK_MISSING_FILE", /no tokenizer\.json/);
    expect(existsSync(join(out, "config.json"))).toBe(false);
    expect(await cli("quantize", "--model_dir", PYCODE, "--output_dir", out, "--qformat", "int8_wo", "--tokenizer_dir", d.path)).toBe(1);
    expect(io.logged()).toContain("no tokenizer.json");
  });
});
