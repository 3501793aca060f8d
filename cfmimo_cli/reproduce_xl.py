"""``cfmimo reproduce xl-uplink``: cell-free XL-MIMO uplink power control ([XL-FUZZY], issue 19).

For every combiner variant (``l_mmse``, ``mr``: env overrides), every method (``fl_ctce``,
``fl_ctde``, ``maddpg``) and every seed the command runs one ``cfmimo train`` of the
``xl_uplink`` scenario into ``OUT/<variant>/<method>/seed<k>/`` (runs whose ``summary.json``
holds the same configuration are reused). Each run ends with the learned policy (greedy) and
the heuristics ``max_power`` and ``optimised`` (projected-gradient ascent of the log-det sum SE,
the paper's convex solver replaced) evaluated on the same held-out drops. Budget per method:
the embedded default ``cfmimo_cli/defaults/reproduce_xl_uplink_canonical.yaml`` (the settings
of ``configs/xl_uplink_*.yaml``: 24 000 one-step episodes each, 12x Table I's 2000; the paper
gives no hyper-parameters).

Outputs:

* ``comparison.csv`` / ``.json`` / ``.md``: per variant and policy the mean over seeds and
  95 % Student-t half-width over seeds of the sum SE, minimum SE and power used, and each
  policy's sum SE as a fraction of the optimiser's on the same drops; then the run-time table;
* ``sum_se.png``: the sum SE as bars with intervals, one panel per combiner;
* ``training_curves.png`` and ``power_curves.png``: the sum SE and the power used (the
  paper's power-consumption curves, Fig. 4) during training, one panel per combiner, one line
  per method, mean and interval over seeds (from each run's ``metrics.jsonl``), against
  episodes;
* ``se_cdf.png``: the CDF of the total SE (Fig. 3), one panel per combiner (L-MMSE, MR), one
  curve per method (greedy) and heuristic: the sum SE of every evaluation drop and step
  (``eval.n_envs x eval.n_steps`` per run, from each run's ``eval_samples.npz``), pooled over
  seeds; its 5th / 50th / 95th percentiles in ``comparison.json`` (``se_cdf``). Runs without
  the file (reused from before it was written) are left out with a printed note;
* ``timing.csv`` (and the table in ``comparison.md``): per variant and method, the training
  time per 2000 episodes (Table I) in the steady state, ``train_steady_s * 2000 /
  steady_episodes`` (the chunks after the first; ``steady_episodes =
  train_steady_env_steps / env.episode_steps``), mean and interval over seeds, next to the
  paper's (1.124 / 1.056 / 1.182 s with L-MMSE, 0.382 / 0.347 / 0.411 s with MR for FL-CTCE /
  FL-CTDE / MADDPG on a GTX 3060); ``compile_s``, the first chunk's time less the steady time of
  as many steps (compilation of the jitted update); and ``s_per_2000_episodes_incl_compile``,
  ``train_wall_s * 2000 / episodes`` over the whole run (``episodes = env_steps /
  env.episode_steps``). Seeds whose summary lacks the steady timing (runs from before it was
  recorded, or a run of one chunk) are left out of the steady columns (``n_seeds_steady``).
  All exclude the evaluation and depend on the budget's parallel environments and gradient
  steps per episode, which the paper does not give.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from ._sweep import (
    check_keys,
    check_names,
    check_seeds,
    curve_over_seeds,
    eval_config,
    mean_ci,
    prepare_out,
    read_metrics,
    run_or_reuse,
    train_config,
)
from .config import ConfigError
from .train import load_sweep_samples, sample_stats

SCENARIO = "xl_uplink"
METHODS = ("fl_ctce", "fl_ctde", "maddpg")
METRICS = ("sum_se", "min_se", "power_frac")
REFERENCE = "optimised"
EPISODES_PER_TABLE = 2000
COMBINER_LABEL = {"l_mmse": "L-MMSE", "mr": "MR"}
# Table I: run time per 2000 episodes (s), GTX 3060
PAPER_TIME_S = {
    "l_mmse": {"fl_ctce": 1.124, "fl_ctde": 1.056, "maddpg": 1.182},
    "mr": {"fl_ctce": 0.382, "fl_ctde": 0.347, "maddpg": 0.411},
}


def validate(config: dict[str, Any]) -> None:
    """Check an xl-uplink reproduce configuration (``ConfigError`` names the key)."""
    import algorithms
    from cfmimo_jax import envs

    known = {"seeds", "run", "variants", "methods", "env", "budget", "eval"}
    for k in config:
        if k not in known:
            raise ConfigError(f"{k}: unknown key (known: {sorted(known)})")
    check_seeds(config["seeds"])
    env_keys = envs.default_config(SCENARIO)
    variants = config["variants"]
    if not isinstance(variants, dict) or not variants:
        raise ConfigError("variants must be a non-empty mapping name -> env overrides")
    for v, over in variants.items():
        check_keys(f"variants.{v}", over, env_keys)
    check_names("run", config["run"], variants)
    check_names("methods", config["methods"], METHODS)
    check_keys("env", config["env"], env_keys)
    check_keys("budget", config["budget"], METHODS)
    for m, over in config["budget"].items():
        check_keys(f"budget.{m}", over, algorithms.default_config(m))
    check_keys("eval", config["eval"], ("n_envs", "n_steps", "heuristics"))


def run_config(config: dict[str, Any], variant: str, method: str, seed: int) -> dict[str, Any]:
    """The ``cfmimo train`` configuration of one (variant, method, seed). Every run of a seed
    evaluates on the same drops, so the heuristics (the optimiser is the expensive one) are
    evaluated in the first method's run only; the others evaluate the learned policy alone."""
    ev = eval_config(config["eval"], method == config["methods"][0])
    return train_config(
        SCENARIO,
        method,
        seed,
        env=(config["env"], config["variants"][variant]),
        trainer=(config["budget"].get(method, {}),),
        eval=ev,
    )


def reproduce(config: dict[str, Any], out_dir: str | Path, progress: bool = True) -> dict:
    """Run (or reuse) every run of the sweep and write the comparison (module docstring)."""
    validate(config)
    out_dir = prepare_out(config, out_dir)
    runs = [
        ((v, m, s), f"{v}/{m}/seed{s}", run_config(config, v, m, s))
        for v in config["run"]
        for m in config["methods"]
        for s in config["seeds"]
    ]
    summaries = run_or_reuse(out_dir, runs, progress)
    result = aggregate(config, summaries)
    result["curves"] = curves(config, out_dir, summaries)
    samples = load_sweep_samples(out_dir, {key: rel for key, rel, _ in runs})
    result["se_cdf"], pooled = se_cdf(config, summaries, samples)
    write_outputs(out_dir, result, pooled)
    return result


def se_cdf(config: dict[str, Any], summaries, samples) -> tuple[dict, dict]:
    """The total SE of every evaluation drop per variant and policy (each method's greedy
    policy; each heuristic from the first method with samples of the seed: the same drops),
    pooled over the seeds that have samples: ``(stats, pooled)``, ``pooled[variant][policy]``
    the 1-D samples and ``stats`` their ``sample_stats``."""
    seeds, methods = config["seeds"], config["methods"]
    pooled: dict[str, dict[str, np.ndarray]] = {}
    for v in config["run"]:
        first = summaries[(v, methods[0], seeds[0])]["evaluation"]
        heuristics = [h for h in first if not h.startswith("learned")]
        parts: dict[str, list] = {}
        for s in seeds:
            for m in methods:
                arr = samples.get((v, m, s), {}).get("learned (greedy)/sum_se")
                if arr is not None:
                    parts.setdefault(m, []).append(arr)
            for h in heuristics:  # evaluated in the first method's runs (run_config)
                arr = samples.get((v, methods[0], s), {}).get(f"{h}/sum_se")
                if arr is not None:
                    parts.setdefault(h, []).append(arr)
        pooled[v] = {
            name: np.concatenate(parts[name]) for name in methods + heuristics if name in parts
        }
    stats = {v: {n: sample_stats(x) for n, x in per.items()} for v, per in pooled.items()}
    return stats, pooled


def _episodes(summary: dict) -> float:
    return summary["env_steps"] / summary["config"]["env"]["episode_steps"]


def _steady_episodes(summary: dict) -> float:
    return summary["train_steady_env_steps"] / summary["config"]["env"]["episode_steps"]


def aggregate(config: dict[str, Any], summaries: dict[tuple[str, str, int], dict]) -> dict:
    """Per variant: each method's greedy policy and each heuristic (from the first method's
    runs: every run of a seed evaluates on the same drops), mean and 95 % interval over seeds,
    the sum SE as a fraction of the optimiser's, seed by seed; and the run-time table."""
    seeds, methods = config["seeds"], config["methods"]
    table, timing = [], []
    for v in config["run"]:
        first = summaries[(v, methods[0], seeds[0])]["evaluation"]
        heuristics = [h for h in first if not h.startswith("learned")]
        entries = [(m, "learned", [(m, s, "learned (greedy)") for s in seeds]) for m in methods]
        entries += [(h, "heuristic", [(methods[0], s, h) for s in seeds]) for h in heuristics]
        for name, kind, keys in entries:
            evs = [summaries[(v, m, s)]["evaluation"][pol] for m, s, pol in keys]
            refs = [summaries[(v, methods[0], s)]["evaluation"].get(REFERENCE) for _, s, _ in keys]
            row = {"variant": v, "policy": name, "kind": kind, "n_seeds": len(evs)}
            for k in METRICS:
                row[k], row[k + "_ci95"] = mean_ci([e[k] for e in evs])
            if all(r is not None for r in refs):
                frac = [e["sum_se"] / r["sum_se"] for e, r in zip(evs, refs, strict=True)]
                row["frac_of_optimised"], row["frac_of_optimised_ci95"] = mean_ci(frac)
            row["per_seed_sum_se"] = [float(e["sum_se"]) for e in evs]
            table.append(row)
        for m in methods:
            sums = [summaries[(v, m, s)] for s in seeds]
            total = [EPISODES_PER_TABLE * x["train_wall_s"] / _episodes(x) for x in sums]
            steady = [x for x in sums if x.get("train_steady_env_steps")]
            per = [EPISODES_PER_TABLE * x["train_steady_s"] / _steady_episodes(x) for x in steady]
            comp = [
                x["train_first_chunk_s"]
                - x["train_steady_s"]
                * x["train_first_chunk_env_steps"]
                / x["train_steady_env_steps"]
                for x in steady
            ]
            row = {
                "variant": v,
                "method": m,
                "n_seeds": len(sums),
                "n_seeds_steady": len(steady),
                "episodes": float(np.mean([_episodes(x) for x in sums])),
                "train_wall_s": float(np.mean([x["train_wall_s"] for x in sums])),
            }
            row["s_per_2000_episodes"], row["s_per_2000_episodes_ci95"] = (
                mean_ci(per) if per else (math.nan, math.nan)
            )
            row["compile_s"], row["compile_s_ci95"] = mean_ci(comp) if comp else (math.nan,) * 2
            (
                row["s_per_2000_episodes_incl_compile"],
                row["s_per_2000_episodes_incl_compile_ci95"],
            ) = mean_ci(total)
            row["paper_s_per_2000_episodes"] = PAPER_TIME_S.get(v, {}).get(m)
            timing.append(row)
    return {"seeds": seeds, "table": table, "timing": timing}


def curves(config: dict[str, Any], out_dir: Path, summaries) -> dict:
    """The sum SE and power used during training per variant and method, against episodes,
    mean and interval over seeds: ``{metric: {variant: {method: {"episodes", "mean",
    "ci95"}}}}``."""
    out: dict[str, dict] = {}
    for v in config["run"]:
        for m in config["methods"]:
            rows = [read_metrics(out_dir / v / m / f"seed{s}") for s in config["seeds"]]
            ep = summaries[(v, m, config["seeds"][0])]["config"]["env"]["episode_steps"]
            for k in ("sum_se", "power_frac"):
                c = curve_over_seeds(rows, k, x_scale=float(ep))
                if c is not None:
                    x, y, h = c
                    out.setdefault(k, {}).setdefault(v, {})[m] = {
                        "episodes": x.tolist(),
                        "mean": y.tolist(),
                        "ci95": [None if math.isnan(q) else float(q) for q in h],
                    }
    return out


def _cell(r, k, digits=3):
    v, h = r.get(k), r.get(k + "_ci95", math.nan)
    if v is None or math.isnan(v):
        return "-"
    return f"{v:.{digits}f}" + ("" if math.isnan(h) else f" ± {h:.{digits}f}")


def write_outputs(out_dir: Path, result: dict, pooled: dict | None = None) -> None:
    """The tables and figures of the module docstring (``pooled``: the samples of
    :func:`se_cdf` for ``se_cdf.png``, not written without)."""
    table, timing = result["table"], result["timing"]
    fields = ["variant", "policy", "kind", "n_seeds"]
    for k in METRICS + ("frac_of_optimised",):
        fields += [k, k + "_ci95"]
    with (out_dir / "comparison.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)
    with (out_dir / "timing.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(timing[0]) if timing else ["variant"])
        w.writeheader()
        w.writerows(timing)
    (out_dir / "comparison.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    lines = [
        f"# Cell-free XL-MIMO uplink power control ([XL-FUZZY]), seeds {result['seeds']}",
        "",
        "Mean over seeds ± 95 % Student-t half-width over seeds; the same held-out drops for",
        "every policy of a seed. Power used: the mean fraction of P_max.",
        "",
        "| combiner | policy | sum SE (bit/s/Hz) | min SE | power used | sum SE / optimiser's |",
        "|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['variant']} | {r['policy']} | {_cell(r, 'sum_se')} | {_cell(r, 'min_se')} | "
            f"{_cell(r, 'power_frac')} | {_cell(r, 'frac_of_optimised')} |"
        )
    lines += [
        "",
        "Training time per 2000 episodes (Table I) in the steady state: train_steady_s x 2000 /",
        "episodes of the chunks after the first, per run; compile: the first chunk's time less",
        "the steady time of as many steps; incl. compile: train_wall_s x 2000 / episodes of the",
        "whole run (evaluation excluded). The paper's on a GTX 3060.",
        "",
        "| combiner | method | episodes | train wall (s) | compile (s) | s per 2000 episodes "
        "| incl. compile | paper (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in timing:
        p = r["paper_s_per_2000_episodes"]
        lines.append(
            f"| {r['variant']} | {r['method']} | {r['episodes']:.0f} | {r['train_wall_s']:.1f} "
            f"| {_cell(r, 'compile_s', 2)} | {_cell(r, 's_per_2000_episodes')} "
            f"| {_cell(r, 's_per_2000_episodes_incl_compile')} "
            f"| {'-' if p is None else f'{p:.3f}'} |"
        )
    (out_dir / "comparison.md").write_text("\n".join(lines) + "\n", "utf-8")

    from .plots import plot_bars, plot_cdfs, plot_curves

    if pooled:
        plot_cdfs(
            {COMBINER_LABEL.get(v, v): per for v, per in pooled.items()},
            "total SE (bit/s/Hz)",
            out_dir / "se_cdf.png",
        )

    groups: dict[str, list] = {}
    for r in table:
        groups.setdefault(r["variant"], []).append((r["policy"], r["sum_se"], r["sum_se_ci95"]))
    plot_bars(groups, "sum SE (bit/s/Hz)", out_dir / "sum_se.png")
    cur = result.get("curves", {})
    for key, ylabel, name in (
        ("sum_se", "sum SE during training (bit/s/Hz)", "training_curves.png"),
        ("power_frac", "power used (fraction of P_max)", "power_curves.png"),
    ):
        if cur.get(key):
            panels = {
                v: {
                    m: (c["episodes"], c["mean"], [math.nan if q is None else q for q in c["ci95"]])
                    for m, c in per.items()
                }
                for v, per in cur[key].items()
            }
            plot_curves(panels, ylabel, out_dir / name, xlabel="episodes")


__all__ = ["METHODS", "PAPER_TIME_S", "aggregate", "reproduce", "run_config", "se_cdf", "validate"]
