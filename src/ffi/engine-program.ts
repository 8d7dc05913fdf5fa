/**
 * The op-program encoder: `Program`, the one writer of the uint64 word programs that
 * libtrtb_engine executes or captures (trtb_engine.h has the encoding and each op's arguments),
 * and the rows of `trtb_engine_sample_params` that the SAMPLE op reads.
 */
import { TrtbError } from "../errors.ts";
import { DevRef, hostAddr, HostRef, memAddr } from "./engine-mem.ts";
import { OP, SAMPLE_PARAMS } from "./engine-symbols.ts";
import { DTYPE_CODE } from "./symbols.ts";

export type Dt = "F32" | "F16" | "BF16";
/** KV cache element types: a dtype, or 1-byte INT8 / FP8 e4m3 of a quantized cache (with its `kvScale`). */
export type KvDt = Dt | "I8" | "F8_E4M3";
type Addr = DevRef | HostRef | null | undefined;

/**
 * An op program (see trtb_engine.h for the encoding and each op's arguments). Methods append one
 * op each; `words` is its length in uint64 words. Addresses are resolved when the op is added.
 */
export class Program {
  #buf = new ArrayBuffer(4096);
  #dv = new DataView(this.#buf);
  #n = 0; // words
  readonly ops: string[] = [];

  get words(): number {
    return this.#n;
  }

  /** @internal The encoded words (a view of the used part). */
  buffer(): BigUint64Array {
    return new BigUint64Array(this.#buf, 0, Math.max(this.#n, 1));
  }

  /** One program per op (for per-op timing). */
  split(): Program[] {
    const out: Program[] = [];
    const all = new BigUint64Array(this.#buf, 0, this.#n);
    let i = 0;
    let k = 0;
    while (i < this.#n) {
      const n = Number(all[i]! >> 32n);
      const p = new Program();
      p.#grow(1 + n);
      new BigUint64Array(p.#buf, 0, 1 + n).set(all.subarray(i, i + 1 + n));
      p.#n = 1 + n;
      p.ops.push(this.ops[k++]!);
      out.push(p);
      i += 1 + n;
    }
    return out;
  }

  #grow(words: number): void {
    const need = (this.#n + words) * 8;
    if (need <= this.#buf.byteLength) return;
    let cap = this.#buf.byteLength * 2;
    while (cap < need) cap *= 2;
    const nb = new ArrayBuffer(cap);
    new Uint8Array(nb).set(new Uint8Array(this.#buf, 0, this.#n * 8));
    this.#buf = nb;
    this.#dv = new DataView(nb);
  }

  #u(v: number): void {
    // integers, two's complement for negatives; |v| < 2^53
    const o = this.#n * 8;
    if (v >= 0) {
      this.#dv.setUint32(o, v % 0x100000000, true);
      this.#dv.setUint32(o + 4, Math.floor(v / 0x100000000), true);
    } else {
      this.#dv.setBigInt64(o, BigInt(v), true);
    }
    this.#n++;
  }

  #f(v: number): void {
    this.#dv.setFloat64(this.#n * 8, v, true);
    this.#n++;
  }

  #a(r: Addr, need = 0): void {
    if (!r) return this.#u(0);
    if (r instanceof DevRef) return this.#u(memAddr(r.mem, r.offset, need));
    return this.#u(hostAddr(r.host, r.offset, need));
  }

  #op(name: keyof typeof OP, args: (() => void)[]): this {
    const [code, nargs] = OP[name];
    if (args.length !== nargs) throw new TrtbError("NATIVE_INTERNAL", `program: ${name} takes ${nargs} arguments, got ${args.length}`);
    this.#grow(1 + nargs);
    this.#u(code + nargs * 0x100000000);
    for (const a of args) a();
    this.ops.push(name);
    return this;
  }

  #dt(d: KvDt): number {
    return DTYPE_CODE[d];
  }

  embed(a: { ids: DevRef; table: DevRef; tableDtype: Dt; rows: number; vocabStart: number; H: number; scale: number; out: DevRef; T: number }): this {
    return this.#op("EMBED", [
      () => this.#a(a.ids), () => this.#a(a.table), () => this.#u(this.#dt(a.tableDtype)), () => this.#u(a.rows), () => this.#u(a.vocabStart),
      () => this.#u(a.H), () => this.#f(a.scale), () => this.#a(a.out), () => this.#u(a.T),
    ]);
  }

  addNorm(a: {
    res: DevRef; delta?: DevRef; deltaLd?: number; deltaBias?: DevRef; deltaNorm?: DevRef; normW?: DevRef; eps: number;
    /** F8_E4M3: out = e4m3(value / outScale) (an FP8 GEMM's input) */
    out?: DevRef; outDtype: Dt | "F8_E4M3"; outScale?: number; H: number; T: number;
  }): this {
    return this.#op("ADD_NORM", [
      () => this.#a(a.res), () => this.#a(a.delta), () => this.#u(a.deltaLd ?? a.H), () => this.#a(a.deltaBias), () => this.#a(a.deltaNorm),
      () => this.#a(a.normW), () => this.#f(a.eps), () => this.#a(a.out), () => this.#u(this.#dt(a.outDtype)), () => this.#u(a.H), () => this.#u(a.T),
      () => this.#f(a.outScale ?? 1),
    ]);
  }

  /** `ab` is the weight dtype; `xDtype` (default `ab`) F32 selects the exact path (needs `scratch` of 4·M·K bytes when M > 8). */
  gemm(a: {
    w: DevRef; x: DevRef; y: DevRef; M: number; N: number; K: number; ab: Dt; yDtype: Dt; ldx?: number; ldy?: number; tactic: number; xDtype?: Dt;
    scratch?: DevRef;
  }): this {
    return this.#op("GEMM", [
      () => this.#a(a.w), () => this.#a(a.x), () => this.#a(a.y), () => this.#u(a.M), () => this.#u(a.N), () => this.#u(a.K),
      () => this.#u(this.#dt(a.ab)), () => this.#u(this.#dt(a.yDtype)), () => this.#u(a.ldx ?? a.K), () => this.#u(a.ldy ?? a.N), () => this.#u(a.tactic),
      () => this.#u(this.#dt(a.xDtype ?? a.ab)), () => this.#a(a.scratch),
    ]);
  }

  /**
   * Weight-only GEMM: `w` is q in the tiled layout of src/engine/wo-layout.ts (`bits` 8 or 4), `scale`
   * f32 [N]; `ab` the activation dtype. M ≤ 64 runs our kernel; beyond that (or with a cuBLASLt
   * tactic) the weights are expanded into `deq` (2·N·K bytes). `xDtype` F32 is the exact path
   * (needs `scratch` of 4·M·K bytes). AWQ (int4): `gscale` holds group-wise scales (`ab`,
   * [ceil(N/16), K/group, 8, 2]: wo-layout.ts woGroupScalesTS) instead of `scale`; x comes with
   * the prequant scale applied by its producer.
   */
  gemmWo(a: {
    w: DevRef; scale?: DevRef; x: DevRef; y: DevRef; M: number; N: number; K: number; bits: 8 | 4; ab: Dt; yDtype: Dt; ldx?: number; ldy?: number;
    tactic: number; xDtype?: Dt; scratch?: DevRef; deq?: DevRef; gscale?: DevRef; group?: number;
  }): this {
    return this.#op("GEMM_WO", [
      () => this.#a(a.w), () => this.#a(a.scale), () => this.#a(a.x), () => this.#a(a.y), () => this.#u(a.M), () => this.#u(a.N), () => this.#u(a.K),
      () => this.#u(a.bits), () => this.#u(this.#dt(a.ab)), () => this.#u(this.#dt(a.yDtype)), () => this.#u(a.ldx ?? a.K), () => this.#u(a.ldy ?? a.N),
      () => this.#u(a.tactic), () => this.#u(this.#dt(a.xDtype ?? a.ab)), () => this.#a(a.scratch), () => this.#a(a.deq),
      () => this.#a(a.gscale), () => this.#u(a.group ?? 0),
    ]);
  }

  /** xq[M, K] = e4m3(x / scale) (round to nearest even, saturated): the input of an FP8 GEMM. */
  quantFp8(a: { x: DevRef; xDtype: Dt; ldx?: number; out: DevRef; M: number; K: number; scale: number }): this {
    return this.#op("ACT_FP8", [
      () => this.#a(a.x), () => this.#u(this.#dt(a.xDtype)), () => this.#u(a.ldx ?? a.K), () => this.#a(a.out), () => this.#u(a.M), () => this.#u(a.K),
      () => this.#f(a.scale),
    ]);
  }

  /**
   * FP8 GEMM: y[M, N] = alpha · x[M, K] . w[N, K]ᵀ, x and w e4m3 (x from `quantFp8`). `scratch`
   * (2·(N + M)·K bytes) selects the exact path: both widened to bf16, full f32 accumulation. With
   * `ws` (per-channel weight scales; FP8 rowwise) the product goes through `acc` (f32 [M, N]) and
   * y = acc · alpha · ws[n] · xs[m] (`xs`: the per-token scales of `quantRows`).
   */
  gemmFp8(a: {
    w: DevRef; x: DevRef; y: DevRef; M: number; N: number; K: number; yDtype: Dt; ldy?: number; alpha: number; tactic: number; scratch?: DevRef;
    acc?: DevRef; xs?: DevRef; ws?: DevRef;
  }): this {
    return this.#op("GEMM_FP8", [
      () => this.#a(a.w), () => this.#a(a.x), () => this.#a(a.y), () => this.#u(a.M), () => this.#u(a.N), () => this.#u(a.K),
      () => this.#u(this.#dt(a.yDtype)), () => this.#u(a.ldy ?? a.N), () => this.#f(a.alpha), () => this.#u(a.tactic), () => this.#a(a.scratch),
      () => this.#a(a.acc), () => this.#a(a.xs), () => this.#a(a.ws),
    ]);
  }

  /**
   * Per-token dynamic quantization of x [M, K] into out (I8 or F8_E4M3, ld K) with one scale per
   * row written to `xs` (f32 [M]): I8 divides by `div` first (SmoothQuant's smoother) and scales
   * max|v| to 127; F8_E4M3 clamps to [lo, hi] (when lo < hi) and scales max|v| to 448.
   */
  quantRows(a: { x: DevRef; xDtype: Dt; ldx?: number; div?: DevRef; out: DevRef; outDtype: "I8" | "F8_E4M3"; M: number; K: number; xs: DevRef; lo?: number; hi?: number }): this {
    return this.#op("ACT_ROWQ", [
      () => this.#a(a.x), () => this.#u(this.#dt(a.xDtype)), () => this.#u(a.ldx ?? a.K), () => this.#a(a.div), () => this.#a(a.out),
      () => this.#u(this.#dt(a.outDtype)), () => this.#u(a.M), () => this.#u(a.K), () => this.#a(a.xs), () => this.#f(a.lo ?? 0), () => this.#f(a.hi ?? 0),
    ]);
  }

  /** SmoothQuant input: xq[M, K] = clamp(RNE(f32(f32(x · pre) / scale)), −128, 127), x f32. */
  quantI8(a: { x: DevRef; ldx?: number; pre?: DevRef; out: DevRef; M: number; K: number; scale: number }): this {
    return this.#op("ACT_I8", [
      () => this.#a(a.x), () => this.#u(a.ldx ?? a.K), () => this.#a(a.pre), () => this.#a(a.out), () => this.#u(a.M), () => this.#u(a.K), () => this.#f(a.scale),
    ]);
  }

  /** SmoothQuant GEMM: acc = x . wᵀ in int32 (acc: M·N i32 scratch), y = acc · a · ws[n] (· xs[m]: per-token inputs). */
  gemmI8(a: { w: DevRef; x: DevRef; acc: DevRef; y: DevRef; M: number; N: number; K: number; yDtype: Dt; ldy?: number; a: number; ws: DevRef; tactic: number; xs?: DevRef }): this {
    return this.#op("GEMM_I8", [
      () => this.#a(a.w), () => this.#a(a.x), () => this.#a(a.acc), () => this.#a(a.y), () => this.#u(a.M), () => this.#u(a.N), () => this.#u(a.K),
      () => this.#u(this.#dt(a.yDtype)), () => this.#u(a.ldy ?? a.N), () => this.#f(a.a), () => this.#a(a.ws), () => this.#u(a.tactic),
      () => this.#a(a.xs),
    ]);
  }

  qkvRope(a: {
    qkv: DevRef; ld: number; bias?: DevRef; qNorm?: DevRef; kNorm?: DevRef; eps: number; pos: DevRef; slot: DevRef; kv: DevRef; kvDtype: KvDt;
    tpb: number; nH: number; nKV: number; D: number; rot: number; invFreq: DevRef; qOut: DevRef; T: number; kvScale?: number;
    /** LongRoPE: per token 0/1 picking row 0 (short) or 1 (long) of invFreq [2, rot/2]; `mscale` multiplies cos and sin */
    ropeSel?: DevRef; mscale?: number;
  }): this {
    return this.#op("QKV_ROPE", [
      () => this.#a(a.qkv), () => this.#u(a.ld), () => this.#a(a.bias), () => this.#a(a.qNorm), () => this.#a(a.kNorm), () => this.#f(a.eps),
      () => this.#a(a.pos), () => this.#a(a.slot), () => this.#a(a.kv), () => this.#u(this.#dt(a.kvDtype)), () => this.#u(a.tpb),
      () => this.#u(a.nH), () => this.#u(a.nKV), () => this.#u(a.D), () => this.#u(a.rot), () => this.#a(a.invFreq), () => this.#a(a.qOut),
      () => this.#u(a.T), () => this.#a(a.ropeSel), () => this.#f(a.mscale ?? 1), () => this.#f(a.kvScale ?? 1),
    ]);
  }

  attnDecode(a: {
    q: DevRef; kv: DevRef; kvDtype: KvDt; blockTable: DevRef; maxBlocks: number; ctxLen: DevRef; nH: number; nKV: number; D: number; tpb: number;
    scale: number; softcap: number; window: number; nsplit: number; ws: DevRef; out: DevRef; outDtype: Dt; B: number; kvScale?: number;
  }): this {
    return this.#op("ATTN_DECODE", [
      () => this.#a(a.q), () => this.#a(a.kv), () => this.#u(this.#dt(a.kvDtype)), () => this.#a(a.blockTable), () => this.#u(a.maxBlocks),
      () => this.#a(a.ctxLen), () => this.#u(a.nH), () => this.#u(a.nKV), () => this.#u(a.D), () => this.#u(a.tpb), () => this.#f(a.scale),
      () => this.#f(a.softcap), () => this.#u(a.window), () => this.#u(a.nsplit), () => this.#a(a.ws), () => this.#a(a.out),
      () => this.#u(this.#dt(a.outDtype)), () => this.#u(a.B), () => this.#f(a.kvScale ?? 1),
    ]);
  }

  attnPrefill(a: {
    q: DevRef; kv: DevRef; kvDtype: KvDt; blockTable: DevRef; maxBlocks: number; tiles: DevRef; nTiles: number; cuQ: DevRef; pos0: DevRef;
    nH: number; nKV: number; D: number; tpb: number; scale: number; softcap: number; window: number; out: DevRef; outDtype: Dt; kvScale?: number;
  }): this {
    return this.#op("ATTN_PREFILL", [
      () => this.#a(a.q), () => this.#a(a.kv), () => this.#u(this.#dt(a.kvDtype)), () => this.#a(a.blockTable), () => this.#u(a.maxBlocks),
      () => this.#a(a.tiles), () => this.#u(a.nTiles), () => this.#a(a.cuQ), () => this.#a(a.pos0), () => this.#u(a.nH), () => this.#u(a.nKV),
      () => this.#u(a.D), () => this.#u(a.tpb), () => this.#f(a.scale), () => this.#f(a.softcap), () => this.#u(a.window), () => this.#a(a.out),
      () => this.#u(this.#dt(a.outDtype)), () => this.#f(a.kvScale ?? 1),
    ]);
  }

  /** out = up · act(gate) over rows of [up | gate], times `mul` (f32 [I], AWQ's prequant of the next GEMM) when given. */
  gatedAct(a: { in: DevRef; inDtype: Dt; bias?: DevRef; out: DevRef; outDtype: Dt | "F8_E4M3"; outScale?: number; I: number; T: number; act: "silu" | "gelu_tanh"; mul?: DevRef }): this {
    return this.#op("GATED_ACT", [
      () => this.#a(a.in), () => this.#u(this.#dt(a.inDtype)), () => this.#a(a.bias), () => this.#a(a.out), () => this.#u(this.#dt(a.outDtype)),
      () => this.#u(a.I), () => this.#u(a.T), () => this.#u(a.act === "silu" ? 0 : 1), () => this.#f(a.outScale ?? 1), () => this.#a(a.mul),
    ]);
  }

  /** x[r, c] *= v[c] in place (v f32 [cols]; x rows of `ld` elements, default cols). */
  mulCols(a: { x: DevRef; dtype: Dt; ld?: number; v: DevRef; rows: number; cols: number }): this {
    return this.#op("MUL_COLS", [
      () => this.#a(a.x), () => this.#u(this.#dt(a.dtype)), () => this.#u(a.ld ?? a.cols), () => this.#a(a.v), () => this.#u(a.rows), () => this.#u(a.cols),
    ]);
  }

  gatherRows(a: { src: DevRef; dst: DevRef; idx: DevRef; R: number; rowBytes: number }): this {
    return this.#op("GATHER_ROWS", [() => this.#a(a.src), () => this.#a(a.dst), () => this.#a(a.idx), () => this.#u(a.R), () => this.#u(a.rowBytes)]);
  }

  scatterAdd(a: { y: DevRef; out: DevRef; idx: DevRef; w: DevRef; R: number; H: number }): this {
    return this.#op("SCATTER_ADD", [() => this.#a(a.y), () => this.#a(a.out), () => this.#a(a.idx), () => this.#a(a.w), () => this.#u(a.R), () => this.#u(a.H)]);
  }

  /** `dtype` F32 (default) or F16 (the logits dtype). */
  softcap(a: { x: DevRef; dtype?: Dt; n: number; cap: number }): this {
    return this.#op("SOFTCAP", [() => this.#a(a.x), () => this.#u(this.#dt(a.dtype ?? "F32")), () => this.#u(a.n), () => this.#f(a.cap)]);
  }

  /** `dtype`: of the logits, F32 (default) or F16. */
  sample(a: { logits: DevRef; dtype?: Dt; ld: number; V: number; params: DevRef; out: DevRef; R: number }): this {
    return this.#op("SAMPLE", [
      () => this.#a(a.logits), () => this.#u(this.#dt(a.dtype ?? "F32")), () => this.#u(a.ld), () => this.#u(a.V), () => this.#a(a.params),
      () => this.#a(a.out), () => this.#u(a.R),
    ]);
  }

  memcpy(dst: DevRef | HostRef, src: DevRef | HostRef, bytes: number): this {
    const kind = src instanceof HostRef ? 1 : dst instanceof HostRef ? 2 : 3;
    if (src instanceof HostRef && dst instanceof HostRef) throw new TrtbError("NATIVE_INVALID_ARG", "program memcpy: host to host");
    return this.#op("MEMCPY", [() => this.#a(dst, bytes), () => this.#a(src, bytes), () => this.#u(bytes), () => this.#u(kind)]);
  }

  memset(dst: DevRef, value: number, bytes: number): this {
    return this.#op("MEMSET", [() => this.#a(dst, bytes), () => this.#u(value & 0xff), () => this.#u(bytes)]);
  }

  moeRoute(a: { x: DevRef; xDtype: Dt; router: DevRef; E: number; H: number; topK: number; ids: DevRef; w: DevRef; T: number }): this {
    return this.#op("MOE_ROUTE", [
      () => this.#a(a.x), () => this.#u(this.#dt(a.xDtype)), () => this.#a(a.router), () => this.#u(a.E), () => this.#u(a.H), () => this.#u(a.topK),
      () => this.#a(a.ids), () => this.#a(a.w), () => this.#u(a.T),
    ]);
  }
}

/** Write one row of `trtb_engine_sample_params` into `dv` at `offset`. */
export function writeSampleParams(dv: DataView, offset: number, p: { temperature: number; topK: number; topP: number; seed: number; step: number }): void {
  dv.setFloat32(offset + SAMPLE_PARAMS.temperature, p.temperature, true);
  dv.setInt32(offset + SAMPLE_PARAMS.topK, p.topK, true);
  dv.setFloat32(offset + SAMPLE_PARAMS.topP, p.topP, true);
  dv.setInt32(offset + 12, 0, true);
  dv.setBigUint64(offset + SAMPLE_PARAMS.seed, BigInt.asUintN(64, BigInt(Math.trunc(p.seed))), true);
  dv.setBigUint64(offset + SAMPLE_PARAMS.step, BigInt(p.step), true);
}

export const SAMPLE_PARAMS_BYTES = SAMPLE_PARAMS.size;
