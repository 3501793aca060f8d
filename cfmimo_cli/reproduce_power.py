"""``cfmimo reproduce power-control``: the power-control testbed's comparison.

For every variant of the ``power_control`` scenario (uplink / downlink, continuous / discrete
powers), every learning method of that variant and every seed, the command runs one
``cfmimo train`` into ``OUT/<variant>/<method>/seed<k>/`` (runs whose ``summary.json`` holds the
same configuration are reused) and evaluates, on the same held-out network setups (an
evaluation key no training run uses), the learned policy and the scenario's heuristics: full
power, the book's fractional power control and the projected-gradient optimiser through the
closed-form SE (the oracle). Then:

* ``comparison.csv`` / ``.json`` / ``.md``: per variant and policy, the mean over seeds of the
  sum SE (and minimum SE), with 95 % Student-t half-widths over seeds, and each learned
  policy's sum SE as a fraction of the optimiser's on the same setups (mean and interval over
  seeds);
* ``sum_se.png``: the same as bars with intervals, one panel per variant.
"""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .config import ConfigError
from .reproduce import _ci95

METRICS = ("sum_se", "min_se", "power_frac")
REFERENCE = "optimised"


def validate(config: dict[str, Any]) -> None:
    """Check a power-control reproduce configuration (``ConfigError`` names the key)."""
    import algorithms

    seeds = config["seeds"]
    if (
        not isinstance(seeds, list)
        or not seeds
        or not all(isinstance(s, int) and not isinstance(s, bool) for s in seeds)
    ):
        raise ConfigError(f"seeds must be a non-empty list of integers, got {seeds!r}")
    variants, methods = config["variants"], config["methods"]
    if not isinstance(variants, dict) or not variants:
        raise ConfigError("variants must be a non-empty mapping name -> env overrides")
    for v, algs in methods.items():
        if v not in variants:
            raise ConfigError(f"methods.{v}: no such variant (known: {sorted(variants)})")
        if not isinstance(algs, list) or not algs:
            raise ConfigError(f"methods.{v} must be a non-empty list of algorithms")
        for a in algs:
            if a not in algorithms.names():
                raise ConfigError(f"methods.{v}: unknown algorithm {a!r}")
    for v in config["run"]:
        if v not in methods:
            raise ConfigError(f"run: {v!r} is not a variant with methods ({sorted(methods)})")


def run_config(config: dict[str, Any], variant: str, method: str, seed: int) -> dict[str, Any]:
    """The ``cfmimo train`` configuration of one (variant, method, seed)."""
    from ._sweep import train_config

    return train_config(
        "power_control",
        method,
        seed,
        env=(config["env"], config["variants"][variant]),
        trainer=(config["budget"].get(method, {}),),
        eval=config["eval"],
    )


def reproduce(config: dict[str, Any], out_dir: str | Path, progress: bool = True) -> dict:
    """Run (or reuse) every run of the sweep and write the comparison (module docstring)."""
    validate(config)
    from ._sweep import prepare_out, run_or_reuse

    out_dir = prepare_out(config, out_dir)
    runs = [
        ((v, m, s), f"{v}/{m}/seed{s}", run_config(config, v, m, s))
        for v in config["run"]
        for m in config["methods"][v]
        for s in config["seeds"]
    ]
    summaries = run_or_reuse(out_dir, runs, progress=progress)
    result = aggregate(config, summaries)
    write_outputs(out_dir, result)
    return result


def aggregate(config: dict[str, Any], summaries: dict[tuple[str, str, int], dict]) -> dict:
    """Per variant: each method's greedy policy and each heuristic (from the first method's
    runs: every run of a seed evaluates on the same setups), mean and 95 % interval over seeds,
    and the learned sum SE as a fraction of the optimiser's, seed by seed."""
    table = []
    seeds = config["seeds"]
    for v in config["run"]:
        methods = config["methods"][v]
        first = summaries[(v, methods[0], seeds[0])]["evaluation"]
        heuristics = [h for h in first if not h.startswith("learned")]
        entries = [(m, "learned", [(m, s, "learned (greedy)") for s in seeds]) for m in methods]
        entries += [(h, "heuristic", [(methods[0], s, h) for s in seeds]) for h in heuristics]
        for name, kind, keys in entries:
            evs = [summaries[(v, m, s)]["evaluation"][pol] for m, s, pol in keys]
            refs = [summaries[(v, m, s)]["evaluation"].get(REFERENCE) for m, s, _ in keys]
            row = {"variant": v, "policy": name, "kind": kind, "n_seeds": len(evs)}
            for k in METRICS:
                x = np.array([e[k] for e in evs], float)
                row[k] = float(np.mean(x))
                row[k + "_ci95"] = _ci95(x)
            if all(r is not None for r in refs):
                frac = np.array([e["sum_se"] / r["sum_se"] for e, r in zip(evs, refs, strict=True)])
                row["frac_of_optimised"] = float(np.mean(frac))
                row["frac_of_optimised_ci95"] = _ci95(frac)
                row["per_seed_sum_se"] = [float(e["sum_se"]) for e in evs]
            table.append(row)
    return {"seeds": seeds, "table": table}


def _cell(r, k, digits=3):
    v, h = r.get(k, math.nan), r.get(k + "_ci95", math.nan)
    if v is None or math.isnan(v):
        return "-"
    return f"{v:.{digits}f}" + ("" if math.isnan(h) else f" ± {h:.{digits}f}")


def write_outputs(out_dir: Path, result: dict) -> None:
    table = result["table"]
    fields = ["variant", "policy", "kind", "n_seeds"]
    for k in METRICS + ("frac_of_optimised",):
        fields += [k, k + "_ci95"]
    with (out_dir / "comparison.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        w.writeheader()
        w.writerows(table)
    (out_dir / "comparison.json").write_text(json.dumps(result, indent=2) + "\n", "utf-8")
    lines = [
        f"# Power-control testbed, seeds {result['seeds']}",
        "",
        "Mean over seeds ± 95 % Student-t half-width over seeds; the same held-out setups for",
        "every policy of a seed.",
        "",
        "| variant | policy | sum SE | min SE | power used | sum SE / optimiser's |",
        "|---|---|---|---|---|---|",
    ]
    for r in table:
        lines.append(
            f"| {r['variant']} | {r['policy']} | {_cell(r, 'sum_se')} | {_cell(r, 'min_se')} | "
            f"{_cell(r, 'power_frac')} | {_cell(r, 'frac_of_optimised')} |"
        )
    (out_dir / "comparison.md").write_text("\n".join(lines) + "\n", "utf-8")
    from .plots import plot_bars

    groups: dict[str, list] = {}
    for r in table:
        groups.setdefault(r["variant"], []).append((r["policy"], r["sum_se"], r["sum_se_ci95"]))
    plot_bars(groups, "sum SE (bit/s/Hz)", out_dir / "sum_se.png")
