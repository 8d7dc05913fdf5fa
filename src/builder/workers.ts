/**
 * Building a checkpoint's ranks in parallel worker processes, one per GPU (`trtllm-build --workers
 * N`). Each worker builds its share of the ranks on its own GPU (`workerShare`) and writes its own
 * timing cache (`workerTimingCache`); the parent then merges the caches and writes config.json last.
 * The caller says how a worker is started (`workerArgv`), so this works from a script, the CLI or a
 * compiled binary.
 */
import { existsSync, rmSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { TrtbError } from "../errors.ts";
import { readCheckpointConfig } from "../format/checkpoint.ts";
import { writeEngineConfig } from "../engine/engine.ts";
import { ensureDir } from "../util/fs.ts";
import { guardOutput } from "../util/output-guard.ts";
import { checkBuildable, checkLogitsDtype } from "./build.ts";
import { type BuildCheckpointOptions, carryEngineTokenizer, engineConfigFor } from "./checkpoint.ts";
import { checkTokenizerDir } from "../text/files.ts";
import { TimingCache } from "./tactics.ts";

/** The ranks worker `i` of `n` builds (on GPU `i`). */
export function workerShare(world: number, i: number, n: number): number[] {
  return [...Array(world).keys()].filter((r) => r % n === i);
}

/** Where the timing cache lands (relative paths are inside outputDir), and worker `i`'s part of it. */
export function timingCachePath(outputDir: string, outputTimingCache: string | null): string {
  const out = outputTimingCache ?? "model.cache";
  return isAbsolute(out) ? out : join(outputDir, out);
}
export const workerTimingCache = (outputDir: string, outputTimingCache: string | null, i: number) => `${timingCachePath(outputDir, outputTimingCache)}.w${i}`;

export interface WorkerBuildOptions extends Pick<BuildCheckpointOptions, "checkpointDir" | "outputDir" | "buildConfig" | "logitsDtype" | "inputTimingCache" | "tokenizerDir"> {
  outputTimingCache: string | null;
  workers: number;
  /** The command line that runs worker `i` of `n` (it builds `workerShare(world, i, n)`, no config.json). */
  workerArgv: (i: number, n: number) => string[];
}

/** Run the workers, then merge their timing caches and write config.json. Fails if any worker fails. */
export async function buildCheckpointInWorkers(opts: WorkerBuildOptions): Promise<void> {
  const cfg = await readCheckpointConfig(opts.checkpointDir);
  const engineConfig = engineConfigFor(cfg, opts.buildConfig ?? {}, opts.logitsDtype);
  checkBuildable(cfg, engineConfig.build_config);
  checkLogitsDtype(cfg, opts.logitsDtype);
  if (typeof opts.tokenizerDir === "string") checkTokenizerDir(opts.tokenizerDir);
  guardOutput(opts.outputDir, "--output_dir", [
    { path: opts.checkpointDir, what: "--checkpoint_dir" },
    typeof opts.tokenizerDir === "string" && { path: opts.tokenizerDir, what: "--tokenizer_dir" },
  ]);
  ensureDir(opts.outputDir);
  rmSync(join(opts.outputDir, "config.json"), { force: true });
  const n = opts.workers;
  const children = Array.from({ length: n }, (_, i) => Bun.spawn(opts.workerArgv(i, n), { stdout: "inherit", stderr: "inherit", env: process.env }));
  const codes = await Promise.all(children.map((c) => c.exited));
  const failed = codes.map((c, i) => [c, i] as const).filter(([c]) => c !== 0);
  if (failed.length) throw new TrtbError("BUILD_WORKER", `build worker(s) ${failed.map(([, i]) => i).join(", ")} failed (exit ${failed.map(([c]) => c).join(", ")}); see their messages above`);
  const cache = TimingCache.load(opts.inputTimingCache);
  for (let i = 0; i < n; i++) {
    const part = workerTimingCache(opts.outputDir, opts.outputTimingCache, i);
    if (existsSync(part)) {
      cache.merge(TimingCache.load(part));
      rmSync(part, { force: true });
    }
  }
  if (opts.outputTimingCache) cache.save(timingCachePath(opts.outputDir, opts.outputTimingCache));
  carryEngineTokenizer(opts.checkpointDir, opts.outputDir, opts.tokenizerDir);
  writeEngineConfig(opts.outputDir, engineConfig);
}
