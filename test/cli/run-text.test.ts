/**
 * `trtllm run` with text on tiny-pycode converted to a checkpoint (CPU reference runner): the greedy
 * continuations of TRAINING.json's samples token for token, ids mode against reference.safetensors'
 * greedy_ids, --streaming, .txt / .jsonl prompt files, --output_json, a checkpoint copied alone to
 * another directory, and clear errors for bad input. Newlines reach --input_text as real newlines
 * (argv), which is what a shell passes for $'…'; the text is never unescaped.
 */
import { afterAll, beforeAll, describe, expect, spyOn, test } from "bun:test";
import { cpSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { runCli } from "../../cli/_main.ts";
import { main } from "../../cli/trtllm.ts";
import { convertCheckpoint } from "../../src/convert.ts";
import { SafetensorsWriter } from "../../src/format/safetensors.ts";
import { loadTokenizer } from "../../src/text/index.ts";
import { captureCli } from "./_capture.ts";
import { asI32, readRaw, SHARED, tempDir } from "../helpers.ts";

const PYCODE = join(SHARED, "models/tiny-pycode");
const SAMPLES = JSON.parse(readFileSync(join(PYCODE, "TRAINING.json"), "utf8")).samples as Record<string, string>;
const io = captureCli();
const cli = (...args: string[]) => runCli(main, [...args, "--log_level", "error"]);

const work = tempDir("trtb-run-text-");
const ckpt = join(work.path, "ckpt");
beforeAll(async () => {
  await convertCheckpoint({ modelDir: PYCODE, outputDir: ckpt });
});
afterAll(() => work[Symbol.dispose]());

describe("trtllm run --input_text (CPU)", () => {
  test("prints exactly the greedy continuation of each TRAINING.json sample; --output_json has the ids", async () => {
    const prompts = Object.keys(SAMPLES);
    const json = join(work.path, "out.json");
    expect(await cli("run", "--checkpoint_dir", ckpt, "--input_text", prompts[1]!, "--max_new_tokens", "60")).toBe(0);
    expect(io.printed()).toBe(SAMPLES[prompts[1]!]!);
    io.stdout.mockClear();
    expect(await cli("run", "--checkpoint_dir", ckpt, ...prompts.flatMap((p) => ["--input_text", p]), "--max_new_tokens", "60", "--output_json", json)).toBe(0);
    expect(io.printed()).toBe(prompts.map((p, i) => `[${i}] ${SAMPLES[p]}`).join("\n"));
    const tok = loadTokenizer(PYCODE);
    const rows = JSON.parse(readFileSync(json, "utf8")) as { prompt: string; text: string; token_ids: number[]; finish_reason: string; prompt_tokens: number }[];
    rows.forEach((r, i) => {
      expect(r.prompt).toBe(prompts[i]!);
      expect(r.prompt + r.text).toBe(SAMPLES[prompts[i]!]!);
      expect([...tok.encode(r.prompt), ...r.token_ids]).toEqual(tok.encode(SAMPLES[prompts[i]!]!));
      expect(r.finish_reason).toBe("length");
    });
    expect(io.errors).not.toHaveBeenCalled();
  });

  test("ids mode still works: output_ids equal reference.safetensors' greedy_ids", async () => {
    const ref = readRaw(join(PYCODE, "reference.safetensors"));
    const input = join(work.path, "in.safetensors");
    const w = SafetensorsWriter.create(input, [{ name: "input_ids", dtype: "I32", shape: [1, 64] }]);
    w.write("input_ids", ref.get("input_ids")!.bytes.subarray(0, 64 * 4));
    w.commit();
    const out = join(work.path, "ids-out.safetensors");
    expect(await cli("run", "--checkpoint_dir", ckpt, "--input_file", input, "--max_new_tokens", "32", "--output_logits", out)).toBe(0);
    expect(Array.from(asI32(readRaw(out).get("output_ids")!))).toEqual(Array.from(asI32(ref.get("greedy_ids")!)));
  });

  test("--streaming writes deltas that add up to the text; .txt and .jsonl prompt files; --stop", async () => {
    const prompt = Object.keys(SAMPLES)[0]!;
    const writes: string[] = [];
    const spy = spyOn(process.stdout, "write").mockImplementation((s: string | Uint8Array) => (writes.push(String(s)), true));
    try {
      expect(await cli("run", "--checkpoint_dir", ckpt, "--input_text", prompt, "--max_new_tokens", "60", "--streaming")).toBe(0);
    } finally {
      spy.mockRestore();
    }
    expect(writes.length).toBeGreaterThan(10);
    expect(writes.join("")).toBe(`${SAMPLES[prompt]}\n`);

    const txt = join(work.path, "p.txt");
    writeFileSync(txt, "def fibonacci(n):\n\nclass Foo\n");
    io.stdout.mockClear();
    expect(await cli("run", "--checkpoint_dir", ckpt, "--input_file", txt, "--max_new_tokens", "8")).toBe(0);
    expect(io.printed()).toMatch(/^\[0\] def fibonacci\(n\):[^]*\n\[1\] class Foo/);
    const jsonl = join(work.path, "p.jsonl");
    writeFileSync(jsonl, `${JSON.stringify({ text: prompt })}\n`);
    io.stdout.mockClear();
    expect(await cli("run", "--checkpoint_dir", ckpt, "--input_file", jsonl, "--max_new_tokens", "60", "--stop", "fibon_carima")).toBe(0);
    expect(io.printed()).toBe(`${prompt}#     return `);
  });

  test("a checkpoint copied alone to another directory still runs text", async () => {
    using other = tempDir();
    const copy = join(other.path, "moved");
    cpSync(ckpt, copy, { recursive: true });
    const prompt = Object.keys(SAMPLES)[2]!;
    expect(await cli("run", "--checkpoint_dir", copy, "--input_text", prompt, "--max_new_tokens", "60")).toBe(0);
    expect(io.printed()).toBe(SAMPLES[prompt]!);
  });

  test("bad input: one clear message each, exit 1", async () => {
    using d = tempDir();
    const bare = join(d.path, "bare");
    await convertCheckpoint({ modelDir: PYCODE, outputDir: bare, tokenizerDir: false });
    // tiny-pycode with 16 positions
    const hf = join(d.path, "short");
    cpSync(PYCODE, hf, { recursive: true, filter: (s) => !s.endsWith("safetensors") });
    symlinkSync(join(PYCODE, "model.safetensors"), join(hf, "model.safetensors"));
    const cfg = JSON.parse(readFileSync(join(hf, "config.json"), "utf8"));
    writeFileSync(join(hf, "config.json"), JSON.stringify({ ...cfg, max_position_embeddings: 16 }));
    const short = join(d.path, "short-ckpt");
    await convertCheckpoint({ modelDir: hf, outputDir: short });
    const bad = join(d.path, "bad.jsonl");
    writeFileSync(bad, '{"prompt": "x"}\n');
    const cases: [string[], string][] = [
      [["--checkpoint_dir", bare, "--input_text", "x"], "tokenizer.json: not found"],
      [["--checkpoint_dir", ckpt, "--input_text", ""], "prompt 0 is empty"],
      [["--checkpoint_dir", ckpt, "--input_text", "x", "--chat"], "no chat template"],
      [["--checkpoint_dir", short, "--input_text", "x = 1 + 2 + 3 + 4 + 5 + 6 + 7 + 8 + 9"], "longer than the model's max_position_embeddings 16"],
      [["--checkpoint_dir", ckpt, "--input_file", bad], 'bad.jsonl:1: expected {"text"'],
      [["--checkpoint_dir", ckpt, "--input_file", join(d.path, "p.csv")], "--input_file takes .safetensors"],
      [["--checkpoint_dir", ckpt, "--input_text", "x", "--system", "s"], "--system needs --chat"],
      [["--checkpoint_dir", ckpt], "give --input_text"],
      [["--checkpoint_dir", ckpt, "--input_text", "x", "--top_p", "0"], "topP must be in (0, 1]"],
    ];
    for (const [args, msg] of cases) {
      io.errors.mockClear();
      expect(await cli("run", ...args)).toBe(1);
      expect(io.errors).toHaveBeenCalledTimes(1);
      expect(io.logged()).toContain(msg);
    }
  });
});
