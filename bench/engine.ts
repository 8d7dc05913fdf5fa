#!/usr/bin/env bun
/**
 * Engine benchmark, one script, one run (on a GPU machine):
 *
 *   bun bench/engine.ts [--work DIR] [--layers 32] [--new 256] [--variants bf16,w8a16,w4a16,fp8,sq] [--ctx 4096] [--peers] [--json FILE]
 *
 *  1. writes a Llama-3-8B-shaped random bf16 TRT-LLM checkpoint with our own writer (H 4096,
 *     32 layers, 32/8 heads, I 14336, V 128256: 16 GB)
 *  2. builds it (tactic timing + writing the engine), timed
 *  3. measures, in this run: device-to-device copy bandwidth and cuBLASLt's bf16 GEMM rate;
 *     batch-1 decode tokens/s (128-token prompt, --new tokens) against the roofline
 *     weight bytes ÷ copy bandwidth; prefill of 2,048 tokens in TFLOP/s against the GEMM rate;
 *     batch 8 and 32 decode throughput; batch-32 decode at --ctx tokens of context (prompts of
 *     ctx − 64 tokens, 64 new: the KV cache read dominates; 0 skips it)
 *     Steps 2–3 run once per variant: bf16, and the W8A16 / W4A16 weight-only engines of the same
 *     checkpoint (its config with quant_algo set: the build quantizes), and fp8 (FP8 per tensor:
 *     its own random e4m3 checkpoint, bench/_llama8b.ts; fp8r: FP8 rowwise, e4m3 MLP weights with
 *     per-channel scales and per-token activations, attention bf16). Each reports its own roofline
 *     (its engine's weight bytes; also the bytes a decode step reads, without the embedding table).
 *     A `-int8kv` / `-fp8kv` suffix (bf16-fp8kv, w8a16-int8kv, …) sets kv_cache_quant_algo too: a
 *     1-byte KV cache with the checkpoint's per-layer scales (bench/_llama8b.ts KV_SCALE).
 *  4. --peers: PyTorch/transformers on the same GPU (bench/peer_transformers.py): eager, and
 *     torch.compile with a static cache. Python is used for the peer only.
 *
 * Prints a table last; --json writes every number.
 */
import { existsSync, mkdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { buildCheckpoint } from "../src/builder/checkpoint.ts";
import { Engine } from "../src/engine/engine.ts";
import { GpuModelRunner } from "../src/runtime/gpu/runner.ts";
import { LLAMA8B, writeLlama8bCheckpoint } from "./_llama8b.ts";

const { values: opt } = parseArgs({
  args: process.argv.slice(2),
  options: {
    work: { type: "string", default: "/tmp/trtb-bench-8b" },
    layers: { type: "string", default: "32" },
    new: { type: "string", default: "256" },
    peers: { type: "boolean", default: false },
    json: { type: "string" },
    variants: { type: "string", default: "bf16,w8a16,w4a16" },
    ctx: { type: "string", default: "4096" },
    "keep": { type: "boolean", default: false },
  },
});
const L = Number(opt.layers);
const NEW = Number(opt.new);
const CTX = Number(opt.ctx);
const { H, NH, NKV, D, I, V } = LLAMA8B;
const work = opt.work!;
const ckpt = join(work, "ckpt");
const results: Record<string, unknown> = { shape: { H, L, NH, NKV, I, V } };
const t = () => performance.now();
const line = (s: string) => console.log(s);
const f = (v: unknown, d = 1) => (typeof v === "number" ? v.toFixed(d) : String(v));

// ---- 1. random checkpoint (bench/_llama8b.ts) ----------------------------------------------------
let t0 = t();
if (!existsSync(join(ckpt, "config.json"))) {
  writeLlama8bCheckpoint(ckpt, L);
  results.checkpoint_write_s = (t() - t0) / 1000;
  line(`checkpoint written in ${(results.checkpoint_write_s as number).toFixed(1)} s`);
}

// ---- 2–3. per variant: build, then runtime ---------------------------------------------------------
/** A checkpoint directory for a variant: the bf16 one, or its config with quant_algo / kv_cache_quant_algo set (weights linked). */
function variantCheckpoint(v: string): string {
  if (v === "bf16") return ckpt;
  const m = /^(bf16|w8a16|w4a16|fp8|fp8r|sq|awq)(?:-(int8|fp8)kv)?$/.exec(v);
  if (!m) throw new Error(`unknown variant ${v} (bf16, w8a16, w4a16, fp8, fp8r, sq, awq, each optionally with -int8kv or -fp8kv)`);
  // fp8 / sq (SmoothQuant W8A8): their own checkpoints (e4m3 / int8 weights as modelopt writes them; random values)
  const own = m[1] === "fp8" || m[1] === "fp8r" || m[1] === "sq" || m[1] === "awq" ? join(work, `ckpt-${m[1]}`) : null;
  if (own && !existsSync(join(own, "config.json"))) writeLlama8bCheckpoint(own, L, { fp8: m[1] === "fp8", fp8rowwise: m[1] === "fp8r", sq: m[1] === "sq", awq: m[1] === "awq" });
  if (own && !m[2]) return own;
  const base = own ?? ckpt;
  const algo = m[1] === "w8a16" ? "W8A16" : m[1] === "w4a16" ? "W4A16" : m[1] === "fp8" ? "FP8" : m[1] === "fp8r" ? "FP8_PER_CHANNEL_PER_TOKEN" : m[1] === "sq" ? "W8A8_SQ_PER_CHANNEL" : m[1] === "awq" ? "W4A16_AWQ" : null;
  const kv = m[2] === "int8" ? "INT8" : m[2] === "fp8" ? "FP8" : null;
  const dir = join(work, `ckpt-${v}`);
  mkdirSync(dir, { recursive: true });
  const cfg = JSON.parse(readFileSync(join(base, "config.json"), "utf8"));
  cfg.quantization.quant_algo = algo;
  cfg.quantization.kv_cache_quant_algo = kv;
  writeFileSync(join(dir, "config.json"), JSON.stringify(cfg, null, 4));
  rmSync(join(dir, "rank0.safetensors"), { force: true });
  symlinkSync(join(base, "rank0.safetensors"), join(dir, "rank0.safetensors"));
  return dir;
}

const variants = opt.variants!.split(",").map((x) => x.trim()).filter(Boolean);
const byVariant: Record<string, Record<string, unknown>> = {};
results.variants = byVariant;
for (const variant of variants) {
  line(`\n== ${variant} ==`);
  const r: Record<string, unknown> = (byVariant[variant] = {});
  const vckpt = variantCheckpoint(variant);
  const eng = join(work, `engine-${variant}`);
  t0 = t();
  const built = await buildCheckpoint({
    checkpointDir: vckpt, outputDir: eng, buildConfig: { max_batch_size: 64, max_num_tokens: 4096, max_seq_len: 4096, max_input_len: 2048 },
    onRank: (x) => line(`rank ${x.rank}: tactics ${x.buildSeconds.toFixed(1)} s (${x.cacheMisses} timed), write ${x.saveSeconds.toFixed(1)} s, ${(x.bytes / 1e9).toFixed(2)} GB`),
  });
  r.build_s = (t() - t0) / 1000;
  r.build_tactics_s = built.ranks[0]!.buildSeconds;
  r.build_write_s = built.ranks[0]!.saveSeconds;
  const engine = await Engine.fromDir(eng, 0);
  const weightBytes = engine.weightBytes;
  r.weight_bytes = weightBytes;
  const embBytes = engine.plan.tensors.find((x) => x.name === "embedding")!.bytes;
  r.read_bytes_per_step = weightBytes - embBytes;

  // ---- 3. runtime -------------------------------------------------------------------------------
  t0 = t();
  const runner = await GpuModelRunner.fromDir(eng, { maxBatchSize: 32, maxNumTokens: 2048, maxKvTokens: 32 * Math.max(1024, CTX) + 4096 });
  r.load_s = (t() - t0) / 1000;
  r.kv_dtype = runner.kvDtype;
  const ctx = runner.context;
  const copyGBs = ctx.benchCopy(2 * 2 ** 30, 10);
  const gemmTF = ctx.benchGemm(8192, 8192, 8192, 50);
  const gemmPrefillTF = ctx.benchGemm(2048, 14336 * 2, 4096, 20);
  r.copy_GBps = copyGBs;
  r.cublas_bf16_8192_TFLOPs = gemmTF;
  r.cublas_bf16_2048x28672x4096_TFLOPs = gemmPrefillTF;
  const roofline = (copyGBs * 1e9) / weightBytes;
  r.roofline_tok_s = roofline;
  r.roofline_read_tok_s = (copyGBs * 1e9) / (weightBytes - embBytes);
  line(`load ${f(r.load_s)} s; copy ${f(copyGBs, 0)} GB/s; cuBLASLt bf16 8192³ ${f(gemmTF, 0)} TFLOP/s; roofline ${f(roofline)} tok/s`);

  let seed = 7;
  const randIds = (n: number) => Array.from({ length: n }, () => (seed = (seed * 48271) % 2147483647) % V);

  // prefill 2048 tokens (1 new token: the first sample), median of 3
  const prompt2k = randIds(2048);
  runner.generate([prompt2k.slice(0, 64)], { maxNewTokens: 1 }); // warm-up
  const pre: number[] = [];
  for (let i = 0; i < 3; i++) pre.push(runner.generate([prompt2k], { maxNewTokens: 1 }).prefillMs);
  pre.sort((a, b) => a - b);
  const prefillMs = pre[1]!;
  const gemmFlopPerTok = 2 * L * ((NH + 2 * NKV) * D * H + H * NH * D + 2 * I * H + H * I);
  const attnFlop = 2 * 2048 * 2048 * D * NH * L; // causal: QK^T and PV over half the square
  const prefillFlop = 2048 * gemmFlopPerTok + attnFlop + 2 * V * H;
  r.prefill_2048_ms = prefillMs;
  r.prefill_TFLOPs = prefillFlop / (prefillMs / 1000) / 1e12;
  line(`prefill 2048: ${f(prefillMs)} ms, ${f(r.prefill_TFLOPs, 0)} TFLOP/s`);
  const pprof = runner.profilePrefill(prompt2k);
  r.prefill_profile = pprof;
  line(`  op by op: ${pprof.total.toFixed(2)} ms = ${Object.entries(pprof.byOp).map(([k, v]) => `${k} ${v.ms.toFixed(2)} (${v.count})`).join(", ")}`);

  // batch-1 decode
  const p128 = randIds(128);
  runner.generate([p128], { maxNewTokens: 8 }); // captures the batch-1 graph
  const d1: number[] = [];
  for (let i = 0; i < 3; i++) {
    const r = runner.generate([p128], { maxNewTokens: NEW });
    d1.push(r.decodeSteps / (r.decodeMs / 1000));
  }
  d1.sort((a, b) => a - b);
  r.decode_b1_tok_s = d1[1];
  r.decode_b1_pct_roofline = (100 * d1[1]!) / roofline;
  r.decode_b1_pct_roofline_read = (100 * d1[1]!) / (r.roofline_read_tok_s as number);
  line(`decode b1: ${f(d1[1])} tok/s (${d1.map((x) => x.toFixed(1)).join(", ")}) = ${f(r.decode_b1_pct_roofline)}% of roofline`);

  // where a batch-1 decode step's time goes (op by op, events; includes per-launch gaps)
  const prof = runner.profileDecode([p128]);
  r.decode_b1_profile = prof;
  line(`decode step b1 op by op: ${prof.total.toFixed(3)} ms = ${Object.entries(prof.byOp).map(([k, v]) => `${k} ${v.ms.toFixed(3)} (${v.count})`).join(", ")}`);
  line(`  GEMM by site: ${Object.entries(prof.gemm).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ")} ms`);
  const sites = engine.plan.gemm.sites;
  line(`  tuned m=1: ${Object.entries(sites).map(([k, v]) => `${k} ${engine.plan.gemm.tactics[v.buckets[0]![1]]!.kind}/${engine.plan.gemm.tactics[v.buckets[0]![1]]!.variant} ${v.buckets[0]![2].toFixed(1)} µs (${(((v.wbits ? v.wbits / 8 : v.ab === "F8_E4M3" ? 1 : 2) * v.n * v.k) / (v.buckets[0]![2] * 1e-6) / 1e9).toFixed(0)} GB/s)`).join(", ")}`);
  const prof8 = runner.profileDecode(Array.from({ length: 8 }, () => p128));
  r.decode_b8_profile = prof8;
  line(`decode step b8 op by op: ${prof8.total.toFixed(3)} ms; GEMM by site: ${Object.entries(prof8.gemm).map(([k, v]) => `${k} ${v.toFixed(3)}`).join(", ")} ms`);
  line(`  tuned m=8: ${Object.entries(sites).map(([k, v]) => { const b = v.buckets.find((x) => x[0] === 8)!; return `${k} ${engine.plan.gemm.tactics[b[1]]!.kind}/${engine.plan.gemm.tactics[b[1]]!.variant} ${b[2].toFixed(1)} µs`; }).join(", ")}`);

  // batch 8 and 32
  for (const B of [8, 32]) {
    const prompts = Array.from({ length: B }, () => randIds(128));
    runner.generate(prompts, { maxNewTokens: 4 });
    const g = runner.generate(prompts, { maxNewTokens: 128 });
    r[`decode_b${B}_tok_s`] = (B * g.decodeSteps) / (g.decodeMs / 1000);
    r[`decode_b${B}_step_ms`] = g.decodeMs / g.decodeSteps;
    line(`decode b${B}: ${f(r[`decode_b${B}_tok_s`], 0)} tok/s`);
  }
  // batch 32 at long contexts: the KV cache read per step (32 × ctx × L × 2 × NKV × D elements) outweighs the weights
  if (CTX > 0) {
    const nNew = 64;
    const prompts = Array.from({ length: 32 }, () => randIds(CTX - nNew));
    const g = runner.generate(prompts, { maxNewTokens: nNew });
    const kvEs = runner.kvDtype === "I8" || runner.kvDtype === "F8_E4M3" ? 1 : 2;
    r[`decode_b32_ctx${CTX}_tok_s`] = (32 * g.decodeSteps) / (g.decodeMs / 1000);
    r[`decode_b32_ctx${CTX}_step_ms`] = g.decodeMs / g.decodeSteps;
    r[`decode_b32_ctx${CTX}_kv_bytes_per_step`] = 32 * (CTX - nNew / 2) * L * 2 * NKV * D * kvEs;
    r[`prefill_b32_ctx${CTX}_ms`] = g.prefillMs;
    line(`decode b32 at ${CTX - nNew}…${CTX} tokens of context (${runner.kvDtype} KV): ${f(r[`decode_b32_ctx${CTX}_tok_s`], 0)} tok/s (${f(r[`decode_b32_ctx${CTX}_step_ms`], 2)} ms/step, ${f((r[`decode_b32_ctx${CTX}_kv_bytes_per_step`] as number) / 1e9, 2)} GB of KV read per step); prefill ${f(g.prefillMs / 1000, 1)} s`);
  }
  runner.destroy();
  if (!opt.keep) rmSync(eng, { recursive: true, force: true });


  line("");
  line(`${variant}: Llama-3-8B shape, ${L} layers, ${(weightBytes / 1e9).toFixed(2)} GB of weights (${((weightBytes - embBytes) / 1e9).toFixed(2)} GB read per decode step)`);
  line(`build:            ${f(r.build_s)} s (tactics and quantization ${f(r.build_tactics_s)} s, write ${f(r.build_write_s)} s); load ${f(r.load_s)} s`);
  line(`copy bandwidth:   ${f(copyGBs, 0)} GB/s (read+write)   roofline ${f(roofline)} tok/s (bytes read per step: ${f(r.roofline_read_tok_s)} tok/s)`);
  line(`decode batch 1:   ${f(r.decode_b1_tok_s)} tok/s = ${f(r.decode_b1_pct_roofline)}% of roofline (${f(r.decode_b1_pct_roofline_read)}% of the read-bytes roofline)`);
  line(`decode batch 8:   ${f(r.decode_b8_tok_s, 0)} tok/s (${f(r.decode_b8_step_ms, 2)} ms/step)`);
  line(`decode batch 32:  ${f(r.decode_b32_tok_s, 0)} tok/s (${f(r.decode_b32_step_ms, 2)} ms/step)`);
  if (CTX > 0) line(`decode b32 @${CTX}: ${f(r[`decode_b32_ctx${CTX}_tok_s`], 0)} tok/s (${f(r[`decode_b32_ctx${CTX}_step_ms`], 2)} ms/step, ${r.kv_dtype} KV cache)`);
  line(`prefill 2048:     ${f(prefillMs)} ms = ${f(r.prefill_TFLOPs, 0)} TFLOP/s; cuBLASLt bf16 8192³ ${f(gemmTF, 0)} TFLOP/s, 2048x28672x4096 ${f(gemmPrefillTF, 0)} TFLOP/s`);
}

// ---- 4. peers -------------------------------------------------------------------------------
if (opt.peers) {
  const script = join(import.meta.dir, "peer_transformers.py");
  const p = Bun.spawnSync(["python3", script, "--layers", String(L), "--new", "64"], { stdout: "pipe", stderr: "pipe", timeout: 300_000, env: { ...process.env, PYTHONUNBUFFERED: "1" } });
  const out = p.stdout.toString();
  const last = out.trim().split("\n").filter((l) => l.startsWith("{")).pop();
  if (p.exitCode === 0 && last) Object.assign(results, { peers: JSON.parse(last) });
  else results.peers = { error: `exit ${p.exitCode}: ${p.stderr.toString().slice(-2000)}` };
}

if (opt.json) writeFileSync(opt.json, JSON.stringify(results, null, 2));

line("");
line(`variant       build s   decode b1 tok/s (% roofline, % read roofline)   b8 tok/s   b32 tok/s   prefill 2048 ms (TFLOP/s)${CTX > 0 ? `   b32 @${CTX} tok/s (× its weights' 16-bit KV)` : ""}`);
for (const [v, r] of Object.entries(byVariant)) {
  const base = byVariant[v.replace(/-(int8|fp8)kv$/, "")];
  const atCtx = r[`decode_b32_ctx${CTX}_tok_s`] as number | undefined;
  const vsBase = base && base !== r && atCtx !== undefined ? ` (${(atCtx / (base[`decode_b32_ctx${CTX}_tok_s`] as number)).toFixed(2)}×)` : "";
  line(`${v.padEnd(13)} ${f(r.build_s).padStart(7)}   ${f(r.decode_b1_tok_s).padStart(7)} (${f(r.decode_b1_pct_roofline)}%, ${f(r.decode_b1_pct_roofline_read)}%)`.padEnd(70) + `${f(r.decode_b8_tok_s, 0).padStart(8)}   ${f(r.decode_b32_tok_s, 0).padStart(9)}   ${f(r.prefill_2048_ms)} (${f(r.prefill_TFLOPs, 0)})` + (CTX > 0 ? `   ${f(atCtx, 0)}${vsBase}` : ""));
}
if (results.peers) line(`peers (bf16, same GPU): ${JSON.stringify(results.peers)}`);
