/**
 * Lazy tensors: a conversion is a tree of cheap descriptions (slice, concat, pad, row gather, cast)
 * over zero-copy source views. Nothing is read until a writer asks a tensor to write itself into
 * its destination (usually a writable window of the output file), so each byte is copied once.
 *
 * Every op works on flat element ranges of the row-major result: `writeRange(dst, dtype, start,
 * count)` writes elements [start, start+count) converted to `dtype`. That one primitive composes:
 * a dim-1 slice is a loop of contiguous ranges, a concat routes ranges to its parts, and a leaf
 * converts its mapped bytes straight into the destination.
 */
import { type DType, DTYPE_SIZE, numel } from "../dtype.ts";
import { check, TrtbError } from "../errors.ts";
import type { TensorView } from "../tensor.ts";
import { castInto } from "./cast.ts";

export abstract class LazyTensor implements TensorView {
  readonly numel: number;
  constructor(readonly name: string, readonly dtype: DType, readonly shape: readonly number[]) {
    this.numel = numel(shape);
  }

  /** Write elements [start, start+count) converted to `dtype` into `dst` (exactly count·size bytes). */
  abstract writeRange(dst: Uint8Array, dtype: DType, start: number, count: number): void;

  /** Write the whole tensor into `dst` as `dtype` (default: own dtype). */
  writeInto(dst: Uint8Array, dtype: DType = this.dtype): void {
    check(dst.byteLength === this.numel * DTYPE_SIZE[dtype], "CONV_SIZE",
      `${this.name}: destination holds ${dst.byteLength} bytes, tensor needs ${this.numel * DTYPE_SIZE[dtype]}`, { tensor: this.name });
    this.writeRange(dst, dtype, 0, this.numel);
  }

  /**
   * The tensor's bytes as one zero-copy view of a source, when it is just that (a leaf, or a
   * contiguous slice of one, in its own dtype); else null. Writers use it to hand the mapped
   * source straight to a positioned write instead of copying through a destination map.
   */
  directBytes(): Uint8Array | null {
    const parts = this.directParts(1);
    return parts && parts.length === 1 ? parts[0]! : null;
  }

  /**
   * The tensor's bytes as at most `limit` zero-copy views of sources that, back to back, are the
   * tensor in its own dtype (e.g. a fused qkv of three row slices: three views); null when some
   * part must be computed (a cast, padding, an element-wise map) or more views would be needed
   * (a column slice: one per row). Views that touch in memory are merged. Writers write each view
   * with positioned writes instead of assembling the tensor in a buffer first.
   */
  directParts(limit: number): Uint8Array[] | null {
    const out: Uint8Array[] = [];
    return this.numel === 0 || this.partsOf(0, this.numel, out, limit) ? out : null;
  }

  /**
   * Append views of elements [start, start+count) (own dtype) to `out`, merging with its last view
   * where they touch; false when that cannot be done with at most `limit` views in `out`. Ops that
   * only move elements implement it; the default (computed tensors) cannot.
   */
  partsOf(_start: number, _count: number, _out: Uint8Array[], _limit: number): boolean {
    return false;
  }

  /**
   * Whether `writeRange` of a small range costs about that range's share of the whole, so that a
   * writer may build the tensor a chunk at a time in a small buffer instead of whole in one of its
   * size. True for the ops of this file over source views; false by default, since computed
   * tensors (quantized weights, packed layouts) may compute everything on every call.
   */
  streamable(): boolean {
    return false;
  }

  bytes(): Uint8Array {
    const out = new Uint8Array(this.numel * DTYPE_SIZE[this.dtype]);
    this.writeRange(out, this.dtype, 0, this.numel);
    return out;
  }

  get byteLength(): number {
    return this.numel * DTYPE_SIZE[this.dtype];
  }
}

/** Append `b` to `out`, merged into the last view when they touch; false past `limit` views. */
function pushPart(out: Uint8Array[], b: Uint8Array, limit: number): boolean {
  if (b.byteLength === 0) return true;
  const last = out[out.length - 1];
  if (last && last.buffer === b.buffer && last.byteOffset + last.byteLength === b.byteOffset) {
    out[out.length - 1] = new Uint8Array(last.buffer, last.byteOffset, last.byteLength + b.byteLength);
    return true;
  }
  if (out.length >= limit) return false;
  out.push(b);
  return true;
}

/**
 * The bytes of the last few leaves asked for, while a writer streams tensors (`withLeafCache`).
 * A tensor written a chunk at a time (or a column slice, a row at a time) asks its leaf for bytes
 * on every call; a mapped view is cheap to make, but a source that cannot be mapped reads the whole
 * tensor on each `bytes()`. A handful of slots covers the leaves one output tensor reads at once
 * (q, k, v; two halves); they are dropped when the write ends, so no mapping or copy outlives it.
 */
const LEAF_SLOTS = 4;
let leafSlots: { leaf: Leaf; bytes: Uint8Array }[] | null = null;

/** Run `fn` (synchronous) with leaf bytes cached (see LEAF_SLOTS); nested calls share the cache. */
export function withLeafCache<T>(fn: () => T): T {
  if (leafSlots) return fn();
  leafSlots = [];
  try {
    return fn();
  } finally {
    leafSlots = null;
  }
}

/** A source view (mapped file region). Ranges are zero-copy subarrays of it. */
class Leaf extends LazyTensor {
  constructor(private readonly view: TensorView, name: string) {
    super(name, view.dtype, view.shape);
  }
  private viewBytes(): Uint8Array {
    const slots = leafSlots;
    if (!slots) return this.view.bytes();
    for (const e of slots) if (e.leaf === this) return e.bytes;
    const bytes = this.view.bytes();
    slots.unshift({ leaf: this, bytes });
    if (slots.length > LEAF_SLOTS) slots.pop();
    return bytes;
  }
  writeRange(dst: Uint8Array, dtype: DType, start: number, count: number): void {
    const es = DTYPE_SIZE[this.dtype];
    const src = this.viewBytes().subarray(start * es, (start + count) * es);
    castInto(src, this.dtype, dst, dtype);
  }
  override bytes(): Uint8Array {
    return this.view.bytes();
  }
  override directBytes(): Uint8Array | null {
    return this.view.bytes();
  }
  override partsOf(start: number, count: number, out: Uint8Array[], limit: number): boolean {
    const es = DTYPE_SIZE[this.dtype];
    return pushPart(out, this.viewBytes().subarray(start * es, (start + count) * es), limit);
  }
  override streamable(): boolean {
    return true;
  }
}

export function lazy(view: TensorView, name = view.name): LazyTensor {
  return view instanceof LazyTensor && name === view.name ? view : new Leaf(view, name);
}

/** Rename without touching data. */
export function renamed(t: LazyTensor, name: string): LazyTensor {
  return new (class extends LazyTensor {
    writeRange(dst: Uint8Array, dtype: DType, start: number, count: number) { t.writeRange(dst, dtype, start, count); }
    override directBytes() { return t.directBytes(); }
    override partsOf(start: number, count: number, out: Uint8Array[], limit: number) { return t.partsOf(start, count, out, limit); }
    override streamable() { return t.streamable(); }
  })(name, t.dtype, t.shape);
}

/** Change the declared element type. Conversion happens when bytes are written. */
export function cast(t: LazyTensor, dtype: DType): LazyTensor {
  if (t.dtype === dtype) return t;
  return new (class extends LazyTensor {
    writeRange(dst: Uint8Array, outType: DType, start: number, count: number) {
      if (outType === dtype) return t.writeRange(dst, dtype, start, count);
      // Casting through a different type: round through it so precision loss is not skipped.
      const tmp = new Uint8Array(count * DTYPE_SIZE[dtype]);
      t.writeRange(tmp, dtype, start, count);
      castInto(tmp, dtype, dst, outType);
    }
    override streamable() { return t.streamable(); }
  })(t.name, dtype, t.shape);
}

/** Same elements, new shape (numel must match). */
export function reshape(t: LazyTensor, shape: readonly number[], name = t.name): LazyTensor {
  check(numel(shape) === t.numel, "CONV_SHAPE", `${t.name}: cannot reshape [${t.shape}] to [${shape}]`, { tensor: t.name });
  return new (class extends LazyTensor {
    writeRange(dst: Uint8Array, dtype: DType, start: number, count: number) { t.writeRange(dst, dtype, start, count); }
    override directBytes() { return t.directBytes(); }
    override partsOf(start: number, count: number, out: Uint8Array[], limit: number) { return t.partsOf(start, count, out, limit); }
    override streamable() { return t.streamable(); }
  })(name, t.dtype, shape);
}

/** Elements in [start, start+len) of dimension `dim`. */
export function slice(t: LazyTensor, dim: number, start: number, len: number, name = t.name): LazyTensor {
  const shape = [...t.shape];
  const size = shape[dim];
  check(size !== undefined && start >= 0 && len >= 0 && start + len <= size, "CONV_SHAPE",
    `${t.name}: slice [${start}, ${start + len}) of dim ${dim} is outside shape [${t.shape}]`, { tensor: t.name });
  shape[dim] = len;
  const inner = numel(t.shape.slice(dim + 1));
  const srcBlock = size * inner; // elements per outer index in the source
  const dstBlock = len * inner;
  /** Visit the contiguous source runs of output elements [s, s+count): source start, length, output offset; stops at false. */
  const runs = (s: number, count: number, visit: (from: number, n: number, done: number) => boolean): boolean => {
    for (let done = 0; done < count; ) {
      const e = s + done;
      const outer = Math.floor(e / dstBlock);
      const within = e - outer * dstBlock;
      const n = Math.min(dstBlock - within, count - done);
      if (!visit(outer * srcBlock + start * inner + within, n, done)) return false;
      done += n;
    }
    return true;
  };
  return new (class extends LazyTensor {
    writeRange(dst: Uint8Array, dtype: DType, s: number, count: number) {
      const es = DTYPE_SIZE[dtype];
      // A slice of source bytes in their own dtype (a column split of a mapped tensor): copy the
      // rows straight from the view, without a call down the tree per row.
      const all = dtype === t.dtype ? t.directParts(1)?.[0] : undefined;
      runs(s, count, (from, n, done) => {
        if (all) dst.set(all.subarray(from * es, (from + n) * es), done * es);
        else t.writeRange(dst.subarray(done * es, (done + n) * es), dtype, from, n);
        return true;
      });
    }
    override streamable() { return t.streamable(); }
    override directBytes() {
      // Contiguous when every dim before `dim` has size 1 (one outer block) or the slice is the whole dim.
      if (this.numel !== dstBlock && len !== size) return null;
      const all = t.directBytes();
      const es = DTYPE_SIZE[t.dtype];
      if (!all) return null;
      return len === size ? all : all.subarray(start * inner * es, (start + len) * inner * es);
    }
    override partsOf(s: number, count: number, out: Uint8Array[], limit: number) {
      if (len === size) return t.partsOf(s, count, out, limit);
      return runs(s, count, (from, n) => t.partsOf(from, n, out, limit));
    }
  })(name, t.dtype, shape);
}

/** Piece `index` of `parts` equal pieces along `dim` (torch.chunk on divisible sizes). */
export function chunk(t: LazyTensor, dim: number, parts: number, index: number, name = t.name): LazyTensor {
  const size = t.shape[dim]!;
  if (size % parts !== 0)
    throw new TrtbError("CONV_SPLIT", `${t.name}: dim ${dim} of size ${size} does not split evenly into ${parts} parts`, { tensor: t.name });
  const len = size / parts;
  return slice(t, dim, index * len, len, name);
}

/** Concatenate along `dim`; all other dims and the dtype must agree. */
export function concat(parts: readonly LazyTensor[], dim: number, name: string): LazyTensor {
  check(parts.length > 0, "CONV_SHAPE", `${name}: nothing to concatenate`);
  const first = parts[0]!;
  for (const p of parts) {
    check(p.shape.length === first.shape.length && p.shape.every((d, i) => i === dim || d === first.shape[i]), "CONV_SHAPE",
      `${name}: cannot concatenate [${p.shape}] with [${first.shape}] along dim ${dim}`, { tensor: name });
    check(p.dtype === first.dtype, "CONV_DTYPE", `${name}: cannot concatenate ${p.dtype} with ${first.dtype}`, { tensor: name });
  }
  const shape = [...first.shape];
  shape[dim] = parts.reduce((a, p) => a + p.shape[dim]!, 0);
  const inner = numel(first.shape.slice(dim + 1));
  const blocks = parts.map((p) => p.shape[dim]! * inner); // per outer index
  const outBlock = shape[dim]! * inner;
  /** Visit the runs of output elements [s, s+count) inside one part: part, its start, length, output offset; stops at false. */
  const runs = (s: number, count: number, visit: (k: number, from: number, n: number, done: number) => boolean): boolean => {
    for (let done = 0; done < count; ) {
      const e = s + done;
      const outer = Math.floor(e / outBlock);
      let within = e - outer * outBlock;
      let k = 0;
      while (within >= blocks[k]!) within -= blocks[k++]!;
      const n = Math.min(blocks[k]! - within, count - done);
      if (!visit(k, outer * blocks[k]! + within, n, done)) return false;
      done += n;
    }
    return true;
  };
  return new (class extends LazyTensor {
    writeRange(dst: Uint8Array, dtype: DType, s: number, count: number) {
      const es = DTYPE_SIZE[dtype];
      runs(s, count, (k, from, n, done) => {
        parts[k]!.writeRange(dst.subarray(done * es, (done + n) * es), dtype, from, n);
        return true;
      });
    }
    override partsOf(s: number, count: number, out: Uint8Array[], limit: number) {
      return runs(s, count, (k, from, n) => parts[k]!.partsOf(from, n, out, limit));
    }
    override streamable() { return parts.every((p) => p.streamable()); }
  })(name, first.dtype, shape);
}

/** Rows of dim 0 picked by index (repeats allowed): out[i] = t[rows[i]]. */
export function gatherRows(t: LazyTensor, rows: readonly number[], name = t.name): LazyTensor {
  const inner = numel(t.shape.slice(1));
  for (const r of rows)
    check(r >= 0 && r < t.shape[0]!, "CONV_SHAPE", `${t.name}: row ${r} out of range [0, ${t.shape[0]})`, { tensor: t.name });
  return new (class extends LazyTensor {
    writeRange(dst: Uint8Array, dtype: DType, s: number, count: number) {
      const es = DTYPE_SIZE[dtype];
      let done = 0;
      while (done < count) {
        const e = s + done;
        const row = Math.floor(e / inner);
        const within = e - row * inner;
        const n = Math.min(inner - within, count - done);
        t.writeRange(dst.subarray(done * es, (done + n) * es), dtype, rows[row]! * inner + within, n);
        done += n;
      }
    }
    override partsOf(s: number, count: number, out: Uint8Array[], limit: number) {
      let done = 0;
      while (done < count) {
        const e = s + done;
        const row = Math.floor(e / inner);
        const within = e - row * inner;
        const n = Math.min(inner - within, count - done);
        if (!t.partsOf(rows[row]! * inner + within, n, out, limit)) return false;
        done += n;
      }
      return true;
    }
    override streamable() { return t.streamable(); }
  })(name, t.dtype, [rows.length, ...t.shape.slice(1)]);
}

/** Extend dim 0 to `rows` rows with zeros. */
export function padRows(t: LazyTensor, rows: number, name = t.name): LazyTensor {
  const have = t.shape[0]!;
  if (rows === have) return t;
  check(rows > have, "CONV_SHAPE", `${t.name}: cannot pad ${have} rows down to ${rows}`, { tensor: t.name });
  const inner = numel(t.shape.slice(1));
  const real = have * inner;
  return new (class extends LazyTensor {
    writeRange(dst: Uint8Array, dtype: DType, s: number, count: number) {
      const es = DTYPE_SIZE[dtype];
      const n = Math.max(0, Math.min(real - s, count));
      if (n > 0) t.writeRange(dst.subarray(0, n * es), dtype, s, n);
      dst.fill(0, Math.max(0, n) * es, count * es);
    }
    override streamable() { return t.streamable(); }
  })(name, t.dtype, [rows, ...t.shape.slice(1)]);
}

/** A tensor computed in f32 by `fn` over the source's f32 values (small tensors: norms, scales). */
export function mapF32(t: LazyTensor, fn: (x: Float32Array) => Float32Array, dtype: DType = t.dtype, name = t.name): LazyTensor {
  let cache: Uint8Array | undefined;
  const compute = () => {
    if (cache) return cache;
    const f32 = new Uint8Array(t.numel * 4);
    t.writeRange(f32, "F32", 0, t.numel);
    const out = fn(new Float32Array(f32.buffer));
    check(out.length === t.numel, "CONV_SHAPE", `${name}: element-wise map changed the element count`);
    cache = new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    return cache;
  };
  return new (class extends LazyTensor {
    writeRange(dst: Uint8Array, outType: DType, s: number, count: number) {
      // Round through `dtype` first, so the written value is the declared tensor's value.
      const tmp = new Uint8Array(count * DTYPE_SIZE[dtype]);
      castInto(compute().subarray(s * 4, (s + count) * 4), "F32", tmp, dtype);
      castInto(tmp, dtype, dst, outType);
    }
    override streamable() { return true; } // computed whole once, then cached
  })(name, dtype, t.shape);
}
