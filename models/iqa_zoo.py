"""The embedded NR-IQA zoo: three architecture families trained to predict the skimage-iqa FSIMc label.

CNNIQA (pyiqa's shallow CNN with max-min pooling), a batch-norm ResNet and a normaliser-free NF-Net
(timm), each small enough to train on a laptop CPU in a few minutes (MSE plus a pairwise ranking term);
weights are committed with their test SROCC/PLCC/KROCC. (MobileNetV3, EfficientNet, ConvNeXt and ViT
variants were tried and learned far less in the same budget: test SROCC 0.1-0.54.)
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustgrid.models.cache import WeightsRecord
from robustgrid.models.classifiers import IMAGENET_MEAN, IMAGENET_STD, create_timm
from robustgrid.models.data import ImageDataset
from robustgrid.models.data.iqa_patches import PatchConfig, skimage_iqa
from robustgrid.models.iqa_models import iqa_target, no_download_options, pyiqa_arch
from robustgrid.models.iqa_task import krocc, plcc, srocc
from robustgrid.models.target import Normalized, Target
from robustgrid.models.training import fit
from robustgrid.models.zoo import ZooEntry, register_zoo

PATCH = PatchConfig().patch


class IQANet(Normalized):
    """A regression network on [0, 1] images (normalisation inside) whose output x 100 is the score 0-100."""

    def forward(self, x: Tensor) -> Tensor:
        return 100 * super().forward(x).reshape(len(x), -1).mean(1)


@dataclass(frozen=True)
class IQARecipe:
    """How one zoo IQA model is built and trained; all of it (plus the data generator hash) keys the weights."""

    arch: str                       # timm architecture, or "pyiqa:<ArchClass>"
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 8
    lr: float = 2e-3
    batch_size: int = 64
    weight_decay: float = 1e-4
    rank_weight: float = 0.0        # weight of the pairwise ranking term next to the MSE (SROCC is a ranking)
    seed: int = 0


def build_net(recipe: IQARecipe) -> IQANet:
    """The untrained network for 3x48x48 patches, one output, ImageNet normalisation inside."""
    if recipe.arch.startswith("pyiqa:"):
        cls = pyiqa_arch(recipe.arch.removeprefix("pyiqa:"))
        net = cls(**no_download_options(cls), **recipe.model_kwargs)
    else:
        net = create_timm(recipe.arch, num_classes=1, **recipe.model_kwargs)
    return IQANet(net, IMAGENET_MEAN, IMAGENET_STD)


def predict(module: nn.Module, data: ImageDataset, batch_size: int = 256) -> Tensor:
    """Scores of ``module`` on the whole dataset (eval mode, no gradients)."""
    module.eval()
    with torch.inference_mode():
        return torch.cat([module(x).reshape(-1) for x, _ in data.batches(batch_size)])


def augment(x: Tensor, gen: torch.Generator) -> Tensor:
    """Label-preserving views (FSIMc is symmetric under them): random flips and one random quarter turn per batch."""
    flip = torch.rand(2, len(x), 1, 1, 1, generator=gen) < 0.5
    x = torch.where(flip[0], x.flip(3), x)
    x = torch.where(flip[1], x.flip(2), x)
    return torch.rot90(x, int(torch.randint(0, 4, (1,), generator=gen)), dims=(2, 3))


def pairwise_rank_loss(pred: Tensor, y: Tensor, min_gap: float = 2.0) -> Tensor:
    """Hinge on every ordered pair of the batch whose labels differ by more than ``min_gap`` points: how far
    (in units of the 0-100 range) the predictions rank the pair the wrong way; averaged over all pairs."""
    dp, dy = (pred[:, None] - pred[None]) / 100, y[:, None] - y[None]
    wrong = F.relu(-dp * torch.sign(dy))
    return torch.where(dy.abs() > min_gap, wrong, torch.zeros(())).mean()


def fit_regressor(module: nn.Module, data: ImageDataset, recipe: IQARecipe, progress: bool = True,
                  desc: str = "train") -> nn.Module:
    """MSE on label/100 plus ``rank_weight`` x the pairwise ranking term, over label-preserving augmented
    batches, through the shared zoo training loop."""
    def loss(pred: Tensor, y: Tensor) -> Tensor:
        mse = F.mse_loss(pred / 100, y / 100)
        return mse + recipe.rank_weight * pairwise_rank_loss(pred, y) if recipe.rank_weight else mse

    return fit(module, data.images, data.labels, recipe, loss, augment=augment, progress=progress, desc=desc)


def test_metrics(module: nn.Module) -> dict[str, float]:
    """SROCC, PLCC and KROCC with the labels on the full skimage-iqa test split (disjoint source photographs)."""
    data = skimage_iqa("test")
    pred, y = predict(module, data).numpy(), data.labels.numpy()
    return {"test_srocc": round(srocc(pred, y), 4), "test_plcc": round(plcc(pred, y), 4),
            "test_krocc": round(krocc(pred, y), 4)}


def train_iqa(name: str, recipe: IQARecipe, progress: bool = True) -> tuple[nn.Module, dict[str, float]]:
    """Train one zoo IQA model from its seed and measure it on the test split."""
    torch.manual_seed(recipe.seed)  # the initial weights too depend only on the recipe
    module = fit_regressor(build_net(recipe), skimage_iqa("train"), recipe, progress, desc=name)
    return module, test_metrics(module)


def iqa_zoo_target(name: str, recipe: IQARecipe, module: nn.Module, rec: WeightsRecord) -> Target:
    """Wrap trained zoo weights as an IQA Target (range 0-100, higher = better) with their provenance."""
    provenance = {"architecture": recipe.arch, "model_kwargs": recipe.model_kwargs, "source": "robustgrid-zoo",
                  "weights": str(rec.path), "sha256": rec.sha256, "recipe_hash": rec.recipe_hash,
                  "weights_source": rec.source, **rec.metrics}
    return iqa_target(name, module, (0.0, 100.0), False, (3, PATCH, PATCH), provenance)


@functools.cache
def train_data_key() -> str:
    """The train split's generator hash: identifies the data without generating it (labels take a minute)."""
    return PatchConfig().key("train")


def label_train_split() -> None:
    """Make and cache the labelled train split (FSIMc labels, about 100 s) before parallel zoo workers read it."""
    skimage_iqa("train")


IQA_ZOO: dict[str, tuple[str, IQARecipe]] = {
    "iqa-cnniqa": ("CNNIQA (pyiqa arch: 7x7 conv, max-min pooling, MLP) trained on skimage-iqa",
                   IQARecipe("pyiqa:CNNIQA", {"ker_size": 7, "n_kers": 32, "n1_nodes": 128, "n2_nodes": 128},
                             epochs=10, lr=3e-3, rank_weight=1.0)),
    "iqa-resnet": ("ResNet-10t (timm, batch-norm residual CNN, widths 16-128) trained on skimage-iqa",
                   IQARecipe("resnet10t", {"channels": [16, 32, 64, 128], "stem_width": 16}, epochs=10, lr=1e-2,
                             rank_weight=1.0)),
    "iqa-nfnet": ("NF-Net (timm test_nfnet: normaliser-free residual CNN with SE) trained on skimage-iqa",
                  IQARecipe("test_nfnet", epochs=10, lr=5e-3, rank_weight=1.0)),
}

for _name, (_description, _recipe) in IQA_ZOO.items():
    register_zoo(ZooEntry(
        name=_name, task="iqa", description=_description,
        recipe={"dataset": "skimage-iqa", **asdict(_recipe)},
        data_fingerprint=train_data_key,
        build=functools.partial(build_net, _recipe),
        train=functools.partial(train_iqa, _name, _recipe),
        to_target=functools.partial(iqa_zoo_target, _name, _recipe),
        prepare=label_train_split,
    ))
