/**
 * Build every rank of a TRT-LLM checkpoint directory into an engine directory (what the
 * `trtllm-build` command does). One engine per rank of `mapping.world_size`; `ranks` restricts the
 * set (the CLI's `--workers` gives each child process its share and writes config.json itself).
 *
 *   remove config.json → build + save each rank (timing cache shared, so later ranks reuse the
 *   first one's timings) → write the timing cache → config.json last.
 */
import { readdirSync, rmSync } from "node:fs";
import { isAbsolute, join } from "node:path";
import { configMapping, type PretrainedConfig } from "../format/checkpoint-config.ts";
import { TrtbError } from "../errors.ts";
import { log } from "../log.ts";
import { DecoderModel } from "../models/common/decoder-model.ts";
import { readCheckpointConfig } from "../format/checkpoint.ts";
import { loadCheckpointRank } from "../models/common/model.ts";
import { familyForCheckpoint } from "../models/registry.ts";
import { carryTokenizerFiles, checkTokenizerDir } from "../text/files.ts";
import { ensureDir } from "../util/fs.ts";
import { guardOutput } from "../util/output-guard.ts";
import { type Backend, defaultBackend } from "./backend.ts";
import type { BuildConfigInput } from "../engine/build-config.ts";
import { type EngineConfig, TOOLKIT_VERSION, writeEngineConfig } from "../engine/engine.ts";
import { build, checkBuildable, checkLogitsDtype } from "./build.ts";
import { resolveBuildConfig } from "./config.ts";
import { describeModel } from "./describe.ts";
import { TimingCache } from "./tactics.ts";

export interface BuildCheckpointOptions {
  checkpointDir: string;
  outputDir: string;
  buildConfig?: BuildConfigInput;
  logitsDtype?: "float16" | "float32";
  /** Ranks to build (default: all). */
  ranks?: number[];
  /** Write config.json (default true). */
  writeConfig?: boolean;
  backend?: Backend;
  /** Path of a timing cache to read. */
  inputTimingCache?: string | null;
  /** Where to write the timing cache; relative paths are inside outputDir. Default: build_config.output_timing_cache. */
  outputTimingCache?: string | null;
  onRank?: (r: RankResult) => void;
  /**
   * Where the tokenizer files are copied from into the engine directory (with config.json);
   * default the checkpoint directory, which convert/quantize filled from the model. `false`: none.
   */
  tokenizerDir?: string | false;
}

export interface RankResult {
  rank: number;
  file: string;
  bytes: number;
  buildSeconds: number;
  saveSeconds: number;
  cacheHits: number;
  cacheMisses: number;
}

export interface BuildCheckpointResult {
  config: EngineConfig;
  ranks: RankResult[];
  seconds: number;
  timingCache: string | null;
}

/** config.json for an engine built from `cfg` with `input` (what build() records). */
export function engineConfigFor(cfg: PretrainedConfig, input: BuildConfigInput, logitsDtype?: "float16" | "float32"): EngineConfig {
  const pretrained = structuredClone(cfg) as PretrainedConfig;
  if (logitsDtype) pretrained.logits_dtype = logitsDtype;
  return { version: TOOLKIT_VERSION, pretrained_config: pretrained, build_config: resolveBuildConfig(cfg, input) };
}

/** Tokenizer files into the engine directory: from `tokenizerDir`, else the checkpoint's; `false`: none. */
export function carryEngineTokenizer(checkpointDir: string, outputDir: string, tokenizerDir: string | false | undefined): void {
  if (tokenizerDir === false) return;
  const names = carryTokenizerFiles(tokenizerDir ?? checkpointDir, outputDir, { explicit: tokenizerDir !== undefined });
  if (names.length) log.debug(`copied ${names.join(", ")} from ${tokenizerDir ?? checkpointDir}`);
  else log.warn(`${tokenizerDir ?? checkpointDir}: no tokenizer files to copy; the engine runs ids only (give --tokenizer_dir for text)`);
}

export async function buildCheckpoint(opts: BuildCheckpointOptions): Promise<BuildCheckpointResult> {
  const t0 = performance.now();
  const cfg = await readCheckpointConfig(opts.checkpointDir);
  const family = await familyForCheckpoint(cfg.architecture);
  const world = configMapping(cfg).worldSize;
  const ranks = opts.ranks ?? [...Array(world).keys()];
  for (const r of ranks) if (!(Number.isInteger(r) && r >= 0 && r < world)) throw new TrtbError("CLI_BAD_ARG", `rank ${r} is outside world size ${world}`);
  const input = opts.buildConfig ?? {};
  const engineConfig = engineConfigFor(cfg, input, opts.logitsDtype);
  const bc = engineConfig.build_config;
  // Fail before touching the output directory on anything the backend cannot build.
  checkBuildable(cfg, bc);
  checkLogitsDtype(cfg, opts.logitsDtype);
  for (const r of ranks) describeModel(cfg, r, family);

  const writeConfig = opts.writeConfig ?? true;
  if (!bc.dry_run) {
    // Before anything is removed or written: the engine directory must not be (in) the checkpoint.
    guardOutput(opts.outputDir, "--output_dir", [
      { path: opts.checkpointDir, what: "--checkpoint_dir" },
      typeof opts.tokenizerDir === "string" && { path: opts.tokenizerDir, what: "--tokenizer_dir" },
    ]);
    ensureDir(opts.outputDir);
    if (writeConfig) {
      rmSync(join(opts.outputDir, "config.json"), { force: true });
      for (const f of readdirSync(opts.outputDir)) {
        const m = /^rank(\d+)\.engine$/.exec(f);
        if (m && Number(m[1]) >= world) rmSync(join(opts.outputDir, f), { force: true });
      }
    }
  }
  const cache = TimingCache.load(opts.inputTimingCache ?? bc.input_timing_cache);
  const backend = bc.dry_run ? null : (opts.backend ?? defaultBackend());
  if (typeof opts.tokenizerDir === "string") checkTokenizerDir(opts.tokenizerDir);
  const results: RankResult[] = [];
  try {
    for (const rank of ranks) {
      const tb = performance.now();
      const model = await loadCheckpointRank(opts.checkpointDir, rank, (c, m) => new DecoderModel(family, c, m));
      try {
        const h0 = cache.hits;
        const m0 = cache.misses;
        const engine = await build(model, bc, { backend: backend ?? undefined, timingCache: cache, logitsDtype: opts.logitsDtype });
        const ts = performance.now();
        const file = join(opts.outputDir, `rank${rank}.engine`);
        const bytes = bc.dry_run ? engine.weightBytes : engine.save(opts.outputDir, { writeConfig: false });
        const r: RankResult = {
          rank, file, bytes, buildSeconds: (ts - tb) / 1000, saveSeconds: (performance.now() - ts) / 1000,
          cacheHits: cache.hits - h0, cacheMisses: cache.misses - m0,
        };
        results.push(r);
        opts.onRank?.(r);
      } finally {
        model.close();
      }
    }
  } finally {
    if (backend && !opts.backend) backend.close();
  }
  let cachePath: string | null = null;
  if (!bc.dry_run) {
    const out = opts.outputTimingCache !== undefined ? opts.outputTimingCache : bc.output_timing_cache;
    if (out) {
      cachePath = isAbsolute(out) ? out : join(opts.outputDir, out);
      cache.save(cachePath);
    }
    if (writeConfig) {
      carryEngineTokenizer(opts.checkpointDir, opts.outputDir, opts.tokenizerDir);
      writeEngineConfig(opts.outputDir, engineConfig);
    }
  } else {
    log.info("dry run: nothing written");
  }
  return { config: engineConfig, ranks: results, seconds: (performance.now() - t0) / 1000, timingCache: cachePath };
}
