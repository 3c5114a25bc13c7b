"""A model's inputs for a set of examples: one tensor per model input, the first axis the examples.

The fine-tune and the objective take a batch as ``module(*inputs.args)``, so a model with several inputs (token
ids and an attention mask) trains and scores like one with a single image input.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Inputs:
    args: tuple  # one tensor per model input, in the model's input order

    def __len__(self) -> int:
        return len(self.args[0])

    def __getitem__(self, index) -> "Inputs":
        return Inputs(tuple(t[index] for t in self.args))

    def to(self, device) -> "Inputs":
        return Inputs(tuple(t.to(device) for t in self.args))

    def split(self, size: int) -> list["Inputs"]:
        return [Inputs(parts) for parts in zip(*(t.split(size) for t in self.args))]

    @property
    def example_size(self) -> int:
        """Values per example, all inputs together (what bounds a batch's memory)."""
        return sum(t[0].numel() for t in self.args)

    @property
    def device(self) -> torch.device:
        return self.args[0].device


def as_inputs(x: "torch.Tensor | Inputs") -> Inputs:
    """A tensor (a single-input model's examples) or ``Inputs`` as ``Inputs``."""
    return x if isinstance(x, Inputs) else Inputs((x,))
