"""FMN against Foolbox 3.3.4's FMN attacks on the committed zoo; min_norms, the answer at eps, bad inputs."""

from __future__ import annotations

import foolbox as fb
import pytest
import torch

from robustgrid.attacks import build_attack
from robustgrid.core import RobustgridError

STEPS = 50


def norms(delta: torch.Tensor, norm: str) -> torch.Tensor:
    flat = delta.flatten(1)
    return flat.abs().amax(1) if norm == "linf" else flat.norm(dim=1)


def fooled(model, x, y) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) != y


def foolbox_norms(model, x, y, norm: str) -> torch.Tensor:
    """Foolbox's per-sample adversarial norm (inf where it failed), same steps."""
    cls = fb.attacks.LInfFMNAttack if norm == "linf" else fb.attacks.L2FMNAttack
    adv = cls(steps=STEPS).run(fb.PyTorchModel(model, bounds=(0, 1)), x, y)
    return torch.where(fooled(model, adv, y), norms(adv - x, norm), torch.inf)


@pytest.fixture(scope="module")
def batch(fmnist_batch):
    return fmnist_batch[0][:32], fmnist_batch[1][:32]


def test_linf_median_norm_within_ten_percent_of_foolbox(zoo_resnet, batch):
    x, y = batch
    m = zoo_resnet.module
    res = build_attack("fmn", norm="linf", eps=1.0, steps=STEPS).run(m, x, y, seed=0)
    ref = foolbox_norms(m, x, y, "linf")
    ours = res.min_norms.median()
    assert torch.isfinite(ours) and abs(ours - ref.median()) <= 0.10 * ref.median(), (ours, ref.median())


def test_l2_median_norm_at_most_foolbox_plus_ten_percent(zoo_resnet, batch):
    """One-sided: Foolbox 3.3.4's L2FMNAttack.project scales by min(1, norms / norms) = 1, so its L2 iterates are never
    projected onto the eps_k ball and its norms come out larger (measured median 0.85 vs ours 0.25 on 64 images)."""
    x, y = batch
    m = zoo_resnet.module
    res = build_attack("fmn", norm="l2", eps=10.0, steps=STEPS).run(m, x, y, seed=0)
    ref = foolbox_norms(m, x, y, "l2")
    assert torch.isfinite(res.min_norms[torch.isfinite(ref)]).all()  # fools every image Foolbox fools
    assert res.min_norms.median() <= 1.10 * ref.median(), (res.min_norms.median(), ref.median())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_min_norms_are_the_norms_of_the_answer_when_eps_is_large(zoo_resnet, batch, norm):
    x, y = batch
    m = zoo_resnet.module
    res = build_attack("fmn", norm=norm, eps=10.0, steps=20).run(m, x, y, seed=0)
    hit = fooled(m, res.x_adv, y)
    assert torch.equal(hit, torch.isfinite(res.min_norms))
    torch.testing.assert_close(norms(res.x_adv - x, norm)[hit], res.min_norms[hit], atol=1e-5, rtol=0)
    assert torch.equal(res.x_adv[~hit], x[~hit])  # x0 where none was found
    assert res.grad_evals == 20 * len(x)  # early stop never applies: a fooled sample keeps shrinking


@pytest.mark.parametrize(("norm", "eps"), [("linf", 0.02), ("l2", 0.3)])
def test_answer_at_eps_fools_exactly_where_the_minimal_norm_fits(zoo_resnet, batch, norm, eps):
    """Robust accuracy at eps is meaningful: x_adv stays within eps and fools iff the smallest norm found is <= eps."""
    x, y = batch
    m = zoo_resnet.module
    res = build_attack("fmn", norm=norm, eps=eps, steps=20).run(m, x, y, seed=0, early_stop=True)
    assert norms(res.x_adv - x, norm).max() <= eps + 1e-5
    fits = res.min_norms <= eps + 1e-6
    assert 0 < int(fits.sum()) < len(x)
    assert torch.equal(fooled(m, res.x_adv, y), fits)


def test_fmn_checkpoints_never_get_weaker(zoo_resnet, batch):
    x, y = batch
    m = zoo_resnet.module
    res = build_attack("fmn", eps=0.02, steps=12).run(m, x, y, seed=0, checkpoints=[4, 8, 12])
    hits = [int(fooled(m, res.checkpoints[k], y).sum()) for k in (4, 8, 12)]
    assert hits == sorted(hits) and torch.equal(res.checkpoints[12], res.x_adv)


def test_fmn_bad_inputs_are_one_line_errors():
    with pytest.raises(RobustgridError, match=r"^fmn: task must be one of classification, got 'segmentation'$"):
        build_attack("fmn", task="segmentation")
    with pytest.raises(RobustgridError, match=r"^fmn: gamma must be a finite number in \(0, 1\], got 2$"):
        build_attack("fmn", gamma=2)
