"""The report is a pure function of the store: byte-identical reruns, an untouched store, real HTML, and
leaderboard numbers and per-threat flags that match the stored cells."""

from __future__ import annotations

import hashlib
import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np

from robustgrid.benchmark.report import write_report
from robustgrid.benchmark.store import Store


def digests(folder: Path) -> dict[str, str]:
    """Every file under ``folder`` (targets/ included) by relative path."""
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_two_reports_of_an_unchanged_store_are_byte_identical_and_leave_it_untouched(reported):
    store = reported / "cells.sqlite"
    before, mtime = digests(reported), store.stat().st_mtime_ns
    written = write_report(reported)
    assert digests(reported) == before  # every artefact, PNGs included, and no journal or WAL file appears
    assert store.stat().st_mtime_ns == mtime
    names = {p.relative_to(reported).as_posix() for p in written}
    assert {"leaderboard.md", "index.html", "cells.csv", "summary.json"} <= names
    assert {"targets/fmnist-resnet.json", "targets/fmnist-mobilenet.json"} <= names
    assert names | {"cells.sqlite"} == set(before)
    assert any(n.endswith(".png") for n in names)


VOID = {"meta", "img", "br", "hr", "link"}  # elements without an end tag


class Page(HTMLParser):
    """Collects the title, headings, tables (header and body rows) and image sources of a page."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[str] = []
        self.title = ""
        self.headings: list[tuple[str, str]] = []
        self.tables: list[dict[str, list[list[str]]]] = []
        self.images: list[str] = []
        self.paragraphs: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.images.append(dict(attrs)["src"])
        if tag in VOID:
            return
        if tag == "table":
            self.tables.append({"head": [], "body": []})
        if tag == "tr":
            self.tables[-1]["head" if "thead" in self.stack else "body"].append([])
        self.stack.append(tag)

    def handle_endtag(self, tag):
        assert self.stack and self.stack[-1] == tag, f"</{tag}> closes <{self.stack[-1:]}>"
        self.stack.pop()

    def handle_data(self, data):
        top = self.stack[-1] if self.stack else ""
        if top == "title":
            self.title += data
        elif top in ("h1", "h2", "h3"):
            self.headings.append((top, data))
        elif top in ("th", "td"):
            self.tables[-1]["head" if top == "th" else "body"][-1].append(data)
        elif top == "p":
            self.paragraphs.append(data)


def test_the_html_page_is_real_html_with_tables_and_every_plot(reported):
    page = Page()
    page.feed((reported / "index.html").read_text(encoding="utf-8"))
    page.close()
    assert page.stack == []  # every element closed
    assert page.title == "robustgrid leaderboard"
    assert ("h1", "robustgrid leaderboard") in page.headings
    assert ("h2", "tiny (classification, fashion-mnist, n = 32)") in page.headings
    assert not any(p.lstrip().startswith("#") for p in page.paragraphs)
    # leaderboard, per-attack breakdown and the transfer table, each with one header row
    assert len(page.tables) == 3
    for table in page.tables:
        assert len(table["head"]) == 1 and table["body"]
        assert all(len(r) == len(table["head"][0]) for r in table["body"])
    assert page.tables[0]["head"][0][:4] == ["rank", "target", "defense", "clean accuracy"]
    assert page.tables[0]["head"][0][-1] == "flags"
    assert page.images == [line[line.index("](") + 2:-1] for line in
                           (reported / "leaderboard.md").read_text().splitlines() if line.startswith("![")]
    assert sorted(page.images) == sorted(p.name for p in reported.glob("*.png"))


def md_table(md: str, header_start: str) -> list[dict[str, str]]:
    lines = md.splitlines()
    i = next(i for i, line in enumerate(lines) if line.startswith(header_start))
    head = [x.strip() for x in lines[i].strip("|").split("|")]
    rows = []
    for line in lines[i + 2:]:
        if not line.startswith("|"):
            break
        rows.append(dict(zip(head, (x.strip() for x in line.strip("|").split("|")))))
    return rows


def test_leaderboard_values_are_worst_case_envelopes_recomputed_from_outcomes(reported):
    rows = md_table((reported / "leaderboard.md").read_text(encoding="utf-8"), "| rank |")
    store = Store(reported / "cells.sqlite", readonly=True)
    try:
        cells = store.cells()
        labels = store.labels("tiny", cells[0].dataset)
        full = {a: max(c.steps for c in cells if c.attack == a) for a in {c.attack for c in cells}}
        for row in rows:
            for column in [k for k in row if " @" in k and not k.startswith("worst @")]:
                threat, eps = column.split(" @")
                # per attack and source: a sample counts as broken at eps if broken at any budget <= eps
                envelopes = []
                for a, steps in full.items():
                    for sources in {c.sources for c in cells if c.threat == threat and c.attack == a}:
                        pts = [c for c in cells if (c.attack, c.steps, c.threat, c.sources, c.target, c.defense)
                               == (a, steps, threat, sources, row["target"], row["defense"])
                               and c.eps <= float(eps)]
                        if pts:
                            robust = np.all([store.outcome(c.key) == labels for c in pts], axis=0)
                            envelopes.append(robust.mean())
                want = f"{min(envelopes):.3f}" if envelopes else "–"
                assert row[column] == want, (row["target"], row["defense"], column)
    finally:
        store.close()
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    # the worst case at the largest budget over every threat evaluated on a row ranks it, most robust first
    for row in rows:
        at_top = [float(v) for k, v in row.items() if k.endswith(" @0.002") and k != "worst @0.002" and v != "–"]
        assert row["worst @0.002"] == f"{min(at_top):.3f}"
    ranked = [float(r["worst @0.002"]) for r in rows]
    assert ranked == sorted(ranked, reverse=True)
    md = (reported / "leaderboard.md").read_text(encoding="utf-8")
    assert ("Rows are ranked by the worst case at eps = 0.002 over everything evaluated on them, every threat and "
            "every attack (column worst @0.002).") in md


def test_flags_are_shown_per_threat_as_in_summary_json(reported):
    rows = md_table((reported / "leaderboard.md").read_text(encoding="utf-8"), "| rank |")
    flags = json.loads((reported / "summary.json").read_text())["flags"]
    shown = {}
    for row in rows:
        if row["flags"] == "ok":
            continue
        for part in row["flags"].split("; "):
            threat, names = part.split(": ")
            shown[f"tiny|{row['target']}|{row['defense']}|{threat}"] = names.split(", ")
    assert shown == flags and shown
    assert any(row["flags"].count(": ") > 1 for row in rows)  # this grid flags two threats of one row


def test_target_json_holds_the_leaderboard_numbers_and_the_suite_provenance(reported):
    from robustgrid.benchmark.curves import envelopes
    from robustgrid.benchmark.leaderboard import build_leaderboard

    store = Store(reported / "cells.sqlite", readonly=True)
    try:
        cells = store.cells()
        prov = store.provenance()
        board = build_leaderboard(store, cells, envelopes(store, cells), prov, {}, resamples=10)
    finally:
        store.close()
    (suite,) = board.suites
    budgets = sorted({f"{c.eps:g}" for c in cells if c.eps > 0})
    checked = 0
    for row in suite.rows:
        entry = json.loads((reported / "targets" / f"{row.target}.json").read_text())["suites"]["tiny"]
        assert entry["clean"][row.defense] == row.clean
        for col, value in zip(suite.columns, row.values, strict=True):
            robust = entry["robust"][row.defense]
            if value is None:
                assert col.threat not in robust or robust[col.threat][f"{col.eps:g}"] is None
            else:
                assert robust[col.threat][f"{col.eps:g}"] == value
                checked += 1
        assert all(sorted(per_eps) == budgets for per_eps in entry["robust"][row.defense].values())
    assert checked > 0
    entry = json.loads((reported / "targets" / "fmnist-resnet.json").read_text())
    assert entry["target"] == "fmnist-resnet" and list(entry["suites"]) == ["tiny"]
    tiny = entry["suites"]["tiny"]
    assert (tiny["task"], tiny["n"], tiny["norm"], tiny["metric"], tiny["envelope"]) == \
        ("classification", 32, "linf", "accuracy", True)
    assert tiny["dataset"] == cells[0].dataset and tiny["higher_is_more_robust"] is True
    (p,) = tiny["provenance"]
    info = prov[p["id"]].data()
    assert (p["seed"], p["config_sha256"], p["versions"]) == (0, info["config_sha256"], info["versions"])
    assert p["weights_hash"] == info["targets"]["fmnist-resnet"]["weights_hash"] and len(p["weights_hash"]) == 16


class FlagNotes(HTMLParser):
    """The flag explanations of a page: the flags section (dt id -> dd text) and each flagged cell's tooltip."""

    def __init__(self) -> None:
        super().__init__()
        self.section: dict[str, str] = {}
        self.cells: list[tuple[str, str]] = []  # (cell text, title)
        self._open: tuple[str, str] | None = None
        self._term = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "dt" and a.get("id", "").startswith("flag-"):
            self._open, self._term = ("dt", ""), ""
        elif tag == "dd" and self._term:
            self._open = ("dd", "")
        elif tag == "td" and "flagged" in a.get("class", ""):
            self._open = ("td", a["title"])

    def handle_data(self, data):
        if self._open and self._open[0] == "dt":
            self._term += data
        elif self._open and self._open[0] == "dd":
            self.section[self._term] = data
        elif self._open and self._open[0] == "td":
            self.cells.append((data, self._open[1]))

    def handle_endtag(self, tag):
        if tag in ("dt", "dd", "td"):
            self._open = None
        if tag == "dd":
            self._term = ""


def test_the_html_page_explains_every_flag_from_the_one_source_of_truth(reported):
    from robustgrid.benchmark.sanity import FLAGS

    notes = FlagNotes()
    notes.feed((reported / "index.html").read_text(encoding="utf-8"))
    assert notes.section == FLAGS
    rows = md_table((reported / "leaderboard.md").read_text(encoding="utf-8"), "| rank |")
    assert sorted(text for text, _ in notes.cells) == sorted(r["flags"] for r in rows if r["flags"] != "ok")
    for text, title in notes.cells:  # the tooltip explains exactly the flags the cell names, one line each
        raised = sorted({name for part in text.split("; ") for name in part.split(": ")[1].split(", ")})
        assert title.splitlines() == [f"{name}: {FLAGS[name]}" for name in raised]


PERF = {"curve_search_images": 256, "curve_threads": 1, "curve_measured_utc": "2026-12-01 20:44 UTC",
        "curve_torchattacks_grad_evals_per_image": 304.0, "curve_search_grad_evals_per_image": 39.44,
        "curve_search_grad_evals_ratio": 7.708, "curve_search_time_ratio": 8.357,
        "curve_search_descending_grad_evals_per_image": 30.96, "curve_search_descending_grad_evals_ratio": 9.819,
        "curve_search_descending_time_ratio": 9.166, "pgd_step_over_floor": 1.1}


def test_the_pages_show_make_perfs_curve_ratios_from_perf_json(grid_store, tmp_path):
    """``perf.json`` beside the store (make perf's ratios) becomes a speed section of both pages; without it the
    pages have none."""
    import shutil

    shutil.copy(grid_store / "cells.sqlite", tmp_path / "cells.sqlite")
    write_report(tmp_path)
    assert "speed" not in (tmp_path / "index.html").read_text().lower().split("<main")[0]
    (tmp_path / "perf.json").write_text(json.dumps(PERF))
    write_report(tmp_path)
    html, md = (tmp_path / "index.html").read_text(), (tmp_path / "leaderboard.md").read_text()
    assert '<a href="#speed">speed</a>' in html and 'id="speed"' in html
    for page in (html, md):
        assert "9.82x" in page and "9.17x" in page and "7.71x" in page and "8.36x" in page and "304.0" in page
        assert "2026-12-01 20:44 UTC" in page


def test_a_bad_perf_json_is_a_one_line_error_and_writes_nothing(grid_store, tmp_path):
    import shutil

    import pytest

    from robustgrid.core import RobustgridError

    shutil.copy(grid_store / "cells.sqlite", tmp_path / "cells.sqlite")
    (tmp_path / "perf.json").write_text("{not json")
    with pytest.raises(RobustgridError, match=r"perf.json: not valid JSON .*make perf"):
        write_report(tmp_path)
    (tmp_path / "perf.json").write_text(json.dumps({"curve_search_images": 256}))
    with pytest.raises(RobustgridError, match=r"perf.json: missing or non-numeric 'curve_torchattacks"):
        write_report(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cells.sqlite", "perf.json"]
