"""Shared pieces of the ``cfmimo reproduce`` sweeps over ``cfmimo train`` runs
(``reproduce_power``, ``reproduce_coop``, ``reproduce_xl``): configuration checks naming the
key, running or reusing each run, reading its ``metrics.jsonl`` and the statistics over
seeds."""

from __future__ import annotations

import copy
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError
from .reproduce import _ci95

__all__ = [
    "train_config",
    "prepare_out",
    "check_keys",
    "check_names",
    "check_seeds",
    "curve_over_seeds",
    "mean_ci",
    "read_metrics",
    "run_or_reuse",
]


def train_config(
    scenario: str,
    algorithm: str,
    seed: int,
    *,
    env: Iterable[Mapping[str, Any]] = (),
    trainer: Iterable[Mapping[str, Any]] = (),
    eval: Mapping[str, Any] | None = None,  # noqa: A002  (the configuration's section name)
) -> dict[str, Any]:
    """The ``cfmimo train`` configuration of one run of a sweep: the registries' defaults of
    ``scenario`` and ``algorithm`` with ``seed``, then the ``env`` and ``trainer`` overrides in
    order (each a mapping, copied) and the ``eval`` one."""
    from .config import train_schema

    cfg = train_schema(None, [f"scenario={scenario}", f"algorithm={algorithm}"])
    cfg["seed"] = int(seed)
    for over in env:
        cfg["env"].update(copy.deepcopy(dict(over)))
    for over in trainer:
        cfg["trainer"].update(copy.deepcopy(dict(over)))
    cfg["eval"].update(copy.deepcopy(dict(eval or {})))
    return cfg


def prepare_out(config: Mapping[str, Any], out_dir) -> Path:
    """Create the sweep's output folder and write its resolved ``config.yaml``."""
    import yaml

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.yaml").write_text(yaml.safe_dump(dict(config), sort_keys=False), "utf-8")
    return out_dir


def check_seeds(seeds: Any) -> None:
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise ConfigError(f"seeds must be a non-empty list of integers, got {seeds!r}")


def check_names(key: str, value: Any, known: Iterable[str]) -> None:
    """``value`` must be a non-empty list of distinct names out of ``known``."""
    known = list(known)
    if not isinstance(value, list) or not value:
        raise ConfigError(f"{key} must be a non-empty list (known: {known}), got {value!r}")
    for v in value:
        if v not in known:
            raise ConfigError(f"{key}: unknown name {v!r} (known: {known})")
    if len(set(value)) != len(value):
        raise ConfigError(f"{key}: names repeated in {value!r}")


def check_keys(key: str, value: Any, known: Mapping[str, Any] | Iterable[str]) -> None:
    """``value`` must be a mapping whose keys are all in ``known``."""
    if not isinstance(value, dict):
        raise ConfigError(f"{key} must be a mapping, got {value!r}")
    known = set(known)
    for k in value:
        if k not in known:
            raise ConfigError(f"{key}.{k}: unknown key (known: {sorted(known)})")


def run_or_reuse(
    out_dir: Path,
    runs: list[tuple[tuple, str, dict[str, Any]]],
    progress: bool = True,
) -> dict[tuple, dict]:
    """Train each ``(key, relative run folder, train config)`` into ``out_dir / folder``, unless
    its ``summary.json`` holds the same configuration (then reuse it); ``{key: summary}``."""
    from tqdm.auto import tqdm

    from . import train as train_mod

    for _, _, cfg in runs:  # validate every run before training any
        train_mod.validate_train(cfg)
    summaries = {}
    bar = tqdm(runs, desc="runs", unit="run", disable=not progress)
    for key, rel, cfg in bar:
        bar.set_postfix_str(rel)
        run_dir = out_dir / rel
        path = run_dir / "summary.json"
        summary = None
        if path.is_file():
            old = json.loads(path.read_text("utf-8"))
            if same_config(old.get("config"), cfg):
                summary = old
        if summary is None:
            summary = train_mod.train(cfg, run_dir, progress=False, stream=False)
            summary.pop("state", None)
        summaries[key] = summary
    bar.close()
    return summaries


def eval_config(ev: dict, heuristics: bool) -> dict:
    """A run's ``eval`` block: ``ev`` itself, or (``heuristics=False``) with no heuristics,
    for the runs of a seed other than the one that evaluates them (every run of a seed
    evaluates on the same drops)."""
    return dict(ev) if heuristics else {**ev, "heuristics": []}


def same_config(old: dict | None, new: dict) -> bool:
    """Whether a finished run's configuration ``old`` (its ``summary.json``) is the run ``new``
    asks for. Equal dictionaries are; so is an ``old`` that lacks ``env`` or ``trainer`` keys
    added to the code since, when ``new`` holds them at their defaults (the scenario's or the
    algorithm's ``DEFAULT_CONFIG``: a new option's default keeps the old behaviour), so adding
    an option does not retrain every finished run."""
    if not isinstance(old, dict):
        return False
    if old == new:
        return True
    if set(old) != set(new):
        return False
    import algorithms
    from cfmimo_jax import envs

    try:
        defaults = {
            "env": envs.default_config(new["scenario"]),
            "trainer": algorithms.default_config(new["algorithm"]),
        }
    except (KeyError, ValueError):
        return False
    filled = dict(old)
    for k, dflt in defaults.items():
        if isinstance(old.get(k), dict) and isinstance(new.get(k), dict):
            added = {kk: dflt[kk] for kk in new[k] if kk not in old[k] and kk in dflt}
            filled[k] = {**added, **old[k]}
    return filled == new


def read_metrics(run_dir: Path) -> list[dict[str, Any]]:
    """The rows of a run's ``metrics.jsonl`` (empty when the file is missing)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        return []
    return [json.loads(x) for x in path.read_text("utf-8").splitlines() if x.strip()]


def mean_ci(x) -> tuple[float, float]:
    """Mean and 95 % Student-t half-width over seeds (NaN for one seed)."""
    x = np.asarray(x, float)
    return float(np.mean(x)), _ci95(x)


def curve_over_seeds(runs_rows: list[list[dict]], key: str, x_scale: float = 1.0):
    """``(x, mean, half-width)`` of metric ``key`` over the seeds' metric rows, per update
    (the runs cut to the shortest; ``x = env_steps / x_scale``); ``None`` when a run lacks it."""
    if not runs_rows or any(not rows or key not in rows[0] for rows in runs_rows):
        return None
    n = min(len(rows) for rows in runs_rows)
    x = np.array([r["env_steps"] for r in runs_rows[0][:n]], float) / x_scale
    y = np.array([[r[key] for r in rows[:n]] for rows in runs_rows], float)
    if len(runs_rows) < 2:
        return x, y[0], np.full(n, np.nan)
    half = np.array([_ci95(y[:, i]) for i in range(n)])
    return x, y.mean(axis=0), half
