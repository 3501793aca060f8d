"""Power-control building blocks against NumPy: fractional uplink power control, the per-AP
budget projection and the projected-gradient optimiser (toy problems with known optima)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from cfmimo_jax.power import fractional_uplink, optimize_powers, project_budget

# ---- fractional uplink (book section 7.1) -----------------------------------------------------


def np_fractional_uplink(gain, D, p_max, exponent):
    """``p_k = p_max (min_i beta_i)^e / beta_k^e``, ``beta_k = sum_{l in M_k} gain_lk``; an
    unserved UE (``beta_k = 0``) is left out of the minimum and gets ``p_max``."""
    L, K = gain.shape
    beta = np.array([sum(gain[l, k] for l in range(L) if D[l, k]) for k in range(K)])
    bmin = min(b for b in beta if b > 0)
    return np.array([p_max * (bmin / b) ** exponent if b > 0 else p_max for b in beta])


@pytest.mark.parametrize("exponent", [0.0, 0.5, 1.0])
def test_fractional_uplink_matches_numpy(exponent):
    rng = np.random.default_rng(1)
    gain = 10.0 ** rng.uniform(-3, 3, size=(6, 5))
    D = rng.uniform(size=(6, 5)) < 0.5
    D[:, 3] = False  # a UE served by no AP
    D[0, 0] = True
    got = np.asarray(fractional_uplink(jnp.asarray(gain), jnp.asarray(D), 100.0, exponent))
    want = np_fractional_uplink(gain, D, 100.0, exponent)
    np.testing.assert_allclose(got, want, rtol=1e-12)
    served = D.any(axis=0)
    assert got[served].max() <= 100.0 + 1e-9
    assert np.isclose(got[served].max(), 100.0)  # the weakest UE at full power


def test_fractional_uplink_bad_input():
    gain, D = np.ones((3, 2)), np.ones((3, 2), bool)
    with pytest.raises(ValueError, match="gain"):
        fractional_uplink(np.ones(3), D, 1.0)
    with pytest.raises(ValueError, match="gain"):
        fractional_uplink(-gain, D, 1.0)
    with pytest.raises(ValueError, match="D"):
        fractional_uplink(gain, np.ones((2, 2), bool), 1.0)
    with pytest.raises(ValueError, match="p_max"):
        fractional_uplink(gain, D, -1.0)
    with pytest.raises(ValueError, match="p_max"):
        fractional_uplink(gain, D, np.ones(3))


# ---- budget projection ----------------------------------------------------------------------


def np_project_row(y, d, z):
    """Euclidean projection of ``y`` onto ``{x >= 0, x = 0 off d, sum x <= z}`` by bisection on
    the threshold ``theta`` of ``x = max(y - theta, 0)`` (an independent method)."""
    y = np.where(d, y, 0.0)
    x = np.maximum(y, 0.0)
    if x.sum() <= z:
        return x
    lo, hi = 0.0, float(np.max(y))
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if np.maximum(y - mid, 0.0).sum() > z:
            lo = mid
        else:
            hi = mid
    return np.where(d, np.maximum(y - 0.5 * (lo + hi), 0.0), 0.0)


def test_project_budget_matches_bisection_and_is_closest():
    rng = np.random.default_rng(2)
    L, K = 7, 5
    for trial in range(6):
        rho = rng.normal(size=(L, K)) * (3.0 if trial % 2 else 0.5) + 0.2
        D = rng.uniform(size=(L, K)) < 0.6
        D[0] = False  # an AP serving nobody
        z = rng.uniform(0.5, 2.0, size=L) if trial >= 3 else 1.0
        z = np.where(np.arange(L) == 1, 0.0, z) if trial == 5 else z  # a zero budget
        got = np.asarray(project_budget(jnp.asarray(rho), jnp.asarray(D), jnp.asarray(z)))
        zz = np.broadcast_to(z, (L,))
        want = np.stack([np_project_row(rho[l], D[l], zz[l]) for l in range(L)])
        np.testing.assert_allclose(got, want, atol=1e-10)
        # feasible, and no random feasible point is closer
        assert np.all(got >= 0) and np.all(got[~D] == 0)
        assert np.all(got.sum(axis=1) <= zz + 1e-12)
        for _ in range(50):
            q = rng.uniform(size=(L, K)) * D
            q = q * np.minimum(1.0, zz / np.maximum(q.sum(axis=1), 1e-12))[:, None]
            assert np.all(np.sum((rho - got) ** 2, 1) <= np.sum((rho - q) ** 2, 1) + 1e-12)


def test_project_budget_batched_and_bad_input():
    rng = np.random.default_rng(3)
    rho = rng.normal(size=(4, 3, 5))
    D = rng.uniform(size=(3, 5)) < 0.7
    batched = np.asarray(project_budget(rho, D, 0.7))
    loop = np.stack([np.asarray(project_budget(r, D, 0.7)) for r in rho])
    np.testing.assert_allclose(batched, loop, atol=1e-14)
    with pytest.raises(ValueError, match="rho"):
        project_budget(np.ones(3), np.ones(3, bool), 1.0)
    with pytest.raises(ValueError, match="D"):
        project_budget(np.ones((3, 5)), np.ones((3, 4), bool), 1.0)
    with pytest.raises(ValueError, match="rho_max"):
        project_budget(np.ones((3, 5)), np.ones((3, 5), bool), -1.0)


# ---- projected gradient ascent --------------------------------------------------------------


def test_optimize_box_quadratic_reaches_boundary_optimum():
    """``max -sum w (x - c)^2`` over ``[0, 1]^n``: the optimum is ``clip(c, 0, 1)``, on the
    boundary for the entries of ``c`` outside the box."""
    c = jnp.array([0.3, 1.7, -0.4, 0.9, 1.0])
    w = jnp.array([1.0, 2.0, 0.5, 3.0, 1.0])

    def f(x):
        return -jnp.sum(w * (x - c) ** 2)

    x, fb, hist = optimize_powers(f, jnp.full(5, 0.5), (0.0, 1.0), steps=300, lr=0.05)
    want = np.clip(np.asarray(c), 0.0, 1.0)
    np.testing.assert_allclose(np.asarray(x), want, atol=1e-4)
    assert hist.shape == (300,)
    assert float(fb) == pytest.approx(float(f(jnp.asarray(want))), abs=1e-6)
    assert float(fb) >= float(jnp.max(hist)) - 1e-12  # best seen


def test_optimize_with_budget_projection_is_projection_of_target():
    """``max -||x - c||^2`` over the per-AP budget set (projected gradient, ``sgd``): the
    optimum is the projection of ``c``, checked against the bisection projection."""
    rng = np.random.default_rng(4)
    c = rng.normal(size=(4, 3)) + 0.3
    D = rng.uniform(size=(4, 3)) < 0.7

    def f(x):
        return -jnp.sum((x - c) ** 2)

    x, fb, _ = optimize_powers(
        f,
        jnp.zeros((4, 3)),
        (0.0, np.inf),
        project=lambda r: project_budget(r, D, 1.0),
        steps=100,
        lr=0.2,
        optimizer="sgd",
    )
    want = np.stack([np_project_row(c[l], D[l], 1.0) for l in range(4)])
    np.testing.assert_allclose(np.asarray(x), want, atol=1e-9)
    assert float(fb) == pytest.approx(-np.sum((want - c) ** 2), abs=1e-9)


def test_optimize_returns_best_iterate_not_last():
    """SGD with too large a step oscillates outwards: the start is the best iterate."""

    def f(x):
        return -(x**2)

    x, fb, hist = optimize_powers(f, 1.0, (-4.0, 4.0), steps=6, lr=1.5, optimizer="sgd")
    assert float(x) == 1.0 and float(fb) == -1.0
    assert np.all(np.asarray(hist) < -1.0)


def test_optimize_log_domain_pytree_jit_vmap():
    """Concave ``sum(log x) - w x`` (optimum ``1 / w`` inside the box) in the log domain, over
    a dict pytree; jit + vmap over the closure data equals a loop."""

    def solve(w):
        def f(x):
            return jnp.sum(jnp.log(x["a"]) - w * x["a"]) + jnp.sum(-((x["b"] - 2.0) ** 2))

        init = {"a": jnp.full(3, 0.5), "b": jnp.zeros(2)}
        bounds = ({"a": 1e-3, "b": 1e-3}, {"a": 10.0, "b": 1.0})
        x, fb, _ = optimize_powers(f, init, bounds, steps=300, lr=0.05, log_domain=True)
        return x, fb

    ws = jnp.array([[1.0, 2.0, 4.0], [0.5, 1.0, 8.0]])
    xs, fbs = jax.jit(jax.vmap(solve))(ws)
    np.testing.assert_allclose(np.asarray(xs["a"]), 1.0 / np.asarray(ws), rtol=1e-3)
    np.testing.assert_allclose(np.asarray(xs["b"]), 1.0, atol=1e-12)  # on the upper bound
    for i in range(2):
        x1, f1 = solve(ws[i])
        np.testing.assert_allclose(np.asarray(x1["a"]), np.asarray(xs["a"][i]), rtol=1e-9)
        assert float(f1) == pytest.approx(float(fbs[i]), rel=1e-12)


def test_optimize_bad_arguments():
    def f(x):
        return -jnp.sum(x**2)

    x0 = jnp.zeros(2)
    for kwargs, name in [
        (dict(steps=0), "steps"),
        (dict(lr=0.0), "lr"),
        (dict(lr=-1.0), "lr"),
        (dict(optimizer="lbfgs"), "optimizer"),
    ]:
        with pytest.raises(ValueError, match=name):
            optimize_powers(f, x0, (0.0, 1.0), **kwargs)
    with pytest.raises(ValueError, match="low <= high"):
        optimize_powers(f, x0, (1.0, 0.0))
    with pytest.raises(ValueError, match="low <= high"):
        optimize_powers(f, x0, (jnp.array([0.0, 2.0]), 1.0))
    with pytest.raises(ValueError, match="log_domain"):
        optimize_powers(f, x0, (0.0, 1.0), log_domain=True)
    with pytest.raises(ValueError, match="bounds"):
        optimize_powers(f, x0, (0.0,))
