"""Segmenters: the embedded zoo trained on fmnist-scenes, and loaders for pretrained torchvision / smp models.

Every segmenter is a module on [0, 1] images (normalisation inside) that returns logits (B, C, H, W).
Pretrained models are built without any download (``weights=None``) and filled from a local file read
safely (safetensors or ``weights_only``).
"""

from __future__ import annotations

import difflib
import functools
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustgrid.core import RobustgridError
from robustgrid.models.cache import WeightsRecord
from robustgrid.models.checkpoints import file_sha256, load_state_dict, load_weights
from robustgrid.models.data.scenes import GENERATOR_VERSION, IGNORE, NUM_CLASSES, SceneConfig, render_scenes
from robustgrid.models.segmentation_task import Segmentation
from robustgrid.models.target import Normalized, Target, register_target_prefix
from robustgrid.models.training import fit
from robustgrid.models.zoo import ZooEntry, register_zoo

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
SCENES_MEAN, SCENES_STD = (0.425,) * 3, (0.215,) * 3  # pixel statistics of fmnist-scenes train images


class OutLogits(nn.Module):
    """Returns ``net(x)["out"]``: torchvision segmenters give a dict (out, aux), the grid wants logits."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)["out"]


def _input_shape(input_size: int | Sequence[int]) -> tuple[int, int, int]:
    hw = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
        raise RobustgridError(f"input_size must be a positive integer or [height, width], got {input_size!r}")
    return (3, *hw)


def _need_weights(kind: str, arch: str, weights: str | Path | None) -> Path:
    if weights is None:
        raise RobustgridError(f"target {kind}:{arch} needs weights = PATH to a local checkpoint (nothing is "
                              "downloaded)")
    return Path(weights).expanduser()


# ---- pretrained models for users -------------------------------------------------------------------
@register_target_prefix("torchvision-seg", task="segmentation")
def torchvision_segmenter(arch: str, weights: str | Path | None = None, num_classes: int = 21,
                          input_size: int | Sequence[int] = 512, mean: Sequence[float] = IMAGENET_MEAN,
                          std: Sequence[float] = IMAGENET_STD, name: str | None = None) -> Target:
    """A torchvision segmentation model (fcn_*, deeplabv3_*, lraspp_*) with local weights; ``out`` logits."""
    from torchvision import models as tvm

    known = tvm.list_models(module=tvm.segmentation)
    if arch not in known:
        close = difflib.get_close_matches(arch, known, n=3, cutoff=0.4)
        raise RobustgridError(f"unknown torchvision segmentation model {arch!r}"
                              + (f"; did you mean {', '.join(close)}?" if close else f"; known: {', '.join(known)}"))
    path = _need_weights("torchvision-seg", arch, weights)
    aux = any(k.startswith("aux_classifier.") for k in load_state_dict(path))  # torchvision's VOC weights have one
    net = tvm.get_model(arch, weights=None, weights_backbone=None, num_classes=num_classes, aux_loss=aux)
    load_weights(net, path)
    module = Normalized(OutLogits(net), tuple(mean), tuple(std))
    return Target(name or f"torchvision-seg:{arch}", "segmentation", module, _input_shape(input_size), num_classes,
                  provenance={"architecture": f"torchvision.models.segmentation.{arch}", "weights": str(path),
                              "sha256": file_sha256(path)})


@register_target_prefix("smp", task="segmentation")
def smp_segmenter(arch: str, weights: str | Path | None = None, encoder: str = "resnet50", num_classes: int = 21,
                  input_size: int | Sequence[int] = 512, mean: Sequence[float] = IMAGENET_MEAN,
                  std: Sequence[float] = IMAGENET_STD, name: str | None = None, **arch_params: Any) -> Target:
    """A segmentation-models-pytorch architecture (Unet, FPN, PSPNet, DeepLabV3Plus ...) with local weights."""
    import segmentation_models_pytorch as smp

    path = _need_weights("smp", arch, weights)
    try:
        net = smp.create_model(arch, encoder_name=encoder, encoder_weights=None, classes=num_classes, **arch_params)
    except KeyError as exc:  # smp names the unknown architecture or encoder
        raise RobustgridError(f"smp cannot build {arch!r} with encoder {encoder!r}: {exc.args[0]}") from None
    load_weights(net, path)
    module = Normalized(net, tuple(mean), tuple(std))
    return Target(name or f"smp:{arch}", "segmentation", module, _input_shape(input_size), num_classes,
                  provenance={"architecture": f"smp.{arch}({encoder})", "weights": str(path),
                              "sha256": file_sha256(path), "params": arch_params})


# ---- the embedded zoo --------------------------------------------------------------------------------
@dataclass(frozen=True)
class SegmenterRecipe:
    """How one zoo segmenter is built and trained; all of it (plus the scene generator's key) keys the weights."""

    arch: str                                             # smp architecture
    encoder: str                                          # smp / timm-universal encoder name
    params: dict[str, Any] = field(default_factory=dict)  # decoder sizes and timm encoder overrides
    train_scenes: int = 8000
    epochs: int = 1
    batch_size: int = 8                                   # >= 2: batch norm in the DeepLab head
    lr: float = 1e-2
    weight_decay: float = 1e-4
    seed: int = 0


NARROW = {"channels": (16, 32, 64, 128), "stem_width": 16}  # timm resnet10t at 1/4 width
W24 = {"channels": (24, 48, 96, 192), "stem_width": 24}     # ... and at 3/8 width
SEGMENTER_ZOO: dict[str, tuple[str, SegmenterRecipe]] = {
    "scenes-fpn": ("FPN (smp) on a quarter-width ResNet-10t (timm), trained on fmnist-scenes",
                   SegmenterRecipe("FPN", "tu-resnet10t", {"decoder_pyramid_channels": 64,
                                                            "decoder_segmentation_channels": 32, **NARROW},
                                   epochs=2, seed=1)),
    "scenes-pspnet": ("PSPNet (smp) on a 3/8-width ResNet-10t cut at stride 8 (timm), trained on fmnist-scenes",
                      SegmenterRecipe("PSPNet", "tu-resnet10t", {"psp_out_channels": 64, "encoder_depth": 3, **W24},
                                      epochs=3, seed=2)),
    "scenes-deeplab": ("DeepLabV3+ (smp) on a 3/8-width ResNet-10t cut at stride 16 (timm), trained on fmnist-scenes",
                       SegmenterRecipe("DeepLabV3Plus", "tu-resnet10t", {"encoder_depth": 4, "decoder_channels": 48,
                                                                          "decoder_atrous_rates": (1, 2, 3), **W24},
                                       epochs=2, seed=3)),
}
TEST_SCENES, CHECK_SCENES = 2000, 256  # test mIoU over the test pool; its first CHECK_SCENES for fast re-checks


def segmenter_module(recipe: SegmenterRecipe) -> nn.Module:
    """The untrained zoo network on [0, 1] 64x64 scenes, normalisation inside (no download)."""
    import segmentation_models_pytorch as smp

    net = smp.create_model(recipe.arch, encoder_name=recipe.encoder, encoder_weights=None, classes=NUM_CLASSES,
                           **recipe.params)
    return Normalized(net, SCENES_MEAN, SCENES_STD)


@functools.lru_cache(maxsize=2)
def scenes(split: str, count: int) -> tuple[Tensor, Tensor]:
    """Scenes 0..count-1 of a split as uint8 tensors, generated once per process (the zoo shares them)."""
    images, labels = render_scenes(split, np.arange(count))
    return torch.from_numpy(images), torch.from_numpy(labels)


def scenes_key() -> str:
    """What determines every scene: generator version and config plus the Fashion-MNIST source data."""
    from robustgrid.models.classifiers import fmnist_train_fingerprint

    return f"fmnist-scenes:v{GENERATOR_VERSION}:{asdict(SceneConfig())}:{fmnist_train_fingerprint()}"


def as_float(images: Tensor) -> Tensor:
    """[0, 1] float images from uint8 ones (float ones pass through)."""
    return images.float().div_(255) if images.dtype == torch.uint8 else images


def segmentation_metrics(module: nn.Module, images: Tensor, labels: Tensor, batch_size: int = 250) -> dict[str, float]:
    """Dataset-level mIoU and pixel accuracy of ``module`` (one confusion matrix over all images)."""
    module.eval()
    with torch.inference_mode():
        pred = np.concatenate([module(as_float(images[i:i + batch_size])).argmax(1).numpy()
                               for i in range(0, len(images), batch_size)])
    return Segmentation(NUM_CLASSES).metrics(pred, labels.numpy())


def fit_segmenter(module: nn.Module, images: Tensor, labels: Tensor, recipe: SegmenterRecipe,
                  progress: bool = True, desc: str = "train") -> nn.Module:
    """Per-pixel cross-entropy (ignore label excluded) through the shared zoo training loop."""
    def loss(logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y.long(), ignore_index=IGNORE)

    return fit(module, images, labels, recipe, loss, prepare=as_float, pct_start=0.15, channels_last=True,
               progress=progress, desc=desc)


def train_segmenter(name: str, recipe: SegmenterRecipe, progress: bool = True) -> tuple[nn.Module, dict[str, float]]:
    """Train one zoo segmenter from its seed on the train scenes; measure it on the test scenes."""
    wall, cpu = time.perf_counter(), time.process_time()
    torch.manual_seed(recipe.seed)  # the initial weights too depend only on the recipe
    module = fit_segmenter(segmenter_module(recipe), *scenes("train", recipe.train_scenes), recipe, progress, name)
    fit = {"fit_seconds": round(time.perf_counter() - wall, 1), "fit_cpu_seconds": round(time.process_time() - cpu, 1)}
    test_x, test_y = scenes("test", TEST_SCENES)
    full = segmentation_metrics(module, test_x, test_y)
    check = segmentation_metrics(module, test_x[:CHECK_SCENES], test_y[:CHECK_SCENES])
    return module, {"test_miou": full["miou"], "test_pixel_accuracy": full["pixel_accuracy"],
                    f"test{CHECK_SCENES}_miou": check["miou"], **fit}


def segmenter_target(name: str, recipe: SegmenterRecipe, module: nn.Module, rec: WeightsRecord) -> Target:
    """Wrap trained zoo weights as a Target whose provenance names the architecture and the weights file."""
    provenance = {"architecture": f"smp.{recipe.arch}", "encoder": recipe.encoder, "params": recipe.params,
                  "source": "robustgrid-zoo", "weights": str(rec.path), "sha256": rec.sha256,
                  "recipe_hash": rec.recipe_hash, "weights_source": rec.source, **rec.metrics}
    size = SceneConfig().size
    return Target(name=name, task="segmentation", module=module, input_shape=(3, size, size),
                  num_classes=NUM_CLASSES, provenance=provenance)


for _name, (_description, _recipe) in SEGMENTER_ZOO.items():
    register_zoo(ZooEntry(
        name=_name, task="segmentation", description=_description,
        recipe={"dataset": "fmnist-scenes", "train_split": "train", "test_scenes": TEST_SCENES, **asdict(_recipe)},
        data_fingerprint=scenes_key,
        build=functools.partial(segmenter_module, _recipe),
        train=functools.partial(train_segmenter, _name, _recipe),
        to_target=functools.partial(segmenter_target, _name, _recipe),
    ))
