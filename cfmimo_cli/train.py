"""``cfmimo train`` and ``cfmimo evaluate --run``: multi-agent RL on a scenario.

Training drives the jitted ``Trainer.update`` (a chunk of PPO updates) from Python, chunk by
chunk: the next chunk is dispatched before the previous chunk's metrics are fetched, so logging
never stalls the device. Outputs in ``--out DIR``: ``config.yaml`` (resolved), ``metrics.jsonl``
(one line per update), ``checkpoints/`` (Orbax, the whole ``RunnerState``), ``summary.json``
(final evaluation of the learned policy against the heuristics on the same episodes),
``eval_samples.npz`` (the unaveraged values of the scenario's ``sample_metrics`` in that
evaluation, see :func:`write_eval_samples`; only for scenarios that declare some) and
``learning_curves.png``. ``--resume`` restores the latest checkpoint and continues; the result
equals that of a run that was never interrupted.

Timing in ``summary.json``: ``train_wall_s`` (the training loop, compilation of the jitted
update included, evaluation excluded) splits into ``train_first_chunk_s`` (the first chunk this
process runs, compilation + execution, timed to ``block_until_ready``) and ``train_steady_s``
(every later chunk, with logging and checkpoints), covering ``train_first_chunk_env_steps`` and
``train_steady_env_steps`` environment steps (``first + steady = train_wall_s``).
"""

from __future__ import annotations

import json
import math
import shutil
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from .config import ConfigError


def validate_train(config: dict[str, Any]) -> None:
    """Check a train configuration before any compute (``ConfigError`` names the key)."""
    import algorithms
    from cfmimo_jax import envs

    if config["scenario"] not in envs.names():
        raise ConfigError(f"scenario must be one of {envs.names()}, got {config['scenario']!r}")
    if config["algorithm"] not in algorithms.names():
        raise ConfigError(
            f"algorithm must be one of {algorithms.names()}, got {config['algorithm']!r}"
        )
    if not isinstance(config["seed"], int) or isinstance(config["seed"], bool):
        raise ConfigError(f"seed must be an integer, got {config['seed']!r}")
    ce = config["checkpoint_every"]
    if not isinstance(ce, int) or ce < 1:
        raise ConfigError(f"checkpoint_every must be a positive integer, got {ce!r}")
    for name in ("n_envs", "n_steps"):
        v = config["eval"][name]
        if not isinstance(v, int) or v < 1:
            raise ConfigError(f"eval.{name} must be a positive integer, got {v!r}")
    try:
        env, _, _ = build(config)
    except ValueError as err:
        raise ConfigError(str(err)) from err
    hs = config["eval"]["heuristics"]
    known = env.heuristics()
    if hs is not None and (
        not isinstance(hs, list) or not all(isinstance(h, str) and h in known for h in hs)
    ):
        raise ConfigError(
            f"eval.heuristics must be null or a list of the scenario's heuristics "
            f"({', '.join(known) or 'none'}), got {hs!r}"
        )


def build(config: dict[str, Any]):
    """``(env, env_params, trainer)`` of a configuration (through the two registries)."""
    import algorithms
    from cfmimo_jax import envs

    env, params = envs.make(config["scenario"], dict(config["env"]))
    return env, params, algorithms.make_train(config["algorithm"], config["trainer"], env, params)


def heuristic_names(config, env) -> list[str]:
    """The heuristics an evaluation compares against (``eval.heuristics`` or the scenario's
    default list)."""
    hs = config["eval"]["heuristics"]
    return list(env.default_heuristics if hs is None else hs)


START = "imitation start (greedy)"


def _policies(config, env, trainer, with_start: bool = False):
    """Evaluation policies ``name -> policy(obs, key, state, (params, start_params))``: the
    heuristics, then the learned policy greedy and sampled (and, with ``with_start``, the
    greedy policy of the parameters RL started from, i.e. after the imitation pre-training)."""
    heur = env.heuristics()
    pols = {}
    for name in heuristic_names(config, env):
        pols[name] = lambda obs, key, s, p, h=heur[name]: h(obs, s)
    pols["learned (greedy)"] = lambda obs, key, s, p: trainer.act(p[0], obs)
    pols["learned (sampled)"] = lambda obs, key, s, p: trainer.act(p[0], obs, key)
    if with_start:
        pols[START] = lambda obs, key, s, p: trainer.act(p[1], obs)
    return pols


SAMPLES_FILE = "eval_samples.npz"


def evaluate_run(config, params, env, env_params, trainer, start_params=None, keep_samples=False):
    """Learned policy and heuristics on the same episodes: mean of each metric per policy
    (``start_params``: also the policy RL started from, row ``START``), over ``eval.n_envs``
    environments x ``eval.n_steps`` steps.

    ``keep_samples``: returns ``(results, kept)`` with ``kept[policy][metric]`` the values of
    each of ``env.sample_metrics`` (``algorithms.evaluation.evaluate_policies``), NumPy
    ``[n_envs, n_steps, *shape]`` (``{}`` when the scenario declares none)."""
    import jax

    from algorithms.evaluation import evaluate_policies

    key = jax.random.PRNGKey(config["seed"] + 1_000_003)
    ev = config["eval"]
    pols = _policies(config, env, trainer, with_start=start_params is not None)
    sample_keys = tuple(getattr(env, "sample_metrics", ())) if keep_samples else ()
    # one program for all policies (the environment compiles once), the same episodes for each
    fn = jax.jit(
        lambda key, p: evaluate_policies(
            env,
            env_params,
            [lambda o, kk, s, pol=pol: pol(o, kk, s, p) for pol in pols.values()],
            key,
            ev["n_envs"],
            ev["n_steps"],
            sample_keys,
        )
    )
    res = jax.device_get(fn(key, (params, start_params)))
    kept = {}
    if sample_keys:
        res, raw = res
        kept = {name: {k: np.asarray(v[i]) for k, v in raw.items()} for i, name in enumerate(pols)}
    out = {}
    for i, name in enumerate(pols):
        out[name] = {k: float(np.mean(v[i])) for k, v in res.items()}
        out[name]["ci95"] = {
            k: float(1.96 * np.std(v[i]) / math.sqrt(v.shape[1])) for k, v in res.items()
        }
    return (out, kept) if keep_samples else out


def write_eval_samples(path: str | Path, kept: dict[str, dict[str, np.ndarray]]):
    """Write ``kept[policy][metric]`` (``[n_envs, n_steps, *shape]``, :func:`evaluate_run`) to
    the ``.npz`` file ``path``: one float32 array per (policy, metric) under the key
    ``"<policy>/<metric>"`` (e.g. ``"learned (greedy)/sinr_db"``), flattened in C order
    (environment = drop, then step, then any per-UE axis: ``reshape(shape)`` restores it).
    Returns the record for ``summary.json``: ``{"file", "layout", "shapes": {key: shape}}``;
    ``None`` (and no file) when ``kept`` holds no metric."""
    arrays = {
        f"{pol}/{k}": np.asarray(v, np.float32) for pol, per in kept.items() for k, v in per.items()
    }
    if not arrays:
        return None
    path = Path(path)
    np.savez(path, **{k: v.ravel() for k, v in arrays.items()})
    return {
        "file": path.name,
        "layout": "<policy>/<metric>: float32, flattened [n_envs, n_steps, *per-step shape]",
        "shapes": {k: list(v.shape) for k, v in arrays.items()},
    }


def read_eval_samples(run_dir: str | Path, name: str = SAMPLES_FILE):
    """The arrays of a run's ``eval_samples.npz`` (:func:`write_eval_samples`), ``{"<policy>/
    <metric>": 1-D float32}``; ``None`` when the run has no such file (runs from before the
    file existed, or scenarios without ``sample_metrics``)."""
    path = Path(run_dir) / name
    if not path.is_file():
        return None
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def load_sweep_samples(out_dir: str | Path, folders: dict, stream=None) -> dict:
    """``{key: read_eval_samples(out_dir / folder)}`` over a sweep's ``{key: run folder}``,
    without the runs that lack the file (a note for each on ``stream``, default stderr: runs
    reused from before the file existed are skipped, not an error)."""
    out = {}
    for key, rel in folders.items():
        arrays = read_eval_samples(Path(out_dir) / rel)
        if arrays is None:
            print(
                f"note: {rel} has no {SAMPLES_FILE} (a run from before it was written); "
                "left out of the CDF",
                file=sys.stderr if stream is None else stream,
            )
        else:
            out[key] = arrays
    return out


def sample_stats(x) -> dict[str, float]:
    """``{"n", "mean", "p5", "median", "p95"}`` of pooled samples (NaN when empty)."""
    x = np.asarray(x, np.float64).ravel()
    if not x.size:
        return {"n": 0, "mean": math.nan, "p5": math.nan, "median": math.nan, "p95": math.nan}
    p5, p50, p95 = np.percentile(x, [5.0, 50.0, 95.0])
    return {
        "n": int(x.size),
        "mean": float(x.mean()),
        "p5": float(p5),
        "median": float(p50),
        "p95": float(p95),
    }


def list_registry() -> str:
    """``cfmimo train --list``: scenarios with their heuristics, and algorithms."""
    import algorithms
    from cfmimo_jax import envs

    lines = ["scenarios (scenario=NAME):"]
    for name in envs.names():
        env, _ = envs.make(name)
        lines.append(f"  {name}: {type(env).__name__}, {env.n_agents} agents (default config)")
        lines.append(f"    action space per agent: {env.action_space}")
        lines.append(f"    heuristics: {', '.join(env.heuristics()) or 'none'}")
    lines.append("algorithms (algorithm=NAME):")
    for name in algorithms.names():
        sw = ", ".join(f"{k}={v}" for k, v in algorithms.preset(name).items())
        lines.append(f"  {name}: {algorithms.module_of(name)}" + (f" ({sw})" if sw else ""))
        lines.append(f"    needs {algorithms.action_kind(name)}")
    return "\n".join(lines)


def _checkpointer():
    import orbax.checkpoint as ocp

    return ocp


def _save(manager, step: int, state) -> None:
    ocp = _checkpointer()
    manager.save(step, args=ocp.args.StandardSave(state))


def _restore(manager, abstract_state):
    ocp = _checkpointer()
    step = manager.latest_step()
    return step, manager.restore(step, args=ocp.args.StandardRestore(abstract_state))


def _manager(out_dir: Path):
    ocp = _checkpointer()
    return ocp.CheckpointManager(
        (out_dir / "checkpoints").resolve(),
        options=ocp.CheckpointManagerOptions(max_to_keep=2, create=True),
    )


def train(
    config: dict[str, Any],
    out_dir: str | Path,
    *,
    resume: bool = False,
    progress: bool = True,
    stop_after_chunks: int | None = None,
    stream=None,
) -> dict[str, Any]:
    """Train as configured; returns the summary (also ``summary.json``).

    ``stop_after_chunks`` stops early (after checkpointing), simulating an interruption.
    """
    validate_train(config)
    import jax
    from tqdm.auto import tqdm

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg_path = out_dir / "config.yaml"
    if resume and cfg_path.is_file():
        saved = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
        if saved != config:
            raise ConfigError(
                f"--resume: the configuration differs from the one in {cfg_path}; "
                "resume with the same configuration"
            )
    cfg_path.write_text(yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    ckpt_dir = out_dir / "checkpoints"
    if not resume and ckpt_dir.is_dir():
        # A fresh run over an old one: Orbax would skip saving the steps the old run already
        # holds, leaving its checkpoints for `evaluate --run` and `--resume` to pick up.
        shutil.rmtree(ckpt_dir)
        print(f"removed the previous run's checkpoints in {ckpt_dir}", file=sys.stderr)

    env, env_params, trainer = build(config)
    tc = trainer.config
    n_chunks = tc.n_updates // tc.updates_per_chunk
    init = jax.jit(trainer.init_with_metrics)
    update = jax.jit(trainer.update)
    state, pre = init(jax.random.PRNGKey(config["seed"]))
    start_params = state.params if tc_pretrained(trainer) else None
    # Commit the state to the device as a restored checkpoint is: a fresh run and its
    # resumption then run (and compile, or hit the compilation cache with) the same programs.
    state = jax.device_put(state, jax.devices()[0])
    pretrain = {}
    if pre:
        pre = jax.device_get(pre)
        pretrain = {
            "teacher": tc.pretrain_policy,
            "updates": tc.pretrain_updates,
            "final_loss": float(pre["loss"][-1]),
            "final_accuracy": float(np.mean(pre["accuracy"][-10:])),
        }
        if progress:
            print(
                f"imitation of {tc.pretrain_policy}: {tc.pretrain_updates} steps, accuracy "
                f"{pretrain['final_accuracy']:.3f} (loss {pretrain['final_loss']:.3f})",
                file=stream,
            )
    shown = tuple(getattr(env, "progress_metrics", ()))
    manager = _manager(out_dir)
    metrics_path = out_dir / "metrics.jsonl"
    start_chunk = 0
    if resume and manager.latest_step() is not None:
        abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
        start_chunk, state = _restore(manager, abstract)
        # keep only the metrics the restored state had produced
        n_keep = start_chunk * tc.updates_per_chunk
        if metrics_path.is_file():
            lines = metrics_path.read_text(encoding="utf-8").splitlines()[:n_keep]
            metrics_path.write_text("".join(line + "\n" for line in lines), encoding="utf-8")
    elif metrics_path.is_file():
        metrics_path.unlink()

    steps_per_update = tc.n_envs * tc.n_steps
    t0 = time.perf_counter()
    first_s = None  # wall time of the first chunk this process runs (compilation included)
    n_run = 0
    pending = None  # (chunk index, metrics future)
    bar = tqdm(
        total=n_chunks * tc.updates_per_chunk,
        initial=start_chunk * tc.updates_per_chunk,
        desc="updates",
        unit="upd",
        disable=not progress,
    )

    def flush(item):
        chunk, m = item
        m = jax.device_get(m)
        with metrics_path.open("a", encoding="utf-8") as f:
            for i in range(tc.updates_per_chunk):
                u = chunk * tc.updates_per_chunk + i + 1
                row = {"update": u, "env_steps": u * steps_per_update}
                row.update({k: float(v[i]) for k, v in m.items()})
                f.write(json.dumps(row) + "\n")
        bar.update(tc.updates_per_chunk)
        post = {"ret": f"{float(m['episode_return'][-1]):.2f}"}
        post.update({k: f"{float(m[k][-1]):.2f}" for k in shown if k in m})
        bar.set_postfix(post)

    stopped = False
    for chunk in range(start_chunk, n_chunks):
        state, m = update(state)  # dispatched asynchronously
        n_run += 1
        if first_s is None:  # wait for the first chunk only: compile + run, timed apart
            jax.block_until_ready(state)
            first_s = time.perf_counter() - t0
        if pending is not None:
            flush(pending)
        pending = (chunk, m)
        done_chunks = chunk + 1
        if done_chunks % config["checkpoint_every"] == 0 or done_chunks == n_chunks:
            _save(manager, done_chunks, state)
        if stop_after_chunks is not None and done_chunks - start_chunk >= stop_after_chunks:
            stopped = done_chunks < n_chunks
            if stopped and done_chunks % config["checkpoint_every"]:
                _save(manager, done_chunks, state)
            break
    if pending is not None:
        flush(pending)
    manager.wait_until_finished()
    bar.close()
    train_s = time.perf_counter() - t0
    steps_per_chunk = tc.updates_per_chunk * steps_per_update
    timing = {
        "train_first_chunk_s": first_s or 0.0,
        "train_first_chunk_env_steps": steps_per_chunk if n_run else 0,
        "train_steady_s": max(train_s - (first_s or 0.0), 0.0),
        "train_steady_env_steps": max(n_run - 1, 0) * steps_per_chunk,
    }
    if stopped:
        return {"stopped_after_chunk": done_chunks, "state": state}

    results, kept = evaluate_run(
        config, _reported(trainer, state), env, env_params, trainer, start_params, True
    )
    samples = write_eval_samples(out_dir / SAMPLES_FILE, kept)
    if samples is None and (out_dir / SAMPLES_FILE).is_file():
        (out_dir / SAMPLES_FILE).unlink()  # a previous run's, not this one's
    rows = [json.loads(x) for x in metrics_path.read_text(encoding="utf-8").splitlines()]
    from .plots import plot_learning_curves

    plot_learning_curves(rows, out_dir / "learning_curves.png", title=_title(config))
    summary = {
        "command": "train",
        "config": config,
        "train_wall_s": train_s,
        **timing,
        "env_steps": int(rows[-1]["env_steps"]) if rows else 0,
        **(trainer.summary(state) if hasattr(trainer, "summary") else {}),
        "pretrain": pretrain,
        "evaluation": results,
        "eval_samples": samples,
        "outputs": ["config.yaml", "metrics.jsonl", "checkpoints/", "summary.json"]
        + ([SAMPLES_FILE] if samples else [])
        + ["learning_curves.png"],
    }
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    if stream is not False:
        print(format_eval_table(results, _columns(env, results)), file=stream)
    summary["state"] = state
    return summary


def tc_pretrained(trainer) -> bool:
    """Whether the trainer starts RL from an imitation pre-training (then the start is
    evaluated too)."""
    return bool(getattr(trainer.config, "pretrain_updates", 0))


def _reported(trainer, state):
    """The parameters a run reports (``Trainer.report_params``: the selected checkpoint with
    ``trainer.select=best``), else the last ones."""
    report = getattr(trainer, "report_params", None)
    return report(state) if report is not None else state.params


def _title(config):
    env = ", ".join(f"{k}={v}" for k, v in config["env"].items())
    return f"{config['algorithm']} on {config['scenario']} ({env})"


def _columns(env, results) -> tuple:
    """The evaluation table's columns: the scenario's ``eval_metrics`` (else every metric)."""
    cols = tuple(getattr(env, "eval_metrics", ()))
    if not cols and results:
        first = next(iter(results.values()))
        cols = tuple(k for k in first if k != "ci95")
    return cols


def format_eval_table(results: dict[str, dict[str, Any]], cols=None) -> str:
    if cols is None:
        cols = ("mean_se", "frac_target", "active_aps", "power_w", "cost")
    w = max([20] + [len(n) + 1 for n in results])
    cw = max([13] + [len(c) + 2 for c in cols])
    head = f"{'policy':<{w}}" + "".join(f"{c:>{cw}}" for c in cols)
    lines = [head, "-" * len(head)]
    for name, r in results.items():
        lines.append(f"{name:<{w}}" + "".join(f"{r.get(c, math.nan):>{cw}.3f}" for c in cols))
    return "\n".join(lines)


def evaluate_checkpoint(run_dir: str | Path, stream=None) -> dict[str, Any]:
    """``cfmimo evaluate --run DIR``: the run's latest checkpoint against the heuristics.

    Writes ``evaluation.json`` and, for a scenario with ``sample_metrics``,
    ``evaluation_samples.npz`` (the layout of :func:`write_eval_samples`; the training's own
    ``eval_samples.npz`` is left as it is)."""
    import jax

    run_dir = Path(run_dir)
    cfg_path = run_dir / "config.yaml"
    if not cfg_path.is_file():
        raise ConfigError(f"{run_dir} is not a training run folder (no config.yaml)")
    config = yaml.safe_load(cfg_path.read_text(encoding="utf-8"))
    validate_train(config)
    env, env_params, trainer = build(config)
    manager = _manager(run_dir)
    if manager.latest_step() is None:
        raise ConfigError(f"{run_dir}/checkpoints holds no checkpoint")
    state = jax.eval_shape(trainer.init, jax.random.PRNGKey(config["seed"]))
    abstract = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype), state)
    step, state = _restore(manager, abstract)
    results, kept = evaluate_run(
        config, _reported(trainer, state), env, env_params, trainer, keep_samples=True
    )
    samples = write_eval_samples(run_dir / "evaluation_samples.npz", kept)
    out = {"checkpoint_chunk": step, "evaluation": results, "eval_samples": samples}
    if hasattr(trainer, "summary"):
        out.update({k: v for k, v in trainer.summary(state).items() if k == "selected"})
    (run_dir / "evaluation.json").write_text(json.dumps(out, indent=2) + "\n", encoding="utf-8")
    if stream is not False:
        print(format_eval_table(results, _columns(env, results)), file=stream)
    return out
