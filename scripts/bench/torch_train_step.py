"""The PyTorch peer of `switchyard bench train-step`: reads the case list (JSON) on stdin and
times one training step (forward + loss, backward, gradient clipping, AdamW) of the model the
case's config describes, on the case's tokens and with Switchyard's initial weights (read from
the case's safetensors file by Hugging Face style name). Written as a careful PyTorch 1.13 user
would on the CPU: f32, F.linear, attention as matmul + masked softmax (1.13 has no
scaled_dot_product_attention), the MoE layer of torch_moe.py (sorted dispatch, one matmul pair
per expert) with the router and balancing losses the config enables, torch.optim.AdamW with
foreach. The peer derives every parameter's name and shape from the config on its own and
checks them against the file, so the parameter count it reports is its own.
Also times a 1024^3 f32 matmul ("matmul" cases), the peak the MFU is measured against."""
import json
import math
import statistics
import struct
import time

import torch
import torch.nn.functional as F
import torch.utils.checkpoint

import peer
import torch_moe


def read_safetensors(path):
    """name -> f32 tensor, from the format: 8-byte little-endian header length, JSON header, data."""
    with open(path, "rb") as f:
        data = f.read()
    (length,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8:8 + length])
    body = data[8 + length:]
    tensors = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        assert info["dtype"] == "F32", f"{path}: {name} is {info['dtype']}, expected F32"
        begin, end = info["data_offsets"]
        tensors[name] = torch.frombuffer(bytearray(body[begin:end]), dtype=torch.float32).reshape(info["shape"])
    return tensors


def is_moe_layer(cfg, layer):
    first, every = cfg["first_k_dense_layers"], cfg["moe_layer_frequency"]
    return cfg["moe"]["num_experts"] > 0 and layer >= first and (layer - first) % every == 0


def parameter_shapes(cfg):
    """Every parameter's name and shape, from the config alone."""
    C, V, H, Hkv, L = cfg["hidden_size"], cfg["vocab_size"], cfg["num_heads"], cfg["num_kv_heads"], cfg["num_layers"]
    D, moe = C // H, cfg["moe"]
    shapes = {"embed_tokens.weight": (V, C)}
    for layer in range(L):
        p = f"layers.{layer}."
        shapes[p + "input_layernorm.weight"] = (C,)
        shapes[p + "self_attn.q_proj.weight"] = (H * D, C)
        shapes[p + "self_attn.k_proj.weight"] = (Hkv * D, C)
        shapes[p + "self_attn.v_proj.weight"] = (Hkv * D, C)
        shapes[p + "self_attn.o_proj.weight"] = (C, H * D)
        shapes[p + "post_attention_layernorm.weight"] = (C,)
        m = p + "mlp."
        if is_moe_layer(cfg, layer):
            E, Fe = moe["num_experts"], moe["expert_ffn_size"]
            shapes[m + "gate.weight"] = (E, C)
            shapes[m + "experts.w1"] = (E, C, 2 * Fe)
            shapes[m + "experts.w2"] = (E, Fe, C)
            if moe["num_shared_experts"] > 0:
                S = moe["num_shared_experts"] * moe["shared_expert_ffn_size"]
                shapes[m + "shared_experts.gate_proj.weight"] = (S, C)
                shapes[m + "shared_experts.up_proj.weight"] = (S, C)
                shapes[m + "shared_experts.down_proj.weight"] = (C, S)
                if moe["shared_expert_gate"]:
                    shapes[m + "shared_expert_gate.weight"] = (1, C)
        else:
            shapes[m + "gate_proj.weight"] = (cfg["ffn_size"], C)
            shapes[m + "up_proj.weight"] = (cfg["ffn_size"], C)
            shapes[m + "down_proj.weight"] = (C, cfg["ffn_size"])
    shapes["norm.weight"] = (C,)
    if not cfg["tie_embeddings"]:
        shapes["lm_head.weight"] = (V, C)
    return shapes


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


class MoeLayer(torch_moe.MoeLayer):
    """torch_moe's layer (its dispatch and experts) with the full router of the config and the
    balancing losses; parameters come from the model's dict instead of a generator."""

    def __init__(self, params, prefix, moe):
        self.moe, self.k, self.e = moe, moe["top_k"], moe["num_experts"]
        self.pre_softmax = moe["pre_softmax"]
        self.router, self.w1, self.w2 = params[prefix + "gate.weight"], params[prefix + "experts.w1"], params[prefix + "experts.w2"]
        self.shared = None
        if moe["num_shared_experts"] > 0:
            s = prefix + "shared_experts."
            self.shared = tuple(params[s + n + ".weight"] for n in ("gate_proj", "up_proj", "down_proj"))
        self.shared_gate = params.get(prefix + "shared_expert_gate.weight")
        self.bias = torch.zeros(self.e) if moe["expert_bias"] else None
        self.step_counts = None

    def select(self, logits):
        """-> aux-loss scores (N, E) (None when no balancing loss needs them), routing weights
        (N, K), experts (N, K); the conventions of moe/router.h."""
        moe, N = self.moe, logits.shape[0]
        sigmoid = moe["score_function"] == "sigmoid"
        softmax_first = sigmoid or self.pre_softmax
        needs_scores = any(moe[key] > 0 for key in
                           ("load_balance_coeff", "global_load_balance_coeff", "sequence_load_balance_coeff"))
        probs = None
        if softmax_first or needs_scores:
            probs = torch.sigmoid(logits) if sigmoid else torch.softmax(logits, dim=-1)
        if self.bias is None and moe["num_groups"] == 1:
            if softmax_first:
                weights, experts = probs.topk(self.k, dim=-1)
            else:
                top_logits, experts = logits.topk(self.k, dim=-1)
                weights = torch.softmax(top_logits, dim=-1)
        else:
            with torch.no_grad():
                selection = probs if softmax_first else logits
                if self.bias is not None:
                    selection = selection + self.bias
                groups = moe["num_groups"]
                if groups > 1:
                    grouped = selection.view(N, groups, self.e // groups)
                    group_scores = grouped.topk(min(2, self.e // groups), dim=-1).values.sum(-1)
                    best = group_scores.topk(moe["group_topk"], dim=-1).indices
                    keep = torch.zeros(N, groups, dtype=torch.bool).scatter_(1, best, True)
                    selection = grouped.masked_fill(~keep.unsqueeze(-1), float("-inf")).view(N, self.e)
                experts = selection.topk(self.k, dim=-1).indices
            weights = probs.gather(1, experts) if softmax_first else torch.softmax(logits.gather(1, experts), dim=-1)
        if sigmoid:
            weights = weights / (weights.sum(-1, keepdim=True) + 1e-20)
        elif self.pre_softmax and moe["renormalize"]:
            weights = weights / weights.sum(-1, keepdim=True)
        if moe["routing_scale"] != 1.0:
            weights = weights * moe["routing_scale"]
        scores = probs / (probs.sum(-1, keepdim=True) + 1e-20) if sigmoid and needs_scores else probs
        return scores, weights, experts

    def aux_losses(self, logits, scores, experts, batch):
        """The balancing losses the config enables, coefficients applied (moe/aux_losses.h)."""
        moe = self.moe
        N, E, K = scores.shape[0], self.e, self.k
        losses = []
        if moe["load_balance_coeff"] > 0 or moe["global_load_balance_coeff"] > 0:
            # One micro-batch per step: the step's counts (global scope) are this micro-batch's.
            balance = E * (self.step_counts.to(scores.dtype) / (N * K) * scores.mean(0)).sum()
            for coeff in (moe["load_balance_coeff"], moe["global_load_balance_coeff"]):
                if coeff > 0:
                    losses.append(coeff * balance)
        if moe["sequence_load_balance_coeff"] > 0:
            T = N // batch
            counts = torch.zeros(batch, E).scatter_add_(1, experts.reshape(batch, T * K), torch.ones(batch, T * K))
            per_sequence = (counts / (T * K) * scores.view(batch, T, E).mean(1)).sum() * (E / batch)
            losses.append(moe["sequence_load_balance_coeff"] * per_sequence)
        if moe["z_loss_coeff"] > 0:
            losses.append(moe["z_loss_coeff"] * torch.logsumexp(logits, dim=-1).pow(2).mean())
        return losses

    def forward(self, x):
        """x (B, T, C) -> (B, T, C) and the list of this layer's balancing losses."""
        flat = x.reshape(-1, x.shape[-1])
        logits = F.linear(flat, self.router)
        scores, weights, experts = self.select(logits)
        self.step_counts = torch.bincount(experts.reshape(-1), minlength=self.e)
        out = self.routed_experts(flat, weights, experts)
        if self.shared is not None:
            shared = self.shared_experts(flat)
            if self.shared_gate is not None:
                shared = torch.sigmoid(F.linear(flat, self.shared_gate)) * shared
            out = out + shared
        return out.view_as(x), self.aux_losses(logits, scores, experts, x.shape[0])

    @torch.no_grad()
    def update_expert_bias(self):
        """Aux-loss-free balancing after the step: bias += rate * sign(mean load - load)."""
        if self.bias is not None:
            load = self.step_counts.float()
            self.bias += self.moe["bias_update_rate"] * torch.sign(load.mean() - load)


class Transformer:
    def __init__(self, cfg, params, T, recompute):
        self.cfg, self.p, self.recompute = cfg, params, recompute
        D = cfg["hidden_size"] // cfg["num_heads"]
        half = D // 2
        frequencies = cfg["rope_theta"] ** (-torch.arange(half, dtype=torch.float64) * 2.0 / D)
        angles = torch.arange(T, dtype=torch.float64)[:, None] * frequencies[None, :]  # (T, D/2)
        self.cos = torch.cat([angles.cos(), angles.cos()], dim=-1).float()  # (T, D)
        self.sin = torch.cat([angles.sin(), angles.sin()], dim=-1).float()
        self.future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
        self.moe = {layer: MoeLayer(params, f"layers.{layer}.mlp.", cfg["moe"])
                    for layer in range(cfg["num_layers"]) if is_moe_layer(cfg, layer)}

    def rotate(self, x):
        """RoPE, rotate-half convention; x (B, heads, T, D)."""
        first, second = x.chunk(2, dim=-1)
        return x * self.cos + torch.cat([-second, first], dim=-1) * self.sin

    def attention(self, x, prefix):
        cfg, p = self.cfg, self.p
        B, T, C = x.shape
        H, Hkv = cfg["num_heads"], cfg["num_kv_heads"]
        D = C // H
        q = F.linear(x, p[prefix + "q_proj.weight"]).view(B, T, H, D).transpose(1, 2)
        k = F.linear(x, p[prefix + "k_proj.weight"]).view(B, T, Hkv, D).transpose(1, 2)
        v = F.linear(x, p[prefix + "v_proj.weight"]).view(B, T, Hkv, D).transpose(1, 2)
        q, k = self.rotate(q) * (1.0 / math.sqrt(D)), self.rotate(k)
        if Hkv != H:
            k, v = k.repeat_interleave(H // Hkv, dim=1), v.repeat_interleave(H // Hkv, dim=1)
        weights = torch.softmax((q @ k.transpose(-1, -2)).masked_fill(self.future, float("-inf")), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(B, T, H * D)
        return F.linear(out, p[prefix + "o_proj.weight"])

    def forward(self, tokens, targets):
        """-> loss (LM loss + balancing losses) and the LM loss."""
        cfg, p, eps = self.cfg, self.p, self.cfg["norm_eps"]
        h = F.embedding(tokens, p["embed_tokens.weight"])
        aux = []
        for layer in range(cfg["num_layers"]):
            prefix = f"layers.{layer}."

            def attention_half(h, prefix=prefix):
                return h + self.attention(rms_norm(h, p[prefix + "input_layernorm.weight"], eps), prefix + "self_attn.")

            def dense_half(h, prefix=prefix):
                x = rms_norm(h, p[prefix + "post_attention_layernorm.weight"], eps)
                m = prefix + "mlp."
                up = F.silu(F.linear(x, p[m + "gate_proj.weight"])) * F.linear(x, p[m + "up_proj.weight"])
                return h + F.linear(up, p[m + "down_proj.weight"])

            def checkpointed(fn, h):
                return torch.utils.checkpoint.checkpoint(fn, h, use_reentrant=False) if self.recompute else fn(h)

            h = checkpointed(attention_half, h)
            if layer in self.moe:
                out, losses = self.moe[layer].forward(rms_norm(h, p[prefix + "post_attention_layernorm.weight"], eps))
                h = h + out
                aux += losses
            else:
                h = checkpointed(dense_half, h)
        h = rms_norm(h, p["norm.weight"], eps)
        logits = F.linear(h, p["embed_tokens.weight"] if cfg["tie_embeddings"] else p["lm_head.weight"])
        lm_loss = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))
        return lm_loss + sum(aux) if aux else lm_loss, lm_loss


def load_parameters(cfg, path):
    """The peer's parameters (its own names and shapes) with the values of Switchyard's file."""
    shapes = parameter_shapes(cfg)
    stored = read_safetensors(path)
    buffers = {name for name in stored if name.endswith(".gate.expert_bias")}
    missing, unexpected = set(shapes) - set(stored), set(stored) - buffers - set(shapes)
    assert not missing and not unexpected, f"peer and Switchyard disagree: missing {sorted(missing)}, unexpected {sorted(unexpected)}"
    for name, shape in shapes.items():
        assert tuple(stored[name].shape) == shape, f"{name}: Switchyard {tuple(stored[name].shape)}, peer {shape}"
    return {name: stored[name].clone().requires_grad_(True) for name in shapes}


def make_adamw(params, opt):
    """AdamW without weight decay on vectors (norms), as optim/optimizer.h; foreach where it exists."""
    groups = [{"params": [t for t in params if t.dim() >= 2], "weight_decay": opt["weight_decay"]},
              {"params": [t for t in params if t.dim() < 2], "weight_decay": 0.0}]
    kwargs = dict(lr=opt["lr"], betas=(opt["beta1"], opt["beta2"]), eps=opt["eps"])
    try:
        return torch.optim.AdamW(groups, foreach=True, **kwargs)
    except TypeError:
        return torch.optim.AdamW(groups, **kwargs)


def time_train_step(case, warmup, repeats):
    cfg, opt = case["model"], case["optimizer"]
    B, T = case["batch"], case["seq_length"]
    tokens = torch.tensor(case["tokens"], dtype=torch.int64).view(B, T + 1)
    inputs, targets = tokens[:, :-1].contiguous(), tokens[:, 1:].contiguous()
    params = load_parameters(cfg, case["weights"])
    model = Transformer(cfg, params, T, case["recompute"])
    parameters = list(params.values())
    optimizer = make_adamw(parameters, opt)
    phases = {"median_ms": [], "forward_ms": [], "backward_ms": [], "optimizer_ms": []}
    first = None
    for i in range(warmup + repeats):
        optimizer.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss, lm_loss = model.forward(inputs, targets)
        forward_end = time.perf_counter()
        loss.backward()
        backward_end = time.perf_counter()
        if opt["grad_clip"] > 0:
            torch.nn.utils.clip_grad_norm_(parameters, opt["grad_clip"])
        optimizer.step()
        for layer in model.moe.values():
            layer.update_expert_bias()
        end = time.perf_counter()
        if first is None:
            first = (loss.item(), lm_loss.item())
        if i >= warmup:
            for key, seconds in (("median_ms", end - start), ("forward_ms", forward_end - start),
                                 ("backward_ms", backward_end - forward_end), ("optimizer_ms", end - backward_end)):
                phases[key].append(seconds * 1e3)
    assert all(t.grad is not None for t in parameters), "a parameter got no gradient"
    result = {key: statistics.median(samples) for key, samples in phases.items()}
    result.update(parameters=sum(t.numel() for t in parameters), first_loss=first[0], first_lm_loss=first[1])
    return result


def time_matmul(case, warmup, repeats):
    g = torch.Generator().manual_seed(0)
    n = case["size"]
    a, b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
    samples = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            start = time.perf_counter()
            a @ b
            if i >= warmup:
                samples.append((time.perf_counter() - start) * 1e3)
    return statistics.median(samples)


def time_case(case, warmup, repeats):
    return time_matmul(case, warmup, repeats) if case["kind"] == "matmul" else time_train_step(case, warmup, repeats)


if __name__ == "__main__":
    peer.serve(time_case)
