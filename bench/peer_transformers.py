"""Peer measurement for bench/engine.ts (not part of the product): PyTorch + transformers on the
same GPU, same Llama-3-8B shape (random bf16 weights), batch 1, 128-token prompt, greedy.

  eager:    model.generate (dynamic cache); decode tokens/s = (N - 1) / (t(N new) - t(1 new)),
            so prefill is excluded, as in the engine's number.
  compile:  a static KV cache and a torch.compile'd one-token step (fixed shapes: compiled once),
            timed over N steps after warm-up. mode "default" by default ("reduce-overhead" is known
            to fail with transformers 5.17's generate; max-autotune takes minutes to compile).
Prints one JSON line.
"""
import argparse
import json
import time

import torch
from transformers import LlamaConfig, LlamaForCausalLM

ap = argparse.ArgumentParser()
ap.add_argument("--layers", type=int, default=32)
ap.add_argument("--new", type=int, default=64)
ap.add_argument("--compile-mode", default="default")
args = ap.parse_args()

cfg = LlamaConfig(hidden_size=4096, intermediate_size=14336, num_hidden_layers=args.layers, num_attention_heads=32,
                  num_key_value_heads=8, vocab_size=128256, max_position_embeddings=8192, rope_theta=500000.0,
                  rms_norm_eps=1e-5, tie_word_embeddings=False)
torch.manual_seed(0)
t0 = time.time()
with torch.device("cuda"):
    model = LlamaForCausalLM(cfg).to(torch.bfloat16).eval()
res = {"load_s": time.time() - t0}
ids = torch.randint(0, 128256, (1, 128), device="cuda")


def gen(n):
    torch.cuda.synchronize()
    t = time.time()
    with torch.inference_mode():
        out = model.generate(ids, max_new_tokens=n, min_new_tokens=n, do_sample=False)
    torch.cuda.synchronize()
    assert out.shape[1] == 128 + n
    return time.time() - t


gen(4)
t1 = min(gen(1) for _ in range(2))
tn = gen(args.new)
res["eager_tok_s"] = (args.new - 1) / (tn - t1)


def make_cache(length):
    from transformers import StaticCache
    for kw in ({"config": cfg, "max_cache_len": length},
               {"config": cfg, "max_batch_size": 1, "max_cache_len": length, "device": "cuda", "dtype": torch.bfloat16}):
        try:
            return StaticCache(**kw)
        except TypeError:
            continue
    raise RuntimeError("no StaticCache signature matched")


try:
    warm, n = 4, args.new
    cache = make_cache(128 + warm + n + 8)
    with torch.inference_mode():
        out = model(input_ids=ids, cache_position=torch.arange(128, device="cuda"), past_key_values=cache, use_cache=True)
        tok = out.logits[:, -1:].argmax(-1)

        def step(tok, pos):
            return model(input_ids=tok, cache_position=pos, past_key_values=cache, use_cache=True).logits[:, -1:].argmax(-1)

        cstep = torch.compile(step, mode=args.compile_mode)
        t0 = time.time()
        for i in range(warm):
            tok = cstep(tok, torch.tensor([128 + i], device="cuda"))
        torch.cuda.synchronize()
        res["compile_warmup_s"] = time.time() - t0
        positions = [torch.tensor([128 + warm + i], device="cuda") for i in range(n)]
        torch.cuda.synchronize()
        t0 = time.time()
        for p in positions:
            tok = cstep(tok, p)
        torch.cuda.synchronize()
        res["compile_static_tok_s"] = n / (time.time() - t0)
        res["compile_mode"] = args.compile_mode
except Exception as e:  # report, do not hide
    res["compile_error"] = repr(e)[-500:]
print(json.dumps(res))
