"""SEGA against its baselines on the IQA zoo, at equal epsilon and at equal SSIM, with Monte-Carlo error bars.

Each attack config runs on every (sources -> held-out target) pair of ``--sources`` (leave-one-out pairs of the
zoo by default, or K = 3 sources onto PIQE with ``--k3``) at each budget of ``--eps`` under ``--seeds`` seeds.
Per run: the mean absolute score shift (0-100 scale) and score stability on the held-out target, and the mean
SSIM of the 8-bit adversarial image. Equal SSIM: the shift interpolated (linear in SSIM across the budgets) at
``--ssim``. Mean +- standard deviation over seeds (the noise draws of SEGA; I-FGSM is deterministic). The
sigma x N sweep runs SEGA with the masks off. Run: ``python -m robustgrid.benchmark.experiments.sega_sweep``.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence

import numpy as np
import torch

from robustgrid.attacks import build_attack
from robustgrid.benchmark.experiments import run_main
from robustgrid.models.data import build_dataset
from robustgrid.models.iqa_task import IQA, image_ssim, quantize8, score_stability
from robustgrid.models.target import build_target

ZOO = ("iqa-cnniqa", "iqa-resnet", "iqa-nfnet")
BASE = {"steps": 10}
BASELINES: dict[str, tuple[str, dict]] = {
    "ensemble I-FGSM": ("ifgsm", {"rel_step_size": 0.125}),
    "MI-FGSM": ("mifgsm", {"rel_step_size": 0.125, "decay": 1.0}),
    "VMI-FGSM (N=8)": ("vmifgsm", {"rel_step_size": 0.125, "decay": 1.0, "neighbours": 8, "beta": 1.5}),
    "SEGA (content mask)": ("sega", {}),
    "SEGA sign-then-average": ("sega", {"sign": "sign-then-average"}),
    "SEGA + agreement mask": ("sega-agreement", {}),
    "SEGA + agreement, sign-then-average": ("sega-agreement", {"sign": "sign-then-average"}),
    "SEGA no mask": ("sega-nomask", {}),
    "SEGA no mask, no smoothing": ("sega-nomask", {"smooth": False}),
}


def sweep(sigmas: Sequence[float], draws: Sequence[int]) -> dict[str, tuple[str, dict]]:
    """The sigma x N grid of SEGA with the masks off."""
    return {f"SEGA no mask sigma={s:g} N={n}": ("sega-nomask", {"sigma": s, "samples": n}) for s in sigmas
            for n in draws}


def run_pair(name: str, params: dict, sources: list, target, x: torch.Tensor, eps: float, seed: int,
             clean: np.ndarray) -> tuple[float, float, float]:
    """(mean |shift|, score stability, mean SSIM) of one attack run on one pair."""
    attack = build_attack(name, task="iqa", eps=eps, **BASE, **params)
    x_adv = quantize8(attack.run([s.module for s in sources], x, torch.zeros(len(x)), seed=seed).x_adv)
    with torch.no_grad():
        adv = IQA().outcome(target.module(x_adv), None)
    return float(np.abs(adv - clean).mean()), score_stability(clean, adv), float(image_ssim(x, x_adv).mean())


def at_ssim(ssim: np.ndarray, shift: np.ndarray, level: float) -> float:
    """Shift interpolated at an SSIM level along the budget curve (NaN outside the measured SSIM range)."""
    order = np.argsort(ssim)
    if not ssim.min() <= level <= ssim.max():
        return float("nan")
    return float(np.interp(level, ssim[order], shift[order]))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--eps", type=float, nargs="+", default=[2 / 255, 4 / 255, 8 / 255])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--ssim", type=float, default=0.95)
    ap.add_argument("--k3", action="store_true", help="K = 3 zoo sources onto the held-out PIQE")
    ap.add_argument("--sigmas", type=float, nargs="*", default=[0.025, 0.05, 0.1])
    ap.add_argument("--draws", type=int, nargs="*", default=[4, 8, 16])
    ap.add_argument("--only", nargs="*", default=None, help="attack labels to run (default: all)")
    args = ap.parse_args(argv)
    data = build_dataset("skimage-iqa", split="test", size=args.n)
    x = data.images
    models = {m: build_target(m) for m in (*ZOO, "piqe")}
    pairs = [(list(ZOO), "piqe")] if args.k3 else [([m for m in ZOO if m != t], t) for t in ZOO]
    configs = {**BASELINES, **sweep(args.sigmas, args.draws)}
    if args.only:
        configs = {k: v for k, v in configs.items() if k in args.only}
    clean = {}
    with torch.no_grad():
        for t in {t for _, t in pairs}:
            clean[t] = IQA().outcome(models[t].module(quantize8(x)), None)
    print(f"n={args.n} skimage-iqa test patches, pairs: {', '.join('+'.join(s) + '->' + t for s, t in pairs)}, "
          f"{args.seeds} seeds, T=10")
    eps_head = " | ".join(f"|shift| @{255 * e:.0f}/255 (SSIM)" for e in args.eps)
    print(f"| attack | {eps_head} | |shift| @SSIM {args.ssim} | stability @{255 * args.eps[-1]:.0f}/255 |")
    print("|---" * (len(args.eps) + 3) + "|")
    for label, (name, params) in configs.items():
        runs = np.array([[[run_pair(name, params, [models[s] for s in src], models[t], x, e, seed, clean[t])
                           for e in args.eps] for src, t in pairs] for seed in range(args.seeds)])
        per_seed = runs.mean(1)  # mean over pairs: (seeds, eps, 3)
        matched = np.array([at_ssim(r[:, 2], r[:, 0], args.ssim) for r in per_seed])
        cells = [f"{per_seed[:, k, 0].mean():.2f} ± {per_seed[:, k, 0].std():.2f} ({per_seed[:, k, 2].mean():.3f})"
                 for k in range(len(args.eps))]
        print(f"| {label} | {' | '.join(cells)} | {np.nanmean(matched):.2f} ± {np.nanstd(matched):.2f} | "
              f"{per_seed[:, -1, 1].mean():.3f} |", flush=True)


if __name__ == "__main__":
    run_main(main)
