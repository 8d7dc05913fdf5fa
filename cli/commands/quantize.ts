/**
 * `trtllm quantize`: Hugging Face checkpoint → quantized TRT-LLM checkpoint, with modelopt's
 * `quantize.py` flag names (`--qformat`, `--calib_dataset`, `--calib_size`, `--calib_max_seq_length`,
 * `--batch_size`, `--seed`, `--kv_cache_dtype`, `--awq_block_size`) and the legacy converter's
 * (`--smoothquant α`, `--int8_kv_cache`). All logic is in src/quant/ and src/calib/.
 */
import { defineCommand } from "citty";
import {
  CALIB_DEFAULT_MAX_SEQ_LENGTH, CALIB_DEFAULT_SEED, CALIB_DEFAULT_SIZE, CALIBRATED_QFORMATS, log, Mapping, QFORMAT_ALGO, QFORMATS, type QuantConfig, quantize,
  schemeForQformat, setLogLevel, TrtbError,
} from "../../src/index.ts";
import { sqPluginAlgo } from "../../src/quant/int8-sq-plugin.ts";
import { progressBar } from "./_progress.ts";
import { commonArgs, dtypeArg, intArg, nonfiniteArgs, optIntArg, parallelArgs } from "./_shared.ts";

export default defineCommand({
  meta: {
    name: "quantize",
    description: "Quantize a Hugging Face checkpoint into a TensorRT-LLM checkpoint. Without calibration: int8_wo / int4_wo, int4_awq_rtn, fp8_rowwise. " +
      "With calibration data (--calib_dataset): fp8 (per-tensor FP8), int4_awq (AWQ search), w4a8_awq, int8_sq (SmoothQuant W8A8; --smoothquant α --per_channel/--per_token: the legacy plugin layout), and --kv_cache_dtype int8|fp8 on any of them",
  },
  args: {
    model_dir: { type: "string", description: "Hugging Face model directory (config.json + *.safetensors)", required: true, valueHint: "dir" },
    output_dir: { type: "string", description: "Where to write config.json and rank{N}.safetensors (an existing checkpoint there is replaced)", default: "tllm_checkpoint_quantized", valueHint: "dir" },
    qformat: { type: "enum", options: [...QFORMATS], description: "Quantization format (optional with --kv_cache_dtype / --int8_kv_cache / --smoothquant)" },
    group_size: { type: "string", description: "AWQ formats: input channels per scale (64 or 128)", default: "128", valueHint: "64|128" },
    awq_block_size: { type: "string", description: "modelopt's name for --group_size", valueHint: "64|128" },
    calib_dataset: { type: "string", description: "Calibration data: .txt (one text, cut into chunks), .jsonl ({\"text\"} or {\"messages\"} per line) or an input_ids .safetensors; 'random' = random ids (not a calibration)", valueHint: "path" },
    calib_size: { type: "string", description: `Calibration samples (default ${CALIB_DEFAULT_SIZE})`, valueHint: "n" },
    calib_max_seq_length: { type: "string", description: `Tokens per calibration sample at most (default ${CALIB_DEFAULT_MAX_SEQ_LENGTH})`, valueHint: "n" },
    batch_size: { type: "string", description: "Calibration batch size (the CPU statistics pass runs one sequence at a time: no effect on the numbers)", valueHint: "n" },
    seed: { type: "string", description: `Seed for --calib_dataset random (default ${CALIB_DEFAULT_SEED})`, valueHint: "n" },
    kv_cache_dtype: { type: "string", description: "Quantize the KV cache: int8 or fp8 (kv_cache_scaling_factor per layer = max(|k|,|v|)/bound)", valueHint: "int8|fp8" },
    int8_kv_cache: { type: "boolean", description: "Legacy: INT8 KV cache with TRT-LLM's scale max(|q|,|k|,|v|)/127", default: false },
    smoothquant: { type: "string", description: "Legacy: SmoothQuant with this α. Alone: int8_sq (modelopt W8A8_SQ_PER_CHANNEL); with --per_channel and/or --per_token: the TRT-LLM converter's plugin layout (W8A8_SQ_*_PLUGIN)", valueHint: "alpha" },
    per_channel: { type: "boolean", description: "With --smoothquant: the TRT-LLM converter's plugin layout with per-output-channel int8 weight scales (W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN with --per_token, else W8A8_SQ_PER_CHANNEL_PER_TENSOR_PLUGIN)", default: false },
    per_token: { type: "boolean", description: "With --smoothquant: the plugin layout with dynamic per-token int8 activation scales (W8A8_SQ_PER_CHANNEL_PER_TOKEN_PLUGIN with --per_channel, else W8A8_SQ_PER_TENSOR_PER_TOKEN_PLUGIN)", default: false },
    awq_clip: { type: "boolean", description: "AWQ formats: run the clipping search after the scale search", default: true },
    awq_mode: { type: "enum", options: ["sequential", "onepass"], description: "AWQ formats: search layer by layer on the already quantized model (sequential, default) or on one pass over the fp model (onepass, faster)", default: "sequential" },
    ...dtypeArg,
    ...parallelArgs,
    device: { type: "enum", options: ["cpu", "cuda"], description: "Where the quantization kernels run (results are identical)", default: "cpu" },
    exclude_modules: { type: "string", description: "Comma-separated fnmatch patterns of modules to keep unquantized, e.g. 'transformer.layers.0.*'", valueHint: "patterns" },
    use_meta_fp8_rowwise_recipe: { type: "boolean", description: "fp8_rowwise: also keep the first and last decoder layers unquantized (Meta's Llama 3.1 recipe)", default: false },
    tokenizer_dir: { type: "string", description: "Copy the tokenizer files from here into the checkpoint (default: the model directory); also tokenizes text calibration data", valueHint: "dir" },
    ...nonfiniteArgs,
    ...commonArgs,
  },
  async run({ args }) {
    setLogLevel(args.verbose ? "debug" : args.log_level);
    const plugin = args.per_channel || args.per_token;
    if (plugin && args.smoothquant === undefined)
      throw new TrtbError("QUANT_CONFIG", `--${args.per_token ? "per_token" : "per_channel"} selects a legacy SmoothQuant plugin variant: it needs --smoothquant α`);
    const pluginAlgo = plugin ? sqPluginAlgo(args.per_channel, args.per_token) : undefined;
    let qformat = args.qformat as string | undefined;
    if (args.smoothquant !== undefined) {
      if (qformat && qformat !== "int8_sq") throw new TrtbError("CLI_BAD_ARG", `--smoothquant writes int8_sq${plugin ? " (plugin layout)" : ""}; it cannot be combined with --qformat ${qformat}`);
      qformat = "int8_sq";
    }
    if (qformat && !(QFORMATS as readonly string[]).includes(qformat)) throw new TrtbError("CLI_BAD_ARG", `--qformat must be one of ${QFORMATS.join(", ")}, got ${JSON.stringify(qformat)}`);
    let kv: "INT8" | "FP8" | undefined;
    if (args.kv_cache_dtype !== undefined) {
      const k = String(args.kv_cache_dtype).toLowerCase();
      if (k !== "int8" && k !== "fp8") throw new TrtbError("CLI_BAD_ARG", `--kv_cache_dtype must be int8 or fp8, got ${JSON.stringify(args.kv_cache_dtype)}`);
      kv = k === "int8" ? "INT8" : "FP8";
    }
    if (args.int8_kv_cache) {
      if (kv === "FP8") throw new TrtbError("CLI_BAD_ARG", "--int8_kv_cache contradicts --kv_cache_dtype fp8");
      kv = "INT8";
    }
    if (!qformat && !kv) throw new TrtbError("CLI_BAD_ARG", "give --qformat (or --kv_cache_dtype / --int8_kv_cache / --smoothquant)");
    const groupSize = intArg("group_size", args.awq_block_size ?? args.group_size);
    const q: Partial<QuantConfig> = {};
    if (qformat) {
      schemeForQformat(qformat);
      q.quant_algo = pluginAlgo ?? QFORMAT_ALGO[qformat as keyof typeof QFORMAT_ALGO];
      if (q.quant_algo === "W4A16_AWQ" || q.quant_algo === "W4A8_AWQ") {
        if (groupSize !== 64 && groupSize !== 128) throw new TrtbError("CLI_BAD_ARG", `--group_size must be 64 or 128, got ${groupSize}`);
        q.group_size = groupSize;
      }
      if (qformat === "fp8_rowwise") q.use_meta_recipe = args.use_meta_fp8_rowwise_recipe;
      if (args.smoothquant !== undefined) {
        const a = Number(args.smoothquant);
        if (!(a >= 0 && a <= 1)) throw new TrtbError("CLI_BAD_ARG", `--smoothquant α must be in [0, 1], got ${JSON.stringify(args.smoothquant)}`);
        q.smoothquant_val = a;
      }
    }
    if (kv) q.kv_cache_quant_algo = kv;
    if (args.exclude_modules) q.exclude_modules = args.exclude_modules.split(",").map((s) => s.trim()).filter(Boolean);
    const calibrated = (qformat !== undefined && (CALIBRATED_QFORMATS as readonly string[]).includes(qformat)) || kv !== undefined;
    if (calibrated && args.calib_dataset === undefined)
      throw new TrtbError("CALIB_NO_DATA", `${qformat ?? ""}${kv ? `${qformat ? " + " : ""}${kv} KV cache` : ""} needs calibration data: pass --calib_dataset PATH (.txt, .jsonl or input_ids .safetensors; 'random' for random ids, which is not a calibration)`);
    if (!calibrated && args.calib_dataset !== undefined) log.warn(`--calib_dataset is not used by ${qformat} (no calibration)`);
    const mapping = new Mapping({ tpSize: intArg("tp_size", args.tp_size), ppSize: intArg("pp_size", args.pp_size) });
    const bar = progressBar("quantizing");
    const res = await quantize(args.model_dir, args.output_dir, q, {
      mapping,
      dtype: args.dtype as "auto",
      device: args.device as "cpu" | "cuda",
      tokenizerDir: args.tokenizer_dir,
      allowNonfinite: args.allow_nonfinite,
      calibDataset: calibrated ? args.calib_dataset : undefined,
      calibSize: optIntArg("calib_size", args.calib_size, 1),
      calibMaxSeqLength: optIntArg("calib_max_seq_length", args.calib_max_seq_length, 1),
      batchSize: optIntArg("batch_size", args.batch_size, 1),
      seed: optIntArg("seed", args.seed, 0),
      awqClip: args.awq_clip,
      awqMode: args.awq_mode as "sequential" | "onepass",
      kvScaleRule: args.int8_kv_cache ? "qkv" : "kv",
      onProgress: (done, total, rank) => bar.update(done, total, `rank ${rank}`),
    });
    bar.done();
    const mb = res.bytes / 1e6;
    if (res.calibration) log.info(`calibrated on ${res.calibration.describe}: statistics ${res.calibration.statsSeconds.toFixed(1)} s, ${res.calibration.smoothing} ${res.calibration.planSeconds.toFixed(1)} s`);
    log.success(`${[q.quant_algo, kv ? `KV ${kv}` : null].filter(Boolean).join(" + ")}: wrote ${res.files.length - 1} rank file(s) + config.json to ${args.output_dir}: ${mb.toFixed(1)} MB in ${res.seconds.toFixed(2)} s`);
  },
});
