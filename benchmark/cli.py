"""``robustgrid`` command line: run, list, zoo train, report, stats, compare. Exit 0 ok, 2 user error, 1 bug."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import NoReturn

from robustgrid.core import RobustgridError

LISTS = ("attacks", "defenses", "targets", "datasets", "tasks", "threats")


class _Parser(argparse.ArgumentParser):
    """argparse with its usage errors in the CLI's one-line form (exit status 2, one line on stderr)."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"robustgrid: error: {message} (see {self.prog} --help)\n")


def _threads(value: str) -> int:
    """ROBUSTGRID_THREADS as a positive thread count."""
    if not value.isdigit() or int(value) < 1:
        raise RobustgridError(f"ROBUSTGRID_THREADS must be a positive integer, got {value!r}")
    return int(value)


def _list(kind: str) -> list[tuple[str, str]]:
    if kind == "attacks":
        from robustgrid.attacks import list_attacks

        extra = ("torchattacks:<Name>", "any torchattacks attack on a classifier, e.g. torchattacks:APGD")
        return [*list_attacks(), extra]
    if kind == "defenses":
        from robustgrid.defenses import list_defenses

        return list_defenses()
    if kind == "targets":
        import robustgrid.models  # noqa: F401  (the zoo registers its targets on import)
        from robustgrid.models.target import TARGET_PREFIXES, TARGETS

        rows = [(n, f"[{TARGETS.entry(n).meta.get('task', '?')}] {d}") for n, d in TARGETS.describe()]
        return rows + [(f"{n}:<arch>", d) for n, d in TARGET_PREFIXES.describe()]
    if kind == "datasets":
        from robustgrid.models.data import list_datasets

        return list_datasets()
    if kind == "threats":
        from robustgrid.benchmark.threats import list_threats

        return list_threats()
    from robustgrid.models.tasks import TASKS

    return TASKS.describe()


def _stats(args: argparse.Namespace) -> str:
    from robustgrid.benchmark.stats import transfer_markdown, transfer_table
    from robustgrid.benchmark.store import Store

    path = Path(args.out) / "cells.sqlite"
    if not path.is_file():
        raise RobustgridError(f"no store at {path}; run a grid with --out {args.out} first")
    store = Store(path, readonly=True)
    try:
        cells = store.cells()
        metrics = args.metric or sorted({c.metric for c in cells if c.suite in args.suite})[:1]
        rows = transfer_table(store, args.suite, metrics, args.eps, threat=args.threat, steps=args.steps,
                              defense=args.defense, baseline=args.baseline, resamples=args.resamples,
                              seed=args.seed, level=args.level, extras=args.extra, cells=cells)
    finally:
        store.close()
    return transfer_markdown(rows, metrics, args.baseline, args.extra)


def _compare(args: argparse.Namespace) -> str:
    from robustgrid.benchmark.stats import compare_markdown, compare_stores
    from robustgrid.benchmark.store import Store

    a = Store(Path(args.a) / "cells.sqlite", readonly=True)
    try:
        b = Store(Path(args.b) / "cells.sqlite", readonly=True)
        try:
            return compare_markdown(compare_stores(a, b, args.resamples, args.seed))
        finally:
            b.close()
    finally:
        a.close()


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(prog="robustgrid", description=__doc__)
    sub = parser.add_subparsers(dest="cmd", required=True)
    run = sub.add_parser("run", help="run a grid config (resumes from the store in --out)")
    run.add_argument("config")
    run.add_argument("--out", default=None, help="output folder (default results/<config name>)")
    run.add_argument("--quiet", action="store_true", help="no progress bars")
    run.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (overrides the config's device)")
    run.add_argument("--executor", default=None, choices=["local", "ray"], help="where shards run (default: config)")
    run.add_argument("--ray-address", default=None, help="an existing Ray cluster (host:port, ray://host:port, auto)")
    run.add_argument("--plugin", action="append", default=[], help="module or .py file to import first (repeatable)")
    lst = sub.add_parser("list", help="list registered names with one-line descriptions")
    lst.add_argument("kind", choices=LISTS)
    zoo = sub.add_parser("zoo", help="the embedded model zoo")
    zoo_sub = zoo.add_subparsers(dest="zoo_cmd", required=True)
    train = zoo_sub.add_parser("train", help="train zoo models (only missing or stale ones unless --force)")
    train.add_argument("names", nargs="*")
    train.add_argument("--force", action="store_true")
    train.add_argument("--commit", action="store_true", help="write into the repository's models/weights")
    train.add_argument("--quiet", action="store_true")
    rep = sub.add_parser("report", help="rebuild tables and plots from OUT/cells.sqlite alone")
    rep.add_argument("out")
    par = sub.add_parser("params", help="download parameter files of classical metrics (needs the internet once)")
    par.add_argument("what", choices=["niqe"])
    par.add_argument("--dest", default=None, help="file to write (default $ROBUSTGRID_HOME/params/...)")
    st = sub.add_parser("stats", help="per-attack transfer table with paired bootstrap 95%% intervals")
    st.add_argument("out", help="folder holding cells.sqlite")
    st.add_argument("--suite", required=True, action="append", help="suite(s) to pool (same samples)")
    st.add_argument("--eps", type=float, required=True, help="the budget to compare attacks at")
    st.add_argument("--metric", action="append", help="metric(s) with intervals (default: the task's primary)")
    st.add_argument("--extra", action="append", default=[], help="stored per-cell metric(s) to show as means")
    st.add_argument("--threat", default=None, help="threat of the cells (default: the transfer threat)")
    st.add_argument("--defense", default="none")
    st.add_argument("--steps", type=int, default=None, help="checkpoint (default: each attack's last)")
    st.add_argument("--baseline", default=None, help="attack to take paired differences against")
    st.add_argument("--resamples", type=int, default=1000)
    st.add_argument("--seed", type=int, default=0)
    st.add_argument("--level", type=float, default=0.95)
    cmp = sub.add_parser("compare", help="cells whose value differs between two stores, with paired 95%% intervals")
    cmp.add_argument("a", help="folder holding store A (cells.sqlite)")
    cmp.add_argument("b", help="folder holding store B")
    cmp.add_argument("--resamples", type=int, default=1000)
    cmp.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    try:
        threads = os.environ.get("ROBUSTGRID_THREADS")
        if threads:  # on a shared CPU one thread per process can be many times faster than two
            import torch

            torch.set_num_threads(_threads(threads))
        if args.cmd == "run":
            from robustgrid.benchmark import load_config, run_grid

            cfg = load_config(args.config, tuple(args.plugin))
            out = Path(args.out) if args.out else Path("results") / Path(args.config).stem
            summary = run_grid(cfg, out, progress=not args.quiet, device=args.device, executor=args.executor,
                               ray_address=args.ray_address)
            dropped = f", {summary.dropped} superseded cells dropped" if summary.dropped else ""
            print(f"{summary.generated} units generated, {summary.reused} reused{dropped}, {summary.seconds:.0f} s; "
                  f"report in {out}/leaderboard.md")
        elif args.cmd == "list":
            rows = _list(args.kind)
            width = max((len(n) for n, _ in rows), default=0)
            for name, desc in rows:
                print(f"{name:<{width}}  {desc}")
        elif args.cmd == "zoo":
            from robustgrid.benchmark.zoo_training import train_zoo

            for rec in train_zoo(args.names or None, force=args.force, commit=args.commit, progress=not args.quiet):
                metrics = ", ".join(f"{k} {v:.4f}" for k, v in rec.metrics.items())
                print(f"{rec.name}: {metrics} ({rec.source}, {rec.train_seconds:.0f} s train)")
        elif args.cmd == "report":
            from robustgrid.benchmark.report import write_report

            paths = write_report(args.out)
            print(f"wrote {len(paths)} files to {args.out}")
        elif args.cmd == "params":
            from robustgrid.models.iqa_models import fetch_niqe_params

            try:
                print(f"wrote {fetch_niqe_params(args.dest)}")
            except OSError as exc:  # --dest in a folder that cannot be written
                raise RobustgridError(f"cannot write the NIQE parameters: {exc}") from None
        elif args.cmd == "stats":
            print(_stats(args), end="")
        elif args.cmd == "compare":
            print(_compare(args), end="")
    except RobustgridError as exc:
        print(f"robustgrid: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("robustgrid: interrupted; finished cells are stored, rerun the same command to resume", file=sys.stderr)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
