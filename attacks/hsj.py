"""HopSkipJump (Chen et al. 2020): a minimum-norm attack from top-1 decisions alone, L2 or Linf.

From a random adversarial start it alternates a binary search to the decision boundary, a Monte-Carlo estimate of
the boundary's normal from ``task.success`` of noisy queries, and a geometric step search along it. Thresholds
follow ART 1.20.1 (theta = gamma / sqrt(d) for L2, gamma / d for Linf). Images run in lockstep, each within its
own query budget; with budget eps an image counts as broken only if the adversarial found lies within eps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from robustgrid.attacks.query import Oracle, QueryAttack
from robustgrid.attacks.registry import register_attack
from robustgrid.core import RobustgridError, check_float, check_int
from robustgrid.models.tasks import Task

ROWS = 4096  # noisy queries evaluated in one model call


@register_attack("hsj")
class HopSkipJump(QueryAttack):
    """HopSkipJump: minimum-norm decision-based attack on the top-1 label, L2 or Linf (Chen et al. 2020)."""

    name = "hsj"
    access = "decision"
    minimum_norm = True

    def __init__(self, *, norm: str = "l2", eps: float = 1.0, steps: int = 1000, init_evals: int = 100,
                 max_evals: int = 10000, init_size: int = 100, gamma: float = 0.01,
                 task: str | Task = "classification") -> None:
        super().__init__(norm=norm, eps=eps, steps=steps, task=task)
        if not self.task.success_type:
            raise RobustgridError(f"hsj needs a top-1 decision per image (task classification), "
                                  f"not task {self.task.name!r}")
        self.init_evals = check_int(self.name, "init_evals", init_evals, 1)
        self.max_evals = check_int(self.name, "max_evals", max_evals, self.init_evals)
        self.init_size = check_int(self.name, "init_size", init_size, 1)
        self.gamma = check_float(self.name, "gamma", gamma, 0.0, low_open=True)

    def search(self, oracle: Oracle, x0: Tensor, y: Tensor, eps: float, gen: torch.Generator,
               stop: bool) -> Tensor:
        run, d = Boundary(oracle, x0, y, self), x0[0].numel()
        theta = self.gamma / (math.sqrt(d) if self.norm == "l2" else d)  # the binary searches' threshold
        idx = torch.arange(len(x0), device=x0.device)
        dist = torch.full((len(x0),), math.inf, device=x0.device)
        dist[run.adv(x0, idx)] = 0.0  # already wrong: the clean image is the minimum-norm adversarial
        cur, found = run.start(idx[dist > 0], self.init_size, gen)
        run.record(found, cur, dist)
        t = 0
        while True:
            a = idx[torch.isfinite(dist) & (dist > 0) & (oracle.left(idx) > 0) & ~((dist <= eps) & stop)]
            if not len(a):
                return dist
            # the probes' radius: ART's sqrt(d) theta dist (L2) or d theta dist (Linf), i.e. gamma dist either way
            delta = self.gamma * self.distance(cur[a], x0[a]) if t else torch.full((len(a),), 0.1, device=x0.device)
            cur[a] = run.bisect(cur[a], a, theta, blend=self.norm == "l2")
            run.record(a, cur, dist)
            evals = min(int(self.init_evals * math.sqrt(t + 1)), self.max_evals)
            direction = run.normal(cur[a], a, evals, delta, gen)
            cur[a] = run.jump(cur[a], a, direction, 2 * self.distance(cur[a], x0[a]) / math.sqrt(t + 1))
            run.record(a, cur, dist)
            t += 1


def per_image(t: Tensor, like: Tensor) -> Tensor:
    """A per-image vector shaped to broadcast over ``like``'s NCHW."""
    return t.view(-1, *[1] * (like.dim() - 1))


@dataclass(frozen=True)
class Boundary:
    """One run's decision oracle around the clean images: the searches HopSkipJump is made of."""

    oracle: Oracle
    x0: Tensor
    y: Tensor
    attack: HopSkipJump

    def adv(self, x: Tensor, idx: Tensor) -> Tensor:
        """The top-1 decision alone: whether rows ``x`` (of images ``idx``) are misclassified."""
        return self.attack.task.success(self.oracle(x, idx), self.y[idx])

    def record(self, idx: Tensor, cur: Tensor, dist: Tensor) -> None:
        """Keep ``cur`` as the best adversarial of images ``idx`` where it is closer than their best so far."""
        dn = self.attack.distance(cur[idx], self.x0[idx])
        better = dn < dist[idx]
        dist[idx[better]] = dn[better]
        self.oracle.keep(idx[better], cur[idx[better]])

    def start(self, idx: Tensor, tries: int, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """Uniform noise until adversarial (``tries`` per image), blended to the boundary; and the images that hit."""
        cur, todo = self.x0.clone(), idx
        for _ in range(tries):
            todo = todo[self.oracle.left(todo) > 0]
            if not len(todo):
                break
            noise = torch.rand(self.x0[todo].shape, generator=gen, device=gen.device).to(self.x0)
            ok = self.adv(noise, todo)
            cur[todo[ok]] = noise[ok]
            todo = todo[~ok]
        hit = idx[(cur[idx] != self.x0[idx]).flatten(1).any(1)]
        cur[hit] = self.bisect(cur[hit], hit, 0.001, blend=True)
        return cur, hit

    def interpolate(self, cur: Tensor, idx: Tensor, alpha: Tensor, blend: bool) -> Tensor:
        """Between x0 and ``cur`` at ``alpha``: a blend (L2), or ``cur`` clipped to the Linf ball of radius alpha."""
        x0, alpha = self.x0[idx], per_image(alpha, cur)
        return (1 - alpha) * x0 + alpha * cur if blend else torch.minimum(torch.maximum(cur, x0 - alpha), x0 + alpha)

    def bisect(self, cur: Tensor, idx: Tensor, theta: float, blend: bool) -> Tensor:
        """Binary search from adversarial ``cur`` toward x0 until the bracket is narrower than the threshold."""
        hi = torch.ones(len(cur), device=cur.device) if blend else self.attack.distance(cur, self.x0[idx])
        lo, thr = torch.zeros_like(hi), torch.full_like(hi, theta) if blend else (hi * theta).clamp(max=theta)
        while True:
            go = ((hi - lo) > thr) & (self.oracle.left(idx) > 0)
            if not bool(go.any()):
                return self.interpolate(cur, idx, hi, blend)
            mid = (hi[go] + lo[go]) / 2
            ok = self.adv(self.interpolate(cur[go], idx[go], mid, blend), idx[go])
            hi[go], lo[go] = torch.where(ok, mid, hi[go]), torch.where(ok, lo[go], mid)

    def normal(self, cur: Tensor, idx: Tensor, evals: int, delta: Tensor, gen: torch.Generator) -> Tensor:
        """Monte-Carlo estimate of the boundary normal at ``cur`` from the decisions on ``evals`` noisy copies."""
        counts = self.oracle.left(idx).clamp(max=evals)
        owner = torch.repeat_interleave(torch.arange(len(cur), device=cur.device), counts)
        f_sum = torch.zeros(len(cur), device=cur.device)
        u_sum, fu_sum = torch.zeros_like(cur), torch.zeros_like(cur)
        for rows in owner.split(ROWS):
            c, d = cur[rows], per_image(delta[rows], cur)
            if self.attack.norm == "l2":
                u = torch.randn(c.shape, generator=gen, device=gen.device).to(c)
            else:
                u = torch.rand(c.shape, generator=gen, device=gen.device).to(c) * 2 - 1
            sample = (c + d * u / per_image(u.flatten(1).norm(dim=1), u)).clamp(0, 1)
            u = (sample - c) / d
            f = self.adv(sample, idx[rows]).to(c) * 2 - 1
            f_sum.index_add_(0, rows, f)
            u_sum.index_add_(0, rows, u)
            fu_sum.index_add_(0, rows, per_image(f, u) * u)
        mean_f = per_image(f_sum / counts.clamp(min=1), cur)
        # the decisions centred on their mean (the paper's baseline), unless they all agree
        grad = torch.where(mean_f.abs() == 1, fu_sum, fu_sum - mean_f * u_sum)
        if self.attack.norm == "linf":
            return grad.sign()
        return grad / per_image(grad.flatten(1).norm(dim=1).clamp_min(1e-12), grad)

    def jump(self, cur: Tensor, idx: Tensor, direction: Tensor, step: Tensor) -> Tensor:
        """Geometric step search: halve the step along ``direction`` until the moved image is adversarial."""
        out, pending = cur.clone(), torch.ones(len(cur), dtype=torch.bool, device=cur.device)
        while True:
            go = pending & (self.oracle.left(idx) > 0)
            if not bool(go.any()):
                return out
            step[go] /= 2
            rows = go.nonzero().flatten()
            cand = (cur[rows] + per_image(step[rows], cur) * direction[rows]).clamp(0, 1)
            ok = self.adv(cand, idx[rows])
            out[rows[ok]] = cand[ok]
            pending[rows[ok]] = False
