/**
 * libtrtb's f32 GEMM (`trtb_gemm_f32` through `Native.gemmF32`) against an f64 loop: random shapes
 * with odd sizes (m = 1, n and k off every block size), bias, leading dimensions, W as [n, k] or
 * [k, n], every kernel set this CPU has; each row's bits independent of m, n, the thread count and
 * zero-padding of k (what the runner's step ≡ prefill guarantee rests on); status codes. Also the
 * MLP's gated activation (`trtb_gated_act_f32`) against f64 SiLU / tanh-GELU. Needs
 * build/libtrtb.so, skipped without it unless TRTB_REQUIRE_NATIVE=1.
 */
import { afterAll, describe, expect, test } from "bun:test";
import { type GemmIsa, nativeLib } from "../../src/ffi/index.ts";
import { expectCode } from "../helpers.ts";

const native = nativeLib();
if (!native && process.env.TRTB_REQUIRE_NATIVE === "1") throw new Error("TRTB_REQUIRE_NATIVE=1 but libtrtb could not be loaded");

/**
 * |y − ref| ≤ GEMM_REL_TOL · Σ_i |x_i · w_i| per element: f32 summation in 8 or 16 lanes plus a
 * 4-level tree (or one chain for W [k, n]) over k ≤ 1100 stays far below this.
 */
const GEMM_REL_TOL = 2e-5;
/**
 * |act(a)·g − f64| ≤ ACT_REL_TOL · |f64| + ACT_TAIL_TOL · |a·g|: an f32 exp of ~2 ulp and a few
 * roundings; the second term covers act's exponential tail, where the f32 rounding of exp's
 * argument (|z| up to ~30) is amplified and where the f64 reference itself loses digits (1 + tanh(u)
 * for u ≪ 0 cancels to 0 in f64, while v / (1 + exp(-2u)) keeps the ~1e-27 value).
 */
const ACT_REL_TOL = 1e-6;
const ACT_TAIL_TOL = 1e-9;

let seed = 0x2545f491;
function rand(n: number): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed ^= seed << 13;
    seed ^= seed >>> 17;
    seed ^= seed << 5;
    a[i] = ((seed >>> 0) / 2 ** 32 - 0.5) * 2;
  }
  return a;
}

interface Case { m: number; n: number; k: number; ldx: number; ldw: number; ldy: number; kn: boolean; bias: boolean }

/** f64 reference and Σ|x·w| per element. */
function reference(c: Case, x: Float32Array, w: Float32Array, b: Float32Array | null): { y: Float64Array; mag: Float64Array } {
  const y = new Float64Array(c.m * c.n);
  const mag = new Float64Array(c.m * c.n);
  for (let r = 0; r < c.m; r++)
    for (let o = 0; o < c.n; o++) {
      let acc = 0;
      let abs = 0;
      for (let i = 0; i < c.k; i++) {
        const p = x[r * c.ldx + i]! * w[c.kn ? i * c.ldw + o : o * c.ldw + i]!;
        acc += p;
        abs += Math.abs(p);
      }
      y[r * c.n + o] = acc + (b ? b[o]! : 0);
      mag[r * c.n + o] = abs + (b ? Math.abs(b[o]!) : 0);
    }
  return { y, mag };
}

function run(c: Case, x: Float32Array, w: Float32Array, b: Float32Array | null): Float32Array {
  const y = new Float32Array(c.m === 0 ? 0 : (c.m - 1) * c.ldy + c.n).fill(Number.NaN);
  native!.gemmF32(x, w, b, y, c.m, c.n, c.k, { ldx: c.ldx, ldw: c.ldw, ldy: c.ldy, wKN: c.kn });
  return y;
}

function makeCase(m: number, n: number, k: number, kn: boolean, bias: boolean, pad = 0): Case {
  return { m, n, k, kn, bias, ldx: k + pad, ldw: (kn ? n : k) + pad, ldy: n + pad };
}

const SHAPES: Array<[number, number, number]> = [
  [1, 1, 1], [1, 17, 5], [1, 256, 256], [1, 4096, 64], [2, 3, 33], [3, 31, 17], [4, 4, 16], [5, 19, 15],
  [7, 64, 100], [9, 130, 257], [16, 48, 64], [33, 77, 1025], [64, 96, 1], [130, 65, 31], [256, 33, 7],
];

const isas = (): GemmIsa[] => {
  const out: GemmIsa[] = [];
  for (const s of ["portable", "avx2", "avx512"] as const) {
    try {
      native!.gemmIsa(s);
      out.push(s);
    } catch {
      // not on this CPU
    }
  }
  native!.gemmIsa("auto");
  return out;
};

describe.skipIf(!native)("trtb_gemm_f32", () => {
  const n = native!;
  afterAll(() => {
    n.gemmIsa("auto");
    n.setNumThreads(0);
  });

  test("auto picks a kernel set; portable is always there", () => {
    expect(["portable", "avx2", "avx512"]).toContain(n.gemmIsa());
    expect(isas()).toContain("portable");
    expectCode(() => n.gemmIsa("sse9" as GemmIsa), "NATIVE_INVALID_ARG");
  });

  for (const kn of [false, true])
    test(`matches the f64 loop within GEMM_REL_TOL on odd shapes, every kernel set (W ${kn ? "[k, n]" : "[n, k]"}, bias, strides)`, () => {
      for (const isa of isas()) {
        n.gemmIsa(isa);
        for (const [m, nn, k] of SHAPES)
          for (const [bias, pad] of [[false, 0], [true, 3]] as const) {
            const c = makeCase(m, nn, k, kn, bias, pad);
            const x = rand((m - 1) * c.ldx + k);
            const w = rand(kn ? (k - 1) * c.ldw + nn : (nn - 1) * c.ldw + k);
            const b = bias ? rand(nn) : null;
            const y = run(c, x, w, b);
            const ref = reference(c, x, w, b);
            for (let r = 0; r < m; r++)
              for (let o = 0; o < nn; o++) {
                const err = Math.abs(y[r * c.ldy + o]! - ref.y[r * nn + o]!);
                if (!(err <= GEMM_REL_TOL * ref.mag[r * nn + o]! + 1e-30))
                  throw new Error(`${isa} ${JSON.stringify(c)} [${r}, ${o}]: ${y[r * c.ldy + o]} vs ${ref.y[r * nn + o]}`);
              }
            // padding between rows of y is never written
            for (let r = 0; r + 1 < m; r++) for (let p = nn; p < c.ldy; p++) expect(y[r * c.ldy + p]).toBeNaN();
          }
      }
    });

  for (const kn of [false, true])
    test(`a row's bits do not depend on m, n, threads or zero-padded k (W ${kn ? "[k, n]" : "[n, k]"})`, () => {
      for (const isa of isas()) {
        n.gemmIsa(isa);
        const M = 37;
        const N = 300;
        const K = 203;
        const c = makeCase(M, N, K, kn, true);
        const x = rand(M * K);
        const w = rand(N * K);
        const b = rand(N);
        n.setNumThreads(1);
        const one = run(c, x, w, b);
        n.setNumThreads(4); // more threads than the 2-core CI machine: still the same bits
        const many = run(c, x, w, b);
        expect(many).toEqual(one);
        n.setNumThreads(0);
        // Row 11 alone (m = 1) and columns 5..ends (a narrower n) give the same bits.
        const row = 11;
        const c1 = makeCase(1, N, K, kn, true);
        const y1 = run(c1, x.subarray(row * K), w, b);
        expect(y1).toEqual(one.subarray(row * N, (row + 1) * N));
        if (!kn) {
          const sub = run(makeCase(M, N - 5, K, false, true), x, w.subarray(5 * K), b.subarray(5));
          for (let r = 0; r < M; r++) expect(sub.subarray(r * (N - 5), (r + 1) * (N - 5))).toEqual(one.subarray(r * N + 5, (r + 1) * N));
        }
        // k zero-padded to K + 29: x has zeros there (W anything finite) → the same bits
        const KP = K + 29;
        const xp = new Float32Array(M * KP);
        for (let r = 0; r < M; r++) xp.set(x.subarray(r * K, (r + 1) * K), r * KP);
        const wp = rand(N * KP);
        if (kn) wp.set(w); // W [k, n]: first K rows are the same
        else for (let o = 0; o < N; o++) wp.set(w.subarray(o * K, (o + 1) * K), o * KP);
        const padded = run(makeCase(M, N, KP, kn, true), xp, wp, b);
        expect(padded).toEqual(one);
      }
    });

  test("k = 0 gives the bias (or zeros); m = 0 or n = 0 does nothing", () => {
    const y = new Float32Array(6).fill(7);
    n.gemmF32(new Float32Array(0), new Float32Array(0), Float32Array.of(1, 2, 3), y, 2, 3, 0);
    expect(Array.from(y)).toEqual([1, 2, 3, 1, 2, 3]);
    n.gemmF32(new Float32Array(0), new Float32Array(0), null, y, 2, 3, 0);
    expect(Array.from(y)).toEqual([0, 0, 0, 0, 0, 0]);
    n.gemmF32(new Float32Array(0), new Float32Array(4), null, new Float32Array(0), 0, 2, 2);
  });

  test("bad sizes and arguments are NATIVE_SIZE / NATIVE_INVALID_ARG", () => {
    const x = new Float32Array(12);
    const w = new Float32Array(20);
    const y = new Float32Array(15);
    n.gemmF32(x, w, null, y, 3, 5, 4); // fits
    expectCode(() => n.gemmF32(x.subarray(1), w, null, y, 3, 5, 4), "NATIVE_SIZE", /need x >= 48/);
    expectCode(() => n.gemmF32(x, w.subarray(1), null, y, 3, 5, 4), "NATIVE_SIZE");
    expectCode(() => n.gemmF32(x, w, null, y.subarray(1), 3, 5, 4), "NATIVE_SIZE");
    expectCode(() => n.gemmF32(x, w, new Float32Array(4), y, 3, 5, 4), "NATIVE_SIZE", /bias_bytes/);
    expectCode(() => n.gemmF32(x, w, null, y, 3, 5, 4, { ldx: 3 }), "NATIVE_INVALID_ARG", /ldx 3 < k 4/);
    expectCode(() => n.gemmF32(x, w, null, y, 3, 5, 4, { ldy: 4 }), "NATIVE_INVALID_ARG", /ldy/);
    expectCode(() => n.gemmF32(x, w, null, y, 3, 5, 4, { ldw: 3 }), "NATIVE_INVALID_ARG", /ldw/);
    expectCode(() => n.gemmF32(x, w, null, y, 3, 5, 4, { wKN: true, ldw: 4 }), "NATIVE_INVALID_ARG", /ldw 4 < 5/);
    expectCode(() => n.gemmF32(x, w, null, y, 3, 5, -1), "NATIVE_INVALID_ARG");
    expectCode(() => n.gemmF32(x, w, null, y, 3, 5, 2 ** 50), "NATIVE_SIZE");
    const big = new Float32Array(64);
    expectCode(() => n.gemmF32(big.subarray(0, 12), w, null, big.subarray(8, 23), 3, 5, 4), "NATIVE_INVALID_ARG", /overlaps/);
    expectCode(() => n.gemmF32(new Uint8Array(48) as unknown as Float32Array, w, null, y, 3, 5, 4), "NATIVE_INVALID_ARG", /Float32Array/);
  });
});

describe.skipIf(!native)("trtb_gated_act_f32", () => {
  const n = native!;
  const ref = {
    silu: (v: number) => v / (1 + Math.exp(-v)),
    gelu_tanh: (v: number) => 0.5 * v * (1 + Math.tanh(Math.sqrt(2 / Math.PI) * (v + 0.044715 * v ** 3))),
  };
  test("silu and tanh-GELU times the gate match f64 within ACT_REL_TOL, strided rows, extremes", () => {
    const rows = 7;
    const cols = 301;
    const a = rand(rows * (cols + 5)).map((v, i) => (i % 97 === 0 ? [0, -0, 100, -100, 88, -88, 1e-30][i % 7]! : v * 12));
    const g = rand(rows * (cols + 2));
    for (const act of ["silu", "gelu_tanh"] as const) {
      const y = new Float32Array(rows * cols);
      n.gatedAct(a, g, y, rows, cols, act, cols + 5, cols + 2);
      for (let r = 0; r < rows; r++)
        for (let c = 0; c < cols; c++) {
          const want = ref[act](a[r * (cols + 5) + c]!) * g[r * (cols + 2) + c]!;
          const got = y[r * cols + c]!;
          const ag = Math.abs(a[r * (cols + 5) + c]! * g[r * (cols + 2) + c]!);
          if (!(Math.abs(got - want) <= ACT_REL_TOL * Math.abs(want) + ACT_TAIL_TOL * ag)) throw new Error(`${act}(${a[r * (cols + 5) + c]}) · ${g[r * (cols + 2) + c]}: ${got} vs ${want}`);
        }
    }
    const nan = new Float32Array(1);
    n.gatedAct(Float32Array.of(Number.NaN), Float32Array.of(1), nan, 1, 1, "silu");
    expect(nan[0]).toBeNaN();
  });

  test("bad sizes and arguments are NATIVE_SIZE / NATIVE_INVALID_ARG", () => {
    const a = new Float32Array(12);
    const y = new Float32Array(12);
    n.gatedAct(a, a, y, 3, 4, "silu");
    expectCode(() => n.gatedAct(a.subarray(1), a, y, 3, 4, "silu"), "NATIVE_SIZE");
    expectCode(() => n.gatedAct(a, a, y.subarray(1), 3, 4, "silu"), "NATIVE_SIZE");
    expectCode(() => n.gatedAct(a, a, y, 3, 4, "silu", 3), "NATIVE_INVALID_ARG", /lda/);
    expectCode(() => n.gatedAct(a, a, y, 3, 4, "relu" as "silu"), "NATIVE_INVALID_ARG");
    expectCode(() => n.gatedAct(a, a, a, 3, 4, "silu"), "NATIVE_INVALID_ARG", /overlaps/);
  });
});
