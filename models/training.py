"""The one supervised training loop of every zoo (classifiers, segmenters, IQA regressors).

AdamW with a one-cycle schedule over seeded shuffles of whole batches; the zoos differ only in the loss,
the batch preparation and the augmentation, which they pass in. Same recipe and seed, same weights.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import torch
from torch import Tensor, nn

from robustgrid.models.zoo import progress_bar


class TrainingRecipe(Protocol):
    """The optimisation fields every zoo recipe carries."""

    epochs: int
    lr: float
    batch_size: int
    weight_decay: float
    seed: int


def fit(module: nn.Module, inputs: Tensor, targets: Tensor, recipe: TrainingRecipe,
        loss: Callable[[Tensor, Tensor], Tensor], *,
        augment: Callable[[Tensor, torch.Generator], Tensor] | None = None,
        prepare: Callable[[Tensor], Tensor] | None = None, pct_start: float = 0.25,
        channels_last: bool = False, progress: bool = True, desc: str = "train") -> nn.Module:
    """Train ``module`` on (inputs, targets) per ``recipe`` and return it in eval mode.

    Each step: the next ``batch_size`` indices of this epoch's permutation (drawn from a generator seeded
    with ``recipe.seed``), ``prepare`` (e.g. uint8 -> float), then ``augment`` (drawing from the same
    generator), then ``loss(module(x), targets[idx])``. A trailing partial batch is dropped.
    """
    gen = torch.Generator().manual_seed(recipe.seed)
    steps = len(inputs) // recipe.batch_size
    opt = torch.optim.AdamW(module.parameters(), lr=recipe.lr, weight_decay=recipe.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=recipe.lr, total_steps=recipe.epochs * steps,
                                                pct_start=pct_start)
    if channels_last:  # ~15 % faster convolutions on CPU for the segmenters
        module = module.to(memory_format=torch.channels_last)
    module.train()
    bar = progress_bar(recipe.epochs * steps, desc, progress)
    for epoch in range(recipe.epochs):
        order = torch.randperm(len(inputs), generator=gen)
        for i in range(steps):
            idx = order[i * recipe.batch_size:(i + 1) * recipe.batch_size]
            x = inputs[idx] if prepare is None else prepare(inputs[idx])
            if augment is not None:
                x = augment(x, gen)
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            value = loss(module(x), targets[idx])
            opt.zero_grad(set_to_none=True)
            value.backward()
            opt.step()
            sched.step()
            bar.update()
            bar.set_postfix(epoch=epoch + 1, loss=f"{value.item():.4f}", refresh=False)
    bar.close()
    if channels_last:
        module = module.to(memory_format=torch.contiguous_format)
    return module.eval()
