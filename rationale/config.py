"""Stage configs as data: pydantic models read from YAML, overridden by flags, recorded resolved.

Every stage has one config model. A user writes it as YAML (the whole file, or the stage's
section of a pipeline file or of a run's `config.yaml`), overrides any key with a flag, and
the run directory records the resolved config. A key the model does not know, a value of
the wrong type, or a missing required key is a `ConfigError` naming the key, where it came
from, and what is expected.
"""

from __future__ import annotations

import difflib
import functools
import hashlib
import json
from pathlib import Path
from typing import Annotated, Any, ClassVar, TypeVar

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    ValidationError,
    model_validator,
)

from bird.data import split_dir_path

Config = TypeVar("Config", bound=BaseModel)


def _absolute(value: Path) -> Path:
    return value.expanduser().resolve()


def _seed_file(value: object) -> object:
    if str(value) == "demo:seeds":
        from bird.demo import SEEDS_PATH

        return SEEDS_PATH
    return value


# A split folder: a path, or `demo:train` / `demo:dev` (the embedded demo dataset, built on
# first use); recorded resolved, as an absolute path.
SplitDir = Annotated[Path, BeforeValidator(split_dir_path), AfterValidator(_absolute)]
# A seed file: a path, or `demo:seeds` (the demo dataset's seed rationales).
SeedFile = Annotated[Path, BeforeValidator(_seed_file), AfterValidator(_absolute)]


class ConfigError(ValueError):
    """A config that cannot be used; the message names the key, its source, and the fix."""

    @classmethod
    def listing(cls, problems: list[str]) -> ConfigError:
        """Every problem at once: one line, or one line each under a count."""
        unique = list(dict.fromkeys(problems))
        if len(unique) == 1:
            return cls(unique[0])
        return cls(f"{len(unique)} problems:\n" + "\n".join(f"  - {p}" for p in unique))


# Marks a config key as a place the stage writes into (`json_schema_extra`): commands check
# every such place before any work (`output_places`, `bird.files.check_output_place`).
OUTPUT_FILE = "file"
OUTPUT_FOLDER = "folder"


def field_extra(info: Any) -> dict[str, Any]:
    """A field's `json_schema_extra` as a mapping (empty when it has none)."""
    extra = info.json_schema_extra
    return extra if isinstance(extra, dict) else {}


def output_places(config: BaseModel) -> list[tuple[str, Path, bool]]:
    """`(key, path, is_folder)` for every key of `config` marked as an output place and set."""
    places = []
    for key, info in type(config).model_fields.items():
        kind = field_extra(info).get("output")
        value = getattr(config, key)
        if kind is not None and value is not None:
            places.append((key, Path(value), kind == OUTPUT_FOLDER))
    return places


class StageConfig(BaseModel):
    """Base of every stage config. Unknown keys are errors (a typo must not be ignored).

    `RUNTIME_FIELDS` (here or on a mixed-in part such as `BackendConfig`) change how fast or
    where a stage runs, not its results, so they may differ between a run and its resumption
    and are left out of the config hash."""

    model_config = ConfigDict(extra="forbid")

    RUNTIME_FIELDS: ClassVar[frozenset[str]] = frozenset()

    @model_validator(mode="before")
    @classmethod
    def _keys_as_flags(cls, values: Any) -> Any:
        """One spelling per setting: a key may also be written as its flag (`db` for
        `db_ids`, `base-url` for `base_urls`, `max-tokens` for `max_tokens`)."""
        if not isinstance(values, dict):
            return values
        aliases = key_aliases(cls)
        renamed = dict(values)
        for given in values:
            key = aliases.get(str(given))
            if key is not None and key not in values:  # both given: left as an unknown key
                renamed[key] = renamed.pop(given)
        return renamed

    @classmethod
    def runtime_fields(cls) -> frozenset[str]:
        fields: set[str] = set()
        for klass in cls.__mro__:
            fields |= getattr(klass, "RUNTIME_FIELDS", frozenset())
        return frozenset(fields)

    def identity(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude=set(self.runtime_fields()))

    def config_hash(self) -> str:
        return sha256_json(self.identity())


def field_flag(key: str, info: Any) -> str:
    """The command-line flag of a config key, without dashes: the field's `flag` extra
    (`db` for `db_ids`) or the key in kebab case."""
    return str(field_extra(info).get("flag", key.replace("_", "-")))


@functools.cache  # asked at every validation of every stage config
def key_aliases(model: type[BaseModel]) -> dict[str, str]:
    """Other spellings of `model`'s keys that mean the key: its flag, in kebab or snake case,
    and the key in kebab case. (Read only: the mapping is shared.)"""
    aliases: dict[str, str] = {}
    for key, info in model.model_fields.items():
        flag = field_flag(key, info)
        for spelling in (flag, flag.replace("-", "_"), key.replace("_", "-")):
            if spelling != key and spelling not in model.model_fields:
                aliases.setdefault(spelling, key)
    return aliases


def closest_key(given: str, model: type[BaseModel]) -> str | None:
    """The key of `model` nearest to a misspelt `given`, matched against keys and flags."""
    spellings = {key: key for key in model.model_fields} | key_aliases(model)
    close = difflib.get_close_matches(given, list(spellings), n=1)
    if not close:
        close = difflib.get_close_matches(given.replace("-", "_"), list(spellings), n=1)
    return spellings[close[0]] if close else None


def sha256_json(value: Any) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def read_config_file(path: Path, section: str) -> dict[str, Any]:
    """The mapping a config file gives stage `section`: the file's `section:` key when it
    has one (a pipeline file, a run's config.yaml), else the whole file."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise ConfigError(f"{path}: cannot read the config file ({error.strerror})") from None
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        problem = getattr(error, "problem", None) or str(error)
        raise ConfigError(f"{where}: not valid YAML ({problem})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}: expected a mapping of config keys, not {type(loaded).__name__}")
    nested = loaded.get(section)
    return dict(nested) if isinstance(nested, dict) else dict(loaded)


def describe_error(error: Any, model: type[BaseModel], sources: dict[str, str]) -> str:
    location = ".".join(str(part) for part in error["loc"])
    key = str(error["loc"][0]) if error["loc"] else ""
    origin = sources.get(key, "")
    where = f"{location} ({origin})" if origin else location
    if error["type"] == "extra_forbidden":
        same = key_aliases(model).get(key)
        if same is not None:
            return f"{where}: {key!r} and {same!r} are the same setting: give one of them"
        close = closest_key(key, model)
        hint = f"; did you mean {close!r}?" if close else ""
        return f"unknown config key {where}{hint}"
    if error["type"] == "missing":
        return f"missing required config key {location}: set it in the config file or by flag"
    if not error["loc"]:
        return str(error["msg"]).removeprefix("Value error, ")
    return f"{where}: {str(error['msg']).removeprefix('Value error, ')}"


def resolve_config(
    model: type[Config],
    file_values: dict[str, Any],
    overrides: dict[str, Any],
    *,
    file_label: str = "",
    override_labels: dict[str, str] | None = None,
) -> Config:
    """`model` from file values with `overrides` on top; errors name each bad key and whether
    it came from the file (`file_label`) or a flag (`override_labels[key]`)."""
    sources = {key: file_label for key in file_values if file_label}
    sources.update(override_labels or {})
    try:
        return model.model_validate({**file_values, **overrides})
    except ValidationError as error:
        problems = [describe_error(e, model, sources) for e in error.errors()]
        raise ConfigError.listing(problems) from None


def config_yaml(config: BaseModel) -> str:
    """The resolved config as YAML, as a run directory records it."""
    return yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False)
