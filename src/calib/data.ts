/**
 * Calibration data: a file → `calibSize` token sequences of at most `calibMaxSeqLength` tokens, after
 * ModelOpt's `--calib_dataset / --calib_size / --calib_max_seq_length` (examples/quantization/quantize.py).
 *
 *   .txt          one text, tokenized whole without special tokens, cut into consecutive chunks of
 *                 calibMaxSeqLength tokens (a shorter tail is dropped); sample k = chunk k.
 *   .jsonl        one sample per non-blank line: {"text": …} (no special tokens) or {"messages": […]}
 *                 (the chat template), truncated to calibMaxSeqLength; empty samples are skipped.
 *   .safetensors  `input_ids` I32/I64 [N, S] (one sample per row, truncated) or [S] (cut like .txt).
 *   "random"      no file: uniformly random ids in [0, vocab) from `seed` (said loudly: a last resort
 *                 that only checks the plumbing, not a calibration).
 *
 * The first calibSize samples are taken, in file order (ModelOpt takes the head of its dataset too);
 * calibSize larger than the data is an error (CALIB_TOO_SMALL), never a silent shortfall. The seed
 * only drives the "random" source. `describe` is the one line saying what was used.
 */
import { existsSync, readFileSync, statSync } from "node:fs";
import { extname } from "node:path";
import { TrtbError } from "../errors.ts";
import { openSafetensors } from "../format/safetensors.ts";
import type { Tokenizer } from "../text/index.ts";

/** ModelOpt's defaults (`--calib_size 512`, `--calib_max_seq_length 512`, batch 1, seed 1234). */
export const CALIB_DEFAULT_SIZE = 512;
export const CALIB_DEFAULT_MAX_SEQ_LENGTH = 512;
export const CALIB_DEFAULT_BATCH_SIZE = 1;
export const CALIB_DEFAULT_SEED = 1234;
/** The literal dataset name for random ids. */
export const CALIB_RANDOM = "random";

export interface CalibDataOptions {
  /** A .txt / .jsonl / input_ids .safetensors file, or "random". */
  dataset: string;
  calibSize?: number;
  calibMaxSeqLength?: number;
  /** Sequences per forward batch (the CPU runner runs one at a time: no effect on the statistics). */
  batchSize?: number;
  seed?: number;
}

export interface CalibData {
  sequences: number[][];
  tokens: number;
  /** One line: file, format, samples × length, what was cut. */
  describe: string;
  format: "txt" | "jsonl" | "safetensors" | "random";
  calibSize: number;
  calibMaxSeqLength: number;
  batchSize: number;
  seed: number;
}

function posInt(name: string, v: number | undefined, dflt: number): number {
  const x = v ?? dflt;
  if (!Number.isSafeInteger(x) || x < 1) throw new TrtbError("CALIB_BAD_OPTION", `${name} must be an integer ≥ 1, got ${v}`);
  return x;
}

/** xorshift32 from a seed (deterministic across platforms). */
function rng(seed: number): () => number {
  let s = (seed >>> 0) || 0x9e3779b9;
  return () => {
    s ^= s << 13; s >>>= 0;
    s ^= s >>> 17;
    s ^= s << 5; s >>>= 0;
    return s / 2 ** 32;
  };
}

function chunks(ids: number[], len: number): number[][] {
  const out: number[][] = [];
  for (let i = 0; i + len <= ids.length; i += len) out.push(ids.slice(i, i + len));
  return out;
}

/** Read calibration samples (see the top of the file). `tok` is needed for text; `vocab` checks ids. */
export function readCalibData(opts: CalibDataOptions, tok: Tokenizer | undefined, vocab: number): CalibData {
  const calibSize = posInt("calib_size", opts.calibSize, CALIB_DEFAULT_SIZE);
  const L = posInt("calib_max_seq_length", opts.calibMaxSeqLength, CALIB_DEFAULT_MAX_SEQ_LENGTH);
  const batchSize = posInt("batch_size", opts.batchSize, CALIB_DEFAULT_BATCH_SIZE);
  const seed = opts.seed ?? CALIB_DEFAULT_SEED;
  if (!Number.isSafeInteger(seed) || seed < 0) throw new TrtbError("CALIB_BAD_OPTION", `seed must be a non-negative integer, got ${opts.seed}`);
  const file = opts.dataset;
  const base = { calibSize, calibMaxSeqLength: L, batchSize, seed };
  if (file === CALIB_RANDOM) {
    const r = rng(seed);
    const sequences = Array.from({ length: calibSize }, () => Array.from({ length: L }, () => Math.floor(r() * vocab)));
    return { ...base, sequences, tokens: calibSize * L, format: "random", describe: `RANDOM token ids (seed ${seed}, uniform over ${vocab} ids): ${calibSize} × ${L} tokens — not real data` };
  }
  const ext = extname(file).toLowerCase();
  const format = ext === ".txt" ? "txt" : ext === ".jsonl" ? "jsonl" : ext === ".safetensors" ? "safetensors" : null;
  if (!existsSync(file)) throw new TrtbError("CALIB_DATA_MISSING", `${file}: no such calibration file`, { file });
  if (!statSync(file).isFile()) throw new TrtbError("CALIB_DATA_MISSING", `${file}: not a file`, { file });
  if (format === null) throw new TrtbError("CALIB_DATA_INVALID", `${file}: unknown calibration format ${JSON.stringify(ext)} (expected .txt, .jsonl or an input_ids .safetensors)`, { file });
  if (statSync(file).size === 0) throw new TrtbError("CALIB_DATA_EMPTY", `${file}: empty calibration file (0 bytes)`, { file });
  let samples: number[][];
  let how: string;
  if (format === "safetensors") {
    const src = openSafetensors(file);
    try {
      if (!src.has("input_ids")) throw new TrtbError("CALIB_DATA_INVALID", `${file}: no tensor named input_ids`, { file });
      const t = src.get("input_ids");
      if (t.dtype !== "I32" && t.dtype !== "I64") throw new TrtbError("CALIB_DATA_INVALID", `${file}: input_ids must be I32 or I64, got ${t.dtype}`, { file, tensor: "input_ids" });
      if (t.shape.length !== 1 && t.shape.length !== 2) throw new TrtbError("CALIB_DATA_INVALID", `${file}: input_ids must be [N, S] or [S], got [${t.shape}]`, { file, tensor: "input_ids" });
      const n = t.shape.reduce((a, b) => a * b, 1);
      if (n === 0) throw new TrtbError("CALIB_DATA_EMPTY", `${file}: input_ids [${t.shape}] holds no tokens`, { file });
      const b = t.bytes();
      const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
      const ids = t.dtype === "I32" ? Array.from({ length: n }, (_, i) => dv.getInt32(i * 4, true)) : Array.from({ length: n }, (_, i) => Number(dv.getBigInt64(i * 8, true)));
      if (t.shape.length === 1) {
        samples = chunks(ids, L);
        how = `input_ids [${t.shape}] cut into chunks of ${L}`;
      } else {
        const [N, S] = t.shape as [number, number];
        samples = Array.from({ length: N }, (_, r) => ids.slice(r * S, r * S + Math.min(S, L)));
        how = `input_ids [${t.shape}], one sample per row${S > L ? `, truncated to ${L}` : ""}`;
      }
    } finally {
      src.close();
    }
  } else {
    if (!tok) throw new TrtbError("CALIB_NO_TOKENIZER", `${file}: a text calibration file needs a tokenizer (tokenizer.json in the model directory, or tokenizerDir)`, { file });
    const text = readFileSync(file, "utf8");
    if (format === "txt") {
      if (text.trim() === "") throw new TrtbError("CALIB_DATA_EMPTY", `${file}: no text (whitespace only)`, { file });
      const ids = tok.encode(text, { addSpecialTokens: false });
      samples = chunks(ids, L);
      how = `one text of ${ids.length} tokens cut into chunks of ${L}`;
    } else {
      samples = [];
      let lines = 0;
      for (const [i, line] of text.split("\n").entries()) {
        if (line.trim() === "") continue;
        lines++;
        let doc: { text?: unknown; messages?: unknown } | null;
        try {
          doc = JSON.parse(line);
        } catch (e) {
          throw new TrtbError("CALIB_DATA_INVALID", `${file}:${i + 1}: not valid JSON (${(e as Error).message})`, { file, cause: e });
        }
        let ids: number[];
        if (doc && typeof doc === "object" && typeof doc.text === "string") ids = tok.encode(doc.text, { addSpecialTokens: false });
        else if (doc && typeof doc === "object" && Array.isArray(doc.messages)) ids = tok.encodeChat(doc.messages as never);
        else throw new TrtbError("CALIB_DATA_INVALID", `${file}:${i + 1}: expected an object with "text" (a string) or "messages" (a list)`, { file });
        if (ids.length > 0) samples.push(ids.slice(0, L));
      }
      if (samples.length === 0) throw new TrtbError("CALIB_DATA_EMPTY", `${file}: no usable text (${lines} non-blank line(s), none with non-empty "text" or "messages")`, { file });
      how = `${samples.length} document(s), each truncated to ${L}`;
    }
  }
  if (samples.length === 0) throw new TrtbError("CALIB_DATA_EMPTY", `${file}: no sample of ${L} tokens (${how}); lower calib_max_seq_length`, { file });
  if (calibSize > samples.length)
    throw new TrtbError("CALIB_TOO_SMALL", `${file}: calib_size ${calibSize} is larger than the ${samples.length} sample(s) the data holds (${how}); lower calib_size or calib_max_seq_length`, { file });
  const sequences = samples.slice(0, calibSize);
  for (const [k, s] of sequences.entries())
    for (const id of s) if (!(Number.isInteger(id) && id >= 0 && id < vocab)) throw new TrtbError("CALIB_DATA_INVALID", `${file}: sample ${k} has id ${id}, outside the vocabulary [0, ${vocab})`, { file });
  const tokens = sequences.reduce((a, s) => a + s.length, 0);
  return { ...base, sequences, tokens, format, describe: `${file} (${format}; ${how}): the first ${calibSize} of ${samples.length} sample(s), ${tokens} tokens` };
}
