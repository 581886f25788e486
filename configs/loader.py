"""Read a YAML config, apply `--set key.path=value` overrides, validate once, resolve paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from configs.errors import UserError
from configs.schema import PipelineConfig


def parse_override(text: str) -> tuple[list[str], Any]:
    """`a.b.c=value` -> (["a", "b", "c"], value parsed as a YAML scalar)."""
    key, sep, raw = text.partition("=")
    if not sep or not key.strip():
        raise UserError(f"override {text!r} is not of the form key.path=value")
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError as exc:
        raise UserError(f"override {text!r} has a value that is not valid YAML ({exc.__class__.__name__})") from exc
    return key.strip().split("."), value


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    for text in overrides:
        keys, value = parse_override(text)
        node = data
        for key in keys[:-1]:
            child = node.get(key)
            if child is None:
                child = node[key] = {}
            if not isinstance(child, dict):
                raise UserError(f"override {text!r}: {key!r} is not a section")
            node = child
        node[keys[-1]] = value
    return data


def _describe(error: ValidationError) -> str:
    first = error.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "config"
    return f"{where}: {first['msg']}"


def validate_config(data: dict[str, Any], source: str = "config") -> PipelineConfig:
    try:
        return PipelineConfig.model_validate(data)
    except ValidationError as exc:
        raise UserError(f"{source}: {_describe(exc)}") from exc


def load_config(path: Path | None, overrides: list[str] | None = None, base_dir: Path | None = None) -> PipelineConfig:
    """Load and validate; relative paths resolve against `base_dir` (default: the working directory)."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        if not Path(path).is_file():
            raise UserError(f"config file {path} does not exist")
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise UserError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise UserError(f"config file {path} must hold a mapping at the top level")
        data = loaded or {}
    data = apply_overrides(data, overrides or [])
    config = validate_config(data, source)
    return resolve_paths(config, base_dir or Path.cwd())


def resolve_paths(config: BaseModel, base: Path) -> Any:
    """A copy of `config` whose Path fields (and a relative sqlite tracking URI) are absolute."""
    updates: dict[str, Any] = {}
    for name in type(config).model_fields:
        value = getattr(config, name)
        if isinstance(value, Path):
            updates[name] = value if value.is_absolute() else (base / value).resolve()
        elif isinstance(value, BaseModel):
            updates[name] = resolve_paths(value, base)
        elif isinstance(value, list) and value and isinstance(value[0], BaseModel):
            updates[name] = [resolve_paths(item, base) for item in value]
        elif name == "uri" and isinstance(value, str) and value.startswith("sqlite:///"):
            db = Path(value[len("sqlite:///"):])
            if not db.is_absolute():
                updates[name] = "sqlite:///" + str((base / db).resolve())
    return config.model_copy(update=updates)


def config_to_yaml(config: BaseModel) -> str:
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)


def flatten(data: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}} -> {"a.b": 1}; used for MLflow params and `--set` listings."""
    flat: dict[str, Any] = {}
    for key, value in data.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flatten(value, name + "."))
        else:
            flat[name] = value
    return flat
