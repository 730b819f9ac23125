"""VOC 2012 and Cityscapes loaders on tiny fixtures in their real layouts, and the pretrained-model loaders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import robustgrid.models.data.voc  # noqa: F401  (registers voc2012)
from robustgrid.core import RobustgridError
from robustgrid.models.data import build_dataset
from robustgrid.models.data.cityscapes import TRAIN_IDS
from robustgrid.models.target import build_target

VOC_PALETTE = [v for i in range(256) for v in (i * 3 % 256, i * 7 % 256, i * 11 % 256)]


def _voc(root: Path, ids: list[str], size: tuple[int, int] = (40, 30)) -> Path:
    """VOCdevkit/VOC2012 with JPEGs, palette label PNGs (class k in a band, 255 border) and val.txt."""
    folder = root / "VOCdevkit" / "VOC2012"
    for sub in ("JPEGImages", "SegmentationClass", "ImageSets/Segmentation"):
        (folder / sub).mkdir(parents=True, exist_ok=True)
    for k, name in enumerate(ids):
        labels = np.zeros(size[::-1], dtype=np.uint8)
        labels[:, 10:30] = k + 1
        labels[:, 10] = 255
        png = Image.fromarray(labels, mode="P")
        png.putpalette(VOC_PALETTE)
        png.save(folder / "SegmentationClass" / f"{name}.png")
        rgb = np.stack([labels.astype(np.int64) * 10 % 256] * 3, -1).astype(np.uint8)
        Image.fromarray(rgb).save(folder / "JPEGImages" / f"{name}.jpg", quality=95)
    (folder / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids) + "\n")
    return root


def test_voc_reads_palette_labels_resizes_and_crops(tmp_path):
    root = _voc(tmp_path, ["2007_000001", "2007_000002", "2007_000003"])
    ds = build_dataset("voc2012", split="val", root=root, resize=20, crop=20)
    assert ds.images.shape == (3, 3, 20, 20) and ds.labels.shape == (3, 20, 20)
    assert ds.num_classes == 21 and ds.labels.dtype == torch.int64
    # 40x30 -> shorter side 20 -> 27x20 -> centre crop 20x20 keeps columns 3..23 of the 27
    for k in range(3):
        assert set(ds.labels[k].unique().tolist()) == {0, k + 1, 255}
    assert build_dataset("voc2012", split="val", root=root, size=2, seed=0, resize=20, crop=20).images.shape[0] == 2


def test_voc_missing_root_or_files_are_one_line_errors(tmp_path):
    with pytest.raises(RobustgridError, match="VOC root .* does not exist"):
        build_dataset("voc2012", split="val", root=tmp_path / "nope")
    with pytest.raises(RobustgridError, match="needs root"):
        build_dataset("voc2012", split="val")
    root = _voc(tmp_path, ["a", "b"])
    (root / "VOCdevkit" / "VOC2012" / "SegmentationClass" / "b.png").unlink()
    with pytest.raises(RobustgridError, match=r"missing file .*SegmentationClass/b\.png"):
        build_dataset("voc2012", split="val", root=root, resize=20, crop=20)
    with pytest.raises(RobustgridError, match="missing VOC split list"):
        build_dataset("voc2012", split="train", root=root)


def _cityscapes(root: Path) -> Path:
    """leftImg8bit/val/<city>/*_leftImg8bit.png with gtFine labelIds covering road, car, sky and void."""
    for city, n in (("frankfurt", 2), ("lindau", 1)):
        (root / "leftImg8bit" / "val" / city).mkdir(parents=True, exist_ok=True)
        (root / "gtFine" / "val" / city).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            stem = f"{city}_000000_{i:06d}"
            ids = np.zeros((32, 64), dtype=np.uint8)  # 0 = unlabeled -> ignore
            ids[:8], ids[8:16], ids[16:24] = 23, 26, 7  # sky, car, road
            ids[24:, :32] = 4                            # static -> ignore
            Image.fromarray(ids, mode="L").save(root / "gtFine" / "val" / city / f"{stem}_gtFine_labelIds.png")
            Image.fromarray(np.full((32, 64, 3), 40 * i, np.uint8)).save(
                root / "leftImg8bit" / "val" / city / f"{stem}_leftImg8bit.png")
    return root


def test_cityscapes_maps_label_ids_to_the_19_train_ids(tmp_path):
    ds = build_dataset("cityscapes", split="val", root=_cityscapes(tmp_path), resize=16)
    assert ds.images.shape == (3, 3, 16, 32) and ds.num_classes == 19
    lab = ds.labels[0]
    assert (lab[:4] == TRAIN_IDS[23]).all() and TRAIN_IDS[23] == 10          # sky
    assert (lab[4:8] == 13).all() and (lab[8:12] == 0).all()                 # car, road
    assert (lab[12:, :16] == 255).all() and (lab[12:, 16:] == 255).all()     # static and unlabeled
    cropped = build_dataset("cityscapes", split="val", root=tmp_path, resize=16, crop=[16, 16], size=1)
    assert cropped.images.shape == (1, 3, 16, 16)


def test_cityscapes_missing_root_or_files_are_one_line_errors(tmp_path):
    with pytest.raises(RobustgridError, match="Cityscapes root .* does not exist"):
        build_dataset("cityscapes", split="val", root=tmp_path / "nope")
    root = _cityscapes(tmp_path)
    with pytest.raises(RobustgridError, match="has no leftImg8bit/train"):
        build_dataset("cityscapes", split="train", root=root)
    next((root / "gtFine" / "val" / "lindau").glob("*.png")).unlink()
    with pytest.raises(RobustgridError, match="missing file .*lindau.*_gtFine_labelIds.png"):
        build_dataset("cityscapes", split="val", root=root, resize=16)


def _save(module: torch.nn.Module, path: Path) -> Path:
    from robustgrid.models.checkpoints import save_weights

    save_weights(module, path)
    return path


def test_torchvision_segmenter_from_a_local_checkpoint(tmp_path):
    from torchvision.models.segmentation import deeplabv3_mobilenet_v3_large

    torch.manual_seed(0)
    net = deeplabv3_mobilenet_v3_large(weights=None, weights_backbone=None, num_classes=3, aux_loss=True).eval()
    weights = _save(net, tmp_path / "dl.safetensors")  # torchvision's own checkpoints carry the aux head
    target = build_target("torchvision-seg:deeplabv3_mobilenet_v3_large", weights=str(weights), num_classes=3,
                          input_size=[32, 48])
    x = torch.rand(2, 3, 32, 48)
    mean = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    with torch.no_grad():
        out = target(x)
        assert out.shape == (2, 3, 32, 48) and target.input_shape == (3, 32, 48)
        torch.testing.assert_close(out, net((x - mean) / std)["out"])
    assert target.task == "segmentation" and len(target.provenance["sha256"]) == 64
    with pytest.raises(RobustgridError, match="does not fit the model"):
        build_target("torchvision-seg:deeplabv3_mobilenet_v3_large", weights=str(weights), num_classes=21)
    with pytest.raises(RobustgridError, match="did you mean deeplabv3_resnet50"):
        build_target("torchvision-seg:deeplabv3_resnet05", weights=str(weights))
    with pytest.raises(RobustgridError, match="needs weights = PATH"):
        build_target("torchvision-seg:deeplabv3_mobilenet_v3_large")


def test_smp_segmenter_from_a_local_checkpoint(tmp_path):
    import segmentation_models_pytorch as smp

    torch.manual_seed(0)
    net = smp.FPN("tu-mobilenetv3_small_050", encoder_weights=None, classes=19).eval()
    weights = _save(net, tmp_path / "fpn.safetensors")
    target = build_target("smp:FPN", encoder="tu-mobilenetv3_small_050", num_classes=19, weights=str(weights),
                          input_size=[64, 128])
    assert target(torch.rand(1, 3, 64, 128)).shape == (1, 19, 64, 128)
    assert target.input_shape == (3, 64, 128) and target.num_classes == 19
    with pytest.raises(RobustgridError, match="does not fit the model"):
        build_target("smp:Unet", encoder="tu-mobilenetv3_small_050", num_classes=19, weights=str(weights))
    with pytest.raises(RobustgridError, match="smp cannot build 'Segformerz'"):
        build_target("smp:Segformerz", weights=str(weights))
