"""``cfmimo reproduce ap-cooperation``: configuration, orchestration and the comparison table.

The training runs are replaced by a recording stand-in that writes a summary, a
``metrics.jsonl`` and (but for one run, standing in for a run from before the file existed) an
``eval_samples.npz`` of per-UE SINRs (the real ``cfmimo train`` path of double DQN on
``ap_cooperation`` is tested elsewhere); the configurations are still the tiny real ones and
pass ``validate_train``. The aggregate is checked against means, Student-t intervals and
pooled percentiles computed here by hand.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cfmimo_cli import reproduce_coop as rc
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
    "hidden": [8],
}


def _config(*over):
    o = ["env.n_aps=6", "env.n_ues=4", "env.tau_p=2", "env.metric_samples=2"]
    o += ["env.episode_steps=2", "eval.n_envs=2", "eval.n_steps=2"]
    o += [f"budget.{m}.{k}={v}" for m in rc.METHODS for k, v in TINY.items()]
    return load_config(None, o + list(over), command="reproduce_ap_cooperation")


def _fake_eval(method, seed):
    learned = 10.0 + 0.5 * seed + (0.2 if method == "ddqn_shared" else 0.0)
    pol = {"none": 8.0, "full": 9.0 + 0.1 * seed, "threshold": 8.5}
    pol["learned (greedy)"] = learned
    pol["learned (sampled)"] = learned - 0.1
    return {
        k: {
            "sum_rate": v,
            "mean_sinr_db": v / 2,
            "links": 0.0 if k == "none" else 3.0 + seed,
            "coop_rate": 0.5,
            "efficiency": 0.1 * seed,
            "sum_rate_mrt": 8.0,
            "ci95": {},
        }
        for k, v in pol.items()
    }


def test_run_config_and_validation():
    from cfmimo_cli import train as train_mod

    cfg = _config()
    rc.validate(cfg)
    rs = rc.run_config(cfg, "ddqn_stacked", 1)
    sh = rc.run_config(cfg, "ddqn_shared", 1)
    assert rs["scenario"] == "ap_cooperation" and rs["algorithm"] == "ddqn" and rs["seed"] == 1
    assert rs["trainer"]["shared_parameters"] is False and sh["trainer"]["shared_parameters"]
    assert rs["env"]["n_aps"] == 6 and rs["trainer"]["n_updates"] == 2
    train_mod.validate_train(rs)
    # the embedded default is the paper's Table I / Table II
    d = load_config(None, [], command="reproduce_ap_cooperation")
    full = rc.run_config(d, "ddqn_stacked", 0)
    assert full["env"]["n_aps"] == 100 and full["env"]["n_ues"] == 40
    assert full["trainer"]["n_updates"] == 200 and full["trainer"]["hidden"] == [128, 64, 32]
    for bad, match in (
        ({"seeds": []}, "seeds"),
        ({"methods": ["ddqn_fancy"]}, "methods"),
        ({"env": {"n_apz": 3}}, "env.n_apz"),
        ({"budget": {"ddqn_stacked": {"lrr": 1.0}}}, "budget.ddqn_stacked.lrr"),
        ({"budget": {"ppo": {}}}, "budget.ppo"),
        ({"extra": 1}, "extra"),
    ):
        with pytest.raises(ConfigError, match=match):
            rc.validate(dict(cfg, **bad))
    with pytest.raises(ConfigError, match="env.n_apz"):
        _config("env.n_apz=3")


def _fake_sinr(method, seed):
    """Six per-UE SINRs (dB) per policy (``<policy>/sinr_db``): 2 drops x 3 UEs, flattened."""
    return {
        f"{pol}/sinr_db": np.float32(e["mean_sinr_db"] + np.arange(6) - 2.5)
        for pol, e in _fake_eval(method, seed).items()
    }


def test_sweep_orchestration_and_aggregate(tmp_path, monkeypatch, capsys):
    from cfmimo_cli import train as train_mod

    calls = []

    def fake_train(cfg, out_dir, **kw):
        m = "ddqn_shared" if cfg["trainer"]["shared_parameters"] else "ddqn_stacked"
        calls.append((m, cfg["seed"]))
        summary = {"config": cfg, "evaluation": _fake_eval(m, cfg["seed"])}
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").write_text(json.dumps(summary))
        if (m, cfg["seed"]) != ("ddqn_stacked", 1):  # that one stands in for an older run
            np.savez(out_dir / "eval_samples.npz", **_fake_sinr(m, cfg["seed"]))
        rows = [
            {"update": u, "env_steps": 4 * u, "coop_rate": 0.1 * u + 0.05 * cfg["seed"]}
            for u in (1, 2)
        ]
        (out_dir / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
        return dict(summary, state=None)

    monkeypatch.setattr(train_mod, "train", fake_train)
    cfg = _config("seeds=[0, 1, 2]")
    res = rc.reproduce(cfg, tmp_path, progress=False)
    assert sorted(calls) == sorted((m, s) for m in rc.METHODS for s in (0, 1, 2))
    for name in (
        "comparison.csv",
        "comparison.json",
        "comparison.md",
        "sum_rate.png",
        "mean_sinr.png",
        "coop_rate.png",
        "links_vs_efficiency.png",
        "sinr_cdf.png",
    ):
        assert (tmp_path / name).is_file(), name
    err = capsys.readouterr().err
    assert "ddqn_stacked/seed1" in err and "eval_samples.npz" in err and "seed0" not in err
    rows = {r["policy"]: r for r in res["table"]}
    assert set(rows) == {"ddqn_stacked", "ddqn_shared", "none", "full", "threshold"}
    x = np.array([10.2, 10.7, 11.2])  # ddqn_shared's learned sum rate over the seeds
    r = rows["ddqn_shared"]
    assert r["sum_rate"] == pytest.approx(x.mean())
    assert r["sum_rate_ci95"] == pytest.approx(4.303 * x.std(ddof=1) / math.sqrt(3))
    assert r["paper_sum_rate"] == 134.6 and r["paper_links"] == 194.0
    assert r["paper_efficiency"] == pytest.approx((134.6 - 122.0) / 194)
    links = np.array([3.0, 4.0, 5.0])
    assert rows["full"]["links"] == pytest.approx(4.0)
    assert rows["full"]["links_ci95"] == pytest.approx(4.303 * links.std(ddof=1) / math.sqrt(3))
    assert rows["full"]["paper_links"] == 500.0 and rows["none"]["paper_sum_rate"] == 122.0
    assert rows["threshold"]["paper_sum_rate"] is None
    c = res["curves"]["coop_rate"]["ddqn_stacked"]
    assert c["episodes"] == [2.0, 4.0]  # env_steps / episode_steps
    y = np.array([0.1, 0.15, 0.2])
    assert c["mean"][0] == pytest.approx(y.mean())
    assert c["ci95"][0] == pytest.approx(4.303 * y.std(ddof=1) / math.sqrt(3))
    # the CDF pools the seeds' per-UE samples; the heuristics of seed 1 come from ddqn_shared
    cdf = res["sinr_cdf"]
    assert set(cdf) == {"ddqn_stacked", "ddqn_shared", "none", "full", "threshold"}
    x = np.concatenate(
        [_fake_sinr("ddqn_shared", s)["learned (greedy)/sinr_db"] for s in (0, 1, 2)]
    )
    x = x.astype(np.float64)
    st = cdf["ddqn_shared"]
    assert st["n"] == 18 and st["mean"] == pytest.approx(x.mean(), rel=1e-6)
    assert st["p95"] == pytest.approx(np.percentile(x, 95), rel=1e-6)
    assert cdf["ddqn_stacked"]["n"] == 12 and cdf["full"]["n"] == 18
    f = np.concatenate(
        [
            _fake_sinr("ddqn_shared" if s == 1 else "ddqn_stacked", s)["full/sinr_db"]
            for s in (0, 1, 2)
        ]
    ).astype(np.float64)
    assert cdf["full"]["median"] == pytest.approx(np.median(f), rel=1e-6)
    md = (tmp_path / "comparison.md").read_text()
    assert "(134.6)" in md and "(500.0)" in md and "each pair counted once" in md
    # a second call reuses every finished run; a changed budget retrains
    calls.clear()
    rc.reproduce(cfg, tmp_path, progress=False)
    assert calls == []
    rc.reproduce(_config("seeds=[0, 1, 2]", "budget.ddqn_shared.lr=0.01"), tmp_path, False)
    assert sorted(calls) == [("ddqn_shared", s) for s in (0, 1, 2)]


def test_cli_print_config(capsys):
    assert main(["reproduce", "ap-cooperation", "seeds=[4]", "--print-config"]) == 0
    assert "seeds:\n- 4" in capsys.readouterr().out
    assert main(["reproduce", "ap-cooperation", "env.bogus=1", "--print-config"]) == 2
    assert "env.bogus" in capsys.readouterr().err
