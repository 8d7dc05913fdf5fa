/**
 * Reading the small JSON files of a tokenizer directory with one error per failure: a missing file
 * (`TOK_MISSING_FILE` / `GEN_CONFIG_MISSING_FILE`) and a file that is not JSON (`TOK_BAD_JSON` /
 * `GEN_CONFIG_BAD_JSON`), both naming the file.
 */
import { existsSync } from "node:fs";
import { readJsonFileSafe } from "../util/safe-read.ts";
import { type ErrorCode, TrtbError } from "../errors.ts";

export type JsonFileCodes = { missing: ErrorCode; badJson: ErrorCode };
export const TOK_JSON: JsonFileCodes = { missing: "TOK_MISSING_FILE", badJson: "TOK_BAD_JSON" };
export const GEN_CONFIG_JSON: JsonFileCodes = { missing: "GEN_CONFIG_MISSING_FILE", badJson: "GEN_CONFIG_BAD_JSON" };

/** Parse `file` as JSON; `undefined` when it does not exist and `required` is false. */
export function readJsonFile(file: string, required: true, codes?: JsonFileCodes): unknown;
export function readJsonFile(file: string, required: false, codes?: JsonFileCodes): unknown | undefined;
export function readJsonFile(file: string, required: boolean, codes: JsonFileCodes = TOK_JSON): unknown | undefined {
  if (!existsSync(file)) {
    if (!required) return undefined;
    throw new TrtbError(codes.missing, `${file}: not found`, { file });
  }
  return readJsonFileSafe(file, { missing: codes.missing, json: codes.badJson });
}

/** True for a plain JSON object (not an array, not null). */
export function isObject(v: unknown): v is Record<string, unknown> {
  return typeof v === "object" && v !== null && !Array.isArray(v);
}
