/**
 * The error-code table (src/errors.ts): every code the sources raise is in it with a meaning, and the
 * table holds no code nothing raises. (tsc checks the literal codes too; CI runs `bun test`, not tsc.)
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import path from "node:path";
import { ERROR_CODES } from "../src/errors.ts";

const root = path.join(import.meta.dir, "..");
function sources(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => {
    const p = path.join(dir, e);
    return statSync(p).isDirectory() ? sources(p) : p.endsWith(".ts") ? [p] : [];
  });
}
const text = [...sources(path.join(root, "src")), ...sources(path.join(root, "cli"))].map((f) => readFileSync(f, "utf8")).join("\n");
const PREFIXES = [...new Set(Object.keys(ERROR_CODES).map((c) => c.split("_")[0]!))];

describe("ERROR_CODES", () => {
  test("every code is UPPER_SNAKE with a one-line meaning", () => {
    for (const [code, meaning] of Object.entries(ERROR_CODES)) {
      expect(code).toMatch(/^[A-Z]+(_[A-Z0-9]+)+$/);
      expect(meaning.length).toBeGreaterThan(8);
      expect(meaning).not.toContain("\n");
    }
  });

  test("every code raised in src/ and cli/ is in the table", () => {
    const raised = new Set([...text.matchAll(/"((?:[A-Z]+)_[A-Z0-9_]+)"/g)].map((m) => m[1]!).filter((c) => PREFIXES.includes(c.split("_")[0]!)));
    const known = new Set(Object.keys(ERROR_CODES));
    // Environment variable names (TRTB_*, CUDA_VISIBLE_DEVICES) share the CUDA_ prefix's shape only.
    expect([...raised].filter((c) => !known.has(c) && !/^(TRTB_|CUDA_VISIBLE)/.test(c))).toEqual([]);
  });

  test("every code in the table is raised somewhere", () => {
    const unused = Object.keys(ERROR_CODES).filter((c) => !text.includes(`"${c}"`));
    expect(unused).toEqual([]);
  });
});
