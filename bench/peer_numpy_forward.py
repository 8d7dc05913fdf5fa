"""Peer measurement for bench/cpu-runner.ts (not part of the product): a plain numpy fp32 forward of
a Llama checkpoint (Hugging Face safetensors: RMSNorm, RoPE rotate-half, causal GQA attention,
SwiGLU, lm_head tied to the embeddings unless the file has one), matrix products through numpy's
BLAS (OpenBLAS in numpy's wheels).

  prefill: logits of every position of a P-token prompt, best of --reps runs.
  decode:  a P-token prompt, then --new one-token steps with a preallocated KV cache; tokens/s of
           the steps alone.
Writes the prefill logits ([P, vocab] f32, little-endian raw) and the last decode step's logits
([vocab]) to --out / --out-decode so the bench can check that both programs compute the same
function, and prints one JSON line: timings, the BLAS that ran (threadpoolctl when installed,
else OpenBLAS's own get_corename / get_num_threads through ctypes).
"""
import argparse
import ctypes
import glob
import json
import os
import struct
import time

import numpy as np

ap = argparse.ArgumentParser()
ap.add_argument("--model", required=True)
ap.add_argument("--ids", required=True, help="comma-separated prompt ids")
ap.add_argument("--decode-ids", default="", help="comma-separated ids fed one per decode step")
ap.add_argument("--reps", type=int, default=5)
ap.add_argument("--out", default="")
ap.add_argument("--out-decode", default="")
args = ap.parse_args()


def read_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        base = 8 + n
    mm = np.memmap(path, dtype=np.uint8, mode="r")
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        raw = mm[base + a : base + b]
        if t["dtype"] == "BF16":
            arr = (raw.view(np.uint16).astype(np.uint32) << 16).view(np.float32)
        elif t["dtype"] == "F16":
            arr = raw.view(np.float16).astype(np.float32)
        elif t["dtype"] == "F32":
            arr = np.array(raw.view(np.float32))
        else:
            raise SystemExit(f"{name}: dtype {t['dtype']} not handled")
        out[name] = arr.reshape(t["shape"])
    return out


cfg = json.load(open(os.path.join(args.model, "config.json")))
W = {}
for f in sorted(glob.glob(os.path.join(args.model, "model*.safetensors"))):  # not reference.safetensors etc.
    W.update(read_safetensors(f))
H, L, V = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
nH = cfg["num_attention_heads"]
nKV = cfg.get("num_key_value_heads", nH)
d = cfg.get("head_dim") or H // nH
eps = np.float32(cfg.get("rms_norm_eps", 1e-6))
theta = (cfg.get("rope_parameters") or {}).get("rope_theta", cfg.get("rope_theta", 10000.0))
group = nH // nKV
emb = W["model.embed_tokens.weight"]
lm_head = W.get("lm_head.weight", emb)
P_ = "model.layers.{}."
layers = []
for l in range(L):
    p = P_.format(l)
    layers.append({
        "ln1": W[p + "input_layernorm.weight"],
        "ln2": W[p + "post_attention_layernorm.weight"],
        # fused q|k|v as in the TRT-LLM checkpoint: one product per layer
        "qkv": np.ascontiguousarray(np.concatenate([W[p + "self_attn.q_proj.weight"], W[p + "self_attn.k_proj.weight"], W[p + "self_attn.v_proj.weight"]])),
        "o": W[p + "self_attn.o_proj.weight"],
        "gate": W[p + "mlp.gate_proj.weight"],
        "up": W[p + "mlp.up_proj.weight"],
        "down": W[p + "mlp.down_proj.weight"],
    })
norm_f = W["model.norm.weight"]
inv_freq = (1.0 / (theta ** (np.arange(0, d, 2, dtype=np.int64).astype(np.float32) / d))).astype(np.float32)


def rms(x, w):
    var = np.mean(x * x, axis=-1, keepdims=True)
    return (x * (1.0 / np.sqrt(var + eps))).astype(np.float32) * w


def rope(x, pos):  # x [S, heads, d]
    f = pos[:, None].astype(np.float32) * inv_freq[None, :]
    c, s = np.cos(f)[:, None, :], np.sin(f)[:, None, :]
    a, b = x[..., : d // 2], x[..., d // 2 :]
    return np.concatenate([a * c - b * s, b * c + a * s], axis=-1)


class Cache:
    def __init__(self, cap):
        self.k = np.zeros((L, cap, nKV, d), np.float32)
        self.v = np.zeros((L, cap, nKV, d), np.float32)
        self.n = 0


def step(ids, cache, all_logits):
    S = len(ids)
    pos0 = cache.n
    T = pos0 + S
    pos = np.arange(pos0, T)
    x = emb[np.asarray(ids)]
    mask = np.triu(np.full((S, T), -np.inf, np.float32), k=pos0 + 1)
    for l, ly in enumerate(layers):
        h = rms(x, ly["ln1"])
        qkv = h @ ly["qkv"].T
        q = rope(qkv[:, : nH * d].reshape(S, nH, d), pos)
        k = rope(qkv[:, nH * d : (nH + nKV) * d].reshape(S, nKV, d), pos)
        cache.k[l, pos0:T] = k
        cache.v[l, pos0:T] = qkv[:, (nH + nKV) * d :].reshape(S, nKV, d)
        K = cache.k[l, :T].transpose(1, 2, 0)  # [nKV, d, T]
        Vv = cache.v[l, :T].transpose(1, 0, 2)  # [nKV, T, d]
        qg = q.reshape(S, nKV, group, d).transpose(1, 0, 2, 3).reshape(nKV, S * group, d)
        sc = (qg @ K).reshape(nKV, S, group, T) * np.float32(d ** -0.5) + mask[None, :, None, :]
        sc = np.exp(sc - sc.max(axis=-1, keepdims=True))
        sc /= sc.sum(axis=-1, keepdims=True)
        ctx = (sc.reshape(nKV, S * group, T) @ Vv).reshape(nKV, S, group, d).transpose(1, 0, 2, 3).reshape(S, nH * d)
        x = x + ctx @ ly["o"].T
        h = rms(x, ly["ln2"])
        g = h @ ly["gate"].T
        x = x + ((g / (1.0 + np.exp(-g))) * (h @ ly["up"].T)) @ ly["down"].T
    cache.n = T
    if not all_logits:
        x = x[-1:]
    return rms(x, norm_f) @ lm_head.T


def blas_info():
    try:
        from threadpoolctl import threadpool_info

        return {"via": "threadpoolctl", "pools": [{k: p.get(k) for k in ("internal_api", "version", "architecture", "num_threads")} for p in threadpool_info()]}
    except ImportError:
        pass
    info = {"via": "ctypes (threadpoolctl not installed)", "build": np.show_config(mode="dicts")["Build Dependencies"]["blas"].get("openblas configuration")}
    libs = glob.glob(os.path.join(os.path.dirname(np.__file__), "..", "numpy.libs", "libscipy_openblas*"))
    if libs:
        lib = ctypes.CDLL(libs[0])
        for sym, key in (("scipy_openblas_get_corename64_", "architecture"), ("scipy_openblas_get_config64_", "config")):
            fn = getattr(lib, sym, None)
            if fn is not None:
                fn.restype = ctypes.c_char_p
                info[key] = fn().decode()
        fn = getattr(lib, "scipy_openblas_get_num_threads64_", None)
        if fn is not None:
            info["num_threads"] = fn()
    return info


ids = [int(t) for t in args.ids.split(",")]
dec = [int(t) for t in args.decode_ids.split(",") if t]
cap = len(ids) + len(dec)
step(ids[:8], Cache(cap), True)  # warm-up
best = float("inf")
for _ in range(args.reps):
    c = Cache(cap)
    t = time.perf_counter()
    logits = step(ids, c, True)
    best = min(best, time.perf_counter() - t)
res = {"prefill_s": best, "prefill_tok_s": len(ids) / best, "P": len(ids)}
if args.out:
    np.ascontiguousarray(logits, dtype="<f4").tofile(args.out)
if dec:
    c = Cache(cap)
    step(ids, c, False)
    t = time.perf_counter()
    for tok in dec:
        last = step([tok], c, False)
    el = time.perf_counter() - t
    res.update({"decode_s": el, "decode_tok_s": len(dec) / el, "N": len(dec)})
    if args.out_decode:
        np.ascontiguousarray(last[0], dtype="<f4").tofile(args.out_decode)
res["numpy"] = np.__version__
res["blas"] = blas_info()
res["env"] = {k: os.environ.get(k) for k in ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")}
print(json.dumps(res))
