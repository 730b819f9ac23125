"""The real-scale configs: each parses (every parameter type-checked against its constructor) and names where it
computes; imagenet.toml prepares on a generated ImageFolder with local random-weight checkpoints of its own
architectures, nothing downloaded, its CNNs taking the 224 px crop their pretrained configs do not say."""

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
