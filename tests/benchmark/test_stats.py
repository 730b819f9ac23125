"""Bootstrap intervals: calibration on a known statistic, task resamplers equal to the task's own metrics,
and the transfer table read back from a real (tiny) grid store."""

from __future__ import annotations

import math

import numpy as np
import pytest

from robustgrid.benchmark import parse_config, run_grid
from robustgrid.benchmark.cli import main
from robustgrid.benchmark.stats import bootstrap, transfer_markdown, transfer_table
from robustgrid.benchmark.store import Store
from robustgrid.core import RobustgridError
from robustgrid.models.iqa_task import IQA
from robustgrid.models.segmentation_task import IGNORE, Segmentation, confusion_matrix, miou


def test_bootstrap_of_a_mean_matches_the_normal_theory_width():
    x = np.random.default_rng(1).normal(size=400)
    iv = bootstrap(lambda i: float(x[i].mean()), len(x), resamples=4000, seed=0)
    assert iv.estimate == pytest.approx(x.mean())
    assert iv.low < iv.estimate < iv.high
    theory = 2 * 1.959964 * x.std() / math.sqrt(len(x))
    assert (iv.high - iv.low) == pytest.approx(theory, rel=0.1)
    assert bootstrap(lambda i: float(x[i].mean()), len(x), seed=3) == bootstrap(lambda i: float(x[i].mean()),
                                                                                  len(x), seed=3)


def test_bootstrap_rejects_bad_arguments():
    with pytest.raises(RobustgridError, match="resamples must be >= 1"):
        bootstrap(lambda i: 0.0, 10, resamples=0)
    with pytest.raises(RobustgridError, match="confidence level"):
        bootstrap(lambda i: 0.0, 10, level=1.5)


def test_grouped_bootstrap_is_wider_on_correlated_samples_and_matches_the_cluster_theory():
    """20 roots of 10 samples sharing a root effect: resampling roots gives the between-root width, resampling
    samples the (wrongly) much narrower i.i.d. one."""
    rng = np.random.default_rng(2)
    roots = np.repeat(np.arange(20), 10)
    x = rng.normal(size=20)[roots] + 0.2 * rng.normal(size=200)
    mean = lambda i: float(x[i].mean())  # noqa: E731
    grouped = bootstrap(mean, len(x), resamples=3000, seed=0, roots=roots)
    plain = bootstrap(mean, len(x), resamples=3000, seed=0)
    assert grouped.estimate == plain.estimate == pytest.approx(x.mean())
    assert (grouped.high - grouped.low) > 2 * (plain.high - plain.low)
    root_means = np.array([x[roots == g].mean() for g in range(20)])
    theory = 2 * 1.959964 * root_means.std() / math.sqrt(20)
    assert (grouped.high - grouped.low) == pytest.approx(theory, rel=0.2)


def test_grouped_resampling_takes_whole_roots():
    from robustgrid.benchmark.stats import resample_indices

    roots = np.array([7, 7, 3, 3, 3, 9])
    lengths = set()
    for row in resample_indices(6, 50, seed=1, roots=roots):
        counts = np.bincount(row, minlength=6)
        for g in (7, 3, 9):  # a drawn root brings every one of its samples, once per draw
            assert counts[roots == g].std() == 0
        assert sum(counts[roots == g][0] for g in (7, 3, 9)) == 3  # as many roots drawn as there are
        lengths.add(len(row))
    assert len(lengths) > 1  # rows differ in length with the sizes of the drawn roots
    with pytest.raises(RobustgridError, match="roots must give one group per sample: 5 roots for 6 samples"):
        resample_indices(6, 10, seed=0, roots=roots[:5])


def test_skimage_iqa_names_each_patch_s_source_photograph():
    from robustgrid.models.data import build_dataset
    from robustgrid.models.data.iqa_patches import SOURCES

    data = build_dataset("skimage-iqa", split="test", size=64)
    assert data.groups is not None and len(data.groups) == len(data)
    assert set(data.groups.tolist()) <= set(range(len(SOURCES["test"]))) and len(set(data.groups.tolist())) > 1


def _scenes(n=12, classes=5, seed=0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, classes, size=(n, 8, 8))
    y[rng.random(y.shape) < 0.1] = IGNORE
    clean = np.where(rng.random(y.shape) < 0.7, y, rng.integers(0, classes, size=y.shape)) % 256
    clean[y == IGNORE] = 0
    adv = np.where(rng.random(y.shape) < 0.4, y, rng.integers(0, classes, size=y.shape))
    return adv.astype(np.uint8), y.astype(np.int64), clean.astype(np.uint8)


def test_segmentation_resampler_equals_metrics_on_the_resampled_scenes():
    adv, y, clean = _scenes()
    task = Segmentation(num_classes=5)
    f = task.resampler(adv, y, clean)
    assert f(np.arange(len(y))) == task.metrics(adv, y, clean)
    idx = np.random.default_rng(2).integers(0, len(y), size=len(y))  # with repeats
    got, want = f(idx), task.metrics(adv[idx], y[idx], clean[idx])
    assert got.keys() == want.keys()
    for k in want:
        assert got[k] == pytest.approx(want[k], abs=1e-12), k
    # independently of the task's code: one confusion matrix over every pixel of the resampled scenes
    cm = confusion_matrix(adv[idx], y[idx], 5)
    right = (y[idx] != IGNORE) & (clean[idx] == y[idx])
    assert got["miou"] == pytest.approx(miou(cm), abs=1e-12)
    assert got["pixel_asr"] == pytest.approx(float(np.mean(adv[idx][right] != y[idx][right])), abs=1e-12)
    assert got["miou_drop"] == pytest.approx(1 - miou(cm) / miou(confusion_matrix(clean[idx], y[idx], 5)), abs=1e-12)
    with pytest.raises(RobustgridError, match="unknown segmentation metric.*known: miou"):
        task.resampler(adv, y, clean, names=["mIoU"])


def test_iqa_resampler_equals_metrics_and_computes_only_what_is_asked():
    rng = np.random.default_rng(0)
    y = rng.uniform(0, 100, 40)
    clean = y + rng.normal(0, 10, 40)
    adv = clean + rng.normal(-5, 8, 40)
    task = IQA()
    idx = rng.integers(0, 40, 40)
    want = task.metrics(adv[idx], y[idx], clean[idx])
    got = task.resampler(adv, y, clean)(idx)
    assert got.keys() == want.keys() and all(got[k] == pytest.approx(want[k]) for k in want)
    assert task.resampler(adv, y, clean, names=["srocc", "robustness_r"])(idx).keys() == {"srocc", "robustness_r"}
    with pytest.raises(RobustgridError, match="unknown iqa metric.*robustness_r"):
        task.resampler(adv, y, None, names=["robustness_r"])  # R needs the clean predictions


TRANSFER = {
    "seed": 0,
    "suite": [{
        "name": "tiny", "task": "classification",
        "dataset": {"name": "fashion-mnist", "split": "test", "size": 40},
        "targets": ["fmnist-resnet", "fmnist-mobilenet"], "threats": ["transfer"],
        "budget": {"norm": "linf", "eps": [0.1]}, "batch_size": 40,
        "attacks": [{"name": "pgd", "steps": 3, "rel_step_size": 0.5}, {"name": "fgsm", "steps": 1}],
    }],
}


@pytest.fixture(scope="module")
def transfer_store(tmp_path_factory):
    out = tmp_path_factory.mktemp("stats")
    run_grid(parse_config(TRANSFER), out, progress=False, report=False)
    return out


def test_transfer_table_point_estimates_are_the_stored_cell_metrics(transfer_store):
    store = Store(transfer_store / "cells.sqlite")
    try:
        cells = store.cells()
        rows = transfer_table(store, "tiny", ["accuracy", "attack_success_rate"], 0.1, baseline="pgd",
                              resamples=300, seed=0)
        again = transfer_table(store, "tiny", ["accuracy", "attack_success_rate"], 0.1, baseline="pgd",
                               resamples=300, seed=0)
    finally:
        store.close()
    assert rows == again  # same seed, same intervals
    by = {r.attack: r for r in rows}
    assert set(by) == {"pgd", "fgsm"}
    for attack, row in by.items():
        final = [c for c in cells if c.attack == attack and c.steps == max(x.steps for x in cells
                                                                           if x.attack == attack)]
        assert row.pairs == len(final) == 2 and row.n == 40  # each target attacked from the other
        for m in ("accuracy", "attack_success_rate"):
            iv = row.intervals[m]
            assert iv.estimate == pytest.approx(np.mean([c.metrics[m] for c in final]))
            assert iv.low <= iv.estimate <= iv.high and iv.resamples == 300
    d = by["fgsm"].differences["accuracy"]
    assert by["pgd"].differences["accuracy"] is None
    assert d.estimate == pytest.approx(by["fgsm"].intervals["accuracy"].estimate
                                       - by["pgd"].intervals["accuracy"].estimate)
    # paired differences are tighter than the two marginal intervals combined
    marginal = sum(by[a].intervals["accuracy"].high - by[a].intervals["accuracy"].low for a in by)
    assert d.high - d.low < marginal
    md = transfer_markdown(rows, ["accuracy"], "pgd")
    assert md.count("\n") == 4 and "accuracy - pgd [95% CI]" in md


def test_transfer_table_errors_name_the_problem(transfer_store):
    store = Store(transfer_store / "cells.sqlite")
    try:
        with pytest.raises(RobustgridError, match="no cells of suite .nope.*suites: tiny"):
            transfer_table(store, "nope", ["accuracy"], 0.1)
        with pytest.raises(RobustgridError, match="no transfer cells at eps=0.3.*stored budgets: 0.1"):
            transfer_table(store, "tiny", ["accuracy"], 0.3)
        with pytest.raises(RobustgridError, match="unknown classification metric.*known: accuracy"):
            transfer_table(store, "tiny", ["acc"], 0.1, resamples=10)
        with pytest.raises(RobustgridError, match="baseline attack 'mifgsm' has no matching cells"):
            transfer_table(store, "tiny", ["accuracy"], 0.1, baseline="mifgsm")
    finally:
        store.close()


def test_stats_cli_prints_the_table_and_fails_cleanly(transfer_store, tmp_path, capsys):
    assert main(["stats", str(transfer_store), "--suite", "tiny", "--eps", "0.1", "--resamples", "50"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("| attack | pairs | n | accuracy [95% CI]") and "fgsm" in out
    assert main(["stats", str(tmp_path / "missing"), "--suite", "tiny", "--eps", "0.1"]) == 2
    assert "no store at" in capsys.readouterr().err


def test_report_shows_the_transfer_table_against_pgd(transfer_store):
    from robustgrid.benchmark.report import write_report

    write_report(transfer_store)
    md = (transfer_store / "leaderboard.md").read_text()
    section = md[md.index("## Transfer, with paired bootstrap 95% intervals"):]
    assert "### tiny: transfer at eps = 0.1" in section
    assert "| accuracy - pgd [95% CI] | attack_success_rate - pgd [95% CI] |" in section
    assert "\n| fgsm | 2 | 40 |" in section and "\n| pgd | 2 | 40 |" in section


def seeded(seed: int, extra_attacks: list[dict] = ()) -> dict:
    """TRANSFER with a randomly started PGD (so the seed changes its numbers) and a deterministic FGSM."""
    suite = {**TRANSFER["suite"][0], "threats": ["whitebox", "transfer"],
             "attacks": [{"name": "pgd", "steps": 1, "rel_step_size": 0.25, "random_start": True},
                         {"name": "fgsm", "steps": 1}, *extra_attacks]}
    return {"seed": seed, "suite": [suite]}


@pytest.fixture(scope="module")
def two_stores(tmp_path_factory):
    """The same grid run with seeds 0 and 1; B also runs a one-step I-FGSM that A lacks."""
    a, b = tmp_path_factory.mktemp("seed0"), tmp_path_factory.mktemp("seed1")
    run_grid(parse_config(seeded(0)), a, progress=False, report=False)
    run_grid(parse_config(seeded(1, [{"name": "ifgsm", "steps": 1}])), b, progress=False, report=False)
    return a, b


def test_compare_lists_the_seed_dependent_cells_with_paired_intervals(two_stores, capsys):
    from robustgrid.benchmark.stats import compare_markdown, compare_stores

    a, b = (Store(p / "cells.sqlite", readonly=True) for p in two_stores)
    try:
        cmp = compare_stores(a, b, resamples=200, seed=0)
        cells_b = b.cells()
    finally:
        a.close()
        b.close()
    assert cmp.differences  # a random start at another seed moves some PGD cell
    assert {d.cell.attack for d in cmp.differences} == {"pgd"}  # FGSM is deterministic: never listed
    value_b = {(c.attack, c.threat, c.sources, c.target, c.steps): c.value for c in cells_b}
    for d in cmp.differences:
        c = d.cell
        assert d.a == c.value and d.b == value_b[c.attack, c.threat, c.sources, c.target, c.steps] != d.a
        iv = d.interval  # same dataset fingerprint: paired; its point estimate is recomputed from the outcomes
        assert iv.estimate == pytest.approx(d.a - d.b) and iv.low <= iv.estimate <= iv.high and iv.resamples == 200
    assert cmp.only_a == 0 and cmp.only_b == len([c for c in cells_b if c.attack == "ifgsm"]) > 0
    md = compare_markdown(cmp)
    rows = [line for line in md.splitlines() if line.startswith("| tiny |")]
    assert len(rows) == len(cmp.differences)
    assert [r.endswith(" *|") or r.endswith(" * |") for r in rows] == [d.interval.excludes(0) for d in cmp.differences]
    assert md.endswith(f"{len(rows)} matched cells differ; 0 cells only in A, {cmp.only_b} only in B "
                       "(200 resamples)\n")
    assert main(["compare", *map(str, two_stores), "--resamples", "200"]) == 0
    assert capsys.readouterr().out == md


def test_a_store_compared_with_itself_has_no_differences(two_stores, capsys):
    a = str(two_stores[0])
    assert main(["compare", a, a, "--resamples", "20"]) == 0
    assert capsys.readouterr().out == "0 matched cells differ; 0 cells only in A, 0 only in B (20 resamples)\n"


def test_compare_refuses_a_folder_without_a_store_or_of_another_schema(two_stores, tmp_path, capsys):
    import sqlite3

    from robustgrid.benchmark.records import SCHEMA_VERSION

    assert main(["compare", str(two_stores[0]), str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err == f"robustgrid: error: no results store at {tmp_path / 'cells.sqlite'}\n"
    db = sqlite3.connect(tmp_path / "cells.sqlite")
    db.execute("CREATE TABLE cells (key TEXT)")
    db.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    db.close()
    assert main(["compare", str(tmp_path), str(two_stores[0])]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and f"has schema version {SCHEMA_VERSION + 1}, this robustgrid reads" in err
    assert main(["compare", str(two_stores[0]), str(two_stores[0]), "--resamples", "0"]) == 2
    assert capsys.readouterr().err == "robustgrid: error: resamples must be >= 1, got 0\n"
