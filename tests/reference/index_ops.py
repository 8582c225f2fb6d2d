"""Index and shape ops and the gradients of sum(out * upstream). `op` picks the op (codes as
in tests/core/index_test.cc); ties in sort use torch's stable sort."""
import torch
from torch_io import cases

SORT, TOPK, GATHER, SCATTER_ADD, INDEX_SELECT, INDEX_ADD, CUMSUM, CAT, COUNT = range(9)

for case in cases():
    op, dim = int(case.scalar("op")), int(case.scalar("dim"))
    x = case.load("x", requires_grad=op != COUNT)
    other = case.load("other", requires_grad=True) if case.has("other") else None
    index = case.load("index") if case.has("index") else None
    if op == SORT:
        y, indices = torch.sort(x, dim=dim, descending=bool(case.scalar("flag")), stable=True)
        case.save("indices", indices)
    elif op == TOPK:
        y, indices = torch.topk(x, int(case.scalar("k")), dim=dim, largest=bool(case.scalar("flag")))
        case.save("indices", indices)
    elif op == GATHER:
        y = torch.gather(x, dim, index)
    elif op == SCATTER_ADD:
        y = torch.scatter_add(x, dim, index, other)
    elif op == INDEX_SELECT:
        y = torch.index_select(x, dim, index)
    elif op == INDEX_ADD:
        y = torch.index_add(x, dim, index, other, alpha=case.scalar("alpha"))
    elif op == CUMSUM:
        y = torch.cumsum(x, dim)
    elif op == CAT:
        y = torch.cat([x, other, x], dim)
    else:
        values = x.to(torch.int64)
        case.save("bincount", torch.bincount(values.flatten(), minlength=int(case.scalar("k"))))
        case.save("one_hot", torch.nn.functional.one_hot(values, int(case.scalar("k"))))
        continue
    case.save("y", y)
    (y * case.load("upstream")).sum().backward()
    case.save("grad_x", x.grad)
    if other is not None:
        case.save("grad_other", other.grad)
