/**
 * The CPU runner's products (src/runtime/cpu-gemm.ts): the native linear and attention paths
 * and the gated activation against the TypeScript loops they replace (f64), on GQA / sliding-window / soft-cap cases
 * with cached positions, and a whole forward pass with libtrtb against the TypeScript-only runner.
 * The native half is skipped without build/libtrtb.so unless TRTB_REQUIRE_NATIVE=1.
 */
import { afterEach, describe, expect, test } from "bun:test";
import { convertCheckpoint, loadCpuRunner } from "../../src/index.ts";
import { nativeLib } from "../../src/ffi/index.ts";
import { attention, attentionTs, cpuGemmLib, gatedAct, linearF32, linearTs, setCpuGemmBackend } from "../../src/runtime/cpu-gemm.ts";
import { fixture, relMaxErr, tempDir } from "../helpers.ts";

const native = nativeLib();
if (!native && process.env.TRTB_REQUIRE_NATIVE === "1") throw new Error("TRTB_REQUIRE_NATIVE=1 but libtrtb could not be loaded");

/** max|Δ| / max|ref| of f32 sums against the f64 loops, one product or one attention call. */
const OP_REL_TOL = 1e-5;
/** The same for whole-model logits (several layers of f32 sums). */
const FORWARD_REL_TOL = 1e-4;

let seed = 0x1234567;
function rand(n: number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    seed = (Math.imul(seed, 1103515245) + 12345) >>> 0;
    a[i] = (seed / 2 ** 32 - 0.5) * 2 * scale;
  }
  return a;
}

afterEach(() => void setCpuGemmBackend("auto"));

describe.skipIf(!native)("cpu-gemm native paths", () => {
  test("linearF32 (row offset, bias, S = 1 and odd sizes) matches linearTs", () => {
    for (const [S, inF, rows, off] of [[1, 64, 96, 0], [5, 33, 17, 4], [19, 130, 70, 9], [64, 256, 512, 0]] as const) {
      const x = rand(S * inF);
      const w = rand((rows + off + 3) * inF);
      const b = rand(rows + off + 3);
      expect(relMaxErr(linearF32(x, S, w, inF, b, off, rows), linearTs(x, S, w, inF, b, off, rows))).toBeLessThanOrEqual(OP_REL_TOL);
      expect(relMaxErr(linearF32(x, S, w, inF, undefined, off, rows), linearTs(x, S, w, inF, undefined, off, rows))).toBeLessThanOrEqual(OP_REL_TOL);
    }
  });

  test("attention (GQA, cached positions, sliding window, soft-cap) matches attentionTs", () => {
    const cases = [
      { S: 1, pos0: 0, nH: 4, nKV: 2, d: 64, softcap: null, window: null },
      { S: 7, pos0: 0, nH: 4, nKV: 4, d: 16, softcap: null, window: null },
      { S: 1, pos0: 40, nH: 8, nKV: 2, d: 32, softcap: 50, window: null },
      { S: 13, pos0: 21, nH: 6, nKV: 3, d: 24, softcap: null, window: 9 },
      { S: 33, pos0: 5, nH: 2, nKV: 1, d: 80, softcap: 30, window: 16 },
    ];
    for (const c of cases) {
      const T = c.pos0 + c.S;
      const q = rand(c.S * c.nH * c.d);
      const K = rand((T + 11) * c.nKV * c.d); // longer than T, like the cache's capacity
      const V = rand((T + 11) * c.nKV * c.d);
      const spec = { ...c, scale: 1 / Math.sqrt(c.d) };
      expect(relMaxErr(attention(q, K, V, spec), attentionTs(q, K, V, spec))).toBeLessThanOrEqual(OP_REL_TOL);
    }
  });

  test("gatedAct (separate and fused [linear; activated] layouts) matches the TypeScript loop", () => {
    const S = 5;
    const I = 37;
    const both = rand(S * 2 * I, 6);
    for (const act of ["silu", "gelu_tanh"] as const) {
      const fast = new Float32Array(S * I);
      const ts = new Float32Array(S * I);
      gatedAct(fast, act, both, I, 2 * I, both, 0, 2 * I, S, I);
      setCpuGemmBackend("ts");
      gatedAct(ts, act, both, I, 2 * I, both, 0, 2 * I, S, I);
      setCpuGemmBackend("auto");
      expect(relMaxErr(fast, ts)).toBeLessThanOrEqual(OP_REL_TOL);
    }
  });

  test("a forward pass through libtrtb matches the TypeScript-only runner (llama, gemma2)", async () => {
    for (const name of ["llama", "gemma2", "phi3"]) {
      using d = tempDir();
      await convertCheckpoint({ modelDir: fixture(name), outputDir: d.path });
      const r = await loadCpuRunner(d.path);
      const ids = [1, 5, 17, 33, 2, 9, 41, 7, 12, 3];
      setCpuGemmBackend("auto");
      expect(cpuGemmLib()).not.toBeNull();
      const fast = r.forward(ids);
      setCpuGemmBackend("ts");
      expect(cpuGemmLib()).toBeNull();
      const ts = r.forward(ids);
      expect(relMaxErr(fast, ts)).toBeLessThanOrEqual(FORWARD_REL_TOL);
    }
  });
});

test("setCpuGemmBackend returns the previous setting", () => {
  expect(setCpuGemmBackend("ts")).toBe("auto");
  expect(setCpuGemmBackend("auto")).toBe("ts");
});
