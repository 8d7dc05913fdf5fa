/** BuildConfig / PluginConfig: upstream defaults, max_seq_len deduction, clipping and token checks. */
import { describe, expect, test } from "bun:test";
import { resolveBuildConfig, rotaryFactor } from "../../src/builder/config.ts";
import { buildConfigToJSON, parseBuildConfig } from "../../src/engine/build-config.ts";
import type { PretrainedConfig } from "../../src/format/checkpoint-config.ts";
import { isTrtbError } from "../../src/errors.ts";

const model = (over: Record<string, unknown> = {}) => ({ dtype: "bfloat16", max_position_embeddings: 4096, rotary_scaling: null, ...over }) as unknown as PretrainedConfig;
const code = (fn: () => unknown) => {
  try {
    fn();
  } catch (e) {
    return isTrtbError(e) ? e.code : String(e);
  }
  return "no error";
};

describe("BuildConfig", () => {
  test("defaults are upstream's (spec §5.1–5.2)", () => {
    const b = parseBuildConfig();
    expect(b).toMatchObject({
      max_input_len: 1024, max_seq_len: null, opt_batch_size: 8, max_batch_size: 2048, max_beam_width: 1, max_num_tokens: 8192,
      opt_num_tokens: null, max_prompt_embedding_table_size: 0, kv_cache_type: null, gather_context_logits: false,
      gather_generation_logits: false, strongly_typed: true, profiling_verbosity: "layer_names_only", max_draft_len: 0,
      speculative_decoding_mode: 1, input_timing_cache: null, output_timing_cache: "model.cache", use_strip_plan: false,
      max_encoder_input_len: 1024, dry_run: false, use_mrope: false,
    });
    expect(b.plugin_config).toMatchObject({
      gpt_attention_plugin: "auto", gemm_plugin: null, nccl_plugin: "auto", moe_plugin: "auto", context_fmha: true, paged_kv_cache: null,
      remove_input_padding: true, tokens_per_block: 32, use_paged_context_fmha: true, use_fused_mlp: true, manage_weights: false,
    });
  });

  test("unknown keys and bad values are BUILD_CONFIG errors naming the field", () => {
    expect(code(() => parseBuildConfig({ max_batch_sizes: 8 }))).toBe("BUILD_CONFIG");
    expect(code(() => parseBuildConfig({ max_batch_size: 0 }))).toBe("BUILD_CONFIG");
    expect(code(() => parseBuildConfig({ plugin_config: { gemm_plugin: "int3" } }))).toBe("BUILD_CONFIG");
    try {
      parseBuildConfig({ kv_cache_type: "pagd" });
    } catch (e) {
      expect((e as Error).message).toContain("kv_cache_type");
    }
  });

  test("max_seq_len: max_position_embeddings × rope factor, except llama3/longrope/su; 2048 when null", () => {
    expect(resolveBuildConfig(model()).max_seq_len).toBe(4096);
    expect(resolveBuildConfig(model({ rotary_scaling: { type: "linear", factor: 2 } })).max_seq_len).toBe(8192);
    expect(resolveBuildConfig(model({ rotary_scaling: { rope_type: "dynamic", factor: 1.5 } })).max_seq_len).toBe(6144);
    for (const t of ["llama3", "longrope", "su"]) expect(resolveBuildConfig(model({ rotary_scaling: { rope_type: t, factor: 8 } })).max_seq_len).toBe(4096);
    expect(resolveBuildConfig(model({ max_position_embeddings: null })).max_seq_len).toBe(2048);
    expect(resolveBuildConfig(model(), { max_seq_len: 100 }).max_seq_len).toBe(100);
    expect(rotaryFactor(model({ rotary_scaling: { type: "linear" } }))).toBe(1);
  });

  test("max_input_len is clipped to max_seq_len; max/opt_num_tokens checked", () => {
    const r = resolveBuildConfig(model({ max_position_embeddings: 512 }));
    expect(r.max_input_len).toBe(512);
    expect(r.opt_num_tokens).toBe(2048); // min(max_batch_size × beam, max_num_tokens)
    const small = resolveBuildConfig(model(), { max_seq_len: 16, max_batch_size: 2 });
    expect(small.max_num_tokens).toBe(32); // ≤ max_seq_len × max_batch_size
    expect(resolveBuildConfig(model(), { max_num_tokens: 8 }).max_num_tokens).toBe(32); // ≥ tokens_per_block
    expect(resolveBuildConfig(model(), { max_num_tokens: 100, opt_num_tokens: 500 }).opt_num_tokens).toBe(100);
    expect(resolveBuildConfig(model(), { max_num_tokens: null, max_seq_len: 10, max_batch_size: 3 }).max_num_tokens).toBe(32);
  });

  test("kv_cache_type from the flag, from paged_kv_cache, else PAGED; contradictions refused", () => {
    const r = resolveBuildConfig(model());
    expect(r.kv_cache_type).toBe("PAGED");
    expect(r.plugin_config.paged_kv_cache).toBe(true);
    expect(r.plugin_config.dtype).toBe("bfloat16");
    expect(resolveBuildConfig(model(), { kv_cache_type: "CONTINUOUS" }).plugin_config.paged_kv_cache).toBe(false);
    expect(resolveBuildConfig(model(), { plugin_config: { paged_kv_cache: false } }).kv_cache_type).toBe("CONTINUOUS");
    expect(parseBuildConfig({ kv_cache_type: "paged" }).kv_cache_type).toBe("PAGED");
    expect(code(() => resolveBuildConfig(model(), { kv_cache_type: "PAGED", plugin_config: { paged_kv_cache: false } }))).toBe("BUILD_CONFIG");
    expect(code(() => resolveBuildConfig(model(), { plugin_config: { tokens_per_block: 48 } }))).toBe("BUILD_CONFIG");
  });

  test("JSON for config.json: enum name, no dry_run / visualize_network", () => {
    const j = buildConfigToJSON(resolveBuildConfig(model(), { dry_run: true }));
    expect(j.kv_cache_type).toBe("PAGED");
    expect("dry_run" in j || "visualize_network" in j).toBe(false);
    expect((j.plugin_config as Record<string, unknown>).tokens_per_block).toBe(32);
    expect(parseBuildConfig(JSON.parse(JSON.stringify(j))).max_seq_len).toBe(4096); // round trip
  });
});
