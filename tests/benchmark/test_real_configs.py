"""The real-scale configs: each parses (every parameter type-checked against its constructor), names where it
computes, and prepares on generated data in its dataset's real layout with local random-weight checkpoints of its
own architectures (nothing downloaded); imagenet.toml's CNNs take the 224 px crop their pretrained configs do not
say."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file

from robustgrid.benchmark import parse_config
from robustgrid.benchmark.runner import prepare

CONFIGS = Path(__file__).resolve().parents[2] / "configs"
REAL = ("imagenet", "voc", "cityscapes", "clive", "koniq")


@pytest.mark.parametrize("name", REAL)
def test_real_configs_parse_and_say_where_they_compute(name: str) -> None:
    path = CONFIGS / f"{name}.toml"
    data = tomllib.loads(path.read_text())
    assert {"device", "executor", "ray"} <= set(data)
    cfg = parse_config(data, str(path))
    assert cfg.device == "auto" and cfg.executor == "local" and cfg.ray.num_gpus == 1
    assert all(s.shard_size is not None and s.shard_samples % s.batch_size == 0 for s in cfg.suites)


def test_imagenet_config_prepares_on_a_generated_folder(tmp_path: Path) -> None:
    data = tomllib.loads((CONFIGS / "imagenet.toml").read_text())
    root = tmp_path / "val"
    rng = np.random.default_rng(0)
    for wnid in ("n01440764", "n01443537", "n01484850"):
        (root / wnid).mkdir(parents=True)
        for i in range(2):
            pixels = rng.integers(0, 256, (300, 260 + 40 * i, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(root / wnid / f"{i}.JPEG")
    weights: dict[str, Path] = {}
    for suite in data["suite"]:
        suite["dataset"].update(root=str(root), size=4, workers=0)
        suite["batch_size"] = suite["shard_size"] = 2
        for t in suite["targets"]:
            arch = t["name"].split(":", 1)[1]
            if arch not in weights:  # a random-weight local checkpoint of the config's own architecture
                torch.manual_seed(0)
                net = timm.create_model(arch, num_classes=1000)
                weights[arch] = tmp_path / f"{arch}.safetensors"
                save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(weights[arch]))
            t.pop("pretrained", None)
            t["weights"] = str(weights[arch])
    cfg = parse_config(data, str(CONFIGS / "imagenet.toml"))
    prepared = [prepare(s, cfg.seed, "", "cpu", cfg.precision) for s in cfg.suites]
    whitebox = prepared[0]
    assert set(whitebox.targets) == {"timm:resnet50", "timm:convnext_tiny", "timm:vit_base_patch16_224",
                                     "timm:efficientnet_b0", "resnet50-linf-at"}
    assert whitebox.data.sample_shape == (3, 224, 224)
    resnet = whitebox.targets["timm:resnet50"]
    assert resnet.size_flexible and resnet.provenance["pretrained_input_size"] != [224, 224]  # timm says 288
    assert not whitebox.targets["timm:vit_base_patch16_224"].size_flexible
    assert len(whitebox.units) == 3 * 8 * (5 + 3)  # 3 attacks x 8 budgets x (5 white-box + 3 transfer groups)
    assert {d for d in prepared[1].defenses} == {"none", "gaussian"}


# --- the segmentation and IQA configs on generated layouts with random-weight checkpoints of their own models -----

def random_checkpoint(spec: dict, folder: Path) -> Path:
    """A local random-weight checkpoint of the architecture a target table names (nothing is downloaded)."""
    prefix, arch = spec["name"].split(":", 1)
    torch.manual_seed(0)
    path = folder / f"{prefix}-{arch}-{spec.get('encoder', '')}.safetensors"
    if prefix == "torchvision-seg":
        import torchvision.models as tvm

        net = tvm.get_model(arch, weights=None, weights_backbone=None, num_classes=spec["num_classes"])
    elif prefix == "smp":
        import segmentation_models_pytorch as smp

        net = smp.create_model(arch, encoder_name=spec["encoder"], encoder_weights=None, classes=spec["num_classes"])
    else:  # pyiqa: its own network as pyiqa builds it offline
        from robustgrid.models.iqa_models import pyiqa_scorer

        net = pyiqa_scorer(arch).net
    save_file({k: v.contiguous() for k, v in net.state_dict().items()}, str(path))
    return path


def voc_layout(root: Path, n: int = 3) -> None:
    folder = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (folder / sub).mkdir(parents=True)
    for i in range(n):
        labels = np.zeros((60, 80), dtype=np.uint8)
        labels[:, 20:40] = i + 1
        png = Image.fromarray(labels, mode="P")
        png.putpalette([v for k in range(256) for v in (k, k, k)])
        png.save(folder / "SegmentationClass" / f"im{i}.png")
        Image.fromarray(np.stack([labels * 20] * 3, -1)).save(folder / "JPEGImages" / f"im{i}.jpg")
    (folder / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(f"im{i}" for i in range(n)) + "\n")


def cityscapes_layout(root: Path, n: int = 2) -> None:
    for i in range(n):
        img = root / "leftImg8bit" / "val" / "city"
        lab = root / "gtFine" / "val" / "city"
        img.mkdir(parents=True, exist_ok=True)
        lab.mkdir(parents=True, exist_ok=True)
        ids = np.full((64, 128), 7, dtype=np.uint8)  # road
        ids[:, 64:] = 26  # car
        Image.fromarray(ids, mode="L").save(lab / f"city_{i:06d}_000019_gtFine_labelIds.png")
        Image.fromarray(np.stack([ids * 9] * 3, -1)).save(img / f"city_{i:06d}_000019_leftImg8bit.png")


def scored_layout(root: Path, images: str, table: Path, header: str, n: int = 10) -> None:
    (root / images).mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = [header]
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (256, 300, 3), dtype=np.uint8)).save(root / images / f"p{i}.jpg")
        rows.append(f"p{i}.jpg,{10 + 13 * i}")
    table.write_text("\n".join(rows) + "\n")


@pytest.mark.parametrize("name", ("voc", "cityscapes", "clive", "koniq"))
def test_real_config_prepares_on_generated_data_with_random_weights(name: str, tmp_path: Path,
                                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    data = tomllib.loads((CONFIGS / f"{name}.toml").read_text())
    root = tmp_path / "data"
    if name == "voc":
        voc_layout(root)
    elif name == "cityscapes":
        cityscapes_layout(root)
    elif name == "clive":
        scored_layout(root, "Images", root / "clive.csv", "name,mos")
        monkeypatch.setenv("ROBUSTGRID_HOME", str(tmp_path / "home"))
        rng = np.random.default_rng(0)
        a = rng.normal(size=(36, 36)) * 0.1
        np.savez(tmp_path / "niqe.npz", mu_pris_param=rng.normal(size=(1, 36)), cov_pris_param=a @ a.T + np.eye(36),
                 gaussian_window=np.ones((7, 7)))
    else:
        scored_layout(root, "1024x768", root / "koniq10k_scores_and_distributions.csv", "image_name,MOS")
    made: dict[str, Path] = {}
    for suite in data["suite"]:
        suite["dataset"].update(root=str(root), size=2, workers=0)
        suite["batch_size"] = suite["shard_size"] = 2
        for t in suite["targets"]:
            if "weights" in t:
                key = f"{t['name']}|{t.get('encoder', '')}"
                made[key] = made.get(key) or random_checkpoint(t, tmp_path)
                t["weights"] = str(made[key])
            if t["name"] == "niqe":
                t["params"] = str(tmp_path / "niqe.npz")
    cfg = parse_config(data, str(CONFIGS / f"{name}.toml"))
    for suite in cfg.suites:
        p = prepare(suite, cfg.seed, "", "cpu", cfg.precision)
        assert set(p.targets) == {t.name for t in suite.targets} and p.units
        assert all(t.accepts(p.data.sample_shape) for t in p.targets.values())


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_committed_config_is_valid(path: Path) -> None:
    """Every config the docs tell users to run parses and validates (attack parameters against their
    constructors, per-attack threats and defenses against the suite's), and plans at least one unit."""
    from robustgrid.benchmark.planner import plan_suite

    cfg = parse_config(tomllib.loads(path.read_text()), str(path))
    assert cfg.suites
    for suite in cfg.suites:
        ids = {"dataset": "d", **{t.name: t.name for t in suite.targets}}
        assert plan_suite(suite, cfg.seed, ids), suite.name
