/** Test helpers: fixture paths, an independent minimal safetensors reader, and plain array ops. */
import { readFileSync } from "node:fs";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { expect } from "bun:test";
import { type ErrorCode, TrtbError } from "../src/errors.ts";

export const SHARED = resolve(import.meta.dir, "../../shared");
export const FIXTURES = join(SHARED, "fixtures/hf-tiny");
export const fixture = (name: string) => join(FIXTURES, name);

export function tempDir(prefix = "trtb-test-"): { path: string; [Symbol.dispose](): void } {
  const path = mkdtempSync(join(tmpdir(), prefix));
  return { path, [Symbol.dispose]: () => rmSync(path, { recursive: true, force: true }) };
}

export interface RawTensor {
  dtype: string;
  shape: number[];
  bytes: Uint8Array;
}

/** Deliberately independent of src/format: parse a safetensors file the simplest way. */
export function readRaw(file: string): Map<string, RawTensor> {
  const buf = new Uint8Array(readFileSync(file));
  const n = Number(new DataView(buf.buffer).getBigUint64(0, true));
  const header = JSON.parse(new TextDecoder().decode(buf.subarray(8, 8 + n))) as Record<string, { dtype: string; shape: number[]; data_offsets: [number, number] }>;
  const out = new Map<string, RawTensor>();
  for (const [k, v] of Object.entries(header)) {
    if (k === "__metadata__") continue;
    out.set(k, { dtype: v.dtype, shape: v.shape, bytes: buf.slice(8 + n + v.data_offsets[0], 8 + n + v.data_offsets[1]) });
  }
  return out;
}

/** All tensors of an HF fixture dir (sharded or not), by name. */
export function readRawDir(dir: string): Map<string, RawTensor> {
  const out = new Map<string, RawTensor>();
  for (const f of new Bun.Glob("model*.safetensors").scanSync(dir)) for (const [k, v] of readRaw(join(dir, f))) out.set(k, v);
  return out;
}

// --- plain 2-D ops on raw bytes with element size `es` (row-major [rows, cols]) ----------------

export function rows(t: RawTensor, start: number, count: number, es = 2): RawTensor {
  const cols = t.shape.length > 1 ? t.shape.slice(1).reduce((a, b) => a * b, 1) : 1;
  return { dtype: t.dtype, shape: [count, ...t.shape.slice(1)], bytes: t.bytes.slice(start * cols * es, (start + count) * cols * es) };
}

export function cols(t: RawTensor, start: number, count: number, es = 2): RawTensor {
  const [R, C] = t.shape as [number, number];
  const out = new Uint8Array(R * count * es);
  for (let r = 0; r < R; r++) out.set(t.bytes.subarray((r * C + start) * es, (r * C + start + count) * es), r * count * es);
  return { dtype: t.dtype, shape: [R, count], bytes: out };
}

export function catRows(...ts: RawTensor[]): RawTensor {
  const total = ts.reduce((a, t) => a + t.bytes.length, 0);
  const out = new Uint8Array(total);
  let o = 0;
  for (const t of ts) {
    out.set(t.bytes, o);
    o += t.bytes.length;
  }
  return { dtype: ts[0]!.dtype, shape: [ts.reduce((a, t) => a + t.shape[0]!, 0), ...ts[0]!.shape.slice(1)], bytes: out };
}

export function zeroRows(t: RawTensor, n: number, es = 2): RawTensor {
  const c = t.shape.slice(1).reduce((a, b) => a * b, 1);
  return { dtype: t.dtype, shape: [n, ...t.shape.slice(1)], bytes: new Uint8Array(n * c * es) };
}

export function bytesEqual(a: Uint8Array, b: Uint8Array): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) if (a[i] !== b[i]) return false;
  return true;
}

/** Tolerance check used for logits: max|Δ| / max|ref|. */
export function relMaxErr(got: Float32Array, ref: Float32Array): number {
  let md = 0;
  let mr = 0;
  for (let i = 0; i < ref.length; i++) {
    md = Math.max(md, Math.abs(got[i]! - ref[i]!));
    mr = Math.max(mr, Math.abs(ref[i]!));
  }
  return md / mr;
}

export function asF32(t: RawTensor): Float32Array {
  return new Float32Array(t.bytes.buffer.slice(t.bytes.byteOffset, t.bytes.byteOffset + t.bytes.byteLength));
}
export function asI32(t: RawTensor): Int32Array {
  return new Int32Array(t.bytes.buffer.slice(t.bytes.byteOffset, t.bytes.byteOffset + t.bytes.byteLength));
}

/** Run `f`, expect a TrtbError with `code` (and a message matching `msg`), and return it. */
export function expectCode(f: () => unknown, code: ErrorCode, msg?: RegExp): TrtbError {
  let err: unknown;
  try {
    f();
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(TrtbError);
  const t = err as TrtbError;
  expect(t.code).toBe(code);
  if (msg) expect(t.message).toMatch(msg);
  return t;
}

/** `expectCode` for a promise: it must reject with a TrtbError of `code` (and a message matching `msg`). */
export async function expectCodeAsync(p: Promise<unknown> | (() => Promise<unknown>), code: ErrorCode, msg?: RegExp): Promise<TrtbError> {
  let err: unknown;
  try {
    await (typeof p === "function" ? p() : p);
  } catch (e) {
    err = e;
  }
  expect(err).toBeInstanceOf(TrtbError);
  const t = err as TrtbError;
  expect(t.code).toBe(code);
  if (msg) expect(t.message).toMatch(msg);
  return t;
}
