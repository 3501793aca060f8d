"""Entry point of the ``cfmimo`` command line.

Subcommands:
  evaluate   uplink/downlink SE of every scheme over random network setups, or (``--run DIR``)
             a training run's checkpoint against the heuristic baselines
  train      multi-agent RL training of any registered algorithm on any registered scenario
  reproduce  reproduce a comparison and its figures (``aps-gnn``: the APS-GNN paper;
             ``power-control``: the power-control testbed against its optimiser;
             ``ap-cooperation``: [AP-COOP]'s double DQN; ``xl-uplink``: [XL-FUZZY]'s methods;
             ``mobile-ap``: [MOBILE-AP]'s SF-MADDPG, its ablations and MDGNN)
  bench      kernel benchmarks: runs ``bench/bench_kernels.py`` with the given arguments
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from .config import ConfigError, load_config

PROG = "cfmimo"
NOT_IMPLEMENTED = "{prog} {command}: not implemented yet (see issues)"


def _not_implemented(command: str) -> int:
    print(NOT_IMPLEMENTED.format(prog=PROG, command=command), file=sys.stderr)
    return 2


def _find_bench_script() -> Path | None:
    """``bench/bench_kernels.py`` of the source checkout (or of the working directory)."""
    for root in (Path(__file__).resolve().parents[1], Path.cwd()):
        script = root / "bench" / "bench_kernels.py"
        if script.is_file():
            return script
    return None


def _bench(args: list[str]) -> int:
    script = _find_bench_script()
    if script is None:
        return _not_implemented("bench")
    return subprocess.call([sys.executable, str(script), *args], cwd=script.parents[1])


def _split_evaluate_args(items: list[str]) -> tuple[str | None, list[str]]:
    """Separate the optional configuration file from ``key=value`` overrides."""
    config_path: str | None = None
    overrides: list[str] = []
    for item in items:
        if "=" in item and not Path(item).is_file():
            overrides.append(item)
        elif config_path is None:
            config_path = item
        else:
            raise ConfigError(
                f"more than one configuration file given ({config_path!r} and {item!r}); "
                "overrides must be of the form key=value"
            )
    return config_path, overrides


def _evaluate(ns: argparse.Namespace) -> int:
    if ns.run is not None:
        if ns.items:
            raise ConfigError("--run takes no configuration or overrides (it uses the run's)")
        from .train import evaluate_checkpoint

        evaluate_checkpoint(ns.run)
        return 0
    config_path, overrides = _split_evaluate_args(ns.items)
    config = load_config(config_path, overrides, command="evaluate")
    if ns.print_config:
        import yaml

        print(yaml.safe_dump(config, sort_keys=False), end="")
        return 0
    from .evaluate import evaluate

    evaluate(config, ns.out, progress=not ns.no_progress)
    return 0


def _train(ns: argparse.Namespace) -> int:
    if ns.list:
        from .train import list_registry

        print(list_registry())
        return 0
    config_path, overrides = _split_evaluate_args(ns.items)
    config = load_config(config_path, overrides, command="train")
    from .train import train, validate_train

    validate_train(config)
    if ns.print_config:
        import yaml

        print(yaml.safe_dump(config, sort_keys=False), end="")
        return 0
    train(config, ns.out, resume=ns.resume, progress=not ns.no_progress)
    return 0


def _reproduce(ns: argparse.Namespace) -> int:
    from .reproduce import PAPERS, reproduce, validate_reproduce

    papers = PAPERS + ("power-control", "ap-cooperation", "xl-uplink", "mobile-ap")
    if ns.paper not in papers:
        raise ConfigError(f"paper must be one of {papers}, got {ns.paper!r}")
    config_path, overrides = _split_evaluate_args(ns.items)
    if ns.paper == "ap-cooperation":
        from . import reproduce_coop

        config = load_config(config_path, overrides, command="reproduce_ap_cooperation")
        reproduce_coop.validate(config)
        run = reproduce_coop.reproduce
    elif ns.paper == "xl-uplink":
        from . import reproduce_xl

        config = load_config(config_path, overrides, command="reproduce_xl_uplink")
        reproduce_xl.validate(config)
        run = reproduce_xl.reproduce
    elif ns.paper == "mobile-ap":
        from . import reproduce_mobile

        config = load_config(config_path, overrides, command="reproduce_mobile_ap")
        reproduce_mobile.validate(config)
        run = reproduce_mobile.reproduce
    elif ns.paper == "power-control":
        from . import reproduce_power

        config = load_config(config_path, overrides, command="reproduce_power_control")
        reproduce_power.validate(config)
        run = reproduce_power.reproduce
    else:
        config = load_config(config_path, overrides, command="reproduce")
        config["paper"] = ns.paper
        validate_reproduce(config)
        run = reproduce
    if ns.print_config:
        import yaml

        print(yaml.safe_dump(config, sort_keys=False), end="")
        return 0
    out = ns.out or f"results/reproduce_{ns.paper.replace('-', '_')}"
    cache = compile_cache_dir(ns.compile_cache, out)
    if cache is not None:
        import jax

        jax.config.update("jax_compilation_cache_dir", cache)
    run(config, out, progress=not ns.no_progress)
    print(Path(out, "comparison.md").read_text(encoding="utf-8"))
    return 0


def compile_cache_dir(option: str | None, out: str) -> str | None:
    """The persistent compilation cache of a sweep: the runs of a sweep differ in their seeds,
    not in their programs, so each program is compiled once and read back from disk by the
    other runs (and by a resumed sweep). ``option``: ``None`` = ``OUT/.jax_cache``, ``"off"`` =
    none; a ``JAX_COMPILATION_CACHE_DIR`` in the environment wins (``None`` returned: JAX reads
    it itself)."""
    import os

    if option == "off" or os.environ.get("JAX_COMPILATION_CACHE_DIR"):
        return None
    return str(Path(option) if option else Path(out) / ".jax_cache")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG,
        description="cfmimo-jax: JAX cell-free massive MIMO simulator and Flax multi-agent RL.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    ev = sub.add_parser(
        "evaluate",
        help="uplink/downlink SE of every combining/precoding scheme (book, sections 5-6)",
        description=(
            "Evaluate the per-UE uplink and downlink spectral efficiency of every "
            "combining/precoding scheme over random network setups. With no CONFIG the "
            "embedded default (the book's canonical setting) is used; key=value overrides "
            "(dotted keys for nesting, e.g. network.K=20) are applied on top."
        ),
    )
    ev.add_argument(
        "items",
        nargs="*",
        metavar="[CONFIG] [key=value ...]",
        help="optional YAML configuration file, then overrides",
    )
    ev.add_argument(
        "--out",
        default="results/evaluate",
        metavar="DIR",
        help="output folder for per_ue_se.csv, summary.json, se_cdf.png "
        "(default: results/evaluate)",
    )
    ev.add_argument("--no-progress", action="store_true", help="no progress bar")
    ev.add_argument(
        "--print-config",
        action="store_true",
        help="print the resolved configuration and exit without computing",
    )
    ev.add_argument(
        "--run",
        default=None,
        metavar="DIR",
        help="evaluate the latest checkpoint of the training run in DIR against the "
        "heuristic baselines on the same episodes (writes DIR/evaluation.json)",
    )
    ev.set_defaults(func=_evaluate)

    tr = sub.add_parser(
        "train",
        help="train multi-agent RL (scenario=NAME algorithm=NAME; --list names them)",
        description=(
            "Train a multi-agent policy. With no CONFIG the embedded default (a short "
            "MAPPO-Lagrangian run on the medium AP-selection scenario, APS-GNN) is used; "
            "scenario=NAME and algorithm=NAME choose others (each then starts from its own "
            "defaults); key=value overrides (dotted keys, e.g. trainer.n_updates=100) are "
            "applied on top."
        ),
    )
    tr.add_argument("items", nargs="*", metavar="[CONFIG] [key=value ...]")
    tr.add_argument("--out", default="results/train", metavar="DIR", help="output folder")
    tr.add_argument(
        "--resume", action="store_true", help="continue from the latest checkpoint in DIR"
    )
    tr.add_argument("--no-progress", action="store_true", help="no progress bar")
    tr.add_argument("--print-config", action="store_true", help="print the configuration")
    tr.add_argument(
        "--list",
        action="store_true",
        help="list the scenarios (with their heuristics) and algorithms, and exit",
    )
    tr.set_defaults(func=_train)

    rp = sub.add_parser(
        "reproduce",
        help=(
            "reproduce a comparison table and figures "
            "(aps-gnn | power-control | ap-cooperation | xl-uplink | mobile-ap)"
        ),
        description=(
            "Train and evaluate every method of a paper's comparison over scenarios and seeds, "
            "then write the comparison table (CSV/JSON/Markdown) and the paper's plots. "
            "Finished runs in the output folder are reused."
        ),
    )
    rp.add_argument(
        "paper",
        metavar="PAPER",
        help="aps-gnn | power-control | ap-cooperation | xl-uplink | mobile-ap",
    )
    rp.add_argument("items", nargs="*", metavar="[CONFIG] [key=value ...]")
    rp.add_argument("--out", default=None, metavar="DIR", help="output folder")
    rp.add_argument("--no-progress", action="store_true", help="no progress bar")
    rp.add_argument("--print-config", action="store_true", help="print the configuration")
    rp.add_argument(
        "--compile-cache",
        default=None,
        metavar="DIR|off",
        help="JAX's persistent compilation cache shared by the runs (default OUT/.jax_cache; "
        "off: none)",
    )
    rp.set_defaults(func=_reproduce)

    b = sub.add_parser(
        "bench",
        help="kernel benchmarks (runs bench/bench_kernels.py with the given arguments)",
        add_help=False,
    )
    b.add_argument("args", nargs=argparse.REMAINDER)
    b.set_defaults(func=lambda ns: _bench(ns.args))
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``cfmimo`` command line; returns the exit status."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "bench":  # pass everything, --help included, to the script
        return _bench(argv[1:])
    parser = build_parser()
    ns = parser.parse_args(argv)
    try:
        return ns.func(ns)
    except ConfigError as err:
        print(f"{PROG} {ns.command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{PROG} {ns.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
