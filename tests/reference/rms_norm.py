"""RMSNorm written out in torch (1.13 has no rms_norm): x * rsqrt(mean(x^2) + eps) * weight."""
import torch
from torch_io import cases

for case in cases():
    x = case.load("x", requires_grad=True)
    weight = case.load("weight", requires_grad=True)
    y = x * torch.rsqrt(x.pow(2).mean(dim=-1, keepdim=True) + case.scalar("eps")) * weight
    (y * case.load("upstream")).sum().backward()
    case.save("y", y)
    case.save("grad_x", x.grad)
    case.save("grad_weight", weight.grad)
