"""The distribution installs one top-level package, ``robustgrid``, and works beside a user's own ``models/``."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_wheel_has_robustgrid_as_its_only_top_level_package(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", "-w",
                    str(tmp_path), str(ROOT)], check=True, capture_output=True, timeout=300)
    (wheel,) = tmp_path.glob("robustgrid-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names}
    assert {t for t in top if not t.endswith(".dist-info")} == {"robustgrid"}
    for sub in ("attacks", "defenses", "models", "models/data", "benchmark"):
        assert f"robustgrid/{sub}/__init__.py" in names
    assert any(n.startswith("robustgrid/models/weights/") and n.endswith(".safetensors") for n in names)
    for template in ("leaderboard.md.j2", "index.html.j2"):  # the report renders from these
        assert f"robustgrid/benchmark/templates/{template}" in names


def test_an_attack_runs_from_a_folder_with_a_foreign_models_package(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "__init__.py").write_text("FOREIGN = True\n")
    code = ("import models; assert models.FOREIGN\n"
            "import torch\n"
            "from robustgrid.attacks import build_attack\n"
            "net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3))\n"
            "x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])\n"
            "adv = build_attack('pgd', eps=0.1, steps=3)(net, x, y)\n"
            "assert (adv - x).abs().max() <= 0.1 + 1e-6 and not torch.equal(adv, x)\n"
            "import models, robustgrid.models; assert models.FOREIGN and robustgrid.models is not models\n"
            "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"
