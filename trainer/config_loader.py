"""Any configuration dataclass from a TOML, YAML or JSON file plus ``--set key=value``
overrides, and back to JSON beside what it produced.

A file holds the fields of the dataclass; nested sections are the nested dataclasses
(``[lora]``, ``[runtime]``, ``[stage1]`` …)::

    data_dir = "../shared/data/stard"
    output_dir = "runs/stard"
    [stage2]
    steps = 200
    rank_window = [10, 100]

``--set stage2.steps=50`` overrides one field; the value is read as a TOML value
(``50``, ``0.05``, ``true``, ``[10, 100]``, ``"text"``), and a bare word is a string.
Unknown keys are errors naming the key and what is allowed, so a typo never silently
trains with a default. The dataclasses themselves are :mod:`lexedge.trainer.config`'s.
"""

from __future__ import annotations

import dataclasses
import json
import tomllib
from pathlib import Path
from typing import Any, get_args, get_origin, get_type_hints

from lexedge.runtime.errors import LexedgeError
from lexedge.runtime.storage import write_json_atomic


def load_config(cls, path: str | Path | None = None, overrides: list[str] = ()):
    """Build ``cls`` from a TOML (``.toml``) or YAML (``.yaml``/``.yml``) file and
    ``key=value`` overrides.

    Example:
        >>> from lexedge.trainer.config import TrainEmbedderConfig
        >>> load_config(TrainEmbedderConfig, None, ["data_dir=d", "output_dir=o",
        ...             "stage2.steps=5"]).stage2.steps
        5
    """
    raw: dict = {}
    if path is not None:
        raw = _read_file(Path(path))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise LexedgeError(f"--set {item!r}: expected KEY=VALUE")
        _assign(raw, key.strip().split("."), _parse_value(value.strip()))
    config = _build(cls, raw, "")
    return config.validate() if hasattr(config, "validate") else config


def config_to_dict(config) -> dict:
    return dataclasses.asdict(config)


def save_config(config, path: str | Path) -> None:
    write_json_atomic(path, config_to_dict(config))


def _read_file(path: Path) -> dict:
    if not path.is_file():
        raise LexedgeError(f"{path}: config file not found")
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".toml":
        try:
            return tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise LexedgeError(f"{path}: {exc}") from None
    if path.suffix in (".yaml", ".yml"):
        try:
            import yaml
        except ImportError:
            raise LexedgeError(f"{path}: YAML configs need PyYAML: pip install pyyaml") from None
        try:
            loaded = yaml.safe_load(text) or {}
        except yaml.YAMLError as exc:
            raise LexedgeError(f"{path}: {exc}") from None
        if not isinstance(loaded, dict):
            raise LexedgeError(f"{path}: expected a mapping at the top level")
        return loaded
    if path.suffix == ".json":
        return json.loads(text)
    raise LexedgeError(f"{path}: config must be .toml, .yaml, .yml or .json")


def _parse_value(text: str) -> Any:
    try:
        return tomllib.loads(f"value = {text}")["value"]
    except tomllib.TOMLDecodeError:
        return text


def _assign(raw: dict, keys: list[str], value) -> None:
    for key in keys[:-1]:
        raw = raw.setdefault(key, {})
        if not isinstance(raw, dict):
            raise LexedgeError(f"--set {'.'.join(keys)}: {key} is not a section")
    raw[keys[-1]] = value


def _build(cls, raw: dict, where: str, default=None):
    """``default`` (or ``cls()``) with the keys of ``raw`` replaced, recursively: a section
    keeps its own defaults (stage 2's rank window is not stage 1's)."""
    if not isinstance(raw, dict):
        raise LexedgeError(f"config: {where.rstrip('.') or 'top level'} must be a section")
    default = default if default is not None else cls()
    hints = get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise LexedgeError(f"config: unknown key {where}{unknown[0]} "
                           f"(allowed: {', '.join(sorted(names))})")
    values = {}
    for name, value in raw.items():
        hint = hints[name]
        if dataclasses.is_dataclass(hint):
            values[name] = _build(hint, value, f"{where}{name}.", getattr(default, name))
        else:
            values[name] = _coerce(value, hint, f"{where}{name}")
    return dataclasses.replace(default, **values)


def _coerce(value, hint, key: str):
    origin = get_origin(hint)
    if origin is list:
        (item_type,) = get_args(hint)
        if isinstance(value, str):  # --set phases=1,2,3
            value = [v for v in value.split(",") if v]
        elif not isinstance(value, list):  # --phases 3
            value = [value]
        return [_coerce(v, item_type, key) for v in value]
    if hint is bool:
        if isinstance(value, bool):
            return value
        raise LexedgeError(f"config: {key} must be true or false, got {value!r}")
    if hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        raise LexedgeError(f"config: {key} must be an integer, got {value!r}")
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise LexedgeError(f"config: {key} must be a number, got {value!r}")
    if hint is str:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)  # phases = [1, 2, 3]
        if isinstance(value, str):
            return value
        raise LexedgeError(f"config: {key} must be a string, got {value!r}")
    return value
