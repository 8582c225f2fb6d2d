"""Scaled-dot-product attention written out in torch (1.13 has no SDPA): kv heads repeated
for GQA, an upper-triangular -inf mask when causal; the gradients of sum(out * upstream)."""
import math

import torch
from torch_io import cases

for case in cases():
    q = case.load("q", requires_grad=True)  # (B, H, T, D)
    k = case.load("k", requires_grad=True)  # (B, Hkv, T, D)
    v = case.load("v", requires_grad=True)
    groups = q.shape[1] // k.shape[1]
    scale = case.scalar("scale") or 1.0 / math.sqrt(q.shape[-1])
    k_heads = k.repeat_interleave(groups, dim=1)
    v_heads = v.repeat_interleave(groups, dim=1)
    scores = q @ k_heads.transpose(-1, -2) * scale
    if case.scalar("causal"):
        T = q.shape[2]
        future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
        scores = scores.masked_fill(future, float("-inf"))
    out = torch.softmax(scores, dim=-1) @ v_heads
    (out * case.load("upstream")).sum().backward()
    case.save("out", out)
    case.save("grad_q", q.grad)
    case.save("grad_k", k.grad)
    case.save("grad_v", v.grad)
