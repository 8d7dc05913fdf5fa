/**
 * `OpenAIServer` over loopback HTTP on tiny-pycode (CPU reference runner): completions and chat,
 * streaming and not, give LLM.generate's greedy text; concurrent requests give the sequential
 * outputs; a client that disconnects frees its KV blocks; every bad request is a 400 with an
 * OpenAI-style error and the server keeps serving; echo + logprobs (lm-eval's local-completions)
 * gives the log-probabilities `trtllm eval` computes; metrics, health, drain. Then the same
 * server over the GPU runner on the CPU emulation of the engine library.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { fakeBackend } from "../../src/builder/backend.ts";
import { evaluate, readEvalStream } from "../../src/eval.ts";
import { convertCheckpoint, LLM } from "../../src/index.ts";
import { log } from "../../src/log.ts";
import { type OpenAIServer, serve } from "../../src/serve/server.ts";
import { SHARED, tempDir } from "../helpers.ts";
import { EMU_INFO, EmuContext } from "../runtime/_emu.ts";

const PYCODE = join(SHARED, "models/tiny-pycode");
const TEMPLATE = "{% for m in messages %}# {{ m.role }}: {{ m.content }}\n{% endfor %}{% if add_generation_prompt %}def {% endif %}";
const work = tempDir("trtb-serve-http-");
let llm: LLM;
let server: OpenAIServer;
let url: string;

/** tiny-pycode with a chat template (weights and tokenizer linked). */
function chatModel(dir: string): string {
  for (const f of ["config.json", "model.safetensors", "tokenizer.json", "generation_config.json"]) symlinkSync(join(PYCODE, f), join(dir, f));
  const cfg = JSON.parse(readFileSync(join(PYCODE, "tokenizer_config.json"), "utf8"));
  writeFileSync(join(dir, "tokenizer_config.json"), JSON.stringify({ ...cfg, chat_template: TEMPLATE }));
  return dir;
}

beforeAll(async () => {
  llm = await LLM.create({ model: chatModel(work.path), backend: "cpu" });
  server = await serve({ llm, port: 0, maxBatchSize: 4, maxNumTokens: 16, servedModelName: "tiny-pycode" });
  url = server.url;
});
afterAll(async () => {
  await server.close();
  llm.dispose();
  work[Symbol.dispose]();
});

/** A response's JSON body, untyped (tests read fields freely). */
const J = (r: Response): Promise<any> => r.json();
const post = (path: string, body: unknown, init: RequestInit = {}) =>
  fetch(`${url}${path}`, { method: "POST", headers: { "Content-Type": "application/json" }, body: typeof body === "string" ? body : JSON.stringify(body), ...init });

/** The JSON objects of an event stream, and whether it ended with [DONE]. */
function events(text: string): { chunks: any[]; done: boolean } {
  const parts = text.split("\n\n").filter((s) => s.length > 0);
  const done = parts.at(-1) === "data: [DONE]";
  for (const p of parts) expect(p.startsWith("data: ")).toBe(true);
  return { chunks: parts.filter((p) => p !== "data: [DONE]").map((p) => JSON.parse(p.slice(6))), done };
}

const PROMPTS = ["def fibonacci(n):\n", "import numpy as np\n\n\nclass ", "for i in range(", "x = "];
const until = async (cond: () => boolean, what: string) => {
  for (let i = 0; i < 2000 && !cond(); i++) await Bun.sleep(5);
  if (!cond()) throw new Error(`still not: ${what}`);
};

describe("OpenAIServer on the CPU runner", () => {
  test("GET /v1/models, /health, /metrics; 404 and 405", async () => {
    const m = await J(await fetch(`${url}/v1/models`));
    expect(m.object).toBe("list");
    expect(m.data[0].id).toBe("tiny-pycode");
    expect(m.data[0].max_model_len).toBe(1024);
    expect(await J(await fetch(`${url}/health`))).toEqual({ status: "ok" });
    const nf = await fetch(`${url}/v2/nope`);
    expect(nf.status).toBe(404);
    expect((await J(nf)).error.code).toBe("SERVE_NOT_FOUND");
    expect((await fetch(`${url}/v1/completions`)).status).toBe(405);
    const metrics = await (await fetch(`${url}/metrics`)).text();
    for (const name of ["trtllm_requests_waiting", "trtllm_requests_running", "trtllm_batch_occupancy", "trtllm_time_to_first_token_seconds_bucket", "trtllm_inter_token_latency_seconds_count", "trtllm_generation_tokens_total", "trtllm_kv_cache_blocks_free"])
      expect(metrics).toContain(name);
  });

  test("completions, streaming and not, text and ids, several prompts: LLM.generate's greedy text and usage", async () => {
    const want = await llm.generate(PROMPTS, { maxTokens: 24 });
    const r = await post("/v1/completions", { model: "tiny-pycode", prompt: PROMPTS[0], max_tokens: 24, temperature: 0 });
    expect(r.status).toBe(200);
    const j = await J(r);
    expect(j.object).toBe("text_completion");
    expect(j.choices).toEqual([{ index: 0, text: want[0]!.text, logprobs: null, finish_reason: "length" }]);
    expect(j.usage).toEqual({ prompt_tokens: want[0]!.promptTokens, completion_tokens: 24, total_tokens: want[0]!.promptTokens + 24 });
    // several prompts, one choice each; token ids as prompt
    const many = await J(await post("/v1/completions", { prompt: PROMPTS, max_tokens: 24, temperature: 0 }));
    expect(many.choices.map((c: any) => c.text)).toEqual(want.map((w) => w.text));
    const ids = await J(await post("/v1/completions", { prompt: want[1]!.promptTokenIds, max_tokens: 24, temperature: 0 }));
    expect(ids.choices[0].text).toBe(want[1]!.text);
    // streaming: deltas add up, finish_reason last, usage chunk, [DONE]
    const s = await post("/v1/completions", { prompt: PROMPTS[1], max_tokens: 24, temperature: 0, stream: true, stream_options: { include_usage: true } });
    expect(s.headers.get("content-type")).toContain("text/event-stream");
    const ev = events(await s.text());
    expect(ev.done).toBe(true);
    const withChoices = ev.chunks.filter((c) => c.choices.length);
    expect(withChoices.length).toBeGreaterThan(5);
    expect(withChoices.map((c) => c.choices[0].text).join("")).toBe(want[1]!.text);
    expect(withChoices.at(-1).choices[0].finish_reason).toBe("length");
    expect(ev.chunks.at(-1).usage.completion_tokens).toBe(24);
    // stop strings and eos handling as LLM.generate
    const [stopped] = await llm.generate(PROMPTS[1]!, { maxTokens: 40, stop: ["\n"] });
    const st = await J(await post("/v1/completions", { prompt: PROMPTS[1], max_tokens: 40, temperature: 0, stop: "\n" }));
    expect(st.choices[0].text).toBe(stopped!.text);
    expect(st.choices[0].finish_reason).toBe(stopped!.finishReason);
    // echo
    const echo = await J(await post("/v1/completions", { prompt: PROMPTS[2], max_tokens: 3, temperature: 0, echo: true }));
    expect(echo.choices[0].text).toBe(PROMPTS[2] + (await llm.generate(PROMPTS[2]!, { maxTokens: 3 }))[0]!.text);
    // seeded sampling equals LLM.generate's on the CPU
    const [sampled] = await llm.generate(PROMPTS[0]!, { maxTokens: 12, temperature: 0.8, topK: 30, seed: 4 });
    const sj = await J(await post("/v1/completions", { prompt: PROMPTS[0], max_tokens: 12, temperature: 0.8, top_k: 30, seed: 4 }));
    expect(sj.choices[0].text).toBe(sampled!.text);
  }, 60_000);

  test("chat completions, streaming and not: LLM.generate on the same messages", async () => {
    const messages = [{ role: "system", content: "Python only." }, { role: "user", content: "fibonacci" }];
    const [want] = await llm.generate([messages], { maxTokens: 20 });
    const j = await J(await post("/v1/chat/completions", { messages, max_tokens: 20, temperature: 0 }));
    expect(j.object).toBe("chat.completion");
    expect(j.choices[0].message).toEqual({ role: "assistant", content: want!.text });
    expect(j.usage.prompt_tokens).toBe(want!.promptTokens);
    const ev = events(await (await post("/v1/chat/completions", { messages, max_completion_tokens: 20, temperature: 0, stream: true })).text());
    expect(ev.done).toBe(true);
    expect(ev.chunks[0].choices[0].delta.role).toBe("assistant");
    expect(ev.chunks.map((c) => c.choices[0].delta.content ?? "").join("")).toBe(want!.text);
    expect(ev.chunks.at(-1).choices[0].finish_reason).toBe("length");
    expect(ev.chunks.every((c) => c.object === "chat.completion.chunk")).toBe(true);
    // chat logprobs
    const lp = await J(await post("/v1/chat/completions", { messages, max_tokens: 4, temperature: 0, logprobs: true, top_logprobs: 2 }));
    expect(lp.choices[0].logprobs.content).toHaveLength(4);
    expect(lp.choices[0].logprobs.content[0].top_logprobs).toHaveLength(2);
    expect(lp.choices[0].logprobs.content[0].top_logprobs[0].logprob).toBe(lp.choices[0].logprobs.content[0].logprob); // greedy: the top one
  }, 60_000);

  test("concurrent requests (streaming and not, more than the batch) give the sequential outputs", async () => {
    const bodies = Array.from({ length: 7 }, (_, i) => ({ prompt: PROMPTS[i % PROMPTS.length], max_tokens: 10 + i, temperature: 0, stream: i % 2 === 1 }));
    const text = async (r: Response, stream: boolean) => (stream ? events(await r.text()).chunks.map((c) => c.choices[0]?.text ?? "").join("") : (await J(r)).choices[0].text);
    const sequential: string[] = [];
    for (const b of bodies) sequential.push(await text(await post("/v1/completions", b), b.stream));
    const concurrent = await Promise.all(bodies.map(async (b) => text(await post("/v1/completions", b), b.stream)));
    expect(concurrent).toEqual(sequential);
    const want = await llm.generate(bodies.map((b) => b.prompt!), { maxTokens: 16 });
    bodies.forEach((b, i) => expect(want[i]!.text.startsWith(concurrent[i]!)).toBe(true));
    expect(server.scheduler.stats.freeKvBlocks).toBe(server.scheduler.stats.kvBlocks);
  }, 60_000);

  test("a client that disconnects cancels its request and frees its blocks (streaming and not)", async () => {
    const st = () => server.scheduler.stats;
    const cancelled0 = server.metrics.finished.get({ reason: "cancelled" });
    const ac = new AbortController();
    const r = await post("/v1/completions", { prompt: PROMPTS[0], max_tokens: 900, temperature: 0, ignore_eos: true, stream: true }, { signal: ac.signal });
    const reader = r.body!.getReader();
    await reader.read(); // a first chunk: it runs
    expect(st().running).toBe(1);
    expect(st().freeKvBlocks).toBeLessThan(st().kvBlocks);
    ac.abort();
    await until(() => st().running === 0 && st().freeKvBlocks === st().kvBlocks, "the streaming request's blocks freed");
    // not streaming: aborted while it runs
    const ac2 = new AbortController();
    const p = post("/v1/completions", { prompt: PROMPTS[1], max_tokens: 900, temperature: 0, ignore_eos: true }, { signal: ac2.signal }).catch((e) => e);
    await until(() => st().running === 1, "the request running");
    ac2.abort();
    expect(await p).toBeInstanceOf(Error);
    await until(() => st().running === 0 && st().freeKvBlocks === st().kvBlocks, "the request's blocks freed");
    expect(server.metrics.finished.get({ reason: "cancelled" })).toBe(cancelled0 + 2);
    const ok = await post("/v1/completions", { prompt: PROMPTS[3], max_tokens: 3, temperature: 0 });
    expect(ok.status).toBe(200);
  }, 60_000);

  test("every bad request is a 400 with an OpenAI error; the server keeps serving", async () => {
    const cases: [string, unknown, string, string?][] = [
      ["/v1/completions", "{not json", "SERVE_BAD_REQUEST"],
      ["/v1/completions", "[1, 2]", "SERVE_BAD_REQUEST"],
      ["/v1/completions", {}, "SERVE_BAD_REQUEST", "prompt"],
      ["/v1/completions", { prompt: 5 }, "SERVE_BAD_REQUEST", "prompt"],
      ["/v1/completions", { prompt: [] }, "SERVE_BAD_REQUEST", "prompt"],
      ["/v1/completions", { prompt: "x", max_tokens: 0 }, "SERVE_BAD_REQUEST", "max_tokens"],
      ["/v1/completions", { prompt: "x", max_tokens: -3 }, "SERVE_BAD_REQUEST", "max_tokens"],
      ["/v1/completions", { prompt: "x", max_tokens: "10" }, "SERVE_BAD_REQUEST", "max_tokens"],
      ["/v1/completions", { prompt: "x", max_tokens: 2.5 }, "SERVE_BAD_REQUEST", "max_tokens"],
      ["/v1/completions", { prompt: "x", temperature: "hot" }, "SERVE_BAD_REQUEST", "temperature"],
      ["/v1/completions", { prompt: "x", top_p: 0 }, "SERVE_BAD_REQUEST", "top_p"],
      ["/v1/completions", { prompt: "x", seed: "abc" }, "SERVE_BAD_REQUEST", "seed"],
      ["/v1/completions", { prompt: "x", stream: "yes" }, "SERVE_BAD_REQUEST", "stream"],
      ["/v1/completions", { prompt: "x", stop: [1] }, "SERVE_BAD_REQUEST", "stop"],
      ["/v1/completions", { prompt: "x", logprobs: 50 }, "SERVE_BAD_REQUEST", "logprobs"],
      ["/v1/completions", { prompt: "x", echo: 1 }, "SERVE_BAD_REQUEST", "echo"],
      ["/v1/completions", { prompt: "x", model: 7 }, "SERVE_BAD_REQUEST", "model"],
      ["/v1/completions", { prompt: "x", n: 2 }, "SERVE_UNSUPPORTED", "n"],
      ["/v1/completions", { prompt: "x", best_of: 3 }, "SERVE_UNSUPPORTED", "best_of"],
      ["/v1/completions", { prompt: "x", use_beam_search: true }, "SERVE_UNSUPPORTED", "use_beam_search"],
      ["/v1/completions", { prompt: "x", presence_penalty: 0.5 }, "SERVE_UNSUPPORTED", "presence_penalty"],
      ["/v1/completions", { prompt: "" }, "TOK_EMPTY_PROMPT"],
      ["/v1/completions", { prompt: Array(1100).fill(5) }, "RUN_PROMPT_TOO_LONG"],
      ["/v1/completions", { prompt: [1, 99999] }, "SERVE_BAD_REQUEST", "prompt"],
      ["/v1/completions", { prompt: "x", stream: true, n: 2 }, "SERVE_UNSUPPORTED", "n"],
      ["/v1/chat/completions", { prompt: "x" }, "SERVE_BAD_REQUEST", "messages"],
      ["/v1/chat/completions", { messages: [{ content: "hi" }] }, "SERVE_BAD_REQUEST", "messages[0].role"],
      ["/v1/chat/completions", { messages: [{ role: "user", content: 3 }] }, "SERVE_BAD_REQUEST", "messages[0].content"],
      ["/v1/chat/completions", { messages: [{ role: "user", content: "hi" }], top_logprobs: 2 }, "SERVE_BAD_REQUEST", "top_logprobs"],
    ];
    for (const [path, body, code, param] of cases) {
      const r = await post(path, body);
      const j = await J(r);
      expect({ body, status: r.status, code: j.error?.code }).toEqual({ body, status: 400, code });
      expect(j.error.type).toBe("invalid_request_error");
      expect(typeof j.error.message).toBe("string");
      if (param) expect(j.error.param).toBe(param);
    }
    // unknown fields are ignored; the server still serves
    const ok = await post("/v1/completions", { prompt: PROMPTS[0], max_tokens: 2, temperature: 0, some_future_field: { a: 1 } });
    expect(ok.status).toBe(200);
    expect(server.scheduler.stats.freeKvBlocks).toBe(server.scheduler.stats.kvBlocks);
  }, 60_000);

  test("lm-eval local-completions (echo + logprobs over a prompt of ids) = trtllm eval's log-probabilities", async () => {
    // the first window of `trtllm eval --window 48` on held-out text, BOS in front as eval puts it
    const ckpt = join(work.path, "ckpt");
    await convertCheckpoint({ modelDir: PYCODE, outputDir: ckpt });
    const data = join(work.path, "heldout.txt");
    writeFileSync(data, readFileSync(join(PYCODE, "heldout-public.py.txt"), "utf8").slice(0, 4000));
    const W = 48;
    const res = await evaluate({ model: ckpt, data, window: W, maxWindows: 1 });
    const ids = readEvalStream(data, llm.tokenizer).ids.slice(0, W);
    ids[0] = res.convention.bos!;
    const r = await post("/v1/completions", { model: "tiny-pycode", prompt: ids, max_tokens: 1, temperature: 0, logprobs: 1, echo: true, seed: 1234 });
    const j = await J(r);
    const lp = j.choices[0].logprobs;
    expect(lp.token_logprobs).toHaveLength(W + 1); // the prompt, then the generated token
    expect(lp.token_logprobs[0]).toBeNull();
    expect(lp.top_logprobs[0]).toBeNull();
    const first = res.convention.firstScoredPosition;
    let nll = 0;
    for (let p = first; p < W; p++) nll -= lp.token_logprobs[p];
    expect(Math.abs(nll / (W - first) - res.nll)).toBeLessThan(1e-9);
    // is_greedy as lm-eval computes it: the top token of each position against the prompt's
    const greedy = lp.top_logprobs.slice(first, W).map((t: Record<string, number>, i: number) => Object.keys(t).reduce((a, b) => (t[a]! >= t[b]! ? a : b)) === lp.tokens[first + i]);
    expect(greedy.length).toBe(W - first);
    // top-1 logprob ≥ the token's own
    lp.top_logprobs.slice(1).forEach((t: Record<string, number>, i: number) => expect(Math.max(...Object.values(t))).toBeGreaterThanOrEqual(lp.token_logprobs[i + 1] - 1e-12));
  }, 120_000);

  test("close({drain}): new requests get 503 while a running one finishes", async () => {
    const s = await serve({ llm, port: 0, maxBatchSize: 2 });
    const running = post2(s.url, { prompt: PROMPTS[0], max_tokens: 40, temperature: 0, ignore_eos: true, stream: true });
    await until(() => s.scheduler.stats.running === 1, "the request running");
    const closing = s.close({ drain: true });
    const late = await post2(s.url, { prompt: "x", max_tokens: 2 });
    expect(late.status).toBe(503);
    expect((await J(late)).error.code).toBe("SERVE_SHUTTING_DOWN");
    const ev = events(await (await running).text());
    expect(ev.done).toBe(true);
    expect(ev.chunks.at(-1).choices[0].finish_reason).toBe("length");
    await closing;
  }, 60_000);
});

const post2 = (base: string, body: unknown) => fetch(`${base}/v1/completions`, { method: "POST", body: JSON.stringify(body) });

describe("OpenAIServer on the GPU runner (CPU emulation of the engine library)", () => {
  test("completions from an engine built from the HF dir: the CPU runner's greedy text, concurrent", async () => {
    const savedWarn = log.warn;
    log.warn = Object.assign(() => {}, { raw: () => {} }) as typeof log.warn;
    try {
      await using s = await serve({
        model: PYCODE, backend: "gpu", port: 0,
        llmOptions: {
          cacheDir: false, buildBackend: fakeBackend(), buildConfig: { max_batch_size: 2, max_num_tokens: 32, max_seq_len: 64 },
          runner: { context: { ctx: new EmuContext(), info: EMU_INFO }, maxKvTokens: 256, numerics: "exact" },
        },
      });
      expect(s.backend.kind).toBe("gpu");
      const want = await llm.generate(PROMPTS.slice(0, 3), { maxTokens: 4 });
      const outs = await Promise.all(PROMPTS.slice(0, 3).map(async (p, i) => {
        const r = await post2(s.url, { prompt: p, max_tokens: 4, temperature: 0, stream: i === 1 });
        return i === 1 ? events(await r.text()).chunks.map((c) => c.choices[0].text).join("") : (await J(r)).choices[0].text;
      }));
      expect(outs).toEqual(want.map((w) => w.text));
      const long = await post2(s.url, { prompt: "x " .repeat(80), max_tokens: 2 });
      expect(long.status).toBe(400);
      expect((await J(long)).error.code).toBe("RUN_PROMPT_TOO_LONG");
      expect(s.scheduler.stats.freeKvBlocks).toBe(s.scheduler.stats.kvBlocks);
    } finally {
      log.warn = savedWarn;
    }
  }, 120_000);
});
