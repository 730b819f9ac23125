"""NIQE from a local parameter file: same scores as pyiqa's own NIQE, a non-zero gradient, safe reading,
one-line errors, and the checksum-verified fetch of basicsr's parameters (tested on a local archive)."""

from __future__ import annotations

import hashlib
import io
import tarfile

import numpy as np
import pytest
import scipy.io
import torch

from robustgrid.core import RobustgridError
from robustgrid.models.iqa_models import fetch_niqe_params, read_niqe_params
from robustgrid.models.target import build_target


def _params(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.normal(size=(36, 36)) * 0.1
    return rng.normal(size=36) * 0.5, a @ a.T + np.eye(36)  # a valid (symmetric positive definite) model


@pytest.fixture
def npz(tmp_path, monkeypatch):
    monkeypatch.setenv("ROBUSTGRID_HOME", str(tmp_path / "home"))
    mu, cov = _params()
    path = tmp_path / "niqe_pris_params.npz"
    np.savez(path, mu_pris_param=mu[None], cov_pris_param=cov, gaussian_window=np.ones((7, 7)))
    return path


def _images(n: int = 2, size: int = 192) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    ramp = torch.linspace(0, 1, size).view(1, 1, 1, size)
    return (0.2 + 0.5 * ramp + 0.3 * torch.rand(n, 3, size, size, generator=gen)).clamp(0, 1)


def test_niqe_target_scores_like_pyiqa_and_has_a_gradient(npz, tmp_path):
    import pyiqa

    target = build_target("niqe", params=str(npz), input_shape=[3, 192, 192])
    assert (target.score_range, target.lower_better) == ((0.0, 100.0), True)
    x = _images()
    mat = tmp_path / "same.mat"
    mu, cov = _params()
    scipy.io.savemat(mat, {"mu_prisparam": mu[None], "cov_prisparam": cov})
    with torch.no_grad():
        reference = pyiqa.create_metric("niqe", device="cpu", pretrained_model_path=str(mat))(x).view(-1)
        torch.testing.assert_close(target(x).float(), (100 - reference).float())  # quality = 100 - NIQE
        from_mat = build_target("niqe", params=str(mat), input_shape=[3, 192, 192])
        torch.testing.assert_close(from_mat(x), target(x))
        assert target(x[:1]).shape == (1,)  # pyiqa squeezes a batch of one; the target does not
    xg = x.clone().requires_grad_(True)
    grad = torch.autograd.grad(target(xg).sum(), xg)[0]
    assert torch.isfinite(grad).all() and float((grad != 0).float().mean()) > 0.5


def test_niqe_bad_inputs_are_one_line_errors(npz, tmp_path):
    with pytest.raises(RobustgridError, match="does not exist.*make niqe-params"):
        build_target("niqe", params=str(tmp_path / "missing.npz"))
    with pytest.raises(RobustgridError, match="at least two 96x96 blocks"):
        build_target("niqe", params=str(npz), input_shape=[3, 48, 48])
    bad = tmp_path / "bad.npz"
    np.savez(bad, mu_pris_param=np.zeros(18), cov_pris_param=np.eye(18))
    with pytest.raises(RobustgridError, match=r"shapes \(18,\) and \(18, 18\); expected \(36,\)"):
        read_niqe_params(bad)
    pickled = tmp_path / "pickled.npz"
    np.savez(pickled, mu_pris_param=np.array([object()], dtype=object), cov_pris_param=np.eye(36))
    with pytest.raises(RobustgridError, match="cannot read NIQE parameters"):
        read_niqe_params(pickled)  # object arrays would need unpickling: refused
    nan = tmp_path / "nan.npz"
    np.savez(nan, mu_pris_param=np.full(36, np.nan), cov_pris_param=np.eye(36))
    with pytest.raises(RobustgridError, match="NaN or infinity"):
        read_niqe_params(nan)


def _archive(tmp_path, payload: bytes, member: str) -> tuple[str, str]:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        info = tarfile.TarInfo(member)
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
    path = tmp_path / "pkg.tar.gz"
    path.write_bytes(buf.getvalue())
    return path.as_uri(), hashlib.sha256(buf.getvalue()).hexdigest()


def test_fetch_checks_the_checksum_and_writes_only_valid_parameters(npz, tmp_path):
    member = "pkg/metrics/niqe_pris_params.npz"
    url, sha = _archive(tmp_path, npz.read_bytes(), member)
    dest = tmp_path / "out" / "niqe.npz"
    with pytest.raises(RobustgridError, match="has SHA-256 .* nothing written"):
        fetch_niqe_params(dest, url=url, sha256="0" * 64, member=member)
    assert not dest.exists()
    assert fetch_niqe_params(dest, url=url, sha256=sha, member=member) == dest
    mu, cov = read_niqe_params(dest)
    np.testing.assert_array_equal(cov, _params()[1])
    url, sha = _archive(tmp_path, b"not an npz", member)
    with pytest.raises(RobustgridError, match="cannot read NIQE parameters"):
        fetch_niqe_params(tmp_path / "other.npz", url=url, sha256=sha, member=member)
    assert not list((tmp_path).glob("other*"))
