"""The MoE transformer written out in PyTorch from its math, in f64, for
tests/moe/model_reference_test.cc. argv[1] is a directory holding config.json,
params.safetensors (Switchyard's parameters and buffers by name) and batch.safetensors
(tokens, targets); this writes outputs.safetensors there: logits, lm_loss, each MoE layer's
aux losses ("aux.<layer>.<name>", coefficients applied) and the gradient of
lm_loss + sum(aux) for every parameter ("grad.<name>").

The model (Llama blocks, Mixtral / Qwen2-MoE / DeepSeek MoE layers):
  h = embed[tokens]; per layer h += attn(rms(h)); h += ffn(rms(h)); logits = rms(h) @ head^T
  attention: RoPE (rotate-half, angle pos * theta^(-2i/D)) on q, k; causal softmax(q k^T/sqrt(D)) v,
    each kv head serving H / Hkv consecutive query heads.
  dense ffn: down(silu(gate(x)) * up(x)).
  MoE ffn: router logits s = x Wg^T; p = softmax(s) or sigmoid(s); selection on p (pre-softmax,
    sigmoid) or s (Mixtral), plus the expert bias; group-limited: keep the group_topk groups with
    the best sum of their top-2 selection values; weights = p at the top-k (renormalized when
    asked; sigmoid always) or softmax over the K chosen logits, times routing_scale. Capacity
    ceil(cf * N * K / E) per expert keeps the highest weights (probs) or earliest tokens
    (position). out = shared(x) [* sigmoid(x wg)] + sum over kept slots w * expert(x), with the
    expert a SwiGLU whose w1 (C, 2F) holds [gate | up] and w2 (F, C).
  aux losses: E * sum_i f_i P_i with f from the routed top-k (before capacity) over the batch
    (micro-batch, global scope) or per sequence, P the mean aux score (softmax(s), or p / sum p
    for sigmoid); z-loss mean(logsumexp(s)^2).
"""
import json
import math
import os
import sys

import numpy as np
import torch
import torch.nn.functional as F

import safetensors_numpy

torch.set_default_dtype(torch.float64)


def rms_norm(x, weight, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight


def rotate(x, theta):
    """x (B, T, H, D) rotated by position."""
    T, D = x.shape[1], x.shape[3]
    half = D // 2
    frequencies = theta ** (-2.0 * torch.arange(half, dtype=torch.float64) / D)
    angles = torch.arange(T, dtype=torch.float64)[:, None] * frequencies[None, :]  # (T, D/2)
    cos, sin = angles.cos()[None, :, None, :], angles.sin()[None, :, None, :]
    first, second = x[..., :half], x[..., half:]
    return torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)


def attention(x, p, prefix, cfg):
    B, T, C = x.shape
    H, Hkv = cfg["num_heads"], cfg["num_kv_heads"]
    D = C // H
    q = (x @ p[prefix + "q_proj.weight"].T).view(B, T, H, D)
    k = (x @ p[prefix + "k_proj.weight"].T).view(B, T, Hkv, D)
    v = (x @ p[prefix + "v_proj.weight"].T).view(B, T, Hkv, D)
    q, k = rotate(q, cfg["rope_theta"]), rotate(k, cfg["rope_theta"])
    q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, heads, T, D)
    k = k.repeat_interleave(H // Hkv, dim=1)
    v = v.repeat_interleave(H // Hkv, dim=1)
    scores = q @ k.transpose(-1, -2) / math.sqrt(D)
    future = torch.ones(T, T, dtype=torch.bool).triu(diagonal=1)
    weights = torch.softmax(scores.masked_fill(future, float("-inf")), dim=-1)
    out = (weights @ v).transpose(1, 2).reshape(B, T, H * D)
    return out @ p[prefix + "o_proj.weight"].T


def swiglu(x, gate, up, down):
    return (F.silu(x @ gate.T) * (x @ up.T)) @ down.T


def route(logits, moe, bias):
    """-> topk indices (N, K), weights (N, K), aux scores (N, E)."""
    N, E = logits.shape
    K = moe["top_k"]
    sigmoid = moe["score_function"] == "sigmoid"
    probs = torch.sigmoid(logits) if sigmoid else torch.softmax(logits, dim=-1)
    with torch.no_grad():
        selection = (probs if (sigmoid or moe["pre_softmax"]) else logits).detach().clone()
        if bias is not None:
            selection = selection + bias
        groups = moe["num_groups"]
        if groups > 1:
            per_group = E // groups
            grouped = selection.view(N, groups, per_group)
            group_score = grouped.topk(min(2, per_group), dim=-1).values.sum(-1)  # (N, groups)
            best = group_score.topk(moe["group_topk"], dim=-1).indices
            keep = torch.zeros(N, groups, dtype=torch.bool)
            keep[torch.arange(N)[:, None], best] = True
            selection = grouped.masked_fill(~keep[:, :, None], float("-inf")).view(N, E)
        indices = selection.topk(K, dim=-1).indices
    if sigmoid or moe["pre_softmax"]:
        weights = probs.gather(1, indices)
        if sigmoid or moe["renormalize"]:
            weights = weights / weights.sum(-1, keepdim=True)
    else:
        weights = torch.softmax(logits.gather(1, indices), dim=-1)
    weights = weights * moe["routing_scale"]
    aux_scores = probs / probs.sum(-1, keepdim=True) if sigmoid else probs
    return indices, weights, aux_scores


def kept_slots(indices, weights, moe):
    """(N, K) bool: which routed slots survive the capacity."""
    N, K = indices.shape
    E = moe["num_experts"]
    keep = torch.ones(N, K, dtype=torch.bool)
    if moe["capacity_factor"] <= 0:
        return keep
    capacity = math.ceil(moe["capacity_factor"] * N * K / E)
    for expert in range(E):
        tokens, ks = (indices == expert).nonzero(as_tuple=True)  # ascending token order
        if len(tokens) <= capacity:
            continue
        if moe["drop_policy"] == "probs":
            # Highest weights first; among equal weights the earlier token.
            order = sorted(range(len(tokens)), key=lambda i: (-weights[tokens[i], ks[i]].item(), tokens[i].item()))
        else:
            order = list(range(len(tokens)))
        for i in order[capacity:]:
            keep[tokens[i], ks[i]] = False
    return keep


def balance(counts, mean_scores, slots):
    E = mean_scores.shape[-1]
    return E * ((counts / slots) * mean_scores).sum()


def moe_layer(x, p, prefix, cfg, B):
    moe = cfg["moe"]
    N, C = x.shape
    E, K = moe["num_experts"], moe["top_k"]
    logits = x @ p[prefix + "gate.weight"].T
    bias = p.get(prefix + "gate.expert_bias") if moe["expert_bias"] else None
    indices, weights, scores = route(logits, moe, None if bias is None else bias.detach())
    keep = kept_slots(indices, weights.detach(), moe)

    w1, w2 = p[prefix + "experts.w1"], p[prefix + "experts.w2"]
    Fe = w2.shape[1]
    out = torch.zeros_like(x)
    for token in range(N):
        for k in range(K):
            if not keep[token, k]:
                continue
            e = indices[token, k]
            hidden = x[token] @ w1[e]  # (2F): gate | up
            expert_out = (F.silu(hidden[:Fe]) * hidden[Fe:]) @ w2[e]
            out = out.index_add(0, torch.tensor([token]), (weights[token, k] * expert_out)[None])
    if moe["num_shared_experts"] > 0:
        s = prefix + "shared_experts."
        shared = swiglu(x, p[s + "gate_proj.weight"], p[s + "up_proj.weight"], p[s + "down_proj.weight"])
        if moe["shared_expert_gate"]:
            shared = shared * torch.sigmoid(x @ p[prefix + "shared_expert_gate.weight"].T)
        out = out + shared

    counts = torch.bincount(indices.reshape(-1), minlength=E).to(torch.float64)
    aux = {}
    if moe["load_balance_coeff"] > 0:
        aux["load_balance_loss"] = moe["load_balance_coeff"] * balance(counts, scores.mean(0), N * K)
    if moe["global_load_balance_coeff"] > 0:
        aux["global_load_balance_loss"] = moe["global_load_balance_coeff"] * balance(counts, scores.mean(0), N * K)
    if moe["sequence_load_balance_coeff"] > 0:
        T = N // B
        per_sequence = []
        for b in range(B):
            rows = slice(b * T, (b + 1) * T)
            seq_counts = torch.bincount(indices[rows].reshape(-1), minlength=E).to(torch.float64)
            per_sequence.append(balance(seq_counts, scores[rows].mean(0), T * K))
        aux["sequence_load_balance_loss"] = moe["sequence_load_balance_coeff"] * torch.stack(per_sequence).mean()
    if moe["z_loss_coeff"] > 0:
        aux["z_loss"] = moe["z_loss_coeff"] * torch.logsumexp(logits, dim=-1).pow(2).mean()
    return out, aux


def is_moe_layer(cfg, layer):
    first, every = cfg["first_k_dense_layers"], cfg["moe_layer_frequency"]
    return cfg["moe"]["num_experts"] > 0 and layer >= first and (layer - first) % every == 0


def main():
    directory = sys.argv[1]
    with open(os.path.join(directory, "config.json")) as f:
        cfg = json.load(f)
    _, stored = safetensors_numpy.read(os.path.join(directory, "params.safetensors"))
    _, batch = safetensors_numpy.read(os.path.join(directory, "batch.safetensors"))
    params = {}
    for name, array in stored.items():
        tensor = torch.from_numpy(array.astype(np.float64))
        params[name] = tensor if name.endswith("expert_bias") else tensor.requires_grad_(True)
    tokens = torch.from_numpy(batch["tokens"].astype(np.int64))
    targets = torch.from_numpy(batch["targets"].astype(np.int64))
    B, T = tokens.shape
    eps = cfg["norm_eps"]

    h = params["embed_tokens.weight"][tokens]  # (B, T, C)
    aux_losses = {}
    for layer in range(cfg["num_layers"]):
        prefix = f"layers.{layer}."
        h = h + attention(rms_norm(h, params[prefix + "input_layernorm.weight"], eps), params,
                          prefix + "self_attn.", cfg)
        x = rms_norm(h, params[prefix + "post_attention_layernorm.weight"], eps)
        if is_moe_layer(cfg, layer):
            out, aux = moe_layer(x.reshape(B * T, -1), params, prefix + "mlp.", cfg, B)
            h = h + out.view(B, T, -1)
            for name, value in aux.items():
                aux_losses[f"aux.{layer}.{name}"] = value
        else:
            m = prefix + "mlp."
            h = h + swiglu(x, params[m + "gate_proj.weight"], params[m + "up_proj.weight"],
                           params[m + "down_proj.weight"])
    h = rms_norm(h, params["norm.weight"], eps)
    head = params["embed_tokens.weight"] if cfg["tie_embeddings"] else params["lm_head.weight"]
    logits = h @ head.T
    lm_loss = F.cross_entropy(logits.reshape(B * T, -1), targets.reshape(-1), ignore_index=-100)
    loss = lm_loss + sum(aux_losses.values())
    loss.backward()

    out = {"logits": logits, "lm_loss": lm_loss, **aux_losses}
    out = {name: value.detach().numpy().astype(np.float64) for name, value in out.items()}
    for name, tensor in params.items():
        if tensor.requires_grad:
            grad = tensor.grad if tensor.grad is not None else torch.zeros_like(tensor)
            out["grad." + name] = grad.numpy()
    safetensors_numpy.write(os.path.join(directory, "outputs.safetensors"), out)


if __name__ == "__main__":
    main()
