"""torch.nn.functional.cross_entropy with ignore_index, label_smoothing and a reduction
(0 mean, 1 sum, 2 none); the gradient of sum(loss * upstream)."""
import torch.nn.functional as F
from torch_io import cases

for case in cases():
    logits = case.load("logits", requires_grad=True)
    reduction = ["mean", "sum", "none"][int(case.scalar("reduction"))]
    loss = F.cross_entropy(logits, case.load("targets"), ignore_index=int(case.scalar("ignore_index")),
                           label_smoothing=case.scalar("label_smoothing"), reduction=reduction)
    (loss * case.load("upstream")).sum().backward()
    case.save("loss", loss)
    case.save("grad_logits", logits.grad)
