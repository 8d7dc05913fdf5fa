/**
 * `trtllm quantize`: Hugging Face checkpoint → quantized TRT-LLM checkpoint without calibration
 * (modelopt's `quantize.py --qformat` names; `int4_awq_rtn` is the AWQ layout with round-to-nearest
 * scales). All logic is in src/quant/.
 */
import { defineCommand } from "citty";
import { log, Mapping, QFORMATS, type QuantConfig, quantize, schemeForQformat, setLogLevel, TrtbError } from "../../src/index.ts";
import { progressBar } from "./_progress.ts";
import { commonArgs, dtypeArg, intArg, nonfiniteArgs, parallelArgs } from "./_shared.ts";

export default defineCommand({
  meta: {
    name: "quantize",
    description: "Quantize a Hugging Face checkpoint into a TensorRT-LLM checkpoint without calibration data: int8_wo / int4_wo (fp weights + quant_algo, " +
      "quantized by trtllm-build for its GPU), int4_awq_rtn (modelopt AWQ layout, round-to-nearest), fp8_rowwise (e4m3 MLP weights, per-channel scales)",
  },
  args: {
    model_dir: { type: "string", description: "Hugging Face model directory (config.json + *.safetensors)", required: true, valueHint: "dir" },
    output_dir: { type: "string", description: "Where to write config.json and rank{N}.safetensors (an existing checkpoint there is replaced)", default: "tllm_checkpoint_quantized", valueHint: "dir" },
    qformat: { type: "enum", options: [...QFORMATS], description: "Quantization format", required: true },
    group_size: { type: "string", description: "int4_awq_rtn: input channels per scale (64 or 128)", default: "128", valueHint: "64|128" },
    ...dtypeArg,
    ...parallelArgs,
    device: { type: "enum", options: ["cpu", "cuda"], description: "Where the quantization kernels run (results are identical)", default: "cpu" },
    exclude_modules: { type: "string", description: "Comma-separated fnmatch patterns of modules to keep unquantized, e.g. 'transformer.layers.0.*'", valueHint: "patterns" },
    use_meta_fp8_rowwise_recipe: { type: "boolean", description: "fp8_rowwise: also keep the first and last decoder layers unquantized (Meta's Llama 3.1 recipe)", default: false },
    tokenizer_dir: { type: "string", description: "Copy the tokenizer files from here into the checkpoint (default: the model directory)", valueHint: "dir" },
    ...nonfiniteArgs,
    ...commonArgs,
  },
  async run({ args }) {
    setLogLevel(args.verbose ? "debug" : args.log_level);
    const scheme = schemeForQformat(args.qformat);
    const groupSize = intArg("group_size", args.group_size);
    if (args.qformat === "int4_awq_rtn" && groupSize !== 64 && groupSize !== 128)
      throw new TrtbError("CLI_BAD_ARG", `--group_size must be 64 or 128, got ${groupSize}`);
    const q: Partial<QuantConfig> = { quant_algo: scheme.algo };
    if (args.qformat === "int4_awq_rtn") q.group_size = groupSize;
    if (args.qformat === "fp8_rowwise") q.use_meta_recipe = args.use_meta_fp8_rowwise_recipe;
    if (args.exclude_modules) q.exclude_modules = args.exclude_modules.split(",").map((s) => s.trim()).filter(Boolean);
    const mapping = new Mapping({ tpSize: intArg("tp_size", args.tp_size), ppSize: intArg("pp_size", args.pp_size) });
    const bar = progressBar("quantizing");
    const res = await quantize(args.model_dir, args.output_dir, q, {
      mapping,
      dtype: args.dtype as "auto",
      device: args.device as "cpu" | "cuda",
      tokenizerDir: args.tokenizer_dir,
      allowNonfinite: args.allow_nonfinite,
      onProgress: (done, total, rank) => bar.update(done, total, `rank ${rank}`),
    });
    bar.done();
    const mb = res.bytes / 1e6;
    log.success(`${scheme.algo}: wrote ${res.files.length - 1} rank file(s) + config.json to ${args.output_dir}: ${mb.toFixed(1)} MB in ${res.seconds.toFixed(2)} s`);
  },
});
