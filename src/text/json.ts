/**
 * Reading the small JSON files of a tokenizer directory with one error per failure: a missing file
 * (`<prefix>_MISSING_FILE`) and a file that is not JSON (`<prefix>_BAD_JSON`), both naming the file.
 */
import { existsSync, readFileSync } from "node:fs";
import { TrtbError } from "../errors.ts";

/** Parse `file` as JSON; `undefined` when it does not exist and `required` is false. */
export function readJsonFile(file: string, required: true, codePrefix?: string): unknown;
export function readJsonFile(file: string, required: false, codePrefix?: string): unknown | undefined;
export function readJsonFile(file: string, required: boolean, codePrefix = "TOK"): unknown | undefined {
  if (!existsSync(file)) {
    if (!required) return undefined;
    throw new TrtbError(`${codePrefix}_MISSING_FILE`, `${file}: not found`, { file });
  }
  let text: string;
  try {
    text = readFileSync(file, "utf8");
  } catch (e) {
    throw new TrtbError(`${codePrefix}_MISSING_FILE`, `${file}: cannot read (${(e as Error).message})`, { file, cause: e });
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new TrtbError(`${codePrefix}_BAD_JSON`, `${file}: not valid JSON (${(e as Error).message})`, { file, cause: e });
  }
}

/** True for a plain JSON object (not an array, not null). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
