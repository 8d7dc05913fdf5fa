"""Fixture generator (not part of the product; run on the GPU machine where transformers is):
a tiny random Phi-3 with LongRoPE (`rope_scaling.type = longrope`, short/long factors,
original_max_position_embeddings 64 < max_position_embeddings 256) saved with save_pretrained, plus
reference.safetensors from transformers' own forward in fp32 over the stored bf16 weights:
  short_ids  int32 [1, 40]    short_logits f32 [1, 40, V]   (40 ≤ 64: short factors)
  long_ids   int32 [1, 100]   long_logits  f32 [1, 100, V]  (100 > 64: long factors for every token)
  greedy_ids int32 [1, 72]    56-token prompt + 16 greedy tokens (dynamic cache; crosses 64 while decoding)
  python3 bench/ref_phi3_longrope.py OUTDIR
"""
import json
import math
import sys

import torch
import transformers
from safetensors.torch import save_file
from transformers import Phi3Config, Phi3ForCausalLM

out = sys.argv[1]
torch.manual_seed(7)
D = 64
short = [1.0 + 0.02 * i for i in range(D // 2)]
long = [1.0 + (30.0 - 1.0) * (i / (D // 2 - 1)) ** 2 for i in range(D // 2)]
cfg = Phi3Config(
    vocab_size=256, hidden_size=128, intermediate_size=384, num_hidden_layers=2, num_attention_heads=2,
    num_key_value_heads=1, max_position_embeddings=256, original_max_position_embeddings=64, rms_norm_eps=1e-5,
    rope_theta=10000.0, rope_scaling={"type": "longrope", "short_factor": short, "long_factor": long},
    bos_token_id=1, eos_token_id=2, pad_token_id=0, tie_word_embeddings=False, initializer_range=0.05,
)
model = Phi3ForCausalLM(cfg).to(torch.bfloat16).eval()
model.save_pretrained(out, safe_serialization=True)
ref = Phi3ForCausalLM.from_pretrained(out, torch_dtype=torch.float32).eval()
g = torch.Generator().manual_seed(3)
short_ids = torch.randint(3, 256, (1, 40), generator=g)
long_ids = torch.randint(3, 256, (1, 100), generator=g)
prompt = torch.randint(3, 256, (1, 56), generator=g)
with torch.no_grad():
    sl = ref(short_ids).logits
    ll = ref(long_ids).logits
    gen = ref.generate(prompt, max_new_tokens=16, do_sample=False, min_new_tokens=16)
save_file({
    "short_ids": short_ids.to(torch.int32).contiguous(), "short_logits": sl.float().contiguous(),
    "long_ids": long_ids.to(torch.int32).contiguous(), "long_logits": ll.float().contiguous(),
    "greedy_ids": gen.to(torch.int32).contiguous(),
}, f"{out}/reference.safetensors")
f = 256 / 64
print(json.dumps({"transformers": transformers.__version__, "attention_factor_expected": math.sqrt(1 + math.log(f) / math.log(64)),
                  "greedy": gen[0, 56:].tolist()}))
