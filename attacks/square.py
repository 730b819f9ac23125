"""Square Attack (Andriushchenko et al. 2020): score-based random search over square windows, Linf and L2.

Each query proposes a change of one random square window (two for L2) and keeps it if the task's score
objective rises (classification: the margin, as the paper). Windows and signs are drawn per image, as in the
authors' code; the window size follows the paper's p schedule rescaled to the query budget.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from robustgrid.attacks.query import Oracle, QueryAttack
from robustgrid.attacks.registry import register_attack
from robustgrid.core import check_float
from robustgrid.models.tasks import Task

HALVINGS = (10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000)  # the paper's schedule, in iterations out of 10 000


def rectangles(a: int, b: int) -> Tensor:
    """Unit-L2 (a, b) pattern of concentric rectangles weighted by sum_{k >= ring} 1 / (k + 1)^2 (the paper's)."""
    ci, cj = a // 2, b // 2
    rings = max(ci, cj) + 1
    tail = (1.0 / torch.arange(1, rings + 1, dtype=torch.float32) ** 2).flip(0).cumsum(0).flip(0)
    ring = torch.maximum((torch.arange(a) - ci).abs()[:, None], (torch.arange(b) - cj).abs()[None])
    w = tail[ring]
    return w / w.norm()


def pattern(s: int, gen: torch.Generator) -> Tensor:
    """The L2 update's (s, s) unit-norm pattern: +rectangles on one half, -rectangles on the other, either way."""
    eta = torch.cat([rectangles(s // 2, s), -rectangles(s - s // 2, s)])
    eta = eta / eta.norm()
    eta = eta.to(gen.device)
    return eta.T if bool(torch.rand(1, generator=gen, device=gen.device) > 0.5) else eta


def signs(shape: tuple[int, ...], gen: torch.Generator) -> Tensor:
    """Uniform random +-1 of ``shape``."""
    return torch.randint(0, 2, shape, generator=gen, device=gen.device).float() * 2 - 1


def corners(n: int, s: int, h: int, w: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
    """Per-image top-left corners of an (s, s) window inside (h, w)."""
    return tuple(torch.randint(0, size - s + 1, (n,), generator=gen, device=gen.device) for size in (h, w))


def window_mask(top: Tensor, left: Tensor, s: int, h: int, w: int) -> Tensor:
    """(n, 1, h, w) bool mask of each image's (s, s) window."""
    rows = torch.arange(h, device=top.device)[None] - top[:, None]
    cols = torch.arange(w, device=top.device)[None] - left[:, None]
    return (((rows >= 0) & (rows < s))[:, :, None] & ((cols >= 0) & (cols < s))[:, None, :])[:, None]


def norm(t: Tensor, dims: tuple[int, ...]) -> Tensor:
    """L2 norm over ``dims``, kept for broadcasting."""
    return t.pow(2).sum(dims, keepdim=True).sqrt()


@register_attack("square")
class Square(QueryAttack):
    """Square Attack: score-based random search over square windows, Linf or L2 (Andriushchenko et al. 2020)."""

    name = "square"

    def __init__(self, *, norm: str = "linf", eps: float = 8 / 255, steps: int = 1000, p_init: float = 0.8,
                 task: str | Task = "classification") -> None:
        super().__init__(norm=norm, eps=eps, steps=steps, task=task)
        self.p_init = check_float(self.name, "p_init", p_init, 0.0, 1.0, low_open=True)

    def p(self, i: int) -> float:
        """Share of pixels the window covers at iteration ``i``: p_init halved at the schedule's marks."""
        it = int(i / self.steps * 10000)
        return self.p_init / 2 ** sum(it > mark for mark in HALVINGS)

    def search(self, oracle: Oracle, x0: Tensor, y: Tensor, eps: float, gen: torch.Generator,
               stop: bool) -> None:
        idx = torch.arange(len(x0), device=x0.device)
        x_best = self.start(x0, eps, gen)
        best, fooled = self.evaluate(oracle, x_best, idx, y)
        oracle.keep(idx, x_best)
        i = 0
        while True:
            a = idx[(oracle.left(idx) > 0) & ~(fooled & stop)]
            if not len(a):
                return
            x_new = (self.linf_step if self.norm == "linf" else self.l2_step)(x0[a], x_best[a], eps, self.p(i), gen)
            obj, ok = self.evaluate(oracle, x_new, a, y[a])
            better = obj > best[a]
            a, x_new = a[better], x_new[better]
            best[a], fooled[a], x_best[a] = obj[better], ok[better], x_new
            oracle.keep(a, x_new)
            i += 1

    def start(self, x0: Tensor, eps: float, gen: torch.Generator) -> Tensor:
        """Linf: vertical stripes of +-eps; L2: a 5x5 grid of signed patterns scaled to norm eps."""
        n, c, h, w = x0.shape
        if self.norm == "linf":
            return (x0 + eps * signs((n, c, 1, w), gen)).clamp(0, 1)
        s = h // 5
        delta = torch.zeros_like(x0)
        for top in range((h - 5 * s) // 2, h - s + 1, s):
            for left in range((w - 5 * s) // 2, w - s + 1, s):
                delta[:, :, top:top + s, left:left + s] += pattern(s, gen) * signs((n, c, 1, 1), gen)
        return (x0 + eps * delta / (1e-12 + norm(delta, (1, 2, 3)))).clamp(0, 1)

    def linf_step(self, x0: Tensor, x_best: Tensor, eps: float, p: float, gen: torch.Generator) -> Tensor:
        """Set one random window per image to x0 +- eps (one sign per channel)."""
        n, c, h, w = x0.shape
        s = min(max(round(math.sqrt(p * h * w)), 1), h, w)
        mask = window_mask(*corners(n, s, h, w, gen), s, h, w)
        return torch.where(mask, x0 + eps * signs((n, c, 1, 1), gen), x_best).clamp(0, 1)

    def l2_step(self, x0: Tensor, x_best: Tensor, eps: float, p: float, gen: torch.Generator) -> Tensor:
        """Move one window's mass to a fresh signed pattern, zero a second window, rescale to norm eps."""
        n, c, h, w = x0.shape
        s = max(round(math.sqrt(p * h * w)), 3)
        s = min(s + 1 - s % 2, h, w)
        (t1, l1), (t2, l2) = corners(n, s, h, w, gen), corners(n, s, h, w, gen)
        w1, w2 = window_mask(t1, l1, s, h, w), window_mask(t2, l2, s, h, w)
        delta = x_best - x0
        span = torch.arange(s, device=x0.device)
        fresh = torch.zeros(n, h, w, device=x0.device)
        fresh[torch.arange(n, device=x0.device)[:, None, None], (t1[:, None] + span)[:, :, None],
              (l1[:, None] + span)[:, None, :]] = pattern(s, gen)
        new = fresh[:, None] * signs((n, c, 1, 1), gen) + delta * w1 / (1e-12 + norm(delta * w1, (2, 3)))
        room = (eps ** 2 - norm(delta, (1, 2, 3)) ** 2).clamp_min(0) / c + norm(delta * (w1 | w2), (1, 2, 3)) ** 2
        new = new / (1e-12 + norm(new, (2, 3))) * room.sqrt()
        delta = torch.where(w1, new, torch.where(w2, 0.0, delta))
        return (x0 + eps * delta / (1e-12 + norm(delta, (1, 2, 3)))).clamp(0, 1)
