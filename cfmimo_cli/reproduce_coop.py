"""``cfmimo reproduce ap-cooperation``: dynamic multi-AP cooperation ([AP-COOP], issue 20).

For every method and seed the command runs one ``cfmimo train`` of the ``ap_cooperation``
scenario into ``OUT/<method>/seed<k>/`` (runs whose ``summary.json`` holds the same
configuration are reused: an interrupted sweep continues where it stopped). Each run ends with
the learned policy (greedy) and the scenario's heuristics evaluated on the same held-out drops
(the evaluation key no training run uses; the same drops for every method of a seed).

Methods: ``ddqn_stacked`` (independent double DQN, one network per AP, stacked parameters:
the paper's) and ``ddqn_shared`` (one network for every AP with a one-hot AP id; beyond the
paper). Budget: the paper's Table II (embedded default
``cfmimo_cli/defaults/reproduce_ap_cooperation_canonical.yaml``: 200 episodes of 10 steps on
one network, buffer 1000, batch 32, ...); environment: Table I (the scenario's defaults).

Heuristics: ``none`` (no cooperation, MRT everywhere), ``full`` (every neighbour link agreed)
and ``threshold`` (cooperate where ``I_mn`` exceeds ``env.threshold_db``).

Outputs:

* ``comparison.csv`` / ``.json`` / ``.md``: per policy the mean over seeds and 95 % Student-t
  half-width over seeds of the sum rate, mean SINR, links, cooperation rate and efficiency,
  next to the paper's table (no cooperation 122.0 bit/s/Hz, 8.48 dB; full cooperation 133.7,
  9.43 dB, 500 links; DRL 134.6, 9.48 dB, 194 links; the paper's efficiency
  ``(R - 122.0) / links``);
* ``sum_rate.png`` and ``mean_sinr.png``: bars with intervals, ours next to the paper's
  (Figs. 4-5);
* ``coop_rate.png``: the cooperation rate during training per method (mean and interval over
  seeds, from each run's ``metrics.jsonl``; Fig. 3);
* ``links_vs_efficiency.png``: links against efficiency per policy, the paper's points open
  (Fig. 6);
* ``sinr_cdf.png``: the CDF of the per-UE downlink SINR of eq. (9) in dB (Fig. 7), one curve
  per method (greedy) and heuristic: every UE of every evaluation drop and step
  (``eval.n_envs x eval.n_steps x n_ues`` values per run, from each run's
  ``eval_samples.npz``), pooled over seeds; its 5th / 50th / 95th percentiles in
  ``comparison.json`` (``sinr_cdf``). Runs without the file (reused from before it was
  written) are left out with a printed note.

How links are counted here: ``links`` is the number of mutually agreed AP pairs ``{m, n}``
(both APs request each other), each pair counted once, averaged over the steps of the
evaluation drops; it is at most ``n_aps * max_neighbours / 2`` (200 at Table I). The paper's
500 links for full cooperation of 100 APs with at most 4 neighbours each fits neither this
count nor the requests (at most 400); the paper does not say how it counts them, so the link
columns (and the efficiencies) do not compare one to one.
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
    mean_ci,
    prepare_out,
    read_metrics,
    run_or_reuse,
    train_config,
)
from .config import ConfigError
from .train import load_sweep_samples, sample_stats

SCENARIO = "ap_cooperation"
METRICS = ("sum_rate", "mean_sinr_db", "links", "coop_rate", "efficiency")
# method -> (algorithm, trainer settings the method fixes)
METHODS = {
    "ddqn_stacked": ("ddqn", {"shared_parameters": False}),
    "ddqn_shared": ("ddqn", {"shared_parameters": True}),
}
# The paper's table: (sum rate bit/s/Hz, mean SINR dB, links); its efficiency (R - R_none) / L.
PAPER = {
    "none": {"sum_rate": 122.0, "mean_sinr_db": 8.48},
    "full": {"sum_rate": 133.7, "mean_sinr_db": 9.43, "links": 500.0},
    "learned": {"sum_rate": 134.6, "mean_sinr_db": 9.48, "links": 194.0},
}
for _p in PAPER.values():
    if "links" in _p:
        _p["efficiency"] = (_p["sum_rate"] - PAPER["none"]["sum_rate"]) / _p["links"]
PAPER_LABEL = {"none": "no cooperation", "full": "full cooperation", "learned": "DRL"}


def validate(config: dict[str, Any]) -> None:
    """Check an ap-cooperation reproduce configuration (``ConfigError`` names the key)."""
    import algorithms
    from cfmimo_jax import envs

    known = {"seeds", "methods", "env", "budget", "eval"}
    for k in config:
        if k not in known:
            raise ConfigError(f"{k}: unknown key (known: {sorted(known)})")
    check_seeds(config["seeds"])
    check_names("methods", config["methods"], METHODS)
    check_keys("env", config["env"], envs.default_config(SCENARIO))
    check_keys("budget", config["budget"], METHODS)
    for m, over in config["budget"].items():
        check_keys(f"budget.{m}", over, algorithms.default_config(METHODS[m][0]))
    check_keys("eval", config["eval"], ("n_envs", "n_steps", "heuristics"))


def run_config(config: dict[str, Any], method: str, seed: int) -> dict[str, Any]:
    """The ``cfmimo train`` configuration of one (method, seed)."""
    algorithm, fixed = METHODS[method]
    return train_config(
        SCENARIO,
        algorithm,
        seed,
        env=(config["env"],),
        trainer=(config["budget"].get(method, {}), fixed),
        eval=config["eval"],
    )


def reproduce(config: dict[str, Any], out_dir: str | Path, progress: bool = True) -> dict:
    """Run (or reuse) every run of the sweep and write the comparison (module docstring)."""
    validate(config)
    out_dir = prepare_out(config, out_dir)
    runs = [
        ((m, s), f"{m}/seed{s}", run_config(config, m, s))
        for m in config["methods"]
        for s in config["seeds"]
    ]
    summaries = run_or_reuse(out_dir, runs, progress)
    result = aggregate(config, summaries)
    result["curves"] = curves(config, out_dir, summaries)
    samples = load_sweep_samples(out_dir, {key: rel for key, rel, _ in runs})
    result["sinr_cdf"], pooled = sinr_cdf(config, summaries, samples)
    write_outputs(out_dir, result, pooled)
    return result


def sinr_cdf(config: dict[str, Any], summaries, samples) -> tuple[dict, dict]:
    """The per-UE SINRs (dB) of every evaluation drop and step per policy (each method's greedy
    policy; each heuristic from the first method with samples of the seed: the same drops),
    pooled over the seeds that have samples: ``(stats, pooled)``, ``pooled[policy]`` the 1-D
    samples and ``stats`` their ``sample_stats``."""
    seeds, methods = config["seeds"], config["methods"]
    first = summaries[(methods[0], seeds[0])]["evaluation"]
    heuristics = [h for h in first if not h.startswith("learned")]
    parts: dict[str, list] = {}
    for s in seeds:
        for m in methods:
            arr = samples.get((m, s), {}).get("learned (greedy)/sinr_db")
            if arr is not None:
                parts.setdefault(m, []).append(arr)
        have = [m for m in methods if (m, s) in samples]
        for h in heuristics:
            arr = samples[(have[0], s)].get(f"{h}/sinr_db") if have else None
            if arr is not None:
                parts.setdefault(h, []).append(arr)
    pooled = {n: np.concatenate(parts[n]) for n in methods + heuristics if n in parts}
    return {n: sample_stats(x) for n, x in pooled.items()}, pooled


def aggregate(config: dict[str, Any], summaries: dict[tuple[str, int], dict]) -> dict:
    """Each method's greedy policy and each heuristic (from the first method's runs: every run
    of a seed evaluates on the same drops), mean and 95 % interval over seeds, and the paper's
    values of the matching row."""
    seeds, methods = config["seeds"], config["methods"]
    first = summaries[(methods[0], seeds[0])]["evaluation"]
    heuristics = [h for h in first if not h.startswith("learned")]
    entries = [(m, "learned", [(m, s, "learned (greedy)") for s in seeds]) for m in methods]
    entries += [(h, "heuristic", [(methods[0], s, h) for s in seeds]) for h in heuristics]
    table = []
    for name, kind, keys in entries:
        evs = [summaries[(m, s)]["evaluation"][pol] for m, s, pol in keys]
        row = {"policy": name, "kind": kind, "n_seeds": len(evs)}
        for k in METRICS:
            row[k], row[k + "_ci95"] = mean_ci([e[k] for e in evs])
        row["per_seed_sum_rate"] = [float(e["sum_rate"]) for e in evs]
        paper = PAPER.get("learned" if kind == "learned" else name, {})
        for k in METRICS:
            row["paper_" + k] = paper.get(k)
        table.append(row)
    return {"seeds": seeds, "table": table, "paper": PAPER}


def curves(config: dict[str, Any], out_dir: Path, summaries) -> dict:
    """The cooperation rate and the sum rate during training per method, against episodes
    (``env_steps / env.episode_steps``), mean and interval over seeds: ``{metric: {method:
    {"episodes", "mean", "ci95"}}}``."""
    out: dict[str, dict] = {}
    for m in config["methods"]:
        rows = [read_metrics(out_dir / m / f"seed{s}") for s in config["seeds"]]
        ep = summaries[(m, config["seeds"][0])]["config"]["env"]["episode_steps"]
        for k in ("coop_rate", "sum_rate", "links"):
            c = curve_over_seeds(rows, k, x_scale=float(ep))
            if c is not None:
                x, y, h = c
                out.setdefault(k, {})[m] = {
                    "episodes": x.tolist(),
                    "mean": y.tolist(),
                    "ci95": [None if math.isnan(v) else float(v) for v in h],
                }
    return out


def _num(v, digits):
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def _cell(r, k, digits=2):
    v, h = r.get(k), r.get(k + "_ci95", math.nan)
    if v is None or math.isnan(v):
        return "-"
    return f"{v:.{digits}f}" + ("" if math.isnan(h) else f" ± {h:.{digits}f}")


def write_outputs(out_dir: Path, result: dict, pooled: dict | None = None) -> None:
    """The tables and figures of the module docstring (``pooled``: the samples of
    :func:`sinr_cdf` for ``sinr_cdf.png``, not written without)."""
    table = result["table"]
    fields = ["policy", "kind", "n_seeds"]
    for k in METRICS:
        fields += [k, k + "_ci95", "paper_" + k]
    with (out_dir / "comparison.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)
    (out_dir / "comparison.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    lines = [
        f"# Dynamic multi-AP cooperation ([AP-COOP]), seeds {result['seeds']}",
        "",
        "Mean over seeds ± 95 % Student-t half-width over seeds, on the same held-out drops",
        "for every policy of a seed; the paper's values in brackets (its DRL next to each",
        "learned method). Links: mutually agreed AP pairs, each pair counted once, mean over",
        "the evaluation steps (at most n_aps x max_neighbours / 2); the paper does not say how",
        "it counts its links (500 for full cooperation exceeds that bound), so the link and",
        "efficiency columns do not compare one to one. Efficiency: (sum rate - no-cooperation",
        "sum rate) / links, bit/s/Hz per link.",
        "",
        "| policy | sum rate (bit/s/Hz) | mean SINR (dB) | links | cooperation rate | efficiency |",
        "|---|---|---|---|---|---|",
    ]
    for r in table:
        cells = []
        for k, d in zip(METRICS, (1, 2, 1, 3, 4), strict=True):
            c = _cell(r, k, d)
            if r.get("paper_" + k) is not None:
                c += f" ({_num(r['paper_' + k], d)})"
            cells.append(c)
        lines.append(f"| {r['policy']} | " + " | ".join(cells) + " |")
    (out_dir / "comparison.md").write_text("\n".join(lines) + "\n", "utf-8")

    from .plots import plot_bars, plot_cdfs, plot_curves, plot_points

    if pooled:
        plot_cdfs({"per-UE SINR, evaluation drops": pooled}, "SINR (dB)", out_dir / "sinr_cdf.png")

    paper_rows = [(PAPER_LABEL[k], v) for k, v in PAPER.items()]
    for key, ylabel, name in (
        ("sum_rate", "sum rate (bit/s/Hz)", "sum_rate.png"),
        ("mean_sinr_db", "mean SINR (dB)", "mean_sinr.png"),
    ):
        groups = {
            "this reproduction": [(r["policy"], r[key], r[key + "_ci95"]) for r in table],
            "paper": [(label, v[key], math.nan) for label, v in paper_rows],
        }
        plot_bars(groups, ylabel, out_dir / name)
    cur = result.get("curves", {}).get("coop_rate")
    if cur:
        panels = {
            "cooperation rate during training": {
                m: (c["episodes"], c["mean"], [math.nan if v is None else v for v in c["ci95"]])
                for m, c in cur.items()
            }
        }
        plot_curves(panels, "cooperation rate", out_dir / "coop_rate.png", xlabel="episodes")
    points = [
        (r["policy"], r["links"], r["links_ci95"], r["efficiency"], r["efficiency_ci95"], True)
        for r in table
        if r["policy"] != "none"
    ]
    points += [
        (f"paper: {PAPER_LABEL[k]}", v["links"], math.nan, v["efficiency"], math.nan, False)
        for k, v in PAPER.items()
        if "links" in v
    ]
    plot_points(
        points,
        "links (agreed AP pairs)",
        "efficiency (bit/s/Hz per link)",
        out_dir / "links_vs_efficiency.png",
    )


__all__ = ["METHODS", "PAPER", "aggregate", "reproduce", "run_config", "sinr_cdf", "validate"]
