/**
 * A restricted unpickler: a small stack machine that reads pickle protocols 2–5 and builds plain
 * JS values. It never imports, looks up or calls anything by name. A GLOBAL resolves only through
 * an allow-list the caller passes in (`globals`), and REDUCE only calls the TypeScript function an
 * allow-listed global carries. Everything else is an error.
 *
 * Pickle in one paragraph: a program of one-byte opcodes with inline arguments, run on a stack
 * with marks (MARK sets the current stack aside; TUPLE/LIST/DICT/APPENDS/SETITEMS/ADDITEMS take
 * everything pushed since and restore it) and a memo table (BINPUT/MEMOIZE store the top, BINGET pushes it again). GLOBAL
 * names a Python object "module\nname\n" (STACK_GLOBAL takes both strings from the stack), REDUCE
 * calls `callable(*args)`, BUILD sets state on an object, BINPERSID asks the loader to resolve an
 * out-of-band reference (torch: tensor storages). STOP returns the top of the stack. Integers are
 * little endian; BINFLOAT is a big-endian f64. Protocol 4 adds FRAME (a length prefix that may be
 * ignored) and 8-byte lengths; protocol 5 adds out-of-band buffers (refused here).
 *
 * Value model:
 *   None → null, bool → boolean, int → number (bigint beyond 2^53), float → number,
 *   str → string, py2 str (BINSTRING, SHORT_BINSTRING) → string decoded as latin-1,
 *   bytes/bytearray → Uint8Array (a view of the input), list → mutable array, tuple → frozen
 *   array (`isTuple`), dict → Map, set/frozenset → Set, an allow-listed global → its `PyGlobal`,
 *   the result of an allowed call → whatever that TypeScript function returned.
 * The memo lets a pickle share and even cycle references (a list that contains itself), as in
 * Python: callers must never walk a result recursively without a depth bound.
 *
 * Opcodes interpreted: PROTO FRAME STOP MARK POP POP_MARK DUP NONE NEWTRUE NEWFALSE BININT BININT1
 * BININT2 LONG1 LONG4 BINFLOAT BINUNICODE SHORT_BINUNICODE BINUNICODE8 BINSTRING SHORT_BINSTRING
 * BINBYTES SHORT_BINBYTES BINBYTES8 BYTEARRAY8 EMPTY_TUPLE TUPLE TUPLE1 TUPLE2 TUPLE3 EMPTY_LIST
 * LIST APPEND APPENDS EMPTY_DICT DICT SETITEM SETITEMS EMPTY_SET ADDITEMS FROZENSET BINPUT
 * LONG_BINPUT MEMOIZE BINGET LONG_BINGET GLOBAL STACK_GLOBAL REDUCE (allow-listed callables only)
 * BUILD (dict targets only; the state is checked and dropped) BINPERSID (through `persistentLoad`).
 * Refused with PICKLE_FORBIDDEN_OPCODE: INST OBJ NEWOBJ NEWOBJ_EX EXT1 EXT2 EXT4 PERSID
 * NEXT_BUFFER READONLY_BUFFER and the text-protocol opcodes (INT LONG FLOAT STRING UNICODE GET PUT).
 *
 * Errors (TrtbError codes; every message names the source and byte offset):
 *   PICKLE_FORBIDDEN_GLOBAL  a global not on the allow-list, or a REDUCE of an allowed global
 *                            that is not callable
 *   PICKLE_FORBIDDEN_OPCODE  a real pickle opcode this reader refuses to run
 *   PICKLE_TOO_DEEP          stack, memo, mark or container nesting above the limits
 *   PICKLE_TRUNCATED         an argument, a FRAME or the program (no STOP) runs past the input
 *   PICKLE_BAD               anything else malformed (unknown byte, stack underflow, wrong types,
 *                            bad UTF-8, values left after STOP, trailing bytes…)
 * Errors thrown by an allowed callable or `persistentLoad` keep their code, prefixed with the
 * position.
 */
import { type ErrorCode, TrtbError } from "../errors.ts";

/** An allow-listed global. `call` makes it callable by REDUCE; `tag` is free data for the caller. */
export class PyGlobal {
  constructor(
    readonly module: string,
    readonly name: string,
    /** Implementation in TypeScript. Receives REDUCE's argument tuple; throws TrtbError on bad args. */
    readonly call?: (args: readonly PickleValue[]) => PickleValue,
    readonly tag?: unknown,
  ) {}
  get qualname(): string {
    return `${this.module}.${this.name}`;
  }
}

export type PickleValue =
  | null
  | boolean
  | number
  | bigint
  | string
  | Uint8Array
  | PickleValue[]
  | Map<PickleValue, PickleValue>
  | Set<PickleValue>
  | PyGlobal
  | object;

export interface UnpickleOptions {
  /** The only globals GLOBAL/STACK_GLOBAL may name. Default: none. */
  globals?: readonly PyGlobal[];
  /** Resolves BINPERSID ids; without it BINPERSID is refused. */
  persistentLoad?: (pid: PickleValue) => PickleValue;
  /** Names the input in messages, e.g. "model.pth:archive/data.pkl". */
  source?: string;
  /** Max MARK nesting and container nesting depth (default 1000). */
  maxDepth?: number;
  /** Max stack height (default 1 << 20). */
  maxStack?: number;
  /** Max memo entries (default 1 << 20). */
  maxMemo?: number;
}

/** A Python tuple: an array frozen at creation. */
export function isTuple(v: unknown): v is readonly PickleValue[] {
  return Array.isArray(v) && Object.isFrozen(v);
}
/** A Python list: an array that is not frozen. */
export function isList(v: unknown): v is PickleValue[] {
  return Array.isArray(v) && !Object.isFrozen(v);
}
export function isDict(v: unknown): v is Map<PickleValue, PickleValue> {
  return v instanceof Map;
}

/** Short, bounded, non-recursive description of a value for error messages. */
export function describe(v: unknown): string {
  if (v === null) return "None";
  if (v === undefined) return "undefined";
  if (typeof v === "boolean") return v ? "True" : "False";
  if (typeof v === "bigint") return `int ${String(v)}`;
  if (typeof v === "number") return `${Number.isInteger(v) ? "int" : "float"} ${String(v)}`;
  if (typeof v === "string") return `str ${quote(v)}`;
  if (v instanceof Uint8Array) return `bytes[${v.length}]`;
  if (v instanceof PyGlobal) return `global ${quote(v.qualname)}`;
  if (Array.isArray(v)) return `${Object.isFrozen(v) ? "tuple" : "list"}[${v.length}]`;
  if (v instanceof Map) return `dict[${v.size}]`;
  if (v instanceof Set) return `set[${v.size}]`;
  const ctor = (v as { constructor?: { name?: unknown } }).constructor?.name;
  return typeof ctor === "string" ? ctor : "object";
}

/** JSON-quote and cut attacker-controlled text so messages stay one short line. */
export function quote(s: string, max = 80): string {
  return JSON.stringify(s.length > max ? `${s.slice(0, max)}…` : s);
}

// ---------------------------------------------------------------------------------------------
// Opcodes.

const OP = {
  MARK: 0x28, STOP: 0x2e, POP: 0x30, POP_MARK: 0x31, DUP: 0x32, FLOAT: 0x46, INT: 0x49,
  BININT: 0x4a, BININT1: 0x4b, LONG: 0x4c, BININT2: 0x4d, NONE: 0x4e, PERSID: 0x50,
  BINPERSID: 0x51, REDUCE: 0x52, STRING: 0x53, BINSTRING: 0x54, SHORT_BINSTRING: 0x55,
  UNICODE: 0x56, BINUNICODE: 0x58, APPEND: 0x61, BUILD: 0x62, GLOBAL: 0x63, DICT: 0x64,
  EMPTY_DICT: 0x7d, APPENDS: 0x65, GET: 0x67, BINGET: 0x68, INST: 0x69, LONG_BINGET: 0x6a,
  LIST: 0x6c, EMPTY_LIST: 0x5d, OBJ: 0x6f, PUT: 0x70, BINPUT: 0x71, LONG_BINPUT: 0x72,
  SETITEM: 0x73, TUPLE: 0x74, EMPTY_TUPLE: 0x29, SETITEMS: 0x75, BINFLOAT: 0x47,
  PROTO: 0x80, NEWOBJ: 0x81, EXT1: 0x82, EXT2: 0x83, EXT4: 0x84, TUPLE1: 0x85, TUPLE2: 0x86,
  TUPLE3: 0x87, NEWTRUE: 0x88, NEWFALSE: 0x89, LONG1: 0x8a, LONG4: 0x8b,
  BINBYTES: 0x42, SHORT_BINBYTES: 0x43,
  SHORT_BINUNICODE: 0x8c, BINUNICODE8: 0x8d, BINBYTES8: 0x8e, EMPTY_SET: 0x8f, ADDITEMS: 0x90,
  FROZENSET: 0x91, NEWOBJ_EX: 0x92, STACK_GLOBAL: 0x93, MEMOIZE: 0x94, FRAME: 0x95,
  BYTEARRAY8: 0x96, NEXT_BUFFER: 0x97, READONLY_BUFFER: 0x98,
} as const;

const OP_NAME = new Map<number, string>(Object.entries(OP).map(([k, v]) => [v, k]));

/** Real opcodes refused on purpose, with the reason shown to the user. */
const REFUSED = new Map<number, string>([
  [OP.INST, "instantiates an arbitrary class"],
  [OP.OBJ, "instantiates an arbitrary class"],
  [OP.NEWOBJ, "instantiates an arbitrary class"],
  [OP.NEWOBJ_EX, "instantiates an arbitrary class"],
  [OP.EXT1, "loads a global from the copyreg extension registry"],
  [OP.EXT2, "loads a global from the copyreg extension registry"],
  [OP.EXT4, "loads a global from the copyreg extension registry"],
  [OP.PERSID, "is a text-protocol persistent id"],
  [OP.NEXT_BUFFER, "needs out-of-band buffers"],
  [OP.READONLY_BUFFER, "needs out-of-band buffers"],
  [OP.INT, "is a text-protocol (protocol 0) opcode"],
  [OP.LONG, "is a text-protocol (protocol 0) opcode"],
  [OP.FLOAT, "is a text-protocol (protocol 0) opcode"],
  [OP.STRING, "is a text-protocol (protocol 0) opcode"],
  [OP.UNICODE, "is a text-protocol (protocol 0) opcode"],
  [OP.GET, "is a text-protocol (protocol 0) opcode"],
  [OP.PUT, "is a text-protocol (protocol 0) opcode"],
]);

const utf8Strict = new TextDecoder("utf-8", { fatal: true });
const latin1 = new TextDecoder("latin1");

/** Longest GLOBAL module or name line accepted. */
const MAX_GLOBAL_LINE = 256;
/** Longest LONG1/LONG4 payload accepted, in bytes (Python ints in a state dict are small). */
const MAX_LONG_BYTES = 64;

// ---------------------------------------------------------------------------------------------

/** Run `data` through the restricted unpickler and return the value STOP leaves. */
export function unpickle(data: Uint8Array, opts: UnpickleOptions = {}): PickleValue {
  const src = opts.source ?? "pickle";
  const maxDepth = opts.maxDepth ?? 1000;
  const maxStack = opts.maxStack ?? 1 << 20;
  const maxMemo = opts.maxMemo ?? 1 << 20;
  const allowed = new Map<string, Map<string, PyGlobal>>();
  for (const g of opts.globals ?? []) {
    let m = allowed.get(g.module);
    if (m === undefined) allowed.set(g.module, (m = new Map()));
    m.set(g.name, g);
  }

  const n = data.length;
  const view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  let stack: PickleValue[] = [];
  const marks: PickleValue[][] = []; // saved stacks (as CPython does): MARK starts a fresh stack
  let saved = 0; // values held in `marks`
  const memo = new Map<number, PickleValue>();
  const depth = new WeakMap<object, number>(); // container nesting depth, as built
  let pos = 0; // offset of the current opcode's first byte
  let p = 0; // read cursor

  const fail = (code: ErrorCode, msg: string): never => {
    throw new TrtbError(code, `${src} @ ${pos}: ${msg}`, { file: src });
  };
  const bad = (msg: string): never => fail("PICKLE_BAD", msg);
  const opName = (op: number): string => OP_NAME.get(op) ?? `0x${op.toString(16).padStart(2, "0")}`;

  const need = (k: number): void => {
    if (k > n - p) fail("PICKLE_TRUNCATED", `${opName(data[pos]!)} needs ${k} more bytes, ${n - p} left`);
  };
  const readU8 = (): number => {
    need(1);
    return data[p++]!;
  };
  const readU16 = (): number => {
    need(2);
    const v = view.getUint16(p, true);
    p += 2;
    return v;
  };
  const readU32 = (): number => {
    need(4);
    const v = view.getUint32(p, true);
    p += 4;
    return v;
  };
  const readI32 = (): number => {
    need(4);
    const v = view.getInt32(p, true);
    p += 4;
    return v;
  };
  const readU64 = (): number => {
    need(8);
    const lo = view.getUint32(p, true);
    const hi = view.getUint32(p + 4, true);
    p += 8;
    // Any length past 2^53 is certainly past the end of the input.
    if (hi >= 0x200000) fail("PICKLE_TRUNCATED", `${opName(data[pos]!)} length beyond 2^53`);
    return hi * 0x100000000 + lo;
  };
  const readBytes = (k: number): Uint8Array => {
    need(k);
    const b = data.subarray(p, p + k);
    p += k;
    return b;
  };
  const readUtf8 = (k: number): string => {
    const b = readBytes(k);
    try {
      return utf8Strict.decode(b);
    } catch {
      return bad(`${opName(data[pos]!)} holds invalid UTF-8`);
    }
  };
  const readLine = (): string => {
    const start = p;
    const lim = Math.min(n, p + MAX_GLOBAL_LINE + 1);
    while (p < lim && data[p] !== 0x0a) p++;
    if (p >= n) fail("PICKLE_TRUNCATED", "GLOBAL line has no newline before end of input");
    if (data[p] !== 0x0a) bad(`GLOBAL line longer than ${MAX_GLOBAL_LINE} bytes`);
    const line = data.subarray(start, p);
    p++;
    try {
      return utf8Strict.decode(line);
    } catch {
      return bad("GLOBAL line is not valid UTF-8");
    }
  };

  const push = (v: PickleValue): void => {
    if (stack.length + saved >= maxStack) fail("PICKLE_TOO_DEEP", `stack deeper than ${maxStack}`);
    stack.push(v);
  };
  const pop = (): PickleValue => {
    if (stack.length === 0) bad(`${opName(data[pos]!)} on an empty stack`);
    return stack.pop()!;
  };
  const top = (): PickleValue => {
    if (stack.length === 0) bad(`${opName(data[pos]!)} needs a value on the stack`);
    return stack[stack.length - 1]!;
  };
  /** Items pushed since the last MARK; restores the stack that MARK saved. */
  const popMark = (): PickleValue[] => {
    const outer = marks.pop();
    if (outer === undefined) return bad(`${opName(data[pos]!)} without a MARK`);
    const items = stack;
    stack = outer;
    saved -= outer.length;
    return items;
  };

  const depthOf = (v: PickleValue): number => (typeof v === "object" && v !== null ? (depth.get(v) ?? 1) : 0);
  /** Record that `container` now holds `items`; refuse nesting beyond maxDepth. */
  const nest = (container: object, items: Iterable<PickleValue>): void => {
    let d = depth.get(container) ?? 1;
    for (const it of items) {
      const c = depthOf(it) + 1;
      if (c > d) d = c;
    }
    if (d > maxDepth) fail("PICKLE_TOO_DEEP", `containers nested deeper than ${maxDepth}`);
    depth.set(container, d);
  };
  const tuple = (items: PickleValue[]): PickleValue[] => {
    nest(items, items);
    return Object.freeze(items) as PickleValue[];
  };
  const memoPut = (idx: number): void => {
    if (memo.size >= maxMemo && !memo.has(idx)) fail("PICKLE_TOO_DEEP", `memo larger than ${maxMemo} entries`);
    memo.set(idx, top());
  };
  const memoGet = (idx: number): void => {
    if (!memo.has(idx)) bad(`memo key ${idx} was never stored`);
    push(memo.get(idx)!);
  };
  const resolveGlobal = (module: string, name: string): PyGlobal => {
    const g = allowed.get(module)?.get(name);
    if (g === undefined) {
      fail("PICKLE_FORBIDDEN_GLOBAL", `forbidden global ${quote(`${module}.${name}`)}: only tensor-rebuild globals are allowed (refusing to load; the file may be malicious)`);
    }
    return g!;
  };
  const setItems = (dict: PickleValue, items: PickleValue[]): void => {
    if (!(dict instanceof Map)) return bad(`${opName(data[pos]!)} on ${describe(dict)}, not a dict`);
    if (items.length % 2 !== 0) bad(`${opName(data[pos]!)} with an odd number of items`);
    for (let i = 0; i < items.length; i += 2) dict.set(items[i]!, items[i + 1]!);
    nest(dict, items);
  };
  const appendItems = (list: PickleValue, items: PickleValue[]): void => {
    if (!isList(list)) return bad(`${opName(data[pos]!)} on ${describe(list)}, not a list`);
    for (const it of items) list.push(it);
    nest(list, items);
  };
  const addItems = (set: PickleValue, items: PickleValue[]): void => {
    if (!(set instanceof Set)) return bad(`ADDITEMS on ${describe(set)}, not a set`);
    for (const it of items) set.add(it);
    nest(set, items);
  };
  const readLong = (k: number): number | bigint => {
    if (k > MAX_LONG_BYTES) bad(`integer of ${k} bytes is too large`);
    const b = readBytes(k);
    if (k === 0) return 0;
    let v = 0n;
    for (let i = k - 1; i >= 0; i--) v = (v << 8n) | BigInt(b[i]!);
    if (b[k - 1]! & 0x80) v -= 1n << BigInt(8 * k);
    return v >= BigInt(Number.MIN_SAFE_INTEGER) && v <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(v) : v;
  };

  while (true) {
    pos = p;
    if (p >= n) fail("PICKLE_TRUNCATED", "input ended before STOP");
    const op = data[p++]!;
    switch (op) {
      case OP.PROTO: {
        const v = readU8();
        if (v > 5) bad(`unsupported pickle protocol ${v}`);
        break;
      }
      case OP.FRAME:
        // A length prefix for buffered reading; the frame must lie within the input.
        if (readU64() > n - p) fail("PICKLE_TRUNCATED", "FRAME runs past the end of input");
        break;
      case OP.STOP: {
        if (marks.length !== 0) bad("STOP inside an unclosed MARK");
        const v = pop();
        if (stack.length !== 0) bad(`STOP leaves ${stack.length} extra values on the stack`);
        if (p !== n) bad(`${n - p} trailing bytes after STOP`);
        return v;
      }
      case OP.MARK:
        if (marks.length >= maxDepth) fail("PICKLE_TOO_DEEP", `MARKs nested deeper than ${maxDepth}`);
        marks.push(stack);
        saved += stack.length;
        stack = [];
        break;
      case OP.POP:
        if (stack.length === 0) bad("POP on an empty stack");
        stack.pop();
        break;
      case OP.POP_MARK:
        popMark();
        break;
      case OP.DUP:
        push(top());
        break;
      case OP.NONE:
        push(null);
        break;
      case OP.NEWTRUE:
        push(true);
        break;
      case OP.NEWFALSE:
        push(false);
        break;
      case OP.BININT:
        push(readI32());
        break;
      case OP.BININT1:
        push(readU8());
        break;
      case OP.BININT2:
        push(readU16());
        break;
      case OP.LONG1:
        push(readLong(readU8()));
        break;
      case OP.LONG4: {
        const k = readI32();
        if (k < 0) bad("LONG4 with negative length");
        push(readLong(k));
        break;
      }
      case OP.BINFLOAT:
        need(8);
        push(view.getFloat64(p, false));
        p += 8;
        break;
      case OP.BINUNICODE:
        push(readUtf8(readU32()));
        break;
      case OP.SHORT_BINUNICODE:
        push(readUtf8(readU8()));
        break;
      case OP.BINUNICODE8:
        push(readUtf8(readU64()));
        break;
      case OP.BINSTRING: {
        const k = readI32();
        if (k < 0) bad("BINSTRING with negative length");
        push(latin1.decode(readBytes(k)));
        break;
      }
      case OP.SHORT_BINSTRING:
        push(latin1.decode(readBytes(readU8())));
        break;
      case OP.BINBYTES:
        push(readBytes(readU32()));
        break;
      case OP.SHORT_BINBYTES:
        push(readBytes(readU8()));
        break;
      case OP.BINBYTES8:
      case OP.BYTEARRAY8:
        push(readBytes(readU64()));
        break;
      case OP.EMPTY_TUPLE:
        push(tuple([]));
        break;
      case OP.TUPLE1: {
        const a = pop();
        push(tuple([a]));
        break;
      }
      case OP.TUPLE2: {
        const b = pop();
        const a = pop();
        push(tuple([a, b]));
        break;
      }
      case OP.TUPLE3: {
        const c = pop();
        const b = pop();
        const a = pop();
        push(tuple([a, b, c]));
        break;
      }
      case OP.TUPLE:
        push(tuple(popMark()));
        break;
      case OP.EMPTY_LIST:
        push([]);
        break;
      case OP.LIST: {
        const items = popMark();
        nest(items, items);
        push(items);
        break;
      }
      case OP.APPEND: {
        const v = pop();
        appendItems(top(), [v]);
        break;
      }
      case OP.APPENDS: {
        const items = popMark();
        appendItems(top(), items);
        break;
      }
      case OP.EMPTY_DICT:
        push(new Map());
        break;
      case OP.DICT: {
        const items = popMark();
        const d = new Map<PickleValue, PickleValue>();
        setItems(d, items);
        push(d);
        break;
      }
      case OP.SETITEM: {
        const v = pop();
        const k = pop();
        setItems(top(), [k, v]);
        break;
      }
      case OP.SETITEMS: {
        const items = popMark();
        setItems(top(), items);
        break;
      }
      case OP.EMPTY_SET:
        push(new Set());
        break;
      case OP.ADDITEMS: {
        const items = popMark();
        addItems(top(), items);
        break;
      }
      case OP.FROZENSET: {
        const items = popMark();
        const s = new Set<PickleValue>();
        addItems(s, items);
        push(s);
        break;
      }
      case OP.BINPUT:
        memoPut(readU8());
        break;
      case OP.LONG_BINPUT:
        memoPut(readU32());
        break;
      case OP.MEMOIZE:
        memoPut(memo.size);
        break;
      case OP.BINGET:
        memoGet(readU8());
        break;
      case OP.LONG_BINGET:
        memoGet(readU32());
        break;
      case OP.GLOBAL: {
        const module = readLine();
        const name = readLine();
        push(resolveGlobal(module, name));
        break;
      }
      case OP.STACK_GLOBAL: {
        const name = pop();
        const module = pop();
        if (typeof module !== "string" || typeof name !== "string") bad(`STACK_GLOBAL needs two strings, got ${describe(module)} and ${describe(name)}`);
        push(resolveGlobal(module as string, name as string));
        break;
      }
      case OP.REDUCE: {
        const args = pop();
        const fn = pop();
        if (!(fn instanceof PyGlobal)) return bad(`REDUCE of ${describe(fn)}, which is not an allowed callable`);
        if (fn.call === undefined) fail("PICKLE_FORBIDDEN_GLOBAL", `REDUCE of ${quote(fn.qualname)}, which is allowed as a value but not as a callable`);
        if (!isTuple(args)) bad(`REDUCE of ${quote(fn.qualname)} with ${describe(args)} instead of an argument tuple`);
        let r: PickleValue;
        try {
          r = fn.call!(args as readonly PickleValue[]);
        } catch (e) {
          if (e instanceof TrtbError) throw new TrtbError(e.code, `${src} @ ${pos}: ${fn.qualname}: ${e.message}`, { ...e.details, file: e.details.file ?? src, cause: e });
          throw e;
        }
        push(r);
        break;
      }
      case OP.BUILD: {
        const state = pop();
        const target = top();
        // OrderedDict pickles carry their instance __dict__ (torch: `_metadata`) as BUILD state.
        // Only that harmless case is accepted, and the state is dropped.
        if (!(target instanceof Map) || !(state === null || state instanceof Map)) {
          fail("PICKLE_FORBIDDEN_OPCODE", `BUILD on ${describe(target)} with ${describe(state)} is not allowed (only dict attribute state is)`);
        }
        break;
      }
      case OP.BINPERSID: {
        const pid = pop();
        if (opts.persistentLoad === undefined) fail("PICKLE_FORBIDDEN_OPCODE", "BINPERSID (persistent id) is not allowed here");
        try {
          push(opts.persistentLoad!(pid));
        } catch (e) {
          if (e instanceof TrtbError) throw new TrtbError(e.code, `${src} @ ${pos}: ${e.message}`, { ...e.details, file: e.details.file ?? src, cause: e });
          throw e;
        }
        break;
      }
      default: {
        const why = REFUSED.get(op);
        if (why !== undefined) fail("PICKLE_FORBIDDEN_OPCODE", `opcode ${opName(op)} ${why}; refusing to run it`);
        bad(`unknown opcode 0x${op.toString(16).padStart(2, "0")}${op >= 0x20 && op < 0x7f ? ` (${quote(String.fromCharCode(op))})` : ""}: not a pickle, or corrupt`);
      }
    }
  }
}
