"""softmax / log_softmax along `dim` and the gradient of sum(y * upstream)."""
import torch
from torch_io import cases

for case in cases():
    x = case.load("x", requires_grad=True)
    function = torch.log_softmax if case.scalar("log") else torch.softmax
    y = function(x, dim=int(case.scalar("dim")))
    (y * case.load("upstream")).sum().backward()
    case.save("y", y)
    case.save("grad_x", x.grad)
