/**
 * The weight-only (W8A16 / W4A16) weight layout of our engine's tensor-core kernel
 * (cshim/engine/kernels/gemm_wo.cu has the full description):
 *
 *   q [N, K] int8 values (int4 values in [-8, 7]) → rows padded to 16, cols to the k tile
 *   (32 int8 / 64 int4 values), cut into 16 × k-tile tiles of 512 bytes, row tile major. Lane l
 *   (g = l >> 2, t = l & 3) of a tile owns bytes [16 l, 16 l + 16): for each 16-wide k step s the
 *   mma.m16n8k16 A fragments over columns c0..c3 = tile k + t·KT/4 + 4s + 0..3 (the MMA's k order
 *   is permuted so each lane's activations are contiguous)
 *     a0 = (g, c0 c1)  a1 = (g+8, c0 c1)  a2 = (g, c2 c3)  a3 = (g+8, c2 c3)
 *   int8: bytes 8s..8s+7 = a0 a0' a1 a1' a2 a2' a3 a3', each q + 128
 *   int4: little-endian word s; pair j in bits 4j (first) and 16 + 4j (second), each q + 8
 *   Padding holds q = 0.
 *
 * The builder packs with `woPack` (src/builder/wo-pack.ts: libtrtb when it loads, else `woPackTS`;
 * tests hold them to the same bytes); the GPU runtime reads the layout.
 */


export type WoBits = 8 | 4;

/** Elements per k tile. */
export const woKTile = (bits: WoBits) => (bits === 8 ? 32 : 64);

/** Bytes of the packed layout of an [N, K] matrix. */
export function woPackedBytes(N: number, K: number, bits: WoBits): number {
  return Math.ceil(N / 16) * Math.ceil(K / woKTile(bits)) * 512;
}

/** The TypeScript reference of the layout. `q` holds N·K int8 values, row-major. */
export function woPackTS(q: Int8Array, N: number, K: number, bits: WoBits): Uint8Array {
  const kt = woKTile(bits);
  const rtiles = Math.ceil(N / 16);
  const ktiles = Math.ceil(K / kt);
  const out = new Uint8Array(rtiles * ktiles * 512);
  const at = (r: number, c: number) => (r < N && c < K ? q[r * K + c]! : 0);
  for (let rt = 0; rt < rtiles; rt++)
    for (let t0 = 0; t0 < ktiles; t0++) {
      const tile = (rt * ktiles + t0) * 512;
      for (let lane = 0; lane < 32; lane++) {
        const g = lane >> 2;
        const t = lane & 3;
        const r0 = rt * 16 + g;
        const r1 = r0 + 8;
        const o = tile + lane * 16;
        for (let s = 0; s < kt / 16; s++) {
          const k = t0 * kt + t * (kt / 4) + s * 4;
          const v = [at(r0, k), at(r0, k + 1), at(r1, k), at(r1, k + 1), at(r0, k + 2), at(r0, k + 3), at(r1, k + 2), at(r1, k + 3)];
          if (bits === 8) {
            for (let e = 0; e < 8; e++) out[o + s * 8 + e] = (v[e]! + 128) & 0xff;
          } else {
            let w = 0;
            for (let p = 0; p < 4; p++) {
              w |= ((v[2 * p]! + 8) & 15) << (4 * p);
              w |= ((v[2 * p + 1]! + 8) & 15) << (16 + 4 * p);
            }
            out[o + s * 4] = w & 0xff;
            out[o + s * 4 + 1] = (w >>> 8) & 0xff;
            out[o + s * 4 + 2] = (w >>> 16) & 0xff;
            out[o + s * 4 + 3] = (w >>> 24) & 0xff;
          }
        }
      }
    }
  return out;
}

/** The inverse of the layout: q [N, K] as int8 values (tests, the CPU emulator of engine programs). */
export function woUnpackTS(packed: Uint8Array, N: number, K: number, bits: WoBits): Int8Array {
  const kt = woKTile(bits);
  const ktiles = Math.ceil(K / kt);
  const q = new Int8Array(N * K);
  const put = (r: number, c: number, v: number) => {
    if (r < N && c < K) q[r * K + c] = v;
  };
  for (let rt = 0; rt < Math.ceil(N / 16); rt++)
    for (let t0 = 0; t0 < ktiles; t0++)
      for (let lane = 0; lane < 32; lane++) {
        const o = (rt * ktiles + t0) * 512 + lane * 16;
        const r0 = rt * 16 + (lane >> 2);
        const r1 = r0 + 8;
        for (let s = 0; s < kt / 16; s++) {
          const k = t0 * kt + (lane & 3) * (kt / 4) + s * 4;
          const pos: [number, number][] = [[r0, k], [r0, k + 1], [r1, k], [r1, k + 1], [r0, k + 2], [r0, k + 3], [r1, k + 2], [r1, k + 3]];
          if (bits === 8) pos.forEach(([r, c], e) => put(r, c, packed[o + s * 8 + e]! - 128));
          else {
            const w = packed[o + s * 4]! | (packed[o + s * 4 + 1]! << 8) | (packed[o + s * 4 + 2]! << 16) | (packed[o + s * 4 + 3]! << 24);
            for (let p = 0; p < 4; p++) {
              put(pos[2 * p]![0], pos[2 * p]![1], ((w >>> (4 * p)) & 15) - 8);
              put(pos[2 * p + 1]![0], pos[2 * p + 1]![1], ((w >>> (16 + 4 * p)) & 15) - 8);
            }
          }
        }
      }
  return q;
}

/** Scale of row `r`, group `g` (of G) in the tiled order of woGroupScalesTS. */
export const woGroupScaleIndex = (r: number, g: number, G: number): number => (((r >> 4) * G + g) * 8 + (r & 7)) * 2 + ((r >> 3) & 1);

/**
 * Group-wise (AWQ) scales in the kernel's order: s [N, G] (one per row and group of input
 * columns, row-major as modelopt stores them) → [ceil(N/16), G, 8, 2]: for each 16-row tile and
 * group, rows g and g + 8 side by side (lane g of the kernel loads its pair with one 4-byte load).
 * Rows past N hold 0.
 */
export function woGroupScalesTS(s: Float32Array, N: number, G: number): Float32Array {
  const out = new Float32Array(Math.ceil(N / 16) * G * 16);
  for (let r = 0; r < N; r++) for (let g = 0; g < G; g++) out[woGroupScaleIndex(r, g, G)] = s[r * G + g]!;
  return out;
}

/** modelopt's int4 packing along the output dim ([N/2, K], byte (r2, c) = low nibble row 2·r2, high nibble row 2·r2+1) → q [N, K]. */
export function unpackInt4Rows(bytes: Uint8Array, N: number, K: number, into = new Int8Array(N * K), rowOffset = 0): Int8Array {
  for (let r2 = 0; r2 < N / 2; r2++) {
    const src = r2 * K;
    const lo = (rowOffset + 2 * r2) * K;
    const hi = lo + K;
    for (let c = 0; c < K; c++) {
      const b = bytes[src + c]!;
      into[lo + c] = ((b & 0xf) << 28) >> 28;
      into[hi + c] = (b << 24) >> 28;
    }
  }
  return into;
}
