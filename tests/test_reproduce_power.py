"""``cfmimo reproduce power-control``: configuration, orchestration and the comparison table.

The training runs are replaced by a recording stand-in (the real ``cfmimo train`` path of the
off-policy trainers is tested in test_cli_offpolicy.py); the aggregate is checked against
means, Student-t intervals and optimiser fractions computed here by hand.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from cfmimo_cli import reproduce_power as rp
from cfmimo_cli.config import ConfigError, load_config
from cfmimo_cli.main import main


def _config(*over):
    return load_config(None, list(over), command="reproduce_power_control")


def _fake_eval(variant, method, seed):
    base = {"uplink": 9.0, "uplink_discrete": 8.0, "downlink": 11.0}[variant]
    learned = base + 0.1 * seed + (0.2 if method == "maddpg" else 0.0)
    pol = {
        "full": base - 1.0,
        "fractional": base - 0.5,
        "optimised": base + 1.0,
        "learned (greedy)": learned,
        "learned (sampled)": learned - 0.1,
    }
    return {
        k: {"sum_se": v, "min_se": v / 10, "power_frac": 0.5, "ci95": {}} for k, v in pol.items()
    }


def test_run_config_and_validation():
    cfg = _config()
    rc = rp.run_config(cfg, "downlink", "maddpg", 2)
    assert rc["scenario"] == "power_control" and rc["algorithm"] == "maddpg" and rc["seed"] == 2
    assert rc["env"]["link"] == "downlink" and rc["trainer"]["gamma"] == 0.0
    assert rc["eval"]["n_envs"] == cfg["eval"]["n_envs"]
    for bad, match in (
        (["seeds=[]"], "seeds"),
        (["run=[sideways]"], "run"),
        (["methods.uplink=[sac]"], "unknown algorithm"),
    ):
        with pytest.raises(ConfigError, match=match):
            rp.validate(_config(*bad))


def test_sweep_orchestration_and_aggregate(tmp_path, monkeypatch):
    from cfmimo_cli import train as train_mod

    calls = []

    def fake_train(cfg, out_dir, **kw):
        calls.append((cfg["env"]["link"], cfg["env"]["action"], cfg["algorithm"], cfg["seed"]))
        variant = {
            ("uplink", "continuous"): "uplink",
            ("uplink", "discrete"): "uplink_discrete",
            ("downlink", "continuous"): "downlink",
        }[(cfg["env"]["link"], cfg["env"]["action"])]
        summary = {"config": cfg, "evaluation": _fake_eval(variant, cfg["algorithm"], cfg["seed"])}
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / "summary.json").write_text(json.dumps(summary))
        return dict(summary, state=None)

    monkeypatch.setattr(train_mod, "train", fake_train)
    monkeypatch.setattr(train_mod, "validate_train", lambda cfg: None)
    cfg = _config("seeds=[0, 1, 2]", "run=[uplink, uplink_discrete, downlink]")
    res = rp.reproduce(cfg, tmp_path, progress=False)
    assert len(calls) == 3 * (2 + 1 + 2)
    for name in ("comparison.csv", "comparison.json", "comparison.md", "sum_se.png"):
        assert (tmp_path / name).is_file()
    rows = {(r["variant"], r["policy"]): r for r in res["table"]}
    # maddpg on the uplink: 9.2, 9.3, 9.4 against the optimiser's 10.0
    x = np.array([9.2, 9.3, 9.4])
    r = rows[("uplink", "maddpg")]
    assert r["sum_se"] == pytest.approx(x.mean())
    assert r["sum_se_ci95"] == pytest.approx(4.303 * x.std(ddof=1) / math.sqrt(3))
    assert r["frac_of_optimised"] == pytest.approx(np.mean(x / 10.0))
    assert rows[("downlink", "optimised")]["frac_of_optimised"] == pytest.approx(1.0)
    assert rows[("uplink_discrete", "full")]["sum_se"] == pytest.approx(7.0)
    # a second call reuses every finished run
    calls.clear()
    rp.reproduce(cfg, tmp_path, progress=False)
    assert calls == []


def test_cli_print_config(capsys):
    assert main(["reproduce", "power-control", "seeds=[4]", "--print-config"]) == 0
    assert "seeds:\n- 4" in capsys.readouterr().out
    assert main(["reproduce", "nowhere"]) == 2
