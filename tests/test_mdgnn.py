"""MDGNN ([MOBILE-AP]'s centralised multidimensional-GNN baseline, ``algorithms.mdgnn``).

Permutation properties of the 1D / 2D / 3D networks under random permutations of the APs, UEs
and antennas, applied to the observation through its documented layout (``MobileAP._obs``);
one layer against a NumPy float64 transcription of the multidimensional update; the action
map against its formula; ``cfmimo train`` end to end: a short seeded run beats its initial
parameters (and the static heuristics) on held-out drops, and resumes exactly;
bad configurations refused naming the key.
"""

from __future__ import annotations

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

import algorithms
from algorithms import mdgnn
from cfmimo_cli.config import load_config
from cfmimo_cli.train import build, evaluate_checkpoint, evaluate_run, train
from cfmimo_jax.envs import mobile_ap

M, K, N = 3, 2, 2
ENV_CFG = {"n_aps": M, "n_ues": K, "n_antennas": N, "episode_steps": 4}
F = 6 * K + N + 2
# the training run (tests/CLI): 30 updates of 4 slots x 8 drops, two chunks
TRAIN_CFG = dict(
    n_envs=8, n_steps=4, n_updates=30, updates_per_chunk=15, hidden=16, n_layers=2, lr=0.01
)


@pytest.fixture(scope="module")
def env_params():
    return mobile_ap.make(ENV_CFG)


def _trainer(env_params, **cfg):
    env, params = env_params
    base = dict(n_envs=8, n_steps=4, n_updates=2, updates_per_chunk=1, hidden=16, n_layers=2)
    return algorithms.make_train("mdgnn", {**base, **cfg}, env, params)


def permute_obs(obs, pa, pu, pn):
    """The observation of the network with APs, UEs and antennas relabelled: new AP ``m`` is old
    AP ``pa[m]``, new UE ``k`` old UE ``pu[k]``, new antenna ``n`` old antenna ``pn[n]``. Row
    layout: ``[g (K), ghat (K), pos (2), rel (2K, UE-major), rho (K), q (N), SE (K)]``."""
    o = obs[..., pa, :]
    g, ghat, pos = o[..., :K], o[..., K : 2 * K], o[..., 2 * K : 2 * K + 2]
    rel = o[..., 2 * K + 2 : 4 * K + 2].reshape(o.shape[:-1] + (K, 2))
    rho, q, se = o[..., 4 * K + 2 : 5 * K + 2], o[..., 5 * K + 2 : 5 * K + 2 + N], o[..., -K:]
    parts = [
        g[..., pu],
        ghat[..., pu],
        pos,
        rel[..., pu, :].reshape(o.shape[:-1] + (2 * K,)),
        rho[..., pu],
        q[..., pn],
        se[..., pu],
    ]
    return np.concatenate(parts, -1)


def _logits_fn(tr):
    params = tr.init_params(jax.random.PRNGKey(1))
    return jax.jit(lambda o: tr.logits(params, o))


@pytest.fixture(scope="module")
def nets(env_params):
    """Jitted logits of every variant (compiled once per variant)."""
    out = {}
    for name, cfg in {
        "1d": dict(dims=1),
        "2d": dict(dims=2),
        "3d": dict(dims=3),
        "3d_pe": dict(dims=3, antenna_embedding=False),
    }.items():
        out[name] = _logits_fn(_trainer(env_params, **cfg))
    return out


def _gap(fn, obs, pa, pu, pn):
    """Max deviation from equivariance: ``f(P obs)`` against ``P f(obs)`` (power and antenna
    logits)."""
    zp, zq = map(np.asarray, fn(obs))
    zp2, zq2 = map(np.asarray, fn(permute_obs(obs, pa, pu, pn)))
    want_p = zp[:, pa][:, :, pu]
    want_q = zq[:, pa][:, :, pn]
    return max(np.max(np.abs(zp2 - want_p)), np.max(np.abs(zq2 - want_q)))


_perm = st.permutations


@settings(max_examples=12, deadline=None)
@given(
    pa=_perm(range(M)),
    pu=_perm(range(K)),
    pn=_perm(range(N)),
    seed=st.integers(0, 2**16),
)
def test_permutation_properties(nets, pa, pu, pn, seed):
    obs = np.random.default_rng(seed).normal(size=(2, M, F)).astype(np.float32)
    pa, pu, pn = np.array(pa), np.array(pu), np.array(pn)
    ident_u, ident_n = np.arange(K), np.arange(N)
    tol = 1e-5
    # 2D and 3D: jointly equivariant over APs and UEs (antennas left alone)
    assert _gap(nets["2d"], obs, pa, pu, ident_n) < tol
    assert _gap(nets["3d"], obs, pa, pu, ident_n) < tol
    # 3D without the antenna embedding: also over the antennas
    assert _gap(nets["3d_pe"], obs, pa, pu, pn) < tol
    # 1D: over the APs only
    assert _gap(nets["1d"], obs, pa, ident_u, ident_n) < tol


def test_what_is_not_equivariant(nets):
    """The axes a variant does not permute are really ordered (a generic input breaks them)."""
    obs = np.random.default_rng(0).normal(size=(2, M, F)).astype(np.float32)
    ia, swap_u, swap_n = np.arange(M), np.arange(K)[::-1], np.arange(N)[::-1]
    assert _gap(nets["1d"], obs, ia, swap_u, np.arange(N)) > 1e-4  # UEs: flattened features
    assert _gap(nets["2d"], obs, ia, np.arange(K), swap_n) > 1e-4  # antennas: flattened
    assert _gap(nets["3d"], obs, ia, np.arange(K), swap_n) > 1e-4  # the learned embedding


def _np_layer(h, w0, b, wmean, wmax, residual):
    """NumPy float64 multidimensional update: ``u_i = W_0 h_i + b + sum_d (W_d^mean
    mean_{j_d} h + W_d^max max_{j_d} h)``, ``relu``, plus ``h`` if residual; ``h[I_1..I_D, F]``,
    ``d = 1`` the axis next to the features."""
    D = len(wmean)
    u = h @ w0 + b
    for d in range(D):
        axis = h.ndim - 2 - d
        u = u + np.mean(h, axis=axis, keepdims=True) @ wmean[d]
        u = u + np.max(h, axis=axis, keepdims=True) @ wmax[d]
    out = np.maximum(u, 0.0)
    return h + out if residual else out


@pytest.mark.parametrize("n_axes, residual", [(2, False), (3, True)])
def test_layer_against_numpy(n_axes, residual):
    f_in = 5 if not residual else 6
    layer = mdgnn.MDGNNLayer(f_in, 6, n_axes, residual=residual, rngs=nnx.Rngs(3))
    shape = (4, 3, 2)[:n_axes] + (f_in,)
    h = np.random.default_rng(1).normal(size=(2,) + shape)  # a leading batch axis
    w0 = np.asarray(layer.self_map.kernel[...], np.float64)
    b = np.asarray(layer.self_map.bias[...], np.float64)
    wp = np.asarray(layer.pool_map.kernel[...], np.float64).reshape(n_axes, 2, f_in, 6)
    want = np.stack([_np_layer(x, w0, b, wp[:, 0], wp[:, 1], residual) for x in h])
    got = np.asarray(layer(jnp.asarray(h, jnp.float32)), np.float64)
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    with pytest.raises(ValueError, match="in_features == out_features"):
        mdgnn.MDGNNLayer(5, 6, 2, residual=True, rngs=nnx.Rngs(0))


def test_action_map_and_shapes(env_params):
    z = np.array([[0.0, 0.0, 0.0], [-3.0, 1.0, 2.0], [-5.0, -4.0, -6.0]])
    s = 1.0 / (1.0 + np.exp(-z))
    want = s / np.maximum(1.0, s.sum(-1, keepdims=True))
    a, q = mdgnn.actions_from_logits(jnp.asarray(z), jnp.asarray(z[:, :2]))
    np.testing.assert_allclose(np.asarray(a), want, rtol=1e-6)
    np.testing.assert_allclose(np.asarray(q), s[:, :2], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(a)[2], s[2])  # under budget: not rescaled

    tr = _trainer(env_params)
    params = tr.init_params(jax.random.PRNGKey(0))
    act_fn = jax.jit(lambda o: tr.act(params, o, key=jax.random.PRNGKey(0)))
    obs = np.random.default_rng(0).normal(size=(2, 5, M, F))
    for o in (obs[0, 0], obs):
        act = act_fn(o)
        lead = o.shape[:-2]
        assert act["move"].shape == lead + (M, 2) and not np.any(np.asarray(act["move"]))
        assert act["power"].shape == lead + (M, K) and act["antenna"].shape == lead + (M, N)
        p = np.asarray(act["power"])
        assert np.all(p >= 0) and np.all(p.sum(-1) <= 1 + 1e-6)
        assert np.all((np.asarray(act["antenna"]) > 0) & (np.asarray(act["antenna"]) < 1))
    # the initial policy is near full equal power (static_equal) at K = 2
    np.testing.assert_allclose(p, 1 / K, atol=0.05)
    with pytest.raises(ValueError, match="obs"):
        tr.act(params, obs[..., :-1])


def test_training_cli_end_to_end_and_exact_resume(tmp_path):
    """``cfmimo train scenario=mobile_ap algorithm=mdgnn``: a short seeded run beats its initial
    parameters and the static heuristics on held-out drops (the evaluation's episodes), writes
    its outputs and checkpoints, and an interrupted run resumes to the same parameters."""
    over = ["scenario=mobile_ap", "algorithm=mdgnn", "checkpoint_every=1"]
    over += [f"env.{k}={v}" for k, v in ENV_CFG.items()]
    over += [f"trainer.{k}={v}" for k, v in TRAIN_CFG.items()]
    over += [
        "eval.n_envs=64",
        "eval.n_steps=4",
        "eval.heuristics=[static_equal, static_fractional]",
    ]
    cfg = load_config(None, over, command="train")
    assert cfg["trainer"]["dims"] == 3  # the default: 3D MDGNN
    out = tmp_path / "full"
    full = train(cfg, out, progress=False, stream=False)
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "learning_curves.png"):
        assert (out / name).is_file(), name
    summ = json.loads((out / "summary.json").read_text())
    assert summ["gradient_steps"] == TRAIN_CFG["n_updates"] * TRAIN_CFG["n_steps"]
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == TRAIN_CFG["n_updates"]
    assert {"reward", "sum_se", "episode_return", "objective"} <= set(rows[0])
    for row in rows:
        assert all(np.isfinite(v) for v in row.values()), row
        assert row["move_m"] == 0.0

    ev = summ["evaluation"]
    env, env_params, tr = build(cfg)
    p0 = tr.init(jax.random.PRNGKey(cfg["seed"])).params
    start = evaluate_run(cfg, p0, env, env_params, tr)["learned (greedy)"]
    learned = ev["learned (greedy)"]
    assert learned["reward"] > start["reward"] + 0.05, (learned, start)
    assert learned["reward"] > ev["static_equal"]["reward"] + 0.05, ev  # full equal power
    assert learned["reward"] > ev["static_fractional"]["reward"], ev
    assert learned["move_m"] == 0.0  # static APs
    again = evaluate_checkpoint(out, stream=False)
    assert again["evaluation"]["learned (greedy)"] == learned

    part = tmp_path / "part"
    stopped = train(cfg, part, progress=False, stream=False, stop_after_chunks=1)
    assert stopped["stopped_after_chunk"] == 1
    resumed = train(cfg, part, resume=True, progress=False, stream=False)
    leaves = zip(
        jax.tree.leaves(full["state"].params), jax.tree.leaves(resumed["state"].params), strict=True
    )
    for a, b in leaves:
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))


def test_bad_config(env_params):
    env, params = env_params
    for cfg, key in [
        ({"dims": 4}, "dims"),
        ({"dims": True}, "dims"),
        ({"dims": 2.0}, "dims"),
        ({"hidden": 0}, "hidden"),
        ({"n_layers": 1.5}, "n_layers"),
        ({"n_envs": 0}, "n_envs"),
        ({"lr": -0.1}, "lr"),
        ({"max_grad_norm": "big"}, "max_grad_norm"),
        ({"antenna_embedding": "yes"}, "antenna_embedding"),
        ({"n_updates": 5, "updates_per_chunk": 2}, "updates_per_chunk"),
        ({"lr_actor": 0.1}, "lr_actor"),
    ]:
        with pytest.raises(ValueError, match=key):
            algorithms.make_train("mdgnn", cfg, env, params)
    from cfmimo_jax import envs

    pc_env, pc_params = envs.make("power_control", {"n_aps": 4, "n_ues": 3, "tau_p": 2})
    with pytest.raises(ValueError, match="mobile_ap"):
        algorithms.make_train("mdgnn", {}, pc_env, pc_params)
    assert "mdgnn" in algorithms.names() and algorithms.default_config("mdgnn")["dims"] == 3
