/**
 * An engine: `Engine.fromDir(dir, rank)` reads one, `engine.save(dir)` writes one (spec §5.5), and
 * `config.json` of an engine directory = {version, pretrained_config, build_config}, written by
 * rank 0 only, last, atomically; rank{N}.engine per rank (engine-file.ts). The builder makes
 * engines in memory (src/builder/build.ts); the GPU runtime reads them.
 */
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { type PretrainedConfig, parsePretrainedConfig } from "../format/checkpoint-config.ts";
import { TrtbError } from "../errors.ts";
import { Mapping } from "../mapping.ts";
import { ensureDir, writeFileAtomic } from "../util/fs.ts";
import { readJsonFileSafe } from "../util/safe-read.ts";
import { type BuildConfig, buildConfigToJSON, parseBuildConfig } from "./build-config.ts";
import { type EngineFile, type EngineTensor, openEngineFile, writeEngineFile } from "./engine-file.ts";
import type { EnginePlan } from "./plan.ts";

export const TOOLKIT_VERSION = `trtllm-build-bun ${pkg.version}`;

/** `config.json` of an engine directory. */
export interface EngineConfig {
  version: string;
  pretrained_config: PretrainedConfig;
  build_config: BuildConfig;
}

export class Engine {
  readonly #tensors: EngineTensor[] | null;
  readonly #file: EngineFile | null;

  private constructor(readonly config: EngineConfig, readonly plan: EnginePlan, tensors: EngineTensor[] | null, file: EngineFile | null) {
    this.#tensors = tensors;
    this.#file = file;
  }

  /** @internal */
  static fromParts(config: EngineConfig, plan: EnginePlan, tensors: EngineTensor[] | null, file: EngineFile | null): Engine {
    return new Engine(config, plan, tensors, file);
  }

  get rank(): number {
    return this.plan.rank;
  }

  /** Bytes of weights (the blob). */
  get weightBytes(): number {
    if (this.#file) return this.#file.blobBytes;
    return this.plan.tensors.length ? Math.max(...this.plan.tensors.map((t) => t.offset + t.bytes)) : 0;
  }

  /**
   * Write `rank{N}.engine` (temp file + rename) and, for rank 0 unless `writeConfig` is false,
   * `config.json` after it. Returns the engine file's size.
   */
  save(dir: string, opts: { writeConfig?: boolean; onProgress?: (done: number, total: number) => void } = {}): number {
    if (!this.#tensors) throw new TrtbError("BUILD_INTERNAL", "this engine was loaded from a file; copy the directory instead of saving it again");
    ensureDir(dir);
    const writeConfig = opts.writeConfig ?? this.rank === 0;
    if (writeConfig) rmSync(join(dir, "config.json"), { force: true });
    const bytes = writeEngineFile(join(dir, `rank${this.rank}.engine`), this.plan, this.#tensors, opts.onProgress);
    if (writeConfig) writeEngineConfig(dir, this.config);
    return bytes;
  }

  /** Read `config.json` and `rank{rank}.engine` of an engine directory (weights stay on disk). */
  static async fromDir(dir: string, rank = 0): Promise<Engine> {
    const config = await readEngineConfig(dir);
    const ws = Mapping.fromJSON(config.pretrained_config.mapping).worldSize;
    if (rank < 0 || rank >= ws) throw new TrtbError("ENGINE_RANK", `${dir}: rank ${rank} is outside world size ${ws}`);
    const path = join(dir, `rank${rank}.engine`);
    if (!existsSync(path)) throw new TrtbError("ENGINE_NOT_FOUND", `${path}: not found (config.json declares ${ws} rank(s))`, { file: path });
    const file = openEngineFile(path);
    if (file.plan.rank !== rank) throw new TrtbError("ENGINE_FORMAT", `${path}: holds rank ${file.plan.rank}, expected ${rank}`, { file: path });
    checkConfigMatchesPlan(config, file.plan, join(dir, "config.json"), path);
    return new Engine(config, file.plan, null, file);
  }

  /** Visit the weight blob in windows (file-backed: mapped windows; in memory: one tensor at a time). */
  forEachWeightWindow(fn: (offset: number, bytes: Uint8Array) => void): void {
    if (this.#file) return this.#file.forEachWindow(fn);
    for (let i = 0; i < this.#tensors!.length; i++) {
      const t = this.#tensors![i]!;
      const p = this.plan.tensors[i]!;
      const buf = new Uint8Array(p.bytes);
      t.source.writeInto(buf, t.dtype);
      fn(p.offset, buf);
    }
  }
}

export function writeEngineConfig(dir: string, config: EngineConfig): void {
  writeFileAtomic(join(dir, "config.json"), `${JSON.stringify(engineConfigJSON(config), null, 4)}\n`);
}

export async function readEngineConfig(dir: string): Promise<EngineConfig> {
  const file = join(dir, "config.json");
  const raw = readJsonFileSafe(file, { missing: "ENGINE_NOT_FOUND", json: "ENGINE_CONFIG" }, `is ${dir} an engine directory built by trtllm-build?`);
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) throw new TrtbError("ENGINE_CONFIG", `${file}: expected a JSON object`, { file });
  const j = raw as { version?: unknown; pretrained_config?: unknown; build_config?: unknown };
  if (typeof j.version !== "string" || !j.pretrained_config || !j.build_config)
    throw new TrtbError("ENGINE_CONFIG", `${file}: expected {version, pretrained_config, build_config}`, { file });
  return {
    version: j.version,
    pretrained_config: parsePretrainedConfig(j.pretrained_config, `${file} (pretrained_config)`),
    build_config: parseBuildConfig(j.build_config, `${file} (build_config)`),
  };
}

/** `config.json` as written (build_config without dry_run / visualize_network). */
export function engineConfigJSON(c: EngineConfig): Record<string, unknown> {
  return { version: c.version, pretrained_config: c.pretrained_config, build_config: buildConfigToJSON(c.build_config) };
}

/**
 * `config.json` must describe the model the engine file holds: a config claiming another model,
 * dtype, mapping or limits than the plan (a config copied from elsewhere, an edited file) is
 * refused (ENGINE_CONFIG, naming both files and the first field that differs).
 */
export function checkConfigMatchesPlan(config: EngineConfig, plan: EnginePlan, configFile: string, engineFile: string): void {
  const pc = config.pretrained_config;
  const bc = config.build_config;
  const m = Mapping.fromJSON(pc.mapping);
  const d = plan.model;
  const tp = plan.mapping?.tp_size ?? 1;
  const pairs: [string, unknown, unknown][] = [
    ["pretrained_config.architecture", pc.architecture, d?.architecture],
    ["pretrained_config.dtype", pc.dtype, d?.dtype],
    ["pretrained_config.vocab_size", pc.vocab_size, d?.vocab_size],
    ["pretrained_config.hidden_size", pc.hidden_size, d?.hidden_size],
    ["pretrained_config.num_attention_heads", pc.num_attention_heads, (d?.num_heads ?? NaN) * tp],
    ["pretrained_config.mapping.world_size", m.worldSize, plan.mapping?.world_size],
    ["pretrained_config.mapping.tp_size", m.tpSize, plan.mapping?.tp_size],
    ["pretrained_config.mapping.pp_size", m.ppSize, plan.mapping?.pp_size],
    ["build_config.max_batch_size", bc.max_batch_size, plan.limits?.max_batch_size],
    ["build_config.max_input_len", bc.max_input_len, plan.limits?.max_input_len],
    ["build_config.max_seq_len", bc.max_seq_len, plan.limits?.max_seq_len],
  ];
  if (m.ppSize === 1) pairs.push(["pretrained_config.num_hidden_layers", pc.num_hidden_layers, d?.layers?.length]);
  for (const [field, cfgValue, planValue] of pairs)
    if (cfgValue !== planValue)
      throw new TrtbError("ENGINE_CONFIG", `${configFile}: ${field} is ${JSON.stringify(cfgValue)} but ${engineFile} was built with ${JSON.stringify(planValue)}; the config does not belong to this engine (rebuild, or restore its config.json)`, { file: configFile });
}
