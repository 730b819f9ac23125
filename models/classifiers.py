"""Classifier targets: any timm architecture with local weights, and the Fashion-MNIST zoo.

Weights are only ever read by ``models.checkpoints`` (safetensors or ``weights_only`` torch files);
timm's own loader runs only for ``pretrained=True``, the real-user path that downloads from the hub.
"""

from __future__ import annotations

import difflib
import functools
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from robustgrid.core import RobustgridError
from robustgrid.models.cache import WeightsRecord
from robustgrid.models.checkpoints import file_sha256, load_weights
from robustgrid.models.data import ImageDataset, build_dataset, fingerprint
from robustgrid.models.data.fashion_mnist import CLASSES, MEAN, STD, load_fashion_mnist
from robustgrid.models.target import Normalized, Target, build_target, register_target_prefix
from robustgrid.models.training import fit
from robustgrid.models.zoo import ZooEntry, register_zoo

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def create_timm(arch: str, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``timm.create_model`` with one-line errors for unknown architectures, bad keywords, failed downloads."""
    import timm

    if not timm.is_model(arch):
        close = difflib.get_close_matches(arch, timm.list_models(), n=3, cutoff=0.6)
        raise RobustgridError(f"unknown timm architecture {arch!r}" + (f"; did you mean {', '.join(close)}?"
                                                                      if close else ""))
    try:
        return timm.create_model(arch, pretrained=pretrained, **kwargs)
    except TypeError as exc:
        raise RobustgridError(f"timm architecture {arch!r} rejects its arguments: {exc}") from None
    except Exception as exc:
        if not pretrained:
            raise
        raise RobustgridError(f"could not fetch pretrained weights of {arch!r} ({type(exc).__name__}); "
                              "pass weights = PATH to a local checkpoint instead") from None


def mobilenetv3_custom(arch_def: list[list[str]], num_classes: int = 1000, in_chans: int = 3, stem_size: int = 16,
                       num_features: int = 1024, act_layer: str = "hard_swish") -> nn.Module:
    """timm's MobileNetV3 class on blocks in timm's arch_def notation (as mobilenetv3_small_* use), so the
    strides can suit small inputs: the stock models leave a 28x28 image 7x7 after two layers."""
    from timm.layers import get_act_layer
    from timm.models._efficientnet_blocks import SqueezeExcite
    from timm.models._efficientnet_builder import decode_arch_def, round_channels
    from timm.models.mobilenetv3 import MobileNetV3

    try:
        blocks = decode_arch_def(arch_def)
    except (AssertionError, ValueError, KeyError, IndexError) as exc:
        raise RobustgridError(f"bad MobileNetV3 arch_def {arch_def!r}: {exc or type(exc).__name__}") from None
    se_layer = functools.partial(SqueezeExcite, gate_layer="hard_sigmoid", force_act_layer=nn.ReLU,
                                 rd_round_fn=round_channels)  # MobileNetV3's own squeeze-excite
    return MobileNetV3(blocks, num_classes=num_classes, in_chans=in_chans, stem_size=stem_size,
                       num_features=num_features, act_layer=get_act_layer(act_layer), se_layer=se_layer)


ARCHITECTURES: dict[str, Callable[..., nn.Module]] = {"mobilenetv3_custom": mobilenetv3_custom}


def build_net(arch: str, num_classes: int, in_chans: int, **kwargs: Any) -> nn.Module:
    """An untrained network: one of ARCHITECTURES (timm classes with custom layouts) or any timm model name."""
    if arch in ARCHITECTURES:
        return ARCHITECTURES[arch](num_classes=num_classes, in_chans=in_chans, **kwargs)
    return create_timm(arch, num_classes=num_classes, in_chans=in_chans, **kwargs)


def _per_channel(values: tuple[float, ...], in_chans: int, what: str) -> tuple[float, ...]:
    values = tuple(float(v) for v in values)
    if len(values) == in_chans:
        return values
    if in_chans == 1:  # grey input to an RGB recipe: the channel average
        return (sum(values) / len(values),)
    raise RobustgridError(f"{what} has {len(values)} channels but the model takes {in_chans}; pass {what}=")


def fixed_input_size(net: nn.Module) -> bool:
    """Whether a timm network only takes its configured resolution (a ViT-style strict patch embedding);
    CNNs with global pooling take any size, so their input size follows the data."""
    embed = getattr(net, "patch_embed", None)
    return embed is not None and bool(getattr(embed, "strict_img_size", True)) and \
        not bool(getattr(embed, "dynamic_img_size", False))


@register_target_prefix("timm", task="classification")
def timm_target(arch: str, weights: str | Path | None = None, num_classes: int = 1000, in_chans: int = 3,
                pretrained: bool = False, name: str | None = None, mean: tuple[float, ...] | None = None,
                std: tuple[float, ...] | None = None, input_size: int | tuple[int, int] | None = None,
                **model_kwargs: Any) -> Target:
    """timm:<arch> classifiers with weights = PATH (safetensors or torch state dict) or pretrained = true.

    Weights come from a local file (safe loader) or timm's hub download; normalisation (the pretrained config's
    mean/std unless given) happens inside the Target's module. The input size is ``input_size`` if given, else the
    pretrained config's test size; a network that takes any size (a CNN) is marked size-flexible, so it evaluates
    the dataset's own resolution. Other keywords go to timm.
    """
    if not arch:
        raise RobustgridError("target spec 'timm:' lacks an architecture, e.g. timm:resnet50")
    if (weights is None) == (not pretrained):
        raise RobustgridError(f"timm:{arch} needs exactly one of weights = PATH or pretrained = true")
    net = create_timm(arch, pretrained, num_classes=num_classes, in_chans=in_chans, **model_kwargs)
    if weights is not None:
        load_weights(net, weights)
    cfg = dict(getattr(net, "pretrained_cfg", None) or {})
    mean = _per_channel(mean or cfg.get("mean", IMAGENET_MEAN), in_chans, "mean")
    std = _per_channel(std or cfg.get("std", IMAGENET_STD), in_chans, "std")
    # the pretrained config's evaluation resolution (timm's test size where the recipe trained smaller, e.g.
    # resnet10t: 176 -> 224) is only the default: an explicit input_size or, for a CNN, the data's size wins
    default = model_kwargs.get("img_size", (cfg.get("test_input_size") or cfg.get("input_size", (3, 224, 224)))[1:])
    default = (default, default) if isinstance(default, int) else tuple(default)
    size = default if input_size is None else input_size
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    fixed = fixed_input_size(net)
    provenance = {"architecture": arch, "model_kwargs": model_kwargs, "mean": mean, "std": std, "source": "timm",
                  "weights": str(weights) if weights else f"timm-pretrained:{cfg.get('tag', arch)}",
                  "sha256": file_sha256(weights) if weights else None,
                  "pretrained_input_size": list(default),
                  "size_flexible": not fixed}
    return Target(name=name or f"timm:{arch}", task="classification", module=Normalized(net, mean, std),
                  input_shape=(in_chans, h, w), num_classes=num_classes, provenance=provenance,
                  size_flexible=not fixed and input_size is None)


def build_classifier_target(spec: str, **kw: Any) -> Target:
    """A classifier from a config spec: ``timm:<arch>`` (keywords go to timm_target) or a zoo name."""
    target = build_target(spec, **kw)
    if target.task != "classification":
        raise RobustgridError(f"target {spec!r} is a {target.task} model, not a classifier")
    return target


def accuracy(module: nn.Module, data: ImageDataset, batch_size: int = 1000) -> float:
    """Top-1 accuracy of ``module`` on the whole dataset (eval mode, no gradients)."""
    module.eval()
    correct = 0
    with torch.inference_mode():
        for x, y in data.batches(batch_size):
            correct += int((module(x).argmax(1) == y).sum())
    return correct / len(data)


@dataclass(frozen=True)
class ClassifierRecipe:
    """How one zoo classifier is built and trained; all of it (plus the data fingerprint) keys the weights."""

    arch: str
    model_kwargs: dict[str, Any] = field(default_factory=dict)
    epochs: int = 2
    lr: float = 3e-3
    batch_size: int = 128
    weight_decay: float = 0.05
    label_smoothing: float = 0.0
    hflip: bool = False  # random horizontal flips (garments are mostly left-right symmetric)
    seed: int = 0


def hflip(x: Tensor, gen: torch.Generator) -> Tensor:
    """Each image flipped left-right with probability 1/2 (garments are mostly left-right symmetric)."""
    return torch.where(torch.rand(len(x), 1, 1, 1, generator=gen) < 0.5, x.flip(3), x)


def fit_classifier(module: nn.Module, data: ImageDataset, recipe: ClassifierRecipe, progress: bool = True,
                   desc: str = "train") -> nn.Module:
    """Cross-entropy (with the recipe's label smoothing) through the shared zoo training loop."""
    def loss(logits: Tensor, y: Tensor) -> Tensor:
        return F.cross_entropy(logits, y, label_smoothing=recipe.label_smoothing)

    return fit(module, data.images, data.labels, recipe, loss, augment=hflip if recipe.hflip else None,
               progress=progress, desc=desc)


# --- the embedded Fashion-MNIST zoo: three timm families, small enough to train on a laptop CPU ---

# MobileNetV3-Small's block types in timm's arch_def notation, with one stride-2 stage fewer so a 28x28 image
# still has 2x2 positions at the last stage (the stock model leaves it 1x1)
MNV3_28 = [
    ["ds_r1_k3_s1_e1_c16_se0.25_nre"],
    ["ir_r1_k3_s2_e4.5_c24_nre", "ir_r1_k3_s1_e3.67_c24_nre"],
    ["ir_r1_k5_s2_e4_c40_se0.25", "ir_r1_k5_s1_e6_c40_se0.25"],
    ["ir_r1_k5_s1_e3_c48_se0.25"],
    ["ir_r1_k5_s2_e6_c96_se0.25"],
    ["cn_r1_k1_s1_c288"],
]

class ZooClassifier(NamedTuple):
    """A zoo classifier's one-line description, recipe, and training cost in CPU-seconds (one thread)."""

    description: str
    recipe: ClassifierRecipe
    cpu_seconds: float


FMNIST_ZOO: dict[str, ZooClassifier] = {
    "fmnist-resnet": ZooClassifier(
        "ResNet-10t (timm, widths 16-128) trained on Fashion-MNIST",
        ClassifierRecipe("resnet10t", {"channels": [16, 32, 64, 128], "stem_width": 16}, epochs=2, lr=4e-3), 75),
    "fmnist-mobilenet": ZooClassifier(
        "MobileNetV3 (timm's class, small-layout blocks with strides for 28x28) on Fashion-MNIST",
        ClassifierRecipe("mobilenetv3_custom", {"arch_def": MNV3_28, "num_features": 256}, epochs=2, lr=8e-3), 190),
    "fmnist-vit": ZooClassifier(
        "ViT (timm, 7x7 patches, 4 blocks of width 64) trained on Fashion-MNIST",
        ClassifierRecipe("vit_tiny_patch16_224", {"img_size": 28, "patch_size": 7, "embed_dim": 64, "depth": 4,
                                                  "num_heads": 4, "mlp_ratio": 2.0, "class_token": False,
                                                  "global_pool": "avg"}, epochs=8, lr=3e-3, batch_size=64), 230),
}


def fmnist_module(recipe: ClassifierRecipe) -> nn.Module:
    """The untrained zoo network for 1x28x28 inputs, with Fashion-MNIST normalisation inside."""
    net = build_net(recipe.arch, num_classes=len(CLASSES), in_chans=1, **recipe.model_kwargs)
    return Normalized(net, (MEAN,), (STD,))


@functools.cache
def fmnist_train_fingerprint() -> str:
    """Fingerprint of the full train split, equal to ``build_dataset('fashion-mnist', 'train').fingerprint``."""
    return fingerprint(*load_fashion_mnist("train"))


def train_fmnist(name: str, recipe: ClassifierRecipe, progress: bool = True) -> tuple[nn.Module, dict[str, float]]:
    """Train one zoo classifier from its seed and measure it on the full test split."""
    torch.manual_seed(recipe.seed)  # the initial weights too depend only on the recipe
    module = fit_classifier(fmnist_module(recipe), build_dataset("fashion-mnist", split="train"), recipe,
                            progress, desc=name)
    return module, {"test_accuracy": accuracy(module, build_dataset("fashion-mnist", split="test"))}


def fmnist_target(name: str, recipe: ClassifierRecipe, module: nn.Module, rec: WeightsRecord) -> Target:
    """Wrap trained zoo weights as a Target whose provenance names the architecture and the weights file."""
    provenance = {"architecture": recipe.arch, "model_kwargs": recipe.model_kwargs, "source": "robustgrid-zoo",
                  "weights": str(rec.path), "sha256": rec.sha256, "recipe_hash": rec.recipe_hash,
                  "weights_source": rec.source, **rec.metrics}
    return Target(name=name, task="classification", module=module, input_shape=(1, 28, 28),
                  num_classes=len(CLASSES), provenance=provenance)


for _name, (_description, _recipe, _cost) in FMNIST_ZOO.items():
    register_zoo(ZooEntry(
        name=_name, task="classification", description=_description,
        recipe={"dataset": "fashion-mnist", **asdict(_recipe)},
        data_fingerprint=fmnist_train_fingerprint,
        build=functools.partial(fmnist_module, _recipe),
        train=functools.partial(train_fmnist, _name, _recipe),
        to_target=functools.partial(fmnist_target, _name, _recipe),
        cost=_cost,
    ))

