/**
 * Paged KV cache bookkeeping (host side). The device pool holds `numBlocks` blocks per layer, each
 * [k|v][kv head][tokens_per_block][head size]; a sequence owns a list of block ids (its block
 * table row), and token position p of that sequence lives in block table[p / tpb], row p % tpb.
 */
import { TrtbError } from "../../errors.ts";

export class BlockAllocator {
  readonly #free: number[];

  constructor(readonly numBlocks: number, readonly tokensPerBlock: number) {
    // Hand out low ids first (pop from the end).
    this.#free = Array.from({ length: numBlocks }, (_, i) => numBlocks - 1 - i);
  }

  get freeBlocks(): number {
    return this.#free.length;
  }

  blocksFor(tokens: number): number {
    return Math.ceil(tokens / this.tokensPerBlock);
  }

  /** Blocks for `tokens` tokens; throws `RUN_KV_CACHE_FULL` (taking nothing) when there are too few. */
  allocate(tokens: number): number[] {
    const n = this.blocksFor(tokens);
    if (n > this.#free.length)
      throw new TrtbError("RUN_KV_CACHE_FULL",
        `the KV cache has ${this.#free.length} free blocks of ${this.tokensPerBlock} tokens; ${n} are needed for ${tokens} tokens (raise maxKvTokens or lower the batch)`);
    return this.#free.splice(this.#free.length - n, n).reverse();
  }

  release(blocks: readonly number[]): void {
    for (let i = blocks.length - 1; i >= 0; i--) this.#free.push(blocks[i]!);
  }
}

/** Slot (global row index in the pool) of position `pos` for a block table row. */
export function slotOf(table: readonly number[], pos: number, tpb: number): number {
  return table[Math.floor(pos / tpb)]! * tpb + (pos % tpb);
}
