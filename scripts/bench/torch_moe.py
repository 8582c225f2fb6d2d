"""The PyTorch peer of `switchyard bench moe-layer`: reads the case list (JSON) on stdin and
times one MoE layer forward+backward per case, written the way a careful PyTorch user would
on the CPU: router linear + softmax + topk, tokens sorted by expert (stable argsort), one
gate/up-fused matmul pair per expert over its slice, weighted index_add back, plus the
shared SwiGLU. Prints one JSON line per case with the median milliseconds."""
import statistics
import time

import torch
import torch.nn.functional as F

import peer


class MoeLayer:
    def __init__(self, case, g):
        c, e, f, shared = case["hidden"], case["experts"], case["ffn"], case["shared_ffn"]
        self.k, self.e, self.pre_softmax = case["top_k"], e, case["pre_softmax"]

        def param(*shape):
            return (torch.randn(*shape, generator=g) * 0.02).requires_grad_(True)

        self.router = param(e, c)
        self.w1 = param(e, c, 2 * f)  # gate and up fused: [:, :, :F] gate, [:, :, F:] up
        self.w2 = param(e, f, c)
        self.params = [self.router, self.w1, self.w2]
        self.shared = None
        if shared > 0:
            self.shared = (param(shared, c), param(shared, c), param(c, shared))
            self.params += list(self.shared)

    def route(self, flat):
        """-> routing weights (N, K) and chosen experts (N, K) of the tokens flat (N, C)."""
        logits = F.linear(flat, self.router)
        if self.pre_softmax:
            return torch.softmax(logits, dim=-1).topk(self.k, dim=-1)
        top_logits, experts = logits.topk(self.k, dim=-1)
        return torch.softmax(top_logits, dim=-1), experts

    def routed_experts(self, flat, weights, experts):
        """sum over the K chosen experts of weight * SwiGLU expert, (N, C)."""
        flat_experts = experts.reshape(-1)
        order = torch.argsort(flat_experts, stable=True)
        counts = torch.bincount(flat_experts, minlength=self.e).tolist()
        tokens = order // self.k
        routed = flat.index_select(0, tokens)
        # unbind, not w1[e]: the backward of E selects would add E full-size zero gradients.
        w1, w2 = self.w1.unbind(0), self.w2.unbind(0)
        outs = []
        for e, rows in enumerate(routed.split(counts)):
            gate, up = (rows @ w1[e]).chunk(2, dim=-1)
            outs.append((F.silu(gate) * up) @ w2[e])
        y = torch.cat(outs) * weights.reshape(-1)[order].unsqueeze(1)
        return torch.zeros_like(flat).index_add(0, tokens, y)

    def shared_experts(self, flat):
        gate, up, down = self.shared
        return F.linear(F.silu(F.linear(flat, gate)) * F.linear(flat, up), down)

    def forward(self, x):
        flat = x.reshape(-1, x.shape[-1])
        out = self.routed_experts(flat, *self.route(flat))
        if self.shared is not None:
            out = out + self.shared_experts(flat)
        return out.view_as(x)


def time_case(case, warmup, repeats):
    g = torch.Generator().manual_seed(0)
    layer = MoeLayer(case, g)
    x = torch.randn(case["batch"], case["tokens"] // case["batch"], case["hidden"], generator=g).requires_grad_(True)
    samples = []
    for i in range(warmup + repeats):
        for leaf in [x] + layer.params:
            leaf.grad = None
        start = time.perf_counter()
        out = layer.forward(x)
        out.backward(torch.ones_like(out))
        elapsed = time.perf_counter() - start
        if i >= warmup:
            samples.append(elapsed * 1e3)
    assert x.grad is not None and all(p.grad is not None for p in layer.params)
    return statistics.median(samples)


if __name__ == "__main__":
    peer.serve(time_case)
