"""``cfmimo train`` through the registries: any scenario x algorithm, off-policy end to end.

The configuration schema comes from the scenario's and the algorithm's own defaults; a
MADDPG run on the power-control testbed writes curves, summary and Orbax checkpoints and
resumes bit-identically (replay buffer included); ``--list`` names scenarios, heuristics and
algorithms.
"""

from __future__ import annotations

import json

import jax
import numpy as np
import pytest

import algorithms
from cfmimo_cli.config import ConfigError, load_config
from cfmimo_cli.main import main
from cfmimo_cli.train import train
from cfmimo_jax import envs

TINY_ENV = ["env.n_aps=4", "env.n_ues=3", "env.tau_p=2", "env.opt_steps=10", "env.episode_steps=2"]
TINY_TRAINER = [
    "trainer.n_envs=4",
    "trainer.n_steps=2",
    "trainer.n_updates=4",
    "trainer.updates_per_chunk=2",
    "trainer.buffer_size=12",
    "trainer.batch_size=8",
    "trainer.learning_starts=8",
    "trainer.hidden=[16]",
]


def _cfg(algorithm="maddpg", extra=()):
    over = ["scenario=power_control", f"algorithm={algorithm}", *TINY_ENV, *TINY_TRAINER]
    over += ["eval.n_envs=4", "eval.n_steps=2", "checkpoint_every=1", *extra]
    return load_config(None, over, command="train")


def test_schema_comes_from_the_registries():
    cfg = _cfg("ddqn")
    assert set(cfg["trainer"]) == set(algorithms.default_config("ddqn"))
    assert set(cfg["env"]) == set(envs.default_config("power_control"))
    assert "pretrain_policy" not in cfg["trainer"]  # the main job's PPO values do not leak
    # the main job (embedded default) keeps its own values for ap_selection + the PPO family
    main_job = load_config(None, ["algorithm=mappo"], command="train")
    assert main_job["trainer"]["pretrain_policy"] == "4-strongest"
    with pytest.raises(ConfigError, match="trainer.eps_start"):
        load_config(None, ["algorithm=maddpg", "trainer.eps_start=0.5"], command="train")
    with pytest.raises(ConfigError, match="scenario must be one of"):
        load_config(None, ["scenario=nowhere"], command="train")
    with pytest.raises(ConfigError, match="algorithm must be one of"):
        load_config(None, ["algorithm=sac"], command="train")
    with pytest.raises(ConfigError, match="eval.heuristics"):
        from cfmimo_cli.train import validate_train

        validate_train(_cfg(extra=["eval.heuristics=[4-strongest]"]))
    with pytest.raises(ConfigError, match="Discrete"):  # PPO needs discrete actions
        from cfmimo_cli.train import validate_train

        validate_train(load_config(None, ["scenario=power_control"], command="train"))


def test_list(capsys):
    assert main(["train", "--list"]) == 0
    out = capsys.readouterr().out
    for name in envs.names() + algorithms.names():
        assert name in out
    assert "fractional" in out and "4-strongest" in out


def test_maddpg_end_to_end_and_exact_resume(tmp_path):
    cfg = _cfg("maddpg")
    full = train(cfg, tmp_path / "full", progress=False, stream=False)
    out = tmp_path / "full"
    for name in ("config.yaml", "metrics.jsonl", "summary.json", "learning_curves.png"):
        assert (out / name).is_file(), name
    assert (out / "checkpoints").is_dir()
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and {"critic_loss", "actor_loss", "sum_se"} <= set(rows[-1])
    summary = json.loads((out / "summary.json").read_text())
    ev = summary["evaluation"]
    assert {"full", "fractional", "optimised", "learned (greedy)"} <= set(ev)
    assert ev["optimised"]["sum_se"] >= ev["full"]["sum_se"] - 1e-3
    # interrupted after one chunk (16 transitions written to a buffer of 12: wrapped), resumed
    part = tmp_path / "part"
    stopped = train(cfg, part, progress=False, stream=False, stop_after_chunks=1)
    assert "stopped_after_chunk" in stopped
    resumed = train(cfg, part, resume=True, progress=False, stream=False)
    for a, b in zip(jax.tree.leaves(full["state"]), jax.tree.leaves(resumed["state"]), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    assert resumed["evaluation"] == full["evaluation"]
