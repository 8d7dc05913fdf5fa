/**
 * The tokenizer-related files of a model directory, and copying them into a checkpoint or engine
 * directory so that it can be run (and chatted with) on its own. Each file is copied to a temp file
 * beside its destination and renamed, so a reader never sees half a tokenizer.json.
 */
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join, resolve } from "node:path";
import { TrtbError } from "../errors.ts";

/** What `copyTokenizerFiles` copies, where present (transformers' names; sentencepiece and tiktoken vocabularies included). */
export const TOKENIZER_FILES: readonly string[] = [
  "tokenizer.json",
  "tokenizer_config.json",
  "special_tokens_map.json",
  "added_tokens.json",
  "chat_template.jinja",
  "chat_template.json",
  "generation_config.json",
  "tokenizer.model",
  "vocab.json",
  "merges.txt",
  "tiktoken.model",
];

/** The tokenizer files present in `dir`, in TOKENIZER_FILES order. */
export function listTokenizerFiles(dir: string): string[] {
  return TOKENIZER_FILES.filter((name) => {
    const p = join(dir, name);
    return existsSync(p) && statSync(p).isFile();
  });
}

/** Copy the tokenizer files present in `srcDir` into `dstDir` (created if needed); returns the names copied. */
export function copyTokenizerFiles(srcDir: string, dstDir: string): string[] {
  const names = listTokenizerFiles(srcDir);
  if (names.length === 0) return [];
  try {
    mkdirSync(dstDir, { recursive: true });
  } catch (e) {
    throw new TrtbError("TOK_COPY", `cannot create directory ${dstDir}: ${(e as Error).message}`, { file: dstDir, cause: e });
  }
  for (const name of names) {
    const src = join(srcDir, name);
    const dst = join(dstDir, name);
    const tmp = join(dstDir, `.${name}.tmp-${process.pid}-${Math.random().toString(36).slice(2, 8)}`);
    try {
      copyFileSync(src, tmp);
      renameSync(tmp, dst);
    } catch (e) {
      rmSync(tmp, { force: true });
      throw new TrtbError("TOK_COPY", `cannot copy ${src} to ${dst}: ${(e as Error).message}`, { file: src, cause: e });
    }
  }
  return names;
}

/**
 * Make `dstDir` (a checkpoint or engine directory being written) carry the tokenizer files of
 * `srcDir`: files of TOKENIZER_FILES already in `dstDir` that `srcDir` lacks are removed (they would
 * belong to an earlier model), then the present ones are copied. `explicit` (a `--tokenizer_dir` /
 * `tokenizerDir` the user named): a directory without tokenizer.json or tokenizer.model is
 * `TOK_MISSING_FILE`. Copying a directory onto itself does nothing. Returns the names copied.
 */
export function carryTokenizerFiles(srcDir: string, dstDir: string, opts: { explicit?: boolean } = {}): string[] {
  if (opts.explicit) checkTokenizerDir(srcDir);
  if (resolve(srcDir) === resolve(dstDir)) return listTokenizerFiles(dstDir);
  const names = listTokenizerFiles(srcDir);
  for (const name of TOKENIZER_FILES) if (!names.includes(name)) rmSync(join(dstDir, name), { force: true });
  return copyTokenizerFiles(srcDir, dstDir);
}

/** A directory named as the tokenizer's must hold tokenizer.json or tokenizer.model (`TOK_MISSING_FILE`). */
export function checkTokenizerDir(dir: string): void {
  if (!existsSync(join(dir, "tokenizer.json")) && !existsSync(join(dir, "tokenizer.model")))
    throw new TrtbError("TOK_MISSING_FILE", `${dir}: no tokenizer.json (or tokenizer.model) in the tokenizer directory`, { file: join(dir, "tokenizer.json") });
}
