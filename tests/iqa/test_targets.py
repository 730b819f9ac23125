"""IQA targets: pyiqa NR models from a local random checkpoint, and PIQE with its straight-through gradient."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from robustgrid.core import RobustgridError
from robustgrid.models.iqa_models import parse_pyiqa_range, pyiqa_arch, pyiqa_target
from robustgrid.models.target import build_target


@pytest.fixture(scope="module")
def cnniqa_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, torch.nn.Module]:
    """A randomly initialised CNNIQA saved the way pyiqa ships weights: torch.save({'params': state_dict})."""
    torch.manual_seed(0)
    net = pyiqa_arch("CNNIQA")(pretrained=None)
    path = tmp_path_factory.mktemp("pyiqa") / "cnniqa_random.pth"
    torch.save({"params": net.state_dict()}, path)
    return path, net.eval()


def test_pyiqa_target_scores_like_the_network_it_loaded(cnniqa_checkpoint) -> None:
    path, net = cnniqa_checkpoint
    target = build_target("pyiqa:cnniqa", weights=str(path), input_shape=[3, 32, 32])
    assert (target.task, target.score_range, target.lower_better) == ("iqa", (0.0, 1.0), False)  # '~0, ~1'
    assert target.input_shape == (3, 32, 32) and target.provenance["sha256"]
    x = torch.rand(3, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        raw = net(x).view(-1)  # the independent reference: pyiqa's own module with the same weights
    torch.testing.assert_close(target(x), 100 * raw)  # range (0, 1) mapped onto quality 0-100
    xg = x.clone().requires_grad_(True)
    assert torch.autograd.grad(target(xg).sum(), xg)[0].abs().sum() > 0


def test_lower_better_metadata_flips_the_quality_scale(cnniqa_checkpoint) -> None:
    path, net = cnniqa_checkpoint
    flipped = pyiqa_target("cnniqa", weights=path, lower_better=True, score_range=[0, 2], input_shape=(3, 32, 32))
    x = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        torch.testing.assert_close(flipped(x), 100 * (1 - net(x).view(-1) / 2))


def test_pyiqa_target_errors() -> None:
    with pytest.raises(RobustgridError, match="needs weights = PATH"):
        build_target("pyiqa:cnniqa")
    with pytest.raises(RobustgridError, match="pyiqa gives no closed range"):
        build_target("pyiqa:pi")  # PI's range '~0, ~' is open at the top
    with pytest.raises(RobustgridError, match="unknown pyiqa metric 'cnnqia'; did you mean cnniqa"):
        pyiqa_target("cnnqia", weights="x.pth", score_range=(0, 1))
    with pytest.raises(RobustgridError, match="full-reference"):
        pyiqa_target("ssim", score_range=(0, 1))
    assert parse_pyiqa_range("~-1, ~0.1") == (-1.0, 0.1) and parse_pyiqa_range("0, ~") is None


def test_piqe_keeps_pyiqa_scores_and_gets_a_gradient() -> None:
    import pyiqa

    target = build_target("piqe")
    assert (target.score_range, target.lower_better, target.input_shape) == ((0.0, 100.0), True, (3, 48, 48))
    gen = torch.Generator().manual_seed(0)
    x = (torch.linspace(0, 1, 48).view(1, 1, 1, 48) * 0.6 + 0.3 * torch.rand(4, 3, 48, 48, generator=gen))
    x = x.clamp(0, 1)
    plain = pyiqa.create_metric("piqe", device="cpu")
    with torch.no_grad():
        reference = plain(x).view(-1)
    torch.testing.assert_close(target(x), 100 - reference)  # same score, quality = 100 - PIQE
    xg = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(target(xg).sum(), xg)[0]
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()
    xp = xg.clone().detach().requires_grad_(True)
    raw = torch.autograd.grad(pyiqa.create_metric("piqe", as_loss=True, loss_reduction="none")(xp).sum(), xp,
                              allow_unused=True)[0]
    assert raw is None or raw.abs().sum() == 0  # without the straight-through rounding there is no gradient
