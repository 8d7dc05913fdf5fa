/**
 * Tactic selection: for every GEMM shape of the engine and every token-count bucket, time the
 * candidates on the GPU (cuBLASLt heuristic top-N and our GEMV kernel for m ≤ 8; for weight-only
 * sites our tensor-core kernel for m ≤ 64, else cuBLASLt after expanding the weights) and keep the
 * fastest. Results go into the plan and into a timing cache file reused across builds
 * (`--input_timing_cache` / `--output_timing_cache`, default `model.cache` in the output dir).
 *
 * Timing cache (JSON): { format: "trtb-timing-cache", version: 1, entries: { key: entry } } with
 * key = device|sm|cublasLt version|ab>y|m|n|k (ab = w8/BF16 etc. for weight-only sites), so entries from another GPU or library are never used.
 */
import { existsSync } from "node:fs";
import { TrtbError } from "../errors.ts";
import { log } from "../log.ts";
import { writeFileAtomic } from "../util/fs.ts";
import { readJsonFileSafe } from "../util/safe-read.ts";
import type { Backend } from "./backend.ts";
import { type EngineModelDesc, fp8Site, logitsDtypeOf, type PlanDevice, type PlanGemm, type PlanGemmSite, type PlanTactic, woSite } from "../engine/plan.ts";

export interface CacheEntry {
  kind: PlanTactic["kind"];
  variant: number;
  algo?: string;
  us: number;
}

export class TimingCache {
  readonly entries = new Map<string, CacheEntry>();
  hits = 0;
  misses = 0;

  static load(path: string | null | undefined): TimingCache {
    const c = new TimingCache();
    if (!path || !existsSync(path)) return c;
    let j: { format?: string; version?: number; entries?: Record<string, CacheEntry> };
    try {
      j = readJsonFileSafe(path, { missing: "BUILD_TIMING_CACHE", json: "BUILD_TIMING_CACHE" }) as typeof j;
    } catch (e) {
      throw new TrtbError("BUILD_TIMING_CACHE", `${path}: not a valid timing cache (${(e as Error).message})`, { file: path });
    }
    if (j.format !== "trtb-timing-cache" || j.version !== 1)
      throw new TrtbError("BUILD_TIMING_CACHE", `${path}: not a trtb timing cache (format ${JSON.stringify(j.format)}, version ${j.version})`, { file: path });
    for (const [k, v] of Object.entries(j.entries ?? {})) c.entries.set(k, v);
    return c;
  }

  static key(dev: PlanDevice, ab: string, y: string, m: number, n: number, k: number): string {
    return `${dev.name}|sm${dev.sm}|lt${dev.cublaslt_version}|${ab}>${y}|m${m}|n${n}|k${k}`;
  }

  merge(other: TimingCache): void {
    for (const [k, v] of other.entries) this.entries.set(k, v);
  }

  save(path: string): void {
    const entries = Object.fromEntries([...this.entries].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
    writeFileAtomic(path, `${JSON.stringify({ format: "trtb-timing-cache", version: 1, entries }, null, 1)}\n`);
  }
}

export interface GemmSiteShape {
  name: string;
  n: number;
  k: number;
  /** F8_E4M3: FP8 weights and input (the site is named `<name>.fp8`) */
  ab: "F16" | "BF16" | "F8_E4M3";
  y: "F32" | "F16" | "BF16";
  /** 8 / 4: weight-only weights (the site is named `<name>.wo`) */
  wbits?: 8 | 4;
  /** AWQ: the group size of the site's group-wise scales */
  wgroup?: number;
}

/**
 * The distinct GEMM shapes of one rank. Outputs feeding the f32 residual stream (qkv, dense, down)
 * are f32; the gate/up projection writes the model dtype (its consumer is the gated activation,
 * which rounds anyway); lm_head writes the logits dtype (f32, or f16 with `--logits_dtype float16`).
 *
 * `tensors` (the engine's, when known) tells weight-only sites apart: a site whose layers hold
 * `<site>.scale` tensors gets a `<site>.wo` twin with the weight bits, and keeps its 16-bit entry
 * only if some layer left it unquantized (exclude_modules).
 */
export function gemmSites(d: EngineModelDesc, tensors?: readonly { name: string; dtype: string }[]): GemmSiteShape[] {
  const base = gemmSites16(d);
  if (d.fp8) return fp8Sites(d, base);
  if (d.rowwise) return rowwiseSites(d, base);
  if (d.sq) return base.filter((s) => !d.layers.every((_, i) => d.sq!.linears[`layers.${i}.${s.name}`])); // int8 sites: cuBLASLt's heuristic
  if (!d.weight_only || !tensors) return base;
  const quantized = new Set<string>();
  const plain = new Set<string>();
  for (const t of tensors) {
    const m = /^layers\.\d+\.(.+?)(\.g?scale|\.pre)?$/.exec(t.name);
    if (!m) continue;
    if (m[2] === ".scale" || m[2] === ".gscale") quantized.add(m[1]!);
    else if (t.dtype === "F16" || t.dtype === "BF16") plain.add(m[1]!);
  }
  const out: GemmSiteShape[] = [];
  for (const s of base) {
    if (!quantized.has(s.name) || plain.has(s.name)) out.push(s);
    if (quantized.has(s.name)) out.push({ ...s, name: woSite(s.name), wbits: d.weight_only.bits, ...(d.weight_only.group_size ? { wgroup: d.weight_only.group_size } : {}) });
  }
  return out;
}

/**
 * FP8 engines: a site whose layers are all FP8 becomes its `.fp8` twin (e4m3 × e4m3, same output
 * dtype; gate_up of a gated MLP runs as two GEMMs of its halves, n = I); the 16-bit entry stays
 * only if some layer left it unquantized.
 */
function fp8Sites(d: EngineModelDesc, base: GemmSiteShape[]): GemmSiteShape[] {
  const lin = d.fp8!.linears;
  const out: GemmSiteShape[] = [];
  for (const s of base) {
    const names = d.layers.map((_, i) => `layers.${i}.${s.name}`);
    const q = names.filter((n) => lin[n]);
    if (q.length < names.length) out.push(s);
    if (q.length === 0) continue;
    const halves = lin[q[0]!]!.w.length;
    out.push({ ...s, name: fp8Site(s.name), ab: "F8_E4M3", n: s.n / halves });
  }
  return out;
}

/**
 * Per-token engines: FP8 rowwise sites get their `.fp8` twin writing the f32 sums (one GEMM, also
 * for gate_up; the per-row and per-channel scales are applied after it); int8 sites keep cuBLASLt's
 * heuristic. The 16-bit entry stays where some layer left the linear unquantized.
 */
function rowwiseSites(d: EngineModelDesc, base: GemmSiteShape[]): GemmSiteShape[] {
  const lin = new Set(d.rowwise!.linears);
  const out: GemmSiteShape[] = [];
  for (const s of base) {
    const names = d.layers.map((_, i) => `layers.${i}.${s.name}`);
    const q = names.filter((n) => lin.has(n)).length;
    if (q < names.length) out.push(s);
    if (q > 0 && d.rowwise!.algo === "FP8") out.push({ ...s, name: fp8Site(s.name), ab: "F8_E4M3", y: "F32" });
  }
  return out;
}

function gemmSites16(d: EngineModelDesc): GemmSiteShape[] {
  const ab = d.dtype === "bfloat16" ? "BF16" : "F16";
  const H = d.hidden_size;
  const I = d.intermediate_size;
  const sites: GemmSiteShape[] = [
    { name: "qkv", n: d.qkv_rows, k: H, ab, y: "F32" },
    { name: "dense", n: H, k: d.num_heads * d.head_size, ab, y: "F32" },
  ];
  if (d.moe) {
    sites.push({ name: "experts.gate_up", n: 2 * I, k: H, ab, y: ab }, { name: "experts.down", n: H, k: I, ab, y: "F32" });
  } else {
    sites.push({ name: "gate_up", n: 2 * I, k: H, ab, y: ab }, { name: "down", n: H, k: I, ab, y: "F32" });
  }
  if (d.last_pp_rank) sites.push({ name: "lm_head", n: d.lm_head_rows, k: H, ab, y: logitsDtypeOf(d) === "float16" ? "F16" : "F32" });
  return sites;
}

const hex = (b: Uint8Array) => Buffer.from(b).toString("hex");

/** Choose a tactic per site and bucket, timing what the cache does not know. */
export function selectTactics(backend: Backend, sites: GemmSiteShape[], buckets: number[], cache: TimingCache): PlanGemm {
  const tactics: PlanTactic[] = [];
  const index = new Map<string, number>();
  const intern = (t: PlanTactic): number => {
    const k = `${t.kind}|${t.variant}|${t.algo ?? ""}`;
    let i = index.get(k);
    if (i === undefined) {
      i = tactics.length;
      tactics.push(t);
      index.set(k, i);
    }
    return i;
  };
  const out: Record<string, PlanGemmSite> = {};
  for (const s of sites) {
    const t0 = performance.now();
    let timed = 0;
    const site: PlanGemmSite = { n: s.n, k: s.k, ab: s.ab, y: s.y, ...(s.wbits ? { wbits: s.wbits } : {}), ...(s.wgroup ? { wgroup: s.wgroup } : {}), buckets: [] };
    for (const m of buckets) {
      const key = TimingCache.key(backend.device, s.wbits ? `w${s.wbits}${s.wgroup ? `g${s.wgroup}` : ""}/${s.ab}` : s.ab, s.y, m, s.n, s.k);
      let e = cache.entries.get(key);
      if (e) cache.hits++;
      else {
        cache.misses++;
        timed++;
        // Bigger problems need fewer repeats to fill the measurement window.
        const flop = 2 * m * s.n * s.k;
        const res = backend.tune({ m, n: s.n, k: s.k, ab: s.ab, y: s.y, maxAlgos: 8, allowGemv: true, minMs: flop > 1e11 ? 3 : 1, wBits: s.wbits ?? 0, wGroup: s.wgroup ?? 0 });
        const best = res[0];
        e = best
          ? { kind: best.kind, variant: best.variant, algo: best.algo ? hex(best.algo) : undefined, us: best.timeUs }
          : { kind: "heuristic", variant: 0, us: 0 };
        cache.entries.set(key, e);
      }
      site.buckets.push([m, intern({ kind: e.kind, variant: e.variant, ...(e.algo ? { algo: e.algo } : {}) }), e.us]);
    }
    out[s.name] = site;
    const b1 = site.buckets[0]!;
    log.debug(`gemm ${s.name} [${s.n} x ${s.k}] ${s.ab}->${s.y}: ${timed}/${buckets.length} buckets timed in ${((performance.now() - t0) / 1000).toFixed(2)} s; m=1: ${tactics[b1[1]]!.kind} ${b1[2].toFixed(1)} µs`);
  }
  return { tactics, sites: out };
}

/** Token-count buckets tuned for each GEMM: powers of two up to (and including one ≥) maxTokens. */
export function tokenBuckets(maxTokens: number): number[] {
  const out: number[] = [];
  for (let m = 1; ; m *= 2) {
    out.push(m);
    if (m >= maxTokens || m >= 16384) break;
  }
  return out;
}
