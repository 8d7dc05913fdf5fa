/**
 * `trtllm eval`: the convention line and figures on stdout, `--json` that parses (and equals
 * `--output_json`'s file), and one clear message for bad flags. tiny-pycode, windows of 16 tokens.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../../cli/_main.ts";
import { main } from "../../cli/trtllm.ts";
import { convertCheckpoint } from "../../src/convert.ts";
import type { EvalResult } from "../../src/eval.ts";
import { captureCli } from "./_capture.ts";
import { SHARED, tempDir } from "../helpers.ts";

const PYCODE = join(SHARED, "models/tiny-pycode");
const HELDOUT = join(PYCODE, "heldout-public.py.txt");
const io = captureCli();
const { printed, logged } = io;
const cli = (...args: string[]) => runCli(main, [...args, "--log_level", "error"]);

const tmp = tempDir("trtb-cli-eval-");
const CKPT = join(tmp.path, "ckpt");
beforeAll(async () => {
  // Without its tokenizer files, so the "no tokenizer" message can be checked.
  await convertCheckpoint({ modelDir: PYCODE, outputDir: CKPT, dtype: "bfloat16", tokenizerDir: false });
});
afterAll(() => tmp[Symbol.dispose]());

describe("trtllm eval", () => {
  const base = ["eval", "--checkpoint_dir", CKPT, "--dataset", HELDOUT, "--tokenizer_dir", PYCODE, "--window", "16", "--max_windows", "2"];

  test("text: the convention line first, then ppl and the comparison", async () => {
    expect(await cli(...base, "--reference", CKPT)).toBe(0);
    expect(io.errors).not.toHaveBeenCalled();
    const lines = printed().split("\n");
    expect(lines[0]).toStartWith("convention: window 16, stride 16: 2 of ");
    expect(lines[0]).toContain("each window scores its last 7 tokens (positions 9…15, each from the logits one position before) → 14 tokens scored");
    expect(printed()).toMatch(/^ppl {8}\d+\.\d{4} /m);
    expect(printed()).toContain("KL(ref‖model)  mean 0.0000e+0  p99 0.0000e+0  max 0.0000e+0");
    expect(printed()).toContain("top-1 agreement  100.00%");
    expect(printed()).toContain("first greedy divergence  none");
  });

  test("--json parses and equals --output_json's file", async () => {
    const file = join(tmp.path, "out", "eval.json");
    expect(await cli(...base, "--json", "--output_json", file, "--bos", "off")).toBe(0);
    const got = JSON.parse(printed()) as EvalResult;
    expect(got.convention).toMatchObject({ window: 16, stride: 16, windows: 2, tokensScored: 14, bos: null, bosMode: false });
    expect(got.ppl).toBeCloseTo(Math.exp(got.nll), 12);
    expect(got.kl).toBeUndefined();
    expect(JSON.parse(readFileSync(file, "utf8"))).toEqual(got);
  });

  test("bad flags: one message, exit 1", async () => {
    const cases: [string[], string][] = [
      [["eval", "--dataset", HELDOUT], "give --checkpoint_dir (CPU reference runner) or --engine_dir (GPU engine)"],
      [["eval", "--checkpoint_dir", CKPT, "--engine_dir", CKPT, "--dataset", HELDOUT], "give only one of"],
      [[...base, "--bos", "maybe"], "--bos must be one of auto, on, off"],
      [[...base, "--stride", "0"], "--stride must be an integer ≥ 1"],
      [["eval", "--checkpoint_dir", CKPT, "--dataset", HELDOUT], "pass tokenizerDir (--tokenizer_dir)"],
    ];
    for (const [args, msg] of cases) {
      io.errors.mockClear();
      expect(await cli(...args)).toBe(1);
      expect(logged()).toContain(msg);
    }
  });
});
