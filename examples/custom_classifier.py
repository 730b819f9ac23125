"""A user's own classifier, two ways: registered by name with ``register_target``, and as a plain function that
a config names as ``python:custom_classifier:logit_ensemble`` (it returns an ``nn.Module``)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from robustgrid.models import Target, register_target
from robustgrid.models.zoo import zoo_target


class LogitEnsemble(nn.Module):
    """The mean logits of several classifiers: one model to attack, white-box or by transfer."""

    def __init__(self, *members: nn.Module) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)

    def forward(self, x: Tensor) -> Tensor:
        return torch.stack([m(x) for m in self.members]).mean(0)


def logit_ensemble(members: tuple[str, ...] = ("fmnist-resnet", "fmnist-mobilenet")) -> nn.Module:
    """The Fashion-MNIST zoo members averaged; a config gives task and input_shape beside the name."""
    return LogitEnsemble(*(zoo_target(name).module for name in members))


@register_target("fmnist-ensemble", task="classification")
def fmnist_ensemble() -> Target:
    """Mean logits of the zoo's ResNet and MobileNet (a plugin's own registered target)."""
    return Target(name="fmnist-ensemble", task="classification", module=logit_ensemble(), input_shape=(1, 28, 28),
                  num_classes=10, provenance={"source": "examples/custom_classifier.py"})
