/**
 * Whole-checkpoint conversion: every rank of a mapping, written atomically.
 *
 *   read config → resolve family → [quant config] → for each rank: map names, split, cast,
 *   [quantize] (lazy) → write rank file → config.json last
 *
 * The source is opened once and shared by all ranks; each output tensor is written straight into
 * its place in the output file, so memory stays at a few mapped windows whatever the model size.
 * `config.json` is removed first and written last: an interrupted run never looks complete.
 */
import { availableParallelism } from "node:os";
import { join } from "node:path";
import type { PretrainedConfig, QuantConfig } from "./format/checkpoint-config.ts";
import { configToJSONText } from "./format/checkpoint-config.ts";
import type { ModelDType } from "./dtype.ts";
import { openHFCheckpoint } from "./format/hf-checkpoint.ts";
import { writeBehindIdle } from "./format/safetensors.ts";
import { readHFConfig } from "./format/hf-config.ts";
import { type ErrorCode, TrtbError } from "./errors.ts";
import { log } from "./log.ts";
import { Mapping } from "./mapping.ts";
import type { FromSourceOptions } from "./models/common/config-common.ts";
import { convertRank } from "./models/common/convert.ts";
import { DecoderModel } from "./models/common/decoder-model.ts";
import { familyForHF, familyForMeta } from "./models/registry.ts";
import { applyQuantConfig } from "./quant/apply.ts";
import { type QuantBackend, type QuantDevice, quantBackend } from "./quant/backend.ts";
import { releaseQuantScratch } from "./quant/lazy.ts";
import type { CalibPlan } from "./quant/calib-plan.ts";
import type { TensorSource } from "./tensor.ts";
import { carryTokenizerFiles, checkTokenizerDir } from "./text/files.ts";
import { prepareCheckpointDir, writeFileAtomic } from "./util/fs.ts";
import { guardOutput } from "./util/output-guard.ts";

export interface ConvertOptions {
  /** Hugging Face model directory (safetensors). */
  modelDir?: string;
  /** Meta checkpoint directory (params.json + consolidated.NN.pth). */
  metaCkptDir?: string;
  outputDir: string;
  dtype?: ModelDType | "auto";
  tpSize?: number;
  ppSize?: number;
  useParallelEmbedding?: boolean;
  embeddingShardingDim?: 0 | 1;
  /** A full mapping (MoE tp/ep sizes); overrides tpSize/ppSize. */
  mapping?: Mapping;
  /** Quantize while converting (`quant_algo` picks the scheme; see src/quant/). */
  quantConfig?: Partial<QuantConfig>;
  /** Where quantization kernels run (default cpu). */
  device?: QuantDevice;
  /** Calibration statistics for calibrated formats (`quantize` fills it from a calibration dataset). */
  calibration?: CalibPlan;
  /**
   * Ranks converted at once: this thread plus workers − 1 worker threads. Default: one per CPU core
   * (at most one per rank) for plain conversions, which are bound by copying into the page cache;
   * 1 (one rank after another, in this thread) when quantizing or calibrating, whose kernels use
   * every core already and whose scratch buffers would be held once per worker.
   */
  workers?: number;
  /** Progress over all ranks: bytes written so far, total bytes, current rank. */
  onProgress?: (done: number, total: number, rank: number) => void;
  /**
   * Where the tokenizer files (TOKENIZER_FILES: tokenizer.json, tokenizer_config.json,
   * generation_config.json, tokenizer.model, …) are copied from into the checkpoint; default the
   * model directory (or the Meta checkpoint directory). `false`: copy none.
   */
  tokenizerDir?: string | false;
  /** Write tensors holding NaN/Inf (with a warning naming each) instead of refusing them (NUM_NONFINITE). */
  allowNonfinite?: boolean;
}

export interface ConvertResult {
  config: PretrainedConfig;
  /** config.json and the rank files (the tokenizer files copied are in `tokenizerFiles`). */
  files: string[];
  /** Names of the tokenizer files copied into the checkpoint. */
  tokenizerFiles: string[];
  bytes: number;
  seconds: number;
}

export interface OpenedSource {
  cfg: PretrainedConfig;
  src: TensorSource;
  label: string;
  family: import("./models/common/family.ts").Family;
}

/** Open a HF or Meta source and derive the checkpoint config for `mapping`. */
export async function openSource(opts: ConvertOptions, mapping: Mapping): Promise<OpenedSource> {
  const fopts: FromSourceOptions = {
    dtype: opts.dtype ?? "auto",
    mapping,
    useParallelEmbedding: opts.useParallelEmbedding,
    embeddingShardingDim: opts.embeddingShardingDim,
  };
  if (opts.metaCkptDir) {
    const family = await familyForMeta();
    return { ...(await family.openMeta!(opts.metaCkptDir, fopts)), family };
  }
  if (!opts.modelDir) throw new TrtbError("CLI_BAD_ARG", "give a model directory (--model_dir) or a Meta checkpoint (--meta_ckpt_dir)");
  const hf = await readHFConfig(opts.modelDir);
  const family = await familyForHF(hf.architectures[0]!);
  const cfg = family.configFromHF(hf, fopts);
  const src = openHFCheckpoint(opts.modelDir);
  return { cfg, src, label: opts.modelDir, family };
}

interface Plan {
  cfg: PretrainedConfig;
  models: DecoderModel[];
  close(): void;
}

/** Open the source and build every rank's lazy weights: table/shape errors surface before anything is written. */
async function plan(opts: ConvertOptions, mapping: Mapping): Promise<Plan> {
  const { cfg, src, label, family } = await openSource(opts, mapping);
  let backend: QuantBackend | undefined;
  let closed = false;
  const close = () => {
    if (closed) return;
    closed = true;
    backend?.close();
    releaseQuantScratch();
    src.close();
  };
  try {
    if (opts.quantConfig?.quant_algo || opts.quantConfig?.kv_cache_quant_algo) {
      applyQuantConfig(cfg, opts.quantConfig);
      backend = quantBackend(opts.device ?? "cpu");
    }
    const models = Array.from({ length: mapping.worldSize }, (_, r) => {
      const model = new DecoderModel(family, cfg, mapping.withRank(r));
      model.load(convertRank({ cfg, mapping: model.mapping, src, srcLabel: label, quantBackend: backend, calibration: opts.calibration }, family.table(cfg, src)));
      return model;
    });
    return { cfg, models, close };
  } catch (e) {
    close();
    throw e;
  }
}

function mappingOf(opts: ConvertOptions): Mapping {
  return opts.mapping ?? new Mapping({ tpSize: opts.tpSize ?? 1, ppSize: opts.ppSize ?? 1 });
}

/** Write the rank files of `ranks` (used directly, and by each worker of a parallel conversion). */
export async function writeRanks(opts: ConvertOptions, ranks: readonly number[], onProgress: (rank: number, done: number) => void): Promise<void> {
  const p = await plan(opts, mappingOf(opts));
  try {
    for (const r of ranks) p.models[r]!.saveCheckpoint(opts.outputDir, { saveConfig: false, allowNonfinite: opts.allowNonfinite, onProgress: (done) => onProgress(r, done) });
  } finally {
    p.close();
    await writeBehindIdle(); // their descriptors close on this thread's event loop
  }
}

/** The serialisable part of the options, sent to worker threads. */
function workerOptions(opts: ConvertOptions, mapping: Mapping) {
  const { onProgress: _p, mapping: _m, ...rest } = opts;
  return { ...rest, mappingJSON: { tpSize: mapping.tpSize, ppSize: mapping.ppSize, moeTpSize: mapping.moeTpSize, moeEpSize: mapping.moeEpSize } };
}
export type WorkerOptions = ReturnType<typeof workerOptions>;

/**
 * Write the ranks in `workers` groups at once (ranks r, r + workers, …): the first group on this
 * thread, from the plan already open here, each other group in a worker thread of its own (started
 * first, so it loads and plans while this thread writes). Worker progress arrives when this thread
 * has written its own ranks and waits; a failure anywhere fails the conversion.
 */
async function writeInWorkers(opts: ConvertOptions, p: Plan, mapping: Mapping, workers: number, onProgress: (rank: number, done: number) => void): Promise<void> {
  const groups: number[][] = Array.from({ length: workers }, () => []);
  for (let r = 0; r < mapping.worldSize; r++) groups[r % workers]!.push(r);
  const threads: Worker[] = [];
  try {
    const others = Promise.all(groups.slice(1).map((ranks) => new Promise<void>((resolve, reject) => {
      const w = new Worker(new URL("./convert-worker.ts", import.meta.url).href);
      threads.push(w);
      w.onmessage = (e: MessageEvent) => {
        const m = e.data as { type: "progress"; rank: number; done: number } | { type: "done" } | { type: "error"; code?: string; message: string };
        if (m.type === "progress") onProgress(m.rank, m.done);
        else if (m.type === "done") resolve();
        else reject(new TrtbError((m.code ?? "CONV_WORKER") as ErrorCode, m.message));
      };
      w.onerror = (e) => reject(new TrtbError("CONV_WORKER", `conversion worker failed: ${e.message}`));
      w.postMessage({ opts: workerOptions(opts, mapping), ranks });
    })));
    others.catch(() => {}); // awaited below; a failure while this thread writes must not go unhandled
    for (const r of groups[0]!) saveRank(opts, p.models[r]!, onProgress);
    await others;
  } finally {
    for (const t of threads) t.terminate();
  }
}

function saveRank(opts: ConvertOptions, model: DecoderModel, onProgress: (rank: number, done: number) => void): void {
  const r = model.mapping.rank;
  model.saveCheckpoint(opts.outputDir, { saveConfig: false, allowNonfinite: opts.allowNonfinite, onProgress: (done) => onProgress(r, done) });
  log.debug(`rank ${r}: ${model.weights.size} tensors`);
}

/** `workers` when not given (see ConvertOptions.workers). */
function defaultWorkers(opts: ConvertOptions): number {
  const quantizing = opts.quantConfig?.quant_algo || opts.quantConfig?.kv_cache_quant_algo || opts.calibration;
  return quantizing ? 1 : Math.max(1, availableParallelism());
}

export async function convertCheckpoint(opts: ConvertOptions): Promise<ConvertResult> {
  const t0 = performance.now();
  const mapping = mappingOf(opts);
  const tokSrc = opts.tokenizerDir === false ? undefined : (opts.tokenizerDir ?? opts.modelDir ?? opts.metaCkptDir);
  if (typeof opts.tokenizerDir === "string") checkTokenizerDir(opts.tokenizerDir);
  const p = await plan(opts, mapping);
  try {
    // Refused before the first write: an output that is, holds or sits in an input, or cannot be written.
    guardOutput(opts.outputDir, "--output_dir", [
      opts.modelDir && { path: opts.modelDir, what: "--model_dir" },
      opts.metaCkptDir && { path: opts.metaCkptDir, what: "--meta_ckpt_dir" },
      typeof opts.tokenizerDir === "string" && { path: opts.tokenizerDir, what: "--tokenizer_dir" },
    ]);
  } catch (e) {
    p.close();
    throw e;
  }
  const sizes = p.models.map((m) => m.totalBytes());
  const total = sizes.reduce((a, b) => a + b, 0);
  const doneByRank = new Array<number>(mapping.worldSize).fill(0);
  const progress = (rank: number, done: number) => {
    doneByRank[rank] = done;
    opts.onProgress?.(doneByRank.reduce((a, b) => a + b, 0), total, rank);
  };
  try {
    prepareCheckpointDir(opts.outputDir);
    const workers = Math.min(opts.workers ?? defaultWorkers(opts), mapping.worldSize);
    if (workers > 1) await writeInWorkers(opts, p, mapping, workers, progress);
    else for (const model of p.models) saveRank(opts, model, progress);
    // Tokenizer files travel with the checkpoint (before config.json: a complete-looking checkpoint has them).
    const tokFiles = tokSrc ? carryTokenizerFiles(tokSrc, opts.outputDir) : [];
    if (tokFiles.length) log.debug(`copied ${tokFiles.join(", ")} from ${tokSrc}`);
    writeFileAtomic(join(opts.outputDir, "config.json"), configToJSONText(p.cfg));
    const files = [join(opts.outputDir, "config.json"), ...p.models.map((m) => join(opts.outputDir, m.rankFileName))];
    return { config: p.cfg, files, tokenizerFiles: tokFiles, bytes: total, seconds: (performance.now() - t0) / 1000 };
  } finally {
    p.close();
    await writeBehindIdle();
  }
}
