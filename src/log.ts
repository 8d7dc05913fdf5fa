/**
 * The logger facade. Library code logs through `log` only, so the backend (consola) can change
 * without touching callers. Level: `TRTB_LOG_LEVEL` (0 errors … 4 debug) or the CLI's `--log_level`.
 */
import { createConsola } from "consola";

export const log = createConsola({
  level: process.env.TRTB_LOG_LEVEL !== undefined ? Number(process.env.TRTB_LOG_LEVEL) : 3,
  stderr: process.stderr,
  stdout: process.stderr,
});

const LEVELS: Record<string, number> = { error: 0, warning: 1, warn: 1, info: 3, verbose: 4, debug: 4, trace: 5 };

export function setLogLevel(level: string | number): void {
  log.level = typeof level === "number" ? level : (LEVELS[level] ?? 3);
}
