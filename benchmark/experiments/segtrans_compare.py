"""SegTrans against MI-FGSM, DI, TI, SegPGD, PGD and BSR on fmnist-scenes, at equal iterations and equal cost.

Every attack makes its examples on one zoo segmenter and is scored on each other one (6 source -> target
pairs): pixel attack success (share of the target's clean-correct pixels it gets wrong) and mIoU. "Equal
iterations": T = ``--steps`` for all. "Equal gradient evaluations": the single-sample attacks get
T x ``--copies`` steps (step size scaled by 1 / copies), so each costs what SegTrans with ``--copies`` copies does;
BSR runs with the same copies there. Mean over pairs, +- standard deviation over ``--seeds`` seeds.
``--canvas`` and ``--items`` make larger scenes with more garments (the zoo segmenters are fully convolutional and
were trained on 64 px scenes of 2-4); ``--only`` keeps the labels whose start it names.
Run: ``python -m robustgrid.benchmark.experiments.segtrans_compare [--n 64 --dataset fmnist-scenes]``.
"""

from __future__ import annotations

import argparse

import numpy as np
import torch

from robustgrid.attacks import build_attack
from robustgrid.benchmark.experiments import run_main
from robustgrid.models.data import build_dataset
from robustgrid.models.segmentation_task import Segmentation
from robustgrid.models.target import build_target

SEGMENTERS = ("scenes-fpn", "scenes-pspnet", "scenes-deeplab")
SINGLE = {"PGD": ("pgd", {}), "MI-FGSM": ("mifgsm", {}), "DI": ("di", {"decay": 1.0}), "TI": ("ti", {"decay": 1.0}),
          "SegPGD": ("segpgd", {})}


def transfer(name: str, params: dict, models: dict, x: torch.Tensor, y: torch.Tensor, eps: float, steps: int,
             rel: float, seed: int) -> tuple[float, float, int]:
    """(pixel ASR, mIoU, gradient evaluations per image), means over the source -> target pairs."""
    task = Segmentation()
    asr, miou, cost = [], [], 0
    for src in SEGMENTERS:
        attack = build_attack(name, task="segmentation", eps=eps, steps=steps, rel_step_size=rel, **params)
        res = attack.run(models[src].module, x, y, seed=seed)
        cost = res.grad_evals // len(x)
        for tgt in SEGMENTERS:
            if tgt == src:
                continue
            with torch.no_grad():
                clean = task.outcome(models[tgt].module(x), y)
                adv = task.outcome(models[tgt].module(res.x_adv), y)
            m = task.metrics(adv, y.numpy(), clean)
            asr.append(m["pixel_asr"])
            miou.append(m["miou"])
    return float(np.mean(asr)), float(np.mean(miou)), cost


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--dataset", default="fmnist-scenes")
    ap.add_argument("--eps", type=float, default=8 / 255)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--copies", type=int, default=8)
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--canvas", type=int, default=64, help="scene side in pixels (fmnist-scenes)")
    ap.add_argument("--items", type=int, nargs=2, default=[2, 4], metavar=("MIN", "MAX"),
                    help="garments per scene (fmnist-scenes)")
    ap.add_argument("--only", nargs="*", default=None, help="label prefixes to run (default: all)")
    ap.add_argument("--no-equal-evals", action="store_true", help="skip the T x copies rows")
    args = ap.parse_args(argv)
    scene = ({"image_size": args.canvas, "min_items": args.items[0], "max_items": args.items[1]}
             if args.dataset == "fmnist-scenes" else {})
    data = build_dataset(args.dataset, split="test", size=args.n, **scene)
    x, y = data.images, data.labels
    models = {m: build_target(m) for m in SEGMENTERS}
    rel, c = 0.25, args.copies
    multi = {f"SegTrans grid 2, {c} copies": ("segtrans", {"grid": 2, "copies": c}),
             f"SegTrans grid 4, {c} copies": ("segtrans", {"grid": 4, "copies": c}),
             f"SegTrans strips 3, {c} copies": ("segtrans", {"grid": 3, "partition": "strips", "copies": c}),
             "SegTrans grid 2, 1 copy (PGD base, the old reading)": ("segtrans", {"grid": 2, "copies": 1,
                                                                                 "decay": 0.0,
                                                                                 "random_start": True}),
             "BSR, 20 copies": ("bsr", {}), f"BSR, {c} copies": ("bsr", {"copies": c})}
    rows = [(f"{k} (T={args.steps})", *v, args.steps, rel) for k, v in {**SINGLE, **multi}.items()]
    if not args.no_equal_evals:
        rows += [(f"{k} (T={args.steps * c}, equal evals)", *v, args.steps * c, rel / c) for k, v in SINGLE.items()]
    if args.only:
        rows = [r for r in rows if any(r[0].startswith(o) for o in args.only)]
    print(f"{args.dataset} test n={args.n}, {tuple(x.shape[-2:])} px, items {args.items}, eps={args.eps:.4f}, "
          f"6 transfer pairs, {args.seeds} seeds")
    print("| attack | pixel ASR | mIoU | grad evals / image |\n|---|---|---|---|")
    for label, name, params, steps, step_rel in rows:
        runs = np.array([transfer(name, params, models, x, y, args.eps, steps, step_rel, s) for s in range(args.seeds)])
        print(f"| {label} | {runs[:, 0].mean():.3f} ± {runs[:, 0].std():.3f} | {runs[:, 1].mean():.3f} | "
              f"{int(runs[0, 2])} |", flush=True)


if __name__ == "__main__":
    run_main(main)
