/**
 * `build(model, buildConfig)` → `Engine`, `engine.save(dir)`, `Engine.fromDir(dir, rank)`: upstream's
 * API (spec §4–5) over our own engine format.
 *
 *   resolve BuildConfig (max_seq_len deduction, checks) → check what the backend can run →
 *   describe the model → lay out the weights (lazy) → time the GEMM tactics on the device
 *   (timing cache first) → Engine (config + plan + lazy weights) → save: rank{N}.engine, then
 *   config.json from rank 0.
 *
 * Engine directory (spec §5.5): config.json = {version, pretrained_config, build_config} written by
 * rank 0 only, last, atomically; rank{N}.engine per rank (engine-file.ts).
 */
import { existsSync, rmSync } from "node:fs";
import { join } from "node:path";
import pkg from "../../package.json" with { type: "json" };
import { configQuant, type PretrainedConfig, parsePretrainedConfig } from "../config.ts";
import { TrtbError } from "../errors.ts";
import { log } from "../log.ts";
import { Mapping } from "../mapping.ts";
import type { DecoderModel } from "../models/common/decoder-model.ts";
import { ensureDir, writeFileAtomic } from "../util/fs.ts";
import { type Backend, defaultBackend } from "./backend.ts";
import { type BuildConfig, type BuildConfigInput, buildConfigToJSON, parseBuildConfig, resolveBuildConfig } from "./config.ts";
import { type EngineFile, layoutTensors, openEngineFile, writeEngineFile } from "./engine-file.ts";
import { type EngineTensor, engineTensors } from "./layout.ts";
import { describeModel, ENGINE_FORMAT, ENGINE_FORMAT_VERSION, type EnginePlan, tokenBuckets } from "./plan.ts";
import { gemmSites, selectTactics, TimingCache } from "./tactics.ts";

export const TOOLKIT_VERSION = `trtllm-build-bun ${pkg.version}`;

/** `config.json` of an engine directory. */
export interface EngineConfig {
  version: string;
  pretrained_config: PretrainedConfig;
  build_config: BuildConfig;
}

export interface BuildOptions {
  /** Defaults to the CUDA backend on device 0 (`TRTB_BUILD_BACKEND=fake` for GPU-less tests). */
  backend?: Backend;
  /** Timing cache to read and extend (shared across ranks and builds). */
  timingCache?: TimingCache;
  /** Override `pretrained_config.logits_dtype` (upstream `--logits_dtype`). The runtime computes f32. */
  logitsDtype?: "float16" | "float32";
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
  if (!existsSync(file)) throw new TrtbError("ENGINE_NOT_FOUND", `${file}: not found (is ${dir} an engine directory built by trtllm-build?)`, { file });
  let j: { version?: unknown; pretrained_config?: unknown; build_config?: unknown };
  try {
    j = await Bun.file(file).json();
  } catch (e) {
    throw new TrtbError("ENGINE_CONFIG", `${file}: not valid JSON (${(e as Error).message})`, { file });
  }
  if (typeof j.version !== "string" || !j.pretrained_config || !j.build_config)
    throw new TrtbError("ENGINE_CONFIG", `${file}: expected {version, pretrained_config, build_config}`, { file });
  return {
    version: j.version,
    pretrained_config: parsePretrainedConfig(j.pretrained_config, `${file} (pretrained_config)`),
    build_config: parseBuildConfig(j.build_config, `${file} (build_config)`),
  };
}

/** What the CUDA backend cannot build, as one clear error (checked before any work). */
export function checkBuildable(cfg: PretrainedConfig, bc: BuildConfig): void {
  const q = configQuant(cfg);
  const wo = q.quant_algo === "W8A16" || q.quant_algo === "W4A16";
  if ((q.quant_algo !== null && !wo) || q.kv_cache_quant_algo !== null)
    throw new TrtbError("BUILD_UNSUPPORTED",
      `quant_algo ${q.quant_algo ?? "none"}, kv_cache_quant_algo ${q.kv_cache_quant_algo ?? "none"} is not supported by the CUDA backend; it builds float16/bfloat16 checkpoints and weight-only W8A16 / W4A16 ones (trtllm quantize --qformat int8_wo / int4_wo)`);
  const no = (cond: boolean, what: string) => {
    if (cond) throw new TrtbError("BUILD_UNSUPPORTED", `${what} is not supported by the CUDA backend`);
  };
  no(bc.kv_cache_type !== "PAGED", `kv_cache_type ${bc.kv_cache_type} (it always uses a paged KV cache; use paged)`);
  no(bc.max_beam_width !== 1, `beam search (max_beam_width ${bc.max_beam_width})`);
  no(bc.max_draft_len > 0 || bc.speculative_decoding_mode !== 1, "speculative decoding");
  no(bc.max_prompt_embedding_table_size > 0, "prompt tuning (max_prompt_embedding_table_size)");
  no(bc.lora_config.lora_dir.length > 0 || bc.plugin_config.lora_plugin !== null, "LoRA");
  no(bc.use_mrope, "mrope");
  no(cfg.position_embedding_type !== "rope_gpt_neox", `position_embedding_type ${cfg.position_embedding_type}`);
}

/**
 * Build one rank's engine. `model` is one rank of a checkpoint (`LLaMAForCausalLM.fromCheckpoint(dir,
 * rank)` etc.); the GEMM tactics are timed on the backend's device.
 */
export async function build(model: DecoderModel, buildConfig: BuildConfig | BuildConfigInput = {}, opts: BuildOptions = {}): Promise<Engine> {
  const t0 = performance.now();
  const cfg = structuredClone(model.config) as PretrainedConfig;
  const bc = resolveBuildConfig(cfg, buildConfig);
  checkBuildable(cfg, bc);
  const rank = model.mapping.rank;
  const desc = describeModel(cfg, rank, model.family, (n) => model.weights.has(n));
  const ok = new Set([64, 128, 256]);
  if (!ok.has(desc.head_size)) throw new TrtbError("BUILD_UNSUPPORTED", `head size ${desc.head_size} is not supported by the CUDA backend (64, 128, 256)`);
  if (desc.num_heads % desc.num_kv_heads !== 0 || desc.num_heads / desc.num_kv_heads > 16)
    throw new TrtbError("BUILD_UNSUPPORTED", `${desc.num_heads} query heads over ${desc.num_kv_heads} KV heads (at most 16 per KV head)`);
  if (desc.hidden_size > 16384 || desc.hidden_size % 8 !== 0) throw new TrtbError("BUILD_UNSUPPORTED", `hidden size ${desc.hidden_size} (multiple of 8, ≤ 16384)`);
  if (desc.moe && (desc.moe.num_experts > 256 || desc.moe.top_k > 16)) throw new TrtbError("BUILD_UNSUPPORTED", `MoE with ${desc.moe.num_experts} experts, top-${desc.moe.top_k}`);
  const tensors = engineTensors(model, desc);

  const plan: EnginePlan = {
    format: ENGINE_FORMAT,
    format_version: ENGINE_FORMAT_VERSION,
    backend: "cuda",
    rank,
    mapping: {
      world_size: model.mapping.worldSize, tp_size: model.mapping.tpSize, pp_size: model.mapping.ppSize,
      moe_tp_size: model.mapping.moeTpSize, moe_ep_size: model.mapping.moeEpSize,
    },
    model: desc,
    limits: {
      max_batch_size: bc.max_batch_size, max_input_len: bc.max_input_len, max_seq_len: bc.max_seq_len!,
      max_num_tokens: bc.max_num_tokens!, max_beam_width: bc.max_beam_width, tokens_per_block: bc.plugin_config.tokens_per_block,
    },
    gemm: { tactics: [], sites: {} },
    device: null,
    tensors: [],
    build: { seconds: 0, timing_cache_hits: 0, timing_cache_misses: 0 },
  };
  if (!bc.dry_run) {
    const backend = opts.backend ?? defaultBackend();
    try {
      const cache = opts.timingCache ?? new TimingCache();
      const h0 = cache.hits;
      const m0 = cache.misses;
      const buckets = tokenBuckets(Math.max(bc.max_num_tokens!, bc.max_batch_size));
      plan.gemm = selectTactics(backend, gemmSites(desc, tensors), buckets, cache);
      plan.device = backend.device;
      plan.backend = backend.name;
      plan.build.timing_cache_hits = cache.hits - h0;
      plan.build.timing_cache_misses = cache.misses - m0;
    } finally {
      if (!opts.backend) backend.close();
    }
  }
  plan.build.seconds = (performance.now() - t0) / 1000;
  // Place the tensors now so the plan is complete in memory too (the writer recomputes the same).
  plan.tensors = layoutTensors(tensors).tensors;
  const pretrained = structuredClone(model.config) as PretrainedConfig;
  if (opts.logitsDtype) pretrained.logits_dtype = opts.logitsDtype;
  const config: EngineConfig = { version: TOOLKIT_VERSION, pretrained_config: pretrained, build_config: bc };
  log.debug(`rank ${rank}: ${tensors.length} engine tensors, ${plan.gemm.tactics.length} distinct GEMM tactics, build ${plan.build.seconds.toFixed(2)} s`);
  return Engine.fromParts(config, plan, tensors, null);
}

/** `config.json` as written (build_config without dry_run / visualize_network). */
export function engineConfigJSON(c: EngineConfig): Record<string, unknown> {
  return { version: c.version, pretrained_config: c.pretrained_config, build_config: buildConfigToJSON(c.build_config) };
}
