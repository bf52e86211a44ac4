"""Load scenarios from YAML files or by the name of a shipped scenario (safe YAML only)."""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .schema import Scenario
from .validate import Problem, ScenarioError, validate_data

_SHIPPED_PACKAGE = "hashpivot.scenarios"
_SHIPPED_DIR = "shipped"


class _UniqueKeyLoader(yaml.SafeLoader):
    """Safe loader that refuses duplicate keys instead of keeping the last one silently."""


def _construct_mapping(loader: _UniqueKeyLoader, node: yaml.MappingNode, deep: bool = False) -> Any:
    seen: dict[Any, int] = {}
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        try:
            hash(key)
        except TypeError:
            raise yaml.constructor.ConstructorError(
                None, None, "mapping keys must be scalars", key_node.start_mark
            ) from None
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark
            )
        seen[key] = key_node.start_mark.line
    return loader.construct_mapping(node, deep=deep)


def _construct_timestamp(loader: _UniqueKeyLoader, node: yaml.ScalarNode) -> Any:
    """A date, or the text itself when it only looks like one (``2027-13-01``), so that
    validation reports it against its field instead of failing the parse."""
    try:
        return yaml.SafeLoader.construct_yaml_timestamp(loader, node)
    except ValueError:
        return loader.construct_scalar(node)


_UniqueKeyLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)
_UniqueKeyLoader.add_constructor("tag:yaml.org,2002:timestamp", _construct_timestamp)

# YAML 1.2 floats: PyYAML (YAML 1.1) reads ``9.0e6`` and ``1e7`` as strings, while editors and
# YAML 1.2 parsers read numbers; scenarios are written as YAML 1.2 expects.
_FLOAT_12 = re.compile(
    r"""^(?:[-+]?(?:[0-9][0-9_]*)?\.[0-9_]*(?:[eE][-+]?[0-9]+)?
    |[-+]?[0-9][0-9_]*[eE][-+]?[0-9]+
    |[-+]?\.(?:inf|Inf|INF)
    |\.(?:nan|NaN|NAN))$""",
    re.X,
)
_UniqueKeyLoader.yaml_implicit_resolvers = {
    key: [(tag, rx) for tag, rx in resolvers if tag != "tag:yaml.org,2002:float"]
    for key, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_UniqueKeyLoader.add_implicit_resolver("tag:yaml.org,2002:float", _FLOAT_12, list("-+0123456789."))


def parse_yaml(text: str, source: str = "") -> Any:
    """Parse YAML text safely; syntax errors become a :class:`ScenarioError` with the line."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except RecursionError:
        raise ScenarioError([Problem("YAML", "invalid YAML: nested too deeply")], source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = getattr(exc, "problem", None) or str(exc)
        raise ScenarioError([Problem(where, f"invalid YAML: {problem}")], source) from None


def shipped_names() -> list[str]:
    """Names of the scenarios shipped with the package."""
    folder = resources.files(_SHIPPED_PACKAGE).joinpath(_SHIPPED_DIR)
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def shipped_path(name: str) -> Path:
    """Path of the shipped scenario ``name``."""
    ref = resources.files(_SHIPPED_PACKAGE).joinpath(_SHIPPED_DIR, f"{name}.yaml")
    return Path(str(ref))


def shipped_descriptions() -> dict[str, str]:
    """One-line description of each shipped scenario."""
    out = {}
    for name in shipped_names():
        data = parse_yaml(shipped_path(name).read_text(encoding="utf-8"), name)
        out[name] = str(data.get("description", "")) if isinstance(data, dict) else ""
    return out


def read_source(source: str | Path) -> tuple[Any, str]:
    """Parsed data and a display name for a YAML path or a shipped scenario name."""
    text_source = str(source)
    path = Path(text_source)
    if not path.suffix and text_source in shipped_names():
        path = shipped_path(text_source)
    if not path.is_file():
        known = ", ".join(shipped_names())
        raise ScenarioError(
            [
                Problem(
                    "scenario", f"no such file or shipped scenario (shipped: {known})", text_source
                )
            ],
            text_source,
        )
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ScenarioError([Problem("scenario", f"cannot be read: {exc}", text_source)]) from None
    return parse_yaml(text, text_source), text_source


def load_scenario(source: str | Path | dict[str, Any] | Scenario) -> Scenario:
    """Load and validate a scenario.

    Parameters
    ----------
    source
        A YAML path, the name of a shipped scenario (``hashpivot scenarios`` lists them), a
        mapping with the file's content, or an already validated :class:`Scenario`.

    Raises
    ------
    ScenarioError
        With one :class:`~hashpivot.scenarios.Problem` per problem found.
    """
    if isinstance(source, Scenario):
        return source
    if isinstance(source, dict):
        return validate_data(source, "<mapping>")
    data, name = read_source(source)
    return validate_data(data, name)
