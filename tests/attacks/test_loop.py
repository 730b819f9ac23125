"""Properties of the shared loop: budget respected, accuracy falls, early stop, checkpoints, costs."""

from __future__ import annotations

import copy

import pytest
import torch

from robustgrid.attacks import build_attack
from robustgrid.core import RobustgridError


def accuracy(model, x, y) -> float:
    with torch.no_grad():
        return (model(x).argmax(1) == y).float().mean().item()


@pytest.mark.parametrize("name", ["pgd", "mifgsm"])
def test_large_budget_breaks_the_model(zoo_resnet, fmnist_batch, name):
    x, y = fmnist_batch
    clean = accuracy(zoo_resnet.module, x, y)
    adv = build_attack(name, eps=0.3, steps=20, rel_step_size=0.1)(zoo_resnet.module, x, y)
    assert clean >= 0.8
    assert accuracy(zoo_resnet.module, adv, y) <= 0.05
    assert (adv - x).abs().max().item() <= 0.3 + 1e-6
    assert adv.min().item() >= 0 and adv.max().item() <= 1


def test_accuracy_falls_with_budget(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    accs = [accuracy(zoo_resnet.module, build_attack("pgd", eps=e, steps=10)(zoo_resnet.module, x, y), y)
            for e in (0.0, 0.02, 0.05, 0.1)]
    assert all(a >= b for a, b in zip(accs, accs[1:])), accs
    assert accs[0] - accs[-1] > 0.3


def test_checkpoints_are_prefixes_of_one_run(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    attack = build_attack("pgd", eps=0.1, steps=8, step_size=0.02)
    res = attack.run(zoo_resnet.module, x, y, seed=4, checkpoints=[2, 5, 8])
    short = build_attack("pgd", eps=0.1, steps=5, step_size=0.02)(zoo_resnet.module, x, y, seed=4)
    assert torch.equal(res.checkpoints[5], short)  # the 5-step prefix is the 5-step attack
    assert torch.equal(res.checkpoints[8], res.x_adv)
    assert res.grad_evals_at == {2: 2 * len(x), 5: 5 * len(x), 8: 8 * len(x)}


def test_early_stop_only_lowers_accuracy_and_saves_work(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    plain = build_attack("pgd", eps=0.1, steps=10).run(zoo_resnet.module, x, y, seed=0)
    stop = build_attack("pgd", eps=0.1, steps=10).run(zoo_resnet.module, x, y, seed=0, early_stop=True)
    assert accuracy(zoo_resnet.module, stop.x_adv, y) <= accuracy(zoo_resnet.module, plain.x_adv, y)
    assert stop.grad_evals < plain.grad_evals == 10 * len(x)


def test_early_stop_off_is_the_plain_run_and_leaves_the_attack_unchanged(zoo_resnet, fmnist_batch):
    """early_stop is an argument of one run: a run with it on does not leak into the next run of the same object."""
    x, y = fmnist_batch
    attack = build_attack("pgd", eps=0.05, steps=6)
    attack.run(zoo_resnet.module, x, y, seed=2, early_stop=True)
    after = attack.run(zoo_resnet.module, x, y, seed=2, early_stop=False)
    fresh = build_attack("pgd", eps=0.05, steps=6).run(zoo_resnet.module, x, y, seed=2)
    assert torch.equal(after.x_adv, fresh.x_adv)
    assert after.grad_evals == fresh.grad_evals == 6 * len(x) and after.forwards == fresh.forwards == 0


@pytest.mark.parametrize("eps", [0.03, 0.1])
def test_early_stop_freezes_each_sample_at_its_first_fooling_iterate(zoo_resnet, fmnist_batch, eps):
    """Independent reference from one plain run: sample i ends at the first iterate (random start included) that
    fools the model, or at the last one, and costs one gradient per step it was still in the batch."""
    x, y = fmnist_batch
    attack = build_attack("pgd", eps=eps, steps=10)
    stop = attack.run(zoo_resnet.module, x, y, seed=3, early_stop=True)
    plain = attack.run(zoo_resnet.module, x, y, seed=3, checkpoints=range(1, 11))
    iterates = [attack.start(x, eps, torch.Generator().manual_seed(3))] + [plain.checkpoints[k] for k in range(1, 11)]
    with torch.no_grad():
        fooled = torch.stack([zoo_resnet.module(xi).argmax(1) != y for xi in iterates[:-1]])  # (steps, N)
    first = torch.where(fooled.any(0), fooled.int().argmax(0), torch.full_like(y, 10))
    assert bool((first < 10).any()) and (eps > 0.05 or bool((first == 10).any()))  # at 0.03 some never fool it
    reference = torch.stack([iterates[int(k)][i] for i, k in enumerate(first)])
    assert torch.equal(stop.x_adv, reference)
    assert stop.grad_evals == int(torch.where(first < 10, first + 1, first).sum())
    assert stop.forwards == 0  # the gradient pass's own outputs decide: PGD does not transform its input


def test_ensemble_counts_each_source(zoo_resnet, fmnist_batch):
    x, y = fmnist_batch
    res = build_attack("pgd", eps=0.05, steps=3).run([zoo_resnet.module, zoo_resnet.module], x, y, seed=0)
    assert res.grad_evals == 2 * 3 * len(x)


@pytest.mark.parametrize("params, message", [
    ({"eps": -0.1}, "eps must be a finite number >= 0"),
    ({"eps": float("nan")}, "eps must be a finite number >= 0"),
    ({"steps": 0}, "steps must be an integer >= 1"),
    ({"norm": "l3"}, "pgd: norm must be one of linf, l2, got 'l3'"),
    ({"stepz": 3}, "did you mean steps"),
])
def test_bad_parameters(params, message):
    with pytest.raises(RobustgridError, match=message):
        build_attack("pgd", **params)


def test_unknown_attack_lists_close_names():
    with pytest.raises(RobustgridError, match="unknown attack 'pdg'; did you mean pgd"):
        build_attack("pdg")
    with pytest.raises(RobustgridError, match="did you mean PGD"):
        build_attack("torchattacks:PDG")


@pytest.mark.parametrize("x, message", [
    (torch.rand(2, 1, 28, 28) * 2, r"must lie in \[0, 1\]"),
    (torch.full((2, 1, 28, 28), float("nan")), "contain NaN"),
    (torch.rand(1, 28, 28), r"shape \(N, C, H, W\)"),
])
def test_bad_images(zoo_resnet, x, message):
    with pytest.raises(RobustgridError, match=message):
        build_attack("pgd")(zoo_resnet.module, x, torch.zeros(len(x), dtype=torch.long))


def test_only_attacks_that_observe_pay_for_objective_values(zoo_resnet, fmnist_batch):
    """PGD keeps the floor (one gradient pass per step, no forwards); APGD's observe sees every pass's values."""
    x, y = fmnist_batch
    seen: list[int] = []
    apgd = build_attack("apgd", eps=0.02, steps=3)
    observe = apgd.observe
    apgd.observe = lambda step, xa, grad, values, hits, state, idx: (seen.append(len(values)),
                                                                       observe(step, xa, grad, values, hits, state,
                                                                               idx))[1]
    apgd.run(zoo_resnet.module, x, y, seed=0)
    robust = int((zoo_resnet.module(x).argmax(1) == y).sum())
    assert seen == [robust] * 3
    pgd = build_attack("pgd", eps=0.02, steps=3)
    assert not pgd.observes and apgd.observes
    res = pgd.run(zoo_resnet.module, x, y, seed=0)
    assert res.grad_evals == 3 * len(x) and res.forwards == 0


PER_SAMPLE_EPS = (0.0, 0.02, 0.05, 0.1)


@pytest.mark.parametrize("name, params", [
    ("pgd", {"random_start": False}),
    ("pgd", {"random_start": False, "norm": "l2", "rel_step_size": 0.3}),
    ("mifgsm", {}),
    ("ti", {"kernel_size": 3}),
])
@pytest.mark.parametrize("early_stop", [False, True])
def test_a_per_sample_eps_run_is_each_samples_float_run(zoo_resnet, fmnist_batch, name, params, early_stop):
    """Sample by sample, one run with an eps tensor equals the run of the whole batch at that sample's float eps:
    iterates at every checkpoint, the answer, and the sample's gradient evaluations (none at eps 0). Bit for bit
    under Linf; under L2 up to float rounding (the float projection divides by the norm as 1 / norm * eps)."""
    x, y = fmnist_batch
    scale = 20 if params.get("norm") == "l2" else 1
    eps = torch.tensor([PER_SAMPLE_EPS[i % 4] * scale for i in range(len(x))], dtype=torch.float64)
    attack = build_attack(name, eps=0.1, steps=6, **params)
    mixed = attack.run(zoo_resnet.module, x, y, seed=3, eps=eps, checkpoints=[1, 4, 6], early_stop=early_stop)
    exact = params.get("norm") != "l2"

    def same(a: torch.Tensor, b: torch.Tensor) -> None:
        if exact:
            assert torch.equal(a, b)
        else:
            torch.testing.assert_close(a, b, atol=1e-6, rtol=0)
    for e in sorted(set(eps.tolist())):
        rows = eps == e
        alone = attack.run(zoo_resnet.module, x, y, seed=3, eps=e, checkpoints=[1, 4, 6], early_stop=early_stop)
        for k in (1, 4, 6):
            same(mixed.checkpoints[k][rows], alone.checkpoints[k][rows])
            spent = mixed.grad_evals_rows_at[k][rows]
            assert int(spent.sum()) == (int(alone.grad_evals_rows_at[k][rows].sum()) if e else 0), (e, k)
        same(mixed.x_adv[rows], alone.x_adv[rows])
    assert mixed.grad_evals == int(mixed.grad_evals_rows_at[6].sum())


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_a_per_sample_random_start_fills_each_samples_own_ball(fmnist_batch, norm):
    """The random start with an eps tensor lies in each sample's ball, reaches out to its edge (Linf) and leaves a
    sample at eps 0 clean; with every eps equal, the L2 start is the float run's draw exactly."""
    x, _ = fmnist_batch
    attack = build_attack("pgd", norm=norm, eps=0.1, steps=1, random_start=True)
    eps = torch.tensor([PER_SAMPLE_EPS[i % 4] for i in range(len(x))]).view(-1, 1, 1, 1)
    delta = attack.start(x, eps, torch.Generator().manual_seed(0)) - x
    size = delta.flatten(1).abs().amax(1) if norm == "linf" else delta.flatten(1).norm(dim=1)
    assert bool((size <= eps.flatten() + 1e-6).all())
    assert bool((size[eps.flatten() == 0] == 0).all())
    if norm == "linf":  # of 784 uniform pixels in [-eps, eps], clipped to [0, 1], the largest is near eps
        assert bool((size[eps.flatten() > 0] >= 0.9 * eps.flatten()[eps.flatten() > 0]).all())
    else:
        same = attack.start(x, torch.full_like(eps, 0.1), torch.Generator().manual_seed(0))
        assert torch.equal(same, attack.start(x, 0.1, torch.Generator().manual_seed(0)))


@pytest.mark.parametrize("name, eps, message", [
    ("pgd", torch.zeros(3),
     "pgd: a per-sample eps must be a real tensor of shape (4,), got torch.float32 of shape (3,)"),
    ("pgd", torch.tensor([0.1, -0.1, 0.0, 0.2]), "pgd: a per-sample eps must be finite and >= 0, got -0.1 at sample 1"),
    ("apgd", torch.zeros(4),
     "apgd: eps must be a float (this attack has no per-sample eps), got a tensor of shape (4,)"),
])
def test_a_bad_per_sample_eps_is_a_one_line_error(zoo_resnet, fmnist_batch, name, eps, message):
    x, y = fmnist_batch
    with pytest.raises(RobustgridError) as err:
        build_attack(name, eps=0.1, steps=2).run(zoo_resnet.module, x[:4], y[:4], seed=0, eps=eps)
    assert str(err.value) == message


@pytest.mark.parametrize("name", ["pgd", "mifgsm"])
@pytest.mark.parametrize("per_sample", [False, True])
def test_recorded_outcomes_are_the_models_predictions_of_each_checkpoint(zoo_resnet, fmnist_batch, name, per_sample):
    """Under early stop the passes see every iterate a checkpoint keeps: their predictions are a forward's of the
    checkpoint, and only the final iterates of samples never fooled cost a forward; the run is otherwise the same."""
    x, y = fmnist_batch
    model = zoo_resnet.module
    eps = torch.linspace(0.005, 0.05, len(x)) if per_sample else 0.02
    attack = build_attack(name, eps=0.05, steps=8)
    assert attack.records_outcomes(1, early_stop=True)
    res = attack.run(model, x, y, seed=5, eps=eps, checkpoints=[1, 3, 8], early_stop=True, record_outcomes=True)
    plain = attack.run(model, x, y, seed=5, eps=eps, checkpoints=[1, 3, 8], early_stop=True)
    assert plain.outcomes_at == {} and torch.equal(plain.x_adv, res.x_adv) and plain.grad_evals == res.grad_evals
    assert sorted(res.outcomes_at) == [1, 3, 8]
    for k, xk in res.checkpoints.items():
        with torch.no_grad():
            pred = model(xk).argmax(1)
        assert (pred.numpy() == res.outcomes_at[k]).all(), k
        assert torch.equal(res.fooled_at[k], pred != y), k
    never = int((~res.fooled_at[8]).sum()) + int((res.fooled_at[8] & ~res.fooled_at[3]).sum())
    assert 0 < res.forwards <= never + len(x)


@pytest.mark.parametrize("name, params", [("di", {}), ("apgd", {}), ("pgd", {"restarts": 2})])
def test_only_a_plain_pass_records_outcomes(name, params, zoo_resnet, fmnist_batch):
    """A view (DI), an observed objective or best point (APGD), restarts: the pass does not see the iterate kept."""
    attack = build_attack(name, eps=0.02, steps=3, **params)
    assert not attack.records_outcomes(1, early_stop=True)
    pgd = build_attack("pgd", eps=0.02, steps=3)
    assert not pgd.records_outcomes(2, early_stop=True) and not pgd.records_outcomes(1, early_stop=False)
    assert not pgd.records_outcomes(1, early_stop=True, eot_samples=2)


@pytest.mark.parametrize("name", ["pgd", "mifgsm", "di"])
def test_runs_ticked_together_step_as_they_would_alone(zoo_resnet, fmnist_batch, name):
    """Runs opened at other budgets, seeds and sizes and stepped together (their passes shared where the attack
    ``shares_passes``) give each run's own iterates, checkpoints and costs. In float64: in float32 a shared pass's
    other batch size can move a gradient component near 0 across the sign (seen once in 64 samples)."""
    x, y = fmnist_batch
    x, model = x.double(), copy.deepcopy(zoo_resnet.module).double()
    attack = build_attack(name, eps=0.05, steps=6)
    assert attack.shares_passes() == (name != "di")
    ramp = torch.linspace(0.0, 0.08, len(x) - 40, dtype=torch.float64)
    specs = [(x[:40], y[:40], 3, 0.03), (x[40:], y[40:], 4, ramp)]
    runs = [attack.open(model, xs, ys, seed=s, eps=e, checkpoints=[2, 6], early_stop=True)
            for xs, ys, s, e in specs]
    while runs[0].step < attack.steps:
        attack.tick([model], runs)
    for run, (xs, ys, s, e) in zip(runs, specs, strict=True):
        alone = attack.run(model, xs, ys, seed=s, eps=e, checkpoints=[2, 6], early_stop=True)
        assert torch.equal(run.result.x_adv, alone.x_adv)
        assert all(torch.equal(run.result.checkpoints[k], alone.checkpoints[k]) for k in (2, 6))
        assert run.result.grad_evals == alone.grad_evals and run.result.grad_evals_at == alone.grad_evals_at
