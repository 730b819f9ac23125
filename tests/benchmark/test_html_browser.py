"""The HTML leaderboard in a real browser (headless Chromium): it loads without console errors, every table and
plot is there and every image decodes, and clicking a header sorts the table numerically."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="no chromium binary on PATH: 'make test' apt-gets the "
                                                          "Debian package chromium when run as root")

# Runs before the page's own code: records uncaught errors, failed resource loads and console.error calls, then
# after load reports images, tables and what clicking headers did, as JSON in <pre id="probe"> for --dump-dom.
PROBE = """<script>
window.probeErrors = [];
window.addEventListener("error", function (e) {
  window.probeErrors.push(e.message || ("failed to load " + (e.target.src || e.target.tagName)));
}, true);
console.error = function () { window.probeErrors.push(Array.prototype.join.call(arguments, " ")); };
function probeRows(table) {
  return Array.prototype.map.call(table.tBodies[0].rows, function (r) {
    return Array.prototype.map.call(r.cells, function (c) { return c.textContent; });
  });
}
function probeClicks(table, col) {
  var th = table.tHead.rows[0].cells[col], seen = [];
  th.click(); seen.push({order: th.getAttribute("aria-sort"), rows: probeRows(table)});
  th.click(); seen.push({order: th.getAttribute("aria-sort"), rows: probeRows(table)});
  return seen;
}
window.addEventListener("load", function () {
  var tables = Array.prototype.slice.call(document.querySelectorAll("table"));
  var out = {
    images: Array.prototype.map.call(document.images, function (i) {
      return {src: i.getAttribute("src"), complete: i.complete, width: i.naturalWidth, height: i.naturalHeight};
    }),
    tables: tables.map(function (t) {
      return {id: t.id, head: probeRows({tBodies: [t.tHead]})[0], rows: probeRows(t)};
    }),
    sorted: tables.map(function (t) {
      return Array.prototype.map.call(t.tHead.rows[0].cells, function (c, col) { return probeClicks(t, col); });
    }),
    anchors: Array.prototype.map.call(document.querySelectorAll("nav a"), function (a) {
      return [a.getAttribute("href"), !!document.getElementById(a.getAttribute("href").slice(1))];
    }),
    footer: document.querySelector("footer") ? document.querySelector("footer").textContent : ""
  };
  out.errors = window.probeErrors;
  var pre = document.createElement("pre");
  pre.id = "probe";
  pre.textContent = JSON.stringify(out);
  document.body.appendChild(pre);
});
</script>"""

# A table the page's own script must also make sortable: numbers that sort differently as text, a missing value.
FIXTURE_TABLE = """<table class="sortable" id="fixture"><thead><tr><th>name</th><th>value</th></tr></thead><tbody>
<tr><td>b</td><td>10</td></tr><tr><td>a</td><td>9</td></tr><tr><td>d</td><td>–</td></tr>
<tr><td>c</td><td>100</td></tr><tr><td>e</td><td>-0.5</td></tr></tbody></table>
"""


def probe_page(folder: Path) -> Path:
    """``index.html`` with the probe first in <head> and the fixture table just before the page's script."""
    page = (folder / "index.html").read_text(encoding="utf-8")
    assert page.count("<head>") == 1 and page.count("<script>") == 1
    probed = page.replace("<head>", "<head>\n" + PROBE, 1).replace("<script>", FIXTURE_TABLE + "<script>", 1)
    path = folder / "probe.html"
    path.write_text(probed, encoding="utf-8")
    return path


def browse(page: Path, profile: Path) -> tuple[dict, list[str]]:
    """The probe's report and the console lines Chromium logged while loading ``page``."""
    run = subprocess.run([CHROMIUM, "--headless=new", "--no-sandbox", "--disable-gpu", "--no-first-run",
                          f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
                          "--virtual-time-budget=10000", "--dump-dom", page.as_uri()],
                         capture_output=True, text=True, timeout=180)
    assert run.returncode == 0, run.stderr[-2000:]
    found = re.search(r'<pre id="probe">(.*?)</pre>', run.stdout, re.S)
    assert found, "the probe never ran: the page did not finish loading\n" + run.stderr[-2000:]
    console = [line for line in run.stderr.splitlines() if ":CONSOLE" in line]
    return json.loads(html.unescape(found.group(1))), console


@pytest.fixture(scope="module")
def browsed(reported, tmp_path_factory) -> tuple[dict, list[str], Path]:
    probe, console = browse(probe_page(reported), tmp_path_factory.mktemp("chromium-profile"))
    return probe, console, reported


def test_the_page_loads_without_console_errors(browsed):
    probe, console, _ = browsed
    assert probe["errors"] == []
    assert console == []  # the page logs nothing; any console line is an error or a warning


def test_every_table_and_every_plot_is_present_and_every_image_decodes(browsed):
    probe, _, folder = browsed
    source = (folder / "index.html").read_text(encoding="utf-8")
    tables = [t for t in probe["tables"] if t["id"] != "fixture"]
    # leaderboard, per-attack breakdown and transfer table, as in the page's source, each with rows
    assert len(tables) == source.count("<table") == 3
    assert tables[0]["head"][:4] == ["rank", "target", "defense", "clean accuracy"]
    assert all(t["rows"] and all(len(r) == len(t["head"]) for r in t["rows"]) for t in tables)
    pngs = sorted(p.name for p in folder.glob("*.png"))
    assert sorted(i["src"] for i in probe["images"]) == pngs and pngs
    for image in probe["images"]:
        assert image["complete"] and image["width"] > 0 and image["height"] > 0, image
    assert probe["anchors"] and all(ok for _, ok in probe["anchors"])  # nav: a link per suite, each resolving
    assert "#suite-tiny" in [href for href, _ in probe["anchors"]]
    assert "config sha256" in probe["footer"]


MISSING = ("–", "-", "")  # not evaluated, or no difference to itself (the reference attack of a transfer table)
NUMBER = re.compile(r"^[+-]?(\d|\.\d)")


def number(text: str) -> float:
    """A cell's leading number: the estimate of "0.316 [0.277, 0.353]", the value of "+0.012 [...] *"."""
    return float(text.split()[0])


def test_clicking_a_header_sorts_numerically_with_missing_values_last(browsed):
    probe, _, _ = browsed
    fixture = next(i for i, t in enumerate(probe["tables"]) if t["id"] == "fixture")
    (up, down), (up_text, down_text) = probe["sorted"][fixture][1], probe["sorted"][fixture][0]
    assert (up["order"], down["order"]) == ("ascending", "descending")
    assert [r[1] for r in up["rows"]] == ["-0.5", "9", "10", "100", "–"]  # as text, "10" < "100" < "9"
    assert [r[1] for r in down["rows"]] == ["100", "10", "9", "-0.5", "–"]
    assert [r[0] for r in up["rows"]] == ["e", "a", "b", "c", "d"]  # rows move whole
    assert [r[0] for r in up_text["rows"]] == ["a", "b", "c", "d", "e"]
    assert [r[0] for r in down_text["rows"]] == ["e", "d", "c", "b", "a"]


def test_every_column_of_the_report_tables_sorts_like_python(browsed):
    probe, _, _ = browsed
    numeric = 0
    for table, clicks in zip(probe["tables"], probe["sorted"], strict=True):
        if table["id"] == "fixture":
            continue
        for col, clicked in enumerate(clicks):
            present = [r[col] for r in table["rows"] if r[col] not in MISSING]
            is_number = all(NUMBER.match(v) for v in present)
            for click, reverse in zip(clicked, (False, True), strict=True):
                assert sorted(map(tuple, click["rows"])) == sorted(map(tuple, table["rows"]))  # whole rows move
                values = [r[col] for r in click["rows"]]
                assert all(v in MISSING for v in values[len(present):])  # missing values last, either way
                if is_number:
                    got = [number(v) for v in values[:len(present)]]
                    assert got == sorted(got, reverse=reverse), (table["head"][col], reverse)
            numeric += is_number
    assert numeric > 5  # rank, clean metric, every threat column, the breakdown and transfer values
