/**
 * The tokenizer-related files of a model directory, and copying them into a checkpoint or engine
 * directory so that it can be run (and chatted with) on its own. Each file is copied to a temp file
 * beside its destination and renamed, so a reader never sees half a tokenizer.json.
 */
import { copyFileSync, existsSync, mkdirSync, renameSync, rmSync, statSync } from "node:fs";
import { join } from "node:path";
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
