#!/usr/bin/env bun
/**
 * A small client of `trtllm serve` (the OpenAI wire format, no SDK): streams a completion or a chat
 * reply to stdout, then prints the usage. Its `streamEvents` (server-sent events → JSON chunks) is
 * what bench/serve-load.ts uses.
 *
 *   bunx trtllm serve ./examples/tiny-pycode --port 8000 &
 *   bun bench/serve-client.ts --prompt $'def fibonacci(n):\n' --max-tokens 64
 *   bun bench/serve-client.ts --chat --prompt "Write a sort function"      # needs a chat template
 *   bun bench/serve-client.ts --no-stream --prompt "import os"
 */
import { parseArgs } from "node:util";

/** POST `body` with stream: true and yield each `data:` JSON chunk until `[DONE]` (or the end of the stream). */
export async function* streamEvents(url: string, body: Record<string, unknown>, signal?: AbortSignal): AsyncGenerator<any, void, undefined> {
  const r = await fetch(url, { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ ...body, stream: true }), signal });
  if (!r.ok || !r.body) throw new Error(`${url}: HTTP ${r.status}: ${await r.text()}`);
  const dec = new TextDecoder();
  let buf = "";
  for await (const bytes of r.body) {
    buf += dec.decode(bytes, { stream: true });
    let at: number;
    while ((at = buf.indexOf("\n\n")) >= 0) {
      const ev = buf.slice(0, at);
      buf = buf.slice(at + 2);
      if (!ev.startsWith("data: ")) continue;
      const data = ev.slice(6);
      if (data === "[DONE]") return;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(`${url}: ${chunk.error.message}`);
      yield chunk;
    }
  }
}

if (import.meta.main) {
  const { values: o } = parseArgs({
    args: process.argv.slice(2),
    options: {
      url: { type: "string", default: "http://127.0.0.1:8000" },
      prompt: { type: "string", default: "def fibonacci(n):\n" },
      "max-tokens": { type: "string", default: "64" },
      temperature: { type: "string", default: "0" },
      chat: { type: "boolean", default: false },
      "no-stream": { type: "boolean", default: false },
    },
  });
  const models = (await (await fetch(`${o.url}/v1/models`)).json()) as { data: { id: string }[] };
  const model = models.data[0]!.id;
  const common = { model, max_tokens: Number(o["max-tokens"]), temperature: Number(o.temperature) };
  const path = o.chat ? "/v1/chat/completions" : "/v1/completions";
  const body = o.chat ? { ...common, messages: [{ role: "user", content: o.prompt }] } : { ...common, prompt: o.prompt };
  const t0 = performance.now();
  if (o["no-stream"]) {
    const j = (await (await fetch(`${o.url}${path}`, { method: "POST", body: JSON.stringify(body) })).json()) as any;
    if (j.error) throw new Error(j.error.message);
    process.stdout.write(o.chat ? j.choices[0].message.content : j.choices[0].text);
    console.log(`\n[${j.choices[0].finish_reason}; ${JSON.stringify(j.usage)}; ${((performance.now() - t0) / 1000).toFixed(2)} s]`);
  } else {
    let first = 0;
    let usage: unknown;
    let finish: unknown;
    for await (const c of streamEvents(`${o.url}${path}`, { ...body, stream_options: { include_usage: true } })) {
      if (c.usage) usage = c.usage;
      const ch = c.choices[0];
      if (!ch) continue;
      const text = o.chat ? ch.delta?.content : ch.text;
      if (text) {
        first ||= performance.now();
        process.stdout.write(text);
      }
      finish = ch.finish_reason ?? finish;
    }
    console.log(`\n[${finish}; ${JSON.stringify(usage)}; first text after ${((first - t0) / 1000).toFixed(3)} s, ${((performance.now() - t0) / 1000).toFixed(2)} s in all]`);
  }
}
