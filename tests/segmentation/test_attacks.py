"""DI, TI and SegPGD hooks, and every attack of the segmentation suite on segmenters and classifiers."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from robustgrid.attacks import build_attack
from robustgrid.attacks.di import resize_pad
from robustgrid.attacks.ti import smooth, ti_kernel
from robustgrid.core import RobustgridError

SEG_ATTACKS = ["pgd", "mifgsm", "di", "ti", "segpgd", "segtrans", "bsr"]
COPIES = {"segtrans": 8, "bsr": 20}  # gradient evaluations per step and image (their defaults)


@pytest.mark.parametrize("name", SEG_ATTACKS)
def test_every_attack_raises_the_segmentation_loss_within_budget(tiny_segmenter, seg_batch, name):
    x, y = seg_batch
    task_loss = build_attack("pgd", task="segmentation").task.objective
    res = build_attack(name, eps=0.1, steps=5, task="segmentation").run(tiny_segmenter, x, y, seed=1)
    assert res.x_adv.shape == x.shape and res.grad_evals == COPIES.get(name, 1) * 5 * len(x)
    assert (res.x_adv - x).abs().max() <= 0.1 + 1e-6 and 0 <= res.x_adv.min() and res.x_adv.max() <= 1
    with torch.no_grad():
        assert task_loss(tiny_segmenter(res.x_adv), y).mean() > task_loss(tiny_segmenter(x), y).mean() + 0.2


@pytest.mark.parametrize("name", ["di", "ti", "segpgd", "segtrans", "bsr"])
def test_attacks_work_on_classifiers(name):
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3, padding=1), torch.nn.AdaptiveAvgPool2d(2),
                                torch.nn.Flatten(), torch.nn.Linear(16, 5)).eval().requires_grad_(False)
    x, y = torch.rand(6, 1, 12, 12), torch.arange(6) % 5
    adv = build_attack(name, eps=0.05, steps=3, task="classification")(model, x, y)
    assert adv.shape == x.shape and (adv - x).abs().max() <= 0.05 + 1e-6


def test_di_moves_the_label_map_with_the_image():
    y = torch.zeros(1, 20, 20, dtype=torch.long)
    y[:, 6:14, 4:16] = 3
    x = (y == 3).float()[:, None].expand(1, 3, 20, 20).contiguous()
    xt = resize_pad(x, (17, 17), (20, 20), top=2, left=1)
    yt = resize_pad(y, (17, 17), (20, 20), top=2, left=1, labels=True)
    pad = torch.ones(20, 20, dtype=torch.bool)
    pad[2:19, 1:18] = False
    assert (yt[0][pad] == 255).all() and (xt[0, :, pad] == 0).all()
    inside, outside = xt[0, 0] == 1, (xt[0, 0] == 0) & ~pad
    assert inside.sum() > 40 and (yt[0][inside] == 3).all() and (yt[0][outside] == 0).all()


def test_di_view_keeps_size_and_applies_with_probability_p(seg_batch):
    x, y = seg_batch
    always = build_attack("di", diversity_prob=1.0, task="segmentation")
    never = build_attack("di", diversity_prob=0.0, task="segmentation")
    gen = torch.Generator().manual_seed(0)
    xs, ys = always.view(x, y, gen)
    assert xs.shape == x.shape and ys.shape == y.shape and (ys == 255).sum() > (y == 255).sum()
    assert never.view(x, y, gen)[0] is x
    bigger = build_attack("di", diversity_prob=1.0, resize_rate=1.25, task="segmentation")
    xb, yb = bigger.view(x, y, gen)
    assert xb.shape[-2:] == yb.shape[-2:] == (20, 20)


def test_ti_direction_is_the_sign_of_the_smoothed_gradient():
    kernel = ti_kernel(5, 3.0)
    assert kernel.sum().item() == pytest.approx(1.0) and torch.equal(kernel, kernel.T)
    assert kernel[2, 2] == kernel.max()
    grad = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    ti = build_attack("ti", kernel_size=5, nsig=3.0)
    expected = F.conv2d(grad, kernel.expand(3, 1, 5, 5), padding=2, groups=3).sign()
    assert torch.equal(ti.direction(grad, ti.init_state(grad), torch.arange(2)), expected)
    impulse = torch.zeros(1, 1, 7, 7)
    impulse[0, 0, 3, 3] = 1.0
    torch.testing.assert_close(smooth(impulse, kernel)[0, 0, 1:6, 1:6], kernel)


def test_segpgd_weights_shift_from_correct_to_wrong_pixels():
    out = torch.tensor([[[[2.0, 0.0]], [[0.0, 2.0]]]])  # (1, 2 classes, 1, 2): predicts 0 then 1
    y = torch.tensor([[[0, 0]]])                         # pixel 0 right, pixel 1 wrong
    ce = F.cross_entropy(out, y, reduction="none")[0, 0]
    attack = build_attack("segpgd", steps=4)
    for step in (1, 3, 5):
        lam = (step - 1) / 8
        expected = ((1 - lam) * ce[0] + lam * ce[1]) / 2
        assert attack.objective(out, y, step).item() == pytest.approx(expected.item())
    assert attack.objective(out, y, 1).item() == pytest.approx(ce[0].item() / 2)  # wrong pixels ignored at t=1


def test_segpgd_refuses_tasks_without_class_logits(monkeypatch):
    from robustgrid.models.tasks import TASKS, Classification

    class Scores(Classification):
        name = "scores"

    monkeypatch.setitem(TASKS._entries, "scores", TASKS._entries["classification"].__class__(
        "scores", Scores, "score regression"))
    with pytest.raises(RobustgridError, match="segpgd needs class logits"):
        build_attack("segpgd", task="scores")


@pytest.mark.parametrize("name, params, message", [
    ("di", {"diversity_prob": 1.5}, r"diversity_prob must be a finite number in \[0, 1\]"),
    ("ti", {"kernel_size": 4}, "kernel_size must be an odd integer"),
])
def test_bad_parameters(name, params, message):
    with pytest.raises(RobustgridError, match=message):
        build_attack(name, **params)
