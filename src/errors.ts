/**
 * The one error type of the library. Every failure a user can cause (bad file, bad flag, missing
 * tensor) is a `TrtbError` with a stable `code` from `ERROR_CODES` (a typo does not compile); tests
 * assert codes, the CLI prints `message` only (stack traces only under `--verbose`).
 */

/** Every error code, with one line of meaning. Codes never change meaning once shipped. */
export const ERROR_CODES = {
  // safetensors files
  ST_TOO_SMALL: "shorter than the 8-byte header length",
  ST_HEADER_OUT_OF_BOUNDS: "header length runs past the end of the file",
  ST_HEADER_TOO_LARGE: "header over the 100 MB limit",
  ST_HEADER_UTF8: "header is not valid UTF-8",
  ST_HEADER_NOT_OBJECT: "header is not a JSON object",
  ST_HEADER_JSON: "header is not valid (strict) JSON",
  ST_BAD_ENTRY: "a tensor entry lacks dtype/shape/data_offsets, has extra keys or a bad name",
  ST_BAD_METADATA: "__metadata__ is not an object of strings",
  ST_UNKNOWN_DTYPE: "a dtype safetensors does not define",
  ST_BAD_SHAPE: "shape dims are not integers ≥ 0",
  ST_BAD_OFFSETS: "data_offsets are not two ordered integers",
  ST_SIZE_OVERFLOW: "a tensor's size exceeds 2^53 bytes",
  ST_SIZE_MISMATCH: "data_offsets do not hold dtype × shape bytes",
  ST_DUPLICATE_KEY: "a tensor name appears twice",
  ST_GAP: "a gap between tensors' data",
  ST_OVERLAP: "tensors' data overlap",
  ST_FILE_LENGTH: "the file is longer or shorter than the header describes",
  ST_IO: "reading or mapping the file failed",
  ST_CLOSED: "the file was used after close",
  ST_MISSING_TENSOR: "no tensor of that name in the file",
  ST_BAD_RANGE: "a byte range outside the tensor",
  ST_NO_SPACE: "not enough free disk space for the file",
  ST_TENSOR_TOO_LARGE: "one tensor over the 4 GiB view limit",
  ST_WRITE_CLOSED: "the writer was used after commit/abort",
  ST_WRITE_UNKNOWN: "writing a tensor that is not in the writer's plan",
  ST_WRITE_TWICE: "writing a tensor twice",
  ST_WRITE_SIZE: "written bytes do not match the tensor's size",
  ST_WRITE_INCOMPLETE: "commit before every planned tensor was written",
  // Hugging Face model directories
  HF_NOT_DIR: "the model path is not a readable directory",
  HF_NO_CONFIG: "no config.json in the model directory",
  HF_CONFIG_JSON: "config.json is not valid JSON",
  HF_CONFIG_INVALID: "config.json misses or mistypes a field",
  HF_NO_WEIGHTS: "no *.safetensors weights in the model directory",
  HF_INDEX_JSON: "model.safetensors.index.json is malformed",
  HF_SHARD_MISSING: "a shard named by the index does not exist",
  HF_TENSOR_NOT_IN_SHARD: "the index puts a tensor in a shard that lacks it",
  HF_DUPLICATE_TENSOR: "a tensor appears in two shards",
  HF_MISSING_TENSOR: "no tensor of that name in the checkpoint",
  // ZIP archives (torch files)
  ZIP_OPEN: "the archive cannot be opened or mapped",
  ZIP_NO_EOCD: "not a ZIP archive (no end-of-central-directory record)",
  ZIP_BAD_HEADER: "a malformed ZIP record",
  ZIP_UNSUPPORTED: "a ZIP feature we do not read (encryption, a method other than stored/deflate, …)",
  ZIP_TRUNCATED: "the archive is shorter than its records say",
  ZIP_BAD_DATA: "deflate data is corrupt or inflates past its declared size",
  ZIP_MISSING_ENTRY: "no member of that name",
  ZIP_CLOSED: "the archive was used after close",
  // pickles (restricted unpickler)
  PICKLE_BAD: "not a pickle, or a corrupt one",
  PICKLE_TRUNCATED: "the pickle ends inside an opcode",
  PICKLE_TOO_DEEP: "nesting or stack deeper than the limit",
  PICKLE_FORBIDDEN_GLOBAL: "a global outside the tensor-rebuild allow-list (never executed)",
  PICKLE_FORBIDDEN_OPCODE: "an opcode or BUILD the restricted unpickler refuses",
  // torch checkpoints
  PTH_LEGACY_FORMAT: "a pre-1.6 (non-zip) torch file",
  PTH_BAD_ARCHIVE: "the zip is not a torch.save archive",
  PTH_BYTEORDER: "a byteorder member other than little-endian",
  PTH_BAD_PERSID: "a malformed persistent id (storage reference)",
  PTH_BAD_TENSOR: "a malformed tensor rebuild call",
  PTH_NOT_STATE_DICT: "the top-level object is not a state dict of tensors",
  PTH_UNSUPPORTED_DTYPE: "a storage type without a safetensors dtype",
  PTH_UNSUPPORTED: "a tensor layout we do not read (e.g. broadcast views)",
  PTH_STORAGE_TOO_SMALL: "a tensor reaches past its storage",
  PTH_MISSING_TENSOR: "no tensor of that name in the torch file",
  PTH_CLOSED: "the torch checkpoint was used after close",
  // Meta checkpoints
  META_NO_PARAMS: "no readable params.json",
  META_BAD_PARAMS: "params.json is invalid",
  META_NO_SHARDS: "no consolidated.NN.pth shards",
  META_BAD_SHARDS: "shards are misnumbered or repeated",
  META_DUPLICATE_TENSOR: "a tensor appears in more than one piece of a shard",
  // configs (any format)
  CFG_INVALID: "a config field is missing, mistyped or contradicts another",
  CFG_DTYPE: "a dtype that is not supported for the model",
  CFG_MAPPING: "a bad tp/pp/moe size or rank",
  CFG_UNSUPPORTED: "a config feature the family does not support (activation, rope scaling, …)",
  CFG_UNSUPPORTED_ARCH: "an architecture no family converts or reads",
  // TRT-LLM checkpoints
  CKPT_NO_CONFIG: "no config.json in the TRT-LLM checkpoint directory",
  CKPT_CONFIG_JSON: "the checkpoint's config.json is not valid JSON",
  CKPT_MISSING_RANK: "a rank{N}.safetensors the mapping declares is missing",
  CKPT_MISSING_TENSOR: "a tensor the model declares is missing",
  CKPT_SHAPE_MISMATCH: "a tensor has another shape than declared",
  CKPT_DTYPE_MISMATCH: "a tensor has another dtype than declared",
  CKPT_BAD_VALUE: "a tensor holds a value its role forbids (a scale that is not finite and > 0)",
  // conversion
  CONV_MISSING_SOURCE: "a source tensor the name table needs is missing",
  CONV_TABLE: "a name-table rule that does not fit its source",
  CONV_SHAPE: "a source tensor has the wrong shape for its rule",
  CONV_SPLIT: "a dimension does not split evenly over the ranks",
  CONV_TP: "heads or sizes do not divide by tp_size",
  CONV_PP: "pp_size larger than the number of layers",
  CONV_DTYPE: "a cast between dtypes that cannot convert",
  CONV_WORKER: "a --workers conversion thread failed",
  CONV_SIZE: "a cast's destination has the wrong size",
  // quantization
  QUANT_CONFIG: "a quantization config field is invalid",
  QUANT_UNSUPPORTED: "a quantization format the model or family does not support",
  QUANT_GROUP: "group size does not divide the input features",
  QUANT_SHAPE: "a weight that is not a matrix of the expected shape",
  QUANT_DTYPE: "a quantized tensor asked for in another dtype",
  QUANT_PARAMS: "invalid quantization kernel parameters",
  QUANT_SIZE: "a quantization buffer has the wrong size",
  QUANT_NEEDS_CALIB: "a format that needs calibration statistics was asked for without them",
  // calibration (statistics for FP8, AWQ, SmoothQuant, KV-cache scales)
  CALIB_DATA_MISSING: "the calibration file does not exist or is not a file",
  CALIB_DATA_EMPTY: "the calibration file is empty or holds no usable text / tokens",
  CALIB_DATA_INVALID: "the calibration file has an unknown format, a malformed line or tensor, or an id outside the vocabulary",
  CALIB_TOO_SMALL: "calib_size asks for more samples than the calibration data holds",
  CALIB_NO_DATA: "calibration is needed but no calibration dataset was given",
  CALIB_BAD_OPTION: "an invalid calib_size / calib_max_seq_length / batch_size / seed",
  CALIB_NO_TOKENIZER: "a text calibration file without a tokenizer in the model directory",
  // the native shim
  NATIVE_NOT_FOUND: "libtrtb could not be loaded",
  NATIVE_INVALID_ARG: "the shim refused an argument",
  NATIVE_DTYPE: "the shim does not handle that dtype pair",
  NATIVE_SIZE: "a buffer size the shim refused",
  NATIVE_OUT_OF_MEMORY: "host allocation failed in the shim",
  NATIVE_UNSUPPORTED: "an operation the shim does not support",
  NATIVE_INTERNAL: "an internal error in the shim or its encoder",
  NATIVE_DESTROYED: "a native object used after destroy",
  NATIVE_UNKNOWN_STATUS: "a status code this version does not know",
  // CUDA
  CUDA_UNAVAILABLE: "libtrtb_cuda or the CUDA driver is not available",
  CUDA_NO_DEVICE: "no CUDA device, or a bad device index",
  CUDA_OUT_OF_MEMORY: "GPU memory allocation failed",
  CUDA_ERROR: "a CUDA call failed",
  // engines
  ENGINE_UNAVAILABLE: "libtrtb_engine (the CUDA engine backend) is not available",
  ENGINE_NOT_FOUND: "no engine directory, config.json or rank{N}.engine",
  ENGINE_CONFIG: "the engine's config.json is invalid",
  ENGINE_FORMAT: "a rank{N}.engine that is corrupt, of another format version or rank",
  ENGINE_RANK: "a rank outside the engine's world size",
  // engine building
  BUILD_CONFIG: "an invalid BuildConfig field",
  BUILD_UNSUPPORTED: "something the CUDA backend cannot build (format, head size, feature)",
  BUILD_NO_GPU: "building needs a CUDA GPU and none is usable",
  BUILD_TIMING_CACHE: "an unreadable or foreign timing cache",
  BUILD_WORKER: "a --workers build process failed",
  BUILD_INTERNAL: "an engine operation that makes no sense for its state",
  // runners
  RUN_BAD_INPUT: "invalid runner input (ids file, token ids, lengths)",
  RUN_MISSING_TENSOR: "the checkpoint lacks a tensor the runner needs",
  RUN_UNSUPPORTED: "something the runner cannot run (mapping, activation, …)",
  RUN_PROMPT_TOO_LONG: "a prompt longer than the engine's max_input_len (or the model's positions)",
  RUN_KV_CACHE_FULL: "not enough KV cache blocks for the request",
  // evaluation (perplexity, KL against a reference)
  EVAL_NOT_MODEL: "the model or reference path is neither a TRT-LLM checkpoint nor an engine directory",
  EVAL_DATA_MISSING: "the data file does not exist or is not a file",
  EVAL_DATA_EMPTY: "the data file is empty or holds no usable text / tokens",
  EVAL_DATA_INVALID: "the data file has an unknown format, a malformed line or tensor, or an id outside the vocabulary",
  EVAL_TOO_SHORT: "the data has fewer tokens than one window",
  EVAL_NO_TOKENIZER: "text input (or bos on) without a tokenizer.json in the model directories or tokenizerDir",
  EVAL_BAD_OPTION: "an invalid window / stride / maxWindows / bos, or a window past the model's context",
  EVAL_VOCAB_MISMATCH: "the reference and the candidate have different vocabularies",
  // multi-rank launch
  DIST_BAD_ENV: "a launcher environment variable is malformed",
  DIST_WORLD_MISMATCH: "the launcher's world size differs from the engine's",
  DIST_NOT_ENOUGH_GPUS: "fewer GPUs than ranks",
  // output files
  IO_WRITE: "writing an output file failed",
  IO_READ_ONLY: "the output location is on a read-only file system or not writable",
  IO_OUTPUT_IS_INPUT: "an output location that is, contains or lies inside an input (refused before anything is written)",
  // input files (any format)
  IO_NOT_FILE: "an input that must be a regular file is a FIFO, device, directory or socket",
  IO_TOO_LARGE: "a side file (config, index, params) over its size limit",
  // numeric sanity
  NUM_NONFINITE: "a tensor holds NaN or Inf (first bad index named; --allow_nonfinite overrides)",
  // the command line
  CLI_BAD_ARG: "a missing, malformed or contradictory command-line flag",
  // the LLM API
  LLM_UNKNOWN_MODEL: "a model path that is neither a Hugging Face, TRT-LLM checkpoint nor engine directory",
  LLM_BACKEND: "the requested backend (gpu) is not available, or cannot run this model",
  LLM_BAD_OPTION: "an invalid LLM.create option or SamplingParams field",
  LLM_BAD_INPUT: "prompts that are not text, chats or token ids",
  LLM_DISPOSED: "the LLM was used after dispose()",
  // the OpenAI-compatible server (trtllm serve)
  SERVE_BAD_REQUEST: "a request body that is not JSON, or a field of the wrong type or out of range (HTTP 400)",
  SERVE_UNSUPPORTED: "a request feature the server does not implement: n > 1, best_of, beam search, penalties, logit_bias, suffix (HTTP 400)",
  SERVE_TOO_LARGE: "a request whose prompt + max_tokens needs more KV blocks than the whole cache holds (HTTP 400)",
  SERVE_NOT_FOUND: "no such route (HTTP 404)",
  SERVE_METHOD: "a route asked with the wrong HTTP method (HTTP 405)",
  SERVE_SHUTTING_DOWN: "a request that arrived while the server drains (HTTP 503)",
  SERVE_BAD_OPTION: "an invalid server or scheduler option (port, batch size, token budget)",
  // tokenizers and chat templates
  TOK_MISSING_FILE: "tokenizer.json (or another tokenizer file) is missing",
  TOK_BAD_JSON: "a tokenizer file is not valid JSON",
  TOK_INVALID: "tokenizer.json is not a tokenizers file",
  TOK_UNSUPPORTED: "the tokenizer cannot be built",
  TOK_UNKNOWN_SPECIAL: "a special token the config names is not in the vocabulary",
  TOK_BAD_ID: "a token id outside the vocabulary",
  TOK_BAD_INPUT: "encode/decode given something that is not text or ids",
  TOK_EMPTY_PROMPT: "a prompt that encodes to no tokens",
  TOK_BAD_MESSAGE: "chat messages that are not a list of {role, content}",
  TOK_NO_CHAT_TEMPLATE: "--chat / a chat prompt without a chat template",
  TOK_TEMPLATE: "the chat template does not parse or raised an error",
  TOK_BAD_STOP: "an empty stop string",
  TOK_COPY: "a tokenizer file could not be copied",
  // generation_config.json
  GEN_CONFIG_MISSING_FILE: "generation_config.json could not be read",
  GEN_CONFIG_BAD_JSON: "generation_config.json is not valid JSON",
  GEN_CONFIG_INVALID: "generation_config.json misses or mistypes a field",
} as const;

export type ErrorCode = keyof typeof ERROR_CODES;

export class TrtbError extends Error {
  override readonly name = "TrtbError";
  constructor(
    /** Stable machine-readable code, e.g. `ST_GAP` (see ERROR_CODES). */
    readonly code: ErrorCode,
    message: string,
    /** Optional context: the file and tensor the failure is about. */
    readonly details: { file?: string; tensor?: string; cause?: unknown } = {},
  ) {
    super(message);
    if (details.cause !== undefined) (this as { cause?: unknown }).cause = details.cause;
  }
}

export function isTrtbError(e: unknown): e is TrtbError {
  return e instanceof TrtbError;
}

/** Throw a TrtbError unless `cond` holds. */
export function check(cond: unknown, code: ErrorCode, message: string, details?: TrtbError["details"]): asserts cond {
  if (!cond) throw new TrtbError(code, message, details);
}
