"""Query oracles: a model seen only through its outputs (score access) or its top-1 label (decision access).

A query threat hands its attack an oracle instead of the model, so an attack that tries to differentiate it
fails loudly instead of silently receiving gradients the threat does not grant.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustgrid.core import RobustgridError


class ScoreOracle(nn.Module):
    """The wrapped model's outputs (logits, score maps, quality scores), computed under no_grad, and nothing else.

    ``queries`` counts the images it answered, an independent check of what a query attack reports.
    """

    access = "score"

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.queries = 0

    def forward(self, x: Tensor) -> Tensor:
        if x.requires_grad:
            raise RobustgridError(f"a {self.access} oracle answers queries, not gradients: pass images that do not "
                                  "require grad (use an attack with score or decision access)")
        with torch.no_grad():
            out = self.model(x)
        self.queries += len(x)
        return self.reveal(out)

    def reveal(self, outputs: Tensor) -> Tensor:
        """What the attack may see of the model's outputs: all of them here."""
        return outputs


class DecisionOracle(ScoreOracle):
    """Only the top-1 label of a classifier, as a one-hot row per image (so task success still reads argmax)."""

    access = "decision"

    def reveal(self, outputs: Tensor) -> Tensor:
        if outputs.dim() != 2:
            raise RobustgridError(f"a decision oracle needs class logits of shape (N, classes), got "
                                  f"{tuple(outputs.shape)}")
        return F.one_hot(outputs.argmax(1), outputs.shape[1]).to(outputs.dtype)
