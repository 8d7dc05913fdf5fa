/**
 * Calibration data and bad input: .txt / .jsonl (text and chat messages) / input_ids .safetensors
 * are read as documented (src/calib/data.ts); a missing, empty or textless file, calib_size larger
 * than the data, no dataset for a calibrated format, and a calibrated format on a MoE model each
 * fail with their code and nothing is written.
 */
import { describe, expect, test } from "bun:test";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { readCalibData } from "../../src/calib/data.ts";
import { isTrtbError } from "../../src/errors.ts";
import { SafetensorsWriter } from "../../src/format/safetensors.ts";
import { quantize } from "../../src/quantize.ts";
import { loadTokenizer } from "../../src/text/index.ts";
import { fixture, SHARED, tempDir } from "../helpers.ts";

const MODEL = join(SHARED, "models/tiny-pycode");
const tok = loadTokenizer(MODEL);
const V = 4096;
const codeOf = (f: () => unknown) => { try { f(); return "none"; } catch (e) { return isTrtbError(e) ? e.code : String(e); } };
const codeOfAsync = (p: Promise<unknown>) => p.then(() => "none", (e) => (isTrtbError(e) ? e.code : String(e)));

describe("reading calibration data", () => {
  test(".txt is cut into chunks of calib_max_seq_length; the first calib_size are taken", () => {
    using d = tempDir();
    const f = join(d.path, "c.txt");
    writeFileSync(f, "def f(x):\n    return x + 1\n".repeat(50));
    const all = tok.encode("def f(x):\n    return x + 1\n".repeat(50), { addSpecialTokens: false });
    const c = readCalibData({ dataset: f, calibSize: 3, calibMaxSeqLength: 16 }, tok, V);
    expect(c.sequences).toEqual([all.slice(0, 16), all.slice(16, 32), all.slice(32, 48)]);
    expect([c.tokens, c.format, c.calibSize, c.calibMaxSeqLength, c.seed]).toEqual([48, "txt", 3, 16, 1234]);
    expect(c.describe).toContain("the first 3 of");
  });
  test(".jsonl: one sample per line, truncated, empty ones skipped (tiny-pycode has no chat template: messages are covered by the tokenizer tests)", () => {
    using d = tempDir();
    const f = join(d.path, "c.jsonl");
    writeFileSync(f, `${JSON.stringify({ text: "import os\nprint(os.getcwd())\n" })}\n\n${JSON.stringify({ text: "" })}\n${JSON.stringify({ text: "x = [i for i in range(10)]" })}\n`);
    const c = readCalibData({ dataset: f, calibSize: 2, calibMaxSeqLength: 4 }, tok, V);
    const enc = (t: string) => tok.encode(t, { addSpecialTokens: false }).slice(0, 4);
    expect(c.sequences).toEqual([enc("import os\nprint(os.getcwd())\n"), enc("x = [i for i in range(10)]")]);
  });
  test("input_ids .safetensors: one sample per row", () => {
    using d = tempDir();
    const f = join(d.path, "ids.safetensors");
    const w = SafetensorsWriter.create(f, [{ name: "input_ids", dtype: "I32", shape: [2, 5] }]);
    w.write("input_ids", new Uint8Array(Int32Array.from([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]).buffer));
    w.commit();
    expect(readCalibData({ dataset: f, calibSize: 2, calibMaxSeqLength: 3 }, undefined, V).sequences).toEqual([[1, 2, 3], [6, 7, 8]]);
  });
  test("random ids are only used when asked for, and say so", () => {
    const c = readCalibData({ dataset: "random", calibSize: 2, calibMaxSeqLength: 8, seed: 7 }, undefined, V);
    expect(c.describe).toContain("RANDOM");
    expect(c.sequences.flat().every((id) => id >= 0 && id < V)).toBe(true);
    expect(readCalibData({ dataset: "random", calibSize: 2, calibMaxSeqLength: 8, seed: 7 }, undefined, V).sequences).toEqual(c.sequences);
  });
  test("bad files and options have their codes", () => {
    using d = tempDir();
    const empty = join(d.path, "e.txt");
    writeFileSync(empty, "");
    const blank = join(d.path, "b.txt");
    writeFileSync(blank, "  \n\n ");
    const textless = join(d.path, "t.jsonl");
    writeFileSync(textless, `${JSON.stringify({ text: "" })}\n\n${JSON.stringify({ text: "" })}\n`);
    const badJson = join(d.path, "j.jsonl");
    writeFileSync(badJson, "{not json\n");
    const small = join(d.path, "s.txt");
    writeFileSync(small, "print(1)\n".repeat(20));
    expect(codeOf(() => readCalibData({ dataset: join(d.path, "missing.txt") }, tok, V))).toBe("CALIB_DATA_MISSING");
    expect(codeOf(() => readCalibData({ dataset: d.path }, tok, V))).toBe("CALIB_DATA_MISSING");
    expect(codeOf(() => readCalibData({ dataset: empty }, tok, V))).toBe("CALIB_DATA_EMPTY");
    expect(codeOf(() => readCalibData({ dataset: blank }, tok, V))).toBe("CALIB_DATA_EMPTY");
    expect(codeOf(() => readCalibData({ dataset: textless }, tok, V))).toBe("CALIB_DATA_EMPTY");
    expect(codeOf(() => readCalibData({ dataset: badJson }, tok, V))).toBe("CALIB_DATA_INVALID");
    expect(codeOf(() => readCalibData({ dataset: small, calibSize: 1000, calibMaxSeqLength: 8 }, tok, V))).toBe("CALIB_TOO_SMALL");
    expect(codeOf(() => readCalibData({ dataset: small, calibSize: 1, calibMaxSeqLength: 100000 }, tok, V))).toBe("CALIB_DATA_EMPTY");
    expect(codeOf(() => readCalibData({ dataset: small, calibSize: 0 }, tok, V))).toBe("CALIB_BAD_OPTION");
    expect(codeOf(() => readCalibData({ dataset: small }, undefined, V))).toBe("CALIB_NO_TOKENIZER");
    expect(codeOf(() => readCalibData({ dataset: join(d.path, "x.csv") }, tok, V))).toBe("CALIB_DATA_MISSING");
  });
});

describe("quantize refuses what it cannot calibrate", () => {
  test("calibrated formats without data, missing files, MoE experts", async () => {
    using out = tempDir();
    using d = tempDir();
    writeFileSync(join(d.path, "c.txt"), "print(1)\n".repeat(200));
    for (const q of [{ quant_algo: "FP8" }, { quant_algo: "W8A8_SQ_PER_CHANNEL" }, { quant_algo: "W4A8_AWQ" }, { kv_cache_quant_algo: "INT8" }] as const)
      expect(await codeOfAsync(quantize(MODEL, out.path, q))).toBe("CALIB_NO_DATA");
    expect(await codeOfAsync(quantize(MODEL, out.path, { quant_algo: "FP8" }, { calibDataset: join(d.path, "nope.txt") }))).toBe("CALIB_DATA_MISSING");
    expect(await codeOfAsync(quantize(MODEL, out.path, { quant_algo: "FP8" }, { calibDataset: join(d.path, "c.txt"), calibSize: 10000, calibMaxSeqLength: 64 }))).toBe("CALIB_TOO_SMALL");
    expect(await codeOfAsync(quantize(fixture("mixtral"), out.path, { quant_algo: "FP8" }, { calibDataset: "random", calibSize: 1, calibMaxSeqLength: 4 }))).toBe("QUANT_UNSUPPORTED");
    expect(existsSync(join(out.path, "config.json"))).toBe(false);
  });
});
