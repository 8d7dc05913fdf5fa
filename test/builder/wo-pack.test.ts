/**
 * The weight-only engine layout (src/engine/wo-layout.ts, packed by src/builder/wo-pack.ts): libtrtb's threaded packer gives the
 * TypeScript reference's bytes, unpacking inverts packing (padding dropped), the fragment positions
 * match the kernel's description for a hand-checked tile, and bad calls fail with their codes.
 */
import { describe, expect, test } from "bun:test";
import { woPackedBytes, woPackTS, woUnpackTS } from "../../src/engine/wo-layout.ts";
import { nativeLib } from "../../src/ffi/index.ts";
import { expectCode } from "../helpers.ts";

let seed = 7;
const rnd = () => {
  seed = (Math.imul(seed, 1664525) + 1013904223) >>> 0;
  return seed / 2 ** 32;
};
const randQ = (n: number, bits: 8 | 4) => Int8Array.from({ length: n }, () => Math.floor(rnd() * (bits === 8 ? 256 : 16)) - (bits === 8 ? 128 : 8));

describe("weight-only layout", () => {
  test("sizes: rows to 16, cols to 32 (int8) / 64 (int4), 512-byte tiles", () => {
    expect(woPackedBytes(16, 32, 8)).toBe(512);
    expect(woPackedBytes(17, 33, 8)).toBe(2 * 2 * 512);
    expect(woPackedBytes(16, 64, 4)).toBe(512);
    expect(woPackedBytes(4096, 14336, 4)).toBe(4096 * 14336 / 2);
  });

  test("unpack(pack(q)) = q for padded and unpadded shapes", () => {
    for (const bits of [8, 4] as const)
      for (const [N, K] of [[16, 64], [1, 2], [17, 130], [40, 96], [3, 200]] as const) {
        const q = randQ(N * K, bits);
        expect(woUnpackTS(woPackTS(q, N, K, bits), N, K, bits)).toEqual(q);
      }
  });

  test("fragment positions of lane 5 (g 1, t 1) in tile 0", () => {
    const N = 16;
    const K = 64;
    const q = Int8Array.from({ length: N * K }, (_, i) => ((Math.floor(i / K) * 7 + (i % K)) % 15) - 7);
    const at = (r: number, c: number) => q[r * K + c]!;
    const p8 = woPackTS(q, N, K, 8);
    // int8 (k tile 32): lane t=1 covers columns 8..15; k step 0: a0 = (1, 8 9), a1 = (9, 8 9), a2 = (1, 10 11), a3 = (9, 10 11), each + 128
    expect(Array.from(p8.subarray(5 * 16, 5 * 16 + 8))).toEqual([at(1, 8), at(1, 9), at(9, 8), at(9, 9), at(1, 10), at(1, 11), at(9, 10), at(9, 11)].map((v) => v + 128));
    // k step 1 continues at column 12
    expect(p8[5 * 16 + 8]).toBe(at(1, 12) + 128);
    const p4 = woPackTS(q, N, K, 4);
    const w = p4[5 * 16]! | (p4[5 * 16 + 1]! << 8) | (p4[5 * 16 + 2]! << 16) | (p4[5 * 16 + 3]! << 24);
    const nib = (bit: number) => ((w >>> bit) & 15) - 8;
    // int4 (k tile 64): lane t=1 covers columns 16..31; word 0 = k step 0 = columns 16..19
    expect([nib(0), nib(16), nib(4), nib(20), nib(8), nib(24), nib(12), nib(28)]).toEqual([at(1, 16), at(1, 17), at(9, 16), at(9, 17), at(1, 18), at(1, 19), at(9, 18), at(9, 19)]);
  });

  const native = nativeLib();
  test.skipIf(!native)("libtrtb's packer gives the reference bytes; bad calls fail with codes", () => {
    for (const bits of [8, 4] as const)
      for (const [N, K] of [[16, 64], [1, 2], [17, 130], [300, 200], [64, 4096]] as const) {
        const q = randQ(N * K, bits);
        const dst = new Uint8Array(woPackedBytes(N, K, bits)).fill(0xaa);
        native!.woPack(new Uint8Array(q.buffer), N, K, bits, dst);
        expect(Buffer.from(dst).equals(Buffer.from(woPackTS(q, N, K, bits)))).toBe(true);
      }
    const q = new Uint8Array(32 * 64);
    expectCode(() => native!.woPack(q, 32, 64, 5 as 8, new Uint8Array(woPackedBytes(32, 64, 8))), "NATIVE_INVALID_ARG");
    expectCode(() => native!.woPack(q, 32, 64, 8, new Uint8Array(100)), "NATIVE_SIZE");
    expectCode(() => native!.woPack(q.subarray(1), 32, 64, 8, new Uint8Array(woPackedBytes(32, 64, 8))), "NATIVE_SIZE");
  });
});
