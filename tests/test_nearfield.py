"""Fourier plane-wave XL-MIMO channel (cfmimo_jax.nearfield) and the log-det uplink SE.

References written here in NumPy float64, independently of the kernels: the solid angle of a
wavenumber cell in polar coordinates (scipy quadrature over the azimuth), the isotropic
correlation ``sin(k d) / (k d)``, [XL-FUZZY] eq. (8) with explicit loops over BSs and UEs, and
the single-antenna SINR of the use-and-then-forget bound.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate

from cfmimo_jax import nearfield as nf
from cfmimo_jax import se

# --------------------------------------------------------------------------------------------
# Shared small systems (few shapes, so each kernel compiles a handful of times)

N_REAL = 12  # realizations of the SE tests
P = np.array([20.0, 5.0, 10.0])  # unequal per-antenna powers (mW)


@functools.cache
def small_system(ue_array=(2, 2), ue_spacing=0.5, n=N_REAL, seed=3):
    """M = 3 BSs of 3 x 3 patches at lambda / 3, K = 3 UEs, fixed beta: ``(model, G)``."""
    model = nf.channel_model((3, 3), ue_array, 1.0 / 3.0, ue_spacing)
    rng = np.random.default_rng(seed)
    beta = 10.0 ** rng.uniform(-2.0, 0.5, size=(3, 3))
    G = nf.sample_channels(jax.random.key(seed), model, jnp.asarray(beta), n)
    return model, np.asarray(G)


def combiners_np(G, p, combiner):
    """``V[n, M, K, N_r, N_s]`` as the paper writes them: MR ``G``; L-MMSE with its ``p_k``."""
    if combiner == "mr":
        return G.copy()
    n, M, K, Nr, Ns = G.shape
    V = np.empty_like(G)
    for j in range(n):
        for m in range(M):
            Phi = np.eye(Nr, dtype=complex)
            for l in range(K):
                Phi += p[l] * G[j, m, l] @ G[j, m, l].conj().T
            for k in range(K):
                V[j, m, k] = p[k] * np.linalg.solve(Phi, G[j, m, k])
    return V


def ref_log_det_se(G, p, combiner, estimator, pinv=False):
    """[XL-FUZZY] eq. (8), as read in ``se.uplink_se_log_det``, with explicit loops.

    ``E_k = sqrt(p_k) sum_m E{V_mk^H G_mk}``; ``Psi_k = sum_l p_l sum_m sum_m'
    E{V_mk^H G_ml G_m'l^H V_m'k} - E_k E_k^H + sum_m E{V_mk^H V_mk}``; the expectation of a
    cross-BS product (m != m') is the product of the sample means for ``"independent"``.
    """
    G = np.asarray(G, np.complex128)
    n, M, K, Nr, Ns = G.shape
    V = combiners_np(G, p, combiner)
    A = np.einsum("jmkra,jmlrb->jmklab", V.conj(), G)  # V_mk^H G_ml
    H = lambda X: np.conj(np.swapaxes(X, -1, -2))
    out = np.empty(K)
    for k in range(K):
        E = np.sqrt(p[k]) * sum(A[:, m, k, k].mean(axis=0) for m in range(M))
        Psi = np.zeros((Ns, Ns), complex)
        for l in range(K):
            for m in range(M):
                for mp in range(M):
                    X, Y = A[:, m, k, l], A[:, mp, k, l]
                    if estimator == "sample" or m == mp:
                        Psi += p[l] * np.mean(X @ H(Y), axis=0)
                    else:
                        Psi += p[l] * X.mean(axis=0) @ H(Y.mean(axis=0))
        Psi -= E @ H(E)
        for m in range(M):
            Psi += np.mean(H(V[:, m, k]) @ V[:, m, k], axis=0)
        Pinv = np.linalg.pinv(Psi, rcond=1e-9, hermitian=True) if pinv else np.linalg.inv(Psi)
        out[k] = np.log2(np.linalg.det(np.eye(Ns) + H(E) @ Pinv @ E).real)
    return out


# --------------------------------------------------------------------------------------------
# Spectral variances: quadrature of the isotropic density over a cell


def polar_solid_angle(ax, bx, ay, by):
    """Independent reference: ``Omega`` in polar coordinates ``(rho, phi)``.

    ``du dv / sqrt(1 - u^2 - v^2) = rho d rho d phi / sqrt(1 - rho^2)``; the ray at azimuth
    ``phi`` crosses the rectangle in ``[r1, r2]`` (slab intersection), clipped to the unit
    disc, and the radial integral is exact: ``sqrt(1 - r1^2) - sqrt(1 - r2^2)``. The azimuth
    integral by adaptive quadrature with the corners' azimuths as breakpoints.
    """

    def radial(phi):
        c, s = np.cos(phi), np.sin(phi)
        lo, hi = 0.0, np.inf
        for d, a, b in ((c, ax, bx), (s, ay, by)):
            if abs(d) < 1e-300:
                if not a <= 0.0 <= b:
                    return 0.0
                continue
            t1, t2 = sorted((a / d, b / d))
            lo, hi = max(lo, t1), min(hi, t2)
        lo, hi = min(lo, 1.0), min(hi, 1.0)
        return max(0.0, np.sqrt(1 - lo**2) - np.sqrt(1 - hi**2)) if hi > lo else 0.0

    corners = sorted(np.mod(np.arctan2(y, x), 2 * np.pi) for x in (ax, bx) for y in (ay, by))
    val, _ = integrate.quad(radial, 0.0, 2 * np.pi, points=corners, limit=400, epsabs=1e-13)
    return val


def test_cell_solid_angle_exact_cases():
    # Whole disc, half, quarter: 2 pi, pi, pi / 2 (the hemisphere and its parts).
    Om = nf.cell_solid_angle(
        [-1.0, -1.0, 0.0, 1.0], [1.0, 1.0, 1.0, 2.0], [-1.0, 0.0, 0.0, 0.0], [1.0, 1.0, 1.0, 1.0]
    )
    np.testing.assert_allclose(Om[:3], [2 * np.pi, np.pi, np.pi / 2], rtol=0, atol=1e-12)
    assert Om[3] == 0.0  # outside the disc
    # A tiny interior cell: area / sqrt(1 - rho^2) (midpoint rule, O(h^2)).
    h, u0, v0 = 1e-3, 0.3, 0.4
    small = nf.cell_solid_angle(u0 - h / 2, u0 + h / 2, v0 - h / 2, v0 + h / 2)
    np.testing.assert_allclose(small, h * h / np.sqrt(1 - u0**2 - v0**2), rtol=1e-6)
    # Any partition of a square around the disc sums to 2 pi.
    edges = np.array([-1.3, -0.97, -0.61, -0.2, 0.05, 0.5, 0.83, 0.999, 1.2])
    ax, ay = np.meshgrid(edges[:-1], edges[:-1], indexing="ij")
    bx, by = np.meshgrid(edges[1:], edges[1:], indexing="ij")
    np.testing.assert_allclose(nf.cell_solid_angle(ax, bx, ay, by).sum(), 2 * np.pi, atol=1e-11)


@pytest.mark.parametrize(
    "cell",
    [
        (0.55, 0.75, 0.6, 0.8),  # crossed by the circle
        (0.9, 1.1, -0.1, 0.1),  # straddles the axis at the edge
        (-0.25, 0.25, 0.9, 1.2),  # top of the disc
        (0.7, 0.72, 0.69, 0.71),  # tiny, right at the edge
        (-0.8, -0.5, -0.6, -0.3),  # interior, third quadrant
    ],
)
def test_cell_solid_angle_vs_polar(cell):
    np.testing.assert_allclose(nf.cell_solid_angle(*cell), polar_solid_angle(*cell), atol=1e-11)


def test_lattice_sets_and_variances():
    for nv, nh, s in ((9, 9, 1 / 3), (4, 7, 0.45), (3, 3, 1 / 3)):
        Lx, Ly = nh * s, nv * s
        ell, var_e = nf.wavenumber_lattice(nv, nh, s, lattice="ellipse", prune_tol=0.0)
        cov, var_c = nf.wavenumber_lattice(nv, nh, s, lattice="cover", prune_tol=0.0)
        # The paper's set E, by brute force.
        E = {
            (a, b)
            for a in range(-20, 21)
            for b in range(-20, 21)
            if (a / Lx) ** 2 + (b / Ly) ** 2 <= 1.0
        }
        assert {tuple(x) for x in ell.tolist()} == E
        assert E <= {tuple(x) for x in cov.tolist()}
        for idx, var in ((ell, var_e), (cov, var_c)):
            np.testing.assert_allclose(var.sum(), 1.0, atol=1e-14)
            assert np.all(var > 0)
            lookup = {tuple(x): v for x, v in zip(idx.tolist(), var, strict=True)}
            for x, v in lookup.items():  # isotropy: sigma^2(l) = sigma^2(-l)
                np.testing.assert_allclose(lookup[(-x[0], -x[1])], v, rtol=1e-12)
        # "cover" tiles the disc: its cells' solid angles sum to 2 pi, var = Omega / (2 pi).
        Om = nf.cell_solid_angle(
            (cov[:, 0] - 0.5) / Lx,
            (cov[:, 0] + 0.5) / Lx,
            (cov[:, 1] - 0.5) / Ly,
            (cov[:, 1] + 0.5) / Ly,
        )
        np.testing.assert_allclose(Om.sum(), 2 * np.pi, atol=1e-11)
        np.testing.assert_allclose(var_c, Om / (2 * np.pi), atol=1e-14)
    # Pruning drops the small variances and renormalises.
    idx_all, var_all = nf.wavenumber_lattice(9, 9, 1 / 3, prune_tol=0.0)
    idx_p, var_p = nf.wavenumber_lattice(9, 9, 1 / 3, prune_tol=0.01)
    assert len(idx_p) == np.sum(var_all >= 0.01) < len(idx_all)
    np.testing.assert_allclose(var_p, var_all[var_all >= 0.01] / var_all[var_all >= 0.01].sum())


# --------------------------------------------------------------------------------------------
# Spatial correlation and normalisation


def lattice_correlation(nv, nh, s, lattice="cover"):
    """``c(dx, dy) = sum_l sigma^2(l) exp(i 2 pi (l_x dx / L_x + l_y dy / L_y))`` on the grid
    of patch displacements ``(i_H s, i_V s)``, from the variances (not Monte Carlo)."""
    idx, var = nf.wavenumber_lattice(nv, nh, s, lattice=lattice)
    dx = np.arange(nh) * s
    dy = np.arange(nv) * s
    ph = np.exp(2j * np.pi * np.outer(idx[:, 0], dx) / (nh * s))  # [n, N_H]
    pv = np.exp(2j * np.pi * np.outer(idx[:, 1], dy) / (nv * s))  # [n, N_V]
    c = np.einsum("l,lh,lv->vh", var, ph, pv)  # [N_V, N_H]
    d = np.hypot(*np.meshgrid(dx, dy, indexing="xy"))
    return c, np.sinc(2 * d)  # np.sinc(x) = sin(pi x) / (pi x): sin(k d) / (k d), k = 2 pi


def test_correlation_vs_isotropic_sinc():
    # 30 x 30 patches at lambda / 3 (L = 10 lambda): the series reproduces sin(kd)/(kd) within
    # 0.003 for neighbours and 0.015 for all displacements up to L / 4 in each axis (measured:
    # 0.0015 and 0.0116); the imaginary part vanishes by the symmetry of the lattice.
    c, exact = lattice_correlation(30, 30, 1 / 3)
    assert np.max(np.abs(c.imag)) < 1e-12
    err = np.abs(c - exact)
    assert err[0, 1] < 3e-3 and err[1, 0] < 3e-3
    assert np.max(err[:8, :8]) < 1.5e-2
    # Convergence with the lattice: the paper's 9 x 9 BS array is coarser (0.017 / 0.035).
    c9, exact9 = lattice_correlation(9, 9, 1 / 3)
    err9 = np.abs(c9 - exact9)
    assert err[0, 1] < err9[0, 1] < 0.03 and np.max(err9[:3, :3]) < 0.05
    # The paper's ellipse set E alone loses the edge mass and converges more slowly.
    ce, _ = lattice_correlation(30, 30, 1 / 3, lattice="ellipse")
    assert np.abs(ce - exact)[0, 1] > 5 * err[0, 1]
    # A Fourier series of period L: the end patches of a row correlate like neighbours.
    np.testing.assert_allclose(c[0, -1], np.conj(c[0, 1]), atol=1e-12)
    # The model's R_r equals the displacement correlation (stationary, unit diagonal).
    model = nf.channel_model((9, 9), 1, 1 / 3)
    R_r, R_s = (np.asarray(x) for x in nf.correlation_matrices(model))
    pos = nf.planar_positions(9, 9, 1 / 3)
    i, j = np.array([0, 4, 10, 40, 80]), np.array([1, 31, 60, 77, 0])
    di = np.rint((pos[j] - pos[i]) / (1 / 3)).astype(int)  # displacement in patches
    cij = np.where(
        (di[:, 0] >= 0) & (di[:, 1] >= 0),
        c9[np.abs(di[:, 1]), np.abs(di[:, 0])],
        np.nan,
    )
    ok = ~np.isnan(cij)
    np.testing.assert_allclose(np.conj(R_r[i, j][ok]), cij[ok], atol=1e-12)
    np.testing.assert_allclose(np.diag(R_r).real, 1.0, atol=1e-12)
    np.testing.assert_allclose(R_s, [[1.0]], atol=1e-12)


def test_normalisation_exact_and_monte_carlo():
    model = nf.channel_model((9, 9), (3, 3))
    a_r, a_s = np.asarray(model.a_r), np.asarray(model.a_s)
    var_r, var_s = np.asarray(model.var_r), np.asarray(model.var_s)
    Nr, Ns = model.n_r, model.n_s
    assert (Nr, Ns) == (81, 9) and a_r.shape == (81, len(var_r))
    np.testing.assert_allclose(np.abs(a_r), 1.0, atol=1e-12)
    # E[tr(H H^H)] = sum_{l,q} sigma^2(l, q) ||a_r||^2 ||a_s||^2 (unit-modulus a) = N_r N_s.
    exact = np.sum(
        np.outer(var_r, var_s) * np.outer(np.sum(np.abs(a_r) ** 2, 0), np.sum(np.abs(a_s) ** 2, 0))
    )
    np.testing.assert_allclose(exact, Nr * Ns, rtol=1e-12)
    # Monte Carlo: n = 200 realizations of 2 x 3 pairs.
    ones = jnp.ones((2, 3))
    H = np.asarray(nf.sample_channels(jax.random.key(7), model, ones, 200))
    assert H.shape == (200, 2, 3, Nr, Ns)
    tr = np.sum(np.abs(H) ** 2, axis=(-2, -1)).ravel() / (Nr * Ns)
    assert abs(tr.mean() - 1.0) < 4 * tr.std() / np.sqrt(tr.size)
    # Receive / transmit correlation by Monte Carlo against R = sum sigma^2 a a^H.
    R_r, R_s = (np.asarray(x) for x in nf.correlation_matrices(model))
    Hf = H.reshape(-1, Nr, Ns)
    R_r_mc = np.einsum("jra,jsa->rs", Hf, Hf.conj()) / (Hf.shape[0] * Ns)
    R_s_mc = np.einsum("jra,jrb->ab", Hf, Hf.conj()) / (Hf.shape[0] * Nr)
    assert np.max(np.abs(R_r_mc - R_r)) < 0.06  # measured 0.03-0.035 over seeds
    assert np.max(np.abs(R_s_mc - R_s)) < 0.025  # 0.008-0.011
    # G = sqrt(beta) H, same draws for the same key.
    beta = jnp.array([[1e-3, 2.0, 0.5], [4.0, 1.0, 0.0]])
    G = np.asarray(nf.sample_channels(jax.random.key(7), model, beta, 200))
    np.testing.assert_allclose(G, np.sqrt(beta)[None, :, :, None, None] * H, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Large-scale fading


def test_drop_large_scale():
    key = jax.random.key(11)
    d = nf.drop_large_scale(key, 9, 6)
    bs, ue = np.asarray(d.bs_pos), np.asarray(d.ue_pos)
    assert bs.shape == (9, 2) and ue.shape == (6, 2) and d.beta.shape == (9, 6)
    assert np.all((bs >= 0) & (bs <= 1000)) and np.all((ue >= 0) & (ue <= 1000))
    # Wrap-around 3-D distance and beta_dB = -30.5 - 36.7 log10(d) + F - (-174 + 73 + 7) dBm.
    diff = ue[None, :, :] - bs[:, None, :]
    diff = np.mod(diff + 500.0, 1000.0) - 500.0
    dist = np.sqrt(np.sum(diff**2, axis=-1) + 10.0**2)
    np.testing.assert_allclose(d.distance, dist, rtol=1e-12)
    noise = -174.0 + 10 * np.log10(20e6) + 7.0
    F = np.asarray(d.beta_db) - (-30.5 - 36.7 * np.log10(dist)) + noise
    np.testing.assert_allclose(F, d.shadowing_db, atol=1e-9)
    np.testing.assert_allclose(d.beta, 10 ** (np.asarray(d.beta_db) / 10), rtol=1e-12)
    # Same key, same drop; vmap over keys (traced).
    d2 = nf.drop_large_scale(key, 9, 6)
    np.testing.assert_allclose(d2.beta, d.beta, rtol=1e-12)
    many = jax.vmap(lambda k: nf.drop_large_scale(k, 9, 6, decorrelation_m=None))(
        jax.random.split(key, 200)
    )
    Fm = np.asarray(many.shadowing_db).ravel()  # 10800 draws of N(0, 4^2)
    assert abs(Fm.mean()) < 0.2 and abs(Fm.std() - 4.0) < 0.15
    g = nf.drop_large_scale(key, 9, 6, bs_layout="grid")
    np.testing.assert_allclose(
        np.sort(np.asarray(g.bs_pos)[:, 0]), np.repeat([1000 / 6, 500, 5000 / 6], 3)
    )


# --------------------------------------------------------------------------------------------
# Log-det SE against eq. (8)


@pytest.mark.parametrize(
    "combiner, estimator, solve, chunk",
    [
        ("mr", "independent", "auto", None),
        ("mr", "sample", "auto", None),
        ("l_mmse", "independent", "gram", 5),  # 12 realizations in chunks of 5 (padded)
        ("l_mmse", "independent", "direct", None),
        ("l_mmse", "sample", "gram", None),
    ],
)
def test_log_det_se_vs_reference(combiner, estimator, solve, chunk):
    _, G = small_system()
    got = se.uplink_se_log_det(G, P, combiner, chunk=chunk, estimator=estimator, solve=solve)
    want = ref_log_det_se(G, P, combiner, estimator)
    assert got.shape == (3,) and np.all(want > 0)
    np.testing.assert_allclose(got, want, rtol=1e-9)
    # Prelog with tau_p, tau_c.
    got2 = se.uplink_se_log_det(
        G, P, combiner, tau_p=10, tau_c=200, chunk=chunk, estimator=estimator, solve=solve
    )
    np.testing.assert_allclose(got2, 0.95 * want, rtol=1e-9)


def _sum_se(G, p, combiner, solve):
    return jnp.sum(se.uplink_se_log_det(G, p, combiner, solve=solve))


# One compiled gradient per configuration, shared by the tests (same shapes).
grad_p = jax.jit(jax.grad(_sum_se, argnums=1), static_argnames=("combiner", "solve"))


def test_log_det_se_rank_deficient_ue_array():
    # 2 x 2 patches at lambda / 3: l_x = +-1 give the same response, so H has rank 3 < N_s
    # and Psi_k is singular; the SE is that of its range (pseudo-inverse reference).
    model, G = small_system(ue_array=(2, 2), ue_spacing=1 / 3)
    assert np.linalg.matrix_rank(np.asarray(model.a_s)) == 3
    for combiner in ("mr", "l_mmse"):
        got = se.uplink_se_log_det(G, P, combiner, solve="gram")
        want = ref_log_det_se(G, P, combiner, "independent", pinv=True)
        np.testing.assert_allclose(got, want, rtol=1e-6)
    assert np.all(np.isfinite(grad_p(G, P, combiner="l_mmse", solve="gram")))


def single_antenna_se(G, p, combiner, estimator):
    """``log2(1 + p_k |E[v_k^H g_k]|^2 / (sum_i p_i E|v_k^H g_i|^2 - p_k |E[v_k^H g_k]|^2
    + E||v_k||^2))`` with ``v_k``, ``g_i`` stacked over the BSs (``N_s = 1``)."""
    V = combiners_np(G, p, combiner)[..., 0]  # [n, M, K, N_r]
    g = G[..., 0]
    a = np.einsum("jmkr,jmir->jmki", V.conj(), g)  # v_mk^H g_mi
    mean = a.mean(axis=0)  # [M, K, I]
    if estimator == "sample":
        power = np.mean(np.abs(a.sum(axis=1)) ** 2, axis=0)  # E|v_k^H g_i|^2, [K, I]
    else:  # independent BSs: |sum_m E a_m|^2 + sum_m Var a_m
        power = np.abs(mean.sum(axis=0)) ** 2 + np.sum(a.var(axis=0), axis=0)
    signal = np.abs(np.einsum("mkk->k", mean)) ** 2
    noise = np.sum(np.mean(np.sum(np.abs(V) ** 2, axis=-1), axis=0), axis=0)  # [K]
    sinr = p * signal / (power @ p - p * signal + noise)
    return np.log2(1 + sinr), mean, a.var(axis=0), noise


@pytest.mark.parametrize(
    "combiner, estimators", [("mr", ("independent",)), ("l_mmse", ("independent", "sample"))]
)
def test_single_antenna_ue_matches_sinr(combiner, estimators):
    _, G = small_system(ue_array=(1, 1))
    assert G.shape[-1] == 1
    for estimator in estimators:
        got = se.uplink_se_log_det(G, P, combiner, estimator=estimator)
        want, mean, var, _ = single_antenna_se(G, P, combiner, estimator)
        np.testing.assert_allclose(got, want, rtol=1e-9)
    # The same SINR as the distributed uplink of the book's Thm 5.4 with a = 1 (all BSs
    # serving): m[l, k, i] = E[v_lk^H g_li], s = Var, F[l, k] = E||v_lk||^2.
    _, mean, var, _ = single_antenna_se(G, P, combiner, "independent")
    V = combiners_np(G, P, combiner)[..., 0]
    F = np.mean(np.sum(np.abs(V) ** 2, axis=-1), axis=0)  # [M, K]
    sinr, _ = se._uplink_distributed_sinr(
        jnp.asarray(mean),
        jnp.asarray(var),
        jnp.asarray(F),
        jnp.ones((3, 3), bool),
        jnp.asarray(P),
        lsfd=False,
    )
    np.testing.assert_allclose(
        se.uplink_se_log_det(G, P, combiner), np.log2(1 + np.asarray(sinr)), rtol=1e-9
    )


def test_lmmse_beats_mr_on_a_drop():
    # The shapes of small_system (M = 3, K = 3, n = 12), so nothing compiles again.
    model, _ = small_system()
    drop = nf.drop_large_scale(jax.random.key(5), 3, 3)
    G = nf.sample_channels(jax.random.key(6), model, drop.beta, N_REAL)
    p = jnp.full((3,), 100.0 / model.n_s)
    mr = np.asarray(se.uplink_se_log_det(G, p, "mr"))
    lmmse = np.asarray(se.uplink_se_log_det(G, p, "l_mmse"))
    assert np.all(mr > 0)
    assert lmmse.sum() > 1.2 * mr.sum()
    assert np.all(lmmse >= mr)


# --------------------------------------------------------------------------------------------
# Gradients, jit


def test_gradients_vs_finite_differences():
    _, G = small_system()
    rng = np.random.default_rng(0)
    u = rng.normal(size=3)
    # MR, and L-MMSE by the Gram path (F^H (I + F P F^H)^{-1} F, linear in p); the direct
    # path is plain autodiff and equals the Gram path's values (test_log_det_se_vs_reference).
    for combiner, solve in (("mr", "auto"), ("l_mmse", "gram")):
        f = lambda p: float(_sum_se(G, p, combiner, solve))
        g = np.asarray(grad_p(G, jnp.asarray(P), combiner=combiner, solve=solve))
        h = 1e-4
        fd = (f(P + h * u) - f(P - h * u)) / (2 * h)
        np.testing.assert_allclose(g @ u, fd, rtol=1e-6)
        if combiner == "l_mmse":  # at a zero power, one-sided (the feasible side)
            p0 = P * np.array([0.0, 1.0, 1.0])
            g0 = np.asarray(grad_p(G, jnp.asarray(p0), combiner=combiner, solve=solve))
            h0 = 1e-7
            fd0 = (f(p0 + h0 * np.array([1.0, 0.0, 0.0])) - f(p0)) / h0
            assert np.all(np.isfinite(g0))
            np.testing.assert_allclose(g0[0], fd0, rtol=1e-4)
    # In G, along a random direction (through the Gram path's Cholesky factor of W).
    dG = rng.normal(size=G.shape) + 1j * rng.normal(size=G.shape)
    dG *= 1e-2 * np.abs(G).mean()
    fg = lambda t: _sum_se(G + t * dG, P, "l_mmse", "gram")
    jvp = jax.jvp(fg, (0.0,), (1.0,))[1]
    fd = (fg(1e-4) - fg(-1e-4)) / 2e-4
    np.testing.assert_allclose(jvp, fd, rtol=1e-6)


def test_jit_equals_eager():
    model, G = small_system()
    plain = se.uplink_se_log_det(G, P, "l_mmse", solve="gram")
    jitted = jax.jit(lambda g, p: se.uplink_se_log_det(g, p, "l_mmse", solve="gram"))
    np.testing.assert_allclose(jitted(G, P), plain, rtol=1e-12)
    G4 = G[:4]  # eager (op by op) is slow: MR on 4 realizations in 2 chunks
    plain = se.uplink_se_log_det(G4, P, "mr", chunk=2)
    with jax.disable_jit():
        eager = se.uplink_se_log_det(G4, P, "mr", chunk=2)
    np.testing.assert_allclose(eager, plain, rtol=1e-10)
    # Channel sampling with the model as a pytree argument.
    beta = jnp.ones((3, 3))
    a = nf.sample_channels(jax.random.key(1), model, beta, N_REAL)
    b = jax.jit(lambda k, m, bt: nf.sample_channels(k, m, bt, N_REAL))(
        jax.random.key(1), model, beta
    )
    np.testing.assert_allclose(a, b, atol=1e-12)


# --------------------------------------------------------------------------------------------
# Bad inputs, refused before any compute, naming the parameter


def _bad_cases():
    key = jax.random.key(0)
    model = nf.channel_model((3, 3), (2, 2))
    beta = jnp.ones((2, 3))
    G = np.ones((2, 2, 3, 9, 4), complex)
    p = np.ones(3)
    ld = se.uplink_se_log_det
    return [
        ("spacing", lambda: nf.channel_model(spacing=0.0)),
        ("spacing", lambda: nf.channel_model(spacing=-1 / 3)),
        ("ue_spacing", lambda: nf.channel_model(ue_spacing=0.0)),
        ("bs_array", lambda: nf.channel_model(bs_array=80)),
        ("bs_array", lambda: nf.channel_model(bs_array=(0, 9))),
        ("bs_array", lambda: nf.channel_model(bs_array="9x9")),
        ("ue_array", lambda: nf.channel_model(ue_array=(3, -1))),
        ("ue_array", lambda: nf.channel_model(ue_array=0)),
        ("lattice", lambda: nf.channel_model(lattice="square")),
        ("prune_tol", lambda: nf.wavenumber_lattice(3, 3, 1 / 3, prune_tol=1.5)),
        ("n_vertical", lambda: nf.planar_positions(0, 3, 0.3)),
        ("beta", lambda: nf.sample_channels(key, model, -beta, 4)),
        ("beta", lambda: nf.sample_channels(key, model, beta[0], 4)),
        ("n", lambda: nf.sample_channels(key, model, beta, 0)),
        ("M", lambda: nf.drop_large_scale(key, M=0)),
        ("K", lambda: nf.drop_large_scale(key, K=-2)),
        ("M", lambda: nf.drop_large_scale(key, M=8, bs_layout="grid")),
        ("bs_layout", lambda: nf.drop_large_scale(key, bs_layout="hex")),
        ("side", lambda: nf.drop_large_scale(key, side=-1.0)),
        ("shadow_std_db", lambda: nf.drop_large_scale(key, shadow_std_db=-4.0)),
        ("decorrelation_m", lambda: nf.drop_large_scale(key, decorrelation_m=0.0)),
        ("p", lambda: ld(G, -p)),
        ("p", lambda: ld(G, p[:2])),
        ("combiner", lambda: ld(G, p, "zf")),
        ("estimator", lambda: ld(G, p, estimator="mean")),
        ("solve", lambda: ld(G, p, "l_mmse", solve="qr")),
        ("G", lambda: ld(G[0], p)),
        ("G", lambda: ld(G * np.nan, p)),
        ("tau_p", lambda: ld(G, p, tau_p=2)),
        ("tau_p", lambda: ld(G, p, tau_p=5, tau_c=5)),
        ("chunk", lambda: ld(G, p, chunk=0)),
    ]


def test_bad_inputs_refused():
    for name, call in _bad_cases():
        with pytest.raises(ValueError, match=name):
            call()
    with pytest.raises(ValueError):
        nf.cell_solid_angle(1.0, 0.0, 0.0, 1.0)
