"""Load scenarios from YAML files or by the name of a shipped scenario (safe YAML only).

Parsing is bounded: a file larger than :data:`MAX_FILE_BYTES` is refused before it is read;
a document of more than :data:`MAX_ALIASES` aliases, :data:`MAX_DEPTH` levels of nesting or
:data:`MAX_NODES` values is refused from its event stream before any node is built; and one
whose aliases expand it past :data:`MAX_NODES` values (an alias bomb, "billion laughs") is
refused after composing, before any value is constructed.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from .schema import Scenario
from .validate import Problem, ScenarioError, show_value, validate_data

#: Largest scenario file read [bytes]; the largest shipped one is ~20 kB, a 1,000-site fleet
#: ~700 kB.
MAX_FILE_BYTES = 2 * 1024 * 1024
#: Most aliases (``*name``) in one file.
MAX_ALIASES = 100
#: Deepest nesting of mappings and lists.
MAX_DEPTH = 32
#: Most nodes of the document with every alias expanded (a 1,000-site fleet has ~40,000).
MAX_NODES = 100_000
#: Longest excerpt of a YAML error message [characters].
MAX_YAML_MESSAGE_CHARS = 120

_SHIPPED_PACKAGE = "hashpivot.scenarios"
_SHIPPED_DIR = "shipped"


class _LimitError(yaml.YAMLError):
    """A file over one of the parsing limits."""

    def __init__(self, problem: str, mark: Any = None) -> None:
        super().__init__(problem)
        self.problem = problem
        self.problem_mark = mark


try:  # libyaml parses; composing stays in Python, where expanded aliases are counted
    from yaml._yaml import CParser as _CParser
except ImportError:  # pragma: no cover - PyYAML built without libyaml
    _CParser = None


if _CParser is not None:

    class _BaseLoader(
        yaml.composer.Composer, _CParser, yaml.constructor.SafeConstructor, yaml.resolver.Resolver
    ):
        """Safe loader: libyaml's parser, PyYAML's composer, safe constructor and resolver."""

        def __init__(self, stream: Any) -> None:
            _CParser.__init__(self, stream)
            yaml.constructor.SafeConstructor.__init__(self)
            yaml.resolver.Resolver.__init__(self)
            yaml.composer.Composer.__init__(self)

else:  # pragma: no cover
    _BaseLoader = yaml.SafeLoader  # type: ignore[misc,assignment]


class _UniqueKeyLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """Safe loader that refuses duplicate keys instead of keeping the last one silently, and
    documents whose aliases expand past the node limit."""

    def get_single_node(self) -> Any:
        node = super().get_single_node()
        if node is not None:
            _check_expanded_size(node)
        return node


def _check_events(text: str) -> None:
    """Refuse a document over the alias, depth or node limits from its event stream (libyaml
    where available: far faster than composing), before any node is built."""
    n_aliases = n_nodes = depth = 0
    event_loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    for event in yaml.parse(text, Loader=event_loader):
        if isinstance(event, yaml.AliasEvent):
            n_aliases += 1
            if n_aliases > MAX_ALIASES:
                raise _LimitError(f"more than {MAX_ALIASES} aliases", event.start_mark)
        elif isinstance(event, yaml.ScalarEvent | yaml.CollectionStartEvent):
            n_nodes += 1
            if n_nodes > MAX_NODES:
                raise _LimitError(f"more than {MAX_NODES:,} values", event.start_mark)
            if isinstance(event, yaml.CollectionStartEvent):
                depth += 1
                if depth > MAX_DEPTH:
                    raise _LimitError(f"nested more than {MAX_DEPTH} levels deep", event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _check_expanded_size(root: yaml.Node) -> None:
    """Refuse a document whose aliases expand it past :data:`MAX_NODES` nodes, or that refers
    to itself (an alias inside its own anchor)."""
    sizes: dict[int, int] = {}
    open_nodes: set[int] = set()

    def size(node: yaml.Node) -> int:
        key = id(node)
        if key in sizes:
            return sizes[key]
        if key in open_nodes:
            raise _LimitError("an alias refers to the value that contains it", node.start_mark)
        open_nodes.add(key)
        total = 1
        if isinstance(node, yaml.SequenceNode):
            children: list[yaml.Node] = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [n for pair in node.value for n in pair]
        else:
            children = []
        for child in children:
            total += size(child)
            if total > MAX_NODES:
                raise _LimitError(
                    f"aliases expand the file past {MAX_NODES:,} values", node.start_mark
                )
        open_nodes.discard(key)
        sizes[key] = total
        return total

    size(root)


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
                None, None, f"duplicate key {show_value(key)}", key_node.start_mark
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
    """Parse YAML text safely and within the parsing limits; syntax errors and files over a
    limit become a :class:`ScenarioError` with the line."""
    if len(text) > MAX_FILE_BYTES:
        raise ScenarioError(
            [Problem("YAML", f"larger than {MAX_FILE_BYTES // 2**20} MB; not read")], source
        )
    try:
        _check_events(text)
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 - SafeLoader subclass
    except RecursionError:
        raise ScenarioError([Problem("YAML", "invalid YAML: nested too deeply")], source) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else "YAML"
        problem = " ".join(str(getattr(exc, "problem", None) or exc).split())
        if len(problem) > MAX_YAML_MESSAGE_CHARS:
            problem = problem[: MAX_YAML_MESSAGE_CHARS - 3] + "..."
        raise ScenarioError([Problem(where, f"invalid YAML: {problem}")], source) from None
    except (ValueError, OverflowError) as exc:  # e.g. an integer of more than 4,300 digits
        raise ScenarioError(
            [Problem("YAML", f"invalid YAML: a value cannot be read ({type(exc).__name__})")],
            source,
        ) from None


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
    if path.is_dir():
        raise ScenarioError(
            [Problem("scenario", "is a directory, not a scenario file", text_source)],
            text_source,
        )
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
        with path.open("rb") as f:
            if path.stat().st_size > MAX_FILE_BYTES:
                raw = b""
                too_big = True
            else:
                raw = f.read(MAX_FILE_BYTES + 1)
                too_big = len(raw) > MAX_FILE_BYTES
        if too_big:
            raise ScenarioError(
                [Problem("scenario", f"larger than {MAX_FILE_BYTES // 2**20} MB; not read")],
                text_source,
            )
        text = raw.decode("utf-8")
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise ScenarioError(
            [Problem("scenario", f"cannot be read: {reason}")], text_source
        ) from None
    except UnicodeDecodeError as exc:
        raise ScenarioError(
            [Problem("scenario", f"not UTF-8 text (byte {exc.start} cannot be decoded)")],
            text_source,
        ) from None
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
