"""``cfmimo reproduce mobile-ap``: configuration, orchestration, the comparison tables, the
convergence measure and the AP trajectories.

The training runs of the sweep are replaced by a recording stand-in that writes a summary, a
``metrics.jsonl`` and (but for one run, standing in for a run from before the file existed) an
``eval_samples.npz`` of per-slot sum SEs; the configurations are the tiny real ones and pass
``validate_train``. The tables are checked against means, Student-t intervals, per-seed
improvements, convergence points and pooled percentiles computed here by hand. The trajectory
of a (freshly initialised, checkpointed) MADDPG policy is checked against the evaluation of
``cfmimo train`` on the same held-out drop.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from cfmimo_cli import reproduce_mobile as rm
from cfmimo_cli.config import ConfigError, load_config
from cfmimo_cli.main import main

ROOT = Path(__file__).resolve().parents[1]

T3 = 4.303  # two-sided 95 % Student t quantile, 2 degrees of freedom
T2 = 12.706  # the same, 1 degree of freedom
TINY = {
    "n_envs": 2,
    "n_steps": 2,
    "n_updates": 4,
    "updates_per_chunk": 2,
    "buffer_size": 64,
    "batch_size": 4,
    "learning_starts": 4,
    "random_steps": 1,
    "hidden": [8],
}
TINY_MDGNN = {"n_envs": 2, "n_steps": 2, "n_updates": 4, "updates_per_chunk": 2, "hidden": 4}
MARL = [m for m in rm.METHODS if m not in rm.JOINT_ONLY]


def _config(*over):
    o = ["env.n_aps=2", "env.n_antennas=2", "env.n_ues=2", "env.episode_steps=2"]
    o += ["env.opt_steps=2", "eval.n_envs=2", "eval.n_steps=2"]
    o += [f"budget.{m}.{k}={v}" for m in MARL for k, v in TINY.items()]
    o += [f"budget.{m}.meta_batch=4" for m in MARL if m != "maddpg"]
    o += [f"budget.{m}.{k}={v}" for m in rm.JOINT_ONLY for k, v in TINY_MDGNN.items()]
    return load_config(None, o + list(over), command="reproduce_mobile_ap")


def _ci(x):
    x = np.asarray(x, float)
    t = {2: T2, 3: T3}[len(x)]
    return t * x.std(ddof=1) / math.sqrt(len(x))


def test_run_config_and_validation():
    from cfmimo_cli import train as train_mod

    cfg = _config()
    rm.validate(cfg)
    rc = rm.run_config(cfg, "move", "sf_maddpg", 2)
    assert rc["scenario"] == "mobile_ap" and rc["algorithm"] == "sf_maddpg" and rc["seed"] == 2
    assert rc["env"]["control"] == "move" and rc["env"]["n_aps"] == 2
    assert rc["trainer"]["n_updates"] == 4 and rc["trainer"]["hidden"] == [8]
    md = rm.run_config(cfg, "joint", "mdgnn_2d", 0)
    assert md["algorithm"] == "mdgnn" and md["trainer"]["dims"] == 2
    assert md["env"]["control"] == "joint" and md["trainer"]["hidden"] == 4
    pt = rm.run_config(cfg, "joint", "maddpg", 1, {"n_aps": 3, "n_ues": 4})
    assert pt["env"]["n_aps"] == 3 and pt["env"]["n_ues"] == 4 and pt["env"]["n_antennas"] == 2
    assert rc["eval"]["heuristics"] is None  # every heuristic unless told otherwise
    runs = {key: c for key, _, c in rm.sweep_runs(cfg)}
    # the heuristics once per (arch, seed): in the first method's runs (the same drops)
    for (a, m, s), c in runs.items():
        first = next(x for x in cfg["methods"] if rm.supports(x, a))
        assert (c["eval"]["heuristics"] == []) == (m != first), (a, m, s)
    train_mod.validate_train(rc)
    train_mod.validate_train(md)
    # MDGNN (no mobility action) runs in the joint architecture only
    runs = rm.sweep_runs(dict(cfg, seeds=[0]))
    keys = [k for k, _, _ in runs]
    assert ("joint", "mdgnn_3d", 0) in keys and ("move", "mdgnn_3d", 0) not in keys
    assert len(keys) == len(rm.METHODS) + len(MARL)
    # the embedded default: configs/mobile_ap_maddpg.yaml's budget, MDGNN its own
    d = load_config(None, [], command="reproduce_mobile_ap")
    full = rm.run_config(d, "joint", "sf_maddpg", 0)
    assert full["env"]["n_aps"] == 9 and full["env"]["n_ues"] == 6
    assert full["env"]["n_antennas"] == 8 and full["env"]["episode_steps"] == 20
    assert full["trainer"]["n_updates"] == 200 and full["trainer"]["n_envs"] == 16
    assert full["trainer"]["n_steps"] == 20 and full["trainer"]["batch_size"] == 256
    assert rm.run_config(d, "joint", "mdgnn_1d", 0)["trainer"]["n_updates"] == 100
    assert d["seeds"] == [0, 1, 2] and d["arch"] == ["joint", "move"] and d["grid"] == []
    pts = [{"n_aps": 2}, {"n_aps": 3}]
    for bad, match in (
        ({"seeds": []}, "seeds"),
        ({"arch": ["pi"]}, "arch"),
        ({"methods": ["sac"]}, "methods"),
        ({"env": {"control": "move"}}, "env.control"),
        ({"env": {"n_apz": 3}}, "env.n_apz"),
        ({"budget": {"mdgnn_1d": {"dims": 2}}}, "budget.mdgnn_1d.dims"),
        ({"budget": {"maddpg": {"dims": 2}}}, "budget.maddpg.dims"),
        ({"budget": {"ppo": {}}}, "budget.ppo"),
        ({"eval": {"n_env": 3}}, "eval.n_env"),
        ({"convergence": {"metric": "sum_se", "frac": 1.5, "window": 2}}, "convergence.frac"),
        ({"convergence": {"metric": "sum_se", "frac": 0.9, "window": 0}}, "convergence.window"),
        ({"convergence": {"metric": "", "frac": 0.9, "window": 2}}, "convergence.metric"),
        ({"convergence": {"metric": "a", "frac": 0.9, "window": 2, "x": 1}}, "convergence.x"),
        ({"trajectories": ["teleport"]}, "trajectories"),
        ({"trajectories": "sf_maddpg"}, "trajectories"),
        ({"grid": {"M": {}}}, "grid"),
        ({"grid": [{"name": "M", "x": "n_apz", "points": pts}]}, r"grid\[0\].x"),
        ({"grid": [{"name": "M", "x": "control", "points": pts}]}, r"grid\[0\].x"),
        ({"grid": [{"name": "M", "x": "n_aps", "points": []}]}, r"grid\[0\].points"),
        (
            {"grid": [{"name": "M", "x": "n_aps", "points": [{"n_aps": 2}, {"n_ues": 3}]}]},
            r"grid\[0\].points\[1\]",
        ),
        (
            {"grid": [{"name": "M", "x": "n_aps", "points": [{"n_aps": 2, "control": "move"}]}]},
            r"grid\[0\].points\[0\].control",
        ),
        (
            {"grid": [{"name": "M", "x": "n_aps", "points": [{"n_aps": 2}, {"n_aps": 2}]}]},
            r"grid\[0\].points",
        ),
        ({"grid": [{"name": "a/b", "x": "n_aps", "points": pts}]}, r"grid\[0\].name"),
        ({"grid": [{"name": "M", "x": "n_aps", "points": pts, "y": 1}]}, r"grid\[0\].y"),
        (
            {"grid": [{"name": "M", "x": "n_aps", "points": pts, "archs": ["pi"]}]},
            r"grid\[0\].archs",
        ),
        (
            {"grid": [{"name": "M", "x": "n_aps", "points": pts, "methods": ["sac"]}]},
            r"grid\[0\].methods",
        ),
        ({"grid": [{"name": "M", "x": "n_aps", "points": pts}] * 2}, "grid: names"),
        ({"grid": [{"name": "M", "x": "n_aps", "points": pts, "seeds": []}]}, r"grid\[0\].seeds"),
        (
            {"grid": [{"name": "M", "x": "n_aps", "points": pts, "seeds": [0.5]}]},
            r"grid\[0\].seeds",
        ),
        (
            {"grid": [{"name": "M", "x": "n_aps", "points": pts, "budget": {"sac": {}}}]},
            r"grid\[0\].budget.sac",
        ),
        (
            {"grid": [{"name": "M", "x": "n_aps", "points": pts, "budget": [1]}]},
            r"grid\[0\].budget",
        ),
        (
            {
                "grid": [
                    {
                        "name": "M",
                        "x": "n_aps",
                        "points": pts,
                        "budget": {"maddpg": {"n_updatez": 1}},
                    }
                ]
            },
            r"grid\[0\].budget.maddpg.n_updatez",
        ),
        (
            {
                "grid": [
                    {"name": "M", "x": "n_aps", "points": pts, "budget": {"mdgnn_2d": {"dims": 3}}}
                ]
            },
            r"grid\[0\].budget.mdgnn_2d.dims",
        ),
        ({"extra": 1}, "extra"),
    ):
        with pytest.raises(ConfigError, match=match):
            rm.validate(dict(cfg, **bad))


def test_docstring_grid_example(tmp_path):
    """The reduced grid of the module docstring is a valid configuration: 2 + 2 x 2 x 3 points
    x methods with the documented overrides."""
    doc = rm.__doc__
    i = doc.index("    grid:\n")
    path = tmp_path / "grid.yaml"
    path.write_text(doc[i : doc.index("\n\n", i)])
    cfg = load_config(path, ["methods=[maddpg, sf_maddpg]", "seeds=[0]"], "reproduce_mobile_ap")
    rm.validate(cfg)
    runs = rm.sweep_runs(cfg)
    assert len(runs) == 16
    assert [s["name"] for s in cfg["grid"]] == ["M", "N", "K"]
    assert ("K", 1, "joint", "sf_maddpg", 0) in [k for k, _, _ in runs]
    rel = {k: r for k, r, _ in runs}
    assert rel[("N", 0, "joint", "maddpg", 0)] == "grid/N/n_antennas_2/joint/maddpg/seed0"
    cfg_n = {k: c for k, _, c in runs}[("N", 1, "joint", "maddpg", 0)]
    assert cfg_n["env"]["n_antennas"] == 8 and cfg_n["env"]["n_aps"] == 4


def test_cpu_grid_config_seeds_and_budget():
    """configs/reproduce_mobile_ap_grid_cpu.yaml: a valid grid whose figures run their own
    seeds and budget (over the sweep's), the heuristics in the first method's runs only, and
    the main comparison's runs unchanged by it."""
    over = ["methods=[maddpg, sf_maddpg]", "seeds=[0, 1, 2]", "budget.maddpg.n_updates=60"]
    cfg = load_config(
        ROOT / "configs/reproduce_mobile_ap_grid_cpu.yaml", over, "reproduce_mobile_ap"
    )
    rm.validate(cfg)
    runs = {k: c for k, _, c in rm.sweep_runs(cfg)}
    grid = {k: c for k, c in runs.items() if len(k) == 5}
    assert len(runs) - len(grid) == 2 * 2 * 3 and len(grid) == 2 * 3 * 2 * 3 + 3 * 2
    assert {k[4] for k in grid} == {0, 1, 2} and {k[2] for k in grid} == {"joint"}
    assert all(c["trainer"]["n_updates"] == 40 for c in grid.values())
    assert runs[("joint", "maddpg", 1)]["trainer"]["n_updates"] == 60
    assert runs[("joint", "maddpg", 1)] == rm.run_config(cfg, "joint", "maddpg", 1)
    assert {k[3] for k, c in grid.items() if c["eval"]["heuristics"] != []} == {"maddpg"}
    big = grid[("K", 2, "joint", "sf_maddpg", 0)]["env"]
    assert (big["n_aps"], big["n_ues"], big["n_antennas"]) == (16, 9, 8)
    n2 = grid[("N", 0, "joint", "maddpg", 0)]["env"]
    assert (n2["n_aps"], n2["n_ues"], n2["n_antennas"]) == (9, 6, 2)
    # a figure's budget reaches its runs only, over the sweep's
    cfg["grid"][0]["budget"] = {"sf_maddpg": {"lr_actor": 0.01}}
    runs = {k: c for k, _, c in rm.sweep_runs(cfg)}
    assert runs[("M", 0, "joint", "sf_maddpg", 0)]["trainer"]["lr_actor"] == 0.01
    assert runs[("M", 0, "joint", "maddpg", 0)]["trainer"]["n_updates"] == 60
    assert runs[("joint", "sf_maddpg", 0)]["trainer"]["lr_actor"] != 0.01


def test_updates_to_fraction_hand_cases():
    # window 1: the first update at 95 % of the rise 0 -> 10
    assert rm.updates_to_fraction([0, 0, 10, 10, 10], 0.95, 1) == 3
    # window 2: trailing means 0, 0, 5, 10, 10
    assert rm.updates_to_fraction([0, 0, 10, 10, 10], 0.95, 2) == 4
    # half of the rise: the trailing mean 5 at update 3
    assert rm.updates_to_fraction([0, 0, 10, 10, 10], 0.5, 2) == 3
    # a falling curve (e.g. a penalty): 10 -> 0
    assert rm.updates_to_fraction([10, 5, 0, 0], 0.95, 1) == 3
    assert rm.updates_to_fraction([3.0, 3.0, 3.0], 0.95, 4) == 1  # flat
    assert rm.updates_to_fraction([7.0], 0.95, 10) == 1
    # invariant under y -> a y + b (a != 0): the fraction of the rise is
    y = np.array([1.0, 2.0, 4.0, 8.0, 9.0, 9.5, 9.4, 9.6])
    u = rm.updates_to_fraction(y, 0.9, 3)
    assert u == rm.updates_to_fraction(-2.5 * y + 40.0, 0.9, 3)
    # by hand: trailing means (w = 3): 1, 1.5, 2.333, 4.667, 7, 8.833, 9.3, 9.5; rise 8.5,
    # 90 % of it reached at 1 + 7.65 = 8.65 -> update 6 (8.833)
    assert u == 6
    with pytest.raises(ValueError, match="y"):
        rm.updates_to_fraction([], 0.95, 2)


BASE = {"maddpg": 10.0, "sf_maddpg": 15.0, "airmn": 12.0, "mdgnn_1d": 11.0}


def _method_of(cfg):
    if cfg["algorithm"] == "mdgnn":
        return f"mdgnn_{cfg['trainer']['dims']}d"
    return cfg["algorithm"]


def _learned(arch, method, seed, n_aps=2):
    return BASE[method] * (1.0 if arch == "joint" else 0.9) + seed + 0.5 * (n_aps - 2)


def _fake_eval(arch, method, seed, n_aps=2):
    pol = {"static_fractional": 8.0 + seed, "gradient_oracle": 20.0 + seed}
    if arch == "joint":
        pol["static_equal"] = 7.5 + seed
    pol = {k: v + 0.5 * (n_aps - 2) for k, v in pol.items()}
    pol["learned (greedy)"] = _learned(arch, method, seed, n_aps)
    pol["learned (sampled)"] = pol["learned (greedy)"] - 0.2
    return {
        k: {
            "sum_se": v,
            "min_se": v / 4,
            "penalty": 0.01 * seed,
            "power_frac": 0.5 if k.startswith("learned") else 1.0,
            "move_m": 3.0 if k.startswith("learned") and arch == "move" else 0.0,
            "reward": v,
            "ci95": {},
        }
        for k, v in pol.items()
    }


def _fake_samples(arch, method, seed):
    """Four per-slot sum SEs per policy (2 drops x 2 slots) around its mean."""
    return {
        f"{p}/sum_se": np.float32(e["sum_se"] + 0.25 * np.arange(-2, 2))
        for p, e in _fake_eval(arch, method, seed).items()
    }


# episode return per update: SF-MADDPG rises one update earlier (but for seed 2)
RISE = {"maddpg": [0.0, 0.0, 10.0, 10.0], "sf_maddpg": [0.0, 10.0, 10.0, 10.0]}


def _returns(method, seed):
    r = RISE.get(method, [0.0, 5.0, 10.0, 10.0])
    return RISE["maddpg"] if (method, seed) == ("sf_maddpg", 2) else r


def test_sweep_orchestration_and_tables(tmp_path, monkeypatch, capsys):
    from cfmimo_cli import train as train_mod

    calls = []

    def fake_train(cfg, out_dir, **kw):
        a, m, s, n = cfg["env"]["control"], _method_of(cfg), cfg["seed"], cfg["env"]["n_aps"]
        calls.append((a, m, s, n))
        evaluation = _fake_eval(a, m, s, n)
        if cfg["eval"]["heuristics"] == []:  # as cfmimo train: the learned policy only
            evaluation = {k: e for k, e in evaluation.items() if k.startswith("learned")}
        summary = {"config": cfg, "evaluation": evaluation, "env_steps": 32}
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").write_text(json.dumps(summary))
        if (a, m, s) != ("move", "airmn", 1) and n == 2:  # that one stands in for an older run
            kept = _fake_samples(a, m, s)
            kept = {k: v for k, v in kept.items() if k.split("/")[0] in evaluation}
            np.savez(out_dir / "eval_samples.npz", **kept)
        rows = [
            {"update": u + 1, "env_steps": 8 * (u + 1), "episode_return": r, "sum_se": r + s}
            for u, r in enumerate(_returns(m, s))
        ]
        (out_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return dict(summary, state=None)

    monkeypatch.setattr(train_mod, "train", fake_train)
    # building every trainer to validate it takes seconds each here; the tiny configurations
    # pass the real check in test_run_config_and_validation
    monkeypatch.setattr(train_mod, "validate_train", lambda cfg: None)
    grid = [
        {
            "name": "M",
            "x": "n_aps",
            "archs": ["joint"],
            "methods": ["maddpg", "sf_maddpg"],
            "seeds": [1, 2],  # the figure's own seeds
            "points": [{"n_aps": 3}, {"n_aps": 4}],
        }
    ]
    cfg = _config(
        "methods=[maddpg, sf_maddpg, airmn, mdgnn_1d]", "convergence.window=1", "seeds=[0, 1, 2]"
    )
    cfg["grid"] = grid
    res = rm.reproduce(cfg, tmp_path, progress=False)
    # joint: 4 methods, move: 3 (no MDGNN); 3 seeds each; grid: 2 points x 2 methods x 2 seeds
    assert len(calls) == (4 + 3) * 3 + 2 * 2 * 2
    assert ("move", "mdgnn_1d", 0, 2) not in calls
    for name in (
        "comparison.csv",
        "comparison.json",
        "comparison.md",
        "claims.csv",
        "convergence.csv",
        "grid.csv",
        "sum_se.png",
        "se_cdf.png",
        "se_cdf_archs.png",
        "convergence_return.png",
        "convergence_sum_se.png",
        "sum_se_vs_M.png",
    ):
        assert (tmp_path / name).is_file(), name
    assert (tmp_path / "grid/M/n_aps_3/joint/sf_maddpg/seed2/summary.json").is_file()
    assert not (tmp_path / "grid/M/n_aps_3/joint/sf_maddpg/seed0").exists()
    err = capsys.readouterr().err
    notes = [x for x in err.splitlines() if "eval_samples.npz" in x]
    assert len(notes) == 1 and "move/airmn/seed1" in notes[0]
    assert "has no checkpoint" in err and not (tmp_path / "trajectories.png").exists()

    rows = {(r["arch"], r["policy"]): r for r in res["table"]}
    assert set(rows) == {
        ("joint", p)
        for p in ("maddpg", "sf_maddpg", "airmn", "mdgnn_1d")
        + ("static_fractional", "static_equal", "gradient_oracle")
    } | {
        ("move", p)
        for p in ("maddpg", "sf_maddpg", "airmn", "static_fractional", "gradient_oracle")
    }
    sf, mad = np.array([15.0, 16.0, 17.0]), np.array([10.0, 11.0, 12.0])
    frac, orc = np.array([8.0, 9.0, 10.0]), np.array([20.0, 21.0, 22.0])
    r = rows[("joint", "sf_maddpg")]
    assert r["sum_se"] == pytest.approx(16.0) and r["sum_se_ci95"] == pytest.approx(_ci(sf))
    assert r["min_se"] == pytest.approx(4.0) and r["penalty"] == pytest.approx(0.01)
    assert r["power_frac"] == pytest.approx(0.5) and r["move_m"] == 0.0
    g = 100 * (sf / mad - 1)
    assert r["vs_maddpg_pct"] == pytest.approx(g.mean())
    assert r["vs_maddpg_pct_ci95"] == pytest.approx(_ci(g))
    assert r["vs_fractional_pct"] == pytest.approx(np.mean(100 * (sf / frac - 1)))
    assert r["vs_oracle_pct"] == pytest.approx(np.mean(100 * (sf / orc - 1)))
    assert rows[("joint", "maddpg")]["vs_maddpg_pct"] == pytest.approx(0.0)
    assert rows[("move", "sf_maddpg")]["move_m"] == 3.0
    mv = 0.9 * 15.0 + np.arange(3.0)
    assert rows[("move", "sf_maddpg")]["sum_se"] == pytest.approx(mv.mean())
    assert rows[("joint", "static_equal")]["vs_fractional_pct"] == pytest.approx(
        np.mean(100 * (np.array([7.5, 8.5, 9.5]) / frac - 1))
    )
    # the paper's claims next to ours (per-seed improvements); co_maddpg etc. did not run
    claims = {c["claim"]: c for c in res["claims"]}
    c = claims["sf_maddpg over maddpg (joint)"]
    assert c["paper_pct"] == 45.97 and c["ours_pct"] == pytest.approx(g.mean())
    air = 12.0 + np.arange(3.0)
    c = claims["sf_maddpg over airmn (joint)"]
    assert c["paper_pct"] == 25.29 and c["ours_pct"] == pytest.approx(np.mean(100 * (sf / air - 1)))
    assert claims["sf_maddpg over static_fractional (joint)"]["paper_pct"] == 81.63
    assert claims["sf_maddpg over mdgnn_1d (joint)"]["ours_pct"] == pytest.approx(
        np.mean(100 * (sf / (11.0 + np.arange(3.0)) - 1))
    )
    assert claims["sf_maddpg over co_maddpg (joint)"]["ours_pct"] is None
    c = claims["sf_maddpg: joint over single PI"]
    assert c["paper_pct"] == 8.2 and c["ours_pct"] == pytest.approx(np.mean(100 * (sf / mv - 1)))
    assert c["ours_pct_ci95"] == pytest.approx(_ci(100 * (sf / mv - 1)))
    assert claims["airmn: joint over single PI"]["paper_pct"] == 15.59
    gains = {r["policy"]: r for r in res["arch_gain"]}
    assert set(gains) == {"maddpg", "sf_maddpg", "airmn", "static_fractional", "gradient_oracle"}
    assert gains["static_fractional"]["joint_over_move_pct"] == pytest.approx(0.0)
    assert gains["maddpg"]["paper_pct"] is None
    md = (tmp_path / "comparison.md").read_text()
    assert "+45.97" in md and "not run" in md and "+8.20" in md and "1607" in md

    # convergence (window 1, 95 %): MADDPG at update 3 (12 episodes: 8 env steps per update,
    # 2 slots per episode), SF-MADDPG at 2, 2, 3 -> 8, 8, 12 episodes; faster by 1 - 28/3/12
    conv = {(r["arch"], r["method"]): r for r in res["convergence"]}
    c = conv[("joint", "sf_maddpg")]
    assert c["updates_to_frac"] == pytest.approx(7 / 3)
    assert c["updates_to_frac_ci95"] == pytest.approx(_ci([2, 2, 3]))
    assert c["episodes_to_frac"] == pytest.approx(28 / 3)
    assert c["faster_than_maddpg_pct"] == pytest.approx(100 * (1 - (28 / 3) / 12))
    assert c["final"] == pytest.approx(10.0) and c["paper_faster_pct"] == 43.53
    assert conv[("joint", "maddpg")]["faster_than_maddpg_pct"] == pytest.approx(0.0)
    assert conv[("joint", "maddpg")]["paper_episodes"] == 2846
    assert conv[("move", "airmn")]["episodes_to_frac"] == pytest.approx(12.0)  # 0, 5, 10, 10
    assert ("move", "mdgnn_1d") not in conv
    cur = res["curves"]["sum_se"]["joint"]["sf_maddpg"]
    assert cur["episodes"] == [4.0, 8.0, 12.0, 16.0]
    ys = np.array([[0, 10, 10, 10], [1, 11, 11, 11], [2, 2, 12, 12]], float)
    assert cur["mean"] == pytest.approx(ys.mean(axis=0).tolist())
    assert cur["ci95"][2] == pytest.approx(_ci(ys[:, 2]))

    # the CDF pools the seeds' per-slot samples (move/airmn/seed1 has none)
    cdf = res["se_cdf"]
    x = np.concatenate(
        [_fake_samples("joint", "sf_maddpg", s)["learned (greedy)/sum_se"] for s in range(3)]
    ).astype(np.float64)
    st = cdf["joint"]["sf_maddpg"]
    assert st["n"] == 12 and st["mean"] == pytest.approx(x.mean(), rel=1e-6)
    assert st["p5"] == pytest.approx(np.percentile(x, 5), rel=1e-6)
    assert st["median"] == pytest.approx(np.median(x), rel=1e-6)
    assert cdf["move"]["airmn"]["n"] == 8 and cdf["move"]["static_fractional"]["n"] == 12
    assert "static_equal" not in cdf["move"] and "mdgnn_1d" not in cdf["move"]
    saved = json.loads((tmp_path / "comparison.json").read_text())
    assert saved["se_cdf"]["move"]["airmn"]["n"] == 8

    # the grid: sum SE per point; SF-MADDPG's per-seed improvement over each policy
    gr = {(r["value"], r["policy"]): r for r in res["grid"]}
    assert set(v for v, _ in gr) == {3, 4}
    r = gr[(4, "maddpg")]
    y4 = 10.0 + np.array([1.0, 2.0]) + 1.0  # seeds 1 and 2
    assert r["n_seeds"] == 2
    assert r["sum_se"] == pytest.approx(y4.mean()) and r["sum_se_ci95"] == pytest.approx(_ci(y4))
    assert r["sf_maddpg_over_pct"] == pytest.approx(np.mean(100 * ((y4 + 5.0) / y4 - 1)))
    assert gr[(3, "sf_maddpg")]["sf_maddpg_over_pct"] is None
    assert gr[(3, "gradient_oracle")]["sum_se"] == pytest.approx(22.0)

    # a second call reuses every finished run; a changed budget retrains that method only
    calls.clear()
    rm.reproduce(cfg, tmp_path, progress=False)
    assert calls == []
    cfg2 = _config(
        "methods=[maddpg, sf_maddpg, airmn, mdgnn_1d]",
        "convergence.window=1",
        "seeds=[0, 1, 2]",
        "budget.airmn.lr_actor=0.01",
    )
    cfg2["grid"] = grid
    rm.reproduce(cfg2, tmp_path, progress=False)
    assert sorted(calls) == sorted((a, "airmn", s, 2) for a in ("joint", "move") for s in range(3))


def test_trajectory_matches_the_evaluation(tmp_path):
    """The AP path of one evaluation episode, from a run's checkpoint: drop 0 of the held-out
    drops of ``cfmimo train``'s evaluation, the same sum SE per slot as that evaluation."""
    import jax

    from cfmimo_cli import train as train_mod

    cfg = _config("methods=[maddpg]", "arch=[joint]", "seeds=[3]", "eval.n_steps=2")
    cfg["trajectories"] = ["maddpg", "static_fractional"]
    cfg["eval"]["heuristics"] = ["static_fractional"]
    rc = rm.run_config(cfg, "joint", "maddpg", 3)
    env, env_params, trainer = train_mod.build(rc)
    state = jax.jit(trainer.init)(jax.random.PRNGKey(7))
    run_dir = tmp_path / "joint/maddpg/seed3"
    manager = train_mod._manager(run_dir)
    train_mod._save(manager, 1, state)
    manager.wait_until_finished()
    items = rm.trajectories(cfg, tmp_path, {("joint", "maddpg", 3): {"config": rc}})
    assert [(it["arch"], it["policy"]) for it in items] == [
        ("joint", "maddpg"),
        ("joint", "static_fractional"),
    ]
    _, kept = train_mod.evaluate_run(rc, state.params, env, env_params, trainer, None, True)
    T = env.episode_steps
    for it in items:
        ap, ue, se = (np.asarray(it[k]) for k in ("ap", "ue", "sum_se"))
        assert ap.shape == (T + 1, 2, 2) and ue.shape == (2, 2) and se.shape == (T,)
        name = "learned (greedy)" if it["policy"] == "maddpg" else it["policy"]
        ref = kept[name]["sum_se"][0]  # drop 0, its slots
        np.testing.assert_allclose(se, ref, rtol=2e-5)
        assert np.all((ap >= 0.0) & (ap <= env.side))
    static = np.asarray(items[1]["ap"])
    np.testing.assert_allclose(static, np.broadcast_to(static[0], static.shape))
    steps = np.linalg.norm(np.diff(np.asarray(items[0]["ap"]), axis=0), axis=-1)
    assert np.all(steps <= env.max_step + env.d_min + 1e-3)  # a move, then (22b)'s push
    rm.plot_trajectories(items, env.side, tmp_path / "trajectories.png")
    assert (tmp_path / "trajectories.png").stat().st_size > 0


def test_cli_print_config(capsys):
    assert main(["reproduce", "mobile-ap", "seeds=[4]", "arch=[move]", "--print-config"]) == 0
    out = capsys.readouterr().out
    assert "seeds:\n- 4" in out and "arch:\n- move" in out
    assert main(["reproduce", "mobile-ap", "env.control=move", "--print-config"]) == 2
    assert "env.control" in capsys.readouterr().err
    assert main(["reproduce", "mobile-ap", "arch=[pi]", "--print-config"]) == 2
    assert "arch" in capsys.readouterr().err
