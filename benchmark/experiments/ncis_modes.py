"""Which NCIS combination restores what Gaussian smoothing removes (METHODS 7.3), and what each costs in accuracy.

Prints, per purifier on Fashion-MNIST test images in front of ``fmnist-resnet``: the mean absolute change of
clean images, the share of GS's removed content put back (1 - |P(x) - x| / |GS(x) - x|), clean accuracy and
accuracy under purifier-blind and adaptive (exact-gradient) PGD at one budget.
Run: ``python -m robustgrid.benchmark.experiments.ncis_modes [--n 200 --eps 0.1 --steps 50]``.
"""

from __future__ import annotations

import argparse

import torch

from robustgrid.attacks import build_attack
from robustgrid.benchmark.experiments import run_main
from robustgrid.defenses import build_defense
from robustgrid.defenses.defended import Defended
from robustgrid.models.data.registry import build_dataset
from robustgrid.models.zoo import zoo_target

PURIFIERS = {
    "gaussian": ("gaussian", {}),
    "ncis bsn x2": ("ncis", {"mode": "bsn", "iterations": 2}),
    "ncis alternate x1": ("ncis", {"mode": "alternate", "iterations": 1}),
    "ncis alternate x2": ("ncis", {"mode": "alternate", "iterations": 2}),
}


def accuracy(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    with torch.no_grad():
        return float((model(x).argmax(1) == y).float().mean())


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--eps", type=float, default=0.1)
    ap.add_argument("--steps", type=int, default=50)
    args = ap.parse_args(argv)
    data = build_dataset("fashion-mnist", "test", size=args.n, seed=0)
    x, y = data.images, data.labels
    model = zoo_target("fmnist-resnet").module
    pgd = build_attack("pgd", eps=args.eps, steps=args.steps, rel_step_size=2.5 / args.steps)
    blind = pgd.run(model, x, y, seed=0).x_adv
    print(f"n={args.n}, eps={args.eps}, PGD {args.steps} steps; bare clean {accuracy(model, x, y):.3f}, "
          f"white-box {accuracy(model, blind, y):.3f}")
    print("| purifier | mean abs change | GS content restored | clean | blind | adaptive |\n|---|---|---|---|---|---|")
    gs = build_defense("gaussian")
    with torch.no_grad():
        removed = float((gs(x) - x).abs().mean())
    for label, (name, params) in PURIFIERS.items():
        purifier = build_defense(name, **({"dataset": "fashion-mnist"} if name == "ncis" else {}), **params)
        defended = Defended(model, purifier).eval()
        with torch.no_grad():
            change = float((purifier(x) - x).abs().mean())
        adaptive = pgd.run(defended, x, y, seed=0).x_adv
        print(f"| {label} | {change:.4f} | {1 - change / removed:+.3f} | {accuracy(defended, x, y):.3f} | "
              f"{accuracy(defended, blind, y):.3f} | {accuracy(defended, adaptive, y):.3f} |")


if __name__ == "__main__":
    run_main(main)
