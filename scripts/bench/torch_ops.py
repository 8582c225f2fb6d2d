"""The PyTorch peer of `switchyard bench ops`: reads the case list (JSON) on stdin, times
each case forward+backward the same way Switchyard does, and prints one JSON line per case
with the median milliseconds. Run by the bench with PyTorch's best CPU setting: OpenBLAS,
tcmalloc preloaded, one thread per core."""
import statistics
import time

import torch
import torch.nn.functional as F

import peer


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def attention(q, k, v):
    heads, kv_heads = q.shape[1], k.shape[1]
    k = k.repeat_interleave(heads // kv_heads, dim=1)
    v = v.repeat_interleave(heads // kv_heads, dim=1)
    scores = q @ k.transpose(-1, -2) / q.shape[-1] ** 0.5
    t = q.shape[2]
    mask = torch.ones(t, t, dtype=torch.bool).triu(1)
    scores = scores.masked_fill(mask, float("-inf"))
    return torch.softmax(scores, dim=-1) @ v


def make_case(case):
    kind, s = case["kind"], case["shape"]
    g = torch.Generator().manual_seed(0)

    def leaf(*shape):
        return torch.randn(*shape, generator=g).requires_grad_(True)

    if kind == "matmul":
        batch, m, k, n = s
        a = leaf(batch, m, k) if batch > 1 else leaf(m, k)
        b = leaf(batch, k, n) if batch > 1 else leaf(k, n)
        return [a, b], lambda: a @ b
    if kind == "softmax":
        x = leaf(*s)
        return [x], lambda: torch.softmax(x, dim=-1)
    if kind == "rms_norm":
        x, w = leaf(*s), leaf(s[-1])
        return [x, w], lambda: rms_norm(x, w, 1e-6)
    if kind == "attention":
        b, h, hkv, t, d = s
        q, k, v = leaf(b, h, t, d), leaf(b, hkv, t, d), leaf(b, hkv, t, d)
        return [q, k, v], lambda: attention(q, k, v)
    if kind == "cross_entropy":
        n, vocab = s
        logits = leaf(n, vocab)
        targets = torch.randint(0, vocab, (n,), generator=g)
        return [logits], lambda: F.cross_entropy(logits, targets)
    raise ValueError(f"unknown bench kind {kind}")


def time_case(case, warmup, repeats):
    leaves, forward = make_case(case)
    samples = []
    for i in range(warmup + repeats):
        for leaf in leaves:
            leaf.grad = None
        start = time.perf_counter()
        out = forward()
        out.backward(torch.ones_like(out))
        elapsed = time.perf_counter() - start
        if i >= warmup:
            samples.append(elapsed * 1e3)
    return statistics.median(samples)


if __name__ == "__main__":
    peer.serve(time_case)
