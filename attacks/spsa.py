"""SPSA (Uesato et al. 2018): score-based gradient estimates from random +-1 directions, Adam ascent, projection.

Each iteration spends 2 queries per direction pair (f(x + delta v) and f(x - delta v)) and one to score the new
iterate, which decides the best iterate kept and early stop.
"""

from __future__ import annotations

import torch
from torch import Tensor

from robustgrid.attacks.query import Oracle, QueryAttack
from robustgrid.attacks.registry import register_attack
from robustgrid.core import check_float, check_int
from robustgrid.models.tasks import Task

ROWS = 4096  # images x directions evaluated in one model call (bounds memory on big batches)
BETAS = (0.9, 0.999)  # Adam's, as the paper's


@register_attack("spsa")
class SPSA(QueryAttack):
    """SPSA: finite-difference gradient estimates from random +-1 directions, Adam ascent (Uesato et al. 2018)."""

    name = "spsa"

    def __init__(self, *, norm: str = "linf", eps: float = 8 / 255, steps: int = 1000, samples: int = 64,
                 delta: float = 0.01, lr: float = 0.01, task: str | Task = "classification") -> None:
        super().__init__(norm=norm, eps=eps, steps=steps, task=task)
        self.samples = check_int(self.name, "samples", samples, 1)  # direction pairs per iteration
        self.delta = check_float(self.name, "delta", delta, 0.0, low_open=True)
        self.lr = check_float(self.name, "lr", lr, 0.0, low_open=True)

    def search(self, oracle: Oracle, x0: Tensor, y: Tensor, eps: float, gen: torch.Generator,
               stop: bool) -> None:
        idx = torch.arange(len(x0), device=x0.device)
        best, fooled = self.evaluate(oracle, x0, idx, y)
        oracle.keep(idx, x0)
        x, m, v = x0.clone(), torch.zeros_like(x0), torch.zeros_like(x0)
        (b1, b2), t = BETAS, 0
        while True:
            left = oracle.left(idx)
            a = idx[(left >= 3) & ~(fooled & stop)]  # one pair and the scoring query must fit
            if not len(a):
                return
            grad = self.estimate(oracle, x[a], a, y[a], min(self.samples, int(left[a].min() - 1) // 2), gen)
            t += 1  # every image still running has taken the same number of steps
            m[a] = b1 * m[a] + (1 - b1) * grad
            v[a] = b2 * v[a] + (1 - b2) * grad ** 2
            step = self.lr * (m[a] / (1 - b1 ** t)) / ((v[a] / (1 - b2 ** t)).sqrt() + 1e-8)
            x[a] = self.project(x[a] + step, x0[a], eps)
            obj, ok = self.evaluate(oracle, x[a], a, y[a])
            better = obj > best[a]
            best[a[better]], fooled[a[better]] = obj[better], ok[better]
            oracle.keep(a[better], x[a[better]])

    def estimate(self, oracle: Oracle, x: Tensor, idx: Tensor, y: Tensor, pairs: int,
                 gen: torch.Generator) -> Tensor:
        """Mean over ``pairs`` directions v of (f(x + delta v) - f(x - delta v)) / (2 delta) * v."""
        grad = torch.zeros_like(x)
        chunk = max(1, ROWS // (2 * len(x)))
        for start in range(0, pairs, chunk):
            p = min(chunk, pairs - start)
            v = torch.randint(0, 2, (p, *x.shape), generator=gen, device=gen.device).to(x) * 2 - 1
            rows = torch.cat([x + self.delta * v, x - self.delta * v]).flatten(0, 1).clamp(0, 1)
            f, _ = self.evaluate(oracle, rows, idx.repeat(2 * p), y.repeat(2 * p, *[1] * (y.dim() - 1)))
            f = f.view(2, p, len(x), *[1] * (x.dim() - 1))
            grad += ((f[0] - f[1]) / (2 * self.delta) * v).sum(0)
        return grad / pairs
