/** Runner inputs and outputs as safetensors: `input_ids` int32 [B, S] in; `logits` f32 [B, S, V] and `output_ids` int32 out. */
import { TrtbError } from "../errors.ts";
import { openSafetensors, SafetensorsWriter } from "../format/safetensors.ts";

export function readInputIds(file: string): number[][] {
  const src = openSafetensors(file);
  try {
    if (!src.has("input_ids")) throw new TrtbError("RUN_BAD_INPUT", `${file}: no tensor named input_ids`, { file });
    const t = src.get("input_ids");
    if (t.shape.length !== 2) throw new TrtbError("RUN_BAD_INPUT", `${file}: input_ids must be 2-D [batch, seq], got [${t.shape}]`, { file, tensor: "input_ids" });
    const [B, S] = t.shape as [number, number];
    const b = t.bytes();
    const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
    const read = t.dtype === "I32" ? (i: number) => dv.getInt32(i * 4, true)
      : t.dtype === "I64" ? (i: number) => Number(dv.getBigInt64(i * 8, true))
      : null;
    if (!read) throw new TrtbError("RUN_BAD_INPUT", `${file}: input_ids must be I32 or I64, got ${t.dtype}`, { file, tensor: "input_ids" });
    return Array.from({ length: B }, (_, bi) => Array.from({ length: S }, (_, s) => read(bi * S + s)));
  } finally {
    src.close();
  }
}

export function writeRunOutputs(file: string, out: { logits?: { data: Float32Array[]; vocab: number }; outputIds?: number[][] }): void {
  const specs: { name: string; dtype: "F32" | "I32"; shape: number[] }[] = [];
  const B = out.logits?.data.length ?? out.outputIds?.length ?? 0;
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
