"""Sanity flags on constructed cells: each raised when it must be, silent when the comparison is not like with like."""

from __future__ import annotations

from robustgrid.benchmark.records import CellRow
from robustgrid.benchmark.sanity import CONVERGENCE_TOLERANCE, FLAGS, TOLERANCE, sanity_findings, sanity_flags

STEPS = {"fgsm": 1, "pgd": 10, "mifgsm": 10, "square": 100, "hsj": 100}
ACCESS = {"square": "score", "hsj": "decision"}  # query attacks (steps count queries); the others take gradients
CLEAN = 0.9


def cell(threat: str, attack: str, eps: float, value: float, *, target: str = "t", defense: str = "none",
         sources: tuple[str, ...] | None = None, suite: str = "s", steps: int | None = None) -> CellRow:
    """A final-iterate cell (or the checkpoint ``steps``); white-box-like threats attack the target itself unless
    ``sources`` says otherwise."""
    sources = (target,) if sources is None else sources
    key = f"{suite}|{threat}|{attack}|{'+'.join(sources)}|{target}|{defense}|{eps}|{steps}"
    return CellRow(key=key, unit=key, suite=suite, task="classification", dataset="d", attack=attack,
                   access=ACCESS.get(attack, "gradient"), queries=0,
                   attack_spec="{}", sources=sources, threat=threat, norm="linf", eps=eps, steps=steps or STEPS[attack],
                   target=target, defense=defense, seed=0, metric="accuracy", value=value, n=100, grad_evals=0,
                   naive_grad_evals=0, eval_seconds=0.0, clean_key=f"c|{target}|{defense}", provenance="p", created=0.0,
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


# --- query>gradient ---------------------------------------------------------------------------------------------

def test_query_attack_beating_every_gradient_attack_on_the_same_target_defense_and_budget_is_raised():
    cells = [*curve("score", "square", {0.1: 0.1}), *curve("whitebox", "pgd", {0.1: 0.5}),
             *curve("whitebox", "fgsm", {0.1: 0.6})]
    assert raised(cells, "query>gradient") == {("s", "t", "none", "score")}
    (finding,) = [f for f in sanity_findings(cells, {("s", "t", "none"): CLEAN}) if f.flag == "query>gradient"]
    assert finding.detail == ("at eps 0.1 square <- t (score) 0.100 beats every gradient attack, the strongest "
                              "pgd <- t (whitebox) 0.500")
    # behind a purifier, and from a query attack run under a gradient threat, just the same
    cells = [*curve("decision", "hsj", {0.1: 0.2}, defense="g"), *curve("bpda", "pgd", {0.1: 0.5}, defense="g"),
             *curve("whitebox", "square", {0.1: 0.1}), *curve("whitebox", "pgd", {0.1: 0.4})]
    assert raised(cells, "query>gradient") == {("s", "t", "g", "decision"), ("s", "t", "none", "whitebox")}


def test_query_attack_compared_with_the_gradient_attacks_of_another_suite_on_the_same_data():
    """A suite with a query threat holds no gradient attack: the gradient suite on the same clean key is the rival."""
    cells = [*curve("score", "square", {0.1: 0.1}, suite="q"), *curve("whitebox", "pgd", {0.1: 0.5}, suite="g")]
    assert raised(cells, "query>gradient") == {("q", "t", "none", "score")}


def test_query_attack_not_beating_every_gradient_attack_or_not_like_with_like_is_silent():
    within = [*curve("score", "square", {0.1: 0.3}), *curve("whitebox", "pgd", {0.1: 0.3 + TOLERANCE / 2})]
    one_stronger = [*curve("score", "square", {0.1: 0.3}), *curve("whitebox", "fgsm", {0.1: 0.6}),
                    *curve("adaptive", "pgd", {0.1: 0.2})]
    other_defense = [*curve("score", "square", {0.1: 0.1}, defense="g"), *curve("whitebox", "pgd", {0.1: 0.5})]
    other_budget = [*curve("score", "square", {0.2: 0.1}), *curve("whitebox", "pgd", {0.1: 0.5})]
    other_target = [*curve("score", "square", {0.1: 0.1}, target="u"), *curve("whitebox", "pgd", {0.1: 0.5})]
    no_gradient = [*curve("score", "square", {0.1: 0.1}), *curve("decision", "hsj", {0.1: 0.5})]
    for cells in (within, one_stronger, other_defense, other_budget, other_target, no_gradient):
        assert raised(cells, "query>gradient") == set()


# --- not-converged ----------------------------------------------------------------------------------------------

def steps_curve(threat: str, attack: str, eps: float, values: dict[int, float], **kw) -> list[CellRow]:
    """One metric-versus-iterations (or queries) curve: checkpoint -> value at one budget."""
    return [cell(threat, attack, eps, v, steps=k, **kw) for k, v in values.items()]


def test_a_curve_still_falling_between_its_last_two_checkpoints_is_not_converged():
    cells = steps_curve("whitebox", "pgd", 0.1, {1: 0.6, 5: 0.4, 10: 0.3})
    assert raised(cells, "not-converged") == {("s", "t", "none", "whitebox")}
    cells = steps_curve("score", "square", 0.1, {50: 0.7, 100: 0.6}, defense="g")
    (finding,) = [f for f in sanity_findings(cells, {}) if f.flag == "not-converged"]
    assert finding.key == ("s", "t", "g", "score")
    assert finding.detail == "at eps 0.1 square <- t still falls from 0.700 at 50 queries to 0.600 at 100"


def test_a_flat_rising_or_single_checkpoint_curve_is_converged():
    flat = steps_curve("whitebox", "pgd", 0.1, {1: 0.6, 5: 0.3, 10: 0.3 - CONVERGENCE_TOLERANCE / 2})
    rising = steps_curve("whitebox", "pgd", 0.1, {5: 0.3, 10: 0.35})  # worse at the end: noise, not convergence
    single = steps_curve("whitebox", "fgsm", 0.1, {1: 0.2})
    # the fall before the last checkpoint does not count (flat), nor the falls of two curves added up (mixed)
    mixed = [*steps_curve("whitebox", "pgd", 0.1, {1: 0.6, 10: 0.59}),
             *steps_curve("whitebox", "pgd", 0.2, {1: 0.5, 10: 0.49}),
             *steps_curve("whitebox", "mifgsm", 0.1, {1: 0.9, 10: 0.9})]
    for cells in (flat, rising, single, mixed):
        assert raised(cells, "not-converged") == set()


def test_the_legend_documents_both_new_flags_with_the_tolerance():
    assert "masked gradients" in FLAGS["query>gradient"]
    assert f"more than {CONVERGENCE_TOLERANCE:g} between its last two checkpoints" in FLAGS["not-converged"]
