#!/usr/bin/env python
"""Benchmark: MAPPO-Lagrangian training throughput, jitted JAX trainer vs a PyTorch reference.

Usage (from the repository root; needs the ``bench`` extra, i.e. torch)::

    python bench/bench_training.py [--quick] [--out bench/RESULTS_training.md]

Scenario and trainer: ``configs/ap_selection_medium.yaml`` (20 APs x 6 UEs = 120 agents,
pedestrian; ``mappo_lagr``: GRU encoder, 2 attention rounds, hidden 64, central critic, reward
and cost heads; ``n_steps`` 10, 4 epochs x 4 minibatches), without the imitation pre-training
and with ``n_envs`` varied. Throughput = environment steps per second of training wall time
(rollout + PPO update), ``n_envs n_steps`` environment steps per update; agent steps =
environment steps x 120.

* JAX: ``algorithms.mappo.Trainer`` built by ``cfmimo_cli.train.build``,
  ``updates_per_chunk = 1``: ``jax.jit(trainer.update).lower(state).compile()`` (timed apart as
  the compile time), then a warm-up call and a few timed calls of the compiled update, each fed
  the state the previous one returned, with ``block_until_ready``; median.
* PyTorch: ``bench/torch_mappo.py`` (eager, CPU, ``torch.set_num_threads(os.cpu_count())``),
  ``n_envs`` NumPy environments stepped one after another in a Python loop, the policy batched
  over the environments; a warm-up update, then timed updates (median), capped in time.

Before timing, the torch network is checked against the JAX one: the JAX parameters are
copied into the torch module and logits, values, the PPO loss and its gradients are compared
on random and real observations.
"""

from __future__ import annotations

import argparse
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
    mem_available,
    memory_bytes,
    peak_rss_gib,
    timed_update,
    torch_info,
    write_json,
    write_markdown,
)

CONFIG = os.path.join(ROOT, "configs", "ap_selection_medium.yaml")
JAX_N_ENVS = (2, 4, 16, 64, 256, 1024)
TORCH_N_ENVS = (2, 4, 16, 64)
# hyper-parameters shared by the two trainers (taken from the JAX config, checked equal)
SHARED = (
    "n_steps",
    "epochs",
    "n_minibatches",
    "hidden",
    "gnn_rounds",
    "lagrangian",
    "max_grad_norm",
    "lr",
    "gamma",
    "gae_lambda",
    "clip",
    "ent_coef",
    "vf_coef",
    "cost_limit",
    "lambda_lr",
    "lambda_init",
    "cost_weight",
)


# ---- set-up ---------------------------------------------------------------------------------


def load_config(n_envs):
    import yaml

    with open(CONFIG) as f:
        cfg = yaml.safe_load(f)
    cfg["trainer"] = dict(
        cfg["trainer"],
        n_envs=int(n_envs),
        n_updates=1,
        updates_per_chunk=1,
        pretrain_updates=0,
        pretrain_policy=None,
    )
    return cfg


def build_jax(n_envs):
    from cfmimo_cli.train import build

    return build(load_config(n_envs))


def torch_setup(trainer):
    """``(TorchPPOConfig kwargs, env kwargs, graph)`` matching a JAX ``Trainer``."""
    c = trainer.config
    if c.encoder != "gru" or c.critic != "central" or c.team_reward or c.single_agent:
        raise ValueError("the torch reference implements gru + central critic, local rewards")
    kw = {name: getattr(c, name) for name in SHARED}
    kw["n_envs"] = c.n_envs
    cfg = load_config(c.n_envs)
    env_kwargs = {
        k: cfg["env"][k]
        for k in ("n_aps", "n_ues", "window_slots", "n_windows", "history", "mobility")
    }
    env_kwargs.update({k: cfg["env"][k] for k in ("se_target", "radius_m")})
    g = trainer.graph
    if not (bool(np.all(np.asarray(g.edge_mask))) and bool(np.all(np.asarray(g.node_mask)))):
        raise ValueError("the torch reference assumes an unmasked graph")
    graph = tuple(np.array(a) for a in (g.senders, g.receivers, g.edge_type))
    return kw, env_kwargs, graph


def machine_info():
    """:func:`bench._common.describe_machine` of the trainer's, environment's and benchmark's files,
    with PyTorch's version and threads."""
    files = [
        "algorithms",
        "cfmimo_jax/envs",
        "bench/numpy_ap_selection.py",
        "bench/torch_mappo.py",
        "bench/bench_training.py",
    ]
    return describe_machine(files, after_jax=torch_info())


# ---- parity check ---------------------------------------------------------------------------


def parity_check(seed=0):
    """JAX params copied into the torch network: max abs differences of logits and values (on
    random and real observations) and of the PPO loss and its gradients on a random batch."""
    import jax
    import jax.numpy as jnp
    import torch

    from algorithms import networks
    from bench.numpy_ap_selection import APSelectionNumPy
    from bench.torch_mappo import (
        TorchActorCritic,
        load_jax_params,
        param_pairs,
        ppo_loss,
    )

    _, _, trainer = build_jax(4)
    kw, env_kwargs, graph = torch_setup(trainer)
    _, params = networks.init_params(jax.random.PRNGKey(seed + 7), **trainer.net_kwargs)
    nk = trainer.net_kwargs
    net = TorchActorCritic(
        nk["obs_features"],
        nk["n_actions"],
        graph,
        hidden=nk["hidden"],
        gnn_rounds=nk["gnn_rounds"],
        n_edge_types=nk["n_edge_types"],
        n_value_heads=nk["n_value_heads"],
    )
    load_jax_params(net, params)
    n_params = sum(p.numel() for p in net.parameters())
    rng = np.random.default_rng(seed)
    A = trainer.env.n_agents
    T, F = trainer.env.obs_shape
    env = APSelectionNumPy(seed=seed, **env_kwargs)
    real = [env.reset()]
    for _ in range(3):
        real.append(env.step(rng.integers(0, 2, A))[0])
    inputs = {
        "random N(0,1)": rng.standard_normal((4, A, T, F)).astype(np.float32),
        "environment": np.stack(real).astype(np.float32),
    }
    out = {"n_params_torch": int(n_params), "n_params_jax": networks.param_count(params)}
    for name, obs in inputs.items():
        lj, vj = jax.jit(trainer.forward)(params, jnp.asarray(obs))
        with torch.no_grad():
            lt, vt = net(torch.from_numpy(obs))
        out[name] = {
            "logits_max_abs": float(np.max(np.abs(np.asarray(lj) - lt.numpy()))),
            "values_max_abs": float(np.max(np.abs(np.asarray(vj) - vt.numpy()))),
            "logits_scale": float(np.max(np.abs(np.asarray(lj)))),
            "values_scale": float(np.max(np.abs(np.asarray(vj)))),
        }
    # loss and gradients on a random minibatch (the same arrays for both)
    B = 6
    H = nk["n_value_heads"]
    mb = {
        "obs": rng.standard_normal((B, A, T, F)).astype(np.float32),
        "action": rng.integers(0, 2, (B, A)).astype(np.int32),
        "logp": np.log(rng.uniform(0.3, 0.7, (B, A))).astype(np.float32),
        "value": rng.standard_normal((B, A, H)).astype(np.float32),
        "adv": rng.standard_normal((B, A)).astype(np.float32),
        "ret": rng.standard_normal((B, A, H)).astype(np.float32),
    }
    hp = trainer.config.hparams()
    (loss_j, _), grads_j = jax.jit(jax.value_and_grad(trainer._loss, has_aux=True))(
        params, {k: jnp.asarray(v) for k, v in mb.items()}, hp
    )
    mb_t = {k: torch.from_numpy(v) for k, v in mb.items()}
    mb_t["action"] = mb_t["action"].long()
    loss_t, _ = ppo_loss(net, mb_t, float(hp["clip"]), float(hp["vf_coef"]), float(hp["ent_coef"]))
    net.zero_grad()
    loss_t.backward()
    gmax = max(float(np.max(np.abs(np.asarray(g)))) for _, _, g, _ in param_pairs(net, grads_j))
    worst_abs, worst, worst_name = 0.0, 0.0, None
    for (name, p, _, transposed), (_, _, gj, _) in zip(
        param_pairs(net, params), param_pairs(net, grads_j), strict=True
    ):
        gt = p.grad.numpy().T if transposed else p.grad.numpy()
        diff = float(np.max(np.abs(gt - gj)))
        worst_abs = max(worst_abs, diff)
        scale = float(np.max(np.abs(gj)))
        if scale < 1e-6 * gmax:  # a gradient that is zero in exact arithmetic (key biases)
            continue
        if diff / scale > worst:
            worst, worst_name = diff / scale, name
    out["loss_abs"] = float(abs(float(loss_j) - float(loss_t.detach())))
    out["grad_max_abs"] = worst_abs
    out["grad_scale"] = gmax
    out["loss"] = float(loss_j)
    out["grad_max_rel"] = worst
    out["grad_worst_param"] = worst_name
    return out


# ---- timing ---------------------------------------------------------------------------------


def time_jax(n_envs, repeats, mem_limit, max_call_s, seed=0):
    _, _, trainer = build_jax(n_envs)
    state, compiled, compile_s = compile_update(trainer, seed)
    mem = memory_bytes(compiled)
    steps = n_envs * trainer.config.n_steps * trainer.config.updates_per_chunk
    out = {"n_envs": n_envs, "env_steps_per_call": steps, "compile_s": compile_s}
    out["mem_bytes"] = mem
    if mem is not None and mem_limit is not None and mem > 0.8 * mem_limit:
        out["skipped"] = f"XLA needs {mem / 2**30:.1f} GiB, {mem_limit / 2**30:.1f} GiB available"
        return out
    runs, first = [], None
    metrics = []
    while True:
        state, dt, _ = timed_update(compiled, state, metrics)
        if first is None:
            first = dt
            if dt <= max_call_s:  # warm-up call, not counted
                continue
        runs.append(dt)
        if len(runs) >= repeats or sum(runs) + dt > 2 * max_call_s:
            break
    t = statistics.median(runs)
    n_agents = trainer.env.n_agents
    out.update(
        runs_s=runs,
        first_call_s=first,
        steps_per_s=steps / t,
        agent_steps_per_s=steps * n_agents / t,
        load1=os.getloadavg()[0],
        metrics=metrics,
        finite=bool(all(np.isfinite(v) for mm in metrics for v in mm.values())),
    )
    return out


def time_jax_rollout(n_envs, repeats=3, seed=0):
    """Diagnostic: the compiled rollout alone (``Trainer._rollout``) of the same trainer."""
    import jax

    from cfmimo_cli.timing import time_jitted

    _, _, trainer = build_jax(n_envs)
    state = trainer.init(jax.random.PRNGKey(seed))
    return time_jitted(trainer._rollout, state, repeats)[0]


def time_torch(n_envs, threads, repeats, max_time_s, warmup=True, seed=0):
    import torch

    from bench.torch_mappo import TorchMAPPO, TorchPPOConfig

    torch.set_num_threads(threads)
    _, _, trainer = build_jax(n_envs)
    kw, env_kwargs, graph = torch_setup(trainer)
    tm = TorchMAPPO(TorchPPOConfig(**kw), env_kwargs, graph, seed=seed)
    p0 = torch.cat([p.detach().flatten().clone() for p in tm.net.parameters()])
    steps = n_envs * kw["n_steps"]
    runs, roll, metrics = [], [], []
    first = None
    if warmup:
        t0 = time.perf_counter()
        metrics.append(tm.update())  # warm-up update, not counted
        first = time.perf_counter() - t0
    while True:
        t0 = time.perf_counter()
        m = tm.update()
        dt = time.perf_counter() - t0
        runs.append(dt)
        roll.append(tm.last_timing["rollout_s"])
        metrics.append(m)
        if len(runs) >= repeats or sum(runs) + dt > max_time_s:
            break
    p1 = torch.cat([p.detach().flatten() for p in tm.net.parameters()])
    t = statistics.median(runs)
    return {
        "n_envs": n_envs,
        "threads": threads,
        "env_steps_per_update": steps,
        "runs_s": runs,
        "first_update_s": first,
        "rollout_s": statistics.median(roll),
        "steps_per_s": steps / t,
        "agent_steps_per_s": steps * tm.n_agents / t,
        "load1": os.getloadavg()[0],
        "metrics": metrics,
        "param_change_rel": float((p1 - p0).norm() / p0.norm()),
        "loss_falls_within_update": all(
            mm["last_epoch_loss"] < mm["first_epoch_loss"] for mm in metrics
        ),
    }


# ---- report ---------------------------------------------------------------------------------


def _ratio(a, b):
    return None if (a is None or b is None) else a / b


def write_report(path, info, setup, res, wall):
    L = []
    add = L.append
    q = " --quick" if setup["quick"] else ""
    add("# Training benchmark: MAPPO-Lagrangian, jitted JAX trainer vs a PyTorch reference")
    add("")
    add(f"Generated by `python bench/bench_training.py{q}` (total wall time {wall:.0f} s).")
    add("Raw numbers: `bench/RESULTS_training.json`.")
    add("")
    add("## What is measured")
    add("")
    add(
        "**Training throughput**: environment steps per second of wall time during training, "
        "rollout and PPO update together; one update = a rollout of `n_steps` = 10 "
        "environment steps (selection windows) of each of `n_envs` environments, truncation-"
        "aware GAE, then 4 epochs x 4 minibatches of Adam steps on the `10 n_envs` samples. "
        "**Agent steps** = environment steps x 120 (one agent per AP-UE pair). Compile time is "
        "excluded from the JAX rate and reported apart."
    )
    add("")
    add(
        "- Scenario and trainer: `configs/ap_selection_medium.yaml` (20 APs x 6 UEs, "
        "pedestrian; `mappo_lagr`: parameter-shared GRU encoder over the 10-slot observation "
        "history, 2 rounds of typed single-head graph attention over the 2880 same-AP / same-UE "
        "edges, hidden 64, actor head, central critic on `[z_i, mean_j z_j]` with reward and "
        "cost heads, lr 5e-4, gamma 0.9, lambda 0.95, clip 0.2, grad-norm 0.5) with "
        "`pretrain_updates = 0` and `n_envs` varied. The smallest point is 2 environments "
        "because 4 minibatches must divide `10 n_envs`."
    )
    add(
        "- JAX: `algorithms.mappo.Trainer` from `cfmimo_cli.train.build` with "
        "`updates_per_chunk = 1` (rollout = `lax.scan` over `env.step_batch` of `n_envs` "
        "vmapped environments, the policy and the value of `info['final_obs']` evaluated at "
        "every step; epochs and minibatches in `lax.scan`). `jax.jit(trainer.update).lower("
        "state).compile()` is the compile time; then one warm-up call (skipped when a call "
        f"takes longer than {setup['max_call_s']:.0f} s) and up to {setup['jax_repeats']} timed "
        "calls, each fed the state the previous one returned, `block_until_ready`; median. "
        "float32. Points whose XLA memory estimate exceeds 80% of the free memory are skipped."
    )
    add(
        "- PyTorch: `bench/torch_mappo.py`, the same algorithm and network in eager PyTorch "
        f"{info['torch']} on the CPU, driven like a typical research code base: `n_envs` "
        "NumPy environments (`bench/numpy_ap_selection.py`, float64, one Python object per "
        "network) stepped one after another in a Python loop, the policy evaluated once per "
        "step on all environments as one torch batch (`torch.no_grad`), the value of the "
        "final observation computed only for the environments whose episode just ended "
        "(fewer forward passes than the JAX rollout, which evaluates it for every "
        "environment at every step), GAE in torch, `torch.optim.Adam` with "
        "`clip_grad_norm_`. Each point is run twice, with `torch.set_num_threads(os.cpu_count())` "
        "and with one thread (on a shared 2-core machine PyTorch's OpenMP threads collapse when "
        "another process holds a core, see the reading); the reference is the faster of the two. "
        "One warm-up update (skipped for long updates), "
        f"then up to {setup['torch_repeats']} timed updates (fewer when they exceed "
        f"{setup['torch_max_s']:.0f} s in total); median."
    )
    add(
        "- Ratio = JAX env steps/s / PyTorch env steps/s at the same `n_envs`; 'best vs best' "
        "compares the fastest point of each. Both run in the same process on the same "
        "machine, one after the other (for each n_envs the JAX point, then the PyTorch "
        "points). Load = 1-minute load average "
        "after the point; the benchmark itself accounts for about 1.5-2 on this 2-core machine."
    )
    add("")
    L += machine_lines(
        info,
        "trainer, environment and benchmark files",
        " (a shared machine: other jobs may hold a core).",
        torch=True,
    )
    add("## Parity of the two networks")
    add("")
    par = res["parity"]
    add(
        f"The JAX parameters (`networks.init_params`, {par['n_params_jax']} parameters; torch "
        f"module: {par['n_params_torch']}) copied into the torch module:"
    )
    add("")
    add("| input | max abs diff logits | max abs diff values | max abs logits | max abs values |")
    add("|---|---|---|---|---|")
    for name in ("random N(0,1)", "environment"):
        r = par[name]
        add(
            f"| {name} obs | {r['logits_max_abs']:.1e} | {r['values_max_abs']:.1e} | "
            f"{r['logits_scale']:.3g} | {r['values_scale']:.3g} |"
        )
    add("")
    add(
        f"PPO loss (`Trainer._loss` vs `torch_mappo.ppo_loss`) on a random minibatch: "
        f"{par['loss']:.5f}, abs diff {par['loss_abs']:.1e}; gradients: worst relative "
        f"difference (max abs diff / max abs gradient of a tensor) {par['grad_max_rel']:.1e} "
        f"(`{par['grad_worst_param']}`)."
    )
    add("")
    L += bullets("## Results", res["headline"])
    nc = info["cores"]
    add(
        f"| n_envs | env steps / update | JAX env steps/s | JAX agent steps/s | PyTorch {nc} "
        "threads env steps/s | PyTorch 1 thread env steps/s | PyTorch best agent steps/s | "
        f"**JAX / PyTorch best** | JAX / PyTorch {nc} threads | JAX compile (s) | XLA memory "
        "(MiB) | JAX runs (s) | PyTorch runs (s), by threads | load (JAX; torch) |"
    )
    add("|---|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    by = {(r["n_envs"], r["threads"]): r for r in res["torch"]}
    skipped = {(r["n_envs"], r["threads"]): r["reason"] for r in res.get("torch_skipped", [])}
    best = {r["n_envs"]: r for r in res["torch_best"]}
    jrows = {r["n_envs"]: r for r in res["jax"]}
    for n in sorted(set(jrows) | set(best)):
        r, tb = jrows.get(n), best.get(n)
        tn, t1 = by.get((n, nc)), by.get((n, 1))

        def cell(t, key, n=n):
            if t is not None:
                return compact(t[key])
            return "skipped" if (n, nc) in skipped and key == "steps_per_s" else "-"

        if r is None or "skipped" in r:
            js = "-" if r is None else f"skipped: {r['skipped']}"
            ja = ratio_b = ratio_n = jruns = "-"
            comp = "-" if r is None else f"{r['compile_s']:.1f}"
            jl = "-"
        else:
            js, ja = compact(r["steps_per_s"]), compact(r["agent_steps_per_s"])
            ratio_b = "-" if tb is None else f"**{r['steps_per_s'] / tb['steps_per_s']:.2f}x**"
            ratio_n = "-" if tn is None else f"{r['steps_per_s'] / tn['steps_per_s']:.2f}x"
            jruns = ", ".join(f"{x:.2f}" for x in r["runs_s"])
            comp = f"{r['compile_s']:.1f}"
            jl = f"{r['load1']:.1f}"
        mem = "-" if r is None or r.get("mem_bytes") is None else f"{r['mem_bytes'] / 2**20:.0f}"
        truns = "; ".join(
            f"{t['threads']}: " + ", ".join(f"{x:.2f}" for x in t["runs_s"])
            for t in (tn, t1)
            if t is not None
        )
        tl = "/".join(f"{t['load1']:.1f}" for t in (tn, t1) if t is not None)
        add(
            f"| {n} | {10 * n} | {js} | {ja} | {cell(tn, 'steps_per_s')} | "
            f"{cell(t1, 'steps_per_s')} | {cell(tb, 'agent_steps_per_s')} | {ratio_b} | "
            f"{ratio_n} | {comp} | {mem} | {jruns} | {truns or '-'} | {jl}; {tl or '-'} |"
        )
    add("")
    for (n, th), why in skipped.items():
        add(f"PyTorch {n} environments, {th} threads: not run ({why}).")
    if skipped:
        add("")
    if res.get("split"):
        add("### Where the time goes")
        add("")
        add(
            "| n_envs | JAX rollout alone (s) | JAX update (s) | JAX rollout share | "
            "PyTorch rollout (s) | PyTorch update (s) | PyTorch rollout share |"
        )
        add("|---|---|---|---|---|---|---|")
        for s in res["split"]:
            add(
                f"| {s['n_envs']} | {s['jax_rollout_s']:.2f} | {s['jax_update_s']:.2f} | "
                f"{100 * s['jax_rollout_s'] / s['jax_update_s']:.0f}% | "
                f"{s['torch_rollout_s']:.2f} | {s['torch_update_s']:.2f} | "
                f"{100 * s['torch_rollout_s'] / s['torch_update_s']:.0f}% |"
            )
        add("")
        add(
            "JAX rollout alone = the compiled `Trainer._rollout` (10 steps: policy, environment "
            "and the two value passes per step) timed by itself; PyTorch rollout = the rollout "
            "part of the timed updates (Python loop over the NumPy environments and the torch "
            "forward passes)."
        )
        add("")
    L += bullets("### Learning sanity (both trainers really train)", res["sanity"])
    L += bullets("## Reading", res["reading"])
    write_markdown(path, L)


# ---- main -----------------------------------------------------------------------------------


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run (n_envs 2 and 4)")
    ap.add_argument(
        "--out", default=None, help="markdown report (default bench/RESULTS_training.md)"
    )
    ap.add_argument("--jax-n-envs", default=None, help="comma list (default 2,4,...,1024)")
    ap.add_argument("--torch-n-envs", default=None, help="comma list (default 2,4,16,64)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument(
        "--recorded-reading",
        action="store_true",
        help="write the reading written for the 2026-11-25 run (only true of those numbers)",
    )
    ap.add_argument("--torch-max-s", type=float, default=45.0, help="time cap per torch point")
    ap.add_argument("--max-call-s", type=float, default=30.0, help="no JAX warm-up above this")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(os.cpu_count())
    t_start = time.perf_counter()
    info = machine_info()
    info["load_start"] = os.getloadavg()
    if args.quick:
        jax_n, torch_n, repeats, torch_max = [2, 4], [2, 4], 2, 10.0
    else:
        jax_n, torch_n, repeats, torch_max = (
            list(JAX_N_ENVS),
            list(TORCH_N_ENVS),
            args.repeats,
            args.torch_max_s,
        )
    if args.jax_n_envs:
        jax_n = [int(x) for x in args.jax_n_envs.split(",")]
    if args.torch_n_envs:
        torch_n = [int(x) for x in args.torch_n_envs.split(",")]
    setup = dict(
        quick=args.quick,
        jax_n_envs=jax_n,
        torch_n_envs=torch_n,
        jax_repeats=repeats,
        torch_repeats=repeats,
        torch_max_s=torch_max,
        max_call_s=args.max_call_s,
        config=os.path.relpath(CONFIG, ROOT),
    )
    res = {"headline": [], "sanity": [], "reading": []}

    par = parity_check()
    res["parity"] = par
    for name in ("random N(0,1)", "environment"):
        print(
            f"parity ({name} obs): logits {par[name]['logits_max_abs']:.2e}, values "
            f"{par[name]['values_max_abs']:.2e}",
            flush=True,
        )
    print(
        f"parity: loss abs {par['loss_abs']:.2e}, grad max rel {par['grad_max_rel']:.2e} "
        f"({par['grad_worst_param']})",
        flush=True,
    )

    res["jax"] = []
    res["torch"] = []
    res["torch_skipped"] = []
    n_cpu = os.cpu_count()
    settings = [n_cpu, 1] if n_cpu > 1 else [1]
    prev = {}
    for n in sorted(set(jax_n) | set(torch_n)):
        if n in jax_n:
            r = time_jax(n, repeats, mem_available(), args.max_call_s)
            res["jax"].append(r)
            if "skipped" in r:
                print(f"jax n_envs={n}: skipped ({r['skipped']})", flush=True)
            else:
                print(
                    f"jax n_envs={n}: {r['steps_per_s']:.1f} env steps/s (runs "
                    f"{', '.join(f'{x:.2f}' for x in r['runs_s'])} s, compile "
                    f"{r['compile_s']:.1f} s, load {r['load1']:.1f})",
                    flush=True,
                )
        if n not in torch_n:
            continue
        for th in settings:
            # expected update time from the previous point of this setting
            expect = None if th not in prev else 10 * n / prev[th]
            if expect is not None and expect > 4 * torch_max:
                res["torch_skipped"].append(
                    dict(n_envs=n, threads=th, reason=f"one update expected to take {expect:.0f} s")
                )
                print(f"torch n_envs={n} threads={th}: skipped ({expect:.0f} s expected)")
                continue
            warm = expect is None or expect < torch_max / 4
            r = time_torch(n, th, repeats, torch_max, warmup=warm)
            prev[th] = r["steps_per_s"]
            res["torch"].append(r)
            print(
                f"torch n_envs={n} threads={th}: {r['steps_per_s']:.1f} env steps/s (runs "
                f"{', '.join(f'{x:.2f}' for x in r['runs_s'])} s, rollout "
                f"{r['rollout_s']:.2f} s, load {r['load1']:.1f})",
                flush=True,
            )
    torch.set_num_threads(n_cpu)
    # the reference at each n_envs: the faster of the thread settings
    best_torch = best_per_n_envs(res["torch"])
    res["torch_best"] = [best_torch[n] for n in sorted(best_torch)]

    # where the time goes: the JAX rollout alone at the shared points up to 64 environments
    res["split"] = []
    jx = {r["n_envs"]: r for r in res["jax"] if "skipped" not in r}
    tor = best_torch
    split_n = [n for n in (4, 64) if n in jx and n in tor] if not args.quick else [4]
    for n in split_n:
        if n not in jx or n not in tor:
            continue
        jr = time_jax_rollout(n)
        res["split"].append(
            dict(
                n_envs=n,
                jax_rollout_s=jr,
                jax_update_s=statistics.median(jx[n]["runs_s"]),
                torch_rollout_s=tor[n]["rollout_s"],
                torch_update_s=statistics.median(tor[n]["runs_s"]),
            )
        )
        print(f"split n_envs={n}: {res['split'][-1]}", flush=True)

    # headline
    shared = [n for n in jx if n in tor]
    for n in shared:
        ratio = jx[n]["steps_per_s"] / tor[n]["steps_per_s"]
        res["headline"].append(
            f"{n} environments: JAX {compact(jx[n]['steps_per_s'])} env steps/s vs PyTorch "
            f"{compact(tor[n]['steps_per_s'])} ({tor[n]['threads']} thread(s)): **{ratio:.2f}x**"
        )
    if jx and tor:
        bj = max(jx.values(), key=lambda r: r["steps_per_s"])
        bt = max(tor.values(), key=lambda r: r["steps_per_s"])
        lj = jx[max(jx)]
        res["headline"].append(
            f"best vs best: JAX {compact(bj['steps_per_s'])} env steps/s ({bj['n_envs']} envs) vs "
            f"PyTorch {compact(bt['steps_per_s'])} ({bt['n_envs']} envs, {bt['threads']} "
            "thread(s)): "
            f"**{bj['steps_per_s'] / bt['steps_per_s']:.2f}x**"
        )
        res["headline"].append(
            f"JAX at its largest n_envs that ran ({lj['n_envs']}): {compact(lj['steps_per_s'])} "
            f"env steps/s, **{lj['steps_per_s'] / bt['steps_per_s']:.2f}x** PyTorch's best"
        )
    for r in res["jax"]:
        if "skipped" in r:
            continue
        m0, m1 = r["metrics"][0], r["metrics"][-1]
        res["sanity"].append(
            f"JAX {r['n_envs']} envs, {len(r['metrics'])} updates: all metrics finite: "
            f"{r['finite']}; value loss {m0['v_loss']:.3g} -> {m1['v_loss']:.3g}, entropy "
            f"{m0['entropy']:.4f} -> {m1['entropy']:.4f}, lambda {m0['lagrange']:.3f} -> "
            f"{m1['lagrange']:.3f}"
        )
    for r in res["torch"]:
        m0, m1 = r["metrics"][0], r["metrics"][-1]
        res["sanity"].append(
            f"PyTorch {r['n_envs']} envs, {r['threads']} thread(s), {len(r['metrics'])} "
            f"updates: parameters moved by {100 * r['param_change_rel']:.2f}% (relative norm); "
            "the loss of the last epoch is "
            f"below that of the first in every update: {r['loss_falls_within_update']}; value "
            f"loss {m0['v_loss']:.3g} -> {m1['v_loss']:.3g}, entropy {m0['entropy']:.4f} -> "
            f"{m1['entropy']:.4f}, lambda {m0['lagrange']:.3f} -> {m1['lagrange']:.3f}"
        )
    if args.recorded_reading and not args.quick:
        res["reading"] = READING
    else:
        res["reading"] = [
            "(no reading yet: this text is written by a person after looking at the numbers; "
            "--recorded-reading reprints the one written for the 2026-11-25 run)"
        ]

    info["load_end"] = os.getloadavg()
    info["max_rss_gib"] = peak_rss_gib()
    out = args.out or os.path.join(ROOT, "bench", "RESULTS_training.md")
    wall = time.perf_counter() - t_start
    write_report(out, info, setup, res, wall)
    js = write_json(out, dict(machine=info, setup=setup, results=res, wall_s=wall))
    print(f"wrote {out} and {js}")
    return 0


# written after the full run of bench/RESULTS_training.json (its numbers are quoted)
READING: list[str] = [
    "Training is bound by the network, not the environment: the JAX environment alone runs "
    "thousands of env steps/s (bench/RESULTS_envs.md) but training runs at 25-37 env steps/s. "
    "Per env step the trainer runs the GRU over 10 slots for 120 agents and 2 attention "
    "rounds over 2880 edges, forward for the rollout and forward + backward 4 times (epochs) "
    "for the update; the rollout (policy, environment, value passes) is only 10-14% of an "
    "update in both trainers. JAX's advantage in stepping environments therefore barely "
    "shows in training throughput.",
    "At equal n_envs the jitted JAX trainer is 1.1-1.2x the PyTorch reference for 2-16 "
    "environments and 1.85x at 64 (where the single PyTorch update measured was slower per "
    "sample than at 16: larger eager tensors, [minibatch, 2880, 64] gathers and scatters, "
    "less cache-friendly). Best vs best it is only 1.16x, and JAX does not get faster with "
    "more environments: 37 env steps/s at 2, 26 at 64 and 34 at 256 (that point ran at "
    "load 2.4, after the "
    "other jobs had eased, hence its rise over 64). On 2 CPU cores the per-sample "
    "arithmetic is the same in both frameworks and bigger batches add no parallelism; XLA's "
    "CPU gathers/scatters (segment sums and their gradients) do not fuse into the matmuls. "
    "1024 environments were not run: XLA estimates 26 GiB for the update (minibatch 2560 "
    "samples x 120 agents x 2880 edges).",
    "The machine was heavily shared during this run (1-minute load 4-5 on 2 cores for most "
    "points: another training run and a test suite), so all absolute rates are below what an "
    "idle machine gives; probes taken earlier on a less loaded machine (load ~2, not part of "
    "this table) gave about 55 env steps/s for JAX at 4 environments and 43 at 64, and about "
    "40 env steps/s for PyTorch with 2 threads at 4 and 16 environments, so the ratios are of "
    "the same order (about 1.0-1.4x) there too.",
    "PyTorch with torch.set_num_threads(os.cpu_count()) = 2 collapsed under that contention: "
    "77 s per update at 2 and 4 environments instead of 0.6-1.4 s with one thread (OpenMP "
    "parallel regions wait for a thread that another process has descheduled, and the "
    "network issues thousands of small parallel ops per update). The 2-thread column is kept "
    "for the record, but the ratios use the faster 1-thread setting; quoting JAX against "
    "2-thread PyTorch here (60-140x) would be an artefact of the shared machine. JAX (XLA's "
    "work-stealing thread pool) degrades gracefully instead.",
    "The torch reference is, if anything, favoured: it evaluates the value of the final "
    "observation only for the environments whose episode ended (12 forward passes per "
    "rollout of 10 steps instead of JAX's 20), and its environments step in float64 NumPy at "
    "about 1000 env steps/s, which is still only ~1/7 of its update time. JAX compile time "
    "(14-17 s per configuration) is not in the rates: it equals about 28 updates at 2 "
    "environments, 0.6 at 64 and 0.2 at 256, so short runs with few environments pay it "
    "visibly.",
    "Both trainers really train (see the sanity lines): parameters move, the PPO loss falls "
    "within every update, the value loss roughly halves over 4 updates and the Lagrange "
    "multiplier rises as the cost exceeds its limit. The torch network matches the JAX one "
    "to ~1e-7 in logits/values and the PPO loss gradients to ~1e-6 relative, with the same "
    "parameters.",
]


if __name__ == "__main__":
    sys.exit(main())
