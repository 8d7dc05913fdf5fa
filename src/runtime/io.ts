/**
 * Runner inputs and outputs as safetensors: `input_ids` int32 [B, S] in; `logits` f32 [B, S, V] and
 * `output_ids` int32 out. Inputs are bounded before anything is sized from them (B, S ≥ 1, ids ≥ 0,
 * at most MAX_INPUT_TOKENS in all), and `capNewTokens` keeps generation inside the model's positions.
 */
import { TrtbError } from "../errors.ts";
import { openSafetensors, SafetensorsWriter } from "../format/safetensors.ts";
import { log } from "../log.ts";

/** Most prompt tokens one ids file may hold (batch × seq): far above a real batch, far below memory trouble. */
export const MAX_INPUT_TOKENS = 2 ** 24;
/** Most new tokens per prompt when the model declares no position limit. */
export const MAX_NEW_TOKENS_UNBOUNDED_MODEL = 2 ** 16;

export function readInputIds(file: string): number[][] {
  const src = openSafetensors(file);
  try {
    if (!src.has("input_ids")) throw new TrtbError("RUN_BAD_INPUT", `${file}: no tensor named input_ids`, { file });
    const t = src.get("input_ids");
    if (t.shape.length !== 2) throw new TrtbError("RUN_BAD_INPUT", `${file}: input_ids must be 2-D [batch, seq], got [${t.shape}]`, { file, tensor: "input_ids" });
    const [B, S] = t.shape as [number, number];
    if (B === 0 || S === 0) throw new TrtbError("RUN_BAD_INPUT", `${file}: input_ids is empty ([${t.shape}]); give at least one prompt of one token`, { file, tensor: "input_ids" });
    if (B * S > MAX_INPUT_TOKENS) throw new TrtbError("RUN_BAD_INPUT", `${file}: input_ids holds ${B}×${S} tokens, over the ${MAX_INPUT_TOKENS} limit`, { file, tensor: "input_ids" });
    const b = t.bytes();
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const read = t.dtype === "I32" ? (i: number) => dv.getInt32(i * 4, true)
      : t.dtype === "I64" ? (i: number) => Number(dv.getBigInt64(i * 8, true))
      : null;
    if (!read) throw new TrtbError("RUN_BAD_INPUT", `${file}: input_ids must be I32 or I64, got ${t.dtype}`, { file, tensor: "input_ids" });
    const rows = Array.from({ length: B }, (_, bi) => Array.from({ length: S }, (_, s) => read(bi * S + s)));
    rows.forEach((row, bi) => row.forEach((id, s) => {
      if (!(Number.isSafeInteger(id) && id >= 0 && id < 2 ** 31))
        throw new TrtbError("RUN_BAD_INPUT", `${file}: input_ids[${bi}][${s}] = ${id} is not a token id`, { file, tensor: "input_ids" });
    }));
    return rows;
  } finally {
    src.close();
  }
}

/**
 * `maxNew` capped (with a warning) so that the longest prompt plus the new tokens stays within
 * `maxSeqLen` (the engine's max_seq_len, the checkpoint's max_position_embeddings; null: no limit
 * declared, then MAX_NEW_TOKENS_UNBOUNDED_MODEL). A prompt that already fills it is RUN_PROMPT_TOO_LONG.
 */
export function capNewTokens(maxNew: number, ids: readonly (readonly number[])[], maxSeqLen: number | null | undefined, where: string): number {
  const longest = Math.max(0, ...ids.map((r) => r.length));
  const limit = maxSeqLen ?? longest + MAX_NEW_TOKENS_UNBOUNDED_MODEL;
  if (longest >= limit) throw new TrtbError("RUN_PROMPT_TOO_LONG", `a prompt of ${longest} tokens fills ${where} ${limit}; nothing can be generated`);
  const room = limit - longest;
  if (maxNew > room) {
    log.warn(`max_new_tokens ${maxNew} capped at ${room}: the longest prompt (${longest} tokens) + ${room} new reach ${where} ${limit}`);
    return room;
  }
  return maxNew;
}

export function writeRunOutputs(file: string, out: { logits?: { data: Float32Array[]; vocab: number }; outputIds?: number[][] }): void {
  const specs: { name: string; dtype: "F32" | "I32"; shape: number[] }[] = [];
  const B = out.logits?.data.length ?? out.outputIds?.length ?? 0;
  if (B === 0 || (out.logits && out.logits.data[0]!.length === 0))
    throw new TrtbError("RUN_BAD_INPUT", `${file}: nothing to write (no prompts, or prompts of no tokens)`, { file });
  if (out.logits) {
    const S = out.logits.data[0]!.length / out.logits.vocab;
    specs.push({ name: "logits", dtype: "F32", shape: [B, S, out.logits.vocab] });
  }
  const width = out.outputIds ? Math.max(...out.outputIds.map((r) => r.length)) : 0;
  if (out.outputIds) specs.push({ name: "output_ids", dtype: "I32", shape: [out.outputIds.length, width] });
  const w = SafetensorsWriter.create(file, specs);
  try {
    if (out.logits) {
      const data = out.logits.data;
      w.writeWith("logits", (dst) => {
        let off = 0;
        for (const row of data) {
          dst.set(new Uint8Array(row.buffer, row.byteOffset, row.byteLength), off);
          off += row.byteLength;
        }
      });
    }
    if (out.outputIds) {
      const ids = out.outputIds;
      w.writeWith("output_ids", (dst) => {
        const dv = new DataView(dst.buffer, dst.byteOffset, dst.byteLength);
        ids.forEach((row, b) => {
          for (let s = 0; s < width; s++) dv.setInt32((b * width + s) * 4, row[s] ?? row[row.length - 1]!, true);
        });
      });
    }
    w.commit();
  } catch (e) {
    w.abort();
    throw e;
  }
}
