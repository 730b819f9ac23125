"""Threats as registered objects: what each attack differentiates, how it is planned, and that a new threat
needs nothing outside ``benchmark/threats.py``."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from robustgrid.benchmark import parse_config
from robustgrid.benchmark.cli import main
from robustgrid.benchmark.config import AttackSpec
from robustgrid.benchmark.planner import Unit, plan_suite
from robustgrid.benchmark.threats import (
    ORACLES,
    THREATS,
    Threat,
    exact,
    get_threat,
    list_threats,
    register_threat,
    threats_by_rank,
    threats_in_order,
)
from robustgrid.core import RobustgridError
from robustgrid.defenses import build_defense
from robustgrid.defenses.base import Purifier
from robustgrid.models.target import Target
from tests.benchmark import query_attacks

NAMES = ("whitebox", "transfer", "blind", "bpda", "adaptive", "score", "decision")


@pytest.fixture
def scratch_registry(monkeypatch):
    """Threats registered by a test are forgotten after it."""
    monkeypatch.setattr(THREATS, "_entries", dict(THREATS._entries))


def _suite_config(threats, defenses=("none", "gaussian")):
    return {"seed": 0, "suite": [{
        "name": "s", "task": "classification", "dataset": {"name": "fashion-mnist", "size": 8},
        "targets": ["fmnist-resnet", "fmnist-mobilenet"], "defenses": list(defenses), "threats": list(threats),
        "budget": {"eps": [0.0, 0.1], "checkpoints": [1]}, "attacks": [{"name": "pgd", "steps": 2}]}]}


def _identity(suite):
    ids = {"dataset": "d", **{t.name: f"w-{t.name}" for t in suite.targets}}
    return ids | {f"defense:{d.name}": f"p-{d.name}" for d in suite.defenses}


def test_the_seven_threats_in_leaderboard_order_and_ranking_preference():
    assert [t.name for t in threats_in_order()] == ["whitebox", "blind", "bpda", "adaptive", "transfer", "score",
                                                   "decision"]
    assert [t.name for t in threats_by_rank()] == ["adaptive", "whitebox", "bpda", "blind", "transfer", "score",
                                                  "decision"]
    assert [n for n, _ in list_threats()] == [t.name for t in threats_in_order()]
    assert all(desc and "\n" not in desc for _, desc in list_threats())


def test_each_threat_states_what_the_flags_and_the_runner_ask():
    th = {n: get_threat(n) for n in NAMES}
    assert {n for n in NAMES if th[n].expected_to_fall} == {"whitebox", "bpda", "adaptive"}
    assert {n for n in NAMES if not th[n].sees_model} == {"transfer"}
    assert {n for n in NAMES if th[n].needs_defense} == {"blind", "bpda", "adaptive"}
    assert {n for n in NAMES if th[n].per_defense} == {"bpda", "adaptive", "score", "decision"}
    assert {n for n in NAMES if th[n].cross_model} == {"transfer"}
    assert {n for n in NAMES if th[n].white_box} == {"whitebox"}
    assert {n: th[n].access for n in NAMES if th[n].queries} == {"score": "score", "decision": "decision"}
    assert th["blind"].rides_on == "whitebox" and all(th[n].rides_on is None for n in NAMES if n != "blind")
    assert {n for n in NAMES if th[n].allows_early_stop(randomized=False)} == set(NAMES) - {"transfer"}
    assert not any(th[n].allows_early_stop(randomized=True) for n in NAMES)
    # a run stops early only when the suite asks, the task has per-sample success and the threat allows it
    assert {n for n in NAMES if th[n].stops_early(True, True, randomized=False)} == set(NAMES) - {"transfer"}
    assert not any(th[n].stops_early(s, t, r) for n in NAMES
                   for s, t, r in [(False, True, False), (True, False, False), (True, True, True)])
    assert {n: th[n].eot_samples(True, 8) for n in NAMES} == {n: 8 if n == "adaptive" else 1 for n in NAMES}
    assert all(th[n].eot_samples(False, 8) == 1 for n in NAMES)


def test_unknown_threat_names_the_closest():
    with pytest.raises(RobustgridError, match=r"^unknown threat 'adaptiv'; did you mean adaptive"):
        get_threat("adaptiv")


class _Halve(Purifier):
    """x -> x^2 / 2: a purifier whose Jacobian (x) differs from the identity, so BPDA and exact differ."""

    name = "halve"

    def purify(self, x: torch.Tensor) -> torch.Tensor:
        return x * x / 2


def _target(name: str, seed: int) -> Target:
    torch.manual_seed(seed)
    return Target(name, "classification", nn.Sequential(nn.Flatten(), nn.Linear(16, 3)), (1, 4, 4), num_classes=3)


def _unit(threat: str, sources: tuple[str, ...], defense: str) -> Unit:
    return Unit("s", AttackSpec("pgd", 1), sources, threat, defense, 0.1, (1,), (), (), "k", 0)


def _grad(module: nn.Module, x: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    return torch.autograd.grad(module(x)[:, 0].sum(), x)[0]


def test_attack_modules_are_the_sources_or_the_purified_target_with_exact_or_identity_backward():
    targets = {"a": _target("a", 0), "b": _target("b", 1)}
    purifiers = {"none": build_defense("none"), "halve": _Halve()}
    x = torch.rand(5, 1, 4, 4)
    wb = get_threat("whitebox").attack_modules(targets, purifiers, _unit("whitebox", ("a",), "none"))
    assert wb == [targets["a"].module]
    tr = get_threat("transfer").attack_modules(targets, purifiers, _unit("transfer", ("a", "b"), "none"))
    assert tr == [targets["a"].module, targets["b"].module]
    f, w = targets["a"].module, targets["a"].module[1].weight[0].reshape(1, 1, 4, 4)
    (adaptive,) = get_threat("adaptive").attack_modules(targets, purifiers, _unit("adaptive", ("a",), "halve"))
    (straight,) = get_threat("bpda").attack_modules(targets, purifiers, _unit("bpda", ("a",), "halve"))
    for module in (adaptive, straight):  # both run the purifier forward
        torch.testing.assert_close(module(x), f(x * x / 2))
    # logit 0 is linear in its input with weights w: the exact gradient is w * x (chain rule), BPDA's is w
    torch.testing.assert_close(_grad(adaptive, x), w.expand_as(x) * x)
    torch.testing.assert_close(_grad(straight, x), w.expand_as(x))


def test_adaptive_refuses_a_purifier_without_gradients_and_bpda_takes_it():
    class Rounding(_Halve):
        differentiable = False

    for name in ("whitebox", "blind", "bpda", "transfer"):
        get_threat(name).check_purifier("suite 's'", "round", Rounding())
    with pytest.raises(RobustgridError) as info:
        get_threat("adaptive").check_purifier("suite 's'", "round", Rounding())
    assert str(info.value) == ("suite 's': threat 'adaptive' needs a differentiable purifier; 'round' is not "
                               "(use 'bpda')")


def test_blind_alone_plans_whitebox_units_that_only_blind_cells_evaluate():
    suite = parse_config(_suite_config(["blind"], ("none", "gaussian", "ncis"))).suites[0]
    units = plan_suite(suite, 0, _identity(suite))
    assert {u.threat for u in units} == {"whitebox"} and {u.defense for u in units} == {"none"}
    assert {(c.target, c.defense, c.threat) for u in units for c in u.cells} == {
        (t, d, "blind") for t in ("fmnist-resnet", "fmnist-mobilenet") for d in ("gaussian", "ncis")}


def test_a_threat_registered_here_is_accepted_planned_and_listed(scratch_registry, capsys):
    """A copy of whitebox under another name, and a blind twin riding on it: registration is all it takes."""
    copy = register_threat(dataclasses.replace(get_threat("whitebox"), name="wb-copy", column=9, default=False,
                                               description="whitebox under another name (test only)"))
    register_threat(dataclasses.replace(get_threat("blind"), name="blind-copy", column=10, rides_on="wb-copy",
                                        description="blind riding on wb-copy (test only)"))
    cfg = parse_config(_suite_config(["whitebox", "wb-copy", "blind-copy"]))
    suite = cfg.suites[0]
    assert suite.threats == ("whitebox", "wb-copy", "blind-copy")
    units = plan_suite(suite, cfg.seed, _identity(suite))
    by = {th: [u for u in units if u.threat == th] for th in ("whitebox", "wb-copy")}
    assert set(by) == {u.threat for u in units} and len(by["whitebox"]) == len(by["wb-copy"]) == 2 * 2
    for u in by["wb-copy"]:
        assert {(e.target, e.defense, e.threat) for e in u.evals} == {
            (u.sources[0], "none", "wb-copy"), (u.sources[0], "gaussian", "blind-copy")}
    assert not {c.key for u in by["whitebox"] for c in u.cells} & {c.key for u in by["wb-copy"] for c in u.cells}
    assert ("wb-copy", copy.description) in list_threats()
    assert main(["list", "threats"]) == 0
    assert "wb-copy" in capsys.readouterr().out


def test_cli_lists_every_threat_with_its_description(capsys):
    assert main(["list", "threats"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(list_threats())
    assert {"score", "decision"} <= {line.split()[0] for line in lines}
    for line, (name, desc) in zip(lines, list_threats()):
        assert line.split()[0] == name and line.endswith(desc)


def test_config_errors_come_from_the_registry():
    with pytest.raises(RobustgridError, match=r"suite 1: unknown threat 'blnd'; did you mean blind"):
        parse_config(_suite_config(["whitebox", "blnd"]))
    with pytest.raises(RobustgridError, match="threats blind/bpda/adaptive need at least one defense other than"):
        parse_config(_suite_config(["bpda"], ("none",)))
    with pytest.raises(RobustgridError, match="threats must be a list of threat names, got 'whitebox'"):
        parse_config({**_suite_config([]), "suite": [{**_suite_config([])["suite"][0], "threats": "whitebox"}]})
    assert parse_config({"suite": [{k: v for k, v in _suite_config([])["suite"][0].items() if k != "threats"}]}
                        ).suites[0].threats == ("whitebox",)


def test_a_badly_stated_threat_is_refused_at_registration(scratch_registry):
    with pytest.raises(RobustgridError, match="threat 'x': evaluated_on must be one of sources, others, got 'self'"):
        Threat("x", "d", column=9, rank=9, evaluated_on="self")
    with pytest.raises(RobustgridError, match="differentiates a purifier is evaluated behind that purifier"):
        Threat("x", "d", column=9, rank=9, evaluated_behind="attacked")
    with pytest.raises(RobustgridError, match="rides on 'transfer', which must generate its own examples from the "
                                              "same sources"):
        register_threat(Threat("x", "d", column=9, rank=9, rides_on="transfer"))
    with pytest.raises(RobustgridError, match="shares 'transfer''s units, which must be made on each target alone"):
        register_threat(Threat("x", "d", column=9, rank=9, shares_with="transfer"))
    with pytest.raises(RobustgridError, match="unknown threat 'wb'"):
        register_threat(Threat("x", "d", column=9, rank=9, shares_with="wb"))
    with pytest.raises(RobustgridError, match="threat 'whitebox' is already registered"):
        register_threat(dataclasses.replace(get_threat("whitebox"), description="another whitebox"))
    assert register_threat(get_threat("whitebox")) is get_threat("whitebox")  # the same one again: a no-op


# --- the query threats ------------------------------------------------------------------------------------------

def _query_config(threats, attack="test-random-search", defenses=("none", "gaussian", "ncis")):
    cfg = _suite_config(threats, defenses)
    cfg["suite"][0]["attacks"] = [{"name": attack, "steps": 4}]
    return cfg


def test_query_threats_plan_a_unit_on_the_bare_target_and_one_behind_each_purifier(monkeypatch):
    query_attacks.register(monkeypatch)
    for threat, attack in (("score", "test-random-search"), ("decision", "test-flip-search")):
        suite = parse_config(_query_config([threat], attack)).suites[0]
        units = plan_suite(suite, 0, _identity(suite))
        assert {(u.sources, u.defense) for u in units if u.eps > 0} == {
            ((t,), d) for t in ("fmnist-resnet", "fmnist-mobilenet") for d in ("none", "gaussian", "ncis")}
        for u in units:  # evaluated exactly where the attack queried
            assert u.threat == threat and [(e.target, e.defense, e.threat) for e in u.evals] == [
                (u.sources[0], u.defense, threat)]


def test_query_threats_show_the_attack_an_oracle_of_the_purifier_and_target_pipeline():
    targets = {"a": _target("a", 0)}
    purifiers = {"none": build_defense("none"), "halve": _Halve()}
    f, x = targets["a"].module, torch.rand(5, 1, 4, 4)
    for threat, reveal in (("score", lambda out: out),
                           ("decision", lambda out: nn.functional.one_hot(out.argmax(1), 3).float())):
        (bare,) = get_threat(threat).attack_modules(targets, purifiers, _unit(threat, ("a",), "none"))
        (behind,) = get_threat(threat).attack_modules(targets, purifiers, _unit(threat, ("a",), "halve"))
        assert isinstance(bare, ORACLES[threat]) and isinstance(behind, ORACLES[threat])
        torch.testing.assert_close(bare(x), reveal(f(x)).detach())
        torch.testing.assert_close(behind(x), reveal(f(x * x / 2)).detach())
        with pytest.raises(RobustgridError, match=f"^a {threat} oracle answers queries, not gradients"):
            query_attacks.GradientProbe(eps=0.1, steps=2).run([behind], x, torch.zeros(5, dtype=torch.long),
                                                              seed=0)


def test_query_threats_take_a_purifier_without_gradients():
    class Rounding(_Halve):
        differentiable = False

    for name in ("score", "decision"):
        get_threat(name).check_purifier("suite 's'", "round", Rounding())


def test_a_threat_refuses_an_attack_needing_more_access_than_it_gives():
    for threat, access in (("score", "gradient"), ("decision", "gradient"), ("decision", "score")):
        with pytest.raises(RobustgridError) as info:
            get_threat(threat).check_attack("suite 's'", "atk", access)
        under = {"gradient": "whitebox, blind, bpda, adaptive, transfer",
                 "score": "whitebox, blind, bpda, adaptive, transfer, score"}[access]
        assert str(info.value) == (f"suite 's': attack 'atk' needs {access} access, threat {threat!r} gives "
                                   f"{get_threat(threat).access} access only; 'atk' can run under {under}")
    for threat in NAMES:  # gradient threats run query attacks too, and a decision attack runs anywhere
        get_threat(threat).check_attack("suite 's'", "atk", "decision")
    for threat in ("whitebox", "bpda", "adaptive", "transfer", "score"):
        get_threat(threat).check_attack("suite 's'", "atk", "score")


def test_a_badly_stated_query_threat_is_refused_at_registration():
    with pytest.raises(RobustgridError, match="threat 'x': access must be one of gradient, score, decision, got 'lab"):
        Threat("x", "d", column=9, rank=9, access="label")
    with pytest.raises(RobustgridError, match="threat 'x': a threat with score access gives no gradient, so it"):
        Threat("x", "d", column=9, rank=9, evaluated_behind="attacked", purifier_in_graph=exact, access="score",
               eot=True)
    with pytest.raises(RobustgridError, match="threat 'x': also_bare adds the undefended target"):
        Threat("x", "d", column=9, rank=9, also_bare=True)
