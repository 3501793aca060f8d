"""``cfmimo reproduce aps-gnn`` on a tiny network: the sweep, its table, plots and reuse."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from scipy import stats

from cfmimo_cli import reproduce as rp
from cfmimo_cli.config import ConfigError, load_default

TINY = {"n_aps": 4, "n_ues": 2, "window_slots": 2, "n_windows": 4, "history": 2, "radius_m": 200}
BUDGET = {
    "n_envs": 4,
    "n_steps": 2,
    "n_updates": 2,
    "updates_per_chunk": 1,
    "n_minibatches": 2,
    "epochs": 1,
    "pretrain_updates": 2,
    "hidden": 8,
}


def _config():
    cfg = load_default("reproduce")
    cfg.update(
        seeds=[0, 1],
        scenarios=["medium_pedestrian"],
        methods=["aps_gnn", "unconstrained_w1.5"],
        latency_repeats=2,
    )
    cfg["sizes"]["medium"] = dict(TINY)
    cfg["budget"]["medium"] = dict(BUDGET)
    cfg["eval"].update(n_envs=4, n_steps=2, heuristics=["1-strongest", "2-strongest", "all-on"])
    return cfg


def test_method_overrides_and_run_config():
    assert rp.method_overrides("unconstrained_w0.5") == {
        "algorithm": "mappo",
        "trainer": {"cost_weight": 0.5},
    }
    cfg = rp.run_config(_config(), "medium_pedestrian", "aps_gnn", 1)
    assert cfg["algorithm"] == "mappo_lagr" and cfg["seed"] == 1
    assert cfg["env"]["n_aps"] == 4 and cfg["env"]["mobility"] == "pedestrian"
    c2 = rp.run_config(_config(), "large_vehicular", "aps_gnn_no_pretrain", 0)
    assert c2["env"]["n_aps"] == 64 and c2["env"]["mobility"] == "vehicular"
    assert c2["trainer"]["pretrain_updates"] == 0 and c2["trainer"]["pretrain_policy"] is None
    assert (
        rp.run_config(_config(), "medium_pedestrian", "aps_gnn_no_gru", 0)["trainer"]["encoder"]
        == "mlp"
    )
    team = rp.run_config(_config(), "medium_pedestrian", "aps_gnn_team", 0)
    assert team["algorithm"] == "mappo_lagr" and team["trainer"]["team_reward"] is True
    assert cfg["trainer"]["team_reward"] is False  # the paper's local reward and cost
    # the paper's methods train as published whatever the embedded default's controls
    for m in ("aps_gnn", "ppo_lagr", "mat_lagr", "aps_gnn_team"):
        t = rp.run_config(_config(), "medium_pedestrian", m, 0)
        assert t["trainer"]["lambda_update"] == "plain" and t["trainer"]["select"] == "last"
        assert t["trainer"]["gamma"] == 0.9 and t["trainer"]["ent_target"] is None
        assert t["env"]["signals"] == "local"
    rob = rp.run_config(_config(), "medium_pedestrian", "aps_gnn_robust", 0)
    assert rob["env"]["signals"] == "difference" and rob["trainer"]["select"] == "best"
    assert rob["trainer"]["lambda_update"] == "pid" and rob["trainer"]["gamma"] == 0.0
    with pytest.raises(ConfigError, match="unknown method"):
        rp.method_overrides("unconstrained_wx")


def test_ci95_is_student_t():
    x = np.array([1.0, 2.5, 2.0, 4.0])
    want = stats.t.ppf(0.975, 3) * np.std(x, ddof=1) / np.sqrt(4)
    assert rp._ci95(x) == pytest.approx(want, rel=1e-3)
    assert math.isnan(rp._ci95(np.array([1.0])))


def _fake_summary(seed, method, base):
    ev = {
        "learned (greedy)": {k: base + seed + (0.5 if method == "b" else 0.0) for k in rp.METRICS},
        "1-strongest": {k: 10.0 * (seed + 1) for k in rp.METRICS},
    }
    return {
        "evaluation": ev,
        "latency_s": {"learned": 1e-3 * (seed + 1), "k-strongest": 1e-4},
        "config": {"env": {"se_target": 2.0}},
    }


def test_aggregate_means_and_intervals_over_seeds():
    cfg = dict(_config(), methods=["a", "b"], seeds=[0, 1, 2])
    summ = {
        ("medium_pedestrian", m, s): _fake_summary(s, m, 1.0) for m in ("a", "b") for s in (0, 1, 2)
    }
    res = rp.aggregate(cfg, summ)
    rows = {r["policy"]: r for r in res["table"]}
    assert set(rows) == {"a", "b", "1-strongest"}
    assert rows["a"]["mean_se"] == pytest.approx(2.0)  # 1 + mean(0, 1, 2)
    assert rows["b"]["active_aps"] == pytest.approx(2.5)
    assert (
        rows["1-strongest"]["cost"] == pytest.approx(20.0) and rows["1-strongest"]["n_seeds"] == 3
    )
    want = stats.t.ppf(0.975, 2) * 1.0 / np.sqrt(3)  # std of (0, 1, 2) is 1
    assert rows["a"]["frac_target_ci95"] == pytest.approx(want, rel=1e-3)
    lat = {r["policy"]: r["latency_ms"] for r in res["latency"]}
    assert lat == pytest.approx({"a": 2.0, "b": 2.0, "k-strongest": 0.1})
    assert res["se_target"] == 2.0


def test_reproduce_tiny_sweep(tmp_path, monkeypatch):
    cfg = dict(_config(), seeds=[0], methods=["aps_gnn"])  # several: test_aggregate_...
    cfg["eval"]["heuristics"] = ["1-strongest", "all-on"]
    res = rp.reproduce(cfg, tmp_path, progress=False)
    for f in ("comparison.csv", "comparison.json", "comparison.md", "latency.csv"):
        assert (tmp_path / f).is_file()
    for f in ("se_vs_active_aps.png", "latency.png"):
        assert (tmp_path / f).stat().st_size > 1000
    table = {r["policy"]: r for r in res["table"]}
    assert set(table) == {"aps_gnn", "aps_gnn (imitation start)", "1-strongest", "all-on"}
    assert table["all-on"]["active_aps"] == pytest.approx(4.0)  # every AP of the tiny network
    for method in ("aps_gnn",):
        summ = json.loads(
            (tmp_path / "medium_pedestrian" / method / "seed0" / "summary.json").read_text()
        )
        assert summ["config"]["trainer"]["n_updates"] == 2
        got = summ["evaluation"]["learned (greedy)"]["active_aps"]
        assert table[method]["active_aps"] == pytest.approx(got)
        start = summ["evaluation"]["imitation start (greedy)"]["mean_se"]
        assert table[f"{method} (imitation start)"]["mean_se"] == pytest.approx(start)
        assert table[f"{method} (imitation start)"]["kind"] == "start"
    with (tmp_path / "comparison.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 4 and "mean_se_ci95" in rows[0]
    lat = {r["policy"]: r["latency_ms"] for r in res["latency"]}
    assert set(lat) == {"aps_gnn", "k-strongest"}
    assert all(v > 0 for v in lat.values())

    # a second call reuses every finished run (no training)
    def boom(*a, **k):
        raise AssertionError("train() called for a finished run")

    monkeypatch.setattr("cfmimo_cli.train.train", boom)
    res2 = rp.reproduce(cfg, tmp_path, progress=False)
    assert json.dumps(res2["table"]) == json.dumps(res["table"])


def test_time_jitted(monkeypatch):
    """Shared latency timer (reproduce's latency table and bench/bench_latency.py)."""
    import jax.numpy as jnp

    from cfmimo_cli.timing import time_jitted

    # A scripted clock instead of real time (no timing assertion): compile start/end, then a
    # (start, end) pair per timed call with durations 1, 3, 2 s -> median 2 s, compile 5 s.
    ticks = iter([0.0, 5.0, 10.0, 11.0, 20.0, 23.0, 30.0, 32.0])
    monkeypatch.setattr("cfmimo_cli.timing.perf_counter", lambda: next(ticks))
    med, comp = time_jitted(lambda x: jnp.cumsum(x) * 2.0, jnp.ones(16), 3)
    assert (med, comp) == (2.0, 5.0)
    assert next(ticks, None) is None  # exactly 2 + 2 * repeats clock reads: warm-up untimed
    monkeypatch.undo()
    with pytest.raises(ValueError, match="repeats"):
        time_jitted(lambda x: x, jnp.ones(2), 0)


def test_same_config_reuses_runs_from_before_a_new_option():
    """A finished run is reused when its stored configuration equals the new one, or lacks
    env / trainer keys that the new one holds at their defaults (an option added since);
    any other difference retrains."""
    import copy

    import algorithms
    from cfmimo_cli._sweep import same_config
    from cfmimo_jax import envs

    new = {
        "seed": 0,
        "scenario": "mobile_ap",
        "algorithm": "maddpg",
        "env": envs.default_config("mobile_ap"),
        "trainer": algorithms.default_config("maddpg"),
        "eval": {"n_envs": 4, "n_steps": 2, "heuristics": None},
    }
    assert same_config(copy.deepcopy(new), new)
    old = copy.deepcopy(new)
    del old["env"]["power_map"], old["trainer"]["critic_input"]  # from before those options
    assert same_config(old, new)
    for path, value in ((("env", "power_map"), "scaled"), (("trainer", "critic_input"), "ego")):
        changed = copy.deepcopy(new)
        changed[path[0]][path[1]] = value  # not the default: the old run did not do this
        assert not same_config(old, changed)
    other = copy.deepcopy(new)
    other["env"]["n_aps"] = 3
    assert not same_config(new, other) and not same_config(other, new)
    extra = copy.deepcopy(new)
    extra["env"]["retired_option"] = 1  # an option the code no longer has
    assert not same_config(extra, new)
    assert not same_config(dict(new, seed=1), new)
    assert not same_config(None, new) and not same_config({"seed": 0}, new)
