"""The optimizer, schedule and clipping references: torch.optim.AdamW / SGD run in f32 on the same
parameters and per-step gradients (parameters of rank < 2 in a param group without weight decay),
SequentialLR chains of LinearLR / CosineAnnealingLR / ConstantLR, and clip_grad_norm_ in f64.
Each case's "kind" says which: 0 AdamW, 1 SGD, 2 schedule, 3 clipping."""
import warnings

import torch
from torch_io import cases

# SequentialLR steps its later schedulers with an explicit epoch, which warns in torch 1.13.
warnings.filterwarnings("ignore", category=UserWarning)


def parameters_and_grads(case):
    count = int(case.scalar("count"))
    params = [torch.nn.Parameter(case.load(f"param.{i}").float()) for i in range(count)]
    grads = [case.load(f"grads.{i}").float() for i in range(count)]
    return params, grads


def param_groups(params, weight_decay):
    return [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]


def run_optimizer(case, optimizer, params, grads, state_names):
    lrs = case.load("lrs")
    for step in range(lrs.shape[0]):
        for group in optimizer.param_groups:
            group["lr"] = lrs[step].item()
        for p, g in zip(params, grads):
            p.grad = g[step].clone()
        optimizer.step()
    for i, p in enumerate(params):
        case.save(f"param.{i}", p.double())
        for ours, theirs in state_names.items():
            case.save(f"{ours}.{i}", optimizer.state[p][theirs].double())


def adamw(case):
    params, grads = parameters_and_grads(case)
    optimizer = torch.optim.AdamW(param_groups(params, case.scalar("weight_decay")), lr=0.0,
                                  betas=(case.scalar("beta1"), case.scalar("beta2")),
                                  eps=case.scalar("eps"), foreach=False)
    run_optimizer(case, optimizer, params, grads, {"exp_avg": "exp_avg", "exp_avg_sq": "exp_avg_sq"})


def sgd(case):
    params, grads = parameters_and_grads(case)
    optimizer = torch.optim.SGD(param_groups(params, case.scalar("weight_decay")), lr=0.0,
                                momentum=case.scalar("momentum"), dampening=0.0, nesterov=False,
                                foreach=False)
    run_optimizer(case, optimizer, params, grads, {"momentum": "momentum_buffer"})


def schedule(case):
    """type 0: warmup + cosine, 1: warmup + WSD, 2: warmup + constant."""
    kind = int(case.scalar("type"))
    lr, ratio = case.scalar("lr"), case.scalar("min_lr_ratio")
    warmup, total = int(case.scalar("warmup")), int(case.scalar("total"))
    optimizer = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=lr)
    lr_scheduler = torch.optim.lr_scheduler
    schedulers, milestones = [], []
    if warmup > 0:
        # factor (step + 1) / warmup for step < warmup
        schedulers.append(lr_scheduler.LinearLR(optimizer, start_factor=1.0 / warmup, end_factor=1.0,
                                                total_iters=warmup - 1))
        milestones.append(warmup)
    if kind == 0:
        schedulers.append(lr_scheduler.CosineAnnealingLR(optimizer, T_max=total - warmup - 1,
                                                         eta_min=ratio * lr))
    elif kind == 1:
        decay_steps = int(round(case.scalar("decay_fraction") * total))
        schedulers.append(lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0))
        schedulers.append(lr_scheduler.LinearLR(optimizer, start_factor=1.0, end_factor=ratio,
                                                total_iters=decay_steps - 1))
        milestones.append(total - decay_steps)
    else:
        schedulers.append(lr_scheduler.ConstantLR(optimizer, factor=1.0, total_iters=0))
    scheduler = (schedulers[0] if len(schedulers) == 1
                 else lr_scheduler.SequentialLR(optimizer, schedulers, milestones=milestones))
    lrs = []
    for _ in range(total):
        lrs.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    case.save("lrs", torch.tensor(lrs, dtype=torch.float64))


def clip(case):
    count = int(case.scalar("count"))
    params = [torch.nn.Parameter(torch.zeros_like(case.load(f"grad.{i}"))) for i in range(count)]
    for i, p in enumerate(params):
        p.grad = case.load(f"grad.{i}").clone()
    norm = torch.nn.utils.clip_grad_norm_(params, case.scalar("max_norm"))
    case.save("norm", norm)
    for i, p in enumerate(params):
        case.save(f"grad.{i}", p.grad)


for case in cases():
    [adamw, sgd, schedule, clip][int(case.scalar("kind"))](case)
