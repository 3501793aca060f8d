"""Centralized P-RZF / P-MMSE references of the AP-cooperation scenario (beyond [AP-COOP]; the
cell-free book's eqs. (5.16), (5.18) on the serving sets, per-AP segments normalised as
[AP-COOP] eq. (17)): ``cooperation.central_precoders`` against the NumPy float64 primal
reference ``tests/numpy_cooperation.py``, against the cluster RZF in the one case where the two
coincide, the per-AP power budget, the environment's step with the reserved actions against
NumPy on the step's own channels, P-MMSE >= cluster RZF on average, the batched ``lax.cond``
and the errors of bad inputs. Runs in float64 (``conftest.py``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpy_cooperation as ref
import pytest

from cfmimo_jax import cooperation as co
from cfmimo_jax.envs import ap_cooperation as apc
from cfmimo_jax.processing import cluster_rzf

# the small scenario of tests/test_ap_cooperation.py (same shapes: shared compilation cache)
CONFIG = {
    "n_aps": 8,
    "n_antennas": 2,
    "n_ues": 5,
    "tau_p": 3,
    "side_m": 400.0,
    "max_aps_per_ue": 3,
    "max_neighbours": 3,
    "metric_samples": 2,
    "obs_users": 2,
    "obs_history": 2,
    "episode_steps": 2,
}
B = 6
M, K, N = 6, 5, 2  # the random kernel cases
SCHEMES = ("p_rzf", "p_mmse")

j_central = jax.jit(co.central_precoders, static_argnames=("scheme", "max_serving"))


def _case(seed):
    """Random estimates with unequal gains, error variances, a serving mask where every UE has
    1-3 APs (AP 5 serves nobody), true channels = estimates + errors."""
    rng = np.random.default_rng(seed)
    gain = rng.uniform(0.2, 5.0, size=(M, K))
    g = (rng.normal(size=(M, K, N)) + 1j * rng.normal(size=(M, K, N))) / np.sqrt(2)
    Hhat = np.sqrt(gain)[..., None] * g
    C = rng.uniform(0.05, 0.5, size=(M, K))
    e = (rng.normal(size=(M, K, N)) + 1j * rng.normal(size=(M, K, N))) / np.sqrt(2)
    H = Hhat + np.sqrt(C)[..., None] * e
    D = np.zeros((M, K), bool)
    for k, aps in enumerate([[0, 1], [1], [2, 3, 4], [0, 3], [4]]):
        D[aps, k] = True
    return Hhat, C, D, H


def _C_mat(C):
    return C[..., None, None] * np.eye(N)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_central_precoders_match_numpy_and_meet_the_ap_budget(scheme):
    p, P = 3.0, 100.0
    for seed in (0, 1):
        Hhat, C, D, H = _case(seed)
        want = ref.central_precoders(Hhat, C, D, p, scheme)
        for cap in (None, 3):  # all APs / serving tables of the largest |M_k|
            W = np.asarray(j_central(Hhat, _C_mat(C), D, p, scheme=scheme, max_serving=cap))
            np.testing.assert_allclose(W, want, rtol=0, atol=1e-10)
        # unit norm on D, zero elsewhere; with rho = P / |K_m| every AP radiates exactly P
        norms = np.linalg.norm(W, axis=-1)
        np.testing.assert_allclose(norms[D], 1.0, rtol=1e-12)
        assert np.all(norms[~D] == 0)
        rho = P * D / np.maximum(D.sum(1, keepdims=True), 1)
        radiated = np.sum(rho * norms**2, axis=1)
        np.testing.assert_allclose(radiated, np.where(D.any(1), P, 0.0), rtol=1e-12)
        # eq. (9) on the true channels, JAX kernel vs the NumPy loops
        sinr = co.downlink_sinr(H, W, rho)
        np.testing.assert_allclose(np.asarray(sinr), ref.downlink_sinr(H, want, rho), rtol=1e-9)


def test_przf_serving_everyone_is_the_cluster_rzf():
    """Hand identity: with every AP serving every UE (``P_k`` = all UEs, ``M_k`` = all APs)
    P-RZF is ``v_k = Hhat (Hhat^H Hhat + I / p)^{-1} e_k`` (book eq. (5.18), Woodbury), the
    joint RZF of one cluster of all APs with ``alpha = 1 / p`` ([AP-COOP] eq. (16)); both
    normalise each AP's segment."""
    Hhat, C, _, _ = _case(2)
    D = np.ones((M, K), bool)
    p = 4.0
    W = j_central(Hhat, _C_mat(C), D, p, scheme="p_rzf")
    Wc = cluster_rzf(Hhat, jnp.zeros((M,), jnp.int32), D, 1.0 / p)
    np.testing.assert_allclose(np.asarray(W), np.asarray(Wc), rtol=0, atol=1e-10)


def test_central_precoders_errors_name_the_parameter():
    Hhat, C, D, _ = _case(3)
    Cm = _C_mat(C)
    for kwargs, match in (
        (dict(scheme="mmse"), "scheme"),
        (dict(Hhat=Hhat[0]), "Hhat"),
        (dict(Hhat=np.where(D[..., None], Hhat, np.nan)), "Hhat"),
        (dict(C=Cm[:, :-1]), "C"),
        (dict(C=C), "C"),
        (dict(D=D[:-1]), "D"),
        (dict(D=D * 2), "D"),
        (dict(p=np.ones(K + 1)), "p"),
        (dict(p=-1.0), "p"),
        (dict(max_serving=0), "max_serving"),
        (dict(max_serving=2), "max_serving"),  # UE 2 has 3 serving APs
    ):
        args = {**dict(Hhat=Hhat, C=Cm, D=D, p=1.0, scheme="p_mmse", max_serving=None), **kwargs}
        with pytest.raises(ValueError, match=match):
            co.central_precoders(**args)


# ---------------------------------------------------------------- the scenario's reserved actions


@pytest.fixture(scope="module")
def env_params():
    return apc.make(CONFIG)


@pytest.fixture(scope="module")
def batch(env_params):
    env, params = env_params
    keys = jax.random.split(jax.random.PRNGKey(0), B)
    return jax.jit(jax.vmap(env.reset, (0, None)))(keys, params)


@pytest.fixture(scope="module")
def step_env(env_params):
    return jax.jit(env_params[0].step_env)


def test_central_mode_of_actions(env_params):
    env, _ = env_params
    a = jnp.array([[0, 3, 7, 1], [0, -1, 2, 0], [-2, 0, 0, 0], [-1, -2, 0, 0], [-7, 0, 0, 0]])
    np.testing.assert_array_equal(np.asarray(env.central_mode(a)), [0, 1, 2, 2, 2])
    names = env.heuristics()
    obs = jnp.zeros((3, env.n_agents, env.obs_dim))
    assert apc.CENTRAL_PRZF == -1 and apc.CENTRAL_PMMSE == -2
    np.testing.assert_array_equal(np.asarray(names["central_przf"](obs)), -1)
    np.testing.assert_array_equal(np.asarray(names["central_pmmse"](obs)), -2)
    assert {"central_przf", "central_pmmse"} <= set(env.default_heuristics)


def test_error_correlations_against_the_estimation_equations(env_params, batch):
    env, params = env_params
    st = jax.tree.map(lambda x: x[1], batch[1])
    C = np.asarray(env.error_correlations(st, params))
    want = ref.error_variances(
        np.asarray(st.gain), np.asarray(st.pilot), params.pilot_power_mw, env.tau_p
    )
    np.testing.assert_allclose(C, want[..., None, None] * np.eye(env.N), rtol=1e-9, atol=1e-15)


@pytest.mark.parametrize("name, scheme", [("central_przf", "p_rzf"), ("central_pmmse", "p_mmse")])
def test_step_central_against_numpy(env_params, batch, step_env, name, scheme):
    """The step's sum rate, SINRs, reward and link metrics of a reserved action against the
    NumPy reference on the step's own channels and estimates (``env.channels``)."""
    env, params = env_params
    P, p = params.ap_power_mw, params.pilot_power_mw
    for b in (0, 1):
        st = jax.tree.map(lambda x, b=b: x[b], batch[1])
        key = jax.random.PRNGKey(50 + b)
        H, Hhat = map(np.asarray, env.channels(key, st, params))
        D = np.asarray(st.D)
        C = ref.error_variances(np.asarray(st.gain), np.asarray(st.pilot), p, env.tau_p)
        W = ref.central_precoders(Hhat, C, D, p, scheme)
        rho = P * D / np.maximum(D.sum(1, keepdims=True), 1)
        sinr = ref.downlink_sinr(H, W, rho)
        action = env.heuristics()[name](jnp.zeros((env.n_agents, env.obs_dim)))
        _, st2, reward, _, _, info = step_env(key, st, action, params)
        rate = np.log2(1 + sinr)
        np.testing.assert_allclose(np.asarray(info["rate"]), rate, rtol=1e-9)
        np.testing.assert_allclose(float(info["sum_rate"]), rate.sum(), rtol=1e-9)
        np.testing.assert_allclose(np.asarray(info["sinr_db"]), 10 * np.log10(sinr), rtol=1e-9)
        # the no-cooperation baseline of the same channels: MRT, eq. (18)
        W0 = np.where(D[..., None], Hhat / np.linalg.norm(Hhat, axis=-1, keepdims=True), 0)
        rate0 = np.log2(1 + ref.downlink_sinr(H, W0, rho))
        np.testing.assert_allclose(np.asarray(info["rate_mrt"]), rate0, rtol=1e-9)
        for k in ("links", "requests", "coop_rate", "clusters", "efficiency"):
            assert float(info[k]) == 0.0, k
        own, own0 = D @ rate, D @ rate0
        gain = np.where(own0 > 0, (own - own0) / np.where(own0 > 0, own0, 1), 0.0)
        np.testing.assert_allclose(np.asarray(reward), params.alpha_1 * gain, atol=1e-12)
        assert not np.asarray(st2.bits).any() and not np.asarray(st2.linked).any()


def test_pmmse_beats_cluster_rzf_on_average_and_mixed_batches(env_params, batch, step_env):
    env, params = env_params
    step_batch = jax.jit(env.step_batch)
    obs, st = batch
    keys = jax.random.split(jax.random.PRNGKey(60), B)
    heur = env.heuristics()
    sums = {}
    for name in ("none", "full", "central_przf", "central_pmmse"):
        info = step_batch(keys, st, heur[name](obs, st), params)[4]
        sums[name] = np.asarray(info["sum_rate"])
    assert sums["central_pmmse"].mean() >= sums["full"].mean() >= sums["none"].mean()
    assert sums["central_przf"].mean() >= sums["none"].mean()
    # a batch mixing the reserved actions with agents' actions: each environment as alone
    rand = jax.random.randint(jax.random.PRNGKey(61), (B, env.n_agents), 0, env.action_space.n)
    a = rand.at[0].set(apc.CENTRAL_PMMSE).at[1].set(apc.CENTRAL_PRZF).at[2, 3].set(-1)
    info = step_batch(keys, st, a, params)[4]
    k_step = jax.vmap(jax.random.split)(keys)[:, 0]
    for b in range(B):
        one = step_env(k_step[b], jax.tree.map(lambda x, b=b: x[b], st), a[b], params)[5]
        np.testing.assert_allclose(float(info["sum_rate"][b]), float(one["sum_rate"]), rtol=1e-9)
        np.testing.assert_allclose(float(info["links"][b]), float(one["links"]))
    np.testing.assert_allclose(info["sum_rate"][0], sums["central_pmmse"][0], rtol=1e-9)
    np.testing.assert_allclose(info["sum_rate"][1], sums["central_przf"][1], rtol=1e-9)
    np.testing.assert_allclose(info["sum_rate"][2], sums["central_przf"][2], rtol=1e-9)
