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


def test_grouped_serving_tables(canon):
    s, _ = canon
    D = np.asarray(s.D)
    K = D.shape[1]
    counts = D.sum(0)
    for groups in (1, 3, 5):
        caps = processing.serving_caps(s.D, groups)
        assert len(caps) == groups and all(c % 4 == 0 for c in caps)
        assert list(caps) == sorted(caps)  # groups of UEs in ascending |M_k|
        tables = processing.grouped_serving_tables(jnp.asarray(s.D), caps)
        ues = np.concatenate([np.asarray(u) for u, _, _ in tables])
        assert sorted(ues) == list(range(K))  # a permutation of the UEs
        for (u, idx, mask), cap in zip(tables, caps, strict=True):
            u, idx, mask = np.asarray(u), np.asarray(idx), np.asarray(mask)
            assert idx.shape == (len(u), min(cap, D.shape[0]))
            assert counts[u].max() <= cap
            for row, k in enumerate(u):
                assert sorted(idx[row][mask[row]]) == sorted(np.flatnonzero(D[:, k]))
                assert len(set(idx[row])) == idx.shape[1]
    # jitted (traced D) with the caps of the concrete D: the same tables
    caps = processing.serving_caps(s.D, 3)
    traced = jax.jit(lambda D: processing.grouped_serving_tables(D, caps))(jnp.asarray(s.D))
    eager = processing.grouped_serving_tables(jnp.asarray(s.D), caps)
    for a, b in zip(jax.tree.leaves(traced), jax.tree.leaves(eager), strict=True):
        np.testing.assert_array_equal(a, b)
    assert processing.serving_caps(jnp.zeros((3, 2), bool).at[0].set(True)) == (3, 3)  # at most L
    assert jax.jit(lambda D: processing.serving_caps(D) is None)(s.D)


def test_grouped_caps_validation(canon):
    s, _ = canon
    caps = processing.serving_caps(s.D, 3, multiple=1)
    assert processing.check_cap(s.D, list(caps)) == caps
    low = (caps[0], caps[1] - 1, caps[2])
    with pytest.raises(ValueError, match=r"max_serving\[1\]"):
        processing.check_cap(s.D, low)
    with pytest.raises(ValueError, match="max_serving"):
        processing.check_cap(s.D, ())
    with pytest.raises(ValueError, match="max_serving"):
        processing.check_cap(s.D, (24,) * (np.asarray(s.D).shape[1] + 1))
    with pytest.raises(ValueError, match="max_serving"):
        processing.check_cap(s.D, (0, 24))
    args = (jax.random.PRNGKey(1), s.R, s.pilot, s.D, 100.0, None, 4, 50, 8)
    with pytest.raises(ValueError, match=r"max_serving\[1\]"):
        se.uplink_se(*args[:5], *args[6:], max_serving=low)


def test_all_se_table_vs_dense(canon):
    s, rho = canon
    args = (jax.random.PRNGKey(1), s.R, s.pilot, s.D, 100.0, rho, 4, 50, 40)
    fast = se.all_se(*args, genie=True)  # cap from the concrete D
    dense = jax.jit(lambda D: se.all_se(*args[:3], D, *args[4:], genie=True))(s.D)  # traced: L
    caps = processing.serving_caps(s.D, 3, multiple=1)  # tight per-group caps, traced D
    grouped = jax.jit(lambda D: se.all_se(*args[:3], D, *args[4:], genie=True, max_serving=caps))(
        s.D
    )
    for link in ("uplink", "downlink"):
        for key in fast[link]:
            np.testing.assert_allclose(fast[link][key], dense[link][key], rtol=1e-10, err_msg=key)
            np.testing.assert_allclose(
                grouped[link][key], dense[link][key], rtol=1e-10, err_msg=key
            )


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
    # one int cap for every UE (a single serving table), as ``max_serving=int`` in ``all_se``
    cap = int(np.asarray(s.D).sum(0).max())
    p = jnp.full((s.R.shape[1],), 100.0)
    small = processing.central_scaled_all(Hh, C, s.D, p, ("p_mmse",), max_serving=cap)
    full = processing.central_scaled_all(Hh, C, s.D, p, ("p_mmse",), max_serving=s.R.shape[0])
    np.testing.assert_allclose(small["p_mmse"], full["p_mmse"], rtol=1e-9, atol=1e-12)


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


def test_pair_matvec_vs_numpy():
    """``estimation.pair_matvec`` (fori_loop over columns) = the einsum of its docstring."""
    from cfmimo_jax.estimation import pair_matvec

    rng = np.random.default_rng(5)
    A = rng.normal(size=(3, 5, 4, 4)) + 1j * rng.normal(size=(3, 5, 4, 4))
    x = rng.normal(size=(2, 3, 5, 4)) + 1j * rng.normal(size=(2, 3, 5, 4))
    want = np.einsum("lkab,jlkb->jlka", A, x)
    np.testing.assert_allclose(np.asarray(pair_matvec(jnp.asarray(A), jnp.asarray(x))), want, 1e-12)
    # real matrices applied to complex vectors promote to complex
    got = pair_matvec(jnp.asarray(A.real), jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(got), np.einsum("lkab,jlkb->jlka", A.real, x), 1e-12)
