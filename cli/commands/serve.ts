/**
 * `trtllm serve <model_dir>`: the OpenAI-compatible server (src/serve/) on an engine directory
 * (GPU), a TRT-LLM checkpoint or a Hugging Face directory (GPU engine built and cached where there
 * is a GPU, else the CPU reference runner). Prints where it listens; Ctrl-C (or SIGTERM) drains
 * the running requests and exits.
 */
import { defineCommand } from "citty";
import { log, serve, setLogLevel, TrtbError } from "../../src/index.ts";
import { commonArgs, oneOfArg, optIntArg } from "./_shared.ts";

export default defineCommand({
  meta: { name: "serve", description: "Serve a model over an OpenAI-compatible HTTP API (completions, chat, streaming, metrics) with in-flight batching" },
  args: {
    model: { type: "positional", description: "Engine directory, TRT-LLM checkpoint directory or Hugging Face model directory", required: true, valueHint: "dir" },
    host: { type: "string", description: "Address to listen on (default 127.0.0.1)", default: "127.0.0.1", valueHint: "addr" },
    port: { type: "string", description: "Port (default 8000; 0: any free port)", default: "8000", valueHint: "N" },
    backend: { type: "string", description: "auto (GPU where there is one), gpu or cpu (fp32 reference runner; not for engine directories)", default: "auto", valueHint: "kind" },
    tokenizer_dir: { type: "string", description: "Directory with tokenizer.json (default: the model directory)", valueHint: "dir" },
    served_model_name: { type: "string", description: "Model id in /v1/models and responses (default: the model path)", valueHint: "name" },
    max_batch_size: { type: "string", description: "Most sequences per step (GPU: ≤ the engine's; CPU default 16)", valueHint: "N" },
    max_num_tokens: { type: "string", description: "Most prompt tokens per prefill pass (GPU: ≤ the engine's; CPU default 512)", valueHint: "N" },
    kv_cache_tokens: { type: "string", description: "Tokens of KV cache (GPU default: what fits in 90% of free memory)", valueHint: "N" },
    device: { type: "string", description: "CUDA device (default 0)", default: "0", valueHint: "N" },
    ...commonArgs,
  },
  async run({ args }) {
    setLogLevel(args.verbose ? "debug" : args.log_level);
    const port = optIntArg("port", args.port, 0)!;
    if (port > 65535) throw new TrtbError("CLI_BAD_ARG", `--port must be ≤ 65535, got ${port}`);
    const server = await serve({
      model: args.model, host: args.host, port, backend: oneOfArg("backend", args.backend, ["auto", "gpu", "cpu"] as const), tokenizer: args.tokenizer_dir,
      servedModelName: args.served_model_name, maxBatchSize: optIntArg("max_batch_size", args.max_batch_size, 1), maxNumTokens: optIntArg("max_num_tokens", args.max_num_tokens, 1),
      maxKvTokens: optIntArg("kv_cache_tokens", args.kv_cache_tokens, 1), llmOptions: { device: optIntArg("device", args.device, 0) },
    });
    const b = server.backend;
    log.info(`serving ${server.modelName} on ${server.url} (${b.kind}: batch ≤ ${b.maxBatchSize}, ≤ ${b.maxNumTokens} prefill tokens per pass, KV cache ${b.kvBlocks} × ${b.tokensPerBlock} tokens, max_seq_len ${b.maxSeqLen})`);
    log.info("POST /v1/completions, /v1/chat/completions; GET /v1/models, /health, /metrics — Ctrl-C drains and exits");
    await new Promise<void>((resolve) => {
      let stopping = false;
      const stop = (sig: string) => {
        if (stopping) {
          log.warn(`${sig} again: cancelling the running requests`);
          void server.close({ drain: false });
          return;
        }
        stopping = true;
        const s = server.scheduler.stats;
        log.info(`${sig}: draining ${s.running} running and ${s.waiting} queued request(s); ${sig} again cancels them`);
        void server.close({ drain: true }).then(resolve);
      };
      process.on("SIGINT", () => stop("SIGINT"));
      process.on("SIGTERM", () => stop("SIGTERM"));
    });
    log.info("stopped");
  },
});
