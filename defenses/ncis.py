"""NCIS (Cha et al., METHODS.md 3.5): iterative purification by a self-supervised blind-spot network and GS.

Each of the T iterations applies one step, chosen by ``mode``:
  "alternate"  x <- BSN(GS(x))                              (smooth the noise, then restore content: default)
  "bsn"        x <- BSN(x)                                  (learned contextual smoothing only)
  "mix"        x <- alpha * BSN(x) + (1 - alpha) * GS(x)    (convex mix of the two smoothers)
Both abstracts say the blind-spot network restores what Gaussian smoothing removed (METHODS 7.3), which is
"alternate"; "bsn" (the earlier default) and "mix" stay as named options. The output is clamped to [0, 1].
"""

from __future__ import annotations

import hashlib
from typing import Any

import torch
from torch import Tensor, nn

from robustgrid.core import RobustgridError, check_choice, check_float, check_int
from robustgrid.defenses.base import Purifier, register_defense
from robustgrid.defenses.bsn import BlindSpotNet
from robustgrid.defenses.bsn_training import BSNRecipe, load_bsn
from robustgrid.defenses.bsn_zoo import default_recipe
from robustgrid.defenses.gaussian import smooth
from robustgrid.models.filters import gaussian_kernel

MODES = ("alternate", "bsn", "mix")


def module_fingerprint(module: nn.Module) -> str:
    """Short SHA-256 of a module's state dict, the provenance of a BSN not loaded from the weights cache."""
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


@register_defense("ncis")
class NCIS(Purifier):
    """Neural contextual iterative smoothing: a blind-spot network combined with Gaussian smoothing, T times.

    Defaults mode="alternate" (BSN after GS, as both abstracts describe; docs/defenses.md measures it against
    "bsn"), iterations=2, kernel_size=3, sigma=1.0 (GS's defaults); alpha=0.5 applies to "mix" only.
    ``dataset`` names the unlabeled images the BSN is trained on (see defenses.unlabeled), by the zoo's recipe
    for it (defenses.bsn_zoo) unless ``recipe`` is given; ``bsn`` supplies a network directly instead.
    ``in_chans`` is the channel count of the images to purify (default: the BSN's); a one-channel BSN is
    applied to each channel of a colour image separately.
    """

    def __init__(self, dataset: str | None = None, in_chans: int | None = None, mode: str = "alternate",
                 iterations: int = 2, alpha: float = 0.5, kernel_size: int = 3, sigma: float = 1.0,
                 recipe: BSNRecipe | dict[str, Any] | None = None, bsn: nn.Module | None = None,
                 allow_train: bool = True) -> None:
        super().__init__()
        self.mode = check_choice("ncis", "mode", mode, MODES)
        self.iterations = check_int("ncis", "iterations", iterations, 1)
        self.alpha = check_float("ncis", "alpha", alpha, 0.0, 1.0)
        self.kernel_size = check_int("ncis", "kernel_size", kernel_size, 3, odd=True)
        self.sigma = check_float("ncis", "sigma", sigma, 0.0, low_open=True)
        self.register_buffer("kernel", gaussian_kernel(self.kernel_size, self.sigma), persistent=False)
        if bsn is None:
            recipe = self._recipe(dataset, recipe)
            bsn, record = load_bsn(recipe, allow_train=allow_train)
            self.provenance = {"dataset": recipe.dataset, "weights": record.name,
                               "recipe_hash": record.recipe_hash, "sha256": record.sha256}
        else:
            if dataset is not None or recipe is not None:
                raise RobustgridError("ncis: give either bsn or dataset/recipe, not both")
            self.provenance = {"dataset": None, "weights": None, "state_sha256": module_fingerprint(bsn)}
        self.bsn = bsn.eval().requires_grad_(False)
        bsn_chans = getattr(bsn, "in_chans", None)
        self.in_chans = bsn_chans if in_chans is None else check_int("ncis", "in_chans", in_chans, 1)
        if bsn_chans not in (None, 1, self.in_chans):
            raise RobustgridError(f"ncis: in_chans={self.in_chans} does not fit a BSN trained on {bsn_chans}-channel "
                                  f"images (use in_chans={bsn_chans}, or a one-channel BSN)")

    @staticmethod
    def _recipe(dataset: str | None, recipe: BSNRecipe | dict[str, Any] | None) -> BSNRecipe:
        if isinstance(recipe, dict):
            recipe = BSNRecipe.from_params(recipe)
        if recipe is None:
            return default_recipe(dataset)
        if dataset is not None and dataset != recipe.dataset:
            raise RobustgridError(f"ncis: dataset {dataset!r} differs from the recipe's {recipe.dataset!r}")
        return recipe

    def denoise(self, x: Tensor) -> Tensor:
        """One BSN pass; a one-channel BSN treats every channel as a separate grey image."""
        n, c, h, w = x.shape
        if getattr(self.bsn, "in_chans", c) == 1 and c > 1:
            return self.bsn(x.reshape(n * c, 1, h, w)).reshape(n, c, h, w)
        return self.bsn(x)

    def step(self, x: Tensor) -> Tensor:
        """One NCIS iteration of the configured mode."""
        if self.mode == "bsn":
            return self.denoise(x)
        if self.mode == "alternate":
            return self.denoise(smooth(x, self.kernel))
        return self.alpha * self.denoise(x) + (1 - self.alpha) * smooth(x, self.kernel)

    def purify(self, x: Tensor) -> Tensor:
        if self.in_chans is not None and x.shape[1] != self.in_chans:
            raise RobustgridError(f"ncis expects {self.in_chans}-channel images, got {x.shape[1]} channels")
        for _ in range(self.iterations):
            x = self.step(x)
        return torch.clamp(x, 0.0, 1.0)  # exact gradient inside the range, zero only where clamped

    def params(self) -> dict[str, Any]:
        used = {"mix": ("alpha", "kernel_size", "sigma"), "alternate": ("kernel_size", "sigma"), "bsn": ()}[self.mode]
        arch = self.bsn.architecture() if isinstance(self.bsn, BlindSpotNet) else {"arch": type(self.bsn).__name__}
        return {"mode": self.mode, "iterations": self.iterations, **{k: getattr(self, k) for k in used},
                "bsn": {**arch, **self.provenance}}
