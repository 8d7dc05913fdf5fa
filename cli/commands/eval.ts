/**
 * `trtllm eval`: perplexity of a checkpoint (CPU reference runner) or an engine (GPU) over fixed
 * windows of a .txt / .jsonl / input_ids .safetensors file; with --reference, KL(ref‖candidate)
 * mean / p99 / max, top-1 agreement and the first greedy divergence (llama-perplexity
 * --kl-divergence). Prints the convention line, then the figures; --json prints the result object.
 * All logic is in src/eval.ts.
 */
import { defineCommand } from "citty";
import { EVAL_DEFAULT_WINDOW, type EvalBos, evaluate, type EvalResult, guardOutput, log, setLogLevel, TrtbError, writeEvalJson } from "../../src/index.ts";
import { commonArgs, intArg, oneOfArg, optIntArg } from "./_shared.ts";

const f = (x: number, d = 4) => x.toFixed(d);

function figures(r: EvalResult): string[] {
  const lines = [
    `model      ${r.model.dir} (${r.model.kind})`,
    `ppl        ${f(r.ppl)}   (nll ${f(r.nll, 5)} nats/token over ${r.convention.tokensScored} tokens)`,
    `speed      ${f(r.tokensPerSecond, 1)} tok/s (${r.convention.windows}×${r.convention.window} tokens in ${f(r.seconds, 2)} s)`,
  ];
  if (r.reference && r.kl) {
    const d = r.firstGreedyDivergence;
    lines.push(
      `reference  ${r.reference.dir} (${r.reference.kind}): ppl ${f(r.referencePpl!)}, ${f(r.reference.tokensPerSecond, 1)} tok/s`,
      `KL(ref‖model)  mean ${r.kl.mean.toExponential(4)}  p99 ${r.kl.p99.toExponential(4)}  max ${r.kl.max.toExponential(4)}`,
      `top-1 agreement  ${f(100 * r.top1Agreement!, 2)}%`,
      `first greedy divergence  ${d ? `window ${d.window}, position ${d.position} (stream token ${d.streamIndex}): reference ${d.referenceToken}, model ${d.candidateToken}` : "none"}`,
    );
  }
  return lines;
}

export default defineCommand({
  meta: {
    name: "eval",
    description: "Perplexity of a checkpoint (CPU) or engine (GPU) over fixed windows of a text / jsonl / input_ids file (llama-perplexity's convention); " +
      "with --reference also KL(reference‖model), top-1 agreement and the first greedy divergence",
  },
  args: {
    checkpoint_dir: { type: "string", description: "TRT-LLM checkpoint to evaluate (config.json + rank{N}.safetensors; all ranks merged; CPU reference runner)", valueHint: "dir" },
    engine_dir: { type: "string", description: "Engine directory to evaluate (config.json + rank0.engine; GPU)", valueHint: "dir" },
    dataset: {
      type: "string", required: true, valueHint: "file",
      description: ".txt (whole file, one stream, no special tokens), .jsonl (one {\"text\"} or {\"messages\"} per line, EOS between documents) or .safetensors with input_ids int32/int64 [N, S] or [S] (flattened)",
    },
    reference: { type: "string", description: "A checkpoint or engine directory (engine if it holds rank0.engine) to compare against: KL(reference‖model), top-1 agreement, first greedy divergence", valueHint: "dir" },
    window: { type: "string", description: "Tokens per window (llama-perplexity's -c)", default: String(EVAL_DEFAULT_WINDOW), valueHint: "N" },
    stride: { type: "string", description: "Tokens between window starts, 1 … window (default: window, non-overlapping); each window scores its last min(stride, window−1−⌊window/2⌋) tokens", valueHint: "N" },
    max_windows: { type: "string", description: "Evaluate only the first N windows", valueHint: "N" },
    bos: { type: "string", description: "Replace each window's first token by BOS: auto (when the tokenizer adds a BOS), on, off", default: "auto", valueHint: "auto|on|off" },
    tokenizer_dir: { type: "string", description: "Directory with tokenizer.json, when the model directories have none (e.g. the Hugging Face model directory)", valueHint: "dir" },
    device: { type: "string", description: "CUDA device for engines", default: "0", valueHint: "N" },
    json: { type: "boolean", description: "Print the result as JSON (convention, ppl, nll, tokens, seconds, tokensPerSecond, kl, top1Agreement, firstGreedyDivergence, referencePpl) instead of text", default: false },
    output_json: { type: "string", description: "Also write the JSON result to this file", valueHint: "file" },
    ...commonArgs,
  },
  async run({ args }) {
    setLogLevel(args.verbose ? "debug" : args.log_level);
    if (args.engine_dir && args.checkpoint_dir) throw new TrtbError("CLI_BAD_ARG", "give only one of --checkpoint_dir (CPU) and --engine_dir (GPU)");
    const model = args.engine_dir ?? args.checkpoint_dir;
    if (!model) throw new TrtbError("CLI_BAD_ARG", "give --checkpoint_dir (CPU reference runner) or --engine_dir (GPU engine)");
    const window = intArg("window", args.window);
    const bosFlag = oneOfArg("bos", args.bos, ["auto", "on", "off"] as const) ?? "auto";
    const bos: EvalBos = bosFlag === "auto" ? "auto" : bosFlag === "on";
    // The result file must not land on an input (checked before the run, not after it).
    if (args.output_json)
      guardOutput(args.output_json, "--output_json", [
        { path: model, what: args.engine_dir ? "--engine_dir" : "--checkpoint_dir" },
        args.reference && { path: args.reference, what: "--reference" },
        args.dataset && { path: args.dataset, what: "--dataset" },
        args.tokenizer_dir && { path: args.tokenizer_dir, what: "--tokenizer_dir" },
      ]);
    let lastDecile = -1;
    const res = await evaluate({
      model,
      data: args.dataset,
      reference: args.reference,
      window,
      stride: optIntArg("stride", args.stride, 1),
      maxWindows: optIntArg("max_windows", args.max_windows, 1),
      bos,
      tokenizerDir: args.tokenizer_dir,
      device: intArg("device", args.device, 0),
      onProgress: (done, total) => {
        const dec = Math.floor((10 * done) / total);
        if (dec > lastDecile) {
          lastDecile = dec;
          log.info(`eval: ${done}/${total} windows`);
        }
      },
    });
    if (args.output_json) writeEvalJson(args.output_json, res);
    if (args.json) console.log(JSON.stringify(res, null, 2));
    else {
      console.log(`convention: ${res.convention.summary}`);
      for (const l of figures(res)) console.log(l);
    }
    if (args.output_json) log.success(`wrote ${args.output_json}`);
  },
});
