/**
 * A minimal progress bar on stderr: redrawn in place on a TTY, a line per 10% otherwise, silent
 * below the info log level.
 */
import { log } from "../../src/index.ts";

export interface Progress {
  update(done: number, total: number, label?: string): void;
  done(): void;
}

export function progressBar(title: string, stream: NodeJS.WriteStream = process.stderr): Progress {
  const tty = stream.isTTY === true;
  const enabled = log.level >= 3;
  let lastDecile = -1;
  let drawn = false;
  const t0 = performance.now();
  return {
    update(done, total, label = "") {
      if (!enabled) return;
      const frac = total > 0 ? done / total : 1;
      const pct = Math.floor(frac * 100);
      const secs = (performance.now() - t0) / 1000;
      const rate = secs > 0 ? done / 1e6 / secs : 0;
      if (tty) {
        const width = 30;
        const fill = Math.round(frac * width);
        stream.write(`\r${title} [${"#".repeat(fill)}${" ".repeat(width - fill)}] ${pct}% ${rate.toFixed(0)} MB/s ${label}   `);
        drawn = true;
      } else if (Math.floor(pct / 10) > lastDecile) {
        lastDecile = Math.floor(pct / 10);
        stream.write(`${title}: ${pct}% (${(done / 1e6).toFixed(1)}/${(total / 1e6).toFixed(1)} MB) ${label}\n`);
      }
    },
    done() {
      if (tty && drawn) stream.write("\n");
    },
  };
}
