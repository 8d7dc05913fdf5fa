/**
 * A CPU emulation of libtrtb_engine's context for tests: device memory is host memory at fake
 * addresses, and op programs are decoded word by word (the encoding of trtb_engine.h) and executed
 * with plain TypeScript math that follows each kernel's definition (16-bit storage rounds like the
 * GPU's; math in f64/f32). It lets the GPU runtime's orchestration (input layouts, paged cache,
 * tiles, MoE grouping, graphs) run on any machine; the kernels themselves are tested on the GPU.
 */
import {
  DeviceMem, type DevRef, type EngineContext, type EngineDeviceInfo, Graph, PinnedHost, type Program, refAddress, type Tactic, type TuneProblem,
  type TuneResult,
} from "../../src/ffi/engine.ts";
import { OP } from "../../src/ffi/engine-symbols.ts";
import { woGroupScaleIndex, woPackedBytes, woUnpackTS } from "../../src/engine/wo-layout.ts";
import { bitsToF32, castArrayTS, f32Bits, toFloat32 } from "../../src/numeric.ts";
import { e4m3ToF32Bits, f32BitsToE4m3, quantFp8, quantInt } from "../../src/quant/kernel.ts";

const DT: Record<number, "F32" | "F16" | "BF16"> = { 1: "F32", 2: "F16", 3: "BF16" };
const ES = { F32: 4, F16: 2, BF16: 2 } as const;
/** KV cache element types: the dtypes, and 1-byte I8 / F8_E4M3 of a quantized cache (trtb_engine.h, kv_scale). */
type KvT = "F32" | "F16" | "BF16" | "I8" | "F8_E4M3";
const KDT: Record<number, KvT> = { ...DT, 5: "I8", 14: "F8_E4M3" };
const KES: Record<KvT, number> = { ...ES, I8: 1, F8_E4M3: 1 };
const CODE = Object.fromEntries(Object.entries(OP).map(([k, [c]]) => [c, k])) as Record<number, keyof typeof OP>;
/** Head sizes the engine's attention kernels are instantiated for (attention.cuh TRTBE_ATTN_HEAD_SIZES): others fail there, so here too. */
const ATTN_HEAD_SIZES = [32, 64, 80, 96, 128, 256];
const checkHeadSize = (op: string, D: number) => {
  if (!ATTN_HEAD_SIZES.includes(D)) throw new Error(`emu: ${op} head size ${D} (supported: ${ATTN_HEAD_SIZES.join(", ")})`);
};
/** SOFTCAP and SAMPLE take F32 or F16 logits (activation.cu, sample.cu fail on others). */
const logitsDt = (op: string, code: number): "F32" | "F16" => {
  const dt = DT[code];
  if (dt !== "F32" && dt !== "F16") throw new Error(`emu: ${op} logits dtype ${code} (F32 or F16)`);
  return dt;
};
const fakeSyms = { trtb_engine_host_free: () => 0, trtb_engine_graph_destroy: () => 0 };

export const EMU_INFO: EngineDeviceInfo = {
  name: "CPU emulation", major: 0, minor: 0, multiprocessors: 8, totalMemory: 1 << 30, freeMemory: 1 << 30, l2Bytes: 0, smemOptin: 0, cublasLtVersion: 0,
};

export class EmuContext implements EngineContext {
  readonly device = 0;
  readonly #bases: number[] = [];
  readonly #mem: Uint8Array[] = [];
  #next = 0x1000_0000;
  readonly #graphs = new Map<Graph, BigUint64Array>();
  #tactics = 0;
  launches = 0;

  #region(bytes: number): [number, Uint8Array] {
    const base = this.#next;
    const buf = new Uint8Array(Math.max(bytes, 1));
    this.#next += Math.ceil((bytes + 4096) / 4096) * 4096;
    this.#bases.push(base);
    this.#mem.push(buf);
    return [base, buf];
  }

  /** Bytes at a fake address. */
  /** An op's output in dtype code `code`: F32/F16/BF16, or F8_E4M3 = e4m3(f32(v) / scale) (RNE, saturated). */
  writeOut(addr: number, v: Float32Array, code: number, scale: number): void {
    if (code !== 14) return this.write(addr, v, DT[code]!);
    const dst = this.view(addr, v.length);
    const sc = Math.fround(scale);
    for (let i = 0; i < v.length; i++) dst[i] = f32BitsToE4m3(f32Bits(Math.max(-448, Math.min(448, Math.fround(v[i]! / sc)))));
  }

  view(addr: number, bytes: number): Uint8Array {
    let lo = 0;
    let hi = this.#bases.length - 1;
    while (lo < hi) {
      const mid = (lo + hi + 1) >> 1;
      if (this.#bases[mid]! <= addr) lo = mid;
      else hi = mid - 1;
    }
    const off = addr - this.#bases[lo]!;
    const buf = this.#mem[lo]!;
    if (off < 0 || off + bytes > buf.byteLength) throw new Error(`emu: [${addr}, +${bytes}) is outside allocation ${this.#bases[lo]} of ${buf.byteLength} bytes`);
    return buf.subarray(off, off + bytes);
  }
  read(addr: number, n: number, dt: "F32" | "F16" | "BF16"): Float32Array {
    const b = this.view(addr, n * ES[dt]);
    return dt === "F32" ? new Float32Array(b.slice().buffer) : toFloat32(b, dt);
  }
  write(addr: number, v: ArrayLike<number>, dt: "F32" | "F16" | "BF16"): void {
    const f = Float32Array.from(v);
    const dst = this.view(addr, f.length * ES[dt]);
    castArrayTS(new Uint8Array(f.buffer), "F32", dst, dt);
  }
  i32(addr: number, n: number): Int32Array {
    return new Int32Array(this.view(addr, n * 4).slice().buffer);
  }

  alloc(bytes: number, label = "buffer"): DeviceMem {
    const [base] = this.#region(bytes);
    return new DeviceMem(this, { ptr: base, freed: false }, bytes, label);
  }
  freeCell(cell: { ptr: number; freed: boolean }): void {
    cell.freed = true;
  }
  hostAlloc(bytes: number): PinnedHost {
    const [base, buf] = this.#region(bytes);
    return new PinnedHost(fakeSyms, base, bytes, buf.buffer as ArrayBuffer);
  }
  upload(dst: DevRef, src: Uint8Array): void {
    this.view(addrOf(dst), src.byteLength).set(src);
  }
  download(src: DevRef, bytes: number, dst: Uint8Array = new Uint8Array(bytes)): Uint8Array {
    dst.set(this.view(addrOf(src), bytes));
    return dst;
  }
  memInfo() {
    return { free: 1 << 30, total: 1 << 30 };
  }
  exec(p: Program): void {
    if (p.words) this.run(p.buffer().slice(0, p.words));
  }
  capture(p: Program): Graph {
    const g = new Graph(fakeSyms, this.#graphs.size + 1);
    this.#graphs.set(g, p.buffer().slice(0, p.words));
    return g;
  }
  launch(g: Graph): void {
    this.launches++;
    const words = this.#graphs.get(g);
    if (!words) throw new Error("emu: unknown graph");
    this.run(words);
  }
  sync(): void {}
  addTactic(_t: Tactic): number {
    return this.#tactics++;
  }
  tune(_p: TuneProblem): TuneResult[] {
    return [{ kind: "heuristic", variant: 0, timeUs: 0, workspaceKb: 0 }];
  }
  timerStart(): void {}
  timerStop(): number {
    return 0;
  }
  benchCopy(): number {
    return 0;
  }
  benchGemm(): number {
    return 0;
  }
  destroy(): void {}
  [Symbol.dispose](): void {}

  // ---- the interpreter ----

  run(words: BigUint64Array): void {
    const f64 = new Float64Array(words.buffer, words.byteOffset, words.length);
    let i = 0;
    while (i < words.length) {
      const op = Number(words[i]! & 0xffffffffn);
      const n = Number(words[i]! >> 32n);
      const a = (k: number) => Number(BigInt.asIntN(64, words[i + 1 + k]!));
      const f = (k: number) => f64[i + 1 + k]!;
      const name = CODE[op];
      if (!name || OP[name][1] !== n) throw new Error(`emu: bad op ${op} with ${n} args`);
      this.#op(name, a, f);
      i += 1 + n;
    }
  }

  #op(name: keyof typeof OP, a: (k: number) => number, f: (k: number) => number): void {
    switch (name) {
      case "EMBED": {
        const [ids, table, dt, rows, vstart, H, scale, out, T] = [a(0), a(1), DT[a(2)]!, a(3), a(4), a(5), f(6), a(7), a(8)];
        const id = this.i32(ids, T);
        const o = new Float32Array(T * H);
        for (let t = 0; t < T; t++) {
          const r = id[t]! - vstart;
          if (r < 0 || r >= rows) continue;
          const row = this.read(table + r * H * ES[dt], H, dt);
          for (let j = 0; j < H; j++) o[t * H + j] = row[j]! * scale;
        }
        return this.write(out, o, "F32");
      }
      case "ADD_NORM": {
        const [res, delta, ld, db, dn, nw, eps, out, ocode, H, T, oscale] = [a(0), a(1), a(2), a(3), a(4), a(5), f(6), a(7), a(8), a(9), a(10), f(11)];
        const r = this.read(res, T * H, "F32");
        const bias = db ? this.read(db, H, "F32") : null;
        const dnw = dn ? this.read(dn, H, "F32") : null;
        const w = nw ? this.read(nw, H, "F32") : null;
        const o = new Float32Array(T * H);
        for (let t = 0; t < T; t++) {
          if (delta) {
            const d = Array.from(this.read(delta + t * ld * 4, H, "F32"), (v, j) => v + (bias ? bias[j]! : 0));
            if (dnw) {
              const s = 1 / Math.sqrt(d.reduce((acc, v) => acc + v * v, 0) / H + eps);
              for (let j = 0; j < H; j++) d[j] = d[j]! * s * dnw[j]!;
            }
            for (let j = 0; j < H; j++) r[t * H + j] = r[t * H + j]! + d[j]!;
          }
          let ss = 0;
          for (let j = 0; j < H; j++) ss += r[t * H + j]! ** 2;
          const s = 1 / Math.sqrt(ss / H + eps);
          for (let j = 0; j < H; j++) o[t * H + j] = r[t * H + j]! * s * (w ? w[j]! : 1);
        }
        this.write(res, r, "F32");
        if (out) this.writeOut(out, o, ocode, oscale);
        return;
      }
      case "GEMM": {
        const [w, x, y, M, N, K, ab, yd, ldx, ldy, xd] = [a(0), a(1), a(2), a(3), a(4), a(5), DT[a(6)]!, DT[a(7)]!, a(8), a(9), DT[a(11)]!];
        const W = this.read(w, N * K, ab);
        for (let m = 0; m < M; m++) {
          const X = this.read(x + m * ldx * ES[xd], K, xd);
          const Y = new Float32Array(N);
          for (let nn = 0; nn < N; nn++) {
            let s = 0;
            for (let k = 0; k < K; k++) s += X[k]! * W[nn * K + k]!;
            Y[nn] = s;
          }
          this.write(y + m * ldy * ES[yd], Y, yd);
        }
        return;
      }
      case "ACT_FP8": {
        // (writeOut's F8_E4M3 case is the same conversion)
        // e4m3(x / scale), RNE, saturated (fp8.cu; quant-sim.ts's bits)
        const [x, xd, ldx, out, M, K, sc] = [a(0), DT[a(1)]!, a(2), a(3), a(4), a(5), f(6)];
        const dst = this.view(out, M * K);
        const scale = Math.fround(sc);
        for (let m = 0; m < M; m++) {
          const X = this.read(x + m * ldx * ES[xd], K, xd);
          for (let k = 0; k < K; k++) {
            const v = Math.fround(X[k]! / scale);
            dst[m * K + k] = f32BitsToE4m3(f32Bits(Math.max(-448, Math.min(448, v))));
          }
        }
        return;
      }
      case "ACT_I8": {
        // clamp(RNE(f32(f32(x · pre) / scale))) (int8.cu; quant-sim.ts's values)
        const [x, ldx, pre, out, M, K, sc] = [a(0), a(1), a(2), a(3), a(4), a(5), f(6)];
        const dst = new Int8Array(this.view(out, M * K).buffer, this.view(out, M * K).byteOffset, M * K);
        const pv = pre ? this.read(pre, K, "F32") : null;
        for (let m = 0; m < M; m++) {
          const X = this.read(x + m * ldx * 4, K, "F32");
          for (let k = 0; k < K; k++) dst[m * K + k] = quantInt(pv ? Math.fround(X[k]! * pv[k]!) : X[k]!, Math.fround(sc), -128, 127, "half_even");
        }
        return;
      }
      case "ACT_ROWQ": {
        // per-token quantization (rowq.cu; quant-sim.ts perTokenInt8 / perTokenFp8): I8 divides by div and
        // scales max|v| to 127; F8_E4M3 clamps to [lo, hi] and scales max|v| to 448 (min scale 1/(448·512))
        const [x, xd, ldx, div, out, od, M, K, xs, lo, hi] = [a(0), DT[a(1)]!, a(2), a(3), a(4), a(5), a(6), a(7), a(8), f(9), f(10)];
        const fp8 = od === 14;
        if (!fp8 && od !== 5) throw new Error(`emu: ACT_ROWQ out dtype ${od}`);
        const dst = this.view(out, M * K);
        const dv = div && !fp8 ? this.read(div, K, "F32") : null;
        const XS = new Float32Array(M);
        const [flo, fhi] = [Math.fround(lo), Math.fround(hi)];
        for (let m = 0; m < M; m++) {
          const X = this.read(x + m * ldx * ES[xd], K, xd);
          const v = X.map((t, k) => (dv ? Math.fround(t / dv[k]!) : fp8 && flo < fhi ? Math.min(Math.max(t, flo), fhi) : t));
          const amax = v.reduce((p, t) => Math.max(p, Math.abs(t)), 0);
          if (fp8) {
            const s = Math.max(Math.fround(amax / 448), Math.fround(1 / (448 * 512)));
            for (let k = 0; k < K; k++) dst[m * K + k] = f32BitsToE4m3(f32Bits(Math.max(-448, Math.min(448, Math.fround(v[k]! / s)))));
            XS[m] = s;
          } else {
            const toInt = amax > 0 ? Math.fround(127 / amax) : 0;
            for (let k = 0; k < K; k++) dst[m * K + k] = (amax > 0 ? quantInt(Math.fround(v[k]! * toInt), 1, -128, 127, "half_even") : 0) & 0xff;
            XS[m] = amax > 0 ? Math.fround(amax / 127) : 0;
          }
        }
        this.write(xs, XS, "F32");
        return;
      }
      case "GEMM_I8": {
        const [w, x, , y, M, N, K, yd, ldy, al, ws, , xs] = [a(0), a(1), a(2), a(3), a(4), a(5), a(6), DT[a(7)]!, a(8), f(9), a(10), a(11), a(12)];
        const i8 = (addr: number, n: number) => { const v = this.view(addr, n); return new Int8Array(v.buffer, v.byteOffset, n); };
        const W = i8(w, N * K), X = i8(x, M * K);
        const S = this.read(ws, N, "F32");
        const XS = xs ? this.read(xs, M, "F32") : null;
        for (let m = 0; m < M; m++) {
          const Y = new Float32Array(N);
          for (let nn = 0; nn < N; nn++) {
            let acc = 0;
            for (let k = 0; k < K; k++) acc += X[m * K + k]! * W[nn * K + k]!;
            Y[nn] = Math.fround(acc) * Math.fround(Math.fround(al) * S[nn]!);
            if (XS) Y[nn] = Y[nn]! * XS[m]!;
          }
          this.write(y + m * ldy * ES[yd], Y, yd);
        }
        return;
      }
      case "GEMM_FP8": {
        // with ws (FP8 rowwise): the f32 sums, then · f32(alpha · ws[n]) · xs[m] (rowq.cu's dequant)
        const [w, x, y, M, N, K, yd, ldy, alpha, , , , xs, ws] = [a(0), a(1), a(2), a(3), a(4), a(5), DT[a(6)]!, a(7), f(8), a(9), a(10), a(11), a(12), a(13)];
        const dec = (b: Uint8Array) => Float32Array.from(b, (v) => bitsToF32(e4m3ToF32Bits(v)));
        const W = dec(this.view(w, N * K));
        const X = dec(this.view(x, M * K));
        const al = Math.fround(alpha);
        const WS = ws ? this.read(ws, N, "F32") : null;
        const XS = ws && xs ? this.read(xs, M, "F32") : null;
        for (let m = 0; m < M; m++) {
          const Y = new Float32Array(N);
          for (let nn = 0; nn < N; nn++) {
            let s = 0;
            for (let k = 0; k < K; k++) s += X[m * K + k]! * W[nn * K + k]!;
            Y[nn] = WS ? Math.fround(s) * Math.fround(al * WS[nn]!) : Math.fround(s) * al;
            if (XS) Y[nn] = Y[nn]! * XS[m]!;
          }
          this.write(y + m * ldy * ES[yd], Y, yd);
        }
        return;
      }
      case "GEMM_WO": {
        // y = (x . q^T) * scale; exact path (x f32): x used to ~16 bits, emulated as f32. AWQ (gs):
        // y = sum_g gs[n, g] * sum_{k in g} q * x, each group's sum rounded to f32
        const [w, sc, x, y, M, N, K, bits, ab, yd, ldx, ldy, xd, gs, group] = [
          a(0), a(1), a(2), a(3), a(4), a(5), a(6), a(7) as 8 | 4, DT[a(8)]!, DT[a(9)]!, a(10), a(11), DT[a(13)]!, a(16), a(17)];
        const q = woUnpackTS(this.view(w, woPackedBytes(N, K, bits)), N, K, bits);
        const G = group ? K / group : 0;
        const S = gs ? null : this.read(sc, N, "F32");
        const GS = gs ? this.read(gs, Math.ceil(N / 16) * G * 16, ab) : null;
        for (let m = 0; m < M; m++) {
          const X = this.read(x + m * ldx * ES[xd], K, xd);
          const Y = new Float32Array(N);
          for (let nn = 0; nn < N; nn++) {
            if (GS) {
              let acc = 0;
              for (let g = 0; g < G; g++) {
                let t = 0;
                for (let k = g * group; k < (g + 1) * group; k++) t += X[k]! * q[nn * K + k]!;
                acc += Math.fround(t) * GS[woGroupScaleIndex(nn, g, G)]!;
              }
              Y[nn] = acc;
              continue;
            }
            let acc = 0;
            for (let k = 0; k < K; k++) acc += X[k]! * q[nn * K + k]!;
            Y[nn] = Math.fround(acc) * S![nn]!;
          }
          this.write(y + m * ldy * ES[yd], Y, yd);
        }
        return;
      }
      case "QKV_ROPE": {
        const [qkv, ld, bias, qn, kn, eps, pos, slot, kv, kvdt, tpb, nH, nKV, D, rot, invf, qout, T, rsel, mscale, kvs] = [
          a(0), a(1), a(2), a(3), a(4), f(5), a(6), a(7), a(8), KDT[a(9)]!, a(10), a(11), a(12), a(13), a(14), a(15), a(16), a(17), a(18), f(19), f(20)];
        this.#checkKvScale("QKV_ROPE", kvdt, kvs);
        const P = this.i32(pos, T);
        const S = this.i32(slot, T);
        const sel = rsel ? this.i32(rsel, T) : null;
        const invs = [this.read(invf, rot / 2, "F32"), sel ? this.read(invf + (rot / 2) * 4, rot / 2, "F32") : null];
        const b = bias ? this.read(bias, (nH + 2 * nKV) * D, "F32") : null;
        const qw = qn ? this.read(qn, D, "F32") : null;
        const kw = kn ? this.read(kn, D, "F32") : null;
        for (let t = 0; t < T; t++) {
          for (let h = 0; h < nH + 2 * nKV; h++) {
            const x = Array.from(this.read(qkv + (t * ld + h * D) * 4, D, "F32"), (v, j) => v + (b ? b[h * D + j]! : 0));
            const isq = h < nH, isk = !isq && h < nH + nKV;
            const nw = isq ? qw : isk ? kw : null;
            if (nw) {
              const s = 1 / Math.sqrt(x.reduce((acc, v) => acc + v * v, 0) / D + eps);
              for (let j = 0; j < D; j++) x[j] = x[j]! * s * nw[j]!;
            }
            if (isq || isk) {
              const y = [...x];
              const inv = invs[sel ? sel[t]! : 0]!;
              for (let j = 0; j < rot / 2; j++) {
                const ang = Math.fround(P[t]! * inv[j]!);
                const c = Math.fround(Math.cos(ang) * mscale), sn = Math.fround(Math.sin(ang) * mscale);
                y[j] = x[j]! * c - x[j + rot / 2]! * sn;
                y[j + rot / 2] = x[j + rot / 2]! * c + x[j]! * sn;
              }
              x.splice(0, D, ...y);
            }
            if (isq) this.write(qout + (t * nH + h) * D * 4, x, "F32");
            else {
              const sel = isk ? 0 : 1;
              const kh = isk ? h - nH : h - nH - nKV;
              const blk = Math.floor(S[t]! / tpb), off = S[t]! % tpb;
              this.#writeKv(kv + (((blk * 2 + sel) * nKV + kh) * tpb + off) * D * KES[kvdt], x, kvdt, kvs);
            }
          }
        }
        return;
      }
      case "ATTN_DECODE": {
        const [q, kv, kvdt, table, maxB, ctxLen, nH, nKV, D, tpb, scale, cap, win, , , out, odt, B, kvs] = [
          a(0), a(1), KDT[a(2)]!, a(3), a(4), a(5), a(6), a(7), a(8), a(9), f(10), f(11), a(12), a(13), a(14), a(15), DT[a(16)]!, a(17), f(18)];
        checkHeadSize("ATTN_DECODE", D);
        this.#checkKvScale("ATTN_DECODE", kvdt, kvs);
        const lens = this.i32(ctxLen, B);
        const tb = this.i32(table, B * maxB);
        for (let b = 0; b < B; b++) this.#attnRow(q + b * nH * D * 4, kv, kvdt, tb.subarray(b * maxB), lens[b]! - 1, nH, nKV, D, tpb, scale, cap, win, out + b * nH * D * ES[odt], odt, kvs);
        return;
      }
      case "ATTN_PREFILL": {
        const [q, kv, kvdt, table, maxB, tiles, nTiles, cuQ, pos0, nH, nKV, D, tpb, scale, cap, win, out, odt, kvs] = [
          a(0), a(1), KDT[a(2)]!, a(3), a(4), a(5), a(6), a(7), a(8), a(9), a(10), a(11), a(12), f(13), f(14), a(15), a(16), DT[a(17)]!, f(18)];
        checkHeadSize("ATTN_PREFILL", D);
        this.#checkKvScale("ATTN_PREFILL", kvdt, kvs);
        const tl = this.i32(tiles, 2 * nTiles);
        const seqs = Math.max(...Array.from({ length: nTiles }, (_, i) => tl[2 * i]!)) + 1;
        const cu = this.i32(cuQ, seqs + 1);
        const p0 = this.i32(pos0, seqs);
        const tb = this.i32(table, seqs * maxB);
        const bq = 64;
        for (let i = 0; i < nTiles; i++) {
          const s = tl[2 * i]!, q0 = tl[2 * i + 1]!;
          const nq = cu[s + 1]! - cu[s]!;
          for (let r = q0; r < Math.min(nq, q0 + bq); r++) {
            const tok = cu[s]! + r;
            this.#attnRow(q + tok * nH * D * 4, kv, kvdt, tb.subarray(s * maxB), p0[s]! + r, nH, nKV, D, tpb, scale, cap, win, out + tok * nH * D * ES[odt], odt, kvs);
          }
        }
        return;
      }
      case "GATED_ACT": {
        const [x, xdt, bias, out, ocode, I, T, act, oscale, mul] = [a(0), DT[a(1)]!, a(2), a(3), a(4), a(5), a(6), a(7), f(8), a(9)];
        const v = this.read(x, T * 2 * I, xdt);
        const b = bias ? this.read(bias, 2 * I, "F32") : null;
        const mv = mul ? this.read(mul, I, "F32") : null;
        const o = new Float32Array(T * I);
        for (let t = 0; t < T; t++) for (let j = 0; j < I; j++) {
          const up = v[t * 2 * I + j]! + (b ? b[j]! : 0);
          const g = v[t * 2 * I + I + j]! + (b ? b[I + j]! : 0);
          o[t * I + j] = up * (act === 0 ? g / (1 + Math.exp(-g)) : 0.5 * g * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (g + 0.044715 * g ** 3))));
          if (mv) o[t * I + j] = Math.fround(o[t * I + j]!) * mv[j]!;
        }
        return this.writeOut(out, o, ocode, oscale);
      }
      case "GATHER_ROWS": {
        const [src, dst, idx, R, rb] = [a(0), a(1), a(2), a(3), a(4)];
        const ix = this.i32(idx, R);
        for (let r = 0; r < R; r++) this.view(dst + r * rb, rb).set(this.view(src + ix[r]! * rb, rb).slice());
        return;
      }
      case "SCATTER_ADD": {
        const [y, out, idx, w, R, H] = [a(0), a(1), a(2), a(3), a(4), a(5)];
        const ix = this.i32(idx, R);
        const wt = this.read(w, R, "F32");
        for (let r = 0; r < R; r++) {
          const o = this.read(out + ix[r]! * H * 4, H, "F32");
          const v = this.read(y + r * H * 4, H, "F32");
          for (let j = 0; j < H; j++) o[j] = o[j]! + wt[r]! * v[j]!;
          this.write(out + ix[r]! * H * 4, o, "F32");
        }
        return;
      }
      case "MUL_COLS": {
        const [x, dt, ld, v, rows, cols] = [a(0), DT[a(1)]!, a(2), a(3), a(4), a(5)];
        const vv = this.read(v, cols, "F32");
        for (let r = 0; r < rows; r++) {
          const row = this.read(x + r * ld * ES[dt], cols, dt);
          this.write(x + r * ld * ES[dt], row.map((e, c) => e * vv[c]!), dt);
        }
        return;
      }
      case "SOFTCAP": {
        // f32 math; f16 logits are read widened and written back rounded to nearest even
        const [x, dt, n, cap] = [a(0), logitsDt("SOFTCAP", a(1)), a(2), f(3)];
        return this.write(x, Array.from(this.read(x, n, dt), (v) => Math.tanh(v / cap) * cap), dt);
      }
      case "SAMPLE": {
        const [logits, dt, ld, V, params, out, R] = [a(0), logitsDt("SAMPLE", a(1)), a(2), a(3), a(4), a(5), a(6)];
        const ids = new Int32Array(R);
        for (let r = 0; r < R; r++) {
          const x = this.read(logits + r * ld * ES[dt], V, dt);
          const dv = new DataView(this.view(params + r * 32, 32).slice().buffer);
          const temp = dv.getFloat32(0, true), topK = dv.getInt32(4, true);
          let best = 0;
          for (let j = 1; j < V; j++) if (x[j]! > x[best]!) best = j;
          if (!(temp > 0) || topK === 1) ids[r] = best;
          else {
            // emulation: a deterministic draw among the top-k (not the GPU's exact stream)
            const seed = Number(dv.getBigUint64(16, true) % 1000003n) + Number(dv.getBigUint64(24, true)) * 7919 + r;
            const order = [...x.keys()].sort((p, q) => x[q]! - x[p]! || p - q).slice(0, topK > 0 ? topK : V);
            ids[r] = order[seed % order.length]!;
          }
        }
        this.view(out, R * 4).set(new Uint8Array(ids.buffer));
        return;
      }
      case "MEMCPY": {
        const [dst, src, bytes] = [a(0), a(1), a(2)];
        this.view(dst, bytes).set(this.view(src, bytes).slice());
        return;
      }
      case "MEMSET": {
        const [dst, v, bytes] = [a(0), a(1), a(2)];
        this.view(dst, bytes).fill(v);
        return;
      }
      case "MOE_ROUTE": {
        const [x, xdt, router, E, H, k, ids, w, T] = [a(0), DT[a(1)]!, a(2), a(3), a(4), a(5), a(6), a(7), a(8)];
        const W = this.read(router, E * H, "F32");
        const oi = new Int32Array(T * k);
        const ow = new Float32Array(T * k);
        for (let t = 0; t < T; t++) {
          const xv = this.read(x + t * H * ES[xdt], H, xdt);
          const l = Array.from({ length: E }, (_, e) => {
            let s = 0;
            for (let j = 0; j < H; j++) s += xv[j]! * W[e * H + j]!;
            return s;
          });
          const mx = Math.max(...l);
          const p = l.map((v) => Math.exp(v - mx));
          const z = p.reduce((acc, v) => acc + v, 0);
          const order = [...p.keys()].sort((u, v) => p[v]! - p[u]! || u - v).slice(0, k);
          const norm = order.reduce((acc, e) => acc + p[e]! / z, 0);
          order.forEach((e, j) => {
            oi[t * k + j] = e;
            ow[t * k + j] = p[e]! / z / norm;
          });
        }
        this.view(ids, T * k * 4).set(new Uint8Array(oi.buffer));
        return this.write(w, ow, "F32");
      }
    }
  }

  /** The kernels' kv_scale check: finite and > 0 for a 1-byte cache, else exactly 1. */
  #checkKvScale(op: string, kvdt: KvT, s: number): void {
    const quant = kvdt === "I8" || kvdt === "F8_E4M3";
    if (quant ? !(Number.isFinite(s) && s > 0) : s !== 1) throw new Error(`emu: ${op} kv scale ${s} for kv dtype ${kvdt}`);
  }

  /**
   * One cache row as QKV_ROPE stores it: the f32 value rounded to the cache dtype, or for a 1-byte
   * cache quantized with the layer's scale by trtb_quantize's rules (kv_store in rope.cu).
   */
  #writeKv(addr: number, x: ArrayLike<number>, kvdt: KvT, s: number): void {
    if (kvdt !== "I8" && kvdt !== "F8_E4M3") return this.write(addr, x, kvdt);
    const dst = this.view(addr, x.length);
    const sq = Math.fround(s);
    for (let j = 0; j < x.length; j++) {
      const v = Math.fround(x[j]!);
      dst[j] = kvdt === "I8" ? quantInt(v, sq, -128, 127, "half_even") & 0xff : quantFp8(v, sq);
    }
  }

  /** A cache row as stored: the dtype's values, or the integers / e4m3 values of a 1-byte cache (not scaled). */
  #readKv(addr: number, n: number, kvdt: KvT): Float32Array {
    if (kvdt !== "I8" && kvdt !== "F8_E4M3") return this.read(addr, n, kvdt);
    const b = this.view(addr, n);
    const out = new Float32Array(n);
    for (let j = 0; j < n; j++) out[j] = kvdt === "I8" ? (b[j]! << 24) >> 24 : bitsToF32(e4m3ToF32Bits(b[j]!));
    return out;
  }

  /**
   * One query row (all heads) at position p over the paged cache. A quantized cache is read as
   * stored, its scale folded in as the kernels do: scores (q · k_q) · (scale · kv_scale), output
   * (Σ p · v_q) · kv_scale / Σ p.
   */
  #attnRow(q: number, kv: number, kvdt: KvT, table: Int32Array, p: number, nH: number, nKV: number, D: number, tpb: number,
    scale: number, cap: number, win: number, out: number, odt: "F32" | "F16" | "BF16", kvs: number): void {
    const qv = this.read(q, nH * D, "F32");
    const lo = win > 0 ? Math.max(0, p - win + 1) : 0;
    const o = new Float32Array(nH * D);
    const rowAt = (t: number, sel: number, kh: number) => kv + (((table[Math.floor(t / tpb)]! * 2 + sel) * nKV + kh) * tpb + (t % tpb)) * D * KES[kvdt];
    const qk = kvs === 1 ? scale : Math.fround(Math.fround(scale) * Math.fround(kvs));
    for (let h = 0; h < nH; h++) {
      const kh = Math.floor(h / (nH / nKV));
      const s: number[] = [];
      for (let t = lo; t <= p; t++) {
        const k = this.#readKv(rowAt(t, 0, kh), D, kvdt);
        let acc = 0;
        for (let j = 0; j < D; j++) acc += qv[h * D + j]! * k[j]!;
        acc *= qk;
        if (cap > 0) acc = Math.tanh(acc / cap) * cap;
        s.push(acc);
      }
      const mx = Math.max(...s);
      const e = s.map((v) => Math.exp(v - mx));
      const z = e.reduce((acc, v) => acc + v, 0);
      for (let t = lo; t <= p; t++) {
        const v = this.#readKv(rowAt(t, 1, kh), D, kvdt);
        for (let j = 0; j < D; j++) o[h * D + j] = o[h * D + j]! + (e[t - lo]! / z) * kvs * v[j]!;
      }
    }
    this.write(out, o, odt);
  }
}

function addrOf(r: DevRef): number {
  return refAddress(r);
}
