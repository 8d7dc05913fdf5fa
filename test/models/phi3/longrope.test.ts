/**
 * The Phi-3 converter's LongRoPE config (src/models/phi3/config.ts): upstream's long_rope keys from
 * a transformers-4 `rope_scaling` or a transformers-5 `rope_parameters`, and clear errors for
 * configs it cannot represent. Real shapes: Phi-3-mini-128k (head 96, 48 factors, original 4096,
 * max 131072), Phi-4-mini (head 128, partial rotary 0.75 → 48 factors, tied embeddings).
 */
import { describe, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parseHFConfig } from "../../../src/format/hf-config.ts";
import { phi3ConfigFromHF } from "../../../src/models/phi3/config.ts";
import { expectCode } from "../../helpers.ts";

const FIX = join(import.meta.dir, "../../fixtures/phi3-longrope/config.json");
const raw = () => JSON.parse(readFileSync(FIX, "utf8")) as Record<string, any>;
const conv = (j: Record<string, unknown>) => phi3ConfigFromHF(parseHFConfig(j));

/** A transformers-4 style config of a real model's shape. */
function real(o: { head: number; pct: number; tie: boolean }) {
  const half = (o.head * o.pct) / 2;
  return {
    architectures: ["Phi3ForCausalLM"], model_type: "phi3", hidden_size: 8 * o.head, num_attention_heads: 8, num_key_value_heads: 8,
    num_hidden_layers: 2, intermediate_size: 512, vocab_size: 1024, max_position_embeddings: 131072, original_max_position_embeddings: 4096,
    rms_norm_eps: 1e-5, rope_theta: 10000, hidden_act: "silu", torch_dtype: "bfloat16", tie_word_embeddings: o.tie, partial_rotary_factor: o.pct,
    rope_scaling: { type: "longrope", short_factor: Array.from({ length: half }, () => 1.05), long_factor: Array.from({ length: half }, (_, i) => 1 + i) },
  };
}

describe("Phi-3 LongRoPE config", () => {
  test("transformers-5 rope_parameters → long_rope keys", () => {
    const c = conv(raw());
    expect(c.position_embedding_type).toBe("long_rope");
    expect(c.original_max_position_embeddings).toBe(64);
    expect((c.longrope_scaling_short_factors as number[])[1]).toBe(1.02);
    expect((c.longrope_scaling_long_factors as number[])[31]).toBe(30);
    expect(c.rotary_scaling).toBeNull();
  });

  test("real shapes: Phi-3-mini-128k (head 96) and Phi-4-mini (partial rotary 0.75)", () => {
    const mini = conv(real({ head: 96, pct: 1, tie: false }));
    expect(mini.rotary_embedding_dim).toBe(96);
    expect((mini.longrope_scaling_long_factors as number[]).length).toBe(48);
    const phi4 = conv(real({ head: 128, pct: 0.75, tie: true }));
    expect(phi4.rotary_embedding_dim).toBe(96);
    expect((phi4.longrope_scaling_short_factors as number[]).length).toBe(48);
    expect(phi4.tie_word_embeddings).toBe(true);
  });

  test("bad LongRoPE configs fail with the field named", () => {
    const j = raw();
    j.rope_parameters.long_factor = j.rope_parameters.long_factor.slice(1);
    expectCode(() => conv(j), "CFG_INVALID", /long_factor must be a list of 32/);
    const k = raw();
    delete k.original_max_position_embeddings;
    delete k.rope_parameters.original_max_position_embeddings;
    expectCode(() => conv(k), "CFG_INVALID", /original_max_position_embeddings/);
    const m = raw();
    m.rope_parameters.long_mscale = 1.2;
    expectCode(() => conv(m), "CFG_UNSUPPORTED", /long_mscale/);
    const a = raw();
    a.rope_parameters.attention_factor = 1.0;
    expectCode(() => conv(a), "CFG_UNSUPPORTED", /attention_factor/);
    const n = { ...real({ head: 96, pct: 1, tie: false }), rope_scaling: null };
    expectCode(() => conv(n), "CFG_INVALID", /128k model/);
  });
});
