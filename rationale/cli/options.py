"""Command-line options derived from a stage's config model, so nothing is declared twice.

Every key of the config is a flag: `--kebab-name` (or the name the field gives in
`json_schema_extra={"flag": ...}`, such as `--db` for `db_ids`), with the field's
description as help, its default, its choices (`Literal` types) and `--x/--no-x` for
booleans; list keys are repeatable flags. Options are grouped in `--help` by the config
part that declares them (model and backend, sampling, the stage's own keys).

`--config FILE.yaml` gives values first (the file's section named after the stage when it
has one: a pipeline file or a run's config.yaml); flags typed on the command line override
them; the config model validates the result, and errors name the key and where it came
from (`rationale.config.resolve_config`).
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum, StrEnum
from functools import cache
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import typer
import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

from rationale.cli.common import reporting_errors
from rationale.config import (
    ConfigError,
    config_yaml,
    field_flag,
    read_config_file,
    resolve_config,
)
from rationale.logs import LogLevel

_GIVEN = frozenset({"COMMANDLINE", "ENVIRONMENT"})
STAGE_PANEL = "Stage options"
ADVANCED_PANEL = "Advanced options"
_RESERVED = frozenset({"ctx", "config", "print_config", "help_all"})
# The keys users change first. A command with more options than fit a screen shows these
# (and its required keys) in --help and the rest under "Advanced options" in --help-all.
COMMON_KEYS = frozenset({
    "data", "kind", "out", "output", "input", "predictions", "seeds", "bootstrap",
    "backend", "model", "base_urls", "device", "batch_size", "tokenizer", "recipe",
    "db_ids", "limit", "iterations", "samples", "shots", "mode", "n", "questions", "compare",
    "max_tokens", "temperature", "max_prompt_tokens", "run", "results",
})  # fmt: skip
ONE_SCREEN = 7  # a command with at most this many keys shows them all


@dataclass(frozen=True)
class ConfigOption:
    """One config key as a command-line option."""

    key: str
    flag: str
    parameter: inspect.Parameter


@cache
def _choices(name: str, values: tuple[str, ...]) -> type[StrEnum]:
    """An enum for a `Literal` of strings (typer shows enums as choices)."""
    return StrEnum(name, {value: value for value in values})  # type: ignore[return-value]


def _option_type(key: str, annotation: Any) -> Any:
    """The type typer parses `annotation` with: Optional unwrapped, Literal as an enum."""
    origin = get_origin(annotation)
    if origin in (Union, types.UnionType):
        members = [arg for arg in get_args(annotation) if arg is not type(None)]
        if len(members) == 1:
            return _option_type(key, members[0]) | None
    if origin is Literal:
        return _choices(f"{key}_choice", tuple(str(value) for value in get_args(annotation)))
    if origin is list:
        (member,) = get_args(annotation)
        return list[_option_type(key, member)]  # type: ignore[misc]
    if origin is dict:  # a mapping is a repeatable KEY=VALUE flag
        return list[str]
    return annotation


def _panel(model: type[BaseModel], key: str) -> str:
    """The help panel of a key: the `CLI_PANEL` of the config part that declares it."""
    declaring = [klass for klass in model.__mro__ if key in vars(klass).get("__annotations__", {})]
    return vars(declaring[-1]).get("CLI_PANEL", STAGE_PANEL) if declaring else STAGE_PANEL


def _typer_default(info: FieldInfo, option_type: Any) -> Any:
    if info.is_required():
        return None
    default = info.get_default(call_default_factory=True)
    if isinstance(default, str) and isinstance(option_type, type) and issubclass(option_type, Enum):
        return option_type(default)
    return default


def config_options(model: type[BaseModel]) -> list[ConfigOption]:
    """The options of every key of `model`: the stage's own keys first, then each shared
    part's (model and backend, sampling), in declaration order within each."""
    panels = {key: _panel(model, key) for key in model.model_fields}
    order = list(dict.fromkeys([STAGE_PANEL, *panels.values()]))
    keys = sorted(model.model_fields, key=lambda key: order.index(panels[key]))
    options = []
    folded = len(keys) > ONE_SCREEN
    for key in keys:
        info = model.model_fields[key]
        advanced = folded and key not in COMMON_KEYS and not info.is_required()
        if key in _RESERVED:
            raise ValueError(f"config key {key!r} clashes with a command's own option")
        flag = field_flag(key, info)
        option_type = _option_type(key, info.annotation)
        default = _typer_default(info, option_type)
        declaration = f"--{flag}/--no-{flag}" if info.annotation is bool else f"--{flag}"
        help_text = info.description or ""
        if info.is_required():
            help_text += " (required: by flag or in --config)"
        option = typer.Option(
            default,
            declaration,
            help=help_text,
            show_default=not info.is_required(),
            rich_help_panel=ADVANCED_PANEL if advanced else panels[key],
            hidden=advanced,
        )
        parameter = inspect.Parameter(
            key, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=option_type
        )
        options.append(ConfigOption(key=key, flag=flag, parameter=parameter))
    return options


def _plain(value: Any) -> Any:
    """A parsed option value as config data (enums as their values, tuples as lists)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    return value


def _mapping(flag: str, pairs: list[str]) -> dict[str, Any]:
    """`KEY=VALUE` flags as a mapping, each value read as YAML (numbers, booleans, lists)."""
    mapping: dict[str, Any] = {}
    for pair in pairs:
        key, separator, raw = pair.partition("=")
        if not separator or not key.strip():
            raise ConfigError(f"--{flag} {pair!r}: expected KEY=VALUE")
        try:
            mapping[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as error:
            raise ConfigError(f"--{flag} {pair!r}: the value is not YAML ({error})") from None
    return mapping


def config_command(
    model: type[BaseModel],
    section: str,
    body: Callable[[Any, dict[str, Any]], None],
    *,
    extra: Sequence[inspect.Parameter] = (),
    doc: str,
) -> Callable[..., None]:
    """A typer command whose options are `extra` plus every key of `model`.

    The command resolves the config (file, then flags) and calls `body(config, extras)`,
    where `extras` holds the values of the `extra` parameters. With `--print-config` it
    prints the resolved config as YAML instead: a file to copy and edit.
    """
    options = config_options(model)
    leading = [
        inspect.Parameter("ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context),
        inspect.Parameter(
            "config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                None,
                "--config",
                help=f"YAML file of config keys (or with a {section!r} section); flags "
                "given here override it.",
            ),
            annotation=Path | None,
        ),
        inspect.Parameter(
            "help_all",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                False,
                "--help-all",
                help="Show every option, the advanced ones too, and exit.",
                is_eager=True,
                callback=_help_all,
            ),
            annotation=bool,
        ),
        inspect.Parameter(
            "print_config",
            inspect.Parameter.KEYWORD_ONLY,
            default=typer.Option(
                False, "--print-config", help="Print the resolved config as YAML and exit."
            ),
            annotation=bool,
        ),
    ]
    parameters = [*leading, *extra, *(option.parameter for option in options)]

    @reporting_errors
    def command(**values: Any) -> None:
        ctx: typer.Context = values.pop("ctx")
        values.pop("help_all")
        config_file: Path | None = values.pop("config")
        print_config: bool = values.pop("print_config")
        extras = {parameter.name: values.pop(parameter.name) for parameter in extra}
        file_values = read_config_file(config_file, section) if config_file is not None else {}
        overrides: dict[str, Any] = {}
        labels: dict[str, str] = {}
        for option in options:
            source = ctx.get_parameter_source(option.key)
            if source is not None and source.name in _GIVEN:
                value = _plain(values[option.key])
                if get_origin(model.model_fields[option.key].annotation) is dict:
                    value = _mapping(option.flag, value)
                overrides[option.key] = value
                labels[option.key] = f"--{option.flag}"
        config = resolve_config(
            model,
            file_values,
            overrides,
            file_label=f"from {config_file}" if config_file is not None else "",
            override_labels={key: f"from {label}" for key, label in labels.items()},
        )
        if print_config:
            typer.echo(config_yaml(config), nl=False)
            return
        body(config, extras)

    command.__signature__ = inspect.Signature(parameters)  # type: ignore[attr-defined]
    command.__annotations__ = {p.name: p.annotation for p in parameters}
    # one line per paragraph: the help reflows paragraphs but keeps their line breaks
    paragraphs = [" ".join(p.split()) for p in inspect.cleandoc(doc).split("\n\n")]
    hidden = [f"--{option.flag}" for option in options if option.parameter.default.hidden]
    if hidden:
        paragraphs.append(
            f"{len(hidden)} more options ({', '.join(hidden[:3])}, ...): see --help-all."
        )
    command.__doc__ = "\n\n".join(paragraphs)
    return command


def _help_all(ctx: typer.Context, value: bool) -> None:
    """`--help-all`: the help with the advanced options shown."""
    if not value or ctx.resilient_parsing:
        return
    hidden = [p for p in ctx.command.params if getattr(p, "hidden", False)]
    for parameter in hidden:
        parameter.hidden = False  # type: ignore[attr-defined]
    try:
        typer.echo(ctx.get_help(), nl=False)
    finally:
        for parameter in hidden:
            parameter.hidden = True  # type: ignore[attr-defined]
    raise typer.Exit()


def _keyword(name: str, option: Any, annotation: Any) -> inspect.Parameter:
    return inspect.Parameter(
        name, inspect.Parameter.KEYWORD_ONLY, default=option, annotation=annotation
    )


RUN_OPTION = _keyword(
    "run",
    typer.Option(None, "--run", help="Run directory (created if absent). (required)"),
    Path | None,
)
LOG_LEVELS = _choices("LogLevel", get_args(LogLevel))
LOG_LEVEL_OPTION = _keyword(
    "log_level",
    typer.Option(
        LOG_LEVELS("info"),
        "--log-level",
        help="What the run directory's log file (logs/<stage>.log) keeps. The console "
        "shows the same either way.",
        case_sensitive=False,
        rich_help_panel=ADVANCED_PANEL,
        hidden=True,  # shown by --help-all, with the other advanced options
    ),
    LOG_LEVELS,
)
FORCE_OPTION = _keyword(
    "force",
    typer.Option(
        False,
        "--force",
        help="Discard this stage's results in the run directory and start it over.",
    ),
    bool,
)
