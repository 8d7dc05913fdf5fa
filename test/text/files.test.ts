/** src/text/files.ts: the tokenizer files present are copied (and only those), atomically, and load from the copy. */
import { describe, expect, test } from "bun:test";
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { copyTokenizerFiles, listTokenizerFiles, loadTokenizer, TOKENIZER_FILES } from "../../src/text/index.ts";
import { SHARED, bytesEqual, expectCode, tempDir } from "../helpers.ts";

const PYCODE = join(SHARED, "models/tiny-pycode");

describe("copyTokenizerFiles", () => {
  test("tiny-pycode: copies the three tokenizer files, not the weights", () => {
    using d = tempDir();
    expect(listTokenizerFiles(PYCODE)).toEqual(["tokenizer.json", "tokenizer_config.json", "generation_config.json"]);
    const dst = join(d.path, "engine");
    expect(copyTokenizerFiles(PYCODE, dst)).toEqual(["tokenizer.json", "tokenizer_config.json", "generation_config.json"]);
    expect(readdirSync(dst).sort()).toEqual(["generation_config.json", "tokenizer.json", "tokenizer_config.json"]);
    for (const f of readdirSync(dst)) expect(bytesEqual(readFileSync(join(dst, f)), readFileSync(join(PYCODE, f)))).toBe(true);
    expect(loadTokenizer(dst).encode("Hello, world!")).toEqual(loadTokenizer(PYCODE).encode("Hello, world!"));
  });

  test("every known name, overwriting; nothing to copy gives []", () => {
    using d = tempDir();
    const src = join(d.path, "src");
    const dst = join(d.path, "dst");
    mkdirSync(src);
    mkdirSync(dst);
    expect(copyTokenizerFiles(src, dst)).toEqual([]);
    for (const f of TOKENIZER_FILES) writeFileSync(join(src, f), `new ${f}`);
    writeFileSync(join(src, "config.json"), "{}");
    writeFileSync(join(dst, "tokenizer.json"), "old");
    expect(copyTokenizerFiles(src, dst)).toEqual([...TOKENIZER_FILES]);
    expect(readFileSync(join(dst, "tokenizer.json"), "utf8")).toBe("new tokenizer.json");
    expect(readdirSync(dst).sort()).toEqual([...TOKENIZER_FILES].sort());
  });

  test("a destination that is a file is TOK_COPY", () => {
    using d = tempDir();
    const dst = join(d.path, "engine");
    writeFileSync(dst, "not a directory");
    expectCode(() => copyTokenizerFiles(PYCODE, dst), "TOK_COPY", /engine/);
  });
});
