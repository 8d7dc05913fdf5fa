/**
 * The `trtllm-build` command (cli/trtllm-build.ts runs it): TRT-LLM checkpoint → engine directory, with upstream's flag names (spec §5.3).
 *
 *   trtllm-build --checkpoint_dir ckpt --output_dir engine [--max_batch_size 8] [--max_seq_len 4096] ...
 *
 * Engines are built by the CUDA backend (libtrtb_engine: cuBLASLt + our kernels), which needs a
 * GPU: GEMM tactics are timed on it. Plugin flags (`--gemm_plugin auto`, `--context_fmha enable`,
 * ...) are accepted with upstream's values and reported in one line as having no effect on this
 * backend (it always uses its own fused kernels); `--tokens_per_block` and `--paged_kv_cache` do
 * take effect. Flags for features the backend lacks (LoRA, speculative decoding, beam search,
 * weight streaming, dummy-weight builds) stop the build with `BUILD_UNSUPPORTED`.
 */
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { type ArgsDef, defineCommand } from "citty";
import pkg from "../../package.json" with { type: "json" };
import {
  type BuildConfigInput, buildCheckpoint, buildCheckpointInWorkers, configMapping, defaultBackend, log, PLUGIN_BOOL_FIELDS, PLUGIN_DTYPE_FIELDS,
  PLUGIN_DTYPES, type RankResult, readCheckpointConfig, SPECULATIVE_DECODING_MODES, setLogLevel, TrtbError, workerShare, workerTimingCache,
} from "../../src/index.ts";
import { oneOfArg as oneOf, optIntArg as int } from "./_shared.ts";

const str = (description: string, valueHint?: string, def?: string) =>
  ({ type: "string", description, ...(valueHint ? { valueHint } : {}), ...(def !== undefined ? { default: def } : {}) }) as const;
const flag = (description: string) => ({ type: "boolean", description, default: false }) as const;

const NOOP = "accepted for compatibility; no effect on the CUDA backend";

const BASE_ARGS = {
  checkpoint_dir: str("TRT-LLM checkpoint directory (config.json + rank{N}.safetensors); one engine is built per rank of its mapping", "dir"),
  model_config: str("Build from a config.json with dummy weights (not supported by this backend)", "file"),
  build_config: str("JSON file with BuildConfig fields (flags given on the command line override it)", "file"),
  model_cls_file: str("Custom model class file (not supported)", "file"),
  model_cls_name: str("Custom model class name (not supported)", "name"),
  output_dir: str("Engine directory to write: config.json + rank{N}.engine (+ the timing cache)", "dir", "engine_outputs"),
  max_batch_size: str("Most sequences per step the engine serves (default 2048)", "N"),
  max_input_len: str("Longest prompt (default 1024; clipped to max_seq_len)", "N"),
  max_seq_len: str("Longest prompt + generation; default max_position_embeddings × rope scaling factor (not for llama3/longrope/su)", "N"),
  max_decoder_seq_len: str("Alias of --max_seq_len", "N"),
  max_beam_width: str("Beam width (only 1: beam search is not supported)", "N"),
  max_num_tokens: str("Most tokens per forward pass (default 8192); GEMM tactics are tuned for token counts up to this", "N"),
  opt_num_tokens: str("Recorded in build_config; the CUDA backend tunes every power-of-two token count instead", "N"),
  max_encoder_input_len: str(`Encoder input length (encoder-decoder models; ${NOOP})`, "N"),
  max_prompt_embedding_table_size: str("Prompt-tuning table size (only 0 is supported)", "N"),
  max_multimodal_len: str("Alias of --max_prompt_embedding_table_size", "N"),
  kv_cache_type: str("KV cache: paged (default; the only kind this backend runs), continuous, disabled", "type"),
  input_timing_cache: str("Read GEMM timings from this timing cache first (reuse across builds)", "file"),
  tokenizer_dir: str("Copy the tokenizer files (tokenizer.json, generation_config.json, …) from here into the engine directory (default: the checkpoint directory's)", "dir"),
  output_timing_cache: str("Write the timing cache here (relative paths are inside --output_dir)", "file", "model.cache"),
  profiling_verbosity: str(`layer_names_only | detailed | none (${NOOP})`, "level"),
  strip_plan: flag(`Strip weights from the plan (${NOOP})`),
  weight_sparsity: flag(`Sparse weights (${NOOP})`),
  weight_streaming: flag("Stream weights from host memory (not supported)"),
  fast_build: flag(`Faster TensorRT build (${NOOP})`),
  workers: str("Ranks built in parallel (capped at the number of GPUs); each rank's tuning runs on its own GPU", "N", "1"),
  enable_debug_output: flag(`Debug tensors (${NOOP})`),
  visualize_network: str(`Write a network visualization (${NOOP})`, "file"),
  dry_run: flag("Resolve the config, check and lay out every rank, write nothing"),
  monitor_memory: flag(`Memory monitor (${NOOP})`),
  logits_dtype: str("float16 | float32: dtype of the logits on the GPU (float16 halves their memory; needs a float16 model); the API returns them as float32", "dtype"),
  gather_context_logits: flag("Record gather_context_logits (the runtime can return all logits either way)"),
  gather_generation_logits: flag("Record gather_generation_logits"),
  gather_all_token_logits: flag("Both of the above"),
  lora_dir: str("LoRA adapters (not supported)", "dir"),
  lora_ckpt_source: str("hf | nemo (LoRA; not supported)", "source"),
  lora_target_modules: str("LoRA target modules (not supported)", "modules"),
  max_lora_rank: str("LoRA rank (not supported)", "N"),
  speculative_decoding_mode: str("Speculative decoding (not supported)", "mode"),
  max_draft_len: str("Draft tokens for speculative decoding (only 0)", "N"),
  auto_parallel: str("Auto-parallel world size (only 1; TP/PP come from the checkpoint mapping)", "N"),
  gpus_per_node: str(`GPUs per node (${NOOP})`, "N"),
  cluster_key: str(`Cluster key for auto-parallel (${NOOP})`, "key"),
  log_level: str("error | warning | info | verbose | debug", "level", "info"),
  verbose: flag("Print stack traces on failure and debug logs"),
  _worker: str("(internal) i/N: build the ranks r with r % N == i on GPU i", "i/N"),
} as const satisfies ArgsDef;

/** One flag per PluginConfig field, upstream style (`--gemm_plugin auto`, `--context_fmha enable`). */
function pluginArgs(): ArgsDef {
  const a: ArgsDef = {};
  for (const f of PLUGIN_DTYPE_FIELDS) a[f] = { type: "string", description: `${PLUGIN_DTYPES.join(" | ")} (${NOOP})`, valueHint: "dtype" };
  for (const f of PLUGIN_BOOL_FIELDS) {
    a[f] = f === "paged_kv_cache"
      ? { type: "string", description: "enable | disable: deprecated alias of --kv_cache_type paged / continuous", valueHint: "enable|disable" }
      : { type: "string", description: `enable | disable (${NOOP})`, valueHint: "enable|disable" };
  }
  a.tokens_per_block = { type: "string", description: "Tokens per KV cache block, a power of 2 (default 32)", valueHint: "N" };
  return a;
}

export const ARGS: ArgsDef = { ...BASE_ARGS, ...pluginArgs() };

type Args = Record<string, string | boolean | undefined>;

/** Flags on the command line that are not ours: a clear error instead of silently ignoring them. */
export function checkKnownFlags(rawArgs: string[]): void {
  const known = new Set(Object.keys(ARGS));
  for (const a of rawArgs) {
    if (!a.startsWith("--")) continue;
    const name = a.slice(2).split("=")[0]!;
    if (name === "help" || name === "version") continue;
    if (!known.has(name)) throw new TrtbError("CLI_BAD_ARG", `unknown flag --${name} (trtllm-build --help lists every flag)`);
  }
}

export interface ParsedBuildArgs {
  checkpointDir: string;
  outputDir: string;
  buildConfig: BuildConfigInput;
  logitsDtype?: "float16" | "float32";
  workers: number;
  inputTimingCache?: string;
  outputTimingCache: string | null;
  tokenizerDir?: string;
  /** Flags given that have no effect on this backend, as "--flag value". */
  noOps: string[];
}

/** Map upstream's flags onto a BuildConfig (the testable half of the command). */
export function parseBuildArgs(args: Args, given: ReadonlySet<string>): ParsedBuildArgs {
  const unsupported = (what: string) => {
    throw new TrtbError("BUILD_UNSUPPORTED", `${what} is not supported by the CUDA backend`);
  };
  if (args.model_config) unsupported("--model_config (building with dummy weights)");
  if (args.model_cls_file || args.model_cls_name) unsupported("--model_cls_file / --model_cls_name (custom model classes)");
  if (args.lora_dir || args.lora_target_modules || args.lora_ckpt_source || args.max_lora_rank) unsupported("LoRA (--lora_*)");
  if (args.weight_streaming) unsupported("--weight_streaming");
  if (args.speculative_decoding_mode !== undefined) {
    const m = oneOf("speculative_decoding_mode", args.speculative_decoding_mode, Object.keys(SPECULATIVE_DECODING_MODES).filter((k) => k !== "none"));
    unsupported(`--speculative_decoding_mode ${m}`);
  }
  if ((int("max_draft_len", args.max_draft_len) ?? 0) > 0) unsupported("--max_draft_len > 0 (speculative decoding)");
  if ((int("auto_parallel", args.auto_parallel, 1) ?? 1) > 1) unsupported("--auto_parallel > 1 (TP/PP come from the checkpoint's mapping)");
  if (!args.checkpoint_dir) throw new TrtbError("CLI_BAD_ARG", "--checkpoint_dir is required (a TRT-LLM checkpoint: config.json + rank{N}.safetensors)");
  if (args.max_seq_len !== undefined && args.max_decoder_seq_len !== undefined) throw new TrtbError("CLI_BAD_ARG", "give only one of --max_seq_len and --max_decoder_seq_len");
  if (args.max_prompt_embedding_table_size !== undefined && args.max_multimodal_len !== undefined)
    throw new TrtbError("CLI_BAD_ARG", "give only one of --max_prompt_embedding_table_size and --max_multimodal_len");

  let base: BuildConfigInput = {};
  if (typeof args.build_config === "string") {
    if (!existsSync(args.build_config)) throw new TrtbError("CLI_BAD_ARG", `--build_config ${args.build_config}: file not found`);
    try {
      base = JSON.parse(readFileSync(args.build_config, "utf8"));
    } catch (e) {
      throw new TrtbError("CLI_BAD_ARG", `--build_config ${args.build_config}: not valid JSON (${(e as Error).message})`);
    }
  }
  const bc: BuildConfigInput = { ...base, plugin_config: { ...(base.plugin_config ?? {}) } };
  const set = <K extends keyof BuildConfigInput>(k: K, v: BuildConfigInput[K] | undefined) => {
    if (v !== undefined) bc[k] = v;
  };
  set("max_batch_size", int("max_batch_size", args.max_batch_size, 1));
  set("max_input_len", int("max_input_len", args.max_input_len, 1));
  set("max_seq_len", int("max_seq_len", args.max_seq_len ?? args.max_decoder_seq_len, 1));
  set("max_beam_width", int("max_beam_width", args.max_beam_width, 1));
  set("max_num_tokens", int("max_num_tokens", args.max_num_tokens, 1));
  set("opt_num_tokens", int("opt_num_tokens", args.opt_num_tokens, 1));
  set("max_encoder_input_len", int("max_encoder_input_len", args.max_encoder_input_len, 1));
  set("max_prompt_embedding_table_size", int("max_prompt_embedding_table_size", args.max_prompt_embedding_table_size ?? args.max_multimodal_len, 0));
  const kv = oneOf("kv_cache_type", args.kv_cache_type, ["continuous", "paged", "disabled"] as const);
  if (kv) bc.kv_cache_type = kv.toUpperCase() as "PAGED";
  set("profiling_verbosity", oneOf("profiling_verbosity", args.profiling_verbosity, ["layer_names_only", "detailed", "none"] as const));
  if (given.has("strip_plan")) bc.use_strip_plan = true;
  if (given.has("weight_sparsity")) bc.weight_sparsity = true;
  if (given.has("enable_debug_output")) bc.enable_debug_output = true;
  if (given.has("monitor_memory")) bc.monitor_memory = true;
  if (given.has("dry_run")) bc.dry_run = true;
  if (typeof args.visualize_network === "string") bc.visualize_network = args.visualize_network;
  if (args.gather_context_logits || args.gather_all_token_logits) bc.gather_context_logits = true;
  if (args.gather_generation_logits || args.gather_all_token_logits) bc.gather_generation_logits = true;
  if (typeof args.input_timing_cache === "string") bc.input_timing_cache = args.input_timing_cache;
  if (typeof args.output_timing_cache === "string") bc.output_timing_cache = args.output_timing_cache;
  if (given.has("fast_build")) bc.plugin_config!.manage_weights = true;
  const logitsDtype = oneOf("logits_dtype", args.logits_dtype, ["float16", "float32"] as const);
  int("gpus_per_node", args.gpus_per_node, 1);

  const noOps: string[] = [];
  const pc = bc.plugin_config as Record<string, unknown>;
  for (const f of PLUGIN_DTYPE_FIELDS) {
    if (args[f] === undefined) continue;
    const allowed = f === "gemm_plugin" ? [...PLUGIN_DTYPES, "fp8", "nvfp4"] : PLUGIN_DTYPES;
    const v = oneOf(f, args[f], allowed);
    if (f === "lora_plugin" && v !== "disable") unsupported("--lora_plugin");
    pc[f] = v === "disable" ? null : v;
    noOps.push(`--${f} ${v}`);
  }
  for (const f of PLUGIN_BOOL_FIELDS) {
    if (args[f] === undefined) continue;
    const v = oneOf(f, args[f], ["enable", "disable"] as const)!;
    pc[f] = v === "enable";
    if (f !== "paged_kv_cache") noOps.push(`--${f} ${v}`);
  }
  if (args.tokens_per_block !== undefined) pc.tokens_per_block = int("tokens_per_block", args.tokens_per_block, 1);
  for (const f of ["profiling_verbosity", "max_encoder_input_len", "visualize_network", "gpus_per_node", "cluster_key", "opt_num_tokens"])
    if (args[f] !== undefined) noOps.push(`--${f} ${args[f]}`);
  for (const f of ["strip_plan", "weight_sparsity", "fast_build", "enable_debug_output", "monitor_memory"]) if (given.has(f)) noOps.push(`--${f}`);

  const out = typeof args.output_dir === "string" ? args.output_dir : "engine_outputs";
  return {
    checkpointDir: args.checkpoint_dir as string,
    outputDir: out,
    buildConfig: bc,
    logitsDtype,
    workers: int("workers", args.workers ?? "1", 1)!,
    inputTimingCache: typeof args.input_timing_cache === "string" ? args.input_timing_cache : undefined,
    outputTimingCache: typeof args.output_timing_cache === "string" ? args.output_timing_cache : "model.cache",
    tokenizerDir: typeof args.tokenizer_dir === "string" ? args.tokenizer_dir : undefined,
    noOps,
  };
}

const fmtRank = (r: RankResult) =>
  `rank ${r.rank}: ${(r.bytes / 2 ** 20).toFixed(1)} MiB, tactics ${r.buildSeconds.toFixed(1)} s (${r.cacheHits} cached, ${r.cacheMisses} timed), write ${r.saveSeconds.toFixed(1)} s`;

export const main = defineCommand({
  meta: { name: "trtllm-build", version: pkg.version, description: "Build engines from a TensorRT-LLM checkpoint: float16/bfloat16, or weight-only W8A16/W4A16 (quantized here) (CUDA backend: cuBLASLt + fused kernels, tuned on this GPU)" },
  args: ARGS,
  async run({ args, rawArgs }) {
    setLogLevel(args.verbose ? "debug" : String(args.log_level ?? "info"));
    checkKnownFlags(rawArgs);
    const given = new Set(rawArgs.filter((a) => a.startsWith("--")).map((a) => a.slice(2).split("=")[0]!));
    const p = parseBuildArgs(args as Args, given);
    if (p.noOps.length && args._worker === undefined) log.info(`no effect on the CUDA backend (it always uses its own fused kernels): ${p.noOps.join(", ")}`);

    // --workers child: build its share of the ranks, no config.json
    if (typeof args._worker === "string") {
      const m = /^(\d+)\/(\d+)$/.exec(args._worker);
      if (!m) throw new TrtbError("CLI_BAD_ARG", `--_worker must be i/N, got ${args._worker}`);
      const [i, n] = [Number(m[1]), Number(m[2])];
      const cfg = await readCheckpointConfig(p.checkpointDir);
      await buildCheckpoint({
        checkpointDir: p.checkpointDir, outputDir: p.outputDir, buildConfig: p.buildConfig, logitsDtype: p.logitsDtype, writeConfig: false,
        ranks: workerShare(configMapping(cfg).worldSize, i, n), backend: defaultBackend(i), inputTimingCache: p.inputTimingCache,
        outputTimingCache: workerTimingCache(p.outputDir, p.outputTimingCache, i), onRank: (r) => log.info(fmtRank(r)),
      });
      return;
    }

    const cfg = await readCheckpointConfig(p.checkpointDir);
    const world = configMapping(cfg).worldSize;
    const t0 = performance.now();
    const backend = p.buildConfig.dry_run ? null : defaultBackend();
    const gpus = backend?.deviceCount ?? 1;
    const workers = Math.min(p.workers, world, gpus);
    if (p.workers > workers) log.info(`--workers ${p.workers}: using ${workers} (${world} rank(s), ${gpus} GPU(s))`);
    if (backend) log.info(`building ${world} rank(s) of ${cfg.architecture} on ${backend.device.name} (sm ${backend.device.sm})`);
    try {
      if (workers <= 1) {
        const res = await buildCheckpoint({
          checkpointDir: p.checkpointDir, outputDir: p.outputDir, buildConfig: p.buildConfig, logitsDtype: p.logitsDtype, backend: backend ?? undefined,
          inputTimingCache: p.inputTimingCache, outputTimingCache: p.outputTimingCache, tokenizerDir: p.tokenizerDir, onRank: (r) => log.info(fmtRank(r)),
        });
        if (!p.buildConfig.dry_run) log.success(`wrote ${res.ranks.length} engine(s) + config.json to ${p.outputDir} in ${res.seconds.toFixed(1)} s${res.timingCache ? ` (timing cache ${res.timingCache})` : ""}`);
        return;
      }
    } finally {
      backend?.close();
    }
    // Each worker re-runs this command with --_worker i/N: the bin under `bun`, or the compiled binary alone.
    const compiled = import.meta.path.startsWith("/$bunfs") || import.meta.dir.includes("~BUN");
    const self = compiled ? [process.execPath] : [process.execPath, join(import.meta.dir, "../trtllm-build.ts")];
    const childArgs = rawArgs.filter((a, j) => !a.startsWith("--workers") && rawArgs[j - 1] !== "--workers");
    await buildCheckpointInWorkers({
      checkpointDir: p.checkpointDir, outputDir: p.outputDir, buildConfig: p.buildConfig, logitsDtype: p.logitsDtype,
      inputTimingCache: p.inputTimingCache, outputTimingCache: p.outputTimingCache, tokenizerDir: p.tokenizerDir,
      workers, workerArgv: (i, n) => [...self, ...childArgs, "--_worker", `${i}/${n}`],
    });
    log.success(`wrote ${world} engine(s) + config.json to ${p.outputDir} with ${workers} workers in ${((performance.now() - t0) / 1000).toFixed(1)} s`);
  },
});

export default main;
