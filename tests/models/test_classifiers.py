"""timm targets from local checkpoints (safetensors and weights-only torch files) and their refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import save_file
from timm.data import IMAGENET_DEFAULT_STD, resolve_data_config
from torch import nn

from robustgrid.core import RobustgridError
from robustgrid.models.cache import find_weights, load_or_train, train_and_store
from robustgrid.models.checkpoints import file_sha256
from robustgrid.models.classifiers import build_classifier_target, build_net, timm_target

SMALL = {
    "resnet10t": {"channels": (8, 16, 32, 64), "stem_width": 8},
    "vit_tiny_patch16_224": {"img_size": 32, "patch_size": 8, "embed_dim": 32, "depth": 2, "num_heads": 2},
}


def small_net(arch: str, in_chans: int = 3) -> nn.Module:
    torch.manual_seed(0)
    return timm.create_model(arch, num_classes=5, in_chans=in_chans, **SMALL[arch]).eval()


def save(net: nn.Module, path: Path) -> Path:
    state = {k: v.contiguous() for k, v in net.state_dict().items()}
    save_file(state, str(path)) if path.suffix == ".safetensors" else torch.save(state, path)
    return path


@pytest.mark.parametrize("arch", sorted(SMALL))
@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_local_weights_reproduce_the_original_module(arch: str, suffix: str, tmp_path: Path) -> None:
    net = small_net(arch)
    path = save(net, tmp_path / f"w{suffix}")
    target = timm_target(arch, weights=path, num_classes=5, **SMALL[arch])
    x = torch.rand(4, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    cfg = resolve_data_config({}, model=net)  # timm's own preprocessing for this architecture
    mean, std = torch.tensor(cfg["mean"]).view(1, 3, 1, 1), torch.tensor(cfg["std"]).view(1, 3, 1, 1)
    with torch.no_grad():
        assert torch.equal(target(x), net((x - mean) / std))
    assert target.provenance["sha256"] == file_sha256(path) and target.provenance["architecture"] == arch
    assert target.name == f"timm:{arch}" and target.num_classes == 5 and not target.module.training
    assert all(not p.requires_grad for p in target.module.parameters())


def test_input_shape_and_grey_normalisation(tmp_path: Path) -> None:
    vit = timm_target("vit_tiny_patch16_224", weights=save(small_net("vit_tiny_patch16_224", 1), tmp_path / "v.pt"),
                      num_classes=5, in_chans=1, **SMALL["vit_tiny_patch16_224"])
    assert vit.input_shape == (1, 32, 32)
    assert vit.module.mean.flatten().tolist() == pytest.approx([0.5])  # ViT's recipe normalises with 0.5
    resnet = build_classifier_target("timm:resnet10t", weights=save(small_net("resnet10t"), tmp_path / "r.pt"),
                                     num_classes=5, **SMALL["resnet10t"])
    assert resnet.input_shape == (3, 224, 224) and resnet.name == "timm:resnet10t"
    grey = timm_target("resnet10t", weights=save(small_net("resnet10t", 1), tmp_path / "g.pt"), num_classes=5,
                       in_chans=1, **SMALL["resnet10t"])
    assert grey.module.std.flatten().tolist() == pytest.approx([sum(IMAGENET_DEFAULT_STD) / 3])


def test_checkpoint_of_another_shape_is_refused(tmp_path: Path) -> None:
    path = save(small_net("resnet10t"), tmp_path / "w.safetensors")
    with pytest.raises(RobustgridError, match="does not fit the model"):
        timm_target("resnet10t", weights=path, num_classes=7, **SMALL["resnet10t"])


@pytest.mark.parametrize("suffix", [".safetensors", ".pt"])
def test_truncated_checkpoint_is_one_line_error(suffix: str, tmp_path: Path) -> None:
    path = save(small_net("resnet10t"), tmp_path / f"w{suffix}")
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(RobustgridError, match="corrupt or unreadable checkpoint") as err:
        timm_target("resnet10t", weights=path, num_classes=5, **SMALL["resnet10t"])
    assert str(path) in str(err.value) and "\n" not in str(err.value)


class Payload:
    """Unpickling this would create ``marker``: a stand-in for code execution from a checkpoint."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_pickled_object_is_refused(tmp_path: Path) -> None:
    marker, path = tmp_path / "ran", tmp_path / "evil.pt"
    torch.save({"weight": Payload(marker)}, path)
    with pytest.raises(RobustgridError, match="corrupt or unreadable checkpoint"):
        timm_target("resnet10t", weights=path, num_classes=5, **SMALL["resnet10t"])
    assert not marker.exists()


def test_tampered_committed_weights_are_refused(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("robustgrid.models.cache.COMMITTED", tmp_path)
    monkeypatch.setenv("ROBUSTGRID_HOME", str(tmp_path / "home"))
    recipe = {"arch": "linear", "seed": 0}
    rec = train_and_store("lin", recipe, lambda: (nn.Linear(3, 2), {"test_accuracy": 0.5}), commit=True)
    assert rec.path == tmp_path / "lin.safetensors" and find_weights("lin", recipe).sha256 == rec.sha256
    record = json.loads(rec.path.with_suffix(".json").read_text())
    record["sha256"] = "0" * 64
    rec.path.with_suffix(".json").write_text(json.dumps(record))
    with pytest.raises(RobustgridError, match="do not match their recorded sha256") as err:
        load_or_train("lin", recipe, lambda: nn.Linear(3, 2), lambda: pytest.fail("must not train"))
    assert str(rec.path) in str(err.value)


def test_training_runs_on_one_thread_and_restores_the_count(tmp_path: Path, monkeypatch) -> None:
    """One thread makes retraining bit-reproducible, whichever path (zoo train, first use) starts it."""
    monkeypatch.setenv("ROBUSTGRID_HOME", str(tmp_path))
    before = torch.get_num_threads()
    seen = []

    def train():
        seen.append(torch.get_num_threads())
        return nn.Linear(3, 2), {"test_accuracy": 0.5}

    torch.set_num_threads(2)
    try:
        train_and_store("lin", {"arch": "linear"}, train)
        with pytest.raises(RuntimeError, match="boom"):
            train_and_store("lin", {"arch": "linear", "v": 2}, lambda: (_ for _ in ()).throw(RuntimeError("boom")))
        assert seen == [1] and torch.get_num_threads() == 2
    finally:
        torch.set_num_threads(before)


def test_user_errors() -> None:
    with pytest.raises(RobustgridError, match="did you mean resnet18"):
        timm_target("resnet18x", weights="w.pt")
    with pytest.raises(RobustgridError, match="exactly one of weights"):
        timm_target("resnet18")
    with pytest.raises(RobustgridError, match="checkpoint not found"):
        timm_target("resnet10t", weights="/nonexistent/w.safetensors")
    with pytest.raises(RobustgridError, match="lacks an architecture"):
        build_classifier_target("timm:")
    with pytest.raises(RobustgridError, match="did you mean fmnist-resnet"):
        build_classifier_target("fmnist-resnt")


def test_custom_mobilenet_keeps_a_14x14_first_stage() -> None:
    arch_def = [["ds_r1_k3_s1_e1_c16_se0.25_nre"], ["ir_r1_k3_s2_e4_c24"], ["cn_r1_k1_s1_c32"]]
    net = build_net("mobilenetv3_custom", num_classes=10, in_chans=1, arch_def=arch_def, num_features=64).eval()
    x = torch.rand(2, 1, 28, 28)
    with torch.no_grad():
        assert net.blocks[0](net.bn1(net.conv_stem(x))).shape == (2, 16, 14, 14)
        assert net(x).shape == (2, 10)
    with pytest.raises(RobustgridError, match="bad MobileNetV3 arch_def"):
        build_net("mobilenetv3_custom", num_classes=10, in_chans=1, arch_def=[["zz_r1_k3"]])


def test_a_cnn_takes_the_data_size_and_a_vit_keeps_its_own(tmp_path: Path) -> None:
    """resnet50's pretrained config says 288 px (timm's test size); a 224 px ImageFolder crop must still fit."""
    resnet = timm_target("resnet10t", weights=save(small_net("resnet10t"), tmp_path / "r.pt"), num_classes=5,
                         **SMALL["resnet10t"])
    assert resnet.size_flexible and resnet.provenance["pretrained_input_size"] == [224, 224]
    assert resnet.accepts((3, 224, 224)) and resnet.accepts((3, 64, 48)) and not resnet.accepts((1, 224, 224))
    with torch.no_grad():
        assert resnet(torch.rand(2, 3, 64, 48)).shape == (2, 5)
    fixed = timm_target("resnet10t", weights=save(small_net("resnet10t"), tmp_path / "f.pt"), num_classes=5,
                        input_size=96, **SMALL["resnet10t"])
    assert fixed.input_shape == (3, 96, 96) and not fixed.size_flexible and not fixed.accepts((3, 64, 64))
    vit = timm_target("vit_tiny_patch16_224", weights=save(small_net("vit_tiny_patch16_224"), tmp_path / "v.pt"),
                      num_classes=5, **SMALL["vit_tiny_patch16_224"])
    assert not vit.size_flexible and vit.accepts((3, 32, 32)) and not vit.accepts((3, 64, 64))
