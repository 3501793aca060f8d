"""The constrained-learning controls of the PPO trainers: PID multiplier, target entropy,
best-feasible checkpoint selection, and the AP-selection difference signals.

References: Stooke, Achiam, Abbeel 2020, "Responsive Safety in Reinforcement Learning by PID
Lagrangian Methods" (Algorithm 2); APS-GNN eq. (14) (the plain projected step); Wolpert and
Tumer's difference rewards for the counterfactual signals."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy_ap_selection import mrt_se as np_mrt_se

from algorithms.mappo import (
    PPOConfig,
    adapt_entropy_coef,
    better_candidate,
    make_train,
    pid_multiplier,
)
from cfmimo_jax.envs import ap_selection as aps

ENV = {"n_aps": 4, "n_ues": 2, "window_slots": 2, "n_windows": 4, "history": 2, "radius_m": 200}
TRAINER = dict(
    n_envs=8,
    n_steps=4,
    n_updates=6,
    updates_per_chunk=2,
    epochs=2,
    n_minibatches=2,
    hidden=8,
    gnn_rounds=1,
    lr=3e-3,
    critic="central",
    lagrangian=True,
    gamma=0.0,
)


def _hp(**kw):
    hp = {"lambda_kp": 0.0, "lambda_ki": 0.1, "lambda_kd": 0.0, "cost_limit": 0.2}
    hp.update(kw)
    return {k: jnp.float32(v) for k, v in hp.items()}


def _control(integral=0.0, prev=0.0):
    return {"integral": jnp.float32(integral), "prev_cost": jnp.float32(prev)}


def test_pid_multiplier_hand_computed():
    """Kp e + Ki I + Kd max(0, dJ) with the integral projected on [0, lambda_max / Ki]."""
    hp = _hp(lambda_kp=2.0, lambda_ki=0.5, lambda_kd=1.0, cost_limit=0.2)
    ctrl = _control()
    costs = [0.7, 0.9, 0.4, 0.0, 0.0, 0.0]
    integral, prev, lams = 0.0, 0.0, []
    for t, jc in enumerate(costs):
        e = jc - 0.2
        integral = min(max(integral + e, 0.0), 100.0 / 0.5)
        d = max(jc - prev, 0.0) if t > 0 else 0.0
        lams.append(min(max(2.0 * e + 0.5 * integral + 1.0 * d, 0.0), 100.0))
        prev = jc
    got = []
    for t, jc in enumerate(costs):
        lam, ctrl = pid_multiplier(ctrl, jnp.float32(jc), jnp.int32(t), hp, 100.0)
        got.append(float(lam))
    np.testing.assert_allclose(got, lams, rtol=1e-5, atol=1e-6)
    assert got[-1] == 0.0  # the integral is used up and the error is negative: projected at 0


def test_pid_responds_to_sustained_violation_within_bounded_updates():
    """Under a sustained violation e > 0 the PID multiplier reaches any level lam* within
    ceil((lam* - Kp e) / (Ki e)) updates, and with Kp > 0 it jumps by Kp e at once; the plain
    step (Kp = Kd = 0, Ki = eta) needs lam* / (eta e)."""
    e, target = 0.3, 3.0
    for kp, ki in ((1.0, 0.1), (0.0, 0.1), (5.0, 0.5)):
        hp = _hp(lambda_kp=kp, lambda_ki=ki, cost_limit=0.2)
        ctrl, lam, n = _control(), 0.0, 0
        bound = int(np.ceil((target - kp * e) / (ki * e) - 1e-9))
        while lam < target - 1e-4 and n < 1000:  # (float32 rounding of e)
            lam, ctrl = pid_multiplier(ctrl, jnp.float32(0.2 + e), jnp.int32(n), hp, 100.0)
            lam, n = float(lam), n + 1
        assert n <= max(bound, 1), (kp, ki, n, bound)
        assert n >= bound - 1
    # the first update already answers with Kp e
    lam, _ = pid_multiplier(_control(), jnp.float32(0.5), jnp.int32(0), _hp(lambda_kp=4.0), 100.0)
    assert float(lam) >= 4.0 * 0.3


def test_entropy_coefficient_tracks_target():
    c = adapt_entropy_coef(jnp.float32(0.01), jnp.float32(0.05), 0.2, 0.5)
    np.testing.assert_allclose(float(c), 0.01 * np.exp(0.5 * (0.2 - 0.05) / 0.2), rtol=1e-6)
    c = adapt_entropy_coef(jnp.float32(0.01), jnp.float32(0.4), 0.2, 0.5)
    assert float(c) < 0.01
    assert float(adapt_entropy_coef(jnp.float32(0.9), jnp.float32(0.0), 0.2, 10.0)) == 1.0


def test_bad_controls_refused():
    for key, value in (
        ("lambda_update", "fast"),
        ("lambda_kp", -1.0),
        ("lambda_max", 0.0),
        ("ent_target", -0.1),
        ("ent_adapt_lr", 0.0),
        ("select", "best_feasible_maybe"),
        ("select_envs", 0),
        ("select_steps", 1.5),
    ):
        with pytest.raises(ValueError, match=key):
            PPOConfig.from_dict({key: value})
    with pytest.raises(ValueError, match="signals"):
        aps.make(dict(ENV, signals="team"))


@pytest.fixture(scope="module")
def env_params():
    return aps.make(dict(ENV, signals="difference"))


N_UPDATES, CHUNK = 10, 2
LIMITS = (-1.0, 0.3)  # a never satisfiable cost limit (sustained violation), and a loose one


@pytest.fixture(scope="module")
def selecting(env_params):
    """One short seeded run per cost limit of ``LIMITS`` (vmapped over the traced
    ``cost_limit``: one compile), with the PID multiplier, a target entropy and selection;
    the states after init and after every chunk, and the chunks' metrics, per run."""
    env, params = env_params
    cfg = dict(
        TRAINER,
        n_updates=N_UPDATES,
        updates_per_chunk=CHUNK,
        select="best",
        select_envs=8,
        select_steps=4,
        lambda_update="pid",
        lambda_kp=1.0,
        lambda_ki=0.2,
        ent_target=0.69,  # above the entropy of a binary policy short of uniform (ln 2)
        adv_norm="joint",
        pretrain_policy="2-strongest",
        pretrain_updates=100,
    )
    tr = make_train(cfg, env, params)
    keys = jnp.stack([jax.random.PRNGKey(1)] * len(LIMITS))
    hps = {"cost_limit": jnp.asarray(LIMITS, jnp.float32)}
    rs = jax.jit(jax.vmap(tr.init))(keys, hps)
    upd = jax.jit(jax.vmap(tr.update))
    states, metrics = [rs], []
    for _ in range(N_UPDATES // CHUNK):
        rs, m = upd(rs)
        states.append(rs)
        metrics.append(jax.device_get(m))
    runs = []
    for i in range(len(LIMITS)):
        pick = lambda t, i=i: jax.tree.map(lambda x: x[i], t)  # noqa: E731
        runs.append(([pick(s) for s in states], [pick(m) for m in metrics]))
    return tr, runs


def test_multiplier_rises_every_update_under_violation(selecting):
    """cost_limit = -1 is violated by at least 1 at every update: with Kp = 1, Ki = 0.2 the
    multiplier is at least 1 + 0.2 t after update t."""
    _, runs = selecting
    states, metrics = runs[0]
    lam = np.concatenate([m["lagrange"] for m in metrics])  # the multiplier each update used
    final = float(states[-1].lagrange)
    seq = np.append(lam[1:], final)
    t = np.arange(1, len(seq) + 1)
    assert np.all(seq >= 1.0 + 0.2 * t - 1e-5)
    assert np.all(np.diff(seq) > 0)


def test_entropy_coefficient_adapts_in_training(selecting):
    """The entropy stays below the 0.69-nat target (ln 2 = 0.693 is uniform): the coefficient
    rises at every update."""
    _, runs = selecting
    metrics = runs[0][1]
    ent = np.concatenate([m["entropy"] for m in metrics])
    coef = np.concatenate([m["ent_coef"] for m in metrics])
    assert np.all(ent < 0.69)
    assert np.all(np.diff(coef) > 0) and coef[0] == pytest.approx(0.01)


def test_best_feasible_checkpoint_is_the_reported_one(selecting):
    """The reported parameters are those of the chunk that the selection rule picks from the
    validation metrics recorded along the run (the start included), recomputed here."""
    tr, runs = selecting
    states, metrics = runs[0]
    # candidates: the start, then each chunk's last parameters, with their validation results
    r0, c0 = (float(x) for x in tr.validate(states[0].params, states[0].best["key"]))
    cands = [(0, r0, c0)] + [
        (int(s.update), float(m["val_reward"][-1]), float(m["val_cost"][-1]))
        for s, m in zip(states[1:], metrics, strict=True)
    ]
    best = cands[0]
    for u, r, c in cands[1:]:  # all infeasible (cost_limit = -1): the lowest cost wins
        if c < best[2]:
            best = (u, r, c)
    final = states[-1]
    assert int(final.best["update"]) == best[0]
    assert not bool(final.best["feasible"])
    chosen = states[[s_i for s_i, s in enumerate(states) if int(s.update) == best[0]][0]]
    for a, b in zip(
        jax.tree.leaves(tr.report_params(final)), jax.tree.leaves(chosen.params), strict=True
    ):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    summary = tr.summary(final)["selected"]
    assert summary["update"] == best[0] and summary["val_cost"] == pytest.approx(best[2])


def test_short_run_improves_the_lagrangian_objective(selecting):
    """A short seeded run with the loose limit improves the Lagrangian objective
    ``R - lambda (C - d)`` of its greedy policy on the validation episodes over its imitation
    start (the LAST parameters, not the selected ones, so that the selection cannot make it
    hold by construction), at the run's final multiplier."""
    tr, runs = selecting
    states, _ = runs[1]
    d = LIMITS[1]
    lam = float(states[-1].lagrange)
    key = states[0].best["key"]
    r0, c0 = (float(x) for x in tr.validate(states[0].params, key))
    r1, c1 = (float(x) for x in tr.validate(states[-1].params, key))
    j0, j1 = r0 - lam * (c0 - d), r1 - lam * (c1 - d)
    assert j1 > j0 + 0.01, (j0, j1, (r0, c0), (r1, c1), lam)


def test_feasible_beats_infeasible_then_reward():
    """The selection rule on hand-made candidates: feasible first, then the higher reward;
    among infeasible ones the lower cost; ties keep the earlier one."""
    best = (False, -0.1, 0.9)  # (feasible, reward, cost) of the start
    seq = [
        (False, -0.05, 0.95),  # infeasible, costlier: no
        (False, -0.95, 0.6),  # infeasible, cheaper: yes
        (True, -0.9, 0.4),  # feasible beats infeasible
        (False, -0.2, 0.1),  # infeasible never beats feasible
        (True, -0.9, 0.3),  # tie in reward: keep the earlier
        (True, -0.5, 0.45),  # higher reward
    ]
    expect = [0, 2, 3, 3, 3, 6]
    upd = 0
    for i, (f, r, c) in enumerate(seq):
        if bool(better_candidate(jnp.bool_(f), r, c, jnp.bool_(best[0]), best[1], best[2])):
            best, upd = (f, r, c), i + 1
        assert upd == expect[i], (i, best)


def test_switch_off_se_against_numpy_recompute():
    """Every one-link counterfactual SE equals a NumPy float64 recomputation of APS-GNN
    eqs. (5)-(8) with that link switched off."""
    rng = np.random.default_rng(0)
    T, L, K = 3, 5, 4
    h = (rng.normal(size=(T, L, K)) + 1j * rng.normal(size=(T, L, K))) * 4.0
    u = h / np.abs(h)
    A = rng.random((L, K)) < 0.5
    A[0] = [True, False, False, False]  # an AP with one link
    got = np.asarray(
        aps.switch_off_se(
            jnp.asarray(h.real, jnp.float32),
            jnp.asarray(h.imag, jnp.float32),
            jnp.asarray(u.real, jnp.float32),
            jnp.asarray(u.imag, jnp.float32),
            jnp.asarray(A),
        )
    )
    for t in range(T):
        for l in range(L):
            for k in range(K):
                A2 = A.copy()
                A2[l, k] = False
                np.testing.assert_allclose(got[t, l, k], np_mrt_se(h[t], A2), rtol=2e-4, atol=2e-5)


def test_difference_signals_in_a_step(env_params):
    """signal_reward = -1 exactly for links that alone keep their AP on; signal_cost = the
    sum of shortfalls minus that with the link off (0 for links that are off); reward and cost
    stay APS-GNN eqs. (11)-(12)."""
    env, params = env_params
    local_env, _ = aps.make(ENV)
    key = jax.random.PRNGKey(4)
    obs, st = env.reset(key, params)
    A = np.zeros((4, 2), np.int32)
    A[0] = [1, 1]
    A[1] = [1, 0]
    A[3] = [0, 1]
    k2 = jax.random.PRNGKey(5)
    _, _, rew, _, _, info = env.step_env(k2, st, jnp.asarray(A.reshape(-1)), params)
    _, _, rew_l, _, _, info_l = local_env.step_env(k2, st, jnp.asarray(A.reshape(-1)), params)
    np.testing.assert_array_equal(np.asarray(rew), np.asarray(rew_l))
    np.testing.assert_array_equal(np.asarray(info["cost"]), np.asarray(info_l["cost"]))
    sr = np.asarray(info["signal_reward"]).reshape(4, 2)
    np.testing.assert_array_equal(sr, -np.array([[0, 0], [1, 0], [0, 0], [0, 1]]))
    sc = np.asarray(info["signal_cost"]).reshape(4, 2)
    total = float(np.sum(np.maximum(params.se_target - np.asarray(info["se"]), 0.0)))
    for l in range(4):
        for k in range(2):
            if not A[l, k]:
                assert sc[l, k] == 0.0
                continue
            A2 = A.copy()
            A2[l, k] = 0
            _, _, _, _, _, i2 = local_env.step_env(k2, st, jnp.asarray(A2.reshape(-1)), params)
            off = float(np.sum(np.maximum(params.se_target - np.asarray(i2["se"]), 0.0)))
            np.testing.assert_allclose(sc[l, k], total - off, rtol=1e-4, atol=1e-5)
