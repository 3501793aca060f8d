"""Fast paths of the kernels agree with the dense ones (float64, same draws)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cfmimo_jax import linalg, processing, se
from cfmimo_jax.setup import generate_setup


@pytest.fixture(scope="module")
def canon():
    s = generate_setup(jax.random.PRNGKey(3), 24, 12, 2, 4, 0.25, 0.25)
    D = np.asarray(s.D)
    assert D.sum(0).max() < 24  # the serving table is smaller than L
    rho = jnp.where(s.D, 50.0, 0.0)
    return s, rho


def test_serving_table(canon):
    s, _ = canon
    D = np.asarray(s.D)
    M = processing.serving_cap(s.D)
    assert M % 4 == 0 and M >= D.sum(0).max()
    idx, mask = processing.serving_table(s.D, M)
    idx, mask = np.asarray(idx), np.asarray(mask)
    for k in range(D.shape[1]):
        assert sorted(idx[k][mask[k]]) == sorted(np.flatnonzero(D[:, k]))
        assert len(set(idx[k])) == M
    with pytest.raises(ValueError, match="max_serving"):
        processing.check_cap(s.D, int(D.sum(0).max()) - 1)


def test_all_se_table_vs_dense(canon):
    s, rho = canon
    args = (jax.random.PRNGKey(1), s.R, s.pilot, s.D, 100.0, rho, 4, 50, 40)
    fast = se.all_se(*args, genie=True)  # cap from the concrete D
    dense = jax.jit(lambda D: se.all_se(*args[:3], D, *args[4:], genie=True))(s.D)  # traced: L
    small = se.all_se(*args, genie=True, max_serving=int(np.asarray(s.D).sum(0).max()))
    for link in ("uplink", "downlink"):
        for key in fast[link]:
            np.testing.assert_allclose(fast[link][key], dense[link][key], rtol=1e-10, err_msg=key)
            np.testing.assert_allclose(small[link][key], dense[link][key], rtol=1e-10, err_msg=key)


def test_centralized_combiners_table_vs_dense(canon):
    s, _ = canon
    from cfmimo_jax.estimation import estimation_statistics, mmse_estimates, sample_channels

    _, C = estimation_statistics(s.R, s.pilot, 100.0, 4)
    H = sample_channels(jax.random.PRNGKey(2), s.R, 3)
    Hh = mmse_estimates(jax.random.PRNGKey(3), H, s.R, s.pilot, 100.0, 4)
    for scheme in processing.CENTRALIZED:
        fast = processing.centralized_combiners(Hh, C, s.D, 100.0, scheme)
        dense = jax.jit(lambda D, sc=scheme: processing.centralized_combiners(Hh, C, D, 100.0, sc))(
            s.D
        )
        np.testing.assert_allclose(fast, dense, rtol=1e-9, atol=1e-12, err_msg=scheme)


@pytest.mark.parametrize("n", [1, 3, 8, 9, 17, 40])
@pytest.mark.parametrize("dtype", [np.float64, np.complex128])
def test_blocked_cholesky(n, dtype):
    rng = np.random.default_rng(n)
    X = rng.standard_normal((2, 3, n + 2, n)).astype(dtype)
    if np.iscomplexobj(X):
        X = X + 1j * rng.standard_normal(X.shape)
    A = np.einsum("...ai,...aj->...ij", X.conj(), X) + 0.1 * np.eye(n)
    np.testing.assert_allclose(linalg.cholesky(jnp.asarray(A)), np.linalg.cholesky(A), atol=1e-12)
    b = rng.standard_normal((2, 3, n, 2)).astype(dtype)
    np.testing.assert_allclose(linalg.chol_solve(jnp.asarray(A), b), np.linalg.solve(A, b))
