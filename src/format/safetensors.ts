/**
 * safetensors: a validating zero-copy reader and an atomic, streaming writer.
 *
 * FORMAT (huggingface/safetensors README "Format" and `safetensors/src/tensor.rs`)
 *
 *   offset 0      u64 little-endian N: byte length of the JSON header (N ≤ 100,000,000)
 *   offset 8      N bytes of UTF-8 JSON: one object, first byte `{`, optionally padded at the end
 *                 with spaces (0x20) so that 8 + N is a multiple of 8
 *   offset 8 + N  the byte buffer: every tensor's bytes, back to back, no gaps, nothing after
 *
 *   header = {
 *     "__metadata__": { "format": "pt", ... },       optional; string → string only
 *     "<tensor name>": {
 *       "dtype": "BF16",                              one of DTYPES in src/dtype.ts
 *       "shape": [4096, 4096],                        integers ≥ 0; [] is a scalar (1 element),
 *                                                     a 0 dim an empty tensor
 *       "data_offsets": [BEGIN, END]                  [BEGIN, END) relative to the byte buffer,
 *     },                                              so the file offset is 8 + N + BEGIN
 *     ...
 *   }
 *
 *   Entries have exactly these three fields. Keys are unique everywhere (JSON.parse would keep the
 *   last duplicate silently, so the header is read by the strict parser of `json-strict.ts`).
 *   Elements are little-endian, row-major. Values are never checked (NaN/Inf are fine).
 *
 * VALIDATION, in the reference reader's order (`read_metadata`, then `Metadata::validate`). Each
 * failure is a TrtbError whose `code` never changes meaning, naming the file and, where there is
 * one, the tensor:
 *
 *    1. file ≥ 8 bytes                                          ST_TOO_SMALL
 *    2. N ≤ 100,000,000                                         ST_HEADER_TOO_LARGE
 *    3. 8 + N ≤ file size                                       ST_HEADER_OUT_OF_BOUNDS
 *    4. the header is UTF-8 (a BOM is not skipped)              ST_HEADER_UTF8
 *    5. the header starts with `{`                              ST_HEADER_NOT_OBJECT
 *    6. the header is JSON (whitespace may follow the object)   ST_HEADER_JSON
 *       with no duplicate key in any object                     ST_DUPLICATE_KEY
 *    7. `__metadata__` maps strings to strings                  ST_BAD_METADATA
 *    8. each entry is {dtype, shape, data_offsets}, nothing
 *       missing, nothing extra, arrays where arrays belong      ST_BAD_ENTRY
 *       dtype is known                                          ST_UNKNOWN_DTYPE
 *       dims are integers ≥ 0                                   ST_BAD_SHAPE
 *       offsets are integers ≥ 0                                ST_BAD_OFFSETS
 *    9. in (BEGIN, END) order each BEGIN equals the previous
 *       END (the first 0)                                       ST_GAP / ST_OVERLAP
 *       END ≥ BEGIN                                             ST_BAD_OFFSETS
 *       Π shape · element size, checked at every step           ST_SIZE_OVERFLOW
 *       END − BEGIN = Π shape · element size                    ST_SIZE_MISMATCH
 *   10. 8 + N + last END = file size (no trailing bytes)        ST_FILE_LENGTH
 *
 *   Integers are exact only below 2^53 in JS, so any dim or offset above 2^53 is ST_SIZE_OVERFLOW,
 *   and so is a product that passes 2^53 (the reference uses 2^64; such files would be 8 PiB).
 *   Floats (`2.0`, `1e3`) and `-0` are not integers here, as in serde_json.
 *
 *   Other codes: ST_MISSING_TENSOR (get of an absent name), ST_BAD_RANGE (range() outside the
 *   tensor), ST_IO (open/read/write failures),
 *   ST_CLOSED (use after close), ST_TENSOR_TOO_LARGE (a view over 4 GiB was asked for: JSC caps an
 *   ArrayBuffer at 2^32 bytes, so such a tensor can be listed and read with `range()` in pieces,
 *   but not viewed whole), and for the writer ST_WRITE_UNKNOWN, ST_WRITE_TWICE, ST_WRITE_SIZE,
 *   ST_WRITE_INCOMPLETE, ST_WRITE_CLOSED, ST_NO_SPACE.
 *
 * MEMORY. The reader reads only the header; tensor bytes are Uint8Array views over private (copy-on-
 * write) memory maps, made on first use. `Bun.mmap` cannot map more than 4 GiB at once, so the file
 * is mapped in 1 GiB windows at 1 GiB-aligned offsets; a tensor that straddles a window boundary
 * gets a mapping of its own. Views keep their mapping alive; `close()` only drops the reader's
 * references (the GC unmaps), so a view taken before `close()` stays valid. Maps are made through
 * `/proc/self/fd/N` of the descriptor opened with the header, so a file renamed over the path later
 * cannot be mixed in. `Bun.mmap` opens files read-write even for private maps, so a file we may not
 * write (read-only mount, another user's cache) falls back to positioned reads (copies).
 *
 * WRITER. The header is planned up front from names, dtypes and shapes exactly as the reference
 * writer plans it (tensors sorted by dtype, largest alignment first, then by name as UTF-8 bytes;
 * header padded with spaces to a multiple of 8, so every tensor is aligned to its element size). The
 * file is written to `.<name>.tmp-<pid>-<rand>` beside the target, sized up front, and renamed over
 * the target by `commit()` after fsync: the target is never truncated or written in place, so a
 * process that has the old file mapped keeps reading the old bytes. `writeWith` hands out a shared
 * writable map of exactly the tensor's region (producers write in place, no copy); `write` does a
 * positioned write from the caller's bytes, `writeStream` one per piece it is handed. Writeback is
 * started in the background as the file grows (write-behind), so the commit fsync is short.
 * Nothing ever holds the whole file in memory.
 *
 * FILES. This module is the one import path; the work is done in `json-strict.ts` (the header's
 * JSON parser), `byte-source.ts` (the windowed maps and positioned reads), `safetensors-reader.ts`
 * (open, parse, validate) and `safetensors-writer.ts` (plan, serialize, write).
 */
export { MAX_VIEW_BYTES } from "./byte-source.ts";
export { JsonFloat, type JsonObject, JsonStrictError, type JsonValue, parseJsonStrict } from "./json-strict.ts";
export {
  MAX_HEADER_SIZE, openSafetensors, type OpenSafetensorsOptions, parseSafetensorsBytes, type SafetensorsFile, type SafetensorsTensor,
  type SafetensorsTensorInfo,
} from "./safetensors-reader.ts";
export {
  planSafetensors, type SafetensorsPlan, type SafetensorsTensorSpec, SafetensorsWriter, type SafetensorsWriterOptions, serializeSafetensors,
  WRITE_BEHIND_BYTES, writeBehindIdle,
} from "./safetensors-writer.ts";
