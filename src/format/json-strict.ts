/**
 * Strict JSON: like JSON.parse, but rejects duplicate keys, keeps key order (objects are Maps,
 * so a key like "__proto__" or "0" is just a key), and keeps integers apart from floats. The
 * safetensors header and the Hugging Face index are read with it.
 */

/** serde_json's default recursion limit. */
const MAX_JSON_DEPTH = 128;

/** Integers: `number` when exact (|v| ≤ 2^53 − 1), `bigint` beyond. Non-integer literals: JsonFloat. */
export type JsonValue = null | boolean | string | number | bigint | JsonFloat | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

/** A number literal with a fraction or exponent (`2.0`, `1e3`): never an integer here, as in serde. */
export class JsonFloat {
  constructor(readonly text: string, readonly value: number) {}
}

export class JsonStrictError extends Error {
  override readonly name = "JsonStrictError";
  constructor(
    readonly kind: "syntax" | "duplicate",
    message: string,
    /** UTF-16 index into the text. */
    readonly at: number,
    /** Keys leading to the object the error is in ([] for the top level). */
    readonly path: readonly string[] = [],
    /** The duplicated key. */
    readonly key?: string,
  ) {
    super(message);
  }
}

/** Parse JSON text strictly (RFC 8259, nesting ≤ 128, no duplicate keys, no lone surrogates). */
export function parseJsonStrict(text: string): JsonValue {
  const n = text.length;
  const keys: string[] = [];
  let i = 0;

  const fail = (what: string, at = i): never => {
    throw new JsonStrictError("syntax", `${at >= n ? "unexpected end of input" : what} at offset ${at}`, at, [...keys]);
  };
  const ws = (): void => {
    while (i < n) {
      const c = text.charCodeAt(i);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      i++;
    }
  };
  const isDigit = (c: number): boolean => c >= 0x30 && c <= 0x39;

  const hex4 = (): number => {
    if (i + 4 > n) fail("bad \\u escape");
    let v = 0;
    for (let k = 0; k < 4; k++) {
      const c = text.charCodeAt(i + k);
      const d = c >= 0x30 && c <= 0x39 ? c - 0x30 : c >= 0x61 && c <= 0x66 ? c - 0x57 : c >= 0x41 && c <= 0x46 ? c - 0x37 : -1;
      if (d < 0) fail("bad \\u escape", i + k);
      v = (v << 4) | d;
    }
    i += 4;
    return v;
  };

  const string = (): string => {
    const open = i++;
    const start = i;
    for (;;) {
      if (i >= n) fail("unterminated string", open);
      const c = text.charCodeAt(i);
      if (c === 0x22) return text.slice(start, i++);
      if (c === 0x5c) break;
      if (c < 0x20) fail("control character in string");
      i++;
    }
    // Slow path: escapes present.
    const parts: string[] = [text.slice(start, i)];
    for (;;) {
      if (i >= n) fail("unterminated string", open);
      const c = text.charCodeAt(i);
      if (c === 0x22) {
        i++;
        return parts.join("");
      }
      if (c < 0x20) fail("control character in string");
      if (c !== 0x5c) {
        const runStart = i;
        while (i < n) {
          const d = text.charCodeAt(i);
          if (d === 0x22 || d === 0x5c || d < 0x20) break;
          i++;
        }
        parts.push(text.slice(runStart, i));
        continue;
      }
      i++; // backslash
      const e = text.charCodeAt(i++);
      switch (e) {
        case 0x22: parts.push('"'); break;
        case 0x5c: parts.push("\\"); break;
        case 0x2f: parts.push("/"); break;
        case 0x62: parts.push("\b"); break;
        case 0x66: parts.push("\f"); break;
        case 0x6e: parts.push("\n"); break;
        case 0x72: parts.push("\r"); break;
        case 0x74: parts.push("\t"); break;
        case 0x75: {
          const u = hex4();
          if (u >= 0xdc00 && u <= 0xdfff) fail("lone trailing surrogate in \\u escape", i - 6);
          if (u >= 0xd800 && u <= 0xdbff) {
            if (text.charCodeAt(i) !== 0x5c || text.charCodeAt(i + 1) !== 0x75) fail("lone leading surrogate in \\u escape", i - 6);
            i += 2;
            const lo = hex4();
            if (lo < 0xdc00 || lo > 0xdfff) fail("lone leading surrogate in \\u escape", i - 12);
            parts.push(String.fromCharCode(u, lo));
          } else {
            parts.push(String.fromCharCode(u));
          }
          break;
        }
        default:
          fail("bad escape", i - 2);
      }
    }
  };

  const number = (): number | bigint | JsonFloat => {
    const start = i;
    if (text.charCodeAt(i) === 0x2d) i++;
    const c = text.charCodeAt(i);
    if (c === 0x30) i++;
    else if (c >= 0x31 && c <= 0x39) while (isDigit(text.charCodeAt(i))) i++;
    else fail("bad number");
    let integer = true;
    if (text.charCodeAt(i) === 0x2e) {
      integer = false;
      i++;
      if (!isDigit(text.charCodeAt(i))) fail("bad number");
      while (isDigit(text.charCodeAt(i))) i++;
    }
    const e = text.charCodeAt(i);
    if (e === 0x65 || e === 0x45) {
      integer = false;
      i++;
      const s = text.charCodeAt(i);
      if (s === 0x2b || s === 0x2d) i++;
      if (!isDigit(text.charCodeAt(i))) fail("bad number");
      while (isDigit(text.charCodeAt(i))) i++;
    }
    const lexeme = text.slice(start, i);
    if (!integer) return new JsonFloat(lexeme, Number(lexeme));
    const v = Number(lexeme);
    return Number.isSafeInteger(v) ? v : BigInt(lexeme);
  };

  const literal = <T>(word: string, v: T): T => {
    if (!text.startsWith(word, i)) fail("unexpected character");
    i += word.length;
    return v;
  };

  const value = (depth: number): JsonValue => {
    ws();
    if (i >= n) fail("unexpected end of input");
    const c = text.charCodeAt(i);
    if (c === 0x7b) return object(depth + 1);
    if (c === 0x5b) return array(depth + 1);
    if (c === 0x22) return string();
    if (c === 0x74) return literal("true", true);
    if (c === 0x66) return literal("false", false);
    if (c === 0x6e) return literal("null", null);
    if (c === 0x2d || isDigit(c)) return number();
    return fail(`unexpected character ${JSON.stringify(text[i])}`);
  };

  const object = (depth: number): JsonObject => {
    if (depth > MAX_JSON_DEPTH) fail(`nesting deeper than ${MAX_JSON_DEPTH}`);
    i++; // {
    const m: JsonObject = new Map();
    ws();
    if (text.charCodeAt(i) === 0x7d) {
      i++;
      return m;
    }
    for (;;) {
      ws();
      if (text.charCodeAt(i) !== 0x22) fail("expected a string key");
      const at = i;
      const k = string();
      if (m.has(k)) throw new JsonStrictError("duplicate", `duplicate key ${JSON.stringify(k)} at offset ${at}`, at, [...keys], k);
      ws();
      if (text.charCodeAt(i) !== 0x3a) fail("expected ':'");
      i++;
      keys.push(k);
      m.set(k, value(depth));
      keys.pop();
      ws();
      const d = text.charCodeAt(i);
      if (d === 0x2c) i++;
      else if (d === 0x7d) {
        i++;
        return m;
      } else fail("expected ',' or '}'");
    }
  };

  const array = (depth: number): JsonValue[] => {
    if (depth > MAX_JSON_DEPTH) fail(`nesting deeper than ${MAX_JSON_DEPTH}`);
    i++; // [
    const a: JsonValue[] = [];
    ws();
    if (text.charCodeAt(i) === 0x5d) {
      i++;
      return a;
    }
    for (;;) {
      a.push(value(depth));
      ws();
      const d = text.charCodeAt(i);
      if (d === 0x2c) i++;
      else if (d === 0x5d) {
        i++;
        return a;
      } else fail("expected ',' or ']'");
    }
  };

  const v = value(0);
  ws();
  if (i !== n) fail("trailing characters after the JSON value");
  return v;
}
