"""Fixture addition (not part of the product; run on the GPU machine where transformers is): greedy
decoding of test/fixtures/phi3-longrope's 56-token prompt by transformers' model forward with a
DynamicCache, one token per call (no `generate`): every call's RoPE table is chosen by
transformers' `dynamic_rope_update` from that call's positions (long once a position reaches 64),
and the cached keys keep the rotation they were stored with — the semantics TensorRT-LLM's
attention has. Adds `greedy_cached_ids` int32 [1, 72] to reference.safetensors and prints what
`generate` does at the switch (its Phi-3 `prepare_inputs_for_generation`).
  python3 bench/ref_phi3_longrope_decode.py FIXTURE_DIR
"""
import inspect
import json
import sys

import torch
import transformers
from safetensors.torch import load_file, save_file
from transformers import DynamicCache, Phi3ForCausalLM

d = sys.argv[1]
ref = load_file(f"{d}/reference.safetensors")
m = Phi3ForCausalLM.from_pretrained(d, torch_dtype=torch.float32).eval()
prompt = ref["greedy_ids"][:, :56].long()
with torch.no_grad():
    cache = DynamicCache()
    out = m(input_ids=prompt, past_key_values=cache, use_cache=True)
    seq = prompt[0].tolist()
    margins = []
    for i in range(16):
        last = out.logits[0, -1]
        top = torch.topk(last, 2)
        margins.append(float(top.values[0] - top.values[1]))
        t = int(top.indices[0])
        seq.append(t)
        pos = torch.tensor([[len(seq) - 1]])
        out = m(input_ids=torch.tensor([[t]]), past_key_values=out.past_key_values, position_ids=pos, use_cache=True)
    gen = m.generate(prompt, max_new_tokens=16, do_sample=False, min_new_tokens=16)
ref["greedy_cached_ids"] = torch.tensor([seq], dtype=torch.int32)
save_file({k: v.contiguous() for k, v in ref.items()}, f"{d}/reference.safetensors")
src = inspect.getsource(Phi3ForCausalLM.prepare_inputs_for_generation) if "prepare_inputs_for_generation" in Phi3ForCausalLM.__dict__ else "(not overridden)"
print(json.dumps({"transformers": transformers.__version__, "cached": seq[56:], "generate": gen[0, 56:].tolist(),
                  "stored_generate": ref["greedy_ids"][0, 56:].tolist(), "top2_margins": margins}))
print(src)
