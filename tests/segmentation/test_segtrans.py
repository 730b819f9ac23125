"""SegTrans: exact invertibility of the block remap, gradient routing through the view, cost = PGD."""

from __future__ import annotations

import pytest
import torch

from robustgrid.attacks import build_attack
from robustgrid.attacks.segtrans import block_permutation, remap, unremap
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


def test_segtrans_costs_what_pgd_costs(tiny_segmenter, seg_batch):
    x, y = seg_batch
    runs = {name: build_attack(name, eps=0.03, steps=5, task="segmentation").run(tiny_segmenter, x, y, seed=0)
            for name in ("pgd", "segtrans")}
    assert runs["segtrans"].grad_evals == runs["pgd"].grad_evals == 5 * len(x)
    more = build_attack("segtrans", eps=0.03, steps=5, samples=3, task="segmentation").run(tiny_segmenter, x, y, seed=0)
    assert more.grad_evals == 3 * 5 * len(x)


def test_segtrans_attacks_classifiers_too():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Flatten(), torch.nn.LazyLinear(10)).eval()
    model(torch.rand(1, 1, 12, 12))
    model.requires_grad_(False)
    x, y = torch.rand(3, 1, 12, 12), torch.tensor([1, 2, 3])
    adv = build_attack("segtrans", eps=0.05, steps=2, grid=3)(model, x, y)
    assert (adv - x).abs().max() <= 0.05 + 1e-6 and not torch.equal(adv, x)


@pytest.mark.parametrize("params, message", [
    ({"grid": 0}, "grid must be an integer >= 1"),
    ({"remap_kind": "rotate"}, r"remap_kind must be one of shuffle, shuffle\+flip, shuffle\+rotate, got 'rotate'"),
])
def test_bad_parameters(params, message):
    with pytest.raises(RobustgridError, match=message):
        build_attack("segtrans", **params)
