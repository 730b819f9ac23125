"""IQA targets: any pyiqa NR model with local weights, and PIQE (weight-free) with a straight-through rounding.

Each target declares its scorer's native ``score_range`` and ``lower_better``; its module composes the
scorer with ``QualityScale``, the fixed affine map onto quality 0-100 (higher = better) that
``models.iqa_task`` works on, so sources of different scales and directions ensemble without special cases.
Weights are read only by ``models.checkpoints`` (never pyiqa's unrestricted ``torch.load``).
"""

from __future__ import annotations

import inspect
import math
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode

from robustgrid.core import RobustgridError
from robustgrid.models.checkpoints import file_sha256, load_weights
from robustgrid.models.data import clive, iqa_patches, koniq  # noqa: F401  (the IQA datasets register on import)
from robustgrid.models.iqa_task import QUALITY_RANGE, quality
from robustgrid.models.target import Target, register_target, register_target_prefix


class QualityScale(nn.Module):
    """Maps a scorer's raw score in ``score_range`` onto quality 0-100, flipped where lower is better."""

    def __init__(self, scorer: nn.Module, score_range: tuple[float, float], lower_better: bool) -> None:
        super().__init__()
        self.scorer = scorer
        self.lo, self.hi = (float(v) for v in score_range)
        self.lower_better = bool(lower_better)

    def forward(self, x: Tensor) -> Tensor:
        lo, hi = QUALITY_RANGE
        q = (quality(self.scorer(x)) - self.lo) / (self.hi - self.lo)
        return lo + (hi - lo) * ((1 - q) if self.lower_better else q)

    def raw(self, q: Tensor) -> Tensor:
        """Back from quality 0-100 to the scorer's own scale (for display)."""
        lo, hi = QUALITY_RANGE
        u = (q - lo) / (hi - lo)
        return self.lo + (self.hi - self.lo) * ((1 - u) if self.lower_better else u)


def check_score_range(score_range: Any, what: str) -> tuple[float, float]:
    """(lo, hi) as floats with lo < hi, both finite; anything else is a one-line error naming ``what``."""
    if score_range is None:
        raise RobustgridError(f"IQA target {what} declares no score_range; pass score_range = [lo, hi]")
    try:
        lo, hi = (float(v) for v in score_range)
    except (TypeError, ValueError):
        raise RobustgridError(f"score_range of {what} must be two numbers [lo, hi], got {score_range!r}") from None
    if not (math.isfinite(lo) and math.isfinite(hi) and lo < hi):
        raise RobustgridError(f"score_range of {what} must be finite with lo < hi, got {score_range!r}")
    return lo, hi


def iqa_target(name: str, scorer: nn.Module, score_range: Any, lower_better: bool,
               input_shape: tuple[int, int, int], provenance: dict[str, Any] | None = None) -> Target:
    """An IQA Target whose module outputs quality 0-100 (higher = better); a missing range is an error."""
    rng = check_score_range(score_range, repr(name))
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3:
        raise RobustgridError(f"input_shape of {name!r} must be (C, H, W), got {input_shape!r}")
    return Target(name=name, task="iqa", module=QualityScale(scorer, rng, lower_better), input_shape=shape,
                  score_range=rng, lower_better=bool(lower_better),
                  provenance={**(provenance or {}), "output": "quality 0-100, higher is better"})


def parse_pyiqa_range(text: str | None) -> tuple[float, float] | None:
    """pyiqa's metadata range such as '~0, ~100' as (0.0, 100.0); None where an end is open ('0, ~')."""
    if not text:
        return None
    ends = [v.strip().lstrip("~") for v in str(text).split(",")]
    try:
        return (float(ends[0]), float(ends[1])) if len(ends) == 2 else None
    except ValueError:
        return None


def pyiqa_arch(type_name: str) -> type:
    """The pyiqa architecture class registered as ``type_name`` (pyiqa imports arch modules lazily)."""
    from pyiqa.archs import _lazy_import_arch  # the import pyiqa's own build_network runs first
    from pyiqa.utils.registry import ARCH_REGISTRY

    if type_name not in ARCH_REGISTRY:
        _lazy_import_arch(type_name)
    return ARCH_REGISTRY.get(type_name)


def no_download_options(arch_cls: type) -> dict[str, Any]:
    """Constructor options that switch off every pretrained download of a pyiqa architecture."""
    opts = {}
    for pname, p in inspect.signature(arch_cls.__init__).parameters.items():
        if "pretrain" in pname and not pname.endswith("_path"):
            opts[pname] = None if isinstance(p.default, str) or p.default is None else False
    return opts


def pyiqa_config(metric: str) -> dict[str, Any]:
    """pyiqa's default config of an NR metric; unknown or full-reference names are one-line errors."""
    from pyiqa.default_model_configs import DEFAULT_CONFIGS

    if metric not in DEFAULT_CONFIGS:
        import difflib

        close = difflib.get_close_matches(metric, list(DEFAULT_CONFIGS), n=3, cutoff=0.5)
        raise RobustgridError(f"unknown pyiqa metric {metric!r}" + (f"; did you mean {', '.join(close)}?"
                                                                    if close else ""))
    cfg = DEFAULT_CONFIGS[metric]
    if cfg.get("metric_mode") != "NR":
        raise RobustgridError(f"pyiqa metric {metric!r} is full-reference; an IQA target must be no-reference")
    return cfg


def pyiqa_scorer(metric: str, weights: str | Path | None = None, **opts: Any) -> nn.Module:
    """pyiqa's NR metric ``metric`` built offline (as_loss=True: differentiable), weights loaded safely."""
    import pyiqa

    arch_cls = pyiqa_arch(pyiqa_config(metric)["metric_opts"]["type"])
    kwargs = {**no_download_options(arch_cls), **opts}
    try:
        scorer = pyiqa.create_metric(metric, as_loss=True, loss_reduction="none", device="cpu", **kwargs)
    except Exception as exc:  # pyiqa raises assorted errors (download, bad option); all mean the same here
        raise RobustgridError(f"pyiqa could not build {metric!r} offline: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:160] if str(exc) else ''}") from None
    if weights is not None:
        load_weights(scorer.net, weights)
    return scorer


@register_target_prefix("pyiqa", task="iqa")
def pyiqa_target(arch: str, weights: str | Path | None = None, score_range: tuple[float, float] | None = None,
                 lower_better: bool | None = None, input_shape: tuple[int, int, int] = (3, 224, 224),
                 name: str | None = None, **opts: Any) -> Target:
    """A pyiqa NR model (e.g. pyiqa:musiq) with local weights; range and direction from pyiqa's metadata.

    ``score_range`` / ``lower_better`` override the metadata (required where pyiqa leaves an end open).
    """
    name = name or f"pyiqa:{arch}"
    cfg = pyiqa_config(arch)
    if score_range is None:
        score_range = parse_pyiqa_range(cfg.get("score_range"))
        check_score_range(score_range, f"{name!r} (pyiqa gives no closed range)")
    learned = no_download_options(pyiqa_arch(cfg["metric_opts"]["type"]))  # has pretrained weights to replace
    if weights is None and learned:
        raise RobustgridError(f"{name} needs weights = PATH to a local checkpoint (nothing is downloaded)")
    scorer = pyiqa_scorer(arch, weights, **opts)
    provenance = {"architecture": arch, "source": "pyiqa", "options": opts, "pyiqa_score_range": cfg.get("score_range"),
                  "weights": str(weights) if weights else None, "sha256": file_sha256(weights) if weights else None}
    direction = bool(scorer.lower_better) if lower_better is None else lower_better
    return iqa_target(name, scorer, score_range, direction, input_shape, provenance)


class StraightThroughRound(TorchFunctionMode):
    """Inside this mode ``torch.round`` keeps its exact forward value but passes the gradient through unchanged."""

    def __torch_function__(self, func, types, args=(), kwargs=None):  # noqa: ANN001, ANN204 (torch protocol)
        kwargs = kwargs or {}
        if func in (torch.round, Tensor.round) and isinstance(args[0], Tensor) and args[0].requires_grad:
            x = args[0]
            return x + (func(*args, **kwargs) - x).detach()
        return func(*args, **kwargs)


class StraightThroughPIQE(nn.Module):
    """pyiqa's PIQE (0-100, lower = better) whose internal 8-bit rounding has a straight-through gradient.

    PIQE rounds the normalised luma to integers, which zeroes every input gradient; the straight-through
    estimator keeps the score identical and lets white-box and ensemble attacks use it as a source.
    """

    def __init__(self) -> None:
        super().__init__()
        self.scorer = pyiqa_scorer("piqe")

    def forward(self, x: Tensor) -> Tensor:
        with StraightThroughRound():
            return self.scorer(x)


@register_target("piqe", task="iqa")
def piqe_target(input_shape: tuple[int, int, int] = (3, 48, 48)) -> Target:
    """PIQE (pyiqa, weight-free, 0-100, lower = better quality) with a straight-through rounding gradient."""
    return iqa_target("piqe", StraightThroughPIQE(), (0.0, 100.0), True, input_shape,
                      {"architecture": "piqe", "source": "pyiqa", "weights": None,
                       "gradient": "straight-through through the internal rounding"})


NIQE_FEATURES = 36  # NIQE's multivariate Gaussian lives on 18 features at 2 scales
NIQE_BLOCK = 96     # pyiqa's NIQE cuts images into 96 x 96 blocks; a covariance needs at least two


def read_niqe_params(path: str | Path) -> tuple[Any, Any]:
    """NIQE's pristine-image model (mu (36,), cov (36, 36)) from basicsr's ``niqe_pris_params.npz`` or
    pyiqa's ``niqe_modelparameters.mat``; read without unpickling, checked for shape and finiteness."""
    import numpy as np
    import scipy.io

    path = Path(path)
    if not path.is_file():
        raise RobustgridError(f"NIQE parameter file {path} does not exist (see docs/iqa.md: make niqe-params)")
    keys = {".npz": ("mu_pris_param", "cov_pris_param"), ".mat": ("mu_prisparam", "cov_prisparam")}
    if path.suffix not in keys:
        raise RobustgridError(f"NIQE parameter file {path} must be a basicsr .npz or a pyiqa .mat")
    try:
        data = np.load(path, allow_pickle=False) if path.suffix == ".npz" else scipy.io.loadmat(path)
        mu, cov = (np.asarray(data[k], dtype=np.float64) for k in keys[path.suffix])
    except Exception as exc:  # corrupt archive, pickled arrays, missing keys: all one message
        raise RobustgridError(f"cannot read NIQE parameters from {path}: {type(exc).__name__}: {exc}"[:240]) from None
    mu = mu.reshape(-1)
    if mu.shape != (NIQE_FEATURES,) or cov.shape != (NIQE_FEATURES, NIQE_FEATURES):
        raise RobustgridError(f"NIQE parameters in {path} have shapes {mu.shape} and {cov.shape}; expected "
                              f"({NIQE_FEATURES},) and ({NIQE_FEATURES}, {NIQE_FEATURES})")
    if not (np.isfinite(mu).all() and np.isfinite(cov).all()):
        raise RobustgridError(f"NIQE parameters in {path} contain NaN or infinity")
    return mu, cov


def default_niqe_params() -> Path:
    """Where ``make niqe-params`` puts basicsr's NIQE parameters: $ROBUSTGRID_HOME/params/niqe_pris_params.npz."""
    from robustgrid.models.cache import robustgrid_home

    return robustgrid_home() / "params" / "niqe_pris_params.npz"


# basicsr's source package on PyPI ships NIQE's standard parameters (the MATLAB release's, as numpy arrays)
BASICSR_SDIST = ("https://files.pythonhosted.org/packages/86/41/00a6b000f222f0fa4c6d9e1d6dcc9811a374cabb8abb9d408b7"
                 "7de39648c/basicsr-1.4.2.tar.gz")
BASICSR_SHA256 = "b89b595a87ef964cda9913b4d99380ddb6554c965577c0c10cb7b78e31301e87"
BASICSR_MEMBER = "basicsr-1.4.2/basicsr/metrics/niqe_pris_params.npz"


def fetch_niqe_params(dest: str | Path | None = None, url: str = BASICSR_SDIST, sha256: str = BASICSR_SHA256,
                      member: str = BASICSR_MEMBER) -> Path:
    """Download basicsr's source package (the only network use), check its SHA-256, extract the NIQE npz.

    Nothing is written unless the archive matches ``sha256`` and the extracted parameters read back valid.
    """
    import hashlib
    import io
    import tarfile
    import urllib.request

    dest = Path(dest) if dest is not None else default_niqe_params()
    try:
        with urllib.request.urlopen(url, timeout=60) as response:  # noqa: S310 (a pinned https or file URL)
            blob = response.read()
    except OSError as exc:
        raise RobustgridError(f"cannot download {url}: {exc}") from None
    got = hashlib.sha256(blob).hexdigest()
    if got != sha256:
        raise RobustgridError(f"{url} has SHA-256 {got[:16]}..., expected {sha256[:16]}...; nothing written")
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:gz") as tar:
        try:
            data = tar.extractfile(member)
        except KeyError:
            data = None
        if data is None:
            raise RobustgridError(f"{url} holds no {member}")
        payload = data.read()
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".tmp.npz")
    tmp.write_bytes(payload)
    try:
        read_niqe_params(tmp)
    except RobustgridError:
        tmp.unlink()
        raise
    tmp.replace(dest)
    return dest


@register_target("niqe", task="iqa")
def niqe_target(params: str | Path | None = None, input_shape: tuple[int, int, int] = (3, 384, 384),
                score_range: tuple[float, float] = (0.0, 100.0)) -> Target:
    """NIQE (pyiqa, weight-free natural-scene statistics, lower = better) from a local parameter file.

    Images need at least two 96 x 96 blocks; pyiqa's rounding inside NIQE is already differentiable.
    """
    import scipy.io

    from robustgrid.models.cache import robustgrid_home

    path = Path(params) if params is not None else default_niqe_params()
    mu, cov = read_niqe_params(path)
    shape = tuple(int(v) for v in input_shape)
    if len(shape) != 3 or (shape[1] // NIQE_BLOCK) * (shape[2] // NIQE_BLOCK) < 2:
        raise RobustgridError(f"niqe needs images of at least two {NIQE_BLOCK}x{NIQE_BLOCK} blocks, "
                              f"got input_shape {input_shape!r}")
    digest = file_sha256(path)
    mat = robustgrid_home() / "params" / f"niqe-{digest[:16]}.mat"  # the layout pyiqa's NIQE reads
    if not mat.is_file():
        mat.parent.mkdir(parents=True, exist_ok=True)
        tmp = mat.with_suffix(".tmp.mat")
        scipy.io.savemat(tmp, {"mu_prisparam": mu[None], "cov_prisparam": cov})
        tmp.replace(mat)
    scorer = pyiqa_scorer("niqe", pretrained_model_path=str(mat))
    return iqa_target("niqe", scorer, score_range, True, shape,
                      {"architecture": "niqe", "source": "pyiqa", "params": str(path), "sha256": digest})
