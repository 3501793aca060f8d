#!/usr/bin/env python
"""Benchmark: MADDPG training throughput, jitted JAX trainer vs a PyTorch reference.

Usage (from the repository root; needs the ``bench`` extra, i.e. torch)::

    python bench/bench_offpolicy.py [--quick] [--out bench/RESULTS_offpolicy.md]

Scenario and trainer: the default ``power_control`` environment (uplink, continuous powers,
16 APs x 2 antennas, 6 UEs = 6 agents, closed-form distributed MR SE, 5 steps per setup) and
the default ``maddpg`` configuration (shared actor and critic MLPs 64-64 with a one-hot agent
id, critic on the global state and the joint actions, batch 128, one gradient step per
vectorised environment step, buffer 20000, learning after 500 transitions) with ``n_envs``
varied. Throughput = environment steps per second of the whole training loop in steady state
(acting, environment step, buffer insert and the gradient steps, learning on every step).

* JAX: ``algorithms.make_train("maddpg", cfg, env, env_params)``; ``jax.jit(trainer.update)
  .lower(state).compile()`` (timed apart), then calls of the compiled update (each
  ``updates_per_chunk x n_steps`` vectorised steps, fed the state the previous call returned,
  ``block_until_ready``) until every step of a call learns, one more warm-up call, then timed
  calls; median.
* PyTorch: ``bench/torch_maddpg.py`` (eager, CPU) over ``n_envs`` NumPy environments
  (``bench/numpy_power_control.py``) stepped in a Python loop; warm-up until the buffer holds
  ``learning_starts`` transitions and a few learning steps, then timed blocks of vectorised
  steps (median), capped in time; ``torch.set_num_threads(os.cpu_count())`` and 1 thread.

Setups: both sides draw their episodes' setups from one pool of ``POOL`` setups generated once
by the JAX generator (the environment's ``setup_pool`` option: ``params.setups``); the NumPy
environments get the same arrays. Every reset, on either side, picks one at random and computes
the estimation and MR statistics, observations and SEs itself: the same work per reset.

Checked before timing: the NumPy environment's reward equals the JAX environment's on the same
setups and actions (``rtol 1e-4``, asserted); the JAX parameters copied into the torch networks
give the same actions, Q values, losses and parameters after one gradient step. Where the time
goes: in the same run, the JAX acting + environment steps alone and the gradient steps alone
(each a compiled ``lax.scan``), and the PyTorch loop's own split of its time.
"""

from __future__ import annotations

import argparse
import functools
import json
import os
import statistics
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)

from bench._common import (  # noqa: E402
    best_per_n_envs,
    bullets,
    compact,
    compile_update,
    describe_machine,
    machine_lines,
    mlp_layers,
    ms,
    peak_rss_gib,
    time_compiled,
    timed_update,
    torch_info,
    write_json,
    write_markdown,
)

SCENARIO = "power_control"
ALGORITHM = "maddpg"
N_ENVS = (1, 4, 16, 64, 256, 1024)
N_STEPS = 10  # vectorised environment steps per update
POOL = 4096  # setups drawn once (the JAX environment's setup_pool), shared with NumPy
POOL_SEED = 11  # its setup_pool_seed
# hyper-parameters shared by the two trainers (taken from the JAX config)
SHARED = (
    "buffer_size",
    "batch_size",
    "learning_starts",
    "gradient_steps",
    "gamma",
    "tau",
    "max_grad_norm",
    "hidden",
    "lr_actor",
    "lr_critic",
    "noise_start",
    "noise_end",
    "noise_decay_steps",
    "random_steps",
)


# ---- set-up ---------------------------------------------------------------------------------


# the variant the NumPy environment implements (keys the scenario lacks are left out)
PINNED = {"link": "uplink", "action": "continuous", "lsfd": False}


def env_config(pool=POOL):
    """The scenario's configuration: its defaults, with the ``PINNED`` keys that differ from
    them set, and the pool of ``pool`` setups (``setup_pool``, ``setup_pool_seed``)."""
    from cfmimo_jax import envs

    defaults = envs.default_config(SCENARIO)
    cfg = {k: v for k, v in PINNED.items() if k in defaults and defaults[k] != v}
    if pool:
        cfg.update(setup_pool=int(pool), setup_pool_seed=POOL_SEED)
    return cfg


@functools.cache
def jax_env():
    """``(env, env_params)`` of ``env_config()``, made once per process (the pool is drawn
    once: every point, the parity checks and the NumPy environments share it)."""
    from cfmimo_jax import envs

    return envs.make(SCENARIO, env_config())


def chunk_updates(n_envs):
    """Updates per compiled call: 100 vectorised steps up to 64 environments, 50 at 256, 20
    beyond (a multiple of the 5-step episodes, about 0.3-3 s a call)."""
    return 10 if n_envs <= 64 else 5 if n_envs <= 256 else 2


def build_jax(n_envs):
    import algorithms

    env, env_params = jax_env()
    upc = chunk_updates(n_envs)
    cfg = dict(n_envs=int(n_envs), n_steps=N_STEPS, n_updates=upc, updates_per_chunk=upc)
    return env, env_params, algorithms.make_train(ALGORITHM, cfg, env, env_params)


def torch_config(trainer):
    """``TorchMADDPGConfig`` with the JAX trainer's hyper-parameters."""
    from bench.torch_maddpg import TorchMADDPGConfig

    c = trainer.config
    if c.centralised_actor or not c.shared_parameters or c.target_period or c.reward != "local":
        raise ValueError("the torch reference implements MADDPG, shared parameters, Polyak tau")
    if not trainer.uses_global_state:
        raise ValueError("the torch reference's critic takes the environment's global state")
    kw = {name: getattr(c, name) for name in SHARED}
    kw["hidden"] = tuple(kw["hidden"])
    kw["action_reg"] = float(c.values.get("action_reg", 0.0))
    return TorchMADDPGConfig(n_envs=c.n_envs, **kw)


def numpy_env_kwargs(env, env_params):
    """Keyword arguments of ``PowerControlNumPy`` for ``env`` (uplink, continuous):
    ``PowerControlNumPy.env_kwargs``."""
    from bench.numpy_power_control import PowerControlNumPy

    return PowerControlNumPy.env_kwargs(env, env_params)


def _action_box(env):
    """``(low, high)`` of the per-agent action ``Box`` (one feature)."""
    return float(np.min(env.action_space.low)), float(np.max(env.action_space.high))


def pool_arrays(env_params):
    """The JAX environment's pool of setups (``env_params.setups``, drawn by the JAX generator)
    as the NumPy arrays ``PowerControlNumPy`` takes: the same setups on both sides."""
    return {k: np.asarray(getattr(env_params.setups, k)) for k in ("R", "pilot", "D", "gain_db")}


def pool_index(setups, state):
    """The pool entry of each JAX state (the one whose gains and ``R`` equal the state's
    exactly; asserted unique): ``[n]`` int."""
    g, R = np.asarray(state.gain_db), np.asarray(state.R)
    out = []
    for j in range(g.shape[0]):
        hit = np.flatnonzero(
            np.all(setups["gain_db"] == g[j], axis=(1, 2))
            & np.all(setups["R"] == R[j], axis=(1, 2, 3, 4))
        )
        if hit.size != 1:
            raise AssertionError(f"reset {j}: {hit.size} pool entries match its setup")
        out.append(int(hit[0]))
    return np.array(out)


def machine_info():
    """:func:`bench._common.describe_machine` of the trainer's, environment's and benchmark's files,
    with PyTorch's version and threads."""
    files = [
        "algorithms/ddpg.py",
        "algorithms/offpolicy.py",
        "algorithms/replay.py",
        "algorithms/networks.py",
        "cfmimo_jax/envs",
        "cfmimo_jax/se.py",
        "cfmimo_jax/setup.py",
        "cfmimo_jax/estimation.py",
        "bench/numpy_power_control.py",
        "bench/torch_maddpg.py",
        "bench/bench_offpolicy.py",
    ]
    return describe_machine(files, after_jax=torch_info())


# ---- parity checks --------------------------------------------------------------------------


def env_parity(n_setups=16, seed=1):
    """The NumPy environment against the JAX one on the same setups and actions: ``n_setups``
    JAX resets (each picks a pool setup), the NumPy environment reset on the same pool entry;
    rewards (asserted, ``rtol 1e-4``), observations, global states and final observations."""
    import jax
    import jax.numpy as jnp

    from bench.numpy_power_control import PowerControlNumPy

    env, ep = jax_env()
    setups = pool_arrays(ep)
    keys = jax.random.split(jax.random.PRNGKey(seed), n_setups)
    obs, st = jax.jit(jax.vmap(env.reset, (0, None)))(keys, ep)
    index = pool_index(setups, st)
    npe = PowerControlNumPy(setups, **numpy_env_kwargs(env, ep))
    step = jax.jit(env.step)
    gstate = jax.jit(env.global_state)
    rng = np.random.default_rng(seed)
    K = env.n_agents
    lo, hi = _action_box(env)
    r_np, r_jax = [], []
    obs_abs = state_abs = 0.0
    for i in range(n_setups):
        o = npe.reset(int(index[i]))
        s = jax.tree.map(lambda x, i=i: x[i], st)
        obs_abs = max(obs_abs, float(np.max(np.abs(o - np.asarray(obs[i])))))
        state_abs = max(
            state_abs, float(np.max(np.abs(npe.global_state() - np.asarray(gstate(s)))))
        )
        for t in range(env.episode_steps):
            a = rng.uniform(lo, hi, (K, 1))
            if t == 1:  # the bounds of the action space (and beyond: clipped by both)
                a[0], a[1], a[2], a[3] = lo, hi, hi + 0.5 * (hi - lo), lo - 0.5 * (hi - lo)
            a = a.astype(np.float32)
            o_j, s_next, rew, done, info = step(jax.random.PRNGKey(t), s, jnp.asarray(a), ep)
            o_n, rew_n, done_n, info_n = npe.step(a)
            r_np.append(rew_n)
            r_jax.append(np.asarray(rew))
            if bool(done) != bool(done_n):
                raise AssertionError(f"done differs at setup {i} step {t}")
            fin = info_n["final_obs"] if done_n else o_n
            obs_abs = max(obs_abs, float(np.max(np.abs(fin - np.asarray(info["final_obs"])))))
            if done_n:
                fs = info_n["final_state"] - np.asarray(info["final_global_state"])
                state_abs = max(state_abs, float(np.max(np.abs(fs))))
            else:
                gs = npe.global_state() - np.asarray(gstate(s_next))
                state_abs = max(state_abs, float(np.max(np.abs(gs))))
                obs_abs = max(obs_abs, float(np.max(np.abs(o_n - np.asarray(o_j)))))
            s = s_next
    r_np, r_jax = np.stack(r_np), np.stack(r_jax)
    np.testing.assert_allclose(r_np, r_jax, rtol=1e-4, err_msg="NumPy vs JAX reward")
    return {
        "n_rewards": int(r_np.shape[0]),
        "pool_entries": len(set(index.tolist())),
        "reward_max_rel": float(np.max(np.abs(r_np - r_jax) / np.abs(r_jax))),
        "reward_mean": float(np.mean(r_jax)),
        "obs_max_abs": obs_abs,
        "state_max_abs": state_abs,
    }


def net_parity(seed=0):
    """JAX parameters copied into the torch networks: actions, Q values, one gradient step
    (losses and every parameter after it) on the same minibatch of real transitions."""
    from bench.torch_maddpg import TorchMADDPG

    env, ep, trainer = build_jax(4)
    setups = pool_arrays(ep)
    cfg = torch_config(trainer)
    tm = TorchMADDPG(cfg, setups, numpy_env_kwargs(env, ep), seed=seed)
    for _ in range(60):  # random then noisy-actor transitions (no learning yet: < 500)
        tm.step()
    return maddpg_parity(
        trainer, tm, cfg, seed, lr={"actor": cfg.lr_actor, "critic": cfg.lr_critic}
    )


MADDPG_NETS = ("actor", "critic", "actor_target", "critic_target")


def maddpg_parity(trainer, tm, cfg, seed=0, lr=None):
    """The initial parameters of the JAX ``maddpg`` learner of ``trainer`` copied into the
    torch networks of ``tm`` (a ``TorchMADDPG`` with config ``cfg`` whose buffer holds a
    minibatch): max abs differences of the actions and Q values on a minibatch of its
    transitions, the critic and actor losses of one gradient step on it (``trainer.learn`` vs
    ``tm.learn``) and, per network of ``MADDPG_NETS``, the largest parameter difference after
    that step and the largest move of the step (with ``lr``, ``{"actor": .., "critic": ..}``,
    each network's learning rate next to them)."""
    import jax
    import jax.numpy as jnp
    import torch

    from algorithms.replay import Transition
    from bench.torch_maddpg import load_params, module_params

    batch = tm.buffer.sample(np.random.default_rng(seed), cfg.batch_size)
    params, opt_state = trainer.init_learner(jax.random.PRNGKey(seed + 7))
    for name in MADDPG_NETS:
        load_params(getattr(tm, name), mlp_layers(params[name]))
    tm.opt_actor = torch.optim.Adam(tm.actor.parameters(), lr=cfg.lr_actor)
    tm.opt_critic = torch.optim.Adam(tm.critic.parameters(), lr=cfg.lr_critic)
    jb = {k: jnp.asarray(v.numpy()) for k, v in batch.items()}
    tr = Transition(
        obs=jb["obs"],
        action=jb["action"],
        reward=jb["reward"],
        next_obs=jb["next_obs"],
        terminated=jb["terminated"] > 0.5,
        state=jb["state"],
        next_state=jb["next_state"],
    )
    u_j = np.asarray(jax.jit(trainer.policy_u)(params["actor"], tr.obs))
    q_j = np.asarray(jax.jit(trainer.q_values)(params["critic"], tr.state, tr.action))
    with torch.no_grad():
        u_t = torch.tanh(tm.actor(batch["obs"])).numpy()
        q_t = tm.q_values(tm.critic, batch["state"], batch["action"]).numpy()
    new, _, m_j = jax.jit(trainer.learn)(params, opt_state, tr, jax.random.PRNGKey(0), jnp.int32(1))
    m_t = tm.learn(batch)
    out = {
        "n_params": int(sum(p.numel() for p in (*tm.actor.parameters(), *tm.critic.parameters()))),
        "u_max_abs": float(np.max(np.abs(u_j - u_t))),
        "q_max_abs": float(np.max(np.abs(q_j - q_t))),
        "q_scale": float(np.max(np.abs(q_j))),
        "critic_loss": float(m_j["critic_loss"]),
        "critic_loss_abs": abs(float(m_j["critic_loss"]) - m_t["critic_loss"]),
        "actor_loss": float(m_j["actor_loss"]),
        "actor_loss_abs": abs(float(m_j["actor_loss"]) - m_t["actor_loss"]),
    }
    for name in MADDPG_NETS:
        lj, lt = mlp_layers(new[name]), module_params(getattr(tm, name))
        diff = max(
            float(np.max(np.abs(a - b)))
            for pj, pt in zip(lj, lt, strict=True)
            for a, b in zip(pj, pt, strict=True)
        )
        moved = max(
            float(np.max(np.abs(a - b)))
            for pj, p0 in zip(lj, mlp_layers(params[name]), strict=True)
            for a, b in zip(pj, p0, strict=True)
        )
        out[f"{name}_max_abs_after_step"] = diff
        out[f"{name}_max_move"] = moved
        if lr is not None:
            out[f"{name}_lr"] = lr[name.split("_")[0]]
    return out


# ---- timing: JAX ----------------------------------------------------------------------------


def _time_compiled(fn, args, repeats):
    """``(compile_s, median_s)`` of ``jax.jit(fn)`` on ``args`` (one warm-up call,
    ``repeats`` timed calls; :func:`bench._common.time_compiled`)."""
    compile_s, runs = time_compiled(fn, args, repeats)
    return compile_s, statistics.median(runs)


def jax_env_alone(trainer, rs, n_vec_steps, repeats):
    """Seconds per vectorised step of acting (actor + noise) and ``env.step_batch`` alone, no
    buffer, no learning (a compiled ``lax.scan`` from the runner state's environments)."""
    import jax
    import jax.numpy as jnp

    env, ep, n = trainer.env, trainer.env_params, trainer.config.n_envs

    def loop(params, env_state, obs, env_step, key):
        def body(carry, k):
            es, ob, t = carry
            k_a, k_e = jax.random.split(k)
            action, _, _ = trainer.explore(params, ob, k_a, t)
            ob2, es2, r, _, _ = env.step_batch(jax.random.split(k_e, n), es, action, ep)
            return (es2, ob2.astype(jnp.float32), t + 1), jnp.mean(r)

        return jax.lax.scan(body, (env_state, obs, env_step), jax.random.split(key, n_vec_steps))

    args = (rs.params, rs.env_state, rs.obs, rs.env_step, jax.random.PRNGKey(1))
    c, t = _time_compiled(loop, args, repeats)
    return {"compile_s": c, "per_vec_step_s": t / n_vec_steps}


def jax_learn_alone(trainer, rs, n_grad_steps, repeats):
    """Seconds per gradient step alone (uniform minibatch from the runner state's buffer and
    ``trainer.learn``, a compiled ``lax.scan``)."""
    import jax

    from algorithms.replay import replay_sample

    bs = trainer.config.batch_size

    def loop(params, opt_state, buffer, grad_step, key):
        def body(carry, k):
            p, o, g = carry
            k_s, k_l = jax.random.split(k)
            p, o, m = trainer.learn(p, o, replay_sample(buffer, k_s, bs), k_l, g + 1)
            return (p, o, g + 1), m["critic_loss"]

        return jax.lax.scan(
            body, (params, opt_state, grad_step), jax.random.split(key, n_grad_steps)
        )

    args = (rs.params, rs.opt_state, rs.buffer, rs.grad_step, jax.random.PRNGKey(2))
    c, t = _time_compiled(loop, args, repeats)
    return {"compile_s": c, "per_grad_step_s": t / n_grad_steps}


def time_jax(n_envs, repeats, max_warm_calls=12, seed=0):
    _, _, trainer = build_jax(n_envs)
    c = trainer.config
    rs, compiled, compile_s = compile_update(trainer, seed)
    vec_steps = c.n_steps * c.updates_per_chunk
    steps = n_envs * vec_steps
    warm, metrics = [], []

    def call(rs):
        rs, dt, m = timed_update(compiled, rs, metrics)
        return rs, dt, float(np.min(m["learning"]))

    learning = 0.0
    while learning < 1.0 and len(warm) < max_warm_calls:  # fill the buffer to learning_starts
        rs, dt, learning = call(rs)
        warm.append(dt)
    rs, dt, learning = call(rs)  # one more warm-up call, learning on every step
    warm.append(dt)
    runs = []
    for _ in range(repeats):
        rs, dt, learning = call(rs)
        runs.append(dt)
    t = statistics.median(runs)
    out = {
        "n_envs": n_envs,
        "updates_per_chunk": c.updates_per_chunk,
        "vec_steps_per_call": vec_steps,
        "env_steps_per_call": steps,
        "compile_s": compile_s,
        "warm_s": warm,
        "runs_s": runs,
        "steps_per_s": steps / t,
        "per_vec_step_s": t / vec_steps,
        "learning_in_timed_calls": learning,
        "load1": os.getloadavg()[0],
        "metrics": metrics,
        "finite": bool(all(np.isfinite(v) for mm in metrics for v in mm.values())),
    }
    # where the time goes, from the warm runner state (buffer full enough to learn)
    out["env_alone"] = jax_env_alone(trainer, rs, vec_steps, repeats)
    out["learn_alone"] = jax_learn_alone(trainer, rs, max(20, vec_steps // 2), repeats)
    return out


def env_split(n_envs, setups, env_kwargs, repeats=5, n_numpy=300, seed=0):
    """Seconds per environment of a step without reset and of a reset: JAX (``env.step_env``
    and ``env.reset`` vmapped over ``n_envs``; the reset computes the statistics of a pool
    setup, and for reference the reset of ``setup_pool = 0``, which generates it) and NumPy (one
    ``PowerControlNumPy``; the reset computes the statistics of a pool setup)."""
    import jax
    import jax.numpy as jnp

    from bench.numpy_power_control import PowerControlNumPy
    from cfmimo_jax import envs

    env, ep = jax_env()
    keys = jax.random.split(jax.random.PRNGKey(seed), n_envs)
    _, st = jax.jit(jax.vmap(env.reset, (0, None)))(keys, ep)
    mid = 0.5 * sum(_action_box(env))
    act = jnp.full((n_envs, env.n_agents, 1), mid, jnp.float32)
    step = jax.vmap(env.step_env, (0, 0, 0, None))
    _, t_step = _time_compiled(lambda k, s: step(k, s, act, ep), (keys, st), repeats)
    reset = jax.vmap(env.reset, (0, None))
    _, t_reset = _time_compiled(lambda k: reset(k, ep), (keys,), repeats)
    env_g, ep_g = envs.make(SCENARIO, env_config(pool=0))  # every reset generates its setup
    reset_g = jax.vmap(env_g.reset, (0, None))
    _, t_gen = _time_compiled(lambda k: reset_g(k, ep_g), (keys,), repeats)
    kw = dict(env_kwargs, episode_steps=10**9)  # steps without the automatic reset
    npe = PowerControlNumPy(setups, seed=seed, **kw)
    npe.reset()
    a = np.full((env.n_agents, 1), mid, np.float32)
    t0 = time.perf_counter()
    for _ in range(n_numpy):
        npe.reset()
    np_reset = (time.perf_counter() - t0) / n_numpy
    t0 = time.perf_counter()
    for _ in range(n_numpy):
        npe.step(a)
        npe.global_state()  # as the trainer's loop asks for it after every step
    np_step = (time.perf_counter() - t0) / n_numpy
    return {
        "n_envs": n_envs,
        "jax_step_s": t_step / n_envs,
        "jax_reset_s": t_reset / n_envs,
        "jax_reset_generate_s": t_gen / n_envs,
        "numpy_step_s": np_step,
        "numpy_reset_s": np_reset,
        "episode_steps": env.episode_steps,
    }


# ---- timing: PyTorch ------------------------------------------------------------------------


def torch_blocks(tm, cfg, max_s, blocks=3, warm_learn=3):
    """Time a ``TorchMADDPG`` ``tm`` (config ``cfg``): steps until its buffer holds
    ``learning_starts`` transitions, ``warm_learn`` learning steps timed one by one, then up to
    ``blocks`` timed blocks of vectorised steps, each sized from the fastest of those to about
    ``max_s / blocks`` seconds (1 to 500 steps), stopping once the blocks exceed ``max_s``;
    ``tm.timing`` is zeroed before the blocks. Returns ``(warm_s, warm_learn_step_s,
    block_steps, runs_s, metrics, steps_done)``, ``metrics`` the last warm-up step's and each
    block's last step's."""
    t0 = time.perf_counter()
    m0 = {}
    while tm.buffer.size < max(cfg.learning_starts, 1):
        m0 = tm.step()
    first = []
    for _ in range(warm_learn):
        t1 = time.perf_counter()
        m0 = tm.step()
        first.append(time.perf_counter() - t1)
    warm_s = time.perf_counter() - t0
    block_steps = int(max(1, min(500, (max_s / blocks) // min(first))))
    for k in tm.timing:
        tm.timing[k] = 0.0
    runs, metrics, done = [], [m0], 0
    for _ in range(blocks):
        t1 = time.perf_counter()
        for _ in range(block_steps):
            m = tm.step()
        runs.append(time.perf_counter() - t1)
        metrics.append(m)
        done += block_steps
        if sum(runs) > max_s:
            break
    return warm_s, first, block_steps, runs, metrics, done


def time_torch(n_envs, threads, setups, env_kwargs, max_s, blocks=3, seed=0, warm_learn=3):
    import torch

    from bench.torch_maddpg import TorchMADDPG

    torch.set_num_threads(threads)
    _, _, trainer = build_jax(n_envs)
    cfg = torch_config(trainer)
    tm = TorchMADDPG(cfg, setups, env_kwargs, seed=seed)
    warm_s, first, block_steps, runs, metrics, done = torch_blocks(
        tm, cfg, max_s, blocks, warm_learn
    )
    t = statistics.median(runs)
    return {
        "n_envs": n_envs,
        "threads": threads,
        "warm_s": warm_s,
        "warm_learn_step_s": first,
        "vec_steps_per_block": block_steps,
        "runs_s": runs,
        "steps_per_s": n_envs * block_steps / t,
        "per_vec_step_s": t / block_steps,
        "split_per_vec_step_s": {k: v / done for k, v in tm.timing.items()},
        "load1": os.getloadavg()[0],
        "metrics": metrics,
        "learning": all(mm["learning"] == 1.0 for mm in metrics),
    }


# ---- report ---------------------------------------------------------------------------------


def _rest(x):
    """The JAX remainder: a difference of medians taken apart, noisy on a shared machine."""
    return "-" if x is None else (f"{1e3 * x:.3g}" if x >= 0 else f"<0 ({1e3 * x:.2g})")


def _us(x):
    return "-" if x is None else f"{1e6 * x:.3g}"


def analyse(res, cores):
    """Headline lines, the where-the-time-goes rows and the reading, from the numbers."""
    jx = {r["n_envs"]: r for r in res["jax"]}
    best = {r["n_envs"]: r for r in res["torch_best"]}
    head, split, reading = [], [], []
    for n in sorted(set(jx) & set(best)):
        head.append(
            f"{n} environment(s): JAX {compact(jx[n]['steps_per_s'])} env steps/s vs PyTorch "
            f"{compact(best[n]['steps_per_s'])} ({best[n]['threads']} thread(s)): "
            f"**{jx[n]['steps_per_s'] / best[n]['steps_per_s']:.2f}x**"
        )
    bj = max(jx.values(), key=lambda r: r["steps_per_s"]) if jx else None
    bt = max(best.values(), key=lambda r: r["steps_per_s"]) if best else None
    ratio = None
    if bj and bt:
        ratio = bj["steps_per_s"] / bt["steps_per_s"]
        head.append(
            f"best vs best: JAX {compact(bj['steps_per_s'])} env steps/s ({bj['n_envs']} envs) vs "
            f"PyTorch {compact(bt['steps_per_s'])} ({bt['n_envs']} envs, {bt['threads']} "
            "thread(s)): "
            f"**{ratio:.2f}x** (target >= 10x: {'met' if ratio >= 10 else 'not met'})"
        )
    for n in sorted(set(jx) | set(best)):
        j, t = jx.get(n), best.get(n)
        row = {"n_envs": n}
        if j is not None:
            row.update(
                jax_total_s=j["per_vec_step_s"],
                jax_env_s=j["env_alone"]["per_vec_step_s"],
                jax_learn_s=j["learn_alone"]["per_grad_step_s"] * j.get("gradient_steps", 1),
            )
            row["jax_rest_s"] = row["jax_total_s"] - row["jax_env_s"] - row["jax_learn_s"]
        if t is not None:
            sp = t["split_per_vec_step_s"]
            row.update(
                torch_total_s=t["per_vec_step_s"],
                torch_act_s=sp["act_s"],
                torch_env_s=sp["env_s"],
                torch_buffer_s=sp["buffer_s"],
                torch_learn_s=sp["learn_s"],
                torch_threads=t["threads"],
            )
        split.append(row)
    rows = {r["n_envs"]: r for r in split}
    if bj and bt:
        nb = bj["n_envs"]
        r = rows[nb]
        env_ceiling_j = nb / r["jax_env_s"]
        reading.append(
            f"JAX at its best point ({nb} environments): a vectorised step takes "
            f"{ms(r['jax_total_s'])} ms, of which acting + the environment step alone take "
            f"{ms(r['jax_env_s'])} ms ({_us(r['jax_env_s'] / nb)} us per environment step) and "
            f"the gradient step alone {ms(r['jax_learn_s'])} ms; the rest (buffer insert, "
            f"the learning `cond`, metrics) {ms(max(r['jax_rest_s'], 0.0))} ms. Its ceiling "
            f"with free gradient steps would be {compact(env_ceiling_j)} env steps/s."
        )
        nt = bt["n_envs"]
        rt = rows[nt]
        per_env_t = rt["torch_env_s"] / nt
        reading.append(
            f"PyTorch at its best point ({nt} environments, {bt['threads']} thread(s)): a "
            f"vectorised step takes {ms(rt['torch_total_s'])} ms: the Python loop over the "
            f"NumPy environments {ms(rt['torch_env_s'])} ms ({_us(per_env_t)} us per "
            f"environment step, a reset every {res['setup']['episode_steps']} steps included), "
            f"acting {ms(rt['torch_act_s'])} ms, buffer insert {ms(rt['torch_buffer_s'])} ms, "
            f"the gradient step (sampling included) {ms(rt['torch_learn_s'])} ms. However many "
            f"environments, the NumPy loop caps it at {compact(1 / per_env_t)} env steps/s."
        )
        small = min(n for n in rows if "jax_learn_s" in rows[n] and "torch_learn_s" in rows[n])
        rs_ = rows[small]
        reading.append(
            f"Gradient steps: JAX {ms(rs_['jax_learn_s'])} ms vs PyTorch "
            f"{ms(rs_['torch_learn_s'])} ms per step (at {small} environment(s)), "
            f"{rs_['torch_learn_s'] / rs_['jax_learn_s']:.2f}x; with few environments the "
            "gradient step is the whole cost on both sides, so the ratio there is about this "
            "ratio."
        )
        by = {(t["n_envs"], t["threads"]): t for t in res["torch"]}
        slow = [
            by[(n, cores)]["steps_per_s"] / by[(n, 1)]["steps_per_s"]
            for n in sorted({t["n_envs"] for t in res["torch"]})
            if cores > 1 and (n, cores) in by and (n, 1) in by
        ]
        if slow and max(slow) < 1.0:
            reading.append(
                f"PyTorch with torch.set_num_threads({cores}) ran at {min(slow):.3f}-"
                f"{max(slow):.2f}x its 1-thread rate at every point (the machine was shared: "
                "1-minute load in the table; OpenMP parallel regions wait for a thread another "
                "process has descheduled, and every gradient step is dozens of small parallel "
                "ops). The ratios use the faster setting, 1 thread; quoting JAX against the "
                f"{cores}-thread column would be an artefact of the shared machine."
            )
        es = res.get("env_split")
        if es:
            T = es["episode_steps"]
            j_env = es["jax_step_s"] + es["jax_reset_s"] / T
            n_env = es["numpy_step_s"] + es["numpy_reset_s"] / T
            pooled = bool(res["setup"].get("jax_setup_pool"))
            what = "a pool setup's statistics" if pooled else "it generates the setup"
            gen = es.get("jax_reset_generate_s")
            gen_txt = (
                ""
                if gen is None
                else f" (generating the setup as well, `setup_pool = 0`: {_us(gen)} us per reset,"
                f" {_us(es['jax_step_s'] + gen / T)} us per environment step)"
            )
            reading.append(
                f"The environments alone (at {es['n_envs']} JAX environments): JAX "
                f"{_us(es['jax_step_s'])} us per step + {_us(es['jax_reset_s'])} us per reset "
                f"(one per {T} steps; {what}) = {_us(j_env)} us per environment "
                f"step, the reset {100 * es['jax_reset_s'] / T / j_env:.0f}% of it{gen_txt}; "
                f"NumPy {_us(es['numpy_step_s'])} + {_us(es['numpy_reset_s'])} / {T} = "
                f"{_us(n_env)} us ({n_env / j_env:.1f}x the JAX time; its setups come from "
                "the pool)."
            )
        ceil_ratio = env_ceiling_j * per_env_t
        shares_j = (
            f"acting + environment {100 * r['jax_env_s'] / r['jax_total_s']:.0f}%, gradient "
            f"step {100 * r['jax_learn_s'] / r['jax_total_s']:.0f}%, rest "
            f"{100 * max(r['jax_rest_s'], 0.0) / r['jax_total_s']:.0f}%"
        )
        shares_t = (
            f"environment loop {100 * rt['torch_env_s'] / rt['torch_total_s']:.0f}%, gradient "
            f"step {100 * rt['torch_learn_s'] / rt['torch_total_s']:.0f}%"
        )
        verdict = "met" if ratio >= 10 else "not met"
        reading.append(
            f"Target >= 10x best vs best: {verdict} ({ratio:.2f}x). Bound: with more "
            "environments the gradient step (one per vectorised step) is amortised and both "
            "loops tend to their environment-only ceilings, whose ratio is "
            f"{ceil_ratio:.1f}x here (JAX {compact(env_ceiling_j)} env steps/s with acting, "
            "PyTorch "
            f"{compact(1 / per_env_t)} for its NumPy loop alone). At the best points the time "
            f"splits into: JAX {shares_j}; PyTorch {shares_t}."
        )
        if es and ratio < 10:
            T = es["episode_steps"]
            j_env = es["jax_step_s"] + es["jax_reset_s"] / T
            n_env = es["numpy_step_s"] + es["numpy_reset_s"] / T
            pooled = bool(res["setup"].get("jax_setup_pool"))
            env_ratio = n_env / j_env
            cap = (
                "short of 10x"
                if env_ratio < 10
                else "so the gap to 10x is the gradient step and the rest"
            )
            reading.append(
                "The environments alone, "
                + ("the same work per reset on both sides (pool setups): " if pooled else "")
                + f"NumPy {_us(n_env)} us vs JAX {_us(j_env)} us per environment step, "
                f"{env_ratio:.1f}x: at large n_envs both loops are bound by their "
                "environments, so even with free gradient steps and nothing else the JAX loop "
                f"would run about {env_ratio:.0f}x the NumPy loop (timed apart, the same "
                f"work), {cap}. Of the JAX environment's time the reset takes "
                f"{100 * es['jax_reset_s'] / T / j_env:.0f}% ({_us(es['jax_reset_s'])} us, one "
                f"per {T} steps: "
                + (
                    "the estimation and MR statistics of the picked setup"
                    if pooled
                    else "the setup generation and its statistics"
                )
                + f"), the step {_us(es['jax_step_s'])} us."
            )
            if per_env_t < 0.8 * n_env:
                reading.append(
                    f"PyTorch's fastest point ({nt} environments) ran its NumPy loop at "
                    f"{_us(per_env_t)} us per environment step, faster than the same "
                    f"environment timed alone at the end of the run ({_us(n_env)} us): on this "
                    "shared machine a point's rate moves with the other jobs' load, so the "
                    "best-vs-best ratio depends on which points caught a quieter moment."
                )
        if r["jax_rest_s"] > 0.2 * r["jax_total_s"]:
            loads = [j["load1"] for j in res["jax"]]
            others = [rows[n]["jax_rest_s"] for n in rows if n != nb and "jax_rest_s" in rows[n]]
            span = (
                f"; at the other points it came out {ms(min(others))} to {ms(max(others))} ms"
                if others
                else ""
            )
            reading.append(
                f"JAX's rest at {nb} environments ({ms(r['jax_rest_s'])} ms, "
                f"{100 * r['jax_rest_s'] / r['jax_total_s']:.0f}% of the step) is the timed "
                "calls' median minus the two parts timed separately after them (1-minute load "
                f"{min(loads):.1f}-{max(loads):.1f} on {cores} cores), not a part timed itself"
                f"{span}. What the run measured of the JAX loop is its environment with acting "
                f"({ms(r['jax_env_s'])} ms) and its gradient step ({ms(r['jax_learn_s'])} ms)."
            )
    return head, split, reading, ratio


def _action_words(setup):
    lo, hi = setup["action_box"]
    if setup.get("power_db_range") is not None:
        return (
            f"continuous data powers in dB below p_max = {setup['p_max']:g} mW, actions in "
            f"[{lo:g}, {hi:g}] dB"
        )
    return f"continuous data powers in [{lo:g}, {hi:g}] mW"


def write_report(path, info, setup, res, wall):
    L = []
    add = L.append
    q = " --quick" if setup["quick"] else ""
    add("# Off-policy training benchmark: MADDPG, jitted JAX trainer vs a PyTorch reference")
    add("")
    add(f"Generated by `python bench/bench_offpolicy.py{q}` (total wall time {wall:.0f} s).")
    add("Raw numbers: `bench/RESULTS_offpolicy.json`.")
    add("")
    add("## What is measured")
    add("")
    add(
        "**Training throughput**: environment steps per second of the whole off-policy "
        "training loop in steady state: acting with exploration noise, the environment step "
        "of `n_envs` environments, the buffer insert and `gradient_steps` = "
        f"{setup['gradient_steps']} gradient step(s) per vectorised step on minibatches of "
        f"{setup['batch_size']} transitions, learning on every timed step. Agent steps = "
        f"environment steps x {setup['n_agents']}. Compile time is excluded from the JAX rate "
        "and reported apart."
    )
    add("")
    add(
        '- Scenario: `cfmimo_jax.envs.make("power_control")` with its defaults'
        + (f" except {setup['env_overrides']}" if setup.get("env_overrides") else "")
        + ": uplink, "
        + _action_words(setup)
        + f", {setup['n_aps']} APs x "
        f"{setup['n_antennas']} antennas, {setup['n_agents']} UEs (one agent each), "
        f"tau_p = {setup['tau_p']}, a new setup every {setup['episode_steps']} steps, reward "
        "the closed-form distributed MR sum SE (book Thm 5.4 / Cor. 5.6, a = 1); "
        f"`{setup['features']}` observations, "
        f"{setup['obs_dim']} features per agent, global state {setup['state_dim']}."
    )
    add(
        f'- Trainer: `algorithms.make_train("maddpg", ...)` defaults: actor and critic MLPs '
        f"{'-'.join(str(h) for h in setup['hidden'])} (ReLU) shared by the agents with a "
        "one-hot agent id, tanh actor mapped to the power range, critic on (global state, "
        f"joint actions), critic MSE TD target with target networks (gamma "
        f"{setup['gamma']}), actor loss with agent i's action substituted, Polyak tau "
        f"{setup['tau']}, Adam (lr {setup['lr_actor']:g} / {setup['lr_critic']:g}) after "
        f"grad-norm clipping at {setup['max_grad_norm']:g}, Gaussian exploration noise "
        f"{setup['noise_start']:g} -> {setup['noise_end']:g}, buffer "
        f"{setup['buffer_size']}, learning after {setup['learning_starts']} transitions."
    )
    add(
        "- JAX: `jax.jit(trainer.update).lower(state).compile()` is the compile time; one "
        f"call = `updates_per_chunk x n_steps` vectorised steps (n_steps = {N_STEPS}; "
        "100 vectorised steps per call up to 64 environments, 50 at 256, 20 at 1024, all "
        "inside `lax.scan`); calls are repeated until every step of a call learns, then one "
        f"more warm-up call and {setup['jax_repeats']} timed calls, each fed the state the "
        "previous one returned, `block_until_ready`; median. float32."
    )
    add(
        f"- PyTorch: `bench/torch_maddpg.py` in eager PyTorch {info['torch']} on the CPU, "
        "driven like a typical research code base: `n_envs` NumPy environments "
        "(`bench/numpy_power_control.py`, float64, one Python object per network) stepped "
        "one after another in a Python loop, the actor evaluated once per vectorised step on "
        "the batch of all environments (`torch.no_grad`), a NumPy ring buffer, minibatches "
        "sampled with NumPy and converted with `torch.from_numpy`, `torch.optim.Adam` with "
        "`clip_grad_norm_`; the actor loss evaluates critic i at agent i's substitution only "
        "(B A critic rows per gradient step), as the JAX trainer does. Warm-up until the "
        "buffer holds `learning_starts` transitions and 3 learning steps, then up to "
        f"{setup['torch_blocks']} timed blocks of vectorised "
        f"steps, each sized to about {setup['torch_max_s'] / setup['torch_blocks']:.0f} s "
        "(at most 500 steps); median. Each point is run with `torch.set_num_threads("
        f"os.cpu_count())` = {info['cores']} and with 1 thread; the reference is the faster."
    )
    if setup.get("jax_setup_pool"):
        add(
            f"- Setups, the same on both sides: a pool of {setup['pool']} setups (R, pilots, "
            "DCC serving sets, gains) drawn once with the JAX generator when the JAX "
            f"environment is made (its option `setup_pool = {setup['jax_setup_pool']}`, "
            f"`setup_pool_seed = {setup['pool_seed']}`: the arrays of `params.setups`); the "
            "NumPy environments take the same arrays (as NumPy). Every reset, on either side, "
            "picks one at random and computes everything else itself (MMSE estimation "
            "statistics, closed-form MR statistics, observations, SEs): the same work per "
            "reset. The parity check resets the NumPy environment on the pool entry each JAX "
            "reset picked."
        )
    else:
        add(
            "- NumPy environment setups: a pool of "
            f"{setup['pool']} setups (R, pilots, DCC serving sets, gains) drawn once ahead of "
            "time with the JAX generator (the JAX environment's own `reset`) and converted to "
            "NumPy; each NumPy reset picks one at random and computes everything else itself "
            "(MMSE estimation statistics, closed-form MR statistics, observations, SEs). The "
            "JAX environment generates every setup inside its compiled step (drop, correlated "
            "shadowing, pilot assignment, DCC): more work on the JAX side."
        )
    add(
        "- Ratio = JAX env steps/s / PyTorch env steps/s at the same `n_envs`; 'best vs best' "
        "compares the fastest point of each. Both run in the same process, one after the "
        "other (for each n_envs the JAX point, then the PyTorch points). Load = 1-minute "
        "load average after the point."
    )
    add("")
    L += machine_lines(
        info,
        "trainer, environment and benchmark files",
        " (a shared machine: other jobs may hold a core).",
        torch=True,
    )
    add("## Parity")
    add("")
    ep = res["env_parity"]
    add(
        f"- Environment: NumPy vs JAX on {ep['n_rewards']} steps (random actions on "
        f"{ep['n_rewards'] // setup['episode_steps']} setups"
        + (f", {ep['pool_entries']} distinct pool entries" if "pool_entries" in ep else "")
        + ", the action bounds included): "
        f"reward max relative difference {ep['reward_max_rel']:.1e} (asserted <= 1e-4; mean "
        f"reward {ep['reward_mean']:.3f} bit/s/Hz), observations max abs "
        f"{ep['obs_max_abs']:.1e}, global states max abs {ep['state_max_abs']:.1e} (final "
        "observations and states after the truncation included)."
    )
    npar = res["net_parity"]
    add(
        f"- Networks ({npar['n_params']} parameters, actor + critic), the JAX initial "
        "parameters copied into the torch modules, a minibatch of real transitions: actions "
        f"max abs {npar['u_max_abs']:.1e}, Q max abs {npar['q_max_abs']:.1e} (max |Q| "
        f"{npar['q_scale']:.3g}); one gradient step (`trainer.learn` vs `TorchMADDPG.learn`): "
        f"critic loss {npar['critic_loss']:.5f} (abs diff {npar['critic_loss_abs']:.1e}), "
        f"actor loss {npar['actor_loss']:.5f} (abs diff {npar['actor_loss_abs']:.1e})."
    )
    parts = []
    for name in ("actor", "critic", "actor_target", "critic_target"):
        parts.append(
            f"{name} {npar[name + '_max_abs_after_step']:.1e} (largest move "
            f"{npar[name + '_max_move']:.1e})"
        )
    add(
        "- Parameters after that step, max abs difference JAX vs torch: "
        + "; ".join(parts)
        + " (Adam's first step moves a weight by about the learning rate, 1e-3; a few "
        "weights with gradients near zero in float32 can differ by up to that)."
    )
    add("")
    L += bullets("## Results", res["headline"])
    nc = info["cores"]
    add(
        f"| n_envs | JAX env steps/s | JAX agent steps/s | PyTorch {nc} threads env steps/s "
        "| PyTorch 1 thread env steps/s | **JAX / PyTorch best** | JAX compile (s) | JAX runs "
        "(s) | PyTorch runs (s), by threads | load (JAX; torch) |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|")
    by = {(r["n_envs"], r["threads"]): r for r in res["torch"]}
    best = {r["n_envs"]: r for r in res["torch_best"]}
    jrows = {r["n_envs"]: r for r in res["jax"]}
    A = setup["n_agents"]
    for n in sorted(set(jrows) | set(best)):
        r, tb = jrows.get(n), best.get(n)
        tn, t1 = by.get((n, nc)), by.get((n, 1))
        js = "-" if r is None else compact(r["steps_per_s"])
        ja = "-" if r is None else compact(A * r["steps_per_s"])
        ratio = (
            "-" if (r is None or tb is None) else f"**{r['steps_per_s'] / tb['steps_per_s']:.2f}x**"
        )
        comp = "-" if r is None else f"{r['compile_s']:.1f}"
        jruns = "-" if r is None else ", ".join(f"{x:.2f}" for x in r["runs_s"])
        truns = "; ".join(
            f"{t['threads']}: " + ", ".join(f"{x:.2f}" for x in t["runs_s"])
            for t in (tn, t1)
            if t is not None
        )
        jl = "-" if r is None else f"{r['load1']:.1f}"
        tl = "/".join(f"{t['load1']:.1f}" for t in (tn, t1) if t is not None)
        add(
            f"| {n} | {js} | {ja} | {compact(tn['steps_per_s']) if tn else '-'} | "
            f"{compact(t1['steps_per_s']) if t1 else '-'} | {ratio} | {comp} | {jruns} | "
            f"{truns or '-'} | {jl}; {tl or '-'} |"
        )
    add("")
    add("### Where the time goes (per vectorised step, ms)")
    add("")
    add(
        "| n_envs | JAX total | JAX act + env alone | JAX gradient step alone | JAX rest | "
        "PyTorch total | PyTorch act | PyTorch env loop | PyTorch buffer insert | PyTorch "
        "gradient step | JAX env-only ceiling (env steps/s) | PyTorch env-only ceiling |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for s in res["split"]:
        n = s["n_envs"]
        cj = compact(n / s["jax_env_s"]) if "jax_env_s" in s else "-"
        ct = compact(n / s["torch_env_s"]) if "torch_env_s" in s else "-"
        add(
            f"| {n} | {ms(s.get('jax_total_s'))} | {ms(s.get('jax_env_s'))} | "
            f"{ms(s.get('jax_learn_s'))} | {_rest(s.get('jax_rest_s'))} | "
            f"{ms(s.get('torch_total_s'))} | {ms(s.get('torch_act_s'))} | "
            f"{ms(s.get('torch_env_s'))} | {ms(s.get('torch_buffer_s'))} | "
            f"{ms(s.get('torch_learn_s'))} | {cj} | {ct} |"
        )
    add("")
    add(
        "JAX act + env alone = a compiled `lax.scan` of the exploration policy and "
        "`env.step_batch` (resets included) for as many vectorised steps as one call, from the "
        "warm runner state, no buffer and no learning; JAX gradient step alone = a compiled "
        "`lax.scan` of minibatch sampling + `trainer.learn` on the warm buffer; rest = total - "
        "both (buffer insert, the learning `lax.cond`, metrics; a difference of times taken "
        "apart, so noisy: '<0' when the parts timed alone came out slower than the whole). "
        "PyTorch: the timed steps' own split (the reference's thread setting). Env-only ceiling = "
        "n_envs / (act + env time): the rate with free gradient steps."
    )
    add("")
    es = res.get("env_split")
    if es:
        T = es["episode_steps"]
        add("### The environments alone: step and reset, per environment (us)")
        add("")
        add(
            "| implementation | step (no reset) | reset | per env step, one reset every "
            f"{T} steps |"
        )
        add("|---|---|---|---|")
        pooled = bool(setup.get("jax_setup_pool"))
        rows = [
            (
                "JAX",
                "jax_reset_s",
                ("statistics of a pool setup" if pooled else "setup generated")
                + f"; vmapped over {es['n_envs']}",
            )
        ]
        if es.get("jax_reset_generate_s") is not None:
            rows.append(
                (
                    "JAX",
                    "jax_reset_generate_s",
                    "setup generated, `setup_pool = 0`, not used in the training runs",
                )
            )
        rows.append(("NumPy", "numpy_reset_s", "statistics of a pool setup; one environment"))
        for name, key, what in rows:
            st, rs_ = es[name.lower() + "_step_s"], es[key]
            add(f"| {name} ({what}) | {_us(st)} | {_us(rs_)} | {_us(st + rs_ / T)} |")
        add("")
        add(
            "JAX: `env.step_env` (the closed-form SINR, observations, no auto-reset) and "
            "`env.reset` (a pool setup picked with the reset's key, or with `setup_pool = 0` "
            "the setup generated: drop, correlated shadowing, pilots, DCC; then the estimation "
            "and MR statistics, the SEs at full power), each vmapped and compiled; NumPy: "
            "`PowerControlNumPy.step` + `global_state` (as the trainer's loop calls them) "
            "and `reset`."
        )
        add("")
    L += bullets("### Learning sanity (both trainers learn on every timed step)", res["sanity"])
    L += bullets("## Reading", res["reading"])
    write_markdown(path, L)


# ---- main -----------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (n_envs 1 and 16)")
    ap.add_argument(
        "--out", default=None, help="markdown report (default bench/RESULTS_offpolicy.md)"
    )
    ap.add_argument("--jax-n-envs", default=None, help="comma list (default 1,4,...,1024)")
    ap.add_argument("--torch-n-envs", default=None, help="comma list (default 1,4,...,1024)")
    ap.add_argument("--repeats", type=int, default=3, help="timed JAX calls per point")
    ap.add_argument("--torch-max-s", type=float, default=12.0, help="timed seconds per torch point")
    ap.add_argument(
        "--report-only",
        default=None,
        metavar="JSON",
        help="rewrite the markdown report (headline, split, reading) from a saved JSON",
    )
    args = ap.parse_args(argv)
    if args.report_only:
        with open(args.report_only) as f:
            d = json.load(f)
        res, setup, info = d["results"], d["setup"], d["machine"]
        head, split, reading, ratio = analyse(res | {"setup": setup}, info["cores"])
        res.update(headline=head, split=split, reading=reading, best_vs_best=ratio)
        out = args.out or os.path.splitext(args.report_only)[0] + ".md"
        write_report(out, info, setup, res, d["wall_s"])
        write_json(out, d)
        print(f"wrote {out}")
        return 0

    import torch

    n_cpu = os.cpu_count()
    torch.set_num_threads(n_cpu)
    t_start = time.perf_counter()
    info = machine_info()
    info["load_start"] = os.getloadavg()
    if args.quick:
        jax_n, torch_n, repeats, torch_max = [1, 16], [1, 16], 2, 3.0
    else:
        jax_n, torch_n, repeats, torch_max = (
            list(N_ENVS),
            list(N_ENVS),
            args.repeats,
            args.torch_max_s,
        )
    if args.jax_n_envs:
        jax_n = [int(x) for x in args.jax_n_envs.split(",")]
    if args.torch_n_envs:
        torch_n = [int(x) for x in args.torch_n_envs.split(",")]

    env, env_params, trainer = build_jax(1)
    c = trainer.config
    setup = dict(
        quick=args.quick,
        env_overrides=env_config(),
        jax_n_envs=jax_n,
        torch_n_envs=torch_n,
        jax_repeats=repeats,
        torch_blocks=3,
        torch_max_s=torch_max,
        pool=POOL,
        pool_seed=POOL_SEED,
        jax_setup_pool=env.setup_pool,
        n_steps=N_STEPS,
        n_aps=env.L,
        n_antennas=env.N,
        n_agents=env.n_agents,
        tau_p=env.tau_p,
        p_max=env.p_max,
        action_box=list(_action_box(env)),
        power_db_range=getattr(env, "db_range", None),
        features=getattr(env, "features", "gains"),
        episode_steps=env.episode_steps,
        obs_dim=int(np.prod(env.obs_shape)),
        state_dim=int(np.prod(env.global_state_space.shape)),
        **{k: (list(getattr(c, k)) if k == "hidden" else getattr(c, k)) for k in SHARED},
    )
    res = {"sanity": []}

    res["env_parity"] = env_parity()
    print(f"env parity: {res['env_parity']}", flush=True)
    res["net_parity"] = net_parity()
    print(f"net parity: {res['net_parity']}", flush=True)

    setups = pool_arrays(env_params)  # the JAX environment's own pool
    env_kwargs = numpy_env_kwargs(env, env_params)
    res["jax"], res["torch"] = [], []
    settings = [n_cpu, 1] if n_cpu > 1 else [1]
    for n in sorted(set(jax_n) | set(torch_n)):
        if n in jax_n:
            r = time_jax(n, repeats)
            r["gradient_steps"] = c.gradient_steps
            res["jax"].append(r)
            print(
                f"jax n_envs={n}: {r['steps_per_s']:.1f} env steps/s (runs "
                f"{', '.join(f'{x:.3f}' for x in r['runs_s'])} s, compile "
                f"{r['compile_s']:.1f} s, env alone {1e3 * r['env_alone']['per_vec_step_s']:.3f}"
                f" ms, learn alone {1e3 * r['learn_alone']['per_grad_step_s']:.3f} ms, load "
                f"{r['load1']:.1f})",
                flush=True,
            )
        if n not in torch_n:
            continue
        for th in settings:
            r = time_torch(n, th, setups, env_kwargs, torch_max)
            res["torch"].append(r)
            sp = r["split_per_vec_step_s"]
            print(
                f"torch n_envs={n} threads={th}: {r['steps_per_s']:.1f} env steps/s (blocks "
                f"of {r['vec_steps_per_block']}: {', '.join(f'{x:.2f}' for x in r['runs_s'])} "
                f"s; per step ms: "
                + ", ".join(f"{k} {1e3 * v:.3f}" for k, v in sp.items())
                + f"; load {r['load1']:.1f})",
                flush=True,
            )
    torch.set_num_threads(n_cpu)
    best = best_per_n_envs(res["torch"])
    res["torch_best"] = [best[n] for n in sorted(best)]

    res["env_split"] = env_split(max(jax_n), setups, env_kwargs)
    print(f"env split: {res['env_split']}", flush=True)

    for r in res["jax"]:
        m0, m1 = r["metrics"][0], r["metrics"][-1]
        res["sanity"].append(
            f"JAX {r['n_envs']} envs, {len(r['metrics'])} calls: all metrics finite: "
            f"{r['finite']}; learning on every timed step: {r['learning_in_timed_calls'] == 1.0}"
            f"; mean reward (sum SE) {m0['reward']:.3f} -> {m1['reward']:.3f}, critic loss of "
            f"the last call {m1['critic_loss']:.3g}, mean Q {m1['q']:.3g}"
        )
    for r in res["torch"]:
        m0, m1 = r["metrics"][0], r["metrics"][-1]
        res["sanity"].append(
            f"PyTorch {r['n_envs']} envs, {r['threads']} thread(s): learning on every timed "
            f"step: {r['learning']}; last reward (sum SE) {m1['reward']:.3f}, critic loss "
            f"{m0['critic_loss']:.3g} -> {m1['critic_loss']:.3g}, mean Q {m1['q']:.3g}"
        )
    head, split, reading, ratio = analyse(res | {"setup": setup}, n_cpu)
    res["headline"], res["split"], res["reading"] = head, split, reading
    res["best_vs_best"] = ratio
    for line in head:
        print(line)

    info["load_end"] = os.getloadavg()
    info["max_rss_gib"] = peak_rss_gib()
    out = args.out or os.path.join(ROOT, "bench", "RESULTS_offpolicy.md")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    wall = time.perf_counter() - t_start
    write_report(out, info, setup, res, wall)
    js = write_json(out, dict(machine=info, setup=setup, results=res, wall_s=wall))
    print(f"wrote {out} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
