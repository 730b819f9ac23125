"""APGD and APGD-T against torchattacks' APGD/APGDT on the committed zoo; the schedule, answers, costs, bad inputs."""

from __future__ import annotations

import pytest
import torch
import torchattacks

from robustgrid.attacks import build_attack
from robustgrid.attacks.apgd import halving_schedule
from robustgrid.core import RobustgridError


def correct(model, x, y) -> torch.Tensor:
    with torch.no_grad():
        return model(x).argmax(1) == y


def accuracy(model, x, y) -> float:
    return correct(model, x, y).float().mean().item()


def reference(model, name: str, norm: str, eps: float, steps: int, n_target_classes: int = 9):
    """torchattacks' APGD (CE) or APGDT (targeted DLR) with the same budget."""
    tnorm = {"linf": "Linf", "l2": "L2"}[norm]
    if name == "apgd":
        return torchattacks.APGD(model, norm=tnorm, eps=eps, steps=steps, loss="ce", seed=0)
    ref = torchattacks.APGDT(model, norm=tnorm, eps=eps, steps=steps, n_classes=10, seed=0)
    ref.n_target_classes = n_target_classes
    return ref


# 64 images, 10 steps: the two implementations draw different random starts, so a sample near the boundary may
# fall either way; measured agreement on this set is exact (resnet, eps 0.02: 0.453 both), the bound allows 2 images
@pytest.mark.parametrize(("name", "norm", "eps"), [("apgd", "linf", 0.02), ("apgd-t", "linf", 0.02),
                                                   ("apgd", "l2", 0.5)])
def test_robust_accuracy_matches_torchattacks_on_64_images(zoo_resnet, fmnist_batch, name, norm, eps):
    x, y = fmnist_batch
    m = zoo_resnet.module
    ours = build_attack(name, norm=norm, eps=eps, steps=10).run(m, x, y, seed=0)
    ref = reference(m, name, norm, eps, 10)(x, y)
    clean, got, want = accuracy(m, x, y), accuracy(m, ours.x_adv, y), accuracy(m, ref, y)
    assert clean - got > 0.2  # the budget is one where the attack matters
    assert abs(got - want) <= 2 / 64 + 1e-9, (got, want)
    delta = (ours.x_adv - x).flatten(1)
    assert (delta.abs().amax(1) if norm == "linf" else delta.norm(dim=1)).max() <= eps + 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("target", ["fmnist-resnet", "fmnist-mobilenet", "fmnist-vit"])
@pytest.mark.parametrize("name", ["apgd", "apgd-t"])
def test_robust_accuracy_within_one_point_of_torchattacks_on_500_images(target, name, capsys):
    from robustgrid.models.data import build_dataset
    from robustgrid.models.zoo import zoo_target

    ds = build_dataset("fashion-mnist", split="test", size=500, seed=0)
    m = zoo_target(target, allow_train=False).module
    ours = build_attack(name, eps=0.02, steps=20).run(m, ds.images, ds.labels, seed=0)
    ref = reference(m, name, "linf", 0.02, 20)(ds.images, ds.labels)
    got, want = accuracy(m, ours.x_adv, ds.labels), accuracy(m, ref, ds.labels)
    with capsys.disabled():
        print(f"\n{name} on {target}, 500 images, Linf 0.02, 20 steps: ours {got:.3f}, torchattacks {want:.3f}")
    assert abs(got - want) <= 0.01


def test_halving_schedule_is_the_papers_checkpoints():
    """p_0 = 0, p_1 = 0.22, p_{j+1} = p_j + max(p_j - p_{j-1} - 0.03, 0.06), in iterations of a 100-step run."""
    p = [0.0, 0.22]
    while p[-1] + max(p[-1] - p[-2] - 0.03, 0.06) <= 1:
        p.append(p[-1] + max(p[-1] - p[-2] - 0.03, 0.06))
    schedule = halving_schedule(100)
    assert sorted(schedule) == [round(100 * q) for q in p[1:]]
    assert list(schedule.values()) == [round(100 * (b - a)) for a, b in zip(p, p[1:])]


def test_answers_fool_or_are_best_and_checkpoints_never_get_weaker(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    m = zoo_resnet.module
    res = build_attack("apgd", eps=0.02, steps=12).run(m, x, y, seed=1, checkpoints=[3, 6, 12])
    accs = [accuracy(m, res.checkpoints[k], y) for k in (3, 6, 12)]
    assert accs == sorted(accs, reverse=True) and torch.equal(res.checkpoints[12], res.x_adv)
    assert res.grad_evals_at[3] < res.grad_evals_at[6] < res.grad_evals_at[12] == res.grad_evals
    robust = int(correct(m, x, y).sum())  # only the clean-correct samples are attacked
    assert res.grad_evals == 12 * robust


def test_restarts_attack_only_the_samples_still_robust(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    m = zoo_resnet.module
    one = build_attack("apgd", eps=0.02, steps=8).run(m, x, y, seed=0)
    three = build_attack("apgd", eps=0.02, steps=8, restarts=3).run(m, x, y, seed=0)
    assert accuracy(m, three.x_adv, y) <= accuracy(m, one.x_adv, y)
    still = int(correct(m, one.x_adv, y).sum())
    assert one.grad_evals < three.grad_evals <= one.grad_evals + 2 * 8 * still


def test_apgd_raises_the_objective_on_segmentation_and_iqa(fmnist_batch):
    torch.manual_seed(0)
    seg = torch.nn.Conv2d(3, 4, 3, padding=1).eval().requires_grad_(False)
    x = torch.rand(3, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    y = seg(x).argmax(1)
    attack = build_attack("apgd", eps=0.05, steps=10, task="segmentation")
    assert attack.loss == "task"
    adv = attack(seg, x, y)
    task = attack.task
    assert (task.objective(seg(adv), y) > task.objective(seg(x), y)).all()
    # a linear scorer: the best Linf attack lowering it is known in closed form, x - eps sign(w) clipped to [0, 1]
    iqa = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 12 * 12, 1)).eval().requires_grad_(False)
    with torch.no_grad():
        iqa[1].bias.fill_(60.0)  # clean scores above mid-range: the attack lowers them
    adv = build_attack("apgd", eps=0.05, steps=10, task="iqa")(iqa, x, torch.zeros(3))
    best = torch.clamp(x - 0.05 * iqa[1].weight.view(1, 3, 12, 12).sign(), 0, 1)
    with torch.no_grad():
        reached, optimum = iqa(x) - iqa(adv), iqa(x) - iqa(best)
    assert (reached >= 0.99 * optimum).all() and (optimum > 0.3).all(), (reached, optimum)


def test_bad_inputs_are_one_line_errors(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    with pytest.raises(RobustgridError, match=r"^apgd: loss must be one of ce, dlr, margin, task, got 'cw'$"):
        build_attack("apgd", loss="cw")
    with pytest.raises(RobustgridError, match=r"^apgd: loss must be one of task, got 'dlr'$"):
        build_attack("apgd", loss="dlr", task="iqa")
    two = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(28 * 28, 2)).eval()
    with pytest.raises(RobustgridError, match=r"^apgd: loss 'dlr' needs at least 3 classes, got 2$"):
        build_attack("apgd", loss="dlr", steps=2).run(two, x[:4], y[:4] % 2, seed=0)
    with pytest.raises(RobustgridError, match=r"^apgd-t: n_target_classes must be at most 9 \(classes - 1\), got 12$"):
        build_attack("apgd-t", n_target_classes=12, steps=2).run(zoo_resnet.module, x[:4], y[:4], seed=0)
    with pytest.raises(RobustgridError, match=r"^apgd: checkpoints \[2\] below steps \(4\) need a single pass"):
        build_attack("apgd", restarts=2, steps=4).run(zoo_resnet.module, x[:4], y[:4], seed=0, checkpoints=[2, 4])
    with pytest.raises(RobustgridError, match="has no parameter 'step_size'"):
        build_attack("apgd", step_size=0.1)  # step-size free
