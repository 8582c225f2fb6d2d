"""Shared by the PyTorch reference scripts: tensors in and out of the directory that
tests/support/torch_reference.cc passes as argv[1]. One run holds several cases (torch is
imported once); case i's tensors are files named "<i>.<name>.npy"."""
import os
import sys

import numpy as np
import torch

torch.set_default_dtype(torch.float64)
DIRECTORY = sys.argv[1]


class Case:
    def __init__(self, index):
        self.prefix = os.path.join(DIRECTORY, f"{index}.")

    def has(self, name):
        return os.path.exists(self.prefix + name + ".npy")

    def load(self, name, requires_grad=False):
        tensor = torch.from_numpy(np.load(self.prefix + name + ".npy"))
        return tensor.requires_grad_(True) if requires_grad else tensor

    def scalar(self, name):
        return self.load(name).item()

    def save(self, name, tensor):
        np.save(self.prefix + name + ".npy", tensor.detach().numpy())


def cases():
    count = int(np.load(os.path.join(DIRECTORY, "cases.npy")))
    return [Case(index) for index in range(count)]
