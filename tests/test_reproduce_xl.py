"""``cfmimo reproduce xl-uplink``: configuration, orchestration, the comparison and timing tables.

The training runs are replaced by a recording stand-in that writes a summary (with
``train_wall_s``, the first-chunk / steady split and ``env_steps``), a ``metrics.jsonl`` and
(but for one run, standing in for a run from before the file existed) an ``eval_samples.npz``
of per-drop sum SEs; the configurations are the tiny real ones and pass ``validate_train``.
The aggregate is checked against means, Student-t intervals, optimiser fractions, times per
2000 episodes and pooled percentiles computed here by hand.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cfmimo_cli import reproduce_xl as rx
from cfmimo_cli.config import ConfigError, load_config
from cfmimo_cli.main import main

TINY = {
    "n_envs": 2,
    "n_steps": 2,
    "n_updates": 2,
    "updates_per_chunk": 1,
    "buffer_size": 64,
    "batch_size": 4,
    "learning_starts": 4,
    "random_steps": 1,
    "hidden": [8],
}


def _config(*over):
    o = ["env.n_bs=2", "env.bs_array=[2, 2]", "env.n_ues=2", "env.ue_array=[1, 1]"]
    o += ["env.n_realizations=2", "env.opt_steps=2", "eval.n_envs=2"]
    o += [f"budget.{m}.{k}={v}" for m in rx.METHODS for k, v in TINY.items()]
    o += ["budget.fl_ctce.n_fuzzy=2", "budget.fl_ctde.n_fuzzy=2"]
    return load_config(None, o + list(over), command="reproduce_xl_uplink")


def _fake_eval(variant, method, seed):
    base = {"l_mmse": 20.0, "mr": 8.0}[variant]
    bonus = {"fl_ctce": 0.4, "fl_ctde": 0.2, "maddpg": 0.0}[method]
    learned = base + bonus + 0.1 * seed
    pol = {"max_power": base - 1.0, "optimised": base + 1.0, "learned (greedy)": learned}
    pol["learned (sampled)"] = learned - 0.1
    return {
        k: {"sum_se": v, "min_se": v / 6, "power_frac": 0.7, "power_mw": 70.0, "ci95": {}}
        for k, v in pol.items()
    }


def test_run_config_and_validation():
    from cfmimo_cli import train as train_mod

    cfg = _config()
    rx.validate(cfg)
    rc = rx.run_config(cfg, "mr", "fl_ctde", 2)
    assert rc["scenario"] == "xl_uplink" and rc["algorithm"] == "fl_ctde" and rc["seed"] == 2
    assert rc["env"]["combiner"] == "mr" and rc["env"]["n_bs"] == 2
    assert rc["trainer"]["n_updates"] == 2 and rc["trainer"]["shared_parameters"] is False
    assert rx.run_config(cfg, "l_mmse", "maddpg", 0)["env"]["combiner"] == "l_mmse"
    # the heuristics (the same drops for every method of a seed) only in the first method's run
    assert rc["eval"]["heuristics"] == [] and cfg["methods"][0] == "fl_ctce"
    assert rx.run_config(cfg, "mr", "fl_ctce", 2)["eval"]["heuristics"] is None
    train_mod.validate_train(rc)
    d = load_config(None, [], command="reproduce_xl_uplink")
    full = rx.run_config(d, "l_mmse", "fl_ctce", 0)
    assert full["env"]["n_bs"] == 9 and full["env"]["bs_array"] == [9, 9]
    assert full["trainer"]["n_updates"] == 300 and full["trainer"]["n_fuzzy"] == 3
    for bad, match in (
        ({"seeds": [0, "a"]}, "seeds"),
        ({"run": ["zf"]}, "run"),
        ({"methods": ["sac"]}, "methods"),
        ({"variants": {"mr": {"combinr": "mr"}}, "run": ["mr"]}, "variants.mr.combinr"),
        ({"env": {"n_bss": 3}}, "env.n_bss"),
        ({"budget": {"maddpg": {"n_fuzzy": 3}}}, "budget.maddpg.n_fuzzy"),
        ({"eval": {"n_env": 3}}, "eval.n_env"),
    ):
        with pytest.raises(ConfigError, match=match):
            rx.validate(dict(cfg, **bad))


def _fake_samples(variant, method, seed):
    """Four per-drop sum SEs per policy around the policy's mean (``<policy>/sum_se``)."""
    return {
        f"{pol}/sum_se": np.float32(e["sum_se"] + 0.1 * np.arange(-2, 2))
        for pol, e in _fake_eval(variant, method, seed).items()
    }


def test_sweep_orchestration_and_aggregate(tmp_path, monkeypatch, capsys):
    from cfmimo_cli import train as train_mod

    calls = []

    def fake_train(cfg, out_dir, **kw):
        v, m, s = cfg["env"]["combiner"], cfg["algorithm"], cfg["seed"]
        calls.append((v, m, s))
        evaluation = _fake_eval(v, m, s)
        if cfg["eval"]["heuristics"] == []:  # as cfmimo train: the learned policy only
            evaluation = {k: e for k, e in evaluation.items() if k.startswith("learned")}
        summary = {
            "config": cfg,
            "evaluation": evaluation,
            "train_wall_s": 2.0 + 0.25 * s,
            "train_first_chunk_s": 1.5,
            "train_first_chunk_env_steps": 4,
            "train_steady_s": 0.5 + 0.25 * s,
            "train_steady_env_steps": 4,
            "env_steps": 8,
        }
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").write_text(json.dumps(summary))
        if (v, m, s) != ("mr", "maddpg", 2):  # that one stands in for an older run
            kept = _fake_samples(v, m, s)
            kept = {k: a for k, a in kept.items() if k.split("/")[0] in evaluation}
            np.savez(out_dir / "eval_samples.npz", **kept)
        rows = [
            {"update": u, "env_steps": 4 * u, "sum_se": u + s, "power_frac": 0.5} for u in (1, 2)
        ]
        (out_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return dict(summary, state=None)

    monkeypatch.setattr(train_mod, "train", fake_train)
    cfg = _config("seeds=[0, 1, 2]")
    res = rx.reproduce(cfg, tmp_path, progress=False)
    assert len(calls) == 2 * 3 * 3
    for name in (
        "comparison.csv",
        "comparison.json",
        "comparison.md",
        "timing.csv",
        "sum_se.png",
        "training_curves.png",
        "power_curves.png",
        "se_cdf.png",
    ):
        assert (tmp_path / name).is_file(), name
    err = capsys.readouterr().err
    assert "mr/maddpg/seed2" in err and "eval_samples.npz" in err and "l_mmse/" not in err
    rows = {(r["variant"], r["policy"]): r for r in res["table"]}
    x = np.array([20.4, 20.5, 20.6])  # fl_ctce with L-MMSE against the optimiser's 21.0
    r = rows[("l_mmse", "fl_ctce")]
    assert r["sum_se"] == pytest.approx(x.mean())
    assert r["sum_se_ci95"] == pytest.approx(4.303 * x.std(ddof=1) / math.sqrt(3))
    assert r["frac_of_optimised"] == pytest.approx(np.mean(x / 21.0))
    assert rows[("mr", "optimised")]["frac_of_optimised"] == pytest.approx(1.0)
    assert rows[("mr", "max_power")]["sum_se"] == pytest.approx(7.0)
    assert math.isclose(rows[("mr", "max_power")]["sum_se_ci95"], 0.0, abs_tol=1e-12)
    # timing: 4 steady one-step episodes in 0.5, 0.75, 1 s -> 250, 375, 500 s per 2000
    # episodes; first chunk 1.5 s for 4 episodes -> compile 1.0, 0.75, 0.5 s; the whole run,
    # 8 episodes in 2, 2.25, 2.5 s -> 500, 562.5, 625 s per 2000 episodes
    t = {(r["variant"], r["method"]): r for r in res["timing"]}
    per = np.array([250.0, 375.0, 500.0])
    assert t[("mr", "maddpg")]["n_seeds_steady"] == 3
    assert t[("mr", "maddpg")]["s_per_2000_episodes"] == pytest.approx(per.mean())
    assert t[("mr", "maddpg")]["s_per_2000_episodes_ci95"] == pytest.approx(
        4.303 * per.std(ddof=1) / math.sqrt(3)
    )
    assert t[("mr", "maddpg")]["compile_s"] == pytest.approx(0.75)
    assert t[("mr", "maddpg")]["s_per_2000_episodes_incl_compile"] == pytest.approx(562.5)
    with (tmp_path / "timing.csv").open() as f:
        head = f.readline()
    assert "compile_s" in head and "s_per_2000_episodes" in head
    assert t[("mr", "maddpg")]["paper_s_per_2000_episodes"] == 0.411
    assert t[("l_mmse", "fl_ctce")]["paper_s_per_2000_episodes"] == 1.124
    c = res["curves"]["sum_se"]["l_mmse"]["fl_ctde"]
    assert c["episodes"] == [4.0, 8.0] and c["mean"] == pytest.approx([2.0, 3.0])
    assert "1.124" in (tmp_path / "comparison.md").read_text()
    # the CDF pools the seeds' per-drop samples (seed 2 of mr/maddpg has none)
    cdf = res["se_cdf"]
    x = np.concatenate(
        [_fake_samples("l_mmse", "fl_ctce", s)["learned (greedy)/sum_se"] for s in (0, 1, 2)]
    ).astype(np.float64)
    st = cdf["l_mmse"]["fl_ctce"]
    assert st["n"] == 12 and st["mean"] == pytest.approx(x.mean(), rel=1e-6)
    assert st["p5"] == pytest.approx(np.percentile(x, 5), rel=1e-6)
    assert st["median"] == pytest.approx(np.median(x), rel=1e-6)
    assert cdf["mr"]["maddpg"]["n"] == 8 and cdf["mr"]["optimised"]["n"] == 12
    assert set(cdf["mr"]) == {"fl_ctce", "fl_ctde", "maddpg", "max_power", "optimised"}
    assert (
        json.loads((tmp_path / "comparison.json").read_text())["se_cdf"]["mr"]["maddpg"]["n"] == 8
    )
    calls.clear()
    rx.reproduce(cfg, tmp_path, progress=False)
    assert calls == []


def test_steady_timing_leaves_out_older_runs():
    """Seeds whose summary lacks the first-chunk / steady split (older runs, or one chunk) are
    left out of the steady columns; the whole-run column keeps them."""
    cfg = _config("run=[mr]", "methods=[maddpg]", "seeds=[0, 1]")
    base = {"evaluation": _fake_eval("mr", "maddpg", 0), "env_steps": 8}
    new = dict(base, config=rx.run_config(cfg, "mr", "maddpg", 0), train_wall_s=3.0)
    new.update(train_first_chunk_s=2.0, train_first_chunk_env_steps=2)
    new.update(train_steady_s=1.0, train_steady_env_steps=6)
    old = dict(base, config=rx.run_config(cfg, "mr", "maddpg", 1), train_wall_s=5.0)
    t = rx.aggregate(cfg, {("mr", "maddpg", 0): new, ("mr", "maddpg", 1): old})["timing"][0]
    assert t["n_seeds"] == 2 and t["n_seeds_steady"] == 1
    assert t["s_per_2000_episodes"] == pytest.approx(2000 * 1.0 / 6)
    assert t["compile_s"] == pytest.approx(2.0 - 1.0 * 2 / 6)
    assert t["s_per_2000_episodes_incl_compile"] == pytest.approx(2000 * 4.0 / 8)
    only_old = rx.aggregate(dict(cfg, seeds=[1]), {("mr", "maddpg", 1): old})["timing"][0]
    assert math.isnan(only_old["s_per_2000_episodes"]) and math.isnan(only_old["compile_s"])


def test_cli_print_config(capsys):
    assert main(["reproduce", "xl-uplink", "run=[mr]", "--print-config"]) == 0
    assert "run:\n- mr" in capsys.readouterr().out
    assert main(["reproduce", "xl-uplink", "run=[zf]", "--print-config"]) == 2
    assert "run" in capsys.readouterr().err
