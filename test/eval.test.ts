/**
 * src/eval.ts on a real trained model: tiny-pycode (a 5.8M-parameter Llama trained on Python),
 * converted to bf16 and quantized to W4A16, evaluated on its held-out text. The model against
 * itself gives KL = 0 exactly; the library's NLL equals one computed here from `forward` logits;
 * int4 loses to bf16; the window plan is llama-perplexity's; bad input has its own codes.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { convertCheckpoint } from "../src/convert.ts";
import { evaluate, type EvalResult, planWindows, readEvalStream } from "../src/eval.ts";
import { SafetensorsWriter } from "../src/format/safetensors.ts";
import { quantize } from "../src/quantize.ts";
import { loadCpuRunner } from "../src/runtime/index.ts";
import { loadTokenizer } from "../src/text/index.ts";
import { expectCode, expectCodeAsync, fixture, SHARED, tempDir } from "./helpers.ts";

const PYCODE = join(SHARED, "models/tiny-pycode");
const HELDOUT = join(PYCODE, "heldout-public.py.txt");
/** Few short windows keep the file at a few seconds on a 2-core CPU (~100–170 tok/s). */
const WINDOW = 128;
const WINDOWS = 2;
/**
 * TRAINING.json: transformers fp32 ppl of this model on the first 64 windows of 512 of the same
 * file is 9.08. Two windows of 128 (63 scored tokens each, 65–127 tokens of context) are a much
 * smaller and shorter-context sample: a factor of ~2 either way.
 */
const PPL_SANE: [number, number] = [5, 20];
/** The library and this file both sum float64 log-softmaxes; only the summation order may differ. */
const NLL_TOL = 1e-12;

function writeIds(file: string, ids: number[], shape: number[], dtype: "I32" | "I64" = "I32"): void {
  const w = SafetensorsWriter.create(file, [{ name: "input_ids", dtype, shape }]);
  const bytes = dtype === "I32" ? new Uint8Array(Int32Array.from(ids).buffer) : new Uint8Array(BigInt64Array.from(ids.map(BigInt)).buffer);
  w.write("input_ids", bytes);
  w.commit();
}

/** −log softmax(row)[target], computed plainly in float64. */
function nllOf(row: Float32Array, target: number): number {
  let m = -Infinity;
  for (const x of row) m = Math.max(m, x);
  let s = 0;
  for (const x of row) s += Math.exp(x - m);
  return -(row[target]! - m - Math.log(s));
}

const tmp = tempDir("trtb-eval-");
const BF16 = join(tmp.path, "bf16");
const INT4 = join(tmp.path, "int4");
/** Converted without its tokenizer files (convert copies them by default). */
const BARE = join(tmp.path, "bare");
let heldIds: number[];
let self: EvalResult;

beforeAll(async () => {
  await convertCheckpoint({ modelDir: PYCODE, outputDir: BF16, dtype: "bfloat16" });
  await convertCheckpoint({ modelDir: PYCODE, outputDir: BARE, dtype: "bfloat16", tokenizerDir: false });
  await quantize(PYCODE, INT4, { quant_algo: "W4A16" }, { dtype: "bfloat16" });
  heldIds = loadTokenizer(PYCODE).encode(readFileSync(HELDOUT, "utf8"), { addSpecialTokens: false });
});
afterAll(() => tmp[Symbol.dispose]());

describe("evaluate", () => {
  test("bf16 against itself: KL 0 exactly, top-1 1, no divergence; ppl in a sane range", async () => {
    self = await evaluate({ model: BF16, reference: BF16, data: HELDOUT, window: WINDOW, maxWindows: WINDOWS, tokenizerDir: PYCODE });
    expect(self.kl).toEqual({ mean: 0, p99: 0, max: 0 });
    expect(self.top1Agreement).toBe(1);
    expect(self.firstGreedyDivergence).toBeNull();
    expect(self.referencePpl).toBe(self.ppl);
    expect(self.ppl).toBeGreaterThan(PPL_SANE[0]);
    expect(self.ppl).toBeLessThan(PPL_SANE[1]);
    expect(self.ppl).toBeCloseTo(Math.exp(self.nll), 12);
    expect(self.convention).toMatchObject({
      window: WINDOW, stride: WINDOW, windows: WINDOWS, scoredPerWindow: 63, firstScoredPosition: 65, tokensScored: WINDOWS * 63, bos: 1, bosMode: "auto",
      stream: { format: "txt", tokens: heldIds.length, documents: 1, separator: null },
    });
    expect(self.convention.summary).toContain("BOS <|bos|> (id 1) replaces token 0 of each window");
    expect(self.tokens).toBe(heldIds.length);
    expect(self.tokensPerSecond).toBeGreaterThan(0);
    expect(self.model.kind).toBe("checkpoint");
  });

  test("int4_wo (W4A16) against bf16: KL > 0, ppl above bf16's, greedy parts somewhere", async () => {
    const r = await evaluate({ model: INT4, reference: BF16, data: HELDOUT, window: WINDOW, maxWindows: WINDOWS, tokenizerDir: PYCODE });
    expect(r.referencePpl).toBe(self.ppl); // the same bf16 windows, the same figure
    expect(r.ppl).toBeGreaterThan(r.referencePpl!);
    const kl = r.kl!;
    expect(kl.mean).toBeGreaterThan(0);
    expect(kl.mean).toBeLessThanOrEqual(kl.p99);
    expect(kl.p99).toBeLessThanOrEqual(kl.max);
    expect(r.top1Agreement).toBeLessThan(1);
    expect(r.top1Agreement).toBeGreaterThan(0.5);
    const d = r.firstGreedyDivergence!;
    expect(d.position).toBeGreaterThanOrEqual(r.convention.firstScoredPosition);
    expect(d.position).toBeLessThan(WINDOW);
    expect(d.streamIndex).toBe(d.window * WINDOW + d.position);
    expect(d.referenceToken).not.toBe(d.candidateToken);
  });

  test("the NLL equals one computed from forward() logits (ids file [2, 10], window 8, stride 4, BOS on / off)", async () => {
    const ids = heldIds.slice(0, 20);
    const file = join(tmp.path, "ids.safetensors");
    writeIds(file, ids, [2, 10], "I64");
    const runner = await loadCpuRunner(BF16);
    // window 8, stride 4: windows at 0, 4, 8, 12; each scores its last min(4, 8-1-4) = 3 tokens.
    const hand = (bos: number | null) => {
      let sum = 0;
      let n = 0;
      for (let k = 0; k < 4; k++) {
        const w = ids.slice(4 * k, 4 * k + 8);
        if (bos !== null) w[0] = bos;
        const logits = runner.forward(w);
        for (let j = 5; j < 8; j++, n++) sum += nllOf(logits.subarray((j - 1) * 4096, j * 4096), ids[4 * k + j]!);
      }
      return sum / n;
    };
    const on = await evaluate({ model: BF16, data: file, window: 8, stride: 4, tokenizerDir: PYCODE });
    expect(on.convention).toMatchObject({ windows: 4, windowsAvailable: 4, scoredPerWindow: 3, firstScoredPosition: 5, tokensScored: 12, bos: 1, stream: { format: "safetensors", tokens: 20, documents: 2 } });
    expect(Math.abs(on.nll - hand(1))).toBeLessThanOrEqual(NLL_TOL);
    // Without a tokenizer, auto means no BOS: the windows go in as they are.
    const off = await evaluate({ model: BARE, data: file, window: 8, stride: 4 });
    expect(off.convention.bos).toBeNull();
    expect(off.tokenizerDir).toBeNull();
    expect(Math.abs(off.nll - hand(null))).toBeLessThanOrEqual(NLL_TOL);
    const off2 = await evaluate({ model: BF16, data: file, window: 8, stride: 4, bos: false, tokenizerDir: PYCODE });
    expect(off2.nll).toBe(off.nll);
  });
});

describe("planWindows", () => {
  test("stride = window is llama-perplexity's: the last window/2 − 1 tokens of each chunk", () => {
    expect(planWindows(95391, 512, 512, undefined, "f")).toEqual({ window: 512, stride: 512, windows: 186, windowsAvailable: 186, scoredPerWindow: 255, firstScoredPosition: 257 });
    expect(planWindows(95391, 512, 512, 64, "f").windows).toBe(64);
    expect(planWindows(3, 3, 3, undefined, "f")).toMatchObject({ windows: 1, scoredPerWindow: 1, firstScoredPosition: 2 });
  });

  test("stride ≤ window/2 − 1: the scored spans of consecutive windows tile the stream", () => {
    const p = planWindows(100, 16, 5, undefined, "f");
    expect(p).toMatchObject({ windows: 17, scoredPerWindow: 5, firstScoredPosition: 11 });
    const covered: number[] = [];
    for (let k = 0; k < p.windows; k++) for (let j = p.firstScoredPosition; j < p.window; j++) covered.push(k * p.stride + j);
    expect(covered).toEqual(Array.from({ length: covered.length }, (_, i) => p.firstScoredPosition + i));
  });
});

describe("readEvalStream", () => {
  test(".jsonl: {text} documents joined by EOS, blank lines skipped; {messages} need a chat template", () => {
    const tok = loadTokenizer(PYCODE);
    const file = join(tmp.path, "docs.jsonl");
    writeFileSync(file, `{"text": "def f(x):\\n    return x\\n"}\n\n{"text": ""}\n{"text": "import os\\n"}\n`);
    const s = readEvalStream(file, tok);
    const a = tok.encode("def f(x):\n    return x\n", { addSpecialTokens: false });
    const b = tok.encode("import os\n", { addSpecialTokens: false });
    expect(s).toEqual({ ids: [...a, 2, ...b], format: "jsonl", documents: 2, separator: 2 });
    writeFileSync(file, `{"text": "x = 1"}\n{"messages": [{"role": "user", "content": "hi"}]}\n`);
    expectCode(() => readEvalStream(file, tok), "TOK_NO_CHAT_TEMPLATE", /docs\.jsonl:2: /);
  });
});

describe("bad input", () => {
  const ev = (data: string, more: Partial<Parameters<typeof evaluate>[0]> = {}) => evaluate({ model: BF16, data, tokenizerDir: PYCODE, window: 8, ...more });

  test("data files: missing, empty, no text, unknown format, malformed, too short, ids outside the vocabulary", async () => {
    const p = (name: string) => join(tmp.path, name);
    await expectCodeAsync(ev(p("nope.txt")), "EVAL_DATA_MISSING", /nope\.txt: no such file/);
    mkdirSync(p("dir.txt"));
    await expectCodeAsync(ev(p("dir.txt")), "EVAL_DATA_MISSING", /dir\.txt: not a file/);
    writeFileSync(p("empty.txt"), "");
    await expectCodeAsync(ev(p("empty.txt")), "EVAL_DATA_EMPTY", /empty\.txt: empty \(0 bytes\)/);
    writeFileSync(p("blank.txt"), " \n\t\n");
    await expectCodeAsync(ev(p("blank.txt")), "EVAL_DATA_EMPTY", /blank\.txt: no text \(4 whitespace/);
    writeFileSync(p("blank.jsonl"), `{"text": ""}\n\n{"text": ""}\n`);
    await expectCodeAsync(ev(p("blank.jsonl")), "EVAL_DATA_EMPTY", /blank\.jsonl: no usable text \(2 non-blank line/);
    writeFileSync(p("bad.jsonl"), `{"text": "a"}\n{"text": 3}\n`);
    await expectCodeAsync(ev(p("bad.jsonl")), "EVAL_DATA_INVALID", /bad\.jsonl:2: expected an object with "text"/);
    writeFileSync(p("bad2.jsonl"), `{"text": "a"}\nnot json\n`);
    await expectCodeAsync(ev(p("bad2.jsonl")), "EVAL_DATA_INVALID", /bad2\.jsonl:2: not valid JSON/);
    writeFileSync(p("data.csv"), "a,b\n");
    await expectCodeAsync(ev(p("data.csv")), "EVAL_DATA_INVALID", /data\.csv: unknown data format "\.csv"/);
    writeFileSync(p("short.txt"), "x = 1\n");
    await expectCodeAsync(ev(p("short.txt"), { window: 512 }), "EVAL_TOO_SHORT", /short\.txt: \d+ tokens, fewer than one window of 512/);
    writeIds(p("big.safetensors"), [1, 2, 3, 4, 5000, 6, 7, 8], [8]);
    await expectCodeAsync(ev(p("big.safetensors")), "EVAL_DATA_INVALID", /big\.safetensors: token 4 is id 5000, outside the model's vocabulary \[0, 4096\)/);
    const w = SafetensorsWriter.create(p("noids.safetensors"), [{ name: "tokens", dtype: "I32", shape: [8] }]);
    w.write("tokens", new Uint8Array(32));
    w.commit();
    await expectCodeAsync(ev(p("noids.safetensors")), "EVAL_DATA_INVALID", /noids\.safetensors: no tensor named input_ids/);
  });

  test("models, tokenizer and options", async () => {
    await expectCodeAsync(ev(HELDOUT, { model: BARE, tokenizerDir: undefined }), "EVAL_NO_TOKENIZER", new RegExp(`no tokenizer\\.json in ${BARE}: pass tokenizerDir`));
    await expectCodeAsync(ev(HELDOUT, { model: PYCODE }), "EVAL_NOT_MODEL", /tiny-pycode: config\.json but no rank0\.safetensors: not a TRT-LLM checkpoint \(a Hugging Face model directory\?/);
    await expectCodeAsync(ev(HELDOUT, { model: tmp.path }), "EVAL_NOT_MODEL", /neither an engine directory \(rank0\.engine\) nor a TRT-LLM checkpoint/);
    await expectCodeAsync(ev(HELDOUT, { reference: join(tmp.path, "none") }), "EVAL_NOT_MODEL", /none: not a directory/);
    await expectCodeAsync(ev(HELDOUT, { stride: 9 }), "EVAL_BAD_OPTION", /stride must be an integer in 1 … window \(8\), got 9/);
    await expectCodeAsync(ev(HELDOUT, { window: 2 }), "EVAL_BAD_OPTION", /window must be an integer ≥ 3, got 2/);
    await expectCodeAsync(ev(HELDOUT, { maxWindows: 0 }), "EVAL_BAD_OPTION", /maxWindows must be an integer ≥ 1/);
    await expectCodeAsync(ev(HELDOUT, { window: 2048 }), "EVAL_BAD_OPTION", /window 2048 exceeds .*bf16's context of 1024 tokens/);
    const other = join(tmp.path, "llama-fixture");
    await convertCheckpoint({ modelDir: fixture("llama"), outputDir: other });
    await expectCodeAsync(ev(HELDOUT, { reference: other }), "EVAL_VOCAB_MISMATCH", /vocabulary of \d+ tokens, .* has 4096: KL needs the same vocabulary/);
  });
});
