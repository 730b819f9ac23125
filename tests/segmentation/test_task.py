"""The segmentation Task: objective over valid pixels, dataset-level mIoU, transfer metrics, bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from robustgrid.core import RobustgridError
from robustgrid.models import build_task
from robustgrid.models.segmentation_task import Segmentation, confusion_matrix, miou


def test_registered_with_its_metric_direction():
    task = build_task("segmentation")
    assert isinstance(task, Segmentation)
    assert (task.metric, task.success_type) == ("miou", False)


def test_miou_matches_a_hand_computed_example():
    y = np.array([[[0, 0, 1, 1]]])
    pred = np.array([[[0, 1, 1, 1]]], dtype=np.uint8)
    m = build_task("segmentation").metrics(pred, y)
    # IoU_0 = 1 / (1 + 0 + 1), IoU_1 = 2 / (2 + 1 + 0); class 2 appears nowhere and is excluded
    assert m["miou"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert m["pixel_accuracy"] == pytest.approx(3 / 4)
    assert miou(confusion_matrix(pred, y, num_classes=3)) == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_miou_is_dataset_level_not_a_mean_of_batch_mious():
    y = np.array([[[0, 0, 0, 0]], [[1, 1, 0, 0]]])
    pred = np.zeros_like(y, dtype=np.uint8)
    task = build_task("segmentation")
    per_batch = [task.metrics(pred[i:i + 1], y[i:i + 1])["miou"] for i in range(2)]
    assert per_batch == [1.0, 0.25]
    # one confusion matrix: IoU_0 = 6 / 8, IoU_1 = 0 -> 0.375, not (1 + 0.25) / 2 = 0.625
    assert task.metrics(pred, y)["miou"] == pytest.approx(0.375)


def test_pixel_asr_and_miou_drop_on_a_hand_made_example():
    y = np.array([[[0, 1, 1, 2, 255]]])
    clean = np.array([[[0, 1, 2, 2, 1]]], dtype=np.uint8)
    adv = np.array([[[1, 1, 2, 0, 0]]], dtype=np.uint8)
    m = build_task("segmentation").metrics(adv, y, clean)
    assert m["pixel_asr"] == pytest.approx(2 / 3)   # pixels 0, 1, 3 right on clean; 0 and 3 flipped
    assert m["miou"] == pytest.approx(1 / 9)        # IoUs 0, 1/3, 0
    assert m["miou_drop"] == pytest.approx(1 - (1 / 9) / (2 / 3))  # clean IoUs 1, 1/2, 1/2


def test_objective_is_mean_ce_over_valid_pixels_per_sample():
    gen = torch.Generator().manual_seed(0)
    out = torch.randn(2, 3, 4, 5, generator=gen)
    y = torch.randint(0, 3, (2, 4, 5), generator=gen)
    y[0, :2] = 255
    y[1] = 255  # no valid pixel at all: objective 0, not NaN
    got = build_task("segmentation").objective(out, y)
    ce = F.cross_entropy(out[:1], y[:1].clamp(max=2), reduction="none")[0]
    assert got[0].item() == pytest.approx(ce[2:].mean().item(), rel=1e-6)
    assert got[1].item() == 0.0


def test_outcome_is_the_label_map():
    out = torch.zeros(2, 3, 4, 5)
    out[:, 2, 1:3] = 1.0
    pred = build_task("segmentation").outcome(out, torch.zeros(2, 4, 5, dtype=torch.long))
    assert pred.dtype == np.uint8 and pred.shape == (2, 4, 5)
    assert (pred[:, 1:3] == 2).all() and (pred[:, 0] == 0).all()


@pytest.mark.parametrize("labels, message", [
    (torch.zeros(2, 8, 9, dtype=torch.long), r"label maps must have shape \(2, 8, 8\)"),
    (torch.zeros(2, 8, dtype=torch.long), r"label maps must have shape \(2, 8, 8\)"),
    (torch.zeros(2, 8, 8), "integer class ids"),
    (torch.full((2, 8, 8), -1), "class id -1"),
    (torch.full((2, 8, 8), 11), r"class id 11; valid ids are 0\.\.10 and 255"),
])
def test_bad_label_maps_are_one_line_errors(labels, message):
    with pytest.raises(RobustgridError, match=message) as err:
        Segmentation(num_classes=11).check_batch(torch.rand(2, 3, 8, 8), labels)
    assert "\n" not in str(err.value)


def test_class_id_beyond_the_model_outputs_is_an_error_during_the_attack(tiny_segmenter, seg_batch):
    from robustgrid.attacks import build_attack

    x, y = seg_batch
    y = y.clone()
    y[0, 5, 5] = 7  # the tiny segmenter has 4 classes
    for name in ("pgd", "segpgd"):
        with pytest.raises(RobustgridError, match=r"class id 7; valid ids are 0\.\.3"):
            build_attack(name, eps=0.03, steps=1, task="segmentation")(tiny_segmenter, x, y)
