/** Worker thread of a parallel conversion: writes the rank files it is given (see writeInWorkers). */
import { type WorkerOptions, writeRanks } from "./convert.ts";
import { isTrtbError } from "./errors.ts";
import { Mapping } from "./mapping.ts";

declare const self: Worker;

self.onmessage = async (e: MessageEvent) => {
  const { opts, ranks } = e.data as { opts: WorkerOptions; ranks: number[] };
  try {
    const { mappingJSON, ...rest } = opts;
    await writeRanks({ ...rest, mapping: new Mapping(mappingJSON) }, ranks, (rank, done) => self.postMessage({ type: "progress", rank, done }));
    self.postMessage({ type: "done" });
  } catch (err) {
    self.postMessage({ type: "error", code: isTrtbError(err) ? err.code : undefined, message: (err as Error).message ?? String(err) });
  }
};
