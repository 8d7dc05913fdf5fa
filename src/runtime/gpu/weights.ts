/**
 * An engine's weights on the device: the weight blob in one allocation, uploaded window by window,
 * its tensors looked up by name, and the plan's saved GEMM tactics registered on the context.
 */
import { TrtbError } from "../../errors.ts";
import type { DeviceMem, DevRef, Dt, EngineContext } from "../../ffi/engine.ts";
import type { Engine } from "../../engine/engine.ts";

export type Tensor = { ref: DevRef; dtype: Dt | "I8" | "F8_E4M3"; shape: number[] };

export class DeviceWeights {
  readonly #w = new Map<string, Tensor>();
  /** context tactic ids, by the plan's tactic index */
  readonly tactics: number[];

  /** Upload `engine`'s weights; `keep` takes the allocation (freed with the runner, even if this throws). */
  constructor(ctx: EngineContext, engine: Engine, keep: (m: DeviceMem) => DeviceMem) {
    const plan = engine.plan;
    const arena = keep(ctx.alloc(engine.weightBytes, "weights"));
    engine.forEachWeightWindow((off, bytes) => ctx.upload(arena.at(off), bytes));
    for (const t of plan.tensors) this.#w.set(t.name, { ref: arena.at(t.offset), dtype: t.dtype, shape: t.shape });
    this.tactics = plan.gemm.tactics.map((t) =>
      ctx.addTactic({ kind: t.kind, variant: t.variant, algo: t.algo ? new Uint8Array(Buffer.from(t.algo, "hex")) : undefined }));
  }

  /** The tensor `name` (ENGINE_FORMAT if the engine has none). */
  get(name: string): Tensor {
    const t = this.#w.get(name);
    if (!t) throw new TrtbError("ENGINE_FORMAT", `engine has no tensor ${name}`);
    return t;
  }

  /** The tensor `name` if the engine has it. */
  find(name: string): Tensor | undefined {
    return this.#w.get(name);
  }

  /** Device address of an optional tensor (a bias, a q/k norm). */
  opt(name: string): DevRef | undefined {
    return this.#w.get(name)?.ref;
  }
}
