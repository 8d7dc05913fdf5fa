/**
 * CLI test harness: spies on console.log (stdout) and the logger's error channel around each test,
 * and restores the log level the commands set from their flags.
 */
import { afterEach, beforeEach, type Mock, spyOn } from "bun:test";
import { log } from "../../src/log.ts";

export function captureCli() {
  let stdout: Mock<(...a: unknown[]) => void>;
  let errors: Mock<typeof log.error>;
  let level: number;
  beforeEach(() => {
    level = log.level;
    stdout = spyOn(console, "log").mockImplementation(() => {});
    errors = spyOn(log, "error").mockImplementation(Object.assign(() => {}, { raw: () => {} }));
  });
  afterEach(() => {
    stdout.mockRestore();
    errors.mockRestore();
    log.level = level;
  });
  return {
    get stdout() { return stdout; },
    get errors() { return errors; },
    printed: () => stdout.mock.calls.map((c) => c.join(" ")).join("\n"),
    logged: () => errors.mock.calls.map((c) => String(c[0] instanceof Error ? c[0].message : c[0])).join("\n"),
  };
}
