"""torch.nn.functional.layer_norm over the last dim, with or without bias."""
import torch.nn.functional as F
from torch_io import cases

for case in cases():
    x = case.load("x", requires_grad=True)
    weight = case.load("weight", requires_grad=True)
    bias = case.load("bias", requires_grad=True) if case.has("bias") else None
    y = F.layer_norm(x, (x.shape[-1],), weight, bias, case.scalar("eps"))
    (y * case.load("upstream")).sum().backward()
    case.save("y", y)
    case.save("grad_x", x.grad)
    case.save("grad_weight", weight.grad)
    if bias is not None:
        case.save("grad_bias", bias.grad)
