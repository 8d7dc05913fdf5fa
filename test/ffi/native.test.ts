/**
 * libtrtb (CPU) through src/ffi: conversions bit for bit against src/numeric.ts, transpose against
 * a plain loop, and every status code. Needs build/libtrtb.so (`bun run build`); without it the
 * suite is skipped with a warning, unless TRTB_REQUIRE_NATIVE=1 (CI), where that is a failure.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { DTYPE_SIZE } from "../../src/dtype.ts";
import { isTrtbError, TrtbError } from "../../src/errors.ts";
import { makeChecker, STATUS_CODE, statusCode } from "../../src/ffi/check.ts";
import { nativeLib, requireNative } from "../../src/ffi/index.ts";
import { CPU_LIB, loadLibrary } from "../../src/ffi/lib.ts";
import { ABI_VERSION, DTYPE_CODE, STATUS } from "../../src/ffi/symbols.ts";
import { ALL_FLOAT, expectSameElements, type FloatDType, randomBytes, refConvert, refTranspose, stressF32 } from "./_ref.ts";

const native = nativeLib();
if (!native) {
  if (process.env.TRTB_REQUIRE_NATIVE === "1") throw new Error("TRTB_REQUIRE_NATIVE=1 but libtrtb could not be loaded (run `bun run build`)");
  console.warn("test/ffi/native.test.ts: libtrtb not found (run `bun run build`); skipping");
}

/** Run `fn`, return the TrtbError it throws (failing if it throws nothing or something else). */
function trtbErr(fn: () => unknown): TrtbError {
  try {
    fn();
  } catch (e) {
    if (isTrtbError(e)) return e;
    throw e;
  }
  throw new Error("expected a TrtbError");
}

/** Every 16-bit pattern, as bytes. */
function all16(): Uint8Array {
  const u = new Uint16Array(65536);
  for (let i = 0; i < 65536; i++) u[i] = i;
  return new Uint8Array(u.buffer);
}

describe.skipIf(!native)("native convert", () => {
  const n = native!;
  const conv = (src: Uint8Array, from: FloatDType, to: FloatDType) => {
    const dst = new Uint8Array((src.byteLength / DTYPE_SIZE[from]) * DTYPE_SIZE[to]);
    n.convert(src, from, dst, to);
    return dst;
  };

  test("loads from build/ with the expected ABI", () => {
    expect(n.abiVersion).toBe(ABI_VERSION);
    expect(n.path).toMatch(/libtrtb\.so$/);
    expect(requireNative()).toBe(n);
  });

  for (const from of ["F16", "BF16"] as const) {
    for (const to of ALL_FLOAT) {
      test(`all 65536 ${from} patterns -> ${to}`, () => {
        const src = all16();
        expectSameElements(conv(src, from, to), refConvert(src, from, to), DTYPE_SIZE[to], `${from}->${to}`, src, 2);
      });
    }
  }

  for (const to of ["F16", "BF16"] as const) {
    test(`1.25M stress f32 patterns -> ${to} (threaded: 4 threads)`, () => {
      const src = stressF32(1_250_000);
      const prev = n.setNumThreads(4);
      try {
        expectSameElements(conv(src, "F32", to), refConvert(src, "F32", to), 2, `F32->${to}`, src, 4);
      } finally {
        n.setNumThreads(prev);
      }
    });
  }

  test("single-threaded and threaded results are identical on a large buffer", () => {
    const src = stressF32(3_000_000, 777);
    const one = new Uint8Array(6_000_000);
    const many = new Uint8Array(6_000_000);
    const prev = n.setNumThreads(1);
    n.convert(src, "F32", one, "BF16");
    n.setNumThreads(7);
    n.convert(src, "F32", many, "BF16");
    n.setNumThreads(prev);
    expect(Buffer.compare(one, many)).toBe(0);
  });

  test("odd sizes and unaligned views, every dtype pair", () => {
    const backing = randomBytes(4 * 70_000 + 8, 99);
    for (const count of [0, 1, 2, 3, 7, 63, 64, 65, 1023, 4097, 65_537]) {
      for (const from of ALL_FLOAT) {
        for (const to of ALL_FLOAT) {
          for (const off of [0, 1, 3]) {
            const src = backing.subarray(off, off + count * DTYPE_SIZE[from]);
            const dstBacking = new Uint8Array(count * DTYPE_SIZE[to] + 2);
            const dst = dstBacking.subarray(1, 1 + count * DTYPE_SIZE[to]);
            n.convert(src, from, dst, to);
            expectSameElements(dst, refConvert(src, from, to), DTYPE_SIZE[to], `${count} ${from}->${to} @${off}`, src, DTYPE_SIZE[from]);
            expect(dstBacking[0]).toBe(0); // nothing written outside the view
            expect(dstBacking[dstBacking.length - 1]).toBe(0);
          }
        }
      }
    }
  });

  test("same dtype is a byte copy, for non-float dtypes too", () => {
    const src = randomBytes(4099, 5);
    for (const d of ["U8", "I8", "F8_E4M3", "BOOL"] as const) {
      const dst = new Uint8Array(4099);
      n.convert(src, d, dst, d);
      expect(Buffer.compare(dst, src)).toBe(0);
    }
    const w = randomBytes(8 * 100, 6);
    const out = new Uint8Array(800);
    n.convert(w, "I64", out, "I64");
    expect(Buffer.compare(out, w)).toBe(0);
  });

  test("works on Bun.mmap-backed input", async () => {
    const file = `${process.env.TMPDIR ?? "/tmp"}/trtb-ffi-mmap-${process.pid}.bin`;
    const src = stressF32(10_000, 4);
    await Bun.write(file, src);
    try {
      const mapped = Bun.mmap(file, { shared: false });
      const out = new Uint8Array(20_000);
      n.convert(mapped.subarray(4, 40_000), "F32", out.subarray(2), "F16");
      expectSameElements(out.subarray(2), refConvert(src.subarray(4), "F32", "F16"), 2, "mmap");
    } finally {
      await Bun.file(file).delete();
    }
  });

  test("errors: dtype", () => {
    const src = new Uint8Array(8);
    const e = trtbErr(() => n.convert(src, "I8", new Uint8Array(16), "F16"));
    expect(e.code).toBe("NATIVE_DTYPE");
    expect(e.message).toContain("trtb_cast: cannot convert I8 to F16");
    expect(trtbErr(() => n.convert(src, "F32", new Uint8Array(8), "U32")).code).toBe("NATIVE_DTYPE");
    expect(trtbErr(() => n.convert(src, "NOPE" as never, new Uint8Array(8), "F32")).code).toBe("NATIVE_DTYPE");
  });

  test("errors: size", () => {
    let e = trtbErr(() => n.convert(new Uint8Array(8), "F32", new Uint8Array(6), "F16"));
    expect(e.code).toBe("NATIVE_SIZE");
    expect(e.message).toBe("trtb_cast: 2 elements F32 -> F16 need dst_bytes 4, got 6");
    e = trtbErr(() => n.convert(new Uint8Array(3), "F16", new Uint8Array(6), "F32"));
    expect(e.code).toBe("NATIVE_SIZE");
    expect(e.message).toContain("src_bytes 3 is not a multiple of the F16 element size 2");
  });

  test("errors: overlapping buffers", () => {
    const buf = new Uint8Array(64);
    const e = trtbErr(() => n.convert(buf.subarray(0, 32), "F32", buf.subarray(16, 32), "F16"));
    expect(e.code).toBe("NATIVE_INVALID_ARG");
    expect(e.message).toContain("overlap");
    // the identical buffer with the same dtype is allowed (a no-op)
    n.convert(buf, "F32", buf, "F32");
  });

  test("errors: a bare ArrayBuffer is refused before it reaches bun:ffi", () => {
    const e = trtbErr(() => n.convert(new ArrayBuffer(8) as never, "F32", new Uint8Array(4), "F16"));
    expect(e.code).toBe("NATIVE_INVALID_ARG");
    expect(e.message).toContain("ArrayBuffer");
  });
});

describe.skipIf(!native)("native transpose2d", () => {
  const n = native!;
  const shapes: [number, number][] = [
    [0, 5], [5, 0], [1, 1], [1, 9], [9, 1], [2, 3], [3, 5], [31, 33], [32, 32], [33, 31], [64, 65], [127, 257], [300, 7],
  ];
  for (const e of [1, 2, 4, 8]) {
    test(`elem ${e}: odd shapes and unaligned views`, () => {
      for (const [r, c] of shapes) {
        const bytes = r * c * e;
        const src = randomBytes(bytes + 1, r * 1000 + c).subarray(1);
        const dst = new Uint8Array(bytes + 3).subarray(3);
        n.transpose2d(src, dst, r, c, e);
        expectSameElements(dst, refTranspose(src, r, c, e), e, `${r}x${c}x${e}`);
      }
    });
  }

  test("large matrices take the threaded path (split over rows, then over columns)", () => {
    const prev = n.setNumThreads(4);
    try {
      for (const [r, c, e] of [[2049, 2051, 4], [40, 100_003, 4], [1500, 1501, 8]] as const) {
        const src = randomBytes(r * c * e, r + c);
        const dst = new Uint8Array(src.byteLength);
        n.transpose2d(src, dst, r, c, e);
        expectSameElements(dst, refTranspose(src, r, c, e), e, `${r}x${c}x${e}`);
      }
    } finally {
      n.setNumThreads(prev);
    }
  });

  test("errors", () => {
    const src = new Uint8Array(24);
    let e = trtbErr(() => n.transpose2d(src, new Uint8Array(24), 2, 4, 3));
    expect(e.code).toBe("NATIVE_INVALID_ARG");
    expect(e.message).toContain("elem_size must be 1, 2, 4 or 8, got 3");
    e = trtbErr(() => n.transpose2d(src, new Uint8Array(20), 2, 3, 4));
    expect(e.code).toBe("NATIVE_SIZE");
    expect(e.message).toContain("src_bytes is 24 and dst_bytes is 20");
    expect(trtbErr(() => n.transpose2d(src, new Uint8Array(24), 2, 4, 4)).code).toBe("NATIVE_SIZE");
    e = trtbErr(() => n.transpose2d(src, new Uint8Array(24), 2 ** 40, 2 ** 30, 8));
    expect(e.code).toBe("NATIVE_SIZE");
    expect(e.message).toContain("overflow");
    expect(trtbErr(() => n.transpose2d(src, new Uint8Array(24), -2, 3, 4)).code).toBe("NATIVE_INVALID_ARG");
    expect(trtbErr(() => n.transpose2d(src, new Uint8Array(24), 2.5, 3, 4)).code).toBe("NATIVE_INVALID_ARG");
    expect(trtbErr(() => n.transpose2d(src, src, 2, 3, 4)).code).toBe("NATIVE_INVALID_ARG");
  });
});

describe.skipIf(!native)("raw C ABI (status codes, last error)", () => {
  let s: ReturnType<typeof loadRaw>;
  function loadRaw() {
    const r = loadLibrary(CPU_LIB);
    if (!r.ok) throw new Error("libtrtb did not load");
    return r.lib;
  }
  beforeAll(() => {
    s = loadRaw();
  });
  afterAll(() => s.close());
  const lastError = () => {
    const buf = new Uint8Array(1024);
    const len = s.symbols.trtb_last_error(buf, buf.byteLength);
    return new TextDecoder().decode(buf.subarray(0, len));
  };
  const F32 = DTYPE_CODE.F32, F16 = DTYPE_CODE.F16;

  test("NULL with a non-zero length is TRTB_ERR_INVALID_ARG", () => {
    const dst = new Uint8Array(8);
    expect(s.symbols.trtb_cast(null, 16, F32, dst, 8, F16)).toBe(STATUS.INVALID_ARG);
    expect(lastError()).toBe("trtb_cast: src is NULL but src_bytes is 16");
    expect(s.symbols.trtb_cast(new Uint8Array(16), 16, F32, null, 8, F16)).toBe(STATUS.INVALID_ARG);
    expect(lastError()).toBe("trtb_cast: dst is NULL but dst_bytes is 8");
    expect(s.symbols.trtb_transpose2d(null, 8, dst, 8, 2, 1, 4)).toBe(STATUS.INVALID_ARG);
    expect(lastError()).toContain("trtb_transpose2d: src is NULL");
    // NULL with length 0 is fine
    expect(s.symbols.trtb_cast(null, 0, F32, null, 0, F16)).toBe(STATUS.OK);
    expect(s.symbols.trtb_transpose2d(null, 0, null, 0, 0, 7, 4)).toBe(STATUS.OK);
  });

  test("dtype values outside the enum are TRTB_ERR_DTYPE", () => {
    const a = new Uint8Array(8), b = new Uint8Array(8);
    expect(s.symbols.trtb_cast(a, 8, 0, b, 8, F32)).toBe(STATUS.DTYPE);
    expect(lastError()).toBe("trtb_cast: src_dtype 0 is not a trtb_dtype");
    expect(s.symbols.trtb_cast(a, 8, F32, b, 8, 99)).toBe(STATUS.DTYPE);
    expect(lastError()).toBe("trtb_cast: dst_dtype 99 is not a trtb_dtype");
    expect(s.symbols.trtb_cast(a, 8, -5, b, 8, F32)).toBe(STATUS.DTYPE);
  });

  test("dtype sizes match src/dtype.ts", () => {
    for (const [name, code] of Object.entries(DTYPE_CODE)) expect([name, s.symbols.trtb_dtype_size(code)]).toEqual([name, DTYPE_SIZE[name as keyof typeof DTYPE_SIZE]]);
    expect(s.symbols.trtb_dtype_size(0)).toBe(0);
    expect(s.symbols.trtb_dtype_size(16)).toBe(0);
  });

  test("status strings name every code; unknown codes say so", () => {
    for (const [status, code] of Object.entries(STATUS)) {
      const str = s.symbols.trtb_status_str(status === "OK" ? 0 : code);
      expect(String(str)).toStartWith(status === "CUDA" ? "TRTB_ERR_CUDA:" : status === "OK" ? "TRTB_OK" : `TRTB_ERR_${status}`);
    }
    expect(String(s.symbols.trtb_status_str(-42))).toBe("unknown status");
  });

  test("trtb_last_error: length query, truncation, NUL termination; success keeps the text", () => {
    expect(s.symbols.trtb_cast(new Uint8Array(8), 8, F32, new Uint8Array(6), 6, F16)).toBe(STATUS.SIZE);
    const full = "trtb_cast: 2 elements F32 -> F16 need dst_bytes 4, got 6";
    expect(s.symbols.trtb_last_error(null, 0)).toBe(full.length);
    const small = new Uint8Array(8).fill(0xff);
    expect(s.symbols.trtb_last_error(small, 6)).toBe(full.length);
    expect(new TextDecoder().decode(small.subarray(0, 5))).toBe(full.slice(0, 5));
    expect(small[5]).toBe(0); // NUL
    expect(small[6]).toBe(0xff); // untouched past buf_len
    expect(s.symbols.trtb_cast(new Uint8Array(8), 8, F32, new Uint8Array(4), 4, F16)).toBe(STATUS.OK);
    expect(lastError()).toBe(full);
  });

  test("set_num_threads returns the previous value; negatives mean auto", () => {
    const prev = s.symbols.trtb_set_num_threads(3);
    expect(s.symbols.trtb_set_num_threads(-1)).toBe(3);
    expect(s.symbols.trtb_set_num_threads(prev)).toBe(0);
  });
});

describe("status -> TrtbError mapping", () => {
  test("every status has its stable code", () => {
    expect(STATUS_CODE).toEqual({
      [-1]: "NATIVE_INVALID_ARG",
      [-2]: "NATIVE_DTYPE",
      [-3]: "NATIVE_SIZE",
      [-4]: "NATIVE_OUT_OF_MEMORY",
      [-5]: "NATIVE_INTERNAL",
      [-6]: "NATIVE_UNSUPPORTED",
      [-100]: "CUDA_UNAVAILABLE",
      [-101]: "CUDA_NO_DEVICE",
      [-102]: "CUDA_OUT_OF_MEMORY",
      [-103]: "CUDA_ERROR",
    });
    expect(statusCode(-7)).toBe("NATIVE_UNKNOWN_STATUS");
  });

  test("checker uses the last-error text, falling back to the status string", () => {
    let text = "trtb_x: something broke";
    const check = makeChecker({
      lastError: (buf) => {
        const b = new TextEncoder().encode(text);
        buf.set(b.subarray(0, buf.byteLength - 1));
        return b.byteLength;
      },
      statusStr: () => "TRTB_ERR_SIZE: byte lengths do not match",
    });
    check(0);
    let e = trtbErr(() => check(-3));
    expect([e.code, e.message]).toEqual(["NATIVE_SIZE", "trtb_x: something broke"]);
    text = "";
    e = trtbErr(() => check(-3));
    expect(e.message).toBe("TRTB_ERR_SIZE: byte lengths do not match");
    text = "x".repeat(5000); // longer than the buffer: truncated, not overflowing
    expect(trtbErr(() => check(-103)).message.length).toBe(1023);
  });
});
