/**
 * The server's metrics in the Prometheus text format (version 0.0.4) for `GET /metrics`: counters
 * (requests by route and status, finished requests by reason, prompt and generated tokens,
 * scheduler iterations), gauges read when scraped (queue depth, running requests, batch occupancy,
 * KV blocks) and histograms (time to first token, inter-token latency, request latency, decode
 * batch size per iteration, prefill tokens per iteration).
 */

export class Histogram {
  readonly counts: number[];
  sum = 0;
  count = 0;
  constructor(readonly name: string, readonly help: string, readonly buckets: readonly number[]) {
    this.counts = buckets.map(() => 0);
  }
  observe(v: number): void {
    this.sum += v;
    this.count++;
    for (let i = 0; i < this.buckets.length; i++) if (v <= this.buckets[i]!) this.counts[i]!++;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} histogram`];
    this.buckets.forEach((b, i) => out.push(`${this.name}_bucket{le="${b}"} ${this.counts[i]}`));
    out.push(`${this.name}_bucket{le="+Inf"} ${this.count}`, `${this.name}_sum ${this.sum}`, `${this.name}_count ${this.count}`);
    return out;
  }
}

const labelKey = (labels: Record<string, string>) => Object.entries(labels).map(([a, b]) => `${a}="${b.replace(/["\\\n]/g, "_")}"`).join(",");

class Counter {
  readonly values = new Map<string, number>();
  constructor(readonly name: string, readonly help: string) {}
  inc(labels: Record<string, string> = {}, by = 1): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  get(labels: Record<string, string> = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  render(): string[] {
    const out = [`# HELP ${this.name} ${this.help}`, `# TYPE ${this.name} counter`];
    if (this.values.size === 0) out.push(`${this.name} 0`);
    for (const [k, v] of this.values) out.push(k ? `${this.name}{${k}} ${v}` : `${this.name} ${v}`);
    return out;
  }
}

const LATENCY = [0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 20, 40, 80];
const POW2 = (max: number) => {
  const b: number[] = [];
  for (let v = 1; v < max; v *= 2) b.push(v);
  b.push(max);
  return b;
};

/** Gauges are read when scraped. */
export interface GaugeSource {
  waiting(): number;
  running(): number;
  maxBatchSize: number;
  kvBlocks: number;
  freeKvBlocks(): number;
}

export class ServerMetrics {
  readonly requests = new Counter("trtllm_http_requests_total", "HTTP requests by route and status code");
  readonly finished = new Counter("trtllm_requests_finished_total", "Generation requests ended, by reason (stop, length, cancelled, error)");
  readonly promptTokens = new Counter("trtllm_prompt_tokens_total", "Prompt tokens of admitted requests");
  readonly generationTokens = new Counter("trtllm_generation_tokens_total", "Tokens generated");
  readonly iterations = new Counter("trtllm_scheduler_iterations_total", "Scheduler iterations (a prefill pass and/or a decode step)");
  readonly ttft = new Histogram("trtllm_time_to_first_token_seconds", "Time from arrival to the first generated token", LATENCY);
  readonly itl = new Histogram("trtllm_inter_token_latency_seconds", "Time between consecutive tokens of a request", LATENCY);
  readonly e2e = new Histogram("trtllm_e2e_request_latency_seconds", "Time from arrival to the last token", LATENCY);
  readonly batch: Histogram;
  readonly prefill = new Histogram("trtllm_iteration_prefill_tokens", "Prompt tokens prefilled per scheduler iteration", [0, 16, 64, 256, 1024, 4096, 16384]);

  constructor(readonly gauges: GaugeSource) {
    this.batch = new Histogram("trtllm_iteration_batch_size", "Sequences in the decode step of a scheduler iteration", POW2(Math.max(1, gauges.maxBatchSize)));
  }

  render(): string {
    const g = this.gauges;
    const gauge = (name: string, help: string, v: number) => [`# HELP ${name} ${help}`, `# TYPE ${name} gauge`, `${name} ${v}`];
    const lines = [
      ...this.requests.render(), ...this.finished.render(), ...this.promptTokens.render(), ...this.generationTokens.render(), ...this.iterations.render(),
      ...gauge("trtllm_requests_waiting", "Requests queued (queue depth)", g.waiting()),
      ...gauge("trtllm_requests_running", "Requests in the running batch", g.running()),
      ...gauge("trtllm_batch_occupancy", "Running requests / max batch size", g.running() / g.maxBatchSize),
      ...gauge("trtllm_max_batch_size", "Most sequences per step", g.maxBatchSize),
      ...gauge("trtllm_kv_cache_blocks_total", "KV cache blocks", g.kvBlocks),
      ...gauge("trtllm_kv_cache_blocks_free", "KV cache blocks free", g.freeKvBlocks()),
      ...gauge("trtllm_kv_cache_usage", "Share of KV cache blocks in use", 1 - g.freeKvBlocks() / g.kvBlocks),
      ...this.ttft.render(), ...this.itl.render(), ...this.e2e.render(), ...this.batch.render(), ...this.prefill.render(),
    ];
    return `${lines.join("\n")}\n`;
  }
}
