"""Truncation-aware GAE against a direct NumPy evaluation of its definition."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from algorithms.gae import gae


def np_gae(r, v, v_next, term, done, gamma, lam):
    """A_t = sum_l (gamma lam)^l delta_{t+l} within the episode (forward sums, no recursion)."""
    T = len(r)
    delta = r + gamma * (1 - term) * v_next - v
    adv = np.zeros(T)
    for t in range(T):
        acc, w = 0.0, 1.0
        for s in range(t, T):
            acc += w * delta[s]
            if done[s]:
                break
            w *= gamma * lam
        adv[t] = acc
    return adv


def test_gae_matches_definition():
    rng = np.random.default_rng(0)
    T, E = 9, 5
    r = rng.normal(size=(T, E))
    v = rng.normal(size=(T, E))
    vn = rng.normal(size=(T, E))
    term = rng.uniform(size=(T, E)) < 0.15
    trunc = (rng.uniform(size=(T, E)) < 0.15) & ~term
    done = term | trunc
    adv, ret = gae(*(jnp.asarray(x) for x in (r, v, vn, term, done)), 0.97, 0.9)
    for e in range(E):
        want = np_gae(r[:, e], v[:, e], vn[:, e], term[:, e], done[:, e], 0.97, 0.9)
        np.testing.assert_allclose(np.asarray(adv[:, e]), want, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(np.asarray(ret), np.asarray(adv) + v)


def test_truncation_bootstraps_termination_does_not():
    r = jnp.zeros((1, 2))
    v = jnp.zeros((1, 2))
    vn = jnp.ones((1, 2)) * 5.0
    term = jnp.array([[True, False]])
    done = jnp.array([[True, True]])  # env 0 terminated, env 1 truncated
    adv, _ = gae(r, v, vn, term, done, 0.5, 0.95)
    np.testing.assert_allclose(np.asarray(adv), [[0.0, 2.5]])


def test_myopic_gamma_zero_is_reward_minus_value():
    """gamma = 0 (a contextual bandit): the advantage is r_t - V(s_t), the return r_t."""
    rng = np.random.default_rng(1)
    r, v, vn = (jnp.asarray(rng.normal(size=(6, 3))) for _ in range(3))
    done = jnp.asarray(rng.uniform(size=(6, 3)) < 0.3)
    adv, ret = gae(r, v, vn, jnp.zeros_like(done), done, 0.0, 0.95)
    np.testing.assert_allclose(np.asarray(adv), np.asarray(r - v), rtol=1e-12)
    np.testing.assert_allclose(np.asarray(ret), np.asarray(r), rtol=1e-12)
