/**
 * libtrtb_cuda through src/ffi: GPU convert and transpose bit for bit against the CPU library and
 * the TypeScript reference, plus buffer/stream ownership and error codes. Runs only where the CUDA
 * library loads and sees a device; elsewhere the whole suite is skipped.
 */
import { describe, expect, test } from "bun:test";
import { DTYPE_SIZE } from "../../src/dtype.ts";
import { isTrtbError, type TrtbError } from "../../src/errors.ts";
import { type Cuda, cudaLib, nativeLib } from "../../src/ffi/index.ts";
import { ALL_FLOAT, expectSameElements, type FloatDType, randomBytes, refConvert, refTranspose, stressF32 } from "./_ref.ts";

let cuda: Cuda | null = null;
let why = "";
try {
  cuda = cudaLib();
} catch (e) {
  why = isTrtbError(e) ? `${e.code}: ${e.message.split("\n")[0]}` : String(e);
}
const gpu = cuda !== null && cuda.deviceCount() > 0;
if (!gpu) console.warn(`test/ffi/cuda.test.ts: no usable GPU, skipping (${why})`);

function trtbErr(fn: () => unknown): TrtbError {
  try {
    fn();
  } catch (e) {
    if (isTrtbError(e)) return e;
    throw e;
  }
  throw new Error("expected a TrtbError");
}

describe.skipIf(!gpu)("cuda", () => {
  const c = cuda!;
  const cpu = nativeLib();

  /** Convert on the GPU: upload, convert, download. */
  const gpuConvert = (src: Uint8Array, from: FloatDType, to: FloatDType): Uint8Array => {
    using d = c.upload(src);
    using o = c.alloc((src.byteLength / DTYPE_SIZE[from]) * DTYPE_SIZE[to]);
    c.convert(d, from, o, to);
    return o.download();
  };

  test("device properties and versions", () => {
    const p = c.deviceProps(0);
    expect(p.name.length).toBeGreaterThan(0);
    expect(p.major).toBeGreaterThanOrEqual(7);
    expect(p.multiprocessors).toBeGreaterThan(0);
    expect(p.totalMemory).toBeGreaterThan(1 << 30);
    expect(c.runtimeVersion).toBeGreaterThanOrEqual(12000);
    expect(c.driverVersion).toBeGreaterThanOrEqual(c.runtimeVersion);
    console.log(`GPU: ${p.name} sm_${p.major}${p.minor}, ${p.multiprocessors} SMs, ${(p.totalMemory / 2 ** 30).toFixed(1)} GiB, features ${JSON.stringify(c.features)}`);
  });

  test("all 16-bit patterns, every pair: GPU == reference", () => {
    const u = new Uint16Array(65536);
    for (let i = 0; i < 65536; i++) u[i] = i;
    const src = new Uint8Array(u.buffer);
    for (const from of ["F16", "BF16"] as const)
      for (const to of ALL_FLOAT) expectSameElements(gpuConvert(src, from, to), refConvert(src, from, to), DTYPE_SIZE[to], `gpu ${from}->${to}`, src, 2);
  });

  test("stress f32 patterns -> f16/bf16: GPU == reference", () => {
    const src = stressF32(1_250_000, 31);
    for (const to of ["F16", "BF16"] as const) expectSameElements(gpuConvert(src, "F32", to), refConvert(src, "F32", to), 2, `gpu F32->${to}`, src, 4);
  });

  test("random data at several sizes, every pair: GPU == CPU library", () => {
    for (const count of [1, 3, 255, 256, 257, 65_535, 1_000_003, 16_777_259]) {
      const src32 = randomBytes(count * 4, count);
      for (const from of ALL_FLOAT) {
        const src = src32.subarray(0, count * DTYPE_SIZE[from]);
        for (const to of ALL_FLOAT) {
          const want = new Uint8Array(count * DTYPE_SIZE[to]);
          if (cpu) cpu.convert(src, from, want, to);
          else want.set(refConvert(src, from, to));
          expectSameElements(gpuConvert(src, from, to), want, DTYPE_SIZE[to], `gpu ${count} ${from}->${to}`);
        }
      }
    }
  });

  test("transpose: odd and large shapes, elem 1/2/4/8: GPU == reference", () => {
    const shapes: [number, number][] = [[1, 1], [1, 9], [9, 1], [3, 5], [31, 33], [32, 32], [33, 65], [1000, 1001], [2_100_000, 3], [2, 2_100_001]];
    for (const e of [1, 2, 4, 8]) {
      for (const [r, cols] of shapes) {
        if (r * cols * e > 64 << 20) continue;
        const src = randomBytes(r * cols * e, r ^ cols);
        using d = c.upload(src);
        using o = c.alloc(src.byteLength);
        c.transpose2d(d, o, r, cols, e);
        const want = cpu && r * cols > 1 << 20 ? (() => { const w = new Uint8Array(src.byteLength); cpu.transpose2d(src, w, r, cols, e); return w; })() : refTranspose(src, r, cols, e);
        expectSameElements(o.download(), want, e, `gpu transpose ${r}x${cols}x${e}`);
      }
    }
  });

  test("explicit streams and sub-buffer views", () => {
    using s = c.createStream(0);
    const src = stressF32(100_000, 8);
    using d = c.alloc(src.byteLength + 256);
    const view = d.subarray(256); // 256-byte offset keeps alignment
    expect(view.isView).toBe(true);
    view.upload(src, s);
    using o = c.alloc(100_000 * 2);
    c.convert(view, "F32", o, "BF16", s);
    s.synchronize();
    expectSameElements(o.download(undefined, s), refConvert(src, "F32", "BF16"), 2, "stream+view");
    // a misaligned view is refused, not faulted on
    const odd = d.subarray(2, 2 + 400);
    const e = trtbErr(() => c.convert(odd, "F32", o.subarray(0, 200), "BF16", s));
    expect(e.code).toBe("NATIVE_INVALID_ARG");
    expect(e.message).toContain("not aligned");
  });

  test("use after destroy throws NATIVE_DESTROYED; destroy is idempotent; views die with the owner", () => {
    const b = c.alloc(64);
    const v = b.subarray(0, 32);
    b.destroy();
    b.destroy();
    expect(b.destroyed).toBe(true);
    expect(v.destroyed).toBe(true);
    expect(trtbErr(() => b.download()).code).toBe("NATIVE_DESTROYED");
    expect(trtbErr(() => v.upload(new Uint8Array(32))).code).toBe("NATIVE_DESTROYED");
    const s = c.createStream();
    s.destroy();
    s.destroy();
    using o = c.alloc(64);
    expect(trtbErr(() => o.download(undefined, s)).code).toBe("NATIVE_DESTROYED");
    // the default stream belongs to the Cuda object: destroy() leaves it usable
    c.defaultStream(0).destroy();
    o.upload(new Uint8Array(64).fill(7));
    expect(o.download()[63]).toBe(7);
  });

  test("error codes: size, dtype, out of memory, bad device", () => {
    using a = c.alloc(16);
    using b = c.alloc(6);
    expect(trtbErr(() => c.convert(a, "F32", b, "F16")).code).toBe("NATIVE_SIZE");
    expect(trtbErr(() => c.convert(a, "I32", b, "F16")).code).toBe("NATIVE_DTYPE");
    expect(trtbErr(() => c.transpose2d(a, b, 2, 2, 4)).code).toBe("NATIVE_SIZE");
    expect(trtbErr(() => c.transpose2d(a, a, 2, 2, 4)).code).toBe("NATIVE_INVALID_ARG"); // overlap
    expect(trtbErr(() => a.upload(new Uint8Array(15))).code).toBe("NATIVE_SIZE");
    const oom = trtbErr(() => c.alloc(2 ** 50));
    expect(oom.code).toBe("CUDA_OUT_OF_MEMORY");
    expect(oom.message).toContain("cannot allocate");
    expect(trtbErr(() => c.alloc(16, c.deviceCount())).code).toBe("NATIVE_INVALID_ARG");
    // the context survives all of that
    a.upload(new Uint8Array(16).fill(1));
    expect(a.download()[0]).toBe(1);
    c.synchronize(0);
  });
});
