"""SegTrans and BSR: exact invertibility of the remaps, gradient routing, copies averaged, momentum base, cost."""

from __future__ import annotations

import pytest
import torch

from robustgrid.attacks import build_attack
from robustgrid.attacks.bsr import block_shuffle_rotate, rotate
from robustgrid.attacks.segtrans import block_permutation, random_lengths, remap, strip_permutation, unremap
from robustgrid.core import RobustgridError


@pytest.mark.parametrize("flip, rotate", [(False, False), (True, False), (False, True)])
@pytest.mark.parametrize("h, w, grid", [(16, 16, 4), (30, 21, 4), (12, 18, 3)])
def test_remap_then_unremap_is_the_identity(h, w, grid, flip, rotate):
    gen = torch.Generator().manual_seed(3)
    perm = block_permutation(h, w, grid, gen, flip, rotate=rotate)
    assert sorted(perm.tolist()) == list(range(h * w))  # a permutation of pixels
    x = torch.rand(2, 3, h, w)
    y = torch.randint(0, 11, (2, h, w))
    assert not torch.equal(remap(x, perm), x)
    assert torch.equal(unremap(remap(x, perm), perm), x)
    assert torch.equal(unremap(remap(y, perm), perm), y)
    assert torch.equal(remap(unremap(y, perm), perm), y)


def test_blocks_move_whole_and_leftover_borders_stay():
    gen = torch.Generator().manual_seed(0)
    perm = block_permutation(11, 9, 2, gen).view(11, 9)  # blocks of 5x4; row 10 and column 8 are left over
    ids = torch.arange(99).view(11, 9)
    assert torch.equal(perm[10], ids[10]) and torch.equal(perm[:, 8], ids[:, 8])
    blocks = {tuple(perm[r:r + 5, c:c + 4].flatten().tolist()) for r in (0, 5) for c in (0, 4)}
    originals = {tuple(ids[r:r + 5, c:c + 4].flatten().tolist()) for r in (0, 5) for c in (0, 4)}
    assert blocks == originals  # every block arrives intact (no flips asked for)
    assert not torch.equal(perm[:10, :8], ids[:10, :8])


def test_rotated_blocks_arrive_as_quarter_turns_of_the_originals():
    perm = block_permutation(8, 8, 2, torch.Generator().manual_seed(1), rotate=True).view(8, 8)
    ids = torch.arange(64).view(8, 8)
    originals = [ids[r:r + 4, c:c + 4] for r in (0, 4) for c in (0, 4)]
    turned = set()
    for r in (0, 4):
        for c in (0, 4):
            block = perm[r:r + 4, c:c + 4]
            k = [k for k in range(4) for o in originals if torch.equal(block, torch.rot90(o, k, (0, 1)))]
            assert len(k) == 1  # each output block is exactly one original block turned by k quarter turns
            turned.add(k[0])
    assert turned != {0}
    flat = block_permutation(6, 8, 2, torch.Generator().manual_seed(1), rotate=True).view(6, 8)  # 3x4 blocks
    assert sorted(flat.flatten().tolist()) == list(range(48))


@pytest.mark.parametrize("kind", ["shuffle+flip", "shuffle+rotate"])
def test_view_gradient_equals_the_unremapped_gradient_of_the_composed_function(tiny_segmenter, seg_batch, kind):
    x, y = seg_batch
    attack = build_attack("segtrans", eps=0.03, steps=1, grid=4, remap_kind=kind, task="segmentation")
    xv = x.clone().requires_grad_(True)
    xs, ys = attack.view(xv, y, torch.Generator().manual_seed(5))
    loss = attack.task.objective(tiny_segmenter(xs), ys).sum()
    through_view = torch.autograd.grad(loss, xv)[0]
    # independently: the same remap drawn again, the gradient taken at the remapped image, mapped back
    perm = block_permutation(16, 16, 4, torch.Generator().manual_seed(5), flip=kind == "shuffle+flip",
                             rotate=kind == "shuffle+rotate")
    xt = remap(x, perm).requires_grad_(True)
    g_tilde = torch.autograd.grad(attack.task.objective(tiny_segmenter(xt), remap(y, perm)).sum(), xt)[0]
    assert through_view.abs().sum() > 0
    torch.testing.assert_close(through_view, unremap(g_tilde, perm), rtol=1e-6, atol=1e-9)


def test_labels_travel_with_their_pixels(pixelwise_segmenter, seg_batch):
    """For a per-pixel model the remapped loss equals the plain loss: each label still meets its pixel."""
    x, y = seg_batch
    attack = build_attack("segtrans", eps=0.03, steps=1, grid=4, remap_kind="shuffle+flip", task="segmentation")
    xs, ys = attack.view(x, y, torch.Generator().manual_seed(2))
    assert not torch.equal(ys, y)
    plain = attack.task.objective(pixelwise_segmenter(x), y)
    torch.testing.assert_close(attack.task.objective(pixelwise_segmenter(xs), ys), plain)


def test_segtrans_costs_copies_gradient_evaluations_per_step(tiny_segmenter, seg_batch):
    x, y = seg_batch
    runs = {c: build_attack("segtrans", eps=0.03, steps=5, copies=c, task="segmentation").run(tiny_segmenter, x, y,
                                                                                             seed=0)
            for c in (1, 3)}
    assert runs[1].grad_evals == 5 * len(x) and runs[3].grad_evals == 3 * 5 * len(x)


def test_one_block_one_copy_segtrans_is_mifgsm_bit_for_bit(tiny_segmenter, seg_batch):
    """grid=1 remaps nothing, so with one copy SegTrans's momentum base must be MI-FGSM exactly."""
    x, y = seg_batch
    ours = build_attack("segtrans", eps=0.03, steps=4, grid=1, copies=1, task="segmentation")
    mi = build_attack("mifgsm", eps=0.03, steps=4, task="segmentation")
    assert torch.equal(ours.run(tiny_segmenter, x, y, seed=0).x_adv, mi.run(tiny_segmenter, x, y, seed=0).x_adv)


@pytest.mark.parametrize("partition", ["grid", "strips"])
def test_the_step_gradient_is_the_mean_over_copies_of_the_unremapped_gradients(tiny_segmenter, seg_batch, partition):
    x, y = seg_batch
    attack = build_attack("segtrans", eps=0.03, steps=1, grid=3, copies=4, partition=partition, task="segmentation")
    seen = []
    direction = attack.direction
    attack.direction = lambda g, state, idx: (seen.append(g.clone()), direction(g, state, idx))[1]
    attack.run(tiny_segmenter, x, y, seed=9)
    gen = torch.Generator().manual_seed(9)  # no random start: the views are the generator's only draws
    grads = []
    for _ in range(4):
        perm = (strip_permutation(16, 16, 3, gen) if partition == "strips"
                else block_permutation(16, 16, 3, gen))
        xt = remap(x, perm).requires_grad_(True)
        loss = attack.task.objective(tiny_segmenter(xt), remap(y, perm)).sum()
        grads.append(unremap(torch.autograd.grad(loss, xt)[0], perm))
    torch.testing.assert_close(seen[0], torch.stack(grads).mean(0), rtol=1e-5, atol=1e-8)
    assert not torch.allclose(grads[0], grads[1])  # the copies really are different enhanced samples


def test_random_lengths_are_positive_and_vary():
    gen = torch.Generator().manual_seed(0)
    draws = [random_lengths(20, 3, gen) for _ in range(20)]
    assert all(len(d) == 3 and sum(d) == 20 and min(d) >= 1 for d in draws)
    assert len({tuple(d) for d in draws}) > 5
    assert random_lengths(5, 5, gen) == [1] * 5 and random_lengths(7, 1, gen) == [7]


@pytest.mark.parametrize("h, w", [(16, 16), (13, 20)])
def test_strips_are_a_permutation_of_contiguous_pieces(h, w):
    gen = torch.Generator().manual_seed(4)
    for _ in range(5):
        perm = strip_permutation(h, w, 3, gen)
        assert sorted(perm.tolist()) == list(range(h * w))
        x = torch.rand(1, 3, h, w)
        assert torch.equal(unremap(remap(x, perm), perm), x)
        grid = perm.view(h, w)
        rows, cols = grid // w, grid % w
        # along one axis every output line comes from one input line (the strips move whole)
        assert (rows == rows[:, :1]).all() or (cols == cols[:1]).all()


def test_rotate_turns_images_and_labels_exactly_at_right_angles():
    x = torch.rand(2, 3, 8, 8)
    torch.testing.assert_close(rotate(x, 90.0), torch.rot90(x, 1, (2, 3)), atol=1e-5, rtol=0)
    wide = torch.rand(1, 1, 4, 10)
    torch.testing.assert_close(rotate(wide, 180.0), wide.flip(2, 3), atol=1e-5, rtol=0)
    labels = torch.randint(0, 5, (1, 1, 9, 9)).float()
    turned = rotate(labels, 30.0, labels=True)
    assert (turned == 255).any() and set(turned.unique().tolist()) <= set(labels.unique().tolist()) | {255.0}
    assert torch.equal(rotate(labels, 0.0, labels=True), labels)


def test_bsr_without_rotation_is_a_pixel_permutation_and_labels_travel(pixelwise_segmenter, seg_batch):
    x, y = seg_batch
    gen = torch.Generator().manual_seed(1)
    xt, yt = block_shuffle_rotate(x, y[:, None].float(), 3, 0.0, gen)
    assert not torch.equal(xt, x)
    assert torch.equal(xt.flatten(2).sort(-1).values, x.flatten(2).sort(-1).values)
    attack = build_attack("bsr", max_angle=0.0, task="segmentation")
    xs, ys = attack.view(x, y, torch.Generator().manual_seed(2))
    plain = attack.task.objective(pixelwise_segmenter(x), y)
    torch.testing.assert_close(attack.task.objective(pixelwise_segmenter(xs), ys), plain)
    xr, yr = build_attack("bsr", task="segmentation").view(x, y, torch.Generator().manual_seed(2))
    assert xr.shape == x.shape and yr.dtype == y.dtype and (yr == 255).sum() > (y == 255).sum()


def test_bsr_costs_twenty_copies_per_step(tiny_segmenter, seg_batch):
    x, y = seg_batch
    res = build_attack("bsr", eps=0.03, steps=2, task="segmentation").run(tiny_segmenter, x, y, seed=0)
    assert res.grad_evals == 20 * 2 * len(x) and (res.x_adv - x).abs().max() <= 0.03 + 1e-6


def test_segtrans_attacks_classifiers_too():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10)).eval()
    model(torch.rand(1, 1, 12, 12))
    model.requires_grad_(False)
    x, y = torch.rand(3, 1, 12, 12), torch.tensor([1, 2, 3])
    adv = build_attack("segtrans", eps=0.05, steps=2, grid=3)(model, x, y)
    assert (adv - x).abs().max() <= 0.05 + 1e-6 and not torch.equal(adv, x)


@pytest.mark.parametrize("name, params, message", [
    ("segtrans", {"grid": 0}, "grid must be an integer >= 1"),
    ("segtrans", {"remap_kind": "rotate"},
     r"remap_kind must be one of shuffle, shuffle\+flip, shuffle\+rotate, got 'rotate'"),
    ("segtrans", {"partition": "rings"}, "partition must be one of grid, strips, got 'rings'"),
    ("segtrans", {"partition": "strips", "remap_kind": "shuffle+flip"}, "partition 'strips' only shuffles"),
    ("segtrans", {"copies": 0}, "copies must be an integer >= 1, got 0"),
    ("segtrans", {"samples": 3}, r"segtrans takes copies \(enhanced samples per step\), not samples"),
    ("bsr", {"blocks": 0}, "blocks must be an integer >= 1, got 0"),
    ("bsr", {"max_angle": 200}, r"max_angle must be a finite number in \[0, 180\], got 200"),
])
def test_bad_parameters(name, params, message):
    with pytest.raises(RobustgridError, match=message) as info:
        build_attack(name, **params)
    assert "\n" not in str(info.value)
