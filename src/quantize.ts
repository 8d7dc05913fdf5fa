/**
 * `quantize(hfDir, outDir, quantConfig, opts)`: a Hugging Face checkpoint → a quantized TRT-LLM
 * checkpoint, every rank, written like `convertCheckpoint` (config.json removed first and written
 * last, rank files fsynced and renamed into place). After upstream's
 * `PretrainedModel.quantize(hf_model_dir, output_dir, dtype, mapping, quant_config, calib_dataset=…,
 * calib_batches=…, calib_max_seq_length=…, random_seed=…)`.
 *
 * Calibrated formats — FP8, W4A8_AWQ, W8A8_SQ_PER_CHANNEL, and any kv_cache_quant_algo — need
 * `calibDataset` (or precomputed `calibStats`); without one they fail with CALIB_NO_DATA (we have
 * no cnn_dailymail to fall back on, and never silently use random ids: "random" must be asked for).
 * W4A16_AWQ with calibration runs the AWQ search; without, it is round-to-nearest (int4_awq_rtn),
 * and says so.
 */
import type { KvScaleRule, CalibStats } from "./quant/calib-plan.ts";
import type { QuantConfig } from "./format/checkpoint-config.ts";
import { type AwqLoss, awqSequentialPlan, calibrationStats, planCalibration, type SmoothingKind } from "./calib/index.ts";
import { sourceRunner } from "./calib/source.ts";
import { type ConvertOptions, type ConvertResult, convertCheckpoint } from "./convert.ts";
import { modelDTypeToST, type ModelDType } from "./dtype.ts";
import { TrtbError } from "./errors.ts";
import { log } from "./log.ts";
import type { Mapping } from "./mapping.ts";
import type { QuantDevice } from "./quant/backend.ts";
import type { FloatDType } from "./quant/kernel.ts";
import { isSqPluginAlgo, SQ_PLUGIN_ALGOS } from "./quant/int8-sq-plugin.ts";

export interface QuantizeOptions {
  mapping?: Mapping;
  dtype?: ModelDType | "auto";
  /** Where the kernels run: "cpu" (libtrtb, threaded; the TS fallback without it) or "cuda". */
  device?: QuantDevice;
  useParallelEmbedding?: boolean;
  embeddingShardingDim?: 0 | 1;
  onProgress?: ConvertOptions["onProgress"];
  /** Copy the tokenizer files from here instead of `hfDir` (`false`: none); see ConvertOptions. Also the tokenizer for text calibration data. */
  tokenizerDir?: string | false;
  /** Quantize weights holding NaN/Inf (with a warning) instead of refusing them (NUM_NONFINITE). */
  allowNonfinite?: boolean;
  /** Calibration data: .txt / .jsonl (text or chat messages) / input_ids .safetensors, or "random" (random ids, warned). */
  calibDataset?: string;
  /** Samples (default 512). */
  calibSize?: number;
  /** Tokens per sample at most (default 512). */
  calibMaxSeqLength?: number;
  /** Sequences per batch (default 1; the CPU pass runs one at a time, so no effect on the numbers). */
  batchSize?: number;
  /** Seed of the "random" source (default 1234). */
  seed?: number;
  /** Statistics of an earlier pass over the same model (skips the pass; must have gram for AWQ). */
  calibStats?: CalibStats;
  /** AWQ: α grid (default 20 steps) and the clip search (default on). */
  awqGrid?: number;
  awqClip?: boolean;
  /**
   * AWQ: "sequential" (default) searches layer by layer with everything searched before already
   * quantized (src/calib/sequential.ts; runs the calibration ids again, so calibStats must carry them);
   * "onepass" searches every group on the statistics of one pass over the fp model.
   */
  awqMode?: "sequential" | "onepass";
  /** AWQ loss of qkv and fc/gate in sequential mode: "block" (default; the attention / MLP output) or "linear" (the group's output, Gram). */
  awqLoss?: AwqLoss;
  /** Sequential block loss: calibration tokens it runs per candidate (default 8192). */
  awqBlockTokens?: number;
  /** Sequential block loss: apply each candidate's clip search inside the loss (default true). */
  awqJointClip?: boolean;
  /** Sequential block loss: compare with the sub-block on the same input ("same-input") or with the fp model's ("fp-model"). */
  awqTarget?: "same-input" | "fp-model";
  /** KV-cache scale rule: "kv" (modelopt, max |k|,|v|; default) or "qkv" (TRT-LLM --int8_kv_cache, max |q|,|k|,|v|). */
  kvScaleRule?: KvScaleRule;
  /** W8A8_SQ_PER_CHANNEL / AWQ formats without their smoothing (unit prequant): the baseline the smoothing is measured against. */
  noSmoothing?: boolean;
  onCalibProgress?: (done: number, total: number) => void;
}

export interface QuantizeResult extends ConvertResult {
  /** What calibration used and cost, when there was one. */
  calibration?: { describe: string; sequences: number; tokens: number; statsSeconds: number; planSeconds: number; smoothing: SmoothingKind };
}

const NEEDS_CALIB = new Set<string>(["FP8", "W4A8_AWQ", "W8A8_SQ_PER_CHANNEL", ...SQ_PLUGIN_ALGOS]);

export async function quantize(hfDir: string, outDir: string, quantConfig: Partial<QuantConfig>, opts: QuantizeOptions = {}): Promise<QuantizeResult> {
  const algo = quantConfig.quant_algo ?? null;
  const kv = quantConfig.kv_cache_quant_algo ?? null;
  if (!algo && !kv) throw new TrtbError("QUANT_CONFIG", "quantize: quantConfig.quant_algo (or kv_cache_quant_algo) is required");
  const haveData = opts.calibDataset !== undefined || opts.calibStats !== undefined;
  const needs = (algo !== null && NEEDS_CALIB.has(algo)) || kv !== null;
  const what = [algo, kv ? `${kv} KV cache` : null].filter(Boolean).join(" + ");
  if (needs && !haveData)
    throw new TrtbError("CALIB_NO_DATA",
      `${what} needs calibration data: pass calibDataset (--calib_dataset PATH: a .txt, a .jsonl of {"text"} or {"messages"}, or an input_ids .safetensors; "random" uses random ids, which is not a calibration)`);
  const calibrate = needs || (algo === "W4A16_AWQ" && haveData);
  if (algo === "W4A16_AWQ" && !haveData) log.info("W4A16_AWQ without calibration data: round-to-nearest scales, unit prequant (int4_awq_rtn)");
  let calibration: QuantizeResult["calibration"];
  let plan;
  if (calibrate) {
    const smoothing: SmoothingKind = opts.noSmoothing ? "none" : algo === "W4A16_AWQ" || algo === "W4A8_AWQ" ? "awq" : algo === "W8A8_SQ_PER_CHANNEL" || isSqPluginAlgo(algo) ? "smoothquant" : "none";
    let stats = opts.calibStats;
    const tokDir = typeof opts.tokenizerDir === "string" ? opts.tokenizerDir : undefined;
    const runner = stats
      ? await sourceRunner({ modelDir: hfDir }, opts.dtype ?? "auto")
      : undefined;
    let r = runner;
    if (!stats) {
      const res = await calibrationStats({
        modelDir: hfDir, dtype: opts.dtype, tokenizerDir: tokDir, dataset: opts.calibDataset!, calibSize: opts.calibSize,
        calibMaxSeqLength: opts.calibMaxSeqLength, batchSize: opts.batchSize, seed: opts.seed, gram: smoothing === "awq" && opts.awqMode === "onepass", onProgress: opts.onCalibProgress,
      });
      stats = res.stats;
      r = res.runner;
    }
    const t0 = performance.now();
    const planOpts = {
      smoothing, dtype: modelDTypeToST(r!.cfg.dtype) as FloatDType, groupSize: quantConfig.group_size ?? 128, awqGrid: opts.awqGrid,
      awqClip: opts.awqClip, alpha: quantConfig.smoothquant_val ?? 0.5, kvRule: opts.kvScaleRule,
    };
    let sequential = smoothing === "awq" && (opts.awqMode ?? "sequential") === "sequential";
    if (sequential && !stats.ids) {
      log.warn("AWQ: the calibration statistics carry no token ids, so the layer-by-layer search cannot run; searching on the one-pass statistics");
      sequential = false;
    }
    plan = sequential
      ? awqSequentialPlan(r!, stats.ids!, stats.describe, { ...planOpts, loss: opts.awqLoss, blockTokens: opts.awqBlockTokens, jointClip: opts.awqJointClip, target: opts.awqTarget }).plan
      : planCalibration(r!.w, r!.cfg.num_hidden_layers, stats, planOpts);
    if (stats.outAmax) plan.outAmax = stats.outAmax;
    const planSeconds = (performance.now() - t0) / 1000;
    if (smoothing !== "none") log.info(`${smoothing === "awq" ? `AWQ search (${sequential ? "layer by layer" : "one pass"})` : "SmoothQuant scales"}: ${planSeconds.toFixed(1)} s`);
    calibration = { describe: stats.describe, sequences: stats.sequences, tokens: stats.tokens, statsSeconds: stats.seconds, planSeconds, smoothing };
  }
  const res = await convertCheckpoint({
    modelDir: hfDir,
    outputDir: outDir,
    dtype: opts.dtype,
    mapping: opts.mapping,
    useParallelEmbedding: opts.useParallelEmbedding,
    embeddingShardingDim: opts.embeddingShardingDim,
    quantConfig,
    device: opts.device,
    onProgress: opts.onProgress,
    tokenizerDir: opts.tokenizerDir,
    allowNonfinite: opts.allowNonfinite,
    calibration: plan,
  });
  return { ...res, calibration };
}
