"""Sanity flags on constructed cells: each raised when it must be, silent when the comparison is not like with like."""

from __future__ import annotations

from robustgrid.benchmark.records import CellRow
from robustgrid.benchmark.sanity import TOLERANCE, sanity_findings, sanity_flags

STEPS = {"fgsm": 1, "pgd": 10, "mifgsm": 10}
CLEAN = 0.9


def cell(threat: str, attack: str, eps: float, value: float, *, target: str = "t", defense: str = "none",
         sources: tuple[str, ...] | None = None, suite: str = "s") -> CellRow:
    """A final-iterate cell; white-box-like threats attack the target itself unless ``sources`` says otherwise."""
    sources = (target,) if sources is None else sources
    key = f"{suite}|{threat}|{attack}|{'+'.join(sources)}|{target}|{defense}|{eps}"
    return CellRow(key=key, unit=key, suite=suite, task="classification", dataset="d", attack=attack,
                   attack_spec="{}", sources=sources, threat=threat, norm="linf", eps=eps, steps=STEPS[attack],
                   target=target, defense=defense, seed=0, metric="accuracy", value=value, n=100, grad_evals=0,
                   naive_grad_evals=0, eval_seconds=0.0, clean_key="c", provenance="p", created=0.0,
                   metrics={})


def curve(threat: str, attack: str, values: dict[float, float], **kw) -> list[CellRow]:
    """One budget curve, eps 0 included (the clean value) unless the values say otherwise."""
    return [cell(threat, attack, e, v, **kw) for e, v in ({0.0: CLEAN} | values).items()]


def flags(cells: list[CellRow]) -> dict[tuple[str, str, str, str], list[str]]:
    clean = {(c.suite, c.target, c.defense): CLEAN for c in cells}
    return sanity_flags(cells, clean)


def raised(cells: list[CellRow], flag: str) -> set[tuple[str, str, str, str]]:
    return {k for k, fs in flags(cells).items() if flag in fs}


# --- no-fall ----------------------------------------------------------------------------------------------------

def test_no_fall_raised_for_whitebox_not_falling():
    cells = curve("whitebox", "pgd", {0.1: 0.7, 0.2: 0.6})
    assert raised(cells, "no-fall") == {("s", "t", "none", "whitebox")}


def test_no_fall_raised_for_bpda_and_adaptive_not_falling():
    cells = [*curve("bpda", "pgd", {0.2: 0.6}, defense="g"), *curve("adaptive", "pgd", {0.2: 0.5}, defense="g")]
    assert raised(cells, "no-fall") == {("s", "t", "g", "bpda"), ("s", "t", "g", "adaptive")}


def test_no_fall_silent_for_blind_and_transfer_not_falling():
    cells = [*curve("blind", "pgd", {0.2: 0.8}, defense="g"),
             *curve("transfer", "pgd", {0.2: 0.8}, sources=("a",)),
             *curve("transfer", "pgd", {0.2: 0.8}, sources=("a",), defense="g")]
    assert raised(cells, "no-fall") == set()


def test_no_fall_silent_once_the_strongest_attack_falls_below_half_of_clean():
    cells = [*curve("whitebox", "fgsm", {0.2: 0.8}), *curve("whitebox", "pgd", {0.1: 0.6, 0.2: CLEAN / 2 - 0.01})]
    assert raised(cells, "no-fall") == set()
    # only the largest budget counts: falling at a smaller one is not enough
    assert raised([*curve("whitebox", "pgd", {0.1: 0.1, 0.2: 0.5})], "no-fall") == {("s", "t", "none", "whitebox")}


# --- 1step>iter -------------------------------------------------------------------------------------------------

def test_single_step_beating_iterative_raised_for_the_same_sources_threat_target_defense_and_budget():
    cells = [*curve("whitebox", "fgsm", {0.1: 0.3}), *curve("whitebox", "pgd", {0.1: 0.3 + 2 * TOLERANCE})]
    assert raised(cells, "1step>iter") == {("s", "t", "none", "whitebox")}
    cells = [*curve("adaptive", "fgsm", {0.1: 0.3}, defense="g"), *curve("adaptive", "pgd", {0.1: 0.6}, defense="g")]
    assert raised(cells, "1step>iter") == {("s", "t", "g", "adaptive")}


def test_single_step_transfer_or_blind_beating_iterative_is_a_known_effect_not_a_flag():
    same_source = [*curve("transfer", "fgsm", {0.1: 0.3}, sources=("a",)),
                   *curve("transfer", "pgd", {0.1: 0.6}, sources=("a",))]
    blind = [*curve("blind", "fgsm", {0.1: 0.3}, defense="g"), *curve("blind", "pgd", {0.1: 0.6}, defense="g")]
    for cells in (same_source, blind):
        assert raised(cells, "1step>iter") == set()


def test_fgsm_transfer_from_a_against_pgd_transfer_from_b_is_silent():
    cells = [*curve("transfer", "fgsm", {0.1: 0.3}, sources=("a",)),
             *curve("transfer", "pgd", {0.1: 0.6}, sources=("b",)),
             *curve("transfer", "pgd", {0.1: 0.2}, sources=("a",))]  # from the same source PGD is stronger
    assert raised(cells, "1step>iter") == set()


def test_single_step_silent_across_budgets_threats_defenses_and_within_tolerance():
    across_budgets = [*curve("whitebox", "fgsm", {0.1: 0.3, 0.2: 0.1}), *curve("whitebox", "pgd", {0.1: 0.2,
                                                                                                      0.05: 0.35})]
    across_threats = [*curve("blind", "fgsm", {0.1: 0.3}, defense="g"), *curve("bpda", "pgd", {0.1: 0.6}, defense="g")]
    across_defenses = [*curve("blind", "fgsm", {0.1: 0.3}, defense="g"), *curve("blind", "pgd", {0.1: 0.6},
                                                                                 defense="h")]
    close = [*curve("whitebox", "fgsm", {0.1: 0.3}), *curve("whitebox", "pgd", {0.1: 0.3 + TOLERANCE / 2})]
    for cells in (across_budgets, across_threats, across_defenses, close):
        assert raised(cells, "1step>iter") == set()


# --- transfer>wb ------------------------------------------------------------------------------------------------

def test_transfer_beating_whitebox_with_the_same_attack_and_budget_is_raised_under_transfer():
    cells = [*curve("whitebox", "pgd", {0.1: 0.5}), *curve("transfer", "pgd", {0.1: 0.2}, sources=("a",))]
    assert raised(cells, "transfer>wb") == {("s", "t", "none", "transfer")}
    (finding,) = [f for f in sanity_findings(cells, {("s", "t", "none"): CLEAN}) if f.flag == "transfer>wb"]
    assert finding.key == ("s", "t", "none", "transfer")
    assert "pgd <- a 0.200" in finding.detail and "whitebox 0.500" in finding.detail


def test_transfer_silent_against_another_attack_another_budget_or_within_tolerance():
    other_attack = [*curve("whitebox", "pgd", {0.1: 0.5}), *curve("transfer", "fgsm", {0.1: 0.2}, sources=("a",))]
    other_budget = [*curve("whitebox", "pgd", {0.2: 0.5}), *curve("transfer", "pgd", {0.1: 0.2}, sources=("a",))]
    close = [*curve("whitebox", "pgd", {0.1: 0.5}), *curve("transfer", "pgd", {0.1: 0.49}, sources=("a",))]
    other_target = [*curve("whitebox", "pgd", {0.1: 0.5}, target="u"),
                    *curve("transfer", "pgd", {0.1: 0.2}, sources=("a",))]
    for cells in (other_attack, other_budget, close, other_target):
        assert raised(cells, "transfer>wb") == set()


def test_transfer_through_a_purifier_is_compared_with_the_strongest_threat_that_sees_the_model():
    seeing = [*curve("blind", "pgd", {0.1: 0.6}, defense="g"), *curve("bpda", "pgd", {0.1: 0.4}, defense="g"),
              *curve("adaptive", "pgd", {0.1: 0.1}, defense="g")]
    weaker = curve("transfer", "pgd", {0.1: 0.3}, sources=("a",), defense="g")  # beats blind and bpda only
    assert raised([*seeing, *weaker], "transfer>wb") == set()
    stronger = curve("transfer", "pgd", {0.1: 0.05}, sources=("a",), defense="g")
    assert raised([*seeing, *stronger], "transfer>wb") == {("s", "t", "g", "transfer")}


# --- non-monotone -----------------------------------------------------------------------------------------------

def test_non_monotone_raised_when_a_curve_gets_weaker_with_the_budget():
    assert raised(curve("whitebox", "pgd", {0.1: 0.3, 0.2: 0.4}), "non-monotone") == {("s", "t", "none", "whitebox")}
    # the clean point (eps 0) belongs to the curve
    assert raised(curve("blind", "pgd", {0.1: CLEAN + 0.1}, defense="g"), "non-monotone") == {("s", "t", "g", "blind")}


def test_non_monotone_silent_for_falling_curves_within_tolerance_and_across_source_sets():
    assert raised(curve("whitebox", "pgd", {0.1: 0.3, 0.2: 0.3 + TOLERANCE / 2}), "non-monotone") == set()
    cells = [*curve("transfer", "pgd", {0.1: 0.3}, sources=("a",)),
             *curve("transfer", "pgd", {0.2: 0.5}, sources=("b",))]
    assert raised(cells, "non-monotone") == set()


# --- keys -------------------------------------------------------------------------------------------------------

def test_flags_are_kept_per_suite_target_defense_and_threat():
    cells = [*curve("whitebox", "pgd", {0.2: 0.8}),                  # no-fall
             *curve("blind", "pgd", {0.1: 0.2, 0.2: 0.4}, defense="g"),  # non-monotone
             *curve("whitebox", "pgd", {0.2: 0.1}, suite="other")]   # silent
    assert flags(cells) == {("s", "t", "none", "whitebox"): ["no-fall"], ("s", "t", "g", "blind"): ["non-monotone"]}
