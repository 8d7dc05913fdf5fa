/**
 * The symbol table of libtrtb_engine.so, one row per C function in `cshim/include/trtb_engine.h`
 * (see there for what each does and returns), plus the constants and struct layouts that cross
 * the boundary. Keep in step with the header and bump `ENGINE_INTERFACE_VERSION` with
 * `TRTB_ENGINE_ABI_VERSION`.
 *
 * Two version checks: the shared loader (`src/ffi/lib.ts`) compares `trtb_engine_abi_version()`
 * with `ABI_VERSION` of `symbols.ts` (trtb.h's number, shared by every library of the shim), and
 * `src/ffi/engine.ts` then compares `trtb_engine_interface_version()` with the number below.
 */

/** `TRTB_ENGINE_ABI_VERSION` this TypeScript was written against. */
export const ENGINE_INTERFACE_VERSION = 5;

export const ENGINE_SYMBOLS = {
  trtb_engine_abi_version: { args: [], returns: "u32" },
  trtb_engine_interface_version: { args: [], returns: "u32" },
  trtb_engine_status_str: { args: ["i32"], returns: "cstring" },
  trtb_engine_last_error: { args: ["ptr", "u64"], returns: "i32" },
  trtb_engine_device_count: { args: ["ptr"], returns: "i32" },
  trtb_engine_device_info_get: { args: ["i32", "ptr"], returns: "i32" },
  trtb_engine_ctx_create: { args: ["i32", "u64", "ptr"], returns: "i32" },
  trtb_engine_ctx_destroy: { args: ["ptr"], returns: "i32" },
  trtb_engine_sync: { args: ["ptr"], returns: "i32" },
  trtb_engine_mem_info: { args: ["ptr", "ptr", "ptr"], returns: "i32" },
  trtb_engine_malloc: { args: ["ptr", "u64", "ptr"], returns: "i32" },
  trtb_engine_free: { args: ["ptr", "u64"], returns: "i32" },
  trtb_engine_host_alloc: { args: ["u64", "ptr"], returns: "i32" },
  trtb_engine_host_free: { args: ["ptr"], returns: "i32" },
  trtb_engine_upload: { args: ["ptr", "u64", "ptr", "u64"], returns: "i32" },
  trtb_engine_download: { args: ["ptr", "ptr", "u64", "u64"], returns: "i32" },
  trtb_engine_exec: { args: ["ptr", "ptr", "u64"], returns: "i32" },
  trtb_engine_graph_capture: { args: ["ptr", "ptr", "u64", "ptr"], returns: "i32" },
  trtb_engine_graph_launch: { args: ["ptr", "ptr"], returns: "i32" },
  trtb_engine_graph_destroy: { args: ["ptr"], returns: "i32" },
  trtb_engine_tactic_add: { args: ["ptr", "i32", "i32", "ptr", "ptr"], returns: "i32" },
  trtb_engine_tune: { args: ["ptr", "ptr", "ptr", "i32", "ptr"], returns: "i32" },
  trtb_engine_timer_start: { args: ["ptr"], returns: "i32" },
  trtb_engine_timer_stop: { args: ["ptr", "ptr"], returns: "i32" },
  trtb_engine_bench_copy: { args: ["ptr", "u64", "i32", "ptr"], returns: "i32" },
  trtb_engine_bench_gemm: { args: ["ptr", "i32", "i32", "i32", "i32", "ptr"], returns: "i32" },
} as const;

export type EngineSymbols = typeof ENGINE_SYMBOLS;

/** `TRTB_OP_*` opcodes and their argument counts (the C interpreter checks both). */
export const OP = {
  EMBED: [1, 9],
  ADD_NORM: [2, 12],
  GEMM: [3, 13],
  QKV_ROPE: [4, 21],
  ATTN_DECODE: [5, 19],
  ATTN_PREFILL: [6, 19],
  GATED_ACT: [7, 10],
  GATHER_ROWS: [8, 5],
  SCATTER_ADD: [9, 6],
  SOFTCAP: [10, 4],
  SAMPLE: [11, 7],
  MEMCPY: [12, 4],
  MEMSET: [13, 3],
  MOE_ROUTE: [14, 9],
  GEMM_WO: [15, 18],
  ACT_FP8: [16, 7],
  GEMM_FP8: [17, 14],
  ACT_I8: [18, 7],
  GEMM_I8: [19, 13],
  MUL_COLS: [20, 6],
  ACT_ROWQ: [21, 11],
} as const satisfies Record<string, readonly [number, number]>;

/** `TRTB_TACTIC_*`. */
export const TACTIC_KIND = { heuristic: 0, cublaslt: 1, gemv: 2, wo: 3 } as const;

/** `trtb_engine_device_info` (x86-64/aarch64 Linux). */
export const DEVICE_INFO = {
  size: 304, major: 4, minor: 8, multiprocessors: 12, totalMemory: 16, freeMemory: 24, l2: 32, smemOptin: 40,
  cublasLtVersion: 44, name: 48, nameLength: 256,
} as const;

/** `trtb_engine_tune_params`. */
export const TUNE_PARAMS = { size: 48, m: 4, n: 8, k: 12, ab: 16, y: 20, maxAlgos: 24, allowGemv: 28, minMs: 32, wBits: 40, wGroup: 44 } as const;

/** `trtb_engine_tune_result`. */
export const TUNE_RESULT = { size: 80, kind: 0, variant: 4, timeUs: 8, workspaceKb: 12, algo: 16 } as const;

/** `trtb_engine_sample_params` (device memory, 32 bytes per row). */
export const SAMPLE_PARAMS = { size: 32, temperature: 0, topK: 4, topP: 8, seed: 16, step: 24 } as const;
