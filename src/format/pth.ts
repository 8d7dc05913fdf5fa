/**
 * torch.save checkpoints (`*.pth`, zip + pickle) and Meta's checkpoint folder (`params.json` +
 * `consolidated.NN.pth`), read without Python and without running the pickle.
 *
 * A torch.save file (torch ≥ 1.6, "zip serialization") is a ZIP archive, every member stored:
 *
 *   <root>/data.pkl            the pickled object (protocol 2): usually a dict name → tensor
 *   <root>/data/<key>          one member per storage, raw little-endian elements
 *   <root>/byteorder           "little" or "big" (absent in old files: little)
 *   <root>/version, .format_version, .storage_alignment, .data/serialization_id  (ignored)
 *
 * `<root>` is any folder name (torch uses the file's stem, e.g. `consolidated.00`).
 *
 * Inside data.pkl a tensor is `torch._utils._rebuild_tensor_v2(storage, storage_offset, size,
 * stride, requires_grad, backward_hooks[, metadata])` where `storage` is the persistent id tuple
 * `('storage', torch.<Type>Storage, key, location, numel)`: `numel` elements of `<Type>` in
 * member `data/<key>`; offsets and strides count elements. Dtypes torch cannot name with a typed
 * storage (float8, uint16/32/64) use `_rebuild_tensor_v3(storage, offset, size, stride,
 * requires_grad, backward_hooks, dtype[, metadata])` over a `torch.UntypedStorage` (numel = bytes).
 * `torch.nn.Parameter`s wrap a tensor in `_rebuild_parameter(data, requires_grad, hooks)`.
 *
 * The unpickler (pickle.ts) accepts only the globals in `TORCH_GLOBALS`; every callable there is a
 * TypeScript function below that checks its arguments and returns a plain record. Nothing is
 * imported or executed. Tensors are checked against their storage's member size at open, and
 * `bytes()` hands out a zero-copy view of the mapped file for contiguous tensors (a fresh
 * row-major copy otherwise).
 *
 * Errors (TrtbError codes, besides ZIP_* and PICKLE_* from zip.ts and pickle.ts):
 *   PTH_LEGACY_FORMAT      a pre-1.6 (non-zip) torch file
 *   PTH_BAD_ARCHIVE        no single `<root>/data.pkl`
 *   PTH_BYTEORDER          big-endian checkpoint
 *   PTH_BAD_PERSID         a persistent id that is not a well-formed storage reference
 *   PTH_BAD_TENSOR         malformed rebuild arguments (shape, stride, offset, dtype)
 *   PTH_UNSUPPORTED_DTYPE  a storage type with no safetensors dtype (complex, quantized)
 *   PTH_UNSUPPORTED        a broadcast (stride-0) view that would expand hugely
 *   PTH_STORAGE_TOO_SMALL  a storage declares more bytes than its member has, or a tensor reaches
 *                          past its storage
 *   PTH_NOT_STATE_DICT     the pickled object is not a dict of name → tensor
 *   PTH_MISSING_TENSOR     get() of an absent name
 *   PTH_CLOSED             use after close()
 *   META_NO_PARAMS, META_BAD_PARAMS, META_NO_SHARDS, META_BAD_SHARDS (gap or duplicate shard numbers),
 *   META_DUPLICATE_TENSOR (a name in two pieces of one consolidated.NN/ folder)
 */
import { readdirSync, statSync } from "node:fs";
import { join } from "node:path";
import { z } from "zod";
import { DTYPE_SIZE, type DType } from "../dtype.ts";
import { TrtbError } from "../errors.ts";
import type { TensorSource, TensorView } from "../tensor.ts";
import { mapFile } from "./byte-source.ts";
import { readJsonFileSafe } from "../util/safe-read.ts";
import { describe, isDict, isTuple, PyGlobal, quote, unpickle, type PickleValue } from "./pickle.ts";
import { ZipArchive, type ZipOpenOptions } from "./zip.ts";

// ---------------------------------------------------------------------------------------------
// Records the allow-listed callables build.

/** One storage reference from a persistent id. */
export class TorchStorageRef {
  constructor(
    /** Member `data/<key>`. */
    readonly key: string,
    /** e.g. "BFloat16Storage", "UntypedStorage". */
    readonly storageType: string,
    /** Element dtype; null when it has no safetensors name (complex, quantized). */
    readonly dtype: DType | null,
    readonly elementSize: number,
    /** Elements (bytes for UntypedStorage). */
    readonly numel: number,
    /** Device it was saved from, e.g. "cpu", "cuda:0" (informational). */
    readonly location: string,
  ) {}
  get byteLength(): number {
    return this.numel * this.elementSize;
  }
}

/** A tensor as `_rebuild_tensor_*` describes it; nothing read yet. */
export class TorchTensorRef {
  constructor(
    readonly storage: TorchStorageRef,
    /** In elements of `dtype`. */
    readonly storageOffset: number,
    readonly shape: readonly number[],
    /** In elements of `dtype`. */
    readonly stride: readonly number[],
    /** null when unsupported; `dtypeName` says what it was. */
    readonly dtype: DType | null,
    readonly elementSize: number,
    readonly dtypeName: string,
  ) {}
}

// ---------------------------------------------------------------------------------------------
// The allow-list.

interface StorageTag {
  kind: "storage";
  dtype: DType | null;
  size: number;
}
interface DTypeTag {
  kind: "dtype";
  dtype: DType;
}

const STORAGE_TYPES: [string, DType | null, number][] = [
  ["FloatStorage", "F32", 4], ["HalfStorage", "F16", 2], ["BFloat16Storage", "BF16", 2],
  ["DoubleStorage", "F64", 8], ["LongStorage", "I64", 8], ["IntStorage", "I32", 4],
  ["ShortStorage", "I16", 2], ["CharStorage", "I8", 1], ["ByteStorage", "U8", 1],
  ["BoolStorage", "BOOL", 1], ["UntypedStorage", "U8", 1],
  // Known to torch but without a safetensors dtype: allowed as names so the error is precise.
  ["ComplexFloatStorage", null, 8], ["ComplexDoubleStorage", null, 16], ["QInt8Storage", null, 1],
  ["QUInt8Storage", null, 1], ["QInt32Storage", null, 4], ["QUInt4x2Storage", null, 1],
  ["QUInt2x4Storage", null, 1],
];

/** `torch.<dtype>` globals, which `_rebuild_tensor_v3` takes. */
const DTYPE_GLOBALS: [string, DType][] = [
  ["float8_e4m3fn", "F8_E4M3"], ["float8_e5m2", "F8_E5M2"], ["uint16", "U16"], ["uint32", "U32"],
  ["uint64", "U64"], ["bfloat16", "BF16"], ["float16", "F16"], ["half", "F16"], ["float32", "F32"],
  ["float", "F32"], ["float64", "F64"], ["double", "F64"], ["int64", "I64"], ["long", "I64"],
  ["int32", "I32"], ["int", "I32"], ["int16", "I16"], ["short", "I16"], ["int8", "I8"],
  ["uint8", "U8"], ["bool", "BOOL"],
];

function bad(msg: string): never {
  throw new TrtbError("PTH_BAD_TENSOR", msg);
}

function arity(args: readonly PickleValue[], fn: string, ...counts: number[]): void {
  if (!counts.includes(args.length)) bad(`${fn} takes ${counts.join(" or ")} arguments, got ${args.length}`);
}

function intArg(v: PickleValue, what: string): number {
  if (typeof v !== "number" || !Number.isSafeInteger(v) || v < 0) bad(`${what} must be a non-negative integer, got ${describe(v)}`);
  return v as number;
}

function intTuple(v: PickleValue, what: string): number[] {
  if (!isTuple(v) && !Array.isArray(v)) bad(`${what} must be a tuple of integers, got ${describe(v)}`);
  const a = v as readonly PickleValue[];
  if (a.length > 64) bad(`${what} has ${a.length} dimensions`);
  return a.map((x, i) => intArg(x, `${what}[${i}]`));
}

function storageArg(v: PickleValue, fn: string): TorchStorageRef {
  if (!(v instanceof TorchStorageRef)) bad(`${fn}: first argument must be a storage, got ${describe(v)}`);
  return v as TorchStorageRef;
}

function makeTensor(storage: TorchStorageRef, offset: PickleValue, size: PickleValue, stride: PickleValue, dtype: DType | null, elementSize: number, dtypeName: string): TorchTensorRef {
  const shape = intTuple(size, "size");
  const strides = intTuple(stride, "stride");
  if (strides.length !== shape.length) bad(`stride has ${strides.length} dimensions, size has ${shape.length}`);
  return new TorchTensorRef(storage, intArg(offset, "storage_offset"), Object.freeze(shape), Object.freeze(strides), dtype, elementSize, dtypeName);
}

function rebuildV2(args: readonly PickleValue[]): PickleValue {
  arity(args, "_rebuild_tensor_v2", 6, 7);
  const s = storageArg(args[0]!, "_rebuild_tensor_v2");
  return makeTensor(s, args[1]!, args[2]!, args[3]!, s.dtype, s.elementSize, `torch.${s.storageType}`);
}

function rebuildV1(args: readonly PickleValue[]): PickleValue {
  arity(args, "_rebuild_tensor", 4);
  const s = storageArg(args[0]!, "_rebuild_tensor");
  return makeTensor(s, args[1]!, args[2]!, args[3]!, s.dtype, s.elementSize, `torch.${s.storageType}`);
}

function rebuildV3(args: readonly PickleValue[]): PickleValue {
  arity(args, "_rebuild_tensor_v3", 7, 8);
  const s = storageArg(args[0]!, "_rebuild_tensor_v3");
  const d = args[6];
  const tag = d instanceof PyGlobal ? (d.tag as DTypeTag | undefined) : undefined;
  if (tag?.kind !== "dtype") bad(`_rebuild_tensor_v3: dtype must be a torch dtype, got ${describe(d)}`);
  if (s.storageType !== "UntypedStorage") bad(`_rebuild_tensor_v3 over torch.${s.storageType}; expected torch.UntypedStorage`);
  return makeTensor(s, args[1]!, args[2]!, args[3]!, tag!.dtype, DTYPE_SIZE[tag!.dtype], (d as PyGlobal).qualname);
}

function rebuildParameter(args: readonly PickleValue[]): PickleValue {
  arity(args, "_rebuild_parameter", 3, 4);
  if (!(args[0] instanceof TorchTensorRef)) bad(`_rebuild_parameter: data must be a tensor, got ${describe(args[0])}`);
  return args[0]!;
}

function orderedDict(args: readonly PickleValue[]): PickleValue {
  const m = new Map<PickleValue, PickleValue>();
  if (args.length === 0) return m;
  const items = args[0];
  if (args.length !== 1 || !Array.isArray(items)) throw new TrtbError("PICKLE_BAD", `OrderedDict takes () or (items,), got ${args.length} arguments`);
  for (const kv of items as readonly PickleValue[]) {
    if (!Array.isArray(kv) || kv.length !== 2) throw new TrtbError("PICKLE_BAD", `OrderedDict item is ${describe(kv)}, not a pair`);
    m.set(kv[0]!, kv[1]!);
  }
  return m;
}

/** Every global a torch checkpoint may name. Nothing else resolves. */
export const TORCH_GLOBALS: readonly PyGlobal[] = Object.freeze([
  new PyGlobal("collections", "OrderedDict", orderedDict),
  new PyGlobal("torch._utils", "_rebuild_tensor", rebuildV1),
  new PyGlobal("torch._utils", "_rebuild_tensor_v2", rebuildV2),
  new PyGlobal("torch._utils", "_rebuild_tensor_v3", rebuildV3),
  new PyGlobal("torch._utils", "_rebuild_parameter", rebuildParameter),
  new PyGlobal("torch._utils", "_rebuild_parameter_with_state", rebuildParameter),
  ...STORAGE_TYPES.map(([name, dtype, size]) => new PyGlobal("torch", name, undefined, { kind: "storage", dtype, size } satisfies StorageTag)),
  ...DTYPE_GLOBALS.map(([name, dtype]) => new PyGlobal("torch", name, undefined, { kind: "dtype", dtype } satisfies DTypeTag)),
]);

function persistentLoad(pid: PickleValue): PickleValue {
  const fail = (msg: string): never => {
    throw new TrtbError("PTH_BAD_PERSID", `persistent id ${msg}`);
  };
  if (!isTuple(pid) || pid.length !== 5) return fail(`must be a 5-tuple ('storage', type, key, location, numel), got ${describe(pid)}`);
  const [kind, type, key, location, numel] = pid;
  if (kind !== "storage") fail(`kind is ${describe(kind)}, expected 'storage'`);
  const tag = type instanceof PyGlobal ? (type.tag as StorageTag | undefined) : undefined;
  if (tag?.kind !== "storage") fail(`storage type is ${describe(type)}, not a torch storage class`);
  if (typeof key !== "string" || !/^[A-Za-z0-9_]{1,64}$/.test(key)) fail(`storage key is ${describe(key)}, expected a short alphanumeric name`);
  if (typeof location !== "string") fail(`location is ${describe(location)}, expected a string`);
  if (typeof numel !== "number" || !Number.isSafeInteger(numel) || numel < 0) fail(`numel is ${describe(numel)}, expected a non-negative integer`);
  const bytes = (numel as number) * tag!.size;
  if (!Number.isSafeInteger(bytes)) fail(`numel ${numel} is too large`);
  return new TorchStorageRef(key as string, (type as PyGlobal).name, tag!.dtype, tag!.size, numel as number, location as string);
}

/** Unpickle a torch `data.pkl` with the torch allow-list; tensors come back as `TorchTensorRef`. */
export function loadTorchPickle(pkl: Uint8Array, source = "data.pkl"): PickleValue {
  return unpickle(pkl, { globals: TORCH_GLOBALS, persistentLoad, source });
}

// ---------------------------------------------------------------------------------------------
// Tensor views.

/** Bytes the tensor spans in its storage, from its first element: (max index + 1) · size. */
function spanElements(shape: readonly number[], stride: readonly number[]): number {
  let last = 0;
  for (let i = 0; i < shape.length; i++) {
    if (shape[i] === 0) return 0;
    last += (shape[i]! - 1) * stride[i]!;
  }
  return last + 1;
}

function isContiguous(shape: readonly number[], stride: readonly number[]): boolean {
  let expected = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    if (shape[i] === 0) return true;
    if (shape[i] !== 1 && stride[i] !== expected) return false;
    expected *= shape[i]!;
  }
  return true;
}

/** Copy a strided tensor into row-major order. `src` starts at the tensor's first element. */
function gather(src: Uint8Array, shape: readonly number[], stride: readonly number[], esize: number, total: number): Uint8Array {
  const out = new Uint8Array(total * esize);
  if (total === 0) return out;
  const nd = shape.length;
  if (nd === 0) {
    out.set(src.subarray(0, esize));
    return out;
  }
  const inner = shape[nd - 1]!;
  const innerStride = stride[nd - 1]!;
  const rows = total / inner;
  const idx = new Array<number>(nd).fill(0);
  let base = 0; // element offset of the current row
  let o = 0;
  for (let r = 0; r < rows; r++) {
    if (innerStride === 1) {
      out.set(src.subarray(base * esize, (base + inner) * esize), o);
      o += inner * esize;
    } else {
      for (let j = 0; j < inner; j++) {
        const s = (base + j * innerStride) * esize;
        for (let b = 0; b < esize; b++) out[o++] = src[s + b]!;
      }
    }
    for (let d = nd - 2; d >= 0; d--) {
      idx[d]!++;
      base += stride[d]!;
      if (idx[d]! < shape[d]!) break;
      base -= stride[d]! * shape[d]!;
      idx[d] = 0;
    }
  }
  return out;
}

/** Non-contiguous tensors bigger than their storage span by more than this are refused. */
const MAX_EXPANSION_BYTES = 256 * 1024 * 1024;

export interface TorchTensorInfo {
  readonly storageKey: string;
  readonly storageOffset: number;
  readonly stride: readonly number[];
  readonly contiguous: boolean;
}

/** A torch.save checkpoint as a TensorSource over its top-level state dict. */
export class TorchCheckpoint implements TensorSource {
  private readonly views = new Map<string, TensorView>();
  private readonly infos = new Map<string, TorchTensorInfo>();
  private zip: ZipArchive | null;
  /** Member prefix, e.g. "consolidated.00/". */
  readonly root: string;

  constructor(zip: ZipArchive) {
    this.zip = zip;
    const path = zip.path;
    const pkls = zip.names().filter((n) => /^[^/]+\/data\.pkl$/.test(n));
    if (pkls.length !== 1) {
      if (pkls.length === 0) throw new TrtbError("ZIP_MISSING_ENTRY", `${path}: no <root>/data.pkl member; not a torch.save checkpoint`, { file: path });
      throw new TrtbError("PTH_BAD_ARCHIVE", `${path}: ${pkls.length} data.pkl members (${pkls.slice(0, 3).map((s) => quote(s)).join(", ")}…); expected one`, { file: path });
    }
    this.root = pkls[0]!.slice(0, -"data.pkl".length);
    if (zip.has(`${this.root}byteorder`)) {
      const bo = `${this.root}byteorder`;
      if (zip.entry(bo).size > 16) throw new TrtbError("PTH_BYTEORDER", `${path}: member ${quote(bo)} is ${zip.entry(bo).size} bytes; expected "little"`, { file: path });
      const order = new TextDecoder().decode(zip.read(bo)).trim();
      if (order !== "little") {
        throw new TrtbError("PTH_BYTEORDER", `${path}: byteorder is ${quote(order)}; only little-endian checkpoints are supported`, { file: path });
      }
    }
    const obj = loadTorchPickle(zip.read(pkls[0]!), `${path}:${pkls[0]}`);
    for (const [name, t] of pickStateDict(obj, path)) this.addTensor(name, t);
  }

  names(): string[] {
    this.live();
    return [...this.views.keys()];
  }

  has(name: string): boolean {
    return this.live().views.has(name);
  }

  get(name: string): TensorView {
    const v = this.live().views.get(name);
    if (v === undefined) throw new TrtbError("PTH_MISSING_TENSOR", `${this.path}: no tensor named ${quote(name)}`, { file: this.path, tensor: name });
    return v;
  }

  /** Storage layout of one tensor (for diagnostics and tests). */
  info(name: string): TorchTensorInfo {
    this.get(name);
    return this.infos.get(name)!;
  }

  get path(): string {
    return this.zip?.path ?? "<closed>";
  }

  close(): void {
    this.zip?.close();
    this.zip = null;
  }

  private live(): this {
    if (this.zip === null) throw new TrtbError("PTH_CLOSED", "torch checkpoint is closed");
    return this;
  }

  private addTensor(name: string, t: TorchTensorRef): void {
    const zip = this.zip!;
    const path = zip.path;
    const details = { file: path, tensor: name };
    const where = `${path}: tensor ${quote(name)}`;
    if (t.dtype === null) {
      throw new TrtbError("PTH_UNSUPPORTED_DTYPE", `${where} has element type ${t.dtypeName}, which has no safetensors dtype`, details);
    }
    const dtype = t.dtype;
    const esize = t.elementSize;
    const member = `${this.root}data/${t.storage.key}`;
    if (!zip.has(member)) {
      throw new TrtbError("ZIP_MISSING_ENTRY", `${where} needs storage member ${quote(member)}, which the archive lacks`, details);
    }
    const memberBytes = zip.entry(member).size;
    const storageBytes = t.storage.byteLength;
    if (storageBytes > memberBytes) {
      throw new TrtbError("PTH_STORAGE_TOO_SMALL", `${where}: storage ${quote(t.storage.key)} declares ${t.storage.numel} × ${t.storage.elementSize}-byte elements (${storageBytes} bytes) but member ${quote(member)} holds ${memberBytes} bytes`, details);
    }
    let numel = 1;
    for (const d of t.shape) {
      numel *= d;
      if (!Number.isSafeInteger(numel * esize)) throw new TrtbError("PTH_BAD_TENSOR", `${where}: shape [${t.shape.join(", ")}] is too large`, details);
    }
    const span = spanElements(t.shape, t.stride);
    const startByte = t.storageOffset * esize;
    const spanBytes = span * esize;
    if (!Number.isSafeInteger(startByte + spanBytes) || (span > 0 && startByte + spanBytes > storageBytes)) {
      throw new TrtbError("PTH_STORAGE_TOO_SMALL", `${where} [${t.shape.join(", ")}] at offset ${t.storageOffset} with stride [${t.stride.join(", ")}] reaches byte ${startByte + spanBytes} of storage ${quote(t.storage.key)}, which has ${storageBytes} bytes`, details);
    }
    const contiguous = isContiguous(t.shape, t.stride);
    const nbytes = numel * esize;
    if (!contiguous && nbytes > spanBytes && nbytes > MAX_EXPANSION_BYTES) {
      throw new TrtbError("PTH_UNSUPPORTED", `${where} is a broadcast view of ${spanBytes} bytes that would expand to ${nbytes} bytes`, details);
    }
    if (span > 0) zip.dataRange(member); // validate the local header now, not at first read
    const shape = t.shape;
    const stride = t.stride;
    const self = this;
    this.infos.set(name, { storageKey: t.storage.key, storageOffset: t.storageOffset, stride, contiguous });
    this.views.set(name, {
      name,
      dtype,
      shape,
      bytes(): Uint8Array {
        const z = self.live().zip!;
        if (span === 0) return new Uint8Array(0);
        if (contiguous) return z.readRange(member, startByte, nbytes);
        return gather(z.readRange(member, startByte, spanBytes), shape, stride, esize, numel);
      },
    });
  }
}

const STATE_DICT_KEYS = ["state_dict", "model", "module"];

function tensorDict(v: PickleValue): Map<string, TorchTensorRef> | null {
  if (!isDict(v)) return null;
  for (const [k, t] of v) if (typeof k !== "string" || !(t instanceof TorchTensorRef)) return null;
  return v as Map<string, TorchTensorRef>;
}

/** The state dict: the top level if it is name → tensor, else one nested under a usual key. */
function pickStateDict(obj: PickleValue, path: string): Map<string, TorchTensorRef> {
  const top = tensorDict(obj);
  if (top !== null) return top;
  if (isDict(obj)) {
    for (const k of STATE_DICT_KEYS) {
      const inner = tensorDict(obj.get(k) ?? null);
      if (inner !== null) return inner;
    }
    for (const [k, v] of obj) {
      if (typeof k !== "string") throw new TrtbError("PTH_NOT_STATE_DICT", `${path}: top-level dict has a non-string key (${describe(k)}); expected tensor names`, { file: path });
      if (!(v instanceof TorchTensorRef)) {
        throw new TrtbError("PTH_NOT_STATE_DICT", `${path}: top-level key ${quote(k)} holds ${describe(v)}, not a tensor, and no ${STATE_DICT_KEYS.map((s) => `"${s}"`).join("/")} entry holds a state dict`, { file: path, tensor: k });
      }
    }
  }
  throw new TrtbError("PTH_NOT_STATE_DICT", `${path}: pickled object is ${describe(obj)}, not a dict of tensors`, { file: path });
}

export interface TorchOpenOptions extends ZipOpenOptions {}

/** Open a torch.save (zip) checkpoint as a TensorSource over its state dict. */
export function openTorchCheckpoint(path: string, opts: TorchOpenOptions = {}): TorchCheckpoint {
  let zip: ZipArchive;
  try {
    zip = ZipArchive.open(path, opts);
  } catch (e) {
    throw legacyOr(e, path, () => mapFile(path, 0, 2));
  }
  return withZip(zip, () => new TorchCheckpoint(zip));
}

/** The same over bytes in memory (tests, fuzzing). */
export function openTorchCheckpointBytes(bytes: Uint8Array, label = "<memory>"): TorchCheckpoint {
  let zip: ZipArchive;
  try {
    zip = ZipArchive.fromBytes(bytes, label);
  } catch (e) {
    throw legacyOr(e, label, () => bytes.subarray(0, 2));
  }
  return withZip(zip, () => new TorchCheckpoint(zip));
}

function withZip<T>(zip: ZipArchive, f: () => T): T {
  try {
    return f();
  } catch (e) {
    zip.close();
    throw e;
  }
}

/** Pre-1.6 torch files are a bare pickle stream (0x80 0x02 …); say so instead of "not a ZIP". */
function legacyOr(e: unknown, path: string, head: () => Uint8Array): unknown {
  if (!(e instanceof TrtbError) || e.code !== "ZIP_NO_EOCD") return e;
  let h: Uint8Array;
  try {
    h = head();
  } catch {
    return e;
  }
  if (h[0] === 0x80 && h[1] !== undefined && h[1] >= 2 && h[1] <= 5) {
    return new TrtbError("PTH_LEGACY_FORMAT", `${path}: legacy (pre-1.6, non-zip) torch serialization is not supported; re-save it with a current torch.save`, { file: path, cause: e });
  }
  return e;
}

// ---------------------------------------------------------------------------------------------
// Meta checkpoint folder.

const META_OPTIONAL = ["n_kv_heads", "vocab_size", "rope_theta", "multiple_of", "ffn_dim_multiplier", "hidden_dim", "use_scaled_rope", "rope_scaling"];

/** `params.json`. Nulls in optional keys read as absent; unknown keys pass through. */
export const MetaParamsSchema = z.preprocess(
  (v) => {
    if (typeof v !== "object" || v === null || Array.isArray(v)) return v;
    const o: Record<string, unknown> = { ...(v as Record<string, unknown>) };
    for (const k of META_OPTIONAL) if (o[k] === null) delete o[k];
    return o;
  },
  z.looseObject({
    // Bounds far above any released model: a hostile 1e9 is refused before anything is sized from it.
    dim: z.number().int().positive().max(2 ** 17),
    n_layers: z.number().int().positive().max(1024),
    n_heads: z.number().int().positive().max(2048),
    n_kv_heads: z.number().int().positive().max(2048).optional(),
    /** -1 in Meta's original releases: take it from the tokenizer/embedding. */
    vocab_size: z.number().int().optional(),
    norm_eps: z.number().positive(),
    rope_theta: z.number().positive().optional(),
    multiple_of: z.number().int().positive().optional(),
    ffn_dim_multiplier: z.number().positive().optional(),
    hidden_dim: z.number().int().positive().max(2 ** 20).optional(),
    use_scaled_rope: z.boolean().optional(),
    rope_scaling: z.record(z.string(), z.unknown()).optional(),
  }),
);
export type MetaParams = z.infer<typeof MetaParamsSchema>;

/** Read and validate `<dir>/params.json`. */
export function readMetaParams(dir: string): MetaParams {
  const file = join(dir, "params.json");
  const json = readJsonFileSafe(file, { missing: "META_NO_PARAMS", json: "META_BAD_PARAMS" }, "not a Meta checkpoint folder");
  const r = MetaParamsSchema.safeParse(json);
  if (!r.success) {
    const issues = r.error.issues.map((i) => `${i.path.join(".") || "(root)"}: ${i.message}`).join("; ");
    throw new TrtbError("META_BAD_PARAMS", `${file}: ${issues}`, { file, cause: r.error });
  }
  return r.data;
}

/**
 * Model-parallel shards of a Meta checkpoint, in rank order: `consolidated.NN.pth` files, or
 * `consolidated.NN/` folders of `consolidated-*.pth` pieces (§6). Numbers must run 0…n-1.
 * Open each with `openMetaShard`.
 */
export function listMetaShards(dir: string): string[] {
  let names: string[];
  try {
    names = readdirSync(dir);
  } catch (e) {
    throw new TrtbError("META_NO_SHARDS", `cannot list ${dir}: ${(e as Error).message}`, { file: dir, cause: e });
  }
  const byIndex = new Map<number, string>();
  for (const n of names) {
    const m = /^consolidated\.(\d+)(\.pth)?$/.exec(n);
    if (m === null) continue;
    const full = join(dir, n);
    const isDir = statSync(full, { throwIfNoEntry: false })?.isDirectory() ?? false;
    if ((m[2] !== undefined) === isDir) continue; // a folder named *.pth, or a file without .pth
    const k = Number(m[1]);
    const prev = byIndex.get(k);
    if (prev !== undefined) {
      throw new TrtbError("META_BAD_SHARDS", `${dir}: shard ${k} appears twice (${prev} and ${full})`, { file: dir });
    }
    byIndex.set(k, full);
  }
  if (byIndex.size === 0) {
    throw new TrtbError("META_NO_SHARDS", `${dir}: no consolidated.NN.pth files (or consolidated.NN/ folders); not a Meta checkpoint folder`, { file: dir });
  }
  const out: string[] = [];
  for (let k = 0; k < byIndex.size; k++) {
    const p = byIndex.get(k);
    if (p === undefined) {
      throw new TrtbError("META_BAD_SHARDS", `${dir}: shard ${String(k).padStart(2, "0")} is missing (found ${[...byIndex.keys()].sort((a, b) => a - b).join(", ")})`, { file: dir });
    }
    out.push(p);
  }
  return out;
}

/** Open one shard from `listMetaShards`: a .pth file, or a folder whose pieces are merged. */
export function openMetaShard(path: string, opts: TorchOpenOptions = {}): TensorSource {
  if (!(statSync(path, { throwIfNoEntry: false })?.isDirectory() ?? false)) return openTorchCheckpoint(path, opts);
  const pieces = readdirSync(path)
    .filter((n) => /^consolidated-.*\.pth$/.test(n))
    .sort()
    .map((n) => join(path, n));
  if (pieces.length === 0) throw new TrtbError("META_NO_SHARDS", `${path}: folder has no consolidated-*.pth pieces`, { file: path });
  const opened: TorchCheckpoint[] = [];
  try {
    for (const p of pieces) opened.push(openTorchCheckpoint(p, opts));
  } catch (e) {
    for (const o of opened) o.close();
    throw e;
  }
  return new MergedSource(path, opened);
}

/** Union of several sources with disjoint names (a `consolidated.NN/` folder). */
class MergedSource implements TensorSource {
  private readonly owner = new Map<string, TensorSource>();
  constructor(
    private readonly path: string,
    private readonly parts: TensorSource[],
  ) {
    for (const s of parts) {
      for (const n of s.names()) {
        if (this.owner.has(n)) {
          for (const p of parts) p.close();
          throw new TrtbError("META_DUPLICATE_TENSOR", `${path}: tensor ${quote(n)} appears in more than one piece`, { file: path, tensor: n });
        }
        this.owner.set(n, s);
      }
    }
  }
  names(): string[] {
    return [...this.owner.keys()];
  }
  has(name: string): boolean {
    return this.owner.has(name);
  }
  get(name: string): TensorView {
    const s = this.owner.get(name);
    if (s === undefined) throw new TrtbError("PTH_MISSING_TENSOR", `${this.path}: no tensor named ${quote(name)}`, { file: this.path, tensor: name });
    return s.get(name);
  }
  close(): void {
    for (const p of this.parts) p.close();
  }
}
