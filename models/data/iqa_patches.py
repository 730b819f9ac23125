"""skimage-iqa: patches of scikit-image's photographs, degraded at five levels, labelled by FSIMc.

Train and test patches come from disjoint source photographs (``SOURCES``). Every array is a pure
function of (PatchConfig, split); the slow part (FSIMc labels) is cached under $ROBUSTGRID_HOME keyed by
a hash of the generator. docs/iqa.md documents the generator and why FSIMc is the label.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from robustgrid.core import RobustgridError
from robustgrid.models.cache import recipe_hash, robustgrid_home
from robustgrid.models.data.base import ImageDataset, fingerprint, subset_indices
from robustgrid.models.data.registry import register_dataset

GENERATOR_VERSION = 1  # bump when a change alters any patch or label (it keys the cache and the zoo)

# disjoint source photographs per split; greyscale ones are replicated to RGB
SOURCES: dict[str, tuple[str, ...]] = {
    "train": ("astronaut", "rocket", "motorcycle", "immunohistochemistry", "hubble_deep_field", "retina",
              "camera", "moon", "brick", "grass"),
    "test": ("chelsea", "coffee", "coins", "gravel"),
}

# level 1..5 of each distortion, mildest first
LEVELS: dict[str, tuple[float, ...]] = {
    "blur": (0.5, 0.9, 1.4, 2.0, 3.0),           # Gaussian sigma in pixels
    "noise": (0.01, 0.025, 0.045, 0.07, 0.11),   # white Gaussian noise std on [0, 1]
    "jpeg": (60, 40, 25, 15, 8),                 # JPEG quality
    "contrast": (0.8, 0.65, 0.5, 0.35, 0.22),    # factor around the patch mean
    "saturation": (0.75, 0.5, 0.3, 0.15, 0.0),   # factor around the luma (identity on grey sources: skipped)
    "pixelate": (2, 3, 4, 6, 8),                 # area-downsampling factor, nearest upsampling back
}
DISTORTIONS = tuple(LEVELS)
LUMA = (0.299, 0.587, 0.114)


@dataclass(frozen=True)
class PatchConfig:
    """Everything that shapes the patches and labels besides the split; hashed into the cache key."""

    patch: int = 48                 # square patch side in pixels (small: the zoo trains on a CPU)
    max_side: int = 512             # larger photographs are downscaled so their short side is this
    min_std: float = 0.05           # flat tiles (luma std below this) are skipped: most distortions leave them intact
    train_per_source: int = 200     # pristine patches drawn from each train photograph (fewer if it has fewer: all
    #                                 of their textured tiles, 737 in all; 36 per photograph until 2026-12-02 left the
    #                                 zoo at test SROCC 0.61-0.69, all of them took iqa-resnet to 0.81, docs/iqa.md)
    test_per_source: int = 24       # ... and from each test photograph
    train_kinds_per_patch: int = 5  # distortion types applied to each train pristine patch, each at all five levels:
    test_kinds_per_patch: int = 2   # ... one content under many distortions teaches a model to tell them from content
    seed: int = 0
    label_floor: float = 0.6        # FSIMc at or below this maps to label 0; identical patches map to 100

    def key(self, split: str) -> str:
        return recipe_hash({"version": GENERATOR_VERSION, "split": split, "sources": SOURCES[split],
                            "levels": LEVELS, **asdict(self)})


@dataclass(frozen=True, eq=False)
class IQAPatches:
    """Degraded patches (uint8 NHWC) with labels and, per patch, its source, pristine patch, distortion and level."""

    images: np.ndarray      # uint8 (N, H, W, 3)
    labels: np.ndarray      # float32 (N,), 0..100, higher = better
    source: np.ndarray      # int (N,), index into SOURCES[split]
    patch_id: np.ndarray    # int (N,), the pristine patch this one was made from (unique per split)
    distortion: np.ndarray  # int (N,), -1 for the pristine patch, else index into DISTORTIONS
    level: np.ndarray       # int (N,), 0 for the pristine patch, else 1..5
    split: str

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in ("images", "labels", "source", "patch_id", "distortion", "level")}


def load_photo(name: str) -> np.ndarray:
    """A scikit-image sample photograph as uint8 RGB (H, W, 3); greyscale ones replicated to three channels."""
    import skimage.data

    img = skimage.data.stereo_motorcycle()[0] if name == "motorcycle" else getattr(skimage.data, name)()
    img = np.asarray(img)
    if img.dtype != np.uint8:
        raise RobustgridError(f"skimage photograph {name!r} is {img.dtype}, expected uint8")
    return np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3]


def _to_tensor(img: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1).float().div(255).unsqueeze(0)


def _luma(x: Tensor) -> Tensor:
    return sum(w * x[:, c:c + 1] for c, w in enumerate(LUMA))


def pristine_patches(name: str, cfg: PatchConfig, count: int, rng: np.random.Generator) -> Tensor:
    """``count`` textured, non-overlapping patches of one photograph (all of them if it has fewer), float NCHW."""
    x = _to_tensor(load_photo(name))
    short = min(x.shape[-2:])
    if short > cfg.max_side:
        x = F.interpolate(x, scale_factor=cfg.max_side / short, mode="bilinear", antialias=True,
                          recompute_scale_factor=False).clamp(0, 1)
    x = (x * 255).round() / 255  # pristine patches are 8-bit images too
    p = cfg.patch
    tiles = x.unfold(2, p, p).unfold(3, p, p).permute(0, 2, 3, 1, 4, 5).reshape(-1, 3, p, p)
    textured = tiles[_luma(tiles).flatten(1).std(1) >= cfg.min_std]
    pick = np.sort(rng.permutation(len(textured))[:count])
    return textured[torch.from_numpy(pick)]


def gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    """Separable Gaussian blur with reflect padding (kernel radius 3 sigma)."""
    r = max(1, int(np.ceil(3 * sigma)))
    k = torch.exp(-torch.arange(-r, r + 1, dtype=torch.float32) ** 2 / (2 * sigma ** 2))
    k = (k / k.sum()).to(x)
    c = x.shape[1]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def jpeg(x: Tensor, quality: int) -> Tensor:
    """JPEG round trip through Pillow (4:2:0 chroma subsampling, Pillow's default)."""
    from PIL import Image

    out = []
    for img in (x * 255).round().byte().permute(0, 2, 3, 1).numpy():
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=int(quality))
        out.append(np.asarray(Image.open(buf).convert("RGB")))
    return torch.from_numpy(np.stack(out)).permute(0, 3, 1, 2).float().div(255)


def distort(x: Tensor, kind: str, level: int, gen: torch.Generator) -> Tensor:
    """Apply distortion ``kind`` at ``level`` (1..5) to a batch of patches; noise draws from ``gen``."""
    v = LEVELS[kind][level - 1]
    if kind == "blur":
        y = gaussian_blur(x, v)
    elif kind == "noise":
        y = x + v * torch.randn(x.shape, generator=gen)
    elif kind == "jpeg":
        y = jpeg(x, int(v))
    elif kind == "contrast":
        m = x.mean(dim=(1, 2, 3), keepdim=True)
        y = m + v * (x - m)
    elif kind == "saturation":
        g = _luma(x)
        y = g + v * (x - g)
    else:  # pixelate
        side = max(1, round(x.shape[-1] / v))
        y = F.interpolate(F.interpolate(x, size=(side, side), mode="area"), size=x.shape[-2:], mode="nearest")
    return (y.clamp(0, 1) * 255).round() / 255  # every degraded patch is stored as an 8-bit image


def fsim_label(x: Tensor, ref: Tensor, floor: float, batch: int = 256) -> np.ndarray:
    """Labels in [0, 100]: FSIMc(x, ref) from pyiqa, mapped linearly so ``floor`` -> 0 and 1 -> 100."""
    import pyiqa

    metric = pyiqa.create_metric("fsim", device="cpu")  # chromatic FSIM (FSIMc), weight-free
    with torch.no_grad():
        q = torch.cat([metric(x[i:i + batch], ref[i:i + batch]).view(-1) for i in range(0, len(x), batch)])
    return (100 * ((q.numpy() - floor) / (1 - floor)).clip(0, 1)).astype(np.float32)


def degraded_patches(split: str, cfg: PatchConfig = PatchConfig()) -> tuple[Tensor, Tensor, np.ndarray]:
    """The split's patches without labels: float NCHW images, each one's pristine reference, and per patch
    (source, patch id, distortion, level). Cheap (seconds); the FSIMc labels are most of a split's cost."""
    if split not in SOURCES:
        raise RobustgridError(f"skimage-iqa has splits {', '.join(SOURCES)}, not {split!r}")
    rng = np.random.default_rng([cfg.seed, list(SOURCES).index(split)])
    gen = torch.Generator().manual_seed(int(rng.integers(2 ** 62)))
    imgs, refs, meta = [], [], []
    pid = 0
    for s, name in enumerate(SOURCES[split]):
        clean = pristine_patches(name, cfg, getattr(cfg, f"{split}_per_source"), rng)
        grey = bool((clean.amax(1) - clean.amin(1)).max() == 0)
        kinds = [d for d, k in enumerate(DISTORTIONS) if not (grey and k == "saturation")]
        n_kinds = min(len(kinds), getattr(cfg, f"{split}_kinds_per_patch"))
        chosen = np.stack([rng.choice(kinds, n_kinds, replace=False) for _ in range(len(clean))])
        ids = np.arange(pid, pid + len(clean))
        pid += len(clean)
        imgs.append(clean)
        refs.append(clean)
        meta += [(s, int(i), -1, 0) for i in ids]
        for d in kinds:
            rows = np.flatnonzero((chosen == d).any(1))
            if not len(rows):
                continue
            sel = torch.from_numpy(rows)
            for level in range(1, 6):
                imgs.append(distort(clean[sel], DISTORTIONS[d], level, gen))
                refs.append(clean[sel])
                meta += [(s, int(ids[r]), d, level) for r in rows]
    return torch.cat(imgs), torch.cat(refs), np.asarray(meta, dtype=np.int64)


def as_uint8(x: Tensor) -> np.ndarray:
    """Float NCHW patches in [0, 1] as the stored uint8 NHWC array."""
    return (x * 255).round().byte().permute(0, 2, 3, 1).contiguous().numpy()


def generate_patches(split: str, cfg: PatchConfig = PatchConfig()) -> IQAPatches:
    """Build a split from scratch: pristine patches, ``<split>_kinds_per_patch`` distortions (at most all the
    source's kinds) at five levels, FSIMc labels."""
    x, ref, m = degraded_patches(split, cfg)
    labels = fsim_label(x, ref, cfg.label_floor)
    return IQAPatches(as_uint8(x), labels, m[:, 0], m[:, 1], m[:, 2], m[:, 3], split)


def cache_path(split: str, cfg: PatchConfig = PatchConfig(), cache: Path | None = None) -> Path:
    """Where the labelled split is cached under $ROBUSTGRID_HOME/data (keyed by the generator)."""
    return (cache or robustgrid_home() / "data") / f"skimage-iqa-{split}-{cfg.key(split)}.npz"


def unlabeled_patches(split: str, cfg: PatchConfig = PatchConfig()) -> np.ndarray:
    """The split's uint8 NHWC images without labels: read from the labelled cache when it exists, else made
    without labelling (a self-supervised purifier needs no FSIMc; labelling the train split costs ~45 s)."""
    path = cache_path(split, cfg)
    if path.is_file():
        with np.load(path) as z:
            return z["images"]
    return as_uint8(degraded_patches(split, cfg)[0])


def load_patches(split: str, cfg: PatchConfig = PatchConfig(), cache: Path | None = None,
                 generate: Callable[[str, PatchConfig], IQAPatches] = generate_patches) -> IQAPatches:
    """The split from the cache under $ROBUSTGRID_HOME/data when present, else generated and cached."""
    path = cache_path(split, cfg, cache)
    if path.is_file():
        with np.load(path) as z:
            return IQAPatches(**{k: z[k] for k in z.files}, split=split)
    patches = generate(split, cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")  # one per process: parallel zoo workers may both write it
    np.savez_compressed(tmp, **patches.arrays())
    tmp.replace(path)  # atomic: a killed run never leaves half a cache file
    return patches


@register_dataset("skimage-iqa", task="iqa")
def skimage_iqa(split: str = "test", size: int | None = None, seed: int = 0, root: str | Path | None = None,
                generator_seed: int = 0) -> ImageDataset:
    """scikit-image photographs in 48x48 patches, six distortions x five levels, FSIMc labels 0-100."""
    cfg = PatchConfig(seed=generator_seed)
    p = load_patches(split, cfg, Path(root) if root is not None else None)
    idx = subset_indices(len(p.labels), size, seed).numpy()
    images = torch.from_numpy(p.images[idx]).permute(0, 3, 1, 2).float().div(255).contiguous()
    labels = torch.from_numpy(p.labels[idx])
    return ImageDataset("skimage-iqa", split, images, labels, fingerprint(p.images[idx], p.labels[idx], split),
                        groups=torch.from_numpy(p.source[idx]))
