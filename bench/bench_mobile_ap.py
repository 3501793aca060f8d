#!/usr/bin/env python
"""Benchmark: the mobile-AP scenario ([MOBILE-AP]), JAX vs vectorised NumPy / PyTorch.

Usage (from the repository root; the training part needs torch)::

    python bench/bench_mobile_ap.py [--quick] [--out bench/RESULTS_mobile_ap.md]

(a) Environment steps per second. JAX: ``cfmimo_jax.envs.make("mobile_ap")`` at its defaults
(``M = 9`` UAV APs x ``N = 8`` antennas, ``K = 6`` UEs, 20 moves per episode), ``env.step_batch``
(``vmap`` of the step, auto-reset under one ``lax.cond`` per batch) over ``n_envs`` networks,
driven by a ``lax.scan`` of ``episode_steps`` steps inside one ``jax.jit`` (every call = one
whole episode of every network, its reset included), uniform random flat actions ``u`` in
``[-1, 1]`` drawn inside the scan and mapped by ``spaces.unflatten``; compile time
(``lower().compile()``) apart; float32 (the default). NumPy: ``bench/numpy_mobile_ap.py``
(the same equations in float64 / complex128), ``n_envs`` objects stepped one after another in
a Python loop for the same ``episode_steps`` steps (one auto-reset each), uniform random
actions drawn in the loop. Each NumPy reset draws its own drop (as each JAX reset does: the
same work). Ratio = JAX steps/s over NumPy steps/s at the same ``n_envs``.
NumPy extrapolation rule: its loop does the same work per network and shares nothing across
networks, so its time is linear in ``n_envs``; a NumPy point is measured while its predicted
time (the per-network step time of the largest measured point times ``n_envs`` times the steps
of the timed calls) stays under ``--numpy-max-s``, beyond that it is that per-network step
time times ``n_envs`` (marked *extrapolated*).

(b) Training throughput at the repository's training configurations: ``maddpg`` with the
trainer block of ``configs/mobile_ap_maddpg.yaml`` (16 environments, 20 vectorised steps per
update, batch 256, buffer 50000, learning after 1000 transitions, one gradient step per
vectorised step, MLPs 128-128, gamma 0.9, action_reg 0.01); ``sf_maddpg`` and ``pe_maddpg``
with that of ``configs/mobile_ap_sf_maddpg.yaml`` (the same trainer settings plus SF-MADDPG's
CPU reduction of the paper's Table II sizes; ``--table2`` for Table II's: GRU 256,
hypernetworks 128 wide with 8 heads, the meta-gradient on 64 transitions at every step).
Environment steps per second of the whole loop (acting, environment, buffer insert, gradient
steps) once learning runs on every step. JAX: ``algorithms.make_train(name, ...)``, compiled
``trainer.update`` (one update = ``n_steps`` vectorised steps a call), calls repeated until
every step of a call learns, one more warm-up call, then timed calls fed the state the previous
one returned; median. Gradient step time: (median learning call - median non-learning call of
the warm-up, the first call left out) / (``n_steps x gradient_steps``) (the same compiled
program; the non-learning calls run the ``lax.cond``'s other branch), and for ``maddpg``
(``sf_maddpg`` and ``pe_maddpg`` too when the budget allows) a compiled ``lax.scan`` of
minibatch sampling + ``trainer.learn`` alone on the warm buffer. PyTorch:
``bench/torch_maddpg.py`` (eager, CPU; MADDPG only, the trainer of the engine's off-policy
benchmark) on ``n_envs`` NumPy environments of ``bench/numpy_mobile_ap.py`` (``make_env``),
its hyper-parameters taken from the JAX ``maddpg`` trainer; warm-up until the buffer holds
``learning_starts`` transitions and 3 learning steps, then timed blocks of vectorised steps
(median), with ``torch.set_num_threads(--torch-threads)`` (default 1: on this shared 2-core
machine 2 threads ran slower at every point of ``bench/RESULTS_offpolicy.md``).

Checked before timing: the NumPy environment against the JAX one from the same states and
actions (every NumPy step starts from the JAX state, ``set_state``), rewards within float32
round-off (asserted), with forced moves onto a UE and out of the area (both projections) and
power and antenna-power excesses (both penalties); the JAX ``maddpg`` parameters copied into the
torch networks give the same actions and Q values and, after one gradient step on the same
minibatch, the same losses and parameters.

Where the time goes (per network, each part compiled and timed apart at ``PARTS_N``
networks): the JAX move + projection, path loss + local scattering, the MMSE statistics, power
mapping + SE, the whole step without reset, and the reset; the NumPy parts likewise.

``--extend RESULTS.json`` (a second run): the environment points and the per-part split that
a saved run skipped for its budget, added to it and marked run 2; the NumPy reference of the
added points is measured again in that run (at the largest NumPy point the saved run measured)
and extrapolated from there by the rule above, so every ratio is still within one run.

Budget: a point is skipped when its predicted time (per-step cost of the previous point times
its steps, plus a compile as long as the last one) exceeds ``--max-point-s`` or the time left of
``--budget-s``; the report says which and why. Order: parity, the environment points up to 64
networks, maddpg training (JAX and PyTorch), sf_maddpg, the larger environment points,
pe_maddpg, the per-part split.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench._common import (  # noqa: E402
    Clock,
    aot,
    bullets,
    compact,
    compile_update,
    describe_machine,
    git,
    ms,
    peak_rss_gib,
    scan_rollout,
    time_compiled,
    timed_update,
    write_json,
    write_markdown,
)

SCENARIO = "mobile_ap"
N_ENVS = (1, 4, 16, 64, 256, 1024, 4096)
EARLY = 64  # environment points up to this size run before the training part
PARTS_N = 64  # networks of the per-part split
CONFIGS = {
    "maddpg": "configs/mobile_ap_maddpg.yaml",
    "sf_maddpg": "configs/mobile_ap_sf_maddpg.yaml",
    "pe_maddpg": "configs/mobile_ap_sf_maddpg.yaml",
}
TABLE2 = dict(rnn_hidden=256, hyper_hidden=128, hpn_heads=8, meta_batch=64, meta_period=1)
# --quick: a small network and trainer (a smoke run of every code path)
QUICK_ENV = dict(n_aps=3, n_antennas=4, n_ues=3)
QUICK_TRAINER = dict(
    n_envs=4,
    n_steps=5,
    buffer_size=1000,
    batch_size=32,
    learning_starts=60,
    hidden=[32, 32],
    embed_dim=16,
    hyper_hidden=16,
    hpn_heads=2,
    rnn_hidden=16,
    gnn_neighbours=2,
    intrinsic_hidden=16,
    meta_batch=8,
)
# guesses for the budget before anything of a kind was measured (compile s, s per grad step)
GUESS = {
    "env_compile": 40.0,
    "maddpg": (50.0, 0.1),
    "sf_maddpg": (120.0, 0.4),
    "pe_maddpg": (90.0, 0.25),
}


def _uptime():
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def machine_info():
    """:func:`bench._common.describe_machine` (no ``platform``) of the scenario's, trainers' and
    benchmark's files, with PyTorch's version (``None`` without torch)."""
    files = [
        "cfmimo_jax/envs/mobile_ap.py",
        "cfmimo_jax/geometry.py",
        "cfmimo_jax/pathloss.py",
        "cfmimo_jax/correlation.py",
        "cfmimo_jax/estimation.py",
        "cfmimo_jax/se.py",
        "algorithms",
        "bench/numpy_mobile_ap.py",
        "bench/torch_maddpg.py",
        "bench/bench_mobile_ap.py",
    ]
    try:
        import torch

        tv = torch.__version__
    except ImportError:
        tv = None
    return describe_machine(files, with_platform=False, after_jax={"torch": tv})


# ---- set-up ---------------------------------------------------------------------------------


def load_config(algo):
    """``(env config, trainer config)`` of the algorithm's YAML file."""
    import yaml

    with open(os.path.join(ROOT, CONFIGS[algo])) as f:
        y = yaml.safe_load(f)
    return dict(y.get("env") or {}), dict(y.get("trainer") or {})


def make_env(quick):
    from cfmimo_jax import envs

    env_cfg, _ = load_config("maddpg")
    return envs.make(SCENARIO, dict(env_cfg, **QUICK_ENV) if quick else env_cfg)


def trainer_config(algo, quick, table2=False, n_envs=None):
    _, cfg = load_config(algo)
    if quick:
        cfg.update(QUICK_TRAINER)
    if table2 and algo != "maddpg":
        cfg.update(TABLE2)
    if n_envs is not None:
        cfg["n_envs"] = int(n_envs)
    import algorithms

    known = algorithms.default_config(algo)
    cfg = {k: v for k, v in cfg.items() if k in known}  # the keys this algorithm takes
    return dict(cfg, n_updates=1, updates_per_chunk=1)


def build_trainer(algo, env, params, quick, table2=False, n_envs=None):
    import algorithms

    return algorithms.make_train(algo, trainer_config(algo, quick, table2, n_envs), env, params)


def numpy_env(env, params, seed=0, **over):
    from bench.numpy_mobile_ap import MobileAPNumPy

    return MobileAPNumPy.from_env(env, params, seed=seed, **over)


def jax_state(env, params, ap, ue, channel, se_fn):
    """The JAX environment's state at positions ``ap``, ``ue`` (float32) as its reset builds
    it: statistics there, equal powers, ``q = 1``, their SEs, ``t = 0``."""
    import jax.numpy as jnp

    from cfmimo_jax.envs.mobile_ap import MobileAPState

    ap, ue = jnp.asarray(ap, jnp.float32), jnp.asarray(ue, jnp.float32)
    gain_db, R, B = channel(ap, ue)
    rho = jnp.full((env.M, env.K), env.p_ap / env.K, jnp.float32)
    q = jnp.ones((env.M, env.N), jnp.float32)
    return MobileAPState(ap, ue, gain_db, R, B, rho, q, se_fn(R, B, rho, q), jnp.int32(0))


# ---- parity ---------------------------------------------------------------------------------


def env_parity(env, params, n_drops=3, seed=5):
    """NumPy vs JAX from the same states and actions: every NumPy step starts from the JAX
    state; rewards, SEs and observations compared; step 0 of every drop forces AP 0 to 4 m from
    UE 0 (it starts 15 m away; d_min = 10 m), AP 1 out of the area (from 5 m off a corner),
    both with equal budget fractions and ``q = 1``, and AP 2 to a budget
    and an antenna excess."""
    import jax
    import jax.numpy as jnp

    from cfmimo_jax.envs import spaces

    channel, se_fn = jax.jit(env.channel), jax.jit(env.se)
    step = jax.jit(env.step_env)
    tol32 = 64.0 * float(np.finfo(np.float32).eps) * max(env.side, 1.0)
    npe = numpy_env(env, params, seed=seed, tol=tol32)
    rng = np.random.default_rng(seed)
    M, N, K = env.M, env.N, env.K
    D = N + 2 + K
    out = {"steps": 0, "reward_max_abs": 0.0, "reward_max_rel": 0.0, "obs_max_abs": 0.0}
    pens = []
    for _ in range(n_drops):
        npe.reset()
        ap, ue = npe.ap.copy(), npe.ue.copy()
        towards = (0.5 * env.side - ue[0]) / np.linalg.norm(0.5 * env.side - ue[0])
        ap[0] = ue[0] + 15.0 * towards
        if M > 1:
            ap[1] = (5.0, 5.0)
        st = jax_state(env, params, ap, ue, channel, se_fn)
        for t in range(env.episode_steps):
            u = rng.uniform(-1.2, 1.2, (M, D))
            if t == 0:
                disp = ue[0] - ap[0]  # 15 m: stop 4 m short of the UE (inside its disc)
                u[0, N : N + 2] = disp * (1.0 - 4.0 / np.linalg.norm(disp)) / env.max_step
                u[:2, :N] = 1.0  # APs 0 and 1: q = 1 and budget fractions 1 / K (no excess)
                u[:2, N + 2 :] = 2.0 / K - 1.0
                if M > 2:
                    u[1, N : N + 2] = -1.0
                    u[2, N : N + 2] = 0.0
                    u[2, N + 2 :] = 1.0
                    u[2, :N] = -1.0
                    u[2, 0] = 1.0
            u = u.astype(np.float32)
            npe.set_state(st.ap_pos, st.ue_pos, st.rho, st.q, st.se, int(st.t))
            a = spaces.unflatten(env.action_space, jnp.asarray(u))
            obs, st, rew, _, _, info = step(jax.random.PRNGKey(t), st, a, params)
            flat = npe.action_low + 0.5 * (np.clip(u, -1, 1) + 1) * (
                npe.action_high - npe.action_low
            )
            o_n, r_n, _, i_n = npe.step(flat)
            r_j = np.asarray(rew, np.float64)
            out["reward_max_abs"] = max(out["reward_max_abs"], float(np.max(np.abs(r_n - r_j))))
            out["reward_max_rel"] = max(
                out["reward_max_rel"], float(np.max(np.abs(r_n - r_j) / np.abs(r_n)))
            )
            if t < env.episode_steps - 1:  # (the NumPy one auto-resets at the last step)
                out["obs_max_abs"] = max(
                    out["obs_max_abs"], float(np.max(np.abs(o_n - np.asarray(obs))))
                )
            if t == 0:
                pens.append((i_n["sum_se"] - r_n).tolist())
            out["steps"] += 1
    out["forced_penalties"] = pens  # per agent, step 0 of every drop (bit/s/Hz)
    if out["reward_max_rel"] > 1e-3:
        raise AssertionError(f"NumPy vs JAX environment: {out}")
    return out


def net_parity(env, params, quick, seed=0):
    """JAX ``maddpg`` parameters copied into the torch networks: actions, Q values, one gradient
    step (losses and every parameter after it) on the same minibatch of NumPy transitions
    (``bench_offpolicy.maddpg_parity``); asserted."""
    from bench.bench_offpolicy import MADDPG_NETS, maddpg_parity, torch_config
    from bench.torch_maddpg import TorchMADDPG

    trainer = build_trainer("maddpg", env, params, quick)
    cfg = torch_config(trainer)
    tm = TorchMADDPG(cfg, make_env=functools.partial(numpy_env, env, params), seed=seed)
    for _ in range(8):  # random then noisy-actor transitions (no learning yet)
        tm.step()
    out = maddpg_parity(trainer, tm, cfg, seed)
    worst = max(
        out[f"{name}_max_abs_after_step"] / max(out[f"{name}_max_move"], 1e-30)
        for name in MADDPG_NETS
    )
    if out["q_max_abs"] > 1e-4 * max(out["q_scale"], 1.0) or worst > 0.5:
        raise AssertionError(f"torch vs JAX networks: {out}")
    return out


# ---- (a) environment steps ------------------------------------------------------------------


def jax_rollout(env, params, n_envs):
    """``(rollout, reset)`` of one episode of uniform random flat actions in ``[-1, 1]``
    (``scan_rollout``)."""
    import jax
    import jax.numpy as jnp

    from cfmimo_jax.envs import spaces

    D = spaces.flat_dim(env.action_space)

    def act(key, obs):
        u = jax.random.uniform(key, (n_envs, env.n_agents, D), minval=-1.0, maxval=1.0)
        return spaces.unflatten(env.action_space, u)

    def consume(reward, done, obs, info):
        return jnp.sum(reward) + jnp.sum(done) + jnp.sum(obs[..., 0])

    return scan_rollout(env, params, n_envs, env.episode_steps, act, consume)


def time_jax_env(env, params, n_envs, repeats, warmup, seed=0):
    import jax

    rollout, reset = jax_rollout(env, params, n_envs)
    key = jax.random.PRNGKey(seed)
    obs, state = reset(jax.random.split(key, n_envs), params)
    jax.block_until_ready(state)
    compiled, compile_s = aot(rollout, key, state, obs)
    T = env.episode_steps
    warm = []
    for i in range(warmup):
        t0 = time.perf_counter()
        state, obs, acc = compiled(jax.random.fold_in(key, 100 + i), state, obs)
        jax.block_until_ready(acc)
        warm.append(time.perf_counter() - t0)
    runs = []
    for i in range(repeats):
        t0 = time.perf_counter()
        state, obs, acc = compiled(jax.random.fold_in(key, i), state, obs)
        jax.block_until_ready(acc)
        runs.append(time.perf_counter() - t0)
        if not np.isfinite(float(acc)):
            raise AssertionError(f"non-finite rollout at {n_envs} environments")
    t = statistics.median(runs)
    return {
        "n_envs": n_envs,
        "compile_s": compile_s,
        "warm_s": warm,
        "runs_s": runs,
        "steps_per_call": n_envs * T,
        "steps_per_s": n_envs * T / t,
        "per_env_step_s": t / (n_envs * T),
        "load1": os.getloadavg()[0],
    }


def time_numpy_env(env, params, n_envs, max_s, per_step_guess, seed=0, max_repeats=3):
    """NumPy loop: ``n_envs`` networks, calls of ``episode_steps`` steps each (one reset per
    network per call); as many calls (<= ``max_repeats``) as fit in ``max_s``."""
    T = env.episode_steps
    envs = [numpy_env(env, params, seed=seed * 7919 + i) for i in range(n_envs)]
    for e in envs:
        e.reset()
    rng = np.random.default_rng(seed)
    lo, hi = envs[0].action_low, envs[0].action_high
    M, D = env.M, envs[0].act_dim
    runs = []
    while len(runs) < max_repeats:
        if runs and sum(runs) + runs[-1] > max_s:
            break
        t0 = time.perf_counter()
        for _ in range(T):
            for e in envs:
                a = lo + 0.5 * (rng.uniform(-1.0, 1.0, (M, D)) + 1.0) * (hi - lo)
                e.step(a)
        runs.append(time.perf_counter() - t0)
    t = statistics.median(runs)
    return {
        "n_envs": n_envs,
        "runs_s": runs,
        "steps_per_call": n_envs * T,
        "steps_per_s": n_envs * T / t,
        "per_env_step_s": t / (n_envs * T),
        "load1": os.getloadavg()[0],
        "extrapolated": False,
    }


def numpy_point(env, params, n, max_s, measured, run=1):
    """A measured or extrapolated NumPy point (module docstring: the rule); ``measured``: the
    measured points of this run, the last one the reference of an extrapolation."""
    T = env.episode_steps
    if measured:
        per = measured[-1]["per_env_step_s"]
        if per * n * T * 2 > max_s:  # two calls would not fit
            return {
                "run": run,
                "n_envs": n,
                "steps_per_s": 1.0 / per,
                "per_env_step_s": per,
                "extrapolated": True,
                "from_n_envs": measured[-1]["n_envs"],
                "load1": os.getloadavg()[0],
            }
    return dict(time_numpy_env(env, params, n, max_s, None), run=run)


# ---- where the time goes --------------------------------------------------------------------


def parts_split(env, params, n, repeats=3, seed=0):
    """Seconds per network of the step's parts, JAX (vmapped over ``n``, each compiled apart;
    best of ``repeats``) and NumPy (one network, mean over 100 calls)."""
    import jax

    from bench import numpy_mobile_ap as nm
    from cfmimo_jax.correlation import local_scattering
    from cfmimo_jax.envs import spaces
    from cfmimo_jax.estimation import estimation_statistics
    from cfmimo_jax.geometry import uav_step, uav_ue_geometry

    keys = jax.random.split(jax.random.PRNGKey(seed), n)
    _, st = jax.jit(jax.vmap(env.reset, (0, None)))(keys, params)
    D = spaces.flat_dim(env.action_space)
    u = jax.random.uniform(jax.random.PRNGKey(1), (n, env.M, D), minval=-1.0, maxval=1.0)
    a = spaces.unflatten(env.action_space, u)
    asd = np.radians(env.asd)

    def move(s, a):
        return uav_step(s.ap_pos, a["move"], s.ue_pos, env.max_step, env.d_min, env.side).pos

    def scattering(s):
        _, _, az, el = uav_ue_geometry(s.ap_pos, s.ue_pos, env.side, env.ap_h, env.ue_h)
        return local_scattering(env.N, az, el, asd, None)

    def mmse(s):
        return estimation_statistics(s.R, env.pilot, env.p_pilot, env.tau_p)[0]

    def power_se(s, a):
        rho, q, _, _ = env.map_actions(s.B, a)
        return env.se(s.R, s.B, rho, q)

    parts = [
        ("move + projection (22b)-(22c)", jax.vmap(move), (st, a)),
        ("geometry + local scattering", jax.vmap(scattering), (st,)),
        ("MMSE statistics (B)", jax.vmap(mmse), (st,)),
        ("channel: path loss + R + B", jax.vmap(lambda s: env.channel(s.ap_pos, s.ue_pos)), (st,)),
        ("power mapping + SE", jax.vmap(power_se), (st, a)),
        (
            "step without reset (all of it + observations)",
            jax.vmap(lambda k, s, a: env.step_env(k, s, a, params)),
            (keys, st, a),
        ),
        (
            "reset (drop + projection + channel + SE)",
            jax.vmap(lambda k: env.reset_env(k, params)),
            (keys,),
        ),
    ]
    out = {"n_envs": n, "jax": {}, "numpy": {}, "jax_compile_s": {}}
    for name, fn, args in parts:
        comp, runs = time_compiled(fn, args, repeats)
        out["jax"][name] = min(runs) / n
        out["jax_compile_s"][name] = comp
    e = numpy_env(env, params, seed=seed)
    e.reset()
    rng = np.random.default_rng(seed)
    lo, hi = e.action_low, e.action_high
    acts = [lo + 0.5 * (rng.uniform(-1, 1, (env.M, e.act_dim)) + 1) * (hi - lo) for _ in range(100)]
    ant, mv, pw = e.split_actions(acts[0])
    x = e.ap + nm.uav_displacement(mv, e.max_step)
    disp = nm.wrapped_displacement(e.ap, e.ue, e.side)
    dh = e.ap_h - e.ue_h
    el = np.arcsin(dh / np.sqrt(np.sum(disp**2, -1) + dh**2))
    az = np.arctan2(disp[..., 1], disp[..., 0])
    np_parts = [
        (
            "move + projection (22b)-(22c)",
            lambda: nm.project_positions(x, e.ue, e.d_min, e.side, e.tol),
        ),
        ("geometry + local scattering", lambda: nm.local_scattering(e.N, az, el, e.asd)),
        ("MMSE statistics (B)", lambda: nm.estimation_statistics(e.R, e.pilot, e.p_pilot, e.tau_p)),
        ("channel: path loss + R + B", lambda: e.channel(e.ap, e.ue)),
        ("power mapping + SE", lambda: e.se(*nm.map_actions(e.B, pw, ant, e.p_ap, e.q_floor)[:2])),
    ]
    for name, fn in np_parts:
        fn()
        t0 = time.perf_counter()
        for _ in range(100):
            fn()
        out["numpy"][name] = (time.perf_counter() - t0) / 100
    e2 = numpy_env(env, params, seed=seed + 1, episode_steps=10**9)
    e2.reset()
    t0 = time.perf_counter()
    for a_ in acts:
        e2.step(a_)
    out["numpy"]["step without reset (all of it + observations)"] = (time.perf_counter() - t0) / 100
    t0 = time.perf_counter()
    for _ in range(50):
        e2.reset()
    out["numpy"]["reset (drop + projection + channel + SE)"] = (time.perf_counter() - t0) / 50
    return out


# ---- (b) training ---------------------------------------------------------------------------


def time_train_jax(trainer, repeats, learn_alone, max_warm_calls=40, seed=0):
    c = trainer.config
    rs, compiled, compile_s = compile_update(trainer, seed)
    vec = c.n_steps * c.updates_per_chunk
    metrics, warm = [], []

    def call(rs):
        rs, dt, m = timed_update(compiled, rs, metrics)
        return rs, dt, float(np.min(m["learning"])), float(np.max(m["learning"]))

    nonlearn = []
    lmin = 0.0
    while lmin < 1.0 and len(warm) < max_warm_calls:
        rs, dt, lmin, lmax = call(rs)
        if lmax == 0.0 and warm:  # not the first call
            nonlearn.append(dt)
        warm.append(dt)
    rs, dt, lmin, _ = call(rs)  # one more warm-up call, learning on every step
    warm.append(dt)
    runs = []
    for _ in range(repeats):
        rs, dt, lmin, _ = call(rs)
        runs.append(dt)
    t = statistics.median(runs)
    out = {
        "n_envs": c.n_envs,
        "vec_steps_per_call": vec,
        "compile_s": compile_s,
        "warm_s": warm,
        "nonlearning_s": nonlearn,
        "runs_s": runs,
        "steps_per_s": c.n_envs * vec / t,
        "per_vec_step_s": t / vec,
        "learning_in_timed_calls": lmin,
        "load1": os.getloadavg()[0],
        "metrics": [metrics[0], metrics[-1]],
        "finite": bool(all(np.isfinite(v) for mm in metrics for v in mm.values())),
        "gradient_steps": c.gradient_steps,
    }
    if nonlearn:
        out["grad_step_diff_s"] = (t - statistics.median(nonlearn)) / (vec * c.gradient_steps)
        out["nonlearning_per_vec_step_s"] = statistics.median(nonlearn) / vec
    if learn_alone:
        from bench.bench_offpolicy import jax_learn_alone

        out["learn_alone"] = jax_learn_alone(trainer, rs, max(10, vec), max(1, repeats))
    return out


def time_train_torch(env, params, trainer, threads, max_s, blocks=3, seed=0, warm_learn=3):
    import torch

    from bench.bench_offpolicy import torch_blocks, torch_config
    from bench.torch_maddpg import TorchMADDPG

    torch.set_num_threads(threads)
    cfg = torch_config(trainer)
    tm = TorchMADDPG(cfg, make_env=functools.partial(numpy_env, env, params), seed=seed)
    warm_s, _, block_steps, runs, metrics, done = torch_blocks(tm, cfg, max_s, blocks, warm_learn)
    t = statistics.median(runs)
    split = {k: v / done for k, v in tm.timing.items()}
    return {
        "n_envs": cfg.n_envs,
        "threads": threads,
        "warm_s": warm_s,
        "vec_steps_per_block": block_steps,
        "runs_s": runs,
        "steps_per_s": cfg.n_envs * block_steps / t,
        "per_vec_step_s": t / block_steps,
        "split_per_vec_step_s": split,
        "grad_step_s": split["learn_s"] / cfg.gradient_steps,
        "load1": os.getloadavg()[0],
        "metrics": [metrics[0], metrics[-1]],
        "learning": all(mm.get("learning") == 1.0 for mm in metrics),
    }


# ---- report ---------------------------------------------------------------------------------


def _f(x):
    """Compact number: 3 significant digits, a k suffix from 10^4 (no M suffix)."""
    return compact(x, millions=False)


def _us(x):
    if x is None:
        return "-"
    v = 1e6 * x
    return f"{v:.0f}" if v >= 100 else f"{v:.3g}"


def reading(res, setup):
    """The interpretation lines, from the numbers."""
    out = []
    jx = {r["n_envs"]: r for r in res["jax_env"]}
    npy = {r["n_envs"]: r for r in res["numpy_env"]}
    measured = [r for r in npy.values() if not r["extrapolated"]]
    common = sorted(set(jx) & set(npy))
    if common:
        ratios = ", ".join(
            f"{jx[n]['steps_per_s'] / npy[n]['steps_per_s']:.2f}x at {n}" for n in common
        )
        best = max(jx.values(), key=lambda r: r["steps_per_s"])
        per = [r["per_env_step_s"] for k, r in jx.items() if k > min(jx)]
        spread = (
            f"; from {min(jx) * 4 if min(jx) * 4 in jx else 'there'} to {max(jx)} networks "
            f"{_us(min(per))}-{_us(max(per))} us"
            if per
            else ""
        )
        np_rates = [r["steps_per_s"] for r in measured]
        out.append(
            f"Environment: JAX / NumPy {ratios}. JAX peaks at {_f(best['steps_per_s'])} env "
            f"steps/s ({best['n_envs']} networks, {_us(best['per_env_step_s'])} us per network "
            f"step); one network step costs {_us(jx[min(jx)]['per_env_step_s'])} us at "
            f"{min(jx)} network(s){spread}: batching leaves no per-call overhead to amortise at "
            "this size, the step's arithmetic is the cost (split below). The NumPy loop ran at "
            f"{_f(min(np_rates))}-{_f(max(np_rates))} steps/s at the measured points (its cost "
            "is per network; the spread is the shared machine's load, see the load column)."
        )
    parts = res.get("parts")
    if parts:
        j, n = parts["jax"], parts["numpy"]
        whole = j.get("step without reset (all of it + observations)")
        if whole:
            share = ", ".join(
                f"{k} {100 * v / whole:.0f}%"
                for k, v in j.items()
                if not k.startswith(("step", "reset", "channel"))
            )
            out.append(
                f"Where the JAX step goes (at {parts['n_envs']} networks, parts timed apart; a "
                f"step without reset {_us(whole)} us per network): {share}. NumPy's step "
                f"{_us(n.get('step without reset (all of it + observations)'))} us, of which "
                + ", ".join(
                    f"{k} {_us(v)} us"
                    for k, v in n.items()
                    if not k.startswith(("step", "reset", "channel"))
                )
                + ". The local-scattering integrals differ in method: the JAX kernel "
                "(`cfmimo_jax.correlation.local_scattering`) evaluates a cosine and a sine of "
                "every antenna lag's phase at every quadrature node, the NumPy reference one "
                "complex exponential per node and the lags as its powers."
            )
    tj = {r["algo"]: r for r in res["train_jax"]}
    tt = res.get("train_torch")
    if tj and tt:
        out.append(
            f"Training ({tt['n_envs']} environments) against PyTorch MADDPG "
            f"({_f(tt['steps_per_s'])} env steps/s, {tt['threads']} thread(s)): "
            + "; ".join(
                f"JAX {name} {_f(r['steps_per_s'])} env steps/s, "
                f"**{r['steps_per_s'] / tt['steps_per_s']:.2f}x**"
                for name, r in tj.items()
            )
            + " (only maddpg is the reference's algorithm; sf_maddpg and pe_maddpg are "
            "compared with its rate)."
        )
    if "maddpg" in tj and tt:
        m = tj["maddpg"]
        nl = m.get("nonlearning_per_vec_step_s")
        part = (
            f" (of which acting + {m['n_envs']} environment steps {ms(nl)} ms, the "
            "non-learning calls of the same program)"
            if nl
            else ""
        )
        sp = tt["split_per_vec_step_s"]
        envs_alone = {r["n_envs"]: r for r in res["jax_env"]}.get(m["n_envs"])
        if nl and envs_alone:
            e_ms = envs_alone["per_env_step_s"] * m["n_envs"]
            part += (
                f"; the environments alone take {ms(e_ms)} ms at {m['n_envs']} networks in "
                f"part (a), so the trainer's own work outside the gradient step (acting, the "
                f"buffer insert into its {setup['trainer_configs']['maddpg']['buffer_size']}-"
                f"transition buffer, metrics) costs about {ms(nl - e_ms)} ms per vectorised "
                "step"
            )
        out.append(
            f"A MADDPG vectorised step: JAX {ms(m['per_vec_step_s'])} ms{part}. PyTorch "
            f"{ms(tt['per_vec_step_s'])} ms (NumPy environment loop {ms(sp['env_s'])} ms, "
            f"gradient step {ms(sp['learn_s'])} ms, acting {ms(sp['act_s'])} ms, buffer "
            f"{ms(sp['buffer_s'])} ms)."
        )
    if tj:
        g = []
        for name, r in tj.items():
            alone = r.get("learn_alone", {}).get("per_grad_step_s")
            diff = r.get("grad_step_diff_s")
            g.append(
                f"{name} {ms(diff)} ms (difference of calls"
                + (f", {1 / diff:.3g} gradient steps/s" if diff and diff > 0 else "")
                + ")"
                + (f", {ms(alone)} ms alone ({1 / alone:.3g}/s)" if alone else "")
            )
        if tt:
            g.append(f"PyTorch MADDPG {ms(tt['grad_step_s'])} ms ({1 / tt['grad_step_s']:.3g}/s)")
        ratio = ""
        for other in ("sf_maddpg", "pe_maddpg"):
            if "maddpg" in tj and other in tj:
                x, y = tj["maddpg"].get("grad_step_diff_s"), tj[other].get("grad_step_diff_s")
                if x and y and x > 0:
                    ratio += f" {other}'s gradient step costs {y / x:.1f}x maddpg's (JAX)."
        out.append(
            f"Time per gradient step (batch {setup['batch_size']}): " + "; ".join(g) + "." + ratio
        )
    skipped = res.get("skipped", [])
    if skipped:
        out.append("Skipped: " + "; ".join(f"{s['what']}: {s['why']}" for s in skipped) + ".")
    return out


def write_report(path, info, setup, res, wall):
    L = []
    add = L.append
    q = " --quick" if setup["quick"] else ""
    nan = float("nan")
    where = f"quick configuration {QUICK_ENV}" if setup["quick"] else "its defaults"
    add(
        "# Mobile-AP scenario: environment steps and MADDPG / SF-MADDPG training, "
        "JAX vs NumPy / PyTorch"
    )
    add("")
    add(
        f"Generated by `python bench/bench_mobile_ap.py{q}` (total wall time {wall:.0f} s). "
        "What is measured and how: the module docstring of `bench/bench_mobile_ap.py`. Raw "
        "numbers: `bench/RESULTS_mobile_ap.json`."
    )
    add("")
    add("## Machine")
    add("")
    add(
        f"- CPU: {info['cpu']}, {info['cores']} cores, shared with other jobs: every time here "
        "is inflated by the other jobs, both sides alike, so only ratios measured in the same "
        "run mean much (1-minute load per point in the tables)"
    )
    add(f"- `uptime` at start: `{info['uptime_start']}`")
    add(f"- `uptime` at end: `{info['uptime_end']}`")
    for i, x in enumerate(info.get("extensions", [])):
        ref = x["numpy_reference"]
        add(
            f"- Run {i + 2} (`--extend`, commit {x['commit']}: {', '.join(x['what'])}; its "
            f"NumPy reference measured again at {ref['n_envs']} networks, "
            f"{_f(ref['steps_per_s'])} steps/s): `uptime` at start `{x['uptime_start']}`, at "
            f"end `{x['uptime_end']}`"
        )
    add(
        f"- Python {info['python']}, NumPy {info['numpy']}, JAX {info['jax']} ({info['devices']}),"
        f" PyTorch {info['torch']}; {info['mem_gib']:.0f} GiB memory available; peak resident "
        f"memory of the benchmark process {info.get('max_rss_gib', 0):.1f} GiB"
    )
    add(
        f"- Code: git commit {info['commit']}"
        + (" (files changed: " + info["dirty"].replace("\n", "; ") + ")" if info["dirty"] else "")
    )
    add("")
    add("## Setting")
    add("")
    s = setup
    add(
        f"`mobile_ap` ({where}): "
        f"M = {s['M']} UAV APs x N = {s['N']} antennas, K = {s['K']} UEs, tau_p = K, "
        f"{s['episode_steps']} moves per episode, action {s['act_dim']} features per AP "
        "(antenna weights, move, power fractions), observation "
        f"{s['obs_dim']} per AP, global state {s['state_dim']}; JAX float32, NumPy float64. "
        "Uniform random actions in part (a)."
    )
    add("")
    add("## Parity")
    add("")
    p = res.get("env_parity")
    if p:
        fp = p["forced_penalties"][0]
        add(
            f"- Environment: NumPy from the JAX state, same actions, {p['steps']} steps on "
            f"{len(p['forced_penalties'])} drops: reward max abs diff {p['reward_max_abs']:.1e} "
            f"(max rel {p['reward_max_rel']:.1e}, asserted <= 1e-3), observation max abs diff "
            f"{p['obs_max_abs']:.1e} (float32 JAX vs float64 NumPy). The forced step's "
            f"per-agent penalties (first drop): "
            + ", ".join(f"{x:.3g}" for x in fp[:3])
            + " bit/s/Hz (AP 0 flown to 4 m from a UE: (d_min - 4) / max_step = 0.24; AP 1 "
            "from 5 m off a corner out of the area; both at equal power and q = 1, which put "
            "about 1 % over the antenna limit; AP 2 at budget fractions 1: excess K - 1, and "
            "over "
            "its antenna limit)."
        )
    n = res.get("net_parity")
    if n:
        add(
            f"- MADDPG networks ({n['n_params']} parameters, actor + critic), the JAX initial "
            f"parameters in the torch modules, a minibatch of NumPy transitions: actions max abs "
            f"diff {n['u_max_abs']:.1e}, Q max abs diff {n['q_max_abs']:.1e} (max |Q| "
            f"{n['q_scale']:.3g}); one gradient step: critic loss {n['critic_loss']:.5g} (abs "
            f"diff {n['critic_loss_abs']:.1e}), actor loss {n['actor_loss']:.5g} (abs diff "
            f"{n['actor_loss_abs']:.1e}); parameters after it within "
            + ", ".join(
                f"{k} {n[k + '_max_abs_after_step']:.1e} (moved {n[k + '_max_move']:.1e})"
                for k in ("actor", "critic")
            )
            + "."
        )
    add("")
    add("## (a) Environment steps per second")
    add("")
    add(
        "| n_envs | JAX steps/s | NumPy steps/s | **JAX / NumPy** | JAX compile (s) | JAX us "
        "per env step | NumPy us per env step | timed calls (JAX, NumPy; 1 call = 1 episode) "
        "| load (JAX; NumPy) |"
    )
    add("|---|---|---|---|---|---|---|---|---|")
    jx = {r["n_envs"]: r for r in res["jax_env"]}
    npy = {r["n_envs"]: r for r in res["numpy_env"]}
    skipped = {s["n_envs"]: s["why"] for s in res.get("skipped", []) if s.get("part") == "env"}
    for n_ in setup["n_envs"]:
        j, m = jx.get(n_), npy.get(n_)
        if j is None and m is None:
            add(f"| {n_} | skipped: {skipped.get(n_, '-')} | | | | | | | |")
            continue
        js = "-" if j is None else _f(j["steps_per_s"])
        ns = (
            "-"
            if m is None
            else _f(m["steps_per_s"]) + (" *extrapolated*" if m["extrapolated"] else "")
        )
        ratio = (
            "-" if (j is None or m is None) else f"**{j['steps_per_s'] / m['steps_per_s']:.2f}**"
        )
        comp = "-" if j is None else f"{j['compile_s']:.0f}"
        calls = (
            (
                "-"
                if j is None
                else f"{len(j['runs_s'])}"
                + (f" + {len(j['warm_s'])} warm-up" if j["warm_s"] else "")
            )
            + ", "
            + (
                "-"
                if m is None
                else (
                    "from " + str(m["from_n_envs"]) if m["extrapolated"] else str(len(m["runs_s"]))
                )
            )
            + (f" (run {j['run']})" if j is not None and j.get("run", 1) > 1 else "")
        )
        load = (
            ("-" if j is None else f"{j['load1']:.1f}")
            + "; "
            + ("-" if m is None else f"{m['load1']:.1f}")
        )
        jskip = "" if j is not None else f" (JAX skipped: {skipped.get(n_, '-')})"
        add(
            f"| {n_} | {js}{jskip} | {ns} | {ratio} | {comp} | "
            f"{'-' if j is None else _us(j['per_env_step_s'])} | "
            f"{'-' if m is None else _us(m['per_env_step_s'])} | {calls} | {load} |"
        )
    add("")
    parts = res.get("parts")
    if parts:
        add(
            f"### Where the time goes (us per network, at {parts['n_envs']} JAX networks"
            + (f", run {parts['run']}" if parts.get("run", 1) > 1 else "")
            + ")"
        )
        add("")
        add(
            "| part | JAX (vmapped, compiled apart, best of 3) | NumPy (one network) | "
            "JAX compile (s) |"
        )
        add("|---|---|---|---|")
        for k, v in parts["jax"].items():
            add(
                f"| {k} | {_us(v)} | {_us(parts['numpy'].get(k))} | "
                f"{parts['jax_compile_s'][k]:.1f} |"
            )
        add("")
    add("## (b) Training throughput (env steps/s, learning on every timed step)")
    add("")
    add(
        "| trainer | implementation | n_envs | env steps/s | **vs PyTorch MADDPG** | ms per "
        "vectorised step | ms per gradient step | compile (s) | timed calls (s) | load |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|")
    tt = res.get("train_torch")
    for r in res["train_jax"]:
        alone = r.get("learn_alone", {}).get("per_grad_step_s")
        g = ms(r.get("grad_step_diff_s")) + " (diff.)" + (f", {ms(alone)} (alone)" if alone else "")
        add(
            f"| {r['algo']} | JAX (jit) | {r['n_envs']} | {_f(r['steps_per_s'])} | "
            + (f"**{r['steps_per_s'] / tt['steps_per_s']:.2f}x** | " if tt else "- | ")
            + f"{ms(r['per_vec_step_s'])} | {g} | {r['compile_s']:.0f} | "
            f"{', '.join(f'{x:.2f}' for x in r['runs_s'])} | {r['load1']:.1f} |"
        )
    if tt:
        add(
            f"| maddpg | PyTorch ({tt['threads']} thread(s)) on NumPy envs | {tt['n_envs']} | "
            f"{_f(tt['steps_per_s'])} | 1 (reference) | {ms(tt['per_vec_step_s'])} | "
            f"{ms(tt['grad_step_s'])} | "
            f"- | {', '.join(f'{x:.2f}' for x in tt['runs_s'])} ({tt['vec_steps_per_block']} "
            f"steps a block) | {tt['load1']:.1f} |"
        )
    for sk in res.get("skipped", []):
        if sk.get("part") == "train":
            add(f"| {sk['what']} | skipped: {sk['why']} | | | | | | | | |")
    add("")
    add(
        "JAX ms per gradient step: (diff.) = (median learning call - median non-learning call "
        "of the warm-up) / steps per call; (alone) = a compiled `lax.scan` of minibatch "
        "sampling + `trainer.learn` on the warm buffer. PyTorch: its loop's own time in "
        "sampling + `learn`."
    )
    add("")
    if res["train_jax"] or tt:
        add("Learning sanity (first and last call):")
        add("")
        for r in res["train_jax"]:
            m0, m1 = r["metrics"]
            add(
                f"- JAX {r['algo']}: all metrics finite: {r['finite']}; learning on every timed "
                f"step: {r['learning_in_timed_calls'] == 1.0}; mean reward "
                f"{m0.get('reward', nan):.3f} -> "
                f"{m1.get('reward', float('nan')):.3f}, critic loss of the last call "
                f"{m1.get('critic_loss', float('nan')):.3g}"
            )
        if tt:
            m0, m1 = tt["metrics"]
            add(
                f"- PyTorch maddpg: learning on every timed step: {tt['learning']}; last reward "
                f"{m1.get('reward', float('nan')):.3f}, critic loss "
                f"{m0.get('critic_loss', nan):.3g} -> {m1.get('critic_loss', nan):.3g}"
            )
        add("")
    L += bullets("## Reading", res.get("reading", []))
    write_markdown(path, L)


# ---- main -----------------------------------------------------------------------------------


def env_point(env, params, n, args, clock, res, last, measured_np, run=1):
    """One point of part (a): JAX (skipped by the budget rule) and NumPy (measured or
    extrapolated from ``measured_np[-1]``). ``last``: compile time and per-step cost of the
    previous JAX point (the prediction), updated."""
    T = env.episode_steps
    # fewer repeats at large sizes: 3 timed + 1 warm-up up to 64 networks, 2 + 1 at 256,
    # 1 + 0 from 1024 (the AOT compile comes first, so a first call compiles nothing)
    repeats = args.repeats if n <= 64 else min(args.repeats, 2) if n < 1024 else 1
    warmup = 1 if n < 1024 else 0
    if last["per"] is not None:
        pred = last["compile"] + (repeats + warmup) * T * n * last["per"]
        why = clock.skip(pred)
        if why:
            res["skipped"].append({"part": "env", "n_envs": n, "what": f"env at {n}", "why": why})
            print(f"env {n}: skipped ({why})", flush=True)
            return
    r = dict(time_jax_env(env, params, n, repeats, warmup), run=run)
    res["jax_env"].append(r)
    last["compile"], last["per"] = r["compile_s"], r["per_env_step_s"]
    m = numpy_point(env, params, n, args.numpy_max_s, measured_np, run)
    if not m["extrapolated"]:
        measured_np.append(m)
    res["numpy_env"].append(m)
    print(
        f"env {n}: JAX {r['steps_per_s']:.0f}/s (compile {r['compile_s']:.0f} s), NumPy "
        f"{m['steps_per_s']:.0f}/s{' (extrapolated)' if m['extrapolated'] else ''}",
        flush=True,
    )


def parts_point(env, params, n_list, clock, res, last):
    n_parts = min(PARTS_N, max(n_list))
    pred = 50.0 + 2 * n_parts * (last["per"] or 2e-3) * 10
    why = clock.skip(pred)
    if why:
        res["skipped"].append({"part": "parts", "what": "per-part split", "why": why})
    else:
        res["parts"] = parts_split(env, params, n_parts)


def finish(args, info, setup, res, t_start, wall_before=0.0):
    res["reading"] = reading(res, setup)
    info["max_rss_gib"] = max(info.get("max_rss_gib", 0.0), peak_rss_gib())
    wall = wall_before + time.perf_counter() - t_start
    out = args.out or (
        "/tmp/RESULTS_mobile_ap_quick.md"
        if setup["quick"]
        else os.path.join(ROOT, "bench", "RESULTS_mobile_ap.md")
    )
    write_json(out, {"machine": info, "setup": setup, "results": res, "wall_s": wall})
    write_report(out, info, setup, res, wall)
    print(f"wrote {out} ({wall:.0f} s)")
    return 0


def extend(args):
    """``--extend JSON``: run the environment points and the per-part split that the saved run
    skipped, within this run's budget, and add them (marked run 2). The NumPy reference of the
    added points is measured again in this run (at the largest NumPy point the saved run
    measured) and extrapolated from there by the same rule."""
    with open(args.extend) as f:
        d = json.load(f)
    info, setup, res = d["machine"], d["setup"], d["results"]
    t_start = time.perf_counter()
    run = {"uptime_start": _uptime(), "commit": git("rev-parse", "--short", "HEAD")}
    clock = Clock(args.budget_s, args.max_point_s)
    env, params = make_env(setup["quick"])
    todo = [s for s in res["skipped"] if s.get("part") in ("env", "parts")]
    res["skipped"] = [s for s in res["skipped"] if s not in todo]
    measured = [r for r in res["numpy_env"] if not r["extrapolated"]]
    ref_n = max(r["n_envs"] for r in measured)
    ref = dict(time_numpy_env(env, params, ref_n, args.numpy_max_s, None), run=2)
    run["numpy_reference"] = ref
    print(f"NumPy reference at {ref_n}: {ref['steps_per_s']:.0f}/s", flush=True)
    prev = res["jax_env"][-1]
    last = {"compile": prev["compile_s"], "per": prev["per_env_step_s"]}
    for s in todo:
        if s["part"] == "env":
            env_point(env, params, s["n_envs"], args, clock, res, last, [ref], run=2)
    if any(s["part"] == "parts" for s in todo):
        parts_point(env, params, setup["n_envs"], clock, res, last)
        if "parts" in res:
            res["parts"]["run"] = 2
    res["jax_env"].sort(key=lambda r: r["n_envs"])
    res["numpy_env"].sort(key=lambda r: r["n_envs"])
    run["uptime_end"] = _uptime()
    run["what"] = [s["what"] for s in todo]
    info.setdefault("extensions", []).append(run)
    return finish(args, info, setup, res, t_start, d["wall_s"])


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (small network, 1 and 4 envs)")
    ap.add_argument(
        "--out", default=None, help="markdown report (default bench/RESULTS_mobile_ap.md)"
    )
    ap.add_argument("--n-envs", default=None, help="comma list (default 1,4,...,4096)")
    ap.add_argument("--algos", default="maddpg,sf_maddpg,pe_maddpg", help="comma list")
    ap.add_argument("--table2", action="store_true", help="SF-MADDPG at Table II's sizes")
    ap.add_argument(
        "--repeats", type=int, default=3, help="timed JAX calls per point (1 at >= 1024)"
    )
    ap.add_argument(
        "--numpy-max-s", type=float, default=20.0, help="measured NumPy seconds per point"
    )
    ap.add_argument("--torch-max-s", type=float, default=15.0, help="timed seconds of PyTorch")
    ap.add_argument("--torch-threads", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=600.0, help="time budget of the run")
    ap.add_argument("--max-point-s", type=float, default=200.0, help="longest point")
    ap.add_argument("--no-parts", action="store_true", help="skip the per-part split")
    ap.add_argument(
        "--report-only", default=None, metavar="JSON", help="rewrite the markdown from a JSON"
    )
    ap.add_argument(
        "--extend",
        default=None,
        metavar="JSON",
        help="add the environment points and the split a saved run skipped (a second run)",
    )
    args = ap.parse_args(argv)
    if args.extend:
        return extend(args)
    if args.report_only:
        with open(args.report_only) as f:
            d = json.load(f)
        d["results"]["reading"] = reading(d["results"], d["setup"])
        out = args.out or os.path.splitext(args.report_only)[0] + ".md"
        write_report(out, d["machine"], d["setup"], d["results"], d["wall_s"])
        print(f"wrote {out}")
        return 0

    from cfmimo_jax.envs import spaces

    t_start = time.perf_counter()
    info = machine_info()
    info["uptime_start"] = _uptime()
    info["load_start"] = list(os.getloadavg())
    clock = Clock(args.budget_s, args.max_point_s)
    env, params = make_env(args.quick)
    n_list = (
        tuple(int(x) for x in args.n_envs.split(","))
        if args.n_envs
        else ((1, 4) if args.quick else N_ENVS)
    )
    algos = [a for a in args.algos.split(",") if a]
    tcfg = trainer_config("maddpg", args.quick)
    setup = {
        "quick": args.quick,
        "M": env.M,
        "N": env.N,
        "K": env.K,
        "episode_steps": env.episode_steps,
        "act_dim": spaces.flat_dim(env.action_space),
        "obs_dim": env.obs_dim,
        "state_dim": int(env.global_state_space.shape[0]),
        "n_envs": list(n_list),
        "algos": algos,
        "table2": args.table2,
        "batch_size": tcfg["batch_size"],
        "trainer_configs": {a: trainer_config(a, args.quick, args.table2) for a in algos},
        "torch_threads": args.torch_threads,
        "budget_s": args.budget_s,
        "max_point_s": args.max_point_s,
        "numpy_max_s": args.numpy_max_s,
    }
    res = {"jax_env": [], "numpy_env": [], "train_jax": [], "train_torch": None, "skipped": []}
    print(f"mobile_ap M={env.M} N={env.N} K={env.K}; load {info['load_start']}", flush=True)

    res["env_parity"] = env_parity(env, params)
    print(f"env parity: {res['env_parity']['reward_max_rel']:.1e}", flush=True)
    have_torch = info["torch"] is not None
    if have_torch and "maddpg" in algos:
        res["net_parity"] = net_parity(env, params, args.quick)
        print(f"net parity: Q {res['net_parity']['q_max_abs']:.1e}", flush=True)

    last = {"compile": GUESS["env_compile"], "per": None}
    measured_np = []
    for n in n_list:
        if n <= EARLY:
            env_point(env, params, n, args, clock, res, last, measured_np)

    def train_point(algo, learn_alone):
        trainer = build_trainer(algo, env, params, args.quick, args.table2)
        c = trainer.config
        comp_guess, grad_guess = GUESS[algo]
        measured = {r["algo"]: r for r in res["train_jax"]}
        if "maddpg" in measured and algo != "maddpg":
            comp_guess = max(
                comp_guess, measured["maddpg"]["compile_s"] * comp_guess / GUESS["maddpg"][0]
            )
        per_env = last["per"] or 2e-3
        n_calls = int(np.ceil(c.learning_starts / (c.n_envs * c.n_steps))) + 2 + args.repeats
        pred = comp_guess + n_calls * c.n_steps * (c.n_envs * per_env + grad_guess)
        if learn_alone:
            pred += 0.5 * comp_guess
        why = clock.skip(pred)
        if why:
            res["skipped"].append({"part": "train", "what": f"{algo} (JAX)", "why": why})
            print(f"train {algo}: skipped ({why})", flush=True)
            return None
        r = time_train_jax(trainer, args.repeats, learn_alone)
        r["algo"] = algo
        res["train_jax"].append(r)
        print(
            f"train {algo}: {r['steps_per_s']:.0f} env steps/s, grad step "
            f"{1e3 * r.get('grad_step_diff_s', float('nan')):.1f} ms "
            f"(compile {r['compile_s']:.0f} s)",
            flush=True,
        )
        return trainer

    if "maddpg" in algos:
        trainer = train_point("maddpg", learn_alone=True)
        if have_torch and trainer is not None:
            why = clock.skip(3 * args.torch_max_s)
            if why:
                res["skipped"].append({"part": "train", "what": "maddpg (PyTorch)", "why": why})
            else:
                res["train_torch"] = time_train_torch(
                    env, params, trainer, args.torch_threads, args.torch_max_s
                )
                print(
                    f"torch maddpg: {res['train_torch']['steps_per_s']:.0f} env steps/s",
                    flush=True,
                )
    if "sf_maddpg" in algos:
        train_point("sf_maddpg", learn_alone=False)
    for n in n_list:
        if n > EARLY:
            env_point(env, params, n, args, clock, res, last, measured_np)
    if "pe_maddpg" in algos:
        train_point("pe_maddpg", learn_alone=False)
    if not args.no_parts:
        parts_point(env, params, n_list, clock, res, last)
    info["uptime_end"] = _uptime()
    info["load_end"] = list(os.getloadavg())
    return finish(args, info, setup, res, t_start)


if __name__ == "__main__":
    sys.exit(main())
