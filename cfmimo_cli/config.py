"""YAML configurations for the ``cfmimo`` command line.

A configuration is a nested mapping read from YAML. The embedded default of a command
(``cfmimo_cli/defaults/<command>_canonical.yaml``, shipped as package data) defines the
schema: a configuration file or a ``key=value`` override may only set keys that exist in
the default, dotted keys (``network.K=20``) address nested mappings, and override values
are parsed as YAML scalars (``genie=true``, ``network.asd_azimuth_deg=null``).

Every value is checked here, before any computation, and a bad one raises
:class:`ConfigError` (a ``ValueError``) that names the parameter.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Iterable, Mapping
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

__all__ = [
    "ConfigError",
    "apply_overrides",
    "default_config_text",
    "load_config",
    "load_default",
    "parse_override",
    "validate_evaluate",
]


_FLOAT_RE = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)([eE][-+]?\d+)?")


class ConfigError(ValueError):
    """A configuration that cannot be used: unknown key, bad value or inconsistent values."""


def default_config_text(command: str = "evaluate") -> str:
    """The text of the embedded default configuration of ``command``."""
    name = f"{command}_canonical.yaml"
    ref = resources.files("cfmimo_cli").joinpath("defaults", name)
    if not ref.is_file():
        raise ConfigError(f"no embedded default configuration for command {command!r}")
    return ref.read_text(encoding="utf-8")


def load_default(command: str = "evaluate") -> dict[str, Any]:
    """The embedded default configuration of ``command`` as a nested dict."""
    return _parse_mapping(default_config_text(command), f"embedded default for {command!r}")


def _parse_mapping(text: str, source: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from err
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys to values")
    return data


def _merge(base: dict[str, Any], update: Mapping[str, Any], prefix: str, source: str) -> None:
    """Merge ``update`` into ``base`` in place, refusing keys that ``base`` lacks."""
    for key, value in update.items():
        dotted = f"{prefix}{key}"
        if not isinstance(key, str) or key not in base:
            raise ConfigError(
                f"{source}: unknown configuration key {dotted!r} "
                f"(known at this level: {', '.join(sorted(base)) or 'none'})"
            )
        if isinstance(base[key], dict):
            if not isinstance(value, Mapping):
                raise ConfigError(
                    f"{source}: {dotted!r} is a section; set its keys "
                    f"({', '.join(sorted(base[key]))}), not a single value"
                )
            _merge(base[key], value, f"{dotted}.", source)
        else:
            if isinstance(value, Mapping):
                raise ConfigError(f"{source}: {dotted!r} takes a single value, not a mapping")
            if isinstance(value, list) and not (isinstance(base[key], list) or base[key] is None):
                raise ConfigError(f"{source}: {dotted!r} takes a single value, not a list")
            base[key] = value


def parse_override(text: str) -> tuple[list[str], Any]:
    """Split ``"a.b=value"`` into ``(["a", "b"], value)``, the value parsed as YAML (a scalar
    or a flow list such as ``seeds=[0, 1]``)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"override {text!r} is not of the form key=value")
    parts = key.split(".")
    if any(not p for p in parts):
        raise ConfigError(f"override {text!r}: empty component in the dotted key {key!r}")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as err:
        raise ConfigError(f"override {text!r}: value is not a valid YAML scalar: {err}") from err
    if isinstance(value, str) and _FLOAT_RE.fullmatch(value.strip()):
        value = float(value)  # YAML 1.1 reads "1e-3" as a string; the intent is a number
    if isinstance(value, dict):
        raise ConfigError(f"override {text!r}: value must be a scalar or a list, not a mapping")
    return parts, value


def apply_overrides(config: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Return a copy of ``config`` with ``key=value`` overrides applied (dotted keys nest)."""
    config = copy.deepcopy(config)
    for text in overrides:
        parts, value = parse_override(text)
        nested: Any = value
        for part in reversed(parts):
            nested = {part: nested}
        _merge(config, nested, "", f"override {text!r}")
    return config


def load_config(
    path: str | Path | None = None,
    overrides: Iterable[str] = (),
    command: str = "evaluate",
) -> dict[str, Any]:
    """Load and validate the configuration of ``command``.

    Starts from the embedded default, merges the YAML file ``path`` (if given; it may set any
    subset of the default's keys), then the ``key=value`` ``overrides``, and validates.
    """
    file_data = None
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"configuration file {str(path)!r} does not exist")
        file_data = _parse_mapping(path.read_text(encoding="utf-8"), str(path))
    config = train_schema(file_data, overrides) if command == "train" else load_default(command)
    if file_data is not None:
        _merge(config, file_data, "", str(path))
    config = apply_overrides(config, overrides)
    if command == "evaluate":
        validate_evaluate(config)
    return config


def train_schema(file_data: Mapping[str, Any] | None, overrides: Iterable[str]) -> dict[str, Any]:
    """The defaults (and so the schema) of a ``train`` configuration.

    ``scenario`` and ``algorithm`` are read first (an override wins over the file, the file over
    the embedded default). The ``env`` section is the scenario's default configuration
    (``cfmimo_jax.envs.default_config``), the ``trainer`` section the algorithm's
    (``algorithms.default_config``); the embedded default's own ``env`` / ``trainer`` values (the
    main job) are laid over them when its scenario (and, for ``trainer``, its scenario and the
    algorithm's trainer module) is the one chosen.
    """
    import algorithms
    from cfmimo_jax import envs

    embedded = load_default("train")
    chosen = {"scenario": embedded["scenario"], "algorithm": embedded["algorithm"]}
    for name in chosen:
        if file_data is not None and name in file_data:
            chosen[name] = file_data[name]
    for text in overrides:
        parts, value = parse_override(text)
        if len(parts) == 1 and parts[0] in chosen:
            chosen[parts[0]] = value
    if chosen["scenario"] not in envs.names():
        raise ConfigError(f"scenario must be one of {envs.names()}, got {chosen['scenario']!r}")
    if chosen["algorithm"] not in algorithms.names():
        raise ConfigError(
            f"algorithm must be one of {algorithms.names()}, got {chosen['algorithm']!r}"
        )
    config = {k: v for k, v in embedded.items() if k not in ("env", "trainer")}
    config.update(chosen)
    config["env"] = envs.default_config(chosen["scenario"])
    config["trainer"] = algorithms.default_config(chosen["algorithm"])
    if chosen["scenario"] == embedded["scenario"]:
        _merge(config["env"], embedded["env"], "env.", "embedded default for 'train'")
        same_module = algorithms.module_of(chosen["algorithm"]) == algorithms.module_of(
            embedded["algorithm"]
        )
        if same_module:
            _merge(config["trainer"], embedded["trainer"], "trainer.", "embedded default")
    # the section order of the embedded default
    order = list(embedded)
    return {k: config[k] for k in order if k in config} | {
        k: v for k, v in config.items() if k not in order
    }


# --------------------------------------------------------------------------------------------
# Validation
# --------------------------------------------------------------------------------------------


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_real(value: Any) -> bool:
    return _is_int(value) or (isinstance(value, float) and math.isfinite(value))


def _positive_int(name: str, value: Any) -> None:
    if not _is_int(value) or value < 1:
        raise ConfigError(f"{name} must be a positive integer, got {value!r}")


def _real(name: str, value: Any, *, positive: bool = False, nonnegative: bool = False) -> None:
    if not _is_real(value):
        raise ConfigError(f"{name} must be a finite number, got {value!r}")
    if positive and value <= 0:
        raise ConfigError(f"{name} must be positive, got {value!r}")
    if nonnegative and value < 0:
        raise ConfigError(f"{name} must be non-negative, got {value!r}")


def validate_evaluate(config: Mapping[str, Any]) -> None:
    """Check every value of an ``evaluate`` configuration; raise :class:`ConfigError` if bad."""
    # The structure is guaranteed by the merge against the default; check values.
    seed = config["seed"]
    if not _is_int(seed) or not 0 <= seed < 2**32:
        raise ConfigError(f"seed must be an integer in [0, 2**32), got {seed!r}")
    for name in ("n_setups", "n_realizations", "devices"):
        _positive_int(name, config[name])
    if not isinstance(config["genie"], bool):
        raise ConfigError(f"genie must be true or false, got {config['genie']!r}")

    net = config["network"]
    for name in ("L", "K", "N", "tau_c", "tau_p"):
        _positive_int(f"network.{name}", net[name])
    if net["tau_p"] >= net["tau_c"]:
        raise ConfigError(
            f"network.tau_p ({net['tau_p']}) must be smaller than network.tau_c "
            f"({net['tau_c']}): no samples would be left for data"
        )
    asd = {k: net[k] for k in ("asd_azimuth_deg", "asd_elevation_deg")}
    if (asd["asd_azimuth_deg"] is None) != (asd["asd_elevation_deg"] is None):
        raise ConfigError(
            "network.asd_azimuth_deg and network.asd_elevation_deg must both be numbers "
            "(local-scattering correlation) or both null (uncorrelated, R = gain * I), got "
            f"{asd['asd_azimuth_deg']!r} and {asd['asd_elevation_deg']!r}"
        )
    for name, value in asd.items():
        if value is not None:
            _real(f"network.{name}", value, nonnegative=True)
            if value > 180:
                raise ConfigError(f"network.{name} is in degrees, at most 180, got {value!r}")

    power = config["power"]
    _real("power.p_mw", power["p_mw"], positive=True)
    _real("power.rho_max_mw", power["rho_max_mw"], positive=True)
    _real("power.downlink_exponent", power["downlink_exponent"])
