/**
 * Meta checkpoints (`params.json` + `consolidated.NN.pth`, spec §6) for Llama.
 *
 * Rather than a second converter, the model-parallel shards are merged lazily into one *virtual
 * source with Hugging Face names*, and the Llama name table does the rest (any tp/pp). Merging is
 * zero-copy until written:
 *
 *   wq, wk, wv, w1, w3, output      shards concatenated on dim 0
 *   wo, w2                          shards concatenated on dim 1
 *   tok_embeddings                  dim found by comparing the shard to the full shape
 *   *norm*, rope.freqs              taken from the first shard (replicated; rope.freqs unused)
 *
 * q/k rows are permuted from Meta's interleaved rotary pairs to rotate-half (HF layout): viewed as
 * [heads, d/2, 2, in], the middle axes are swapped. v is unchanged.
 */
import type { PretrainedConfig } from "../../format/checkpoint-config.ts";
import type { ModelDType } from "../../dtype.ts";
import { TrtbError } from "../../errors.ts";
import { listMetaShards, openTorchCheckpoint, readMetaParams } from "../../format/pth.ts";
import { Mapping } from "../../mapping.ts";
import type { TensorSource, TensorView } from "../../tensor.ts";
import { concat, gatherRows, type LazyTensor, lazy, renamed } from "../../tensor/lazy.ts";
import { baseConfig, checkSplits, type FromSourceOptions } from "../common/config-common.ts";

/** Defaults of Llama 3.1's scaled rope when params.json only says `use_scaled_rope: true`. */
const LLAMA31_SCALING = { factor: 8.0, low_freq_factor: 1.0, high_freq_factor: 4.0, original_max_position_embeddings: 8192, rope_type: "llama3" };

/** Row permutation Meta interleaved → rotate-half for a [heads·d, in] projection. */
export function metaToHFRotaryRows(heads: number, d: number): number[] {
  const rows = new Array<number>(heads * d);
  const half = d / 2;
  for (let h = 0; h < heads; h++)
    for (let k = 0; k < 2; k++) for (let j = 0; j < half; j++) rows[h * d + k * half + j] = h * d + 2 * j + k;
  return rows;
}

export interface MetaSource {
  cfg: PretrainedConfig;
  src: TensorSource;
  label: string;
}

class VirtualSource implements TensorSource {
  constructor(private readonly map: Map<string, () => LazyTensor>, private readonly shards: TensorSource[], private readonly label: string) {}
  names() { return [...this.map.keys()]; }
  has(n: string) { return this.map.has(n); }
  get(n: string): TensorView {
    const f = this.map.get(n);
    if (!f) throw new TrtbError("CONV_MISSING_SOURCE", `${this.label}: no tensor ${n}`, { tensor: n });
    return f();
  }
  close() { for (const s of this.shards) s.close(); }
}

/** The Meta shards of `dir` as one HF-named Llama source, and its checkpoint config for `opts.mapping`. */
export async function openMetaSource(dir: string, opts: FromSourceOptions): Promise<MetaSource> {
  const params = await readMetaParams(dir);
  const files = listMetaShards(dir);
  const shards = files.map((f) => openTorchCheckpoint(f));
  try {
    const n = shards.length;
    const H = params.dim;
    const nH = params.n_heads;
    const nKV = params.n_kv_heads ?? nH;
    const d = H / nH;
    const L = params.n_layers;
    const pfile = `${dir}/params.json`;
    if (!Number.isInteger(d) || d % 2 !== 0)
      throw new TrtbError("META_BAD_PARAMS", `${pfile}: dim ${H} is not divisible by n_heads ${nH} into an even head size`, { file: pfile });
    if (nH % nKV !== 0)
      throw new TrtbError("META_BAD_PARAMS", `${pfile}: n_kv_heads ${nKV} does not divide n_heads ${nH}`, { file: pfile });
    shards.forEach((s, i) => {
      for (const name of s.names()) {
        const lm = /^layers\.(\d+)\./.exec(name);
        if (lm && Number(lm[1]) >= L)
          throw new TrtbError("CFG_INVALID", `${files[i]}: tensor ${name} is beyond n_layers ${L} of params.json; the params and the weights disagree`, { file: files[i], tensor: name });
      }
    });
    const part = (key: string): LazyTensor[] => {
      const ps = shards.map((s, i) => {
        if (!s.has(key)) throw new TrtbError("CONV_MISSING_SOURCE", `${files[i]}: tensor ${key} not found`, { file: files[i], tensor: key });
        const t = s.get(key);
        if (!(["F32", "F16", "BF16"] as const).includes(t.dtype as "F32"))
          throw new TrtbError("CONV_DTYPE", `${files[i]}: tensor ${key} is ${t.dtype}; a weight must be F32, F16 or BF16`, { file: files[i], tensor: key });
        return lazy(t);
      });
      // Model-parallel pieces of one tensor all have the same shape; unequal ones are not one model.
      ps.forEach((p, i) => {
        if (p.shape.length !== ps[0]!.shape.length || p.shape.some((x, k) => x !== ps[0]!.shape[k]))
          throw new TrtbError("META_BAD_SHARDS", `${files[i]}: tensor ${key} has shape [${p.shape}] but ${files[0]} has [${ps[0]!.shape}]; shards of one model have equal pieces`, { file: files[i], tensor: key });
      });
      return ps;
    };
    const merge = (key: string, dim: number, name: string): LazyTensor => (n === 1 ? renamed(part(key)[0]!, name) : concat(part(key), dim, name));
    const first = (key: string, name: string): LazyTensor => renamed(part(key)[0]!, name);
    /** wq / wk merged over the shards, checked to hold `rows` rows (heads × head size) of `dim` inputs. */
    const rowsOf = (key: string, rows: number): LazyTensor => {
      const t = merge(key, 0, key);
      if (t.shape.length !== 2 || t.shape[0] !== rows || t.shape[1] !== H)
        throw new TrtbError("CONV_SHAPE", `${dir}: tensor ${key} merged over ${n} shard(s) has shape [${t.shape}], params.json gives [${rows}, ${H}] (heads × ${d}, dim)`, { file: dir, tensor: key });
      return t;
    };

    const emb0 = part("tok_embeddings.weight")[0]!;
    const out0 = part("output.weight")[0]!;
    const vocab = out0.shape[0]! * n; // output is always split on the vocab dim
    const embDim = n === 1 ? 0 : emb0.shape[0] === vocab ? 1 : 0;
    const intermediate = part("layers.0.feed_forward.w1.weight")[0]!.shape[0]! * n;
    if (params.vocab_size !== undefined && params.vocab_size > 0 && params.vocab_size !== vocab)
      throw new TrtbError("CFG_INVALID", `${dir}/params.json: vocab_size ${params.vocab_size} but output.weight holds ${vocab} rows`);
    if (nKV % n !== 0 && n > 1)
      throw new TrtbError("CFG_UNSUPPORTED", `${dir}: ${n} shards cannot split ${nKV} KV heads evenly`);

    const qRows = metaToHFRotaryRows(nH, d);
    const kRows = metaToHFRotaryRows(nKV, d);
    const m = new Map<string, () => LazyTensor>();
    m.set("model.embed_tokens.weight", () => merge("tok_embeddings.weight", embDim, "model.embed_tokens.weight"));
    m.set("model.norm.weight", () => first("norm.weight", "model.norm.weight"));
    m.set("lm_head.weight", () => merge("output.weight", 0, "lm_head.weight"));
    for (let l = 0; l < L; l++) {
      const P = `layers.${l}.`;
      const Q = `model.layers.${l}.`;
      m.set(`${Q}input_layernorm.weight`, () => first(`${P}attention_norm.weight`, `${Q}input_layernorm.weight`));
      m.set(`${Q}post_attention_layernorm.weight`, () => first(`${P}ffn_norm.weight`, `${Q}post_attention_layernorm.weight`));
      m.set(`${Q}self_attn.q_proj.weight`, () => gatherRows(rowsOf(`${P}attention.wq.weight`, nH * d), qRows, `${Q}self_attn.q_proj.weight`));
      m.set(`${Q}self_attn.k_proj.weight`, () => gatherRows(rowsOf(`${P}attention.wk.weight`, nKV * d), kRows, `${Q}self_attn.k_proj.weight`));
      m.set(`${Q}self_attn.v_proj.weight`, () => merge(`${P}attention.wv.weight`, 0, `${Q}self_attn.v_proj.weight`));
      m.set(`${Q}self_attn.o_proj.weight`, () => merge(`${P}attention.wo.weight`, 1, `${Q}self_attn.o_proj.weight`));
      m.set(`${Q}mlp.gate_proj.weight`, () => merge(`${P}feed_forward.w1.weight`, 0, `${Q}mlp.gate_proj.weight`));
      m.set(`${Q}mlp.up_proj.weight`, () => merge(`${P}feed_forward.w3.weight`, 0, `${Q}mlp.up_proj.weight`));
      m.set(`${Q}mlp.down_proj.weight`, () => merge(`${P}feed_forward.w2.weight`, 1, `${Q}mlp.down_proj.weight`));
    }
    const src = new VirtualSource(m, shards, dir);

    const mapping = opts.mapping ?? new Mapping();
    const scaling = params.use_scaled_rope ? LLAMA31_SCALING : ((params.rope_scaling as Record<string, unknown> | undefined) ?? null);
    const dtype: ModelDType = opts.dtype && opts.dtype !== "auto" ? opts.dtype : "bfloat16";
    const cfg = baseConfig({
      architecture: "LlamaForCausalLM", dtype, vocabSize: vocab, hidden: H, layers: L, heads: nH, kvHeads: nKV,
      headSize: d, act: "silu", intermediate, eps: params.norm_eps ?? 1e-5, posEmb: "rope_gpt_neox",
      maxPos: 2048, rotaryDim: d, opts, mapping,
    });
    Object.assign(cfg, {
      rotary_base: params.rope_theta ?? 10000, rotary_scaling: scaling, attn_bias: false, mlp_bias: false,
      residual_mlp: false, disable_weight_only_quant_plugin: false,
      moe: { num_experts: 0, top_k: 0, normalization_mode: null }, tie_word_embeddings: false,
    });
    checkSplits(cfg, mapping);
    return { cfg, src: src as TensorSource, label: dir };
  } catch (e) {
    for (const s of shards) s.close();
    throw e;
  }
}
