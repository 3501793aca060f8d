#!/usr/bin/env python
"""Benchmark: the AP-cooperation scenario ([AP-COOP]), JAX vs vectorised NumPy / PyTorch.

Usage (from the repository root; the training part needs torch)::

    python bench/bench_ap_cooperation.py [--quick] [--out bench/RESULTS_ap_cooperation.md]

(a) Environment steps per second. JAX: ``cfmimo_jax.envs.make("ap_cooperation")`` at its
defaults (the paper's size: ``M = 100`` APs x ``L = 4`` antennas, ``K = 40`` UEs),
``env.step_batch`` (``vmap`` of the step, auto-reset under one ``lax.cond`` per batch) over
``n_envs`` networks, driven by a ``lax.scan`` of ``episode_steps`` steps inside one ``jax.jit``
(every call = one whole episode of every network, its reset included), uniform random actions
drawn inside the scan; compile time (``lower().compile()``) apart; float32 (the default).
NumPy: ``bench/numpy_ap_cooperation.py`` (the same equations in complex128: MMSE estimates,
clusters as connected components of the agreed links, cluster RZF, MRT, SINR eq. (9), reward
eq. (12), observations eq. (10)), ``n_envs`` objects stepped one after another in a Python loop
for the same ``episode_steps`` steps (one auto-reset each), uniform random actions; above
``NUMPY_MAX = 64`` networks the loop is timed on 64 of them (its cost per network step does not
depend on how many follow; the table says so where it applies). The NumPy
environments take their drops from a pool drawn by the JAX generator (the JAX environment
generates a drop at every reset: extra work on the JAX side only). Both in the same process;
ratios = JAX steps/s over NumPy steps/s at the same ``n_envs``.

(b) Training throughput: independent double DQN (the paper's Table II: per-AP networks
128-64-32 with dropout 0.1, batch 32, buffer 1000, Adam 1e-3, gamma 0.95, one gradient step
per vectorised step; ``configs/ap_cooperation_ddqn.yaml``), environment steps per second of the
whole loop (acting, environment, buffer, gradient step) once learning runs on every step.
JAX: ``algorithms.make_train("ddqn", ...)``, compiled ``trainer.update`` (``n_steps = 10``
vectorised steps a call). PyTorch: ``bench/torch_ddqn.py`` (eager, CPU) on the NumPy
environments.

Checked before timing: the NumPy environment against the JAX one on the same drops, metric
draws and step channels (the JAX draws fed to ``reset_from`` / ``step_with``): serving sets,
neighbour tables, observations, rewards and sum rates; the JAX parameters copied into the torch
networks give the same Q values and, after one gradient step on the same minibatch (dropout
off: the masks come from different generators), the same loss and parameters.

Budget: a point is skipped when its predicted time (per-step cost of the previous point times
its steps, plus a compile) exceeds ``--max-point-s`` or the time left of ``--budget-s``, or
when the compiled JAX rollout needs more than half the free memory (other jobs share the
machine); the report says which and why. The training part runs after the environment points
up to 64 networks, the larger points after it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench._common import (  # noqa: E402
    Clock,
    aot,
    bullets,
    compile_update,
    describe_machine,
    mem_available,
    memory_bytes,
    mlp_layers,
    scan_rollout,
    time_compiled,
    time_rollouts,
    timed_update,
    write_json,
    write_markdown,
)

SCENARIO = "ap_cooperation"
N_ENVS = (1, 4, 16, 64, 256, 1024, 4096)
EARLY = 64  # environment points up to this size run before the training part
NUMPY_MAX = 64  # the NumPy loop is timed on at most this many of a point's networks
MEM_FRACTION = 0.5  # a JAX point is skipped when it needs more than this of the free memory
TRAIN_N_ENVS = (1, 4)
QUICK_ENV = {"n_aps": 16, "n_ues": 8, "n_antennas": 2, "tau_p": 4, "side_m": 400.0}
POOL = 64  # drops drawn once by the JAX generator for the NumPy environments
# the trainer of configs/ap_cooperation_ddqn.yaml (Table II)
TRAINER = dict(
    n_steps=10,
    updates_per_chunk=1,
    n_updates=1,
    buffer_size=1000,
    batch_size=32,
    learning_starts=32,
    gradient_steps=1,
    gamma=0.95,
    lr=0.001,
    hidden=[128, 64, 32],
    dropout=0.1,
    shared_parameters=False,
    reward="local",
    loss="mse",
    double=True,
    eps_start=0.8,
    eps_end=0.01,
    eps_decay_steps=1580,
    target_period=100,
)
TORCH_KEYS = (
    "buffer_size",
    "batch_size",
    "learning_starts",
    "gradient_steps",
    "gamma",
    "lr",
    "max_grad_norm",
    "dropout",
    "target_period",
    "eps_start",
    "eps_end",
    "eps_decay_steps",
    "double",
)


def machine_info():
    """:func:`bench._common.describe_machine` (no ``platform``) of the scenario's, trainer's and
    benchmark's files, with PyTorch's version and default threads (``None`` without torch)."""
    files = [
        "cfmimo_jax/envs/ap_cooperation.py",
        "cfmimo_jax/cooperation.py",
        "cfmimo_jax/processing.py",
        "algorithms/dqn.py",
        "algorithms/offpolicy.py",
        "bench/numpy_ap_cooperation.py",
        "bench/torch_ddqn.py",
        "bench/bench_ap_cooperation.py",
    ]
    try:
        import torch

        tv, tt = torch.__version__, torch.get_num_threads()
    except ImportError:
        tv, tt = None, None
    return describe_machine(
        files, with_platform=False, after_jax={"torch": tv, "torch_threads_default": tt}
    )


# ---- set-up ---------------------------------------------------------------------------------


def make_env(quick):
    from cfmimo_jax import envs

    return envs.make(SCENARIO, dict(QUICK_ENV) if quick else {})


def numpy_kwargs(env, params):
    """``APCooperationNumPy`` keyword arguments of the JAX environment (its variant checked)."""
    if env.transmit != "serving" or not env.per_ap or env.exclude_desired:
        raise ValueError("the NumPy environment implements transmit=serving, per-AP eq. (11)")
    kw = dict(
        n_antennas=env.N,
        tau_p=env.tau_p,
        max_aps_per_ue=env.max_aps,
        max_neighbours=env.Q,
        metric_samples=env.metric_samples,
        obs_users=env.U,
        obs_history=env.T,
        episode_steps=env.episode_steps,
    )
    for k in (
        "ap_power_mw",
        "pilot_power_mw",
        "delta",
        "neighbour_ratio",
        "rzf_alpha",
        "alpha_1",
        "alpha_2",
        "alpha_3",
        "obs_offset_db",
        "obs_scale_db",
    ):
        kw[k] = float(getattr(params, k))
    return kw


def drop_pool(env, n, seed=11):
    """``n`` drops of the JAX generator (the arguments of ``env.reset_env``) as NumPy:
    ``{"gain": [n, M, K], "pilot": [n, K]}``."""
    import jax

    from cfmimo_jax.setup import generate_setup

    def one(key):
        s = generate_setup(
            key,
            env.M,
            env.K,
            env.N,
            env.tau_p,
            side=env.side_m,
            height=env.height_m,
            shadow_std_db=env.shadow_std_db,
            decorrelation_m=env.decorrelation_m,
            bandwidth_hz=env.bandwidth_hz,
            noise_figure_db=env.noise_figure_db,
        )
        return 10.0 ** (s.gain_db / 10.0), s.pilot

    gain, pilot = jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(seed), n))
    return {"gain": np.asarray(gain, np.float64), "pilot": np.asarray(pilot)}


# ---- parity ---------------------------------------------------------------------------------


def env_parity(env, params, n_drops=2, seed=3):
    """The NumPy environment on the JAX environment's drops, metric draws and step channels:
    serving sets and neighbour masks exactly, observations, rewards and sum rates within
    float32 round-off (asserted)."""
    import jax
    import jax.numpy as jnp

    from bench.numpy_ap_cooperation import APCooperationNumPy

    reset = jax.jit(env.reset_env)
    step = jax.jit(env.step_env)
    chans = jax.jit(env.channels)
    metric_ch = jax.jit(env._channels)
    npe = APCooperationNumPy(
        {"gain": np.zeros((1, env.M, env.K)), "pilot": np.zeros((1, env.K), int)},
        **numpy_kwargs(env, params),
    )
    rng = np.random.default_rng(seed)
    out = {"obs_max_abs": 0.0, "reward_max_abs": 0.0, "sum_rate_max_rel": 0.0, "steps": 0}
    links = []
    for d in range(n_drops):
        key = jax.random.PRNGKey(100 + d)
        obs, st = reset(key, params)
        _, k_metric = jax.random.split(key)
        samples = []
        for k in jax.random.split(k_metric, env.metric_samples):
            k_h, k_n = jax.random.split(k)
            H, Hh = metric_ch(k_h, k_n, st.gain, st.pilot, st.est, params)
            samples.append((np.asarray(H, complex), np.asarray(Hh, complex)))
        o_n = npe.reset_from(np.asarray(st.gain, np.float64), np.asarray(st.pilot), samples)
        if not np.array_equal(npe.D, np.asarray(st.D)):
            raise AssertionError("serving sets differ")
        if not np.array_equal(npe.mask, np.asarray(st.mask)):
            raise AssertionError("neighbour masks differ")
        out["obs_max_abs"] = max(out["obs_max_abs"], float(np.max(np.abs(o_n - np.asarray(obs)))))
        for t in range(3):
            if t == 0:
                a = np.full(env.M, 2**env.Q - 1)  # full cooperation: the largest clusters
            else:
                a = rng.integers(0, 2**env.Q, env.M)
            k = jax.random.PRNGKey(1000 * d + t)
            obs, st2, rew, _, _, info = step(k, st, jnp.asarray(a, jnp.int32), params)
            H, Hh = chans(k, st, params)
            o_n, r_n, _, i_n = npe.step_with(a, np.asarray(H, complex), np.asarray(Hh, complex))
            links.append(float(info["links"]))
            if float(info["links"]) != i_n["links"]:
                raise AssertionError("link counts differ")
            rel = abs(float(info["sum_rate"]) - i_n["sum_rate"]) / i_n["sum_rate"]
            out["sum_rate_max_rel"] = max(out["sum_rate_max_rel"], rel)
            out["reward_max_abs"] = max(
                out["reward_max_abs"], float(np.max(np.abs(r_n - np.asarray(rew))))
            )
            out["obs_max_abs"] = max(
                out["obs_max_abs"], float(np.max(np.abs(o_n - np.asarray(obs))))
            )
            out["steps"] += 1
            st = st2
    out["links"] = links
    if out["sum_rate_max_rel"] > 1e-3 or out["reward_max_abs"] > 1e-2:
        raise AssertionError(f"NumPy vs JAX environment: {out}")
    return out


def torch_config(trainer, n_envs, dropout=None):
    from bench.torch_ddqn import TorchDDQNConfig

    c = trainer.config
    if c.shared_parameters or c.reward != "local" or c.loss != "mse" or not c.target_period:
        raise ValueError("the torch reference implements per-agent networks, mse, hard targets")
    kw = {k: getattr(c, k) for k in TORCH_KEYS}
    if dropout is not None:
        kw["dropout"] = dropout
    return TorchDDQNConfig(n_envs=n_envs, hidden=tuple(c.hidden), **kw)


def build_trainer(env, params, n_envs, **over):
    import algorithms

    return algorithms.make_train("ddqn", dict(TRAINER, n_envs=int(n_envs), **over), env, params)


def net_parity(env, params, setups, seed=0):
    """JAX parameters in the torch networks: Q values, and one gradient step without dropout
    (loss, every parameter after it) on the same minibatch of real transitions."""
    import jax
    import jax.numpy as jnp
    import torch

    from algorithms.replay import Transition
    from bench.torch_ddqn import TorchDDQN

    trainer = build_trainer(env, params, 1, dropout=0.0)
    tm = TorchDDQN(torch_config(trainer, 1, dropout=0.0), setups, numpy_kwargs(env, params), seed)
    for _ in range(12):
        tm.step()  # < learning_starts: no learning yet
    batch = tm.buffer.sample(np.random.default_rng(seed), 32)
    p, o = trainer.init_learner(jax.random.PRNGKey(seed + 7))
    tm.q.load(mlp_layers(p["q"]))
    tm.q_target.load(mlp_layers(p["q_target"]))
    tm.opt = torch.optim.Adam(tm.q.parameters(), lr=tm.cfg.lr)
    tr = Transition(
        obs=jnp.asarray(batch["obs"].numpy()),
        action=jnp.asarray(batch["action"].numpy(), jnp.int32),
        reward=jnp.asarray(batch["reward"].numpy()),
        next_obs=jnp.asarray(batch["next_obs"].numpy()),
        terminated=jnp.asarray(batch["terminated"].numpy() > 0.5),
        state=None,
        next_state=None,
    )
    q_j = np.asarray(jax.jit(trainer.q_values)(p["q"], tr.obs))
    with torch.no_grad():
        q_t = tm.q(batch["obs"]).numpy()
    new, _, m_j = jax.jit(trainer.learn)(p, o, tr, jax.random.PRNGKey(0), jnp.int32(1))
    m_t = tm.learn(batch, dropout=0.0)
    lj, lt = mlp_layers(new["q"]), tm.q.layers()
    diff = max(
        float(np.max(np.abs(a - b)))
        for x, y in zip(lj, lt, strict=True)
        for a, b in zip(x, y, strict=True)
    )
    moved = max(
        float(np.max(np.abs(a - b)))
        for x, y in zip(lj, mlp_layers(p["q"]), strict=True)
        for a, b in zip(x, y, strict=True)
    )
    out = {
        "n_params": int(sum(w.numel() for w in tm.q.parameters())),
        "q_max_abs": float(np.max(np.abs(q_j - q_t))),
        "q_scale": float(np.max(np.abs(q_j))),
        "td_loss_jax": float(m_j["td_loss"]),
        "td_loss_torch": m_t["td_loss"],
        "param_max_abs_after_step": diff,
        "param_max_move": moved,
    }
    if out["q_max_abs"] > 1e-4 * max(out["q_scale"], 1) or diff > 0.1 * moved:
        raise AssertionError(f"torch vs JAX networks: {out}")
    return out


# ---- (a) environment steps ------------------------------------------------------------------


def jax_rollout(env, params, n_envs):
    """``(rollout, reset)`` of one episode of uniform random actions (``scan_rollout``)."""
    import jax
    import jax.numpy as jnp

    n_act = env.action_space.n

    def act(key, obs):
        return jax.random.randint(key, (n_envs, env.n_agents), 0, n_act, jnp.int32)

    def consume(reward, done, obs, info):
        return jnp.sum(reward) + jnp.sum(info["sum_rate"]) + jnp.sum(done)

    return scan_rollout(env, params, n_envs, env.episode_steps, act, consume)


def time_jax_env(env, params, n_envs, repeats, warmup, seed=0):
    import jax

    rollout, reset = jax_rollout(env, params, n_envs)
    key = jax.random.PRNGKey(seed)
    t0 = time.perf_counter()
    obs, state = reset(jax.random.split(key, n_envs), params)
    jax.block_until_ready(state)
    reset_s = time.perf_counter() - t0
    compiled, compile_s = aot(rollout, key, state, obs)
    mem = memory_bytes(compiled)
    out = {"n_envs": n_envs, "compile_s": compile_s, "first_reset_s": reset_s, "mem_bytes": mem}
    avail = mem_available()
    if mem is not None and avail is not None and mem > MEM_FRACTION * avail:
        out["skipped"] = f"needs {mem / 2**30:.1f} GiB, {avail / 2**30:.1f} GiB available"
        return out
    runs, (state, obs, acc) = time_rollouts(compiled, key, state, obs, warmup, repeats)
    t = statistics.median(runs)
    steps = n_envs * env.episode_steps
    out.update(
        steps_per_call=steps,
        warmup=warmup,
        runs_s=runs,
        steps_per_s=steps / t,
        per_env_step_s=t / steps,
        finite=bool(np.isfinite(float(acc))),
        load1=os.getloadavg()[0],
    )
    return out


def time_numpy_env(setups, kwargs, n_envs, repeats, seed=0):
    """The NumPy loop over ``n_envs`` networks; above ``NUMPY_MAX`` networks only the first
    ``NUMPY_MAX`` are stepped (a Python loop over independent networks: its cost per network
    step does not depend on ``n_envs``), and the rates are per network step of those."""
    from bench.numpy_ap_cooperation import APCooperationNumPy

    timed = min(n_envs, NUMPY_MAX)
    envs = [APCooperationNumPy(setups, seed=seed + i, **kwargs) for i in range(timed)]
    for e in envs:
        e.reset()
    rng = np.random.default_rng(seed)
    T, n_act = envs[0].episode_steps, 2 ** envs[0].Q
    runs = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(T):
            a = rng.integers(0, n_act, (timed, envs[0].M))
            for e, ae in zip(envs, a, strict=True):  # the loop over networks
                e.step(ae)
        runs.append(time.perf_counter() - t0)
    t = statistics.median(runs)
    return {
        "n_envs": n_envs,
        "networks_timed": timed,
        "steps_per_call": timed * T,
        "runs_s": runs,
        "steps_per_s": timed * T / t,
        "per_env_step_s": t / (timed * T),
        "load1": os.getloadavg()[0],
    }


def env_points(env, params, setups, sizes, clock, res, quick):
    kw = numpy_kwargs(env, params)
    T = env.episode_steps
    for n in sizes:
        prev_j = [r for r in res["jax_env"] if "steps_per_s" in r]
        prev_n = [r for r in res["numpy_env"] if "steps_per_s" in r]
        repeats = 3 if n <= 4 else 2 if n <= 16 else 1
        warmup = 1 if n <= 4 else 0
        compile_guess = max([r["compile_s"] for r in res["jax_env"]] or [30.0])
        pj = (
            compile_guess + (warmup + repeats) * n * T * prev_j[-1]["per_env_step_s"] + n * 0.03
            if prev_j
            else 60.0
        )
        pn = repeats * min(n, NUMPY_MAX) * T * prev_n[-1]["per_env_step_s"] if prev_n else 10.0
        why = clock.skip(pj + pn)
        if why:
            res["skipped"].append({"part": "env", "n_envs": n, "why": why})
            print(f"env n_envs={n}: skipped ({why})", flush=True)
            continue
        j = time_jax_env(env, params, n, repeats, warmup)
        res["jax_env"].append(j)
        if "skipped" in j:
            res["skipped"].append({"part": "env (JAX)", "n_envs": n, "why": j["skipped"]})
            continue
        nn = time_numpy_env(setups, kw, n, repeats)
        res["numpy_env"].append(nn)
        print(
            f"env n_envs={n}: JAX {j['steps_per_s']:.3g} steps/s (compile {j['compile_s']:.0f} "
            f"s), NumPy {nn['steps_per_s']:.3g}, ratio {j['steps_per_s'] / nn['steps_per_s']:.2f}"
            f"  [{clock.left():.0f} s left]",
            flush=True,
        )


# ---- (b) training ---------------------------------------------------------------------------


def time_jax_train(env, params, n_envs, timed_calls, max_warm=8, seed=0):
    trainer = build_trainer(env, params, n_envs)
    rs, compiled, compile_s = compile_update(trainer, seed)
    vec = trainer.config.n_steps * trainer.config.updates_per_chunk
    warm, runs, metrics = [], [], []

    def call(rs):
        rs, dt, m = timed_update(compiled, rs, metrics)
        return rs, dt, float(np.min(m["learning"]))

    learning = 0.0
    while learning < 1.0 and len(warm) < max_warm:
        rs, dt, learning = call(rs)
        warm.append(dt)
    for _ in range(timed_calls):
        rs, dt, learning = call(rs)
        runs.append(dt)
    t = statistics.median(runs)
    return {
        "n_envs": n_envs,
        "vec_steps_per_call": vec,
        "compile_s": compile_s,
        "warm_s": warm,
        "runs_s": runs,
        "steps_per_s": n_envs * vec / t,
        "per_vec_step_s": t / vec,
        "learning_in_timed_calls": learning,
        "td_loss": metrics[-1].get("td_loss"),
        "finite": bool(all(np.isfinite(v) for m in metrics for v in m.values())),
        "load1": os.getloadavg()[0],
    }


def time_torch_train(env, params, setups, n_envs, threads, timed_blocks, block=10, seed=0):
    import torch

    from bench.torch_ddqn import TorchDDQN

    torch.set_num_threads(threads)
    trainer = build_trainer(env, params, n_envs)
    tm = TorchDDQN(torch_config(trainer, n_envs), setups, numpy_kwargs(env, params), seed)
    t0 = time.perf_counter()
    m = {}
    while tm.buffer.size < max(tm.cfg.learning_starts, 1):
        tm.step()
    for _ in range(2):  # two learning steps before timing
        m = tm.step()
    warm_s = time.perf_counter() - t0
    for k in tm.timers:
        tm.timers[k] = 0.0
    runs = []
    for _ in range(timed_blocks):
        t0 = time.perf_counter()
        for _ in range(block):
            m = tm.step()
        runs.append(time.perf_counter() - t0)
    t = statistics.median(runs)
    done = block * timed_blocks
    return {
        "n_envs": n_envs,
        "threads": threads,
        "warm_s": warm_s,
        "vec_steps_per_block": block,
        "runs_s": runs,
        "steps_per_s": n_envs * block / t,
        "per_vec_step_s": t / block,
        "split_per_vec_step_s": {k: v / done for k, v in tm.timers.items()},
        "td_loss": m.get("td_loss"),
        "load1": os.getloadavg()[0],
    }


def train_points(env, params, setups, sizes, clock, res, quick, threads=(1,)):
    for n in sizes:
        prev = [r for r in res["jax_env"] if "per_env_step_s" in r]
        per = prev[-1]["per_env_step_s"] if prev else 0.1
        warm_calls = -(-TRAINER["learning_starts"] // n) // TRAINER["n_steps"] + 1
        pj = 90.0 + (warm_calls + 2) * TRAINER["n_steps"] * n * (per + 0.02)
        why = clock.skip(pj)
        if why:
            res["skipped"].append({"part": "training (JAX)", "n_envs": n, "why": why})
            print(f"train n_envs={n}: skipped ({why})", flush=True)
            continue
        j = time_jax_train(env, params, n, timed_calls=1 if quick else 2)
        res["jax_train"].append(j)
        for th in threads:
            t = time_torch_train(env, params, setups, n, th, timed_blocks=2 if quick else 3)
            res["torch_train"].append(t)
            print(
                f"train n_envs={n}: JAX {j['steps_per_s']:.3g} env steps/s (compile "
                f"{j['compile_s']:.0f} s), PyTorch ({th} thr) {t['steps_per_s']:.3g}  "
                f"[{clock.left():.0f} s left]",
                flush=True,
            )


# ---- where the time goes --------------------------------------------------------------------


def kernel_split(env, params, setups, n_envs=16, repeats=2, seed=0):
    """Per network, at ``n_envs`` JAX networks (vmapped, compiled apart): the reset, the step
    without reset (cluster RZF of full cooperation), its cluster RZF alone and the centralized
    P-RZF / P-MMSE precoders; NumPy: a step and a reset of one network."""
    import copy

    import jax
    import jax.numpy as jnp

    from bench.numpy_ap_cooperation import APCooperationNumPy

    def timed(fn, *args):
        return min(time_compiled(fn, args, repeats)[1]) / n_envs

    from cfmimo_jax.cooperation import _agreement_matrix, _clusters
    from cfmimo_jax.processing import _cluster_rzf

    keys = jax.random.split(jax.random.PRNGKey(seed), n_envs)
    obs, st = jax.jit(jax.vmap(env.reset, (0, None)))(keys, params)
    plain = copy.copy(env)
    plain._central = False
    full = jnp.full((n_envs, env.n_agents), env.action_space.n - 1, jnp.int32)
    _, Hh = jax.vmap(env.channels, (0, 0, None))(keys, st, params)
    labels = jax.vmap(lambda s: _clusters(_agreement_matrix(s.idx, s.mask, s.mask)))(st)
    out = {"n_envs": n_envs}
    out["jax_reset_s"] = timed(jax.vmap(env.reset, (0, None)), keys, params)
    out["jax_step_s"] = timed(jax.vmap(plain.step_env, (0, 0, 0, None)), keys, st, full, params)
    out["jax_cluster_rzf_s"] = timed(
        jax.vmap(lambda h, l, d: _cluster_rzf(h, l, d, params.rzf_alpha)), Hh, labels, st.D
    )
    for s in ("p_rzf", "p_mmse"):
        out[f"jax_central_{s}_s"] = timed(
            jax.vmap(lambda h, x, s=s: env.central_precoders(h, x, params, s)), Hh, st
        )
    npe = APCooperationNumPy(
        setups, seed=seed, **dict(numpy_kwargs(env, params), episode_steps=10**9)
    )
    npe.reset()
    a = np.full(env.M, env.action_space.n - 1)
    n = 20
    t0 = time.perf_counter()
    for _ in range(n):
        npe.step(a)
    out["numpy_step_s"] = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(5):
        npe.reset()
    out["numpy_reset_s"] = (time.perf_counter() - t0) / 5
    return out


def central_rates(env, params, n_drops=8, n_steps=3, seed=5):
    """Mean sum rate and SINR of every heuristic on the same drops (``evaluate_policies``)."""
    import jax

    from algorithms.evaluation import evaluate_policies

    heur = env.heuristics()
    names = list(heur)
    pols = [lambda o, k, s, h=heur[n]: h(o, s) for n in names]
    res = jax.jit(lambda key: evaluate_policies(env, params, pols, key, n_drops, n_steps))(
        jax.random.PRNGKey(seed)
    )
    return {
        n: {m: float(np.mean(res[m][i])) for m in ("sum_rate", "mean_sinr_db", "links")}
        for i, n in enumerate(names)
    }


# ---- report ---------------------------------------------------------------------------------


def _f(x):
    return "-" if x is None else f"{x:.3g}"


def _subset(nn, n):
    """`` (64 of the 256 networks)`` where the NumPy loop was timed on a subset."""
    k = nn.get("networks_timed", n) if nn else n
    return f" ({k} of the {n} networks)" if k < n else ""


def write_report(path, info, setup, res, wall):
    L = []
    add = L.append
    add("# AP-cooperation scenario: environment steps and DDQN training, JAX vs NumPy / PyTorch")
    add("")
    add(
        f"Generated by `python bench/bench_ap_cooperation.py{' --quick' if setup['quick'] else ''}`"
        f" (total wall time {wall:.0f} s). What is measured and how: the module docstring of "
        "`bench/bench_ap_cooperation.py`."
    )
    add("")
    add("## Machine")
    add("")
    add(
        f"- CPU: {info['cpu']}, {info['cores']} cores, shared with other jobs (1-minute load "
        f"average at start {info['load_start'][0]:.1f}, at end {info['load_end'][0]:.1f}; "
        "per point in the tables): every time here is inflated by the other jobs, both sides "
        "alike, so only ratios measured in the same run mean much"
    )
    add(
        f"- Python {info['python']}, NumPy {info['numpy']}, JAX {info['jax']} ({info['devices']}),"
        f" PyTorch {info['torch']}; {info['mem_gib']:.0f} GiB memory available"
    )
    add(f"- Code: git commit {info['commit']}" + (" (files changed)" if info["dirty"] else ""))
    add("")
    add("## Setting")
    add("")
    s = setup
    where = f"the quick configuration {QUICK_ENV}" if s["quick"] else "its defaults (paper size)"
    add(
        f"`ap_cooperation` at {where}:"
        f" M = {s['M']} APs x {s['N']} antennas, K = {s['K']} UEs, tau_p = {s['tau_p']}, "
        f"Q = {s['Q']} neighbour slots (Discrete({2 ** s['Q']}) actions per AP), "
        f"{s['episode_steps']} steps per episode, {s['metric_samples']} metric draws per reset; "
        "JAX float32, NumPy complex128. Uniform random actions on both sides."
    )
    add("")
    p = res.get("env_parity")
    if p:
        add(
            f"Parity (NumPy environment fed the JAX draws, {p['steps']} steps on 2 drops, links "
            f"{', '.join(f'{x:g}' for x in p['links'])}): serving sets and neighbour masks equal, "
            f"sum rate max rel. diff {p['sum_rate_max_rel']:.1e}, reward max abs diff "
            f"{p['reward_max_abs']:.1e}, observation max abs diff {p['obs_max_abs']:.1e} (float32 "
            "JAX vs float64 NumPy)."
        )
        add("")
    q = res.get("net_parity")
    if q:
        add(
            f"Torch networks with the JAX parameters ({q['n_params']} parameters, "
            f"{setup['M']} per-AP MLPs): Q max abs diff {q['q_max_abs']:.1e} "
            f"(scale {q['q_scale']:.2g}); one gradient "
            f"step without dropout: loss {q['td_loss_jax']:.6g} (JAX) vs {q['td_loss_torch']:.6g} "
            f"(torch), parameters after it within {q['param_max_abs_after_step']:.1e} (the step "
            f"moved them by up to {q['param_max_move']:.1e})."
        )
        add("")
    add("## (a) Environment steps per second")
    add("")
    add(
        "| n_envs | JAX steps/s | NumPy steps/s | JAX / NumPy | JAX compile (s) | JAX ms per "
        "env step | NumPy ms per env step | timed calls (JAX, NumPy; 1 call = 1 episode) | "
        "load |"
    )
    add("|---|---|---|---|---|---|---|---|---|")
    nps = {r["n_envs"]: r for r in res["numpy_env"]}
    for j in res["jax_env"]:
        n = j["n_envs"]
        if "steps_per_s" not in j:
            continue
        nn = nps.get(n)
        ratio = j["steps_per_s"] / nn["steps_per_s"] if nn else None
        add(
            f"| {n} | {_f(j['steps_per_s'])} | {_f(nn and nn['steps_per_s'])} | "
            f"**{_f(ratio)}** | {j['compile_s']:.0f} | {1e3 * j['per_env_step_s']:.3g} | "
            f"{_f(nn and 1e3 * nn['per_env_step_s'])} | {len(j['runs_s'])}"
            f"{' + 1 warm-up' if j['warmup'] else ''}, {len(nn['runs_s']) if nn else '-'}"
            f"{_subset(nn, n)} | "
            f"{j['load1']:.1f} |"
        )
    for sk in res["skipped"]:
        if sk["part"].startswith("env"):
            add(f"| {sk['n_envs']} | skipped: {sk['why']} | | | | | | | |")
    add("")
    ks = res.get("kernel_split")
    if ks:
        add(
            f"Where the time goes (per network, at {ks['n_envs']} JAX networks, each part "
            "compiled and timed apart, best of 2): JAX reset "
            f"{1e3 * ks['jax_reset_s']:.3g} ms (drop generation, MMSE coefficients, eq. (7) over "
            f"the metric draws), step without reset {1e3 * ks['jax_step_s']:.3g} ms (full "
            f"cooperation), of which the cluster RZF {1e3 * ks['jax_cluster_rzf_s']:.3g} ms "
            "(static shapes: one K x K Cholesky factor per cluster of at least two APs in M / 2 "
            "slots, then N right-hand sides per AP); NumPy step "
            f"{1e3 * ks['numpy_step_s']:.3g} ms (full cooperation, "
            f"one solve per cluster), reset {1e3 * ks['numpy_reset_s']:.3g} ms (drop from the "
            "pool). The centralized references of the scenario (heuristics `central_przf`, "
            f"`central_pmmse`): P-RZF {1e3 * ks['jax_central_p_rzf_s']:.3g} ms, P-MMSE "
            f"{1e3 * ks['jax_central_p_mmse_s']:.3g} ms per network and step (the Woodbury "
            "form of `processing.central_scaled_all`, one K x K system per UE)."
        )
        add("")
    add("## (b) Independent double DQN training (env steps/s, learning on every step)")
    add("")
    add(
        "| n_envs | JAX env steps/s | PyTorch env steps/s (threads) | JAX / best PyTorch | JAX "
        "compile (s) | PyTorch split per vectorised step (ms): act / env loop / buffer / learn "
        "| load |"
    )
    add("|---|---|---|---|---|---|---|")
    for j in res["jax_train"]:
        n = j["n_envs"]
        ts = [t for t in res["torch_train"] if t["n_envs"] == n]
        best = max(ts, key=lambda t: t["steps_per_s"]) if ts else None
        tcol = ", ".join(f"{_f(t['steps_per_s'])} ({t['threads']})" for t in ts)
        sp = best["split_per_vec_step_s"] if best else {}
        split = " / ".join(f"{1e3 * sp[k]:.3g}" for k in ("act", "env", "buffer", "learn"))
        add(
            f"| {n} | {_f(j['steps_per_s'])} | {tcol} | "
            f"**{_f(best and j['steps_per_s'] / best['steps_per_s'])}** | {j['compile_s']:.0f} | "
            f"{split} ({best['threads'] if best else '-'} thr) | {j['load1']:.1f} |"
        )
    for sk in res["skipped"]:
        if sk["part"].startswith("training"):
            add(f"| {sk['n_envs']} | skipped: {sk['why']} | | | | | |")
    add("")
    cr = res.get("central_rates")
    if cr:
        add(
            "## The heuristics on the same drops (sanity; "
            f"{setup['rates_drops']} drops x {setup['rates_steps']} steps, "
            "`algorithms.evaluation.evaluate_policies`)"
        )
        add("")
        add("| heuristic | sum rate (bit/s/Hz) | mean SINR (dB) | links |")
        add("|---|---|---|---|")
        for n, v in cr.items():
            add(f"| {n} | {v['sum_rate']:.1f} | {v['mean_sinr_db']:.2f} | {v['links']:.1f} |")
        add("")
    if res.get("reading"):
        L += bullets("## Reading", res["reading"])
    L += bullets("## History", HISTORY)
    write_markdown(path, L)


# What changed in the code between runs of this benchmark (kept in the report)
HISTORY = (
    "commit 10db22c (the first run, same machine, load 5-8): JAX / NumPy 0.33x at 1 network, "
    "0.34x at 4, 0.18x at 16, 0.19x at 64 (JAX 38.7 -> 92.6 ms per network step, NumPy "
    "12.7 -> 17.4 ms); at 4 networks JAX reset 107 ms, step without reset 37 ms, cluster RZF "
    "18.2 ms; NumPy step 8.82 ms, reset 36.5 ms; DDQN training at 1 network 0.78x PyTorch.",
    "Since then (`cfmimo_jax/processing.py`, `cooperation.py`, `envs/ap_cooperation.py`; same "
    "results up to float32 rounding): (1) the channel draws were fused into the K-fold "
    "broadcast reductions of the cross Grams (`h_mk^H w_mj` as `[M, K, K]`), so XLA "
    "recomputed every normal (threefry bits -> erf_inv) about K times: one draw with its "
    "eq. (7) took 10-14 ms per network where the draw alone takes 0.8 ms. That was most of "
    "the step (eq. (9) twice, the RZF Grams) and "
    "of the reset's eq. (7) (8 draws), the cause not found before. The SINR of eq. (9) is now "
    "one `[K, M N] x [M N, K]` matmul, eq. (7) uses the N x N transmit covariances "
    "`R_n = sum_j rho_nj w_nj w_nj^H` (`T_nk = h_nk^H R_n h_nk`, dots that read the channels "
    "once) averaged over the draws before the one `[M, K] x [K, M]` product, the per-AP RZF "
    "Grams are a batched dot. (2) The cluster RZF factors one K x K system per cluster of at "
    "least two APs (M / 2 root slots, a segment sum of the packed per-AP Grams by the "
    "component root) instead of one per AP, and each AP solves its N = 4 right-hand sides "
    "(`(A_C^{-1} conj(H_m))^*`) instead of K, with blocked triangular solves (8-row blocks). "
    "(3) The MMSE coefficient of `R = beta I` in closed form (3 ms per reset at 16 networks "
    "through the N x N Cholesky). (4) The NumPy loop above 64 networks is timed on 64 of "
    "them; a JAX point needs at most half the free memory.",
)


def reading(res):
    out = []
    jx = [r for r in res["jax_env"] if "steps_per_s" in r]
    nps = {r["n_envs"]: r for r in res["numpy_env"]}
    if jx:
        ratios = [(r["n_envs"], r["steps_per_s"] / nps[r["n_envs"]]["steps_per_s"]) for r in jx]
        best = max(jx, key=lambda r: r["steps_per_s"])
        out.append(
            "Environment: JAX / NumPy ratio "
            + ", ".join(f"{r:.2f}x at {n}" for n, r in ratios)
            + f"; JAX peaks at {best['steps_per_s']:.3g} steps/s ({best['n_envs']} networks). "
            f"Its cost per network step goes from {1e3 * jx[0]['per_env_step_s']:.3g} ms at "
            f"{jx[0]['n_envs']} to {1e3 * jx[-1]['per_env_step_s']:.3g} ms at "
            f"{jx[-1]['n_envs']} networks (1-minute load {jx[0]['load1']:.1f} -> "
            f"{jx[-1]['load1']:.1f}); the NumPy loop's from "
            f"{1e3 * nps[jx[0]['n_envs']]['per_env_step_s']:.3g} to "
            f"{1e3 * nps[jx[-1]['n_envs']]['per_env_step_s']:.3g} ms. Both include one reset "
            "per episode (JAX: drop generation too)."
        )
    ks = res.get("kernel_split")
    if ks:
        out.append(
            f"The cluster RZF is {100 * ks['jax_cluster_rzf_s'] / ks['jax_step_s']:.0f}% of the "
            "JAX step at full cooperation: with static shapes every cluster of at least two "
            "APs is factored in a K x K system (users outside K_C masked to identity rows, "
            "M / 2 slots whatever the number of clusters), where the NumPy loop solves each "
            "cluster once in its own |K_C| x |K_C| system. The centralized references cost "
            f"{ks['jax_central_p_rzf_s'] / ks['jax_cluster_rzf_s']:.2f}x (P-RZF) and "
            f"{ks['jax_central_p_mmse_s'] / ks['jax_cluster_rzf_s']:.2f}x (P-MMSE) the cluster "
            "RZF per step."
        )
    for j in res["jax_train"]:
        ts = [t for t in res["torch_train"] if t["n_envs"] == j["n_envs"]]
        if ts:
            b = max(ts, key=lambda t: t["steps_per_s"])
            out.append(
                f"Training at {j['n_envs']} network(s): JAX {j['per_vec_step_s'] * 1e3:.3g} ms "
                f"per vectorised step vs PyTorch {b['per_vec_step_s'] * 1e3:.3g} ms "
                f"({b['threads']} thread(s); its environment loop "
                f"{b['split_per_vec_step_s']['env'] * 1e3:.3g} ms, gradient step "
                f"{b['split_per_vec_step_s']['learn'] * 1e3:.3g} ms): "
                f"{j['steps_per_s'] / b['steps_per_s']:.2f}x."
            )
    if res["skipped"]:
        out.append(
            "Skipped points: "
            + "; ".join(f"{s['part']} at {s['n_envs']}: {s['why']}" for s in res["skipped"])
            + "."
        )
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (small network, few points)")
    ap.add_argument("--out", default=None, help="markdown report")
    ap.add_argument("--sizes", default=None, help="comma list of n_envs for (a)")
    ap.add_argument("--train-sizes", default=None, help="comma list of n_envs for (b)")
    ap.add_argument("--budget-s", type=float, default=780.0, help="whole-run time budget")
    ap.add_argument("--max-point-s", type=float, default=200.0, help="largest predicted point")
    ap.add_argument(
        "--torch-threads",
        default="1",
        help="comma list of torch.set_num_threads values (default 1: on this shared 2-core "
        "machine 2 threads ran 20x slower, each op waiting for a descheduled thread)",
    )
    ap.add_argument("--report-only", default=None, metavar="JSON", help="rewrite the report")
    args = ap.parse_args(argv)
    if args.report_only:
        with open(args.report_only) as f:
            d = json.load(f)
        d["results"]["reading"] = reading(d["results"])
        out = args.out or os.path.splitext(args.report_only)[0] + ".md"
        write_report(out, d["machine"], d["setup"], d["results"], d["wall_s"])
        write_json(out, d)
        print(f"wrote {out}")
        return 0
    quick = args.quick
    out = args.out or (
        "/tmp/RESULTS_ap_cooperation_quick.md"
        if quick
        else os.path.join(ROOT, "bench", "RESULTS_ap_cooperation.md")
    )
    sizes = (
        [int(x) for x in args.sizes.split(",")]
        if args.sizes
        else ([1, 4] if quick else list(N_ENVS))
    )
    tsizes = (
        [int(x) for x in args.train_sizes.split(",")]
        if args.train_sizes
        else ([1] if quick else list(TRAIN_N_ENVS))
    )
    clock = Clock(args.budget_s, args.max_point_s)
    info = machine_info()
    info["load_start"] = os.getloadavg()
    env, params = make_env(quick)
    setup = dict(
        quick=quick,
        M=env.M,
        N=env.N,
        K=env.K,
        tau_p=env.tau_p,
        Q=env.Q,
        episode_steps=env.episode_steps,
        metric_samples=env.metric_samples,
        sizes=sizes,
        train_sizes=tsizes,
        torch_threads=args.torch_threads,
        trainer=TRAINER,
        pool=POOL,
        budget_s=args.budget_s,
        max_point_s=args.max_point_s,
        rates_drops=4 if quick else 8,
        rates_steps=2 if quick else 3,
    )
    res = {
        "jax_env": [],
        "numpy_env": [],
        "jax_train": [],
        "torch_train": [],
        "skipped": [],
    }
    setups = drop_pool(env, POOL)
    res["env_parity"] = env_parity(env, params)
    print("env parity", res["env_parity"], f"[{clock.left():.0f} s left]", flush=True)
    try:
        import torch  # noqa: F401

        has_torch = True
    except ImportError:
        has_torch = False
        res["skipped"].append({"part": "training", "n_envs": "all", "why": "torch not installed"})
    if has_torch:
        res["net_parity"] = net_parity(env, params, setups)
        print("net parity", res["net_parity"], flush=True)
    threads = tuple(int(x) for x in args.torch_threads.split(","))
    env_points(env, params, setups, [n for n in sizes if n <= EARLY], clock, res, quick)
    if has_torch:
        train_points(env, params, setups, tsizes[:1], clock, res, quick, threads)
    if clock.left() > 60:
        res["kernel_split"] = kernel_split(env, params, setups, n_envs=4)
        print("split", res["kernel_split"], flush=True)
    if has_torch:
        train_points(env, params, setups, tsizes[1:], clock, res, quick, threads)
    if clock.left() > 60:
        res["central_rates"] = central_rates(
            env, params, setup["rates_drops"], setup["rates_steps"]
        )
        print("rates", res["central_rates"], flush=True)
    env_points(env, params, setups, [n for n in sizes if n > EARLY], clock, res, quick)
    res["reading"] = reading(res)
    info["load_end"] = os.getloadavg()
    wall = time.perf_counter() - clock.t0
    write_report(out, info, setup, res, wall)
    write_json(out, {"machine": info, "setup": setup, "results": res, "wall_s": wall})
    print(f"wrote {out} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
