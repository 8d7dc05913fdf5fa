/**
 * The normalisation `build()` applies to a BuildConfig before anything else (spec §5.4, upstream
 * `_init_max_seq_len`, `check_max_num_tokens`, `update_kv_cache_type`); the rules are listed in
 * src/engine/build-config.ts.
 */
import type { PretrainedConfig } from "../format/checkpoint-config.ts";
import { TrtbError } from "../errors.ts";
import { log } from "../log.ts";
import { type BuildConfig, type BuildConfigInput, parseBuildConfig } from "../engine/build-config.ts";

/** Rotary scaling factor used for max_seq_len: 1 for su / longrope / llama3 (and no scaling). */
export function rotaryFactor(cfg: PretrainedConfig): number {
  const s = cfg.rotary_scaling as Record<string, unknown> | null | undefined;
  if (!s) return 1;
  const type = s.type ?? s.rope_type;
  if (type === "su" || type === "longrope" || type === "llama3") return 1;
  return typeof s.factor === "number" ? s.factor : 1;
}

/**
 * The config `build()` works with: defaults, kv cache type, deduced max_seq_len, clipped
 * max_input_len, checked max/opt_num_tokens, plugin dtype = model dtype. Pure (returns a copy).
 */
export function resolveBuildConfig(model: PretrainedConfig, input: BuildConfig | BuildConfigInput = {}): BuildConfig {
  const bc = parseBuildConfig(structuredClone(input));
  const pc = bc.plugin_config;
  pc.dtype = model.dtype;

  // kv_cache_type ⟷ plugin_config.paged_kv_cache (upstream update_kv_cache_type)
  if (bc.kv_cache_type !== null) {
    if (pc.paged_kv_cache !== null && pc.paged_kv_cache !== (bc.kv_cache_type === "PAGED"))
      throw new TrtbError("BUILD_CONFIG", `kv_cache_type ${bc.kv_cache_type} contradicts paged_kv_cache ${pc.paged_kv_cache ? "enable" : "disable"}`);
    pc.paged_kv_cache = bc.kv_cache_type === "PAGED";
  } else if (pc.paged_kv_cache !== null) {
    bc.kv_cache_type = pc.paged_kv_cache ? "PAGED" : "CONTINUOUS";
  } else {
    bc.kv_cache_type = "PAGED";
    pc.paged_kv_cache = true;
  }
  pc.paged_state = false;

  if (!Number.isInteger(Math.log2(pc.tokens_per_block)))
    throw new TrtbError("BUILD_CONFIG", `tokens_per_block must be a power of 2, got ${pc.tokens_per_block}`);

  const factor = rotaryFactor(model);
  if (bc.max_seq_len === null) {
    let deduced = model.max_position_embeddings ?? 2048;
    if (factor !== 1) {
      deduced = Math.ceil(deduced * factor);
      log.warn(`max_seq_len is scaled to ${deduced} by rotary scaling ${factor}`);
    }
    bc.max_seq_len = deduced;
    log.info(`max_seq_len is not specified, using deduced value ${deduced}`);
  } else if (!pc.streamingllm && model.max_position_embeddings != null && bc.max_seq_len > model.max_position_embeddings * factor) {
    log.warn(`max_seq_len ${bc.max_seq_len} is larger than max_position_embeddings ${model.max_position_embeddings} * rotary scaling ${factor}, the model accuracy might be affected`);
  }
  if (bc.max_input_len > bc.max_seq_len) {
    log.warn(`max_input_len ${bc.max_input_len} is larger than max_seq_len ${bc.max_seq_len}, clipping it to max_seq_len`);
    bc.max_input_len = bc.max_seq_len;
  }

  // check_max_num_tokens (remove_input_padding is always on for this backend's packed inputs)
  let maxTok = bc.max_num_tokens ?? bc.max_seq_len * bc.max_batch_size;
  let optTok = bc.opt_num_tokens;
  if (optTok === null && !pc.multiple_profiles) optTok = Math.min(bc.max_batch_size * bc.max_beam_width, maxTok);
  if (maxTok > 16384) log.warn(`max_num_tokens ${maxTok} is larger than 16384; usually not useful`);
  if (maxTok > bc.max_seq_len * bc.max_batch_size) {
    log.warn(`max_num_tokens (${maxTok}) shouldn't be greater than max_seq_len * max_batch_size (${bc.max_seq_len * bc.max_batch_size}); using that`);
    maxTok = bc.max_seq_len * bc.max_batch_size;
  }
  if (maxTok < pc.tokens_per_block && pc.context_fmha) {
    log.warn(`max_num_tokens (${maxTok}) should be at least tokens_per_block (${pc.tokens_per_block}); using tokens_per_block`);
    maxTok = pc.tokens_per_block;
  } else if (maxTok < bc.max_input_len && !pc.context_fmha) {
    maxTok = bc.max_input_len;
  }
  if (optTok !== null && optTok > maxTok) {
    log.warn(`opt_num_tokens (${optTok}) shouldn't be greater than max_num_tokens (${maxTok}); using max_num_tokens`);
    optTok = maxTok;
  }
  bc.max_num_tokens = maxTok;
  bc.opt_num_tokens = optTok;
  return bc;
}
