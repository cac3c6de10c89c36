"""
Loading the config: the YAML file, the ``COZE_EDGE_*`` overrides, what is resolved, and
every problem reported at once.

The loader checks everything and raises one :class:`ConfigError` that lists every problem
with its dotted key, so the user fixes the file in one pass. What it resolves is never left
unset: ``coze.api_base``/``ws_base`` (from ``coze.region``), ``device.id`` (from
``/etc/machine-id``), ``state_dir`` (from ``$STATE_DIRECTORY``) and ``mqtt.topic_prefix``
(``<device.id>`` filled in). In the file, ``null`` for a key that cannot be null means
"the default".
"""

from __future__ import annotations

import dataclasses
import os
import pwd
import shlex
import ssl
import types
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, get_args, get_origin, get_type_hints

import yaml

from coze_edge.config.checks import Problem, hint, show
from coze_edge.config.files import (
    CONFIG_LIMIT,
    SECRET_LIMIT,
    UnusableFile,
    read_regular_file,
    regular_file_problem,
)
from coze_edge.config.media import media_problems
from coze_edge.config.schema import (
    DEFAULT_STATE_DIR,
    DEFAULT_TOPIC_PREFIX,
    DEVICE_ID_PLACEHOLDER,
    SECTIONS,
    TOP_LEVEL,
    AudioConfig,
    AuthConfig,
    Config,
    CozeConfig,
    DeviceConfig,
    HomeAssistantConfig,
    HooksConfig,
    LogConfig,
    MqttConfig,
    Section,
    ToolsConfig,
    VadConfig,
    WakeConfig,
)
from coze_edge.config.secrets import read_secret_file
from coze_edge.core.identity import device_id_from_machine_id, is_int64_id
from coze_edge.errors import ConfigError, CredentialFileError
from coze_edge.hooks import MUTED_VARIABLE, STATE_VARIABLE

ENV_PREFIX: Final = "COZE_EDGE_"
CONFIG_ENV: Final = "COZE_EDGE_CONFIG"
# COZE_EDGE_* variables that are not config overrides: the config path, the venv of the
# scripts, and what hooks get (a hook may run coze-edge).
_NOT_OVERRIDES: Final = frozenset({CONFIG_ENV, "COZE_EDGE_VENV", STATE_VARIABLE, MUTED_VARIABLE})

SECRET_FILE_KEYS: Final = frozenset(
    {"auth.pat_file", "auth.device_secret_file", "mqtt.password_file"}
)
"""The keys of secret files: when only these are wrong, the exit code is 77, not 78."""
TLS_FILE_LIMIT: Final = 1 << 20
"""A CA bundle (Debian's is about 200 KiB) or a certificate is well under this."""

DEFAULT_CONFIG_PATH: Final = Path("/etc/coze-edge/config.yaml")
DEFAULT_MACHINE_ID: Final = Path("/etc/machine-id")


def resolve_config_path(cli_path: str | Path | None, env: Mapping[str, str]) -> Path:
    """
    The config file to read: ``-c FILE``, else ``$COZE_EDGE_CONFIG``, else
    ``$CONFIGURATION_DIRECTORY/config.yaml`` (systemd; the first if it lists several),
    else ``/etc/coze-edge/config.yaml``.
    """
    if cli_path is not None and str(cli_path):
        return Path(cli_path)
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV])
    directories = [d for d in env.get("CONFIGURATION_DIRECTORY", "").split(":") if d]
    if directories:
        return Path(directories[0]) / "config.yaml"
    return DEFAULT_CONFIG_PATH


def load_config(
    path: Path,
    *,
    env: Mapping[str, str] | None = None,
    machine_id_path: Path = DEFAULT_MACHINE_ID,
) -> Config:
    """
    Read, override from ``env`` (default ``os.environ``), resolve and check the config file.

    Raises ConfigError listing every problem: a file that is unreadable, not a regular file or
    too large (:mod:`~coze_edge.config.files`), invalid YAML (with its line) or YAML past the
    bounds of :class:`_StrictLoader`, a top level that is not a mapping, and everything
    :func:`config_from_mapping` finds.
    """
    source = str(path)
    try:
        text = read_regular_file(path, limit=CONFIG_LIMIT)
    except UnusableFile as exc:
        raise ConfigError([("", exc.about("the file"))], source=source) from exc
    try:
        data = _parse_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError([("", _yaml_problem(exc))], source=source) from exc
    if data is None:  # an empty file: every default, and the problems that follow from that
        data = {}
    if not isinstance(data, Mapping):
        problem = (
            f"expected a mapping of sections (coze:, audio:, ...) at the top, got {_kind(data)}"
        )
        raise ConfigError([("", problem)], source=source)
    return config_from_mapping(data, env=env, source=source, machine_id_path=machine_id_path)


def config_from_mapping(
    data: Mapping[Any, Any],
    *,
    env: Mapping[str, str] | None = None,
    source: str = "config",
    machine_id_path: Path = DEFAULT_MACHINE_ID,
) -> Config:
    """
    The config that ``data`` (a parsed YAML file) describes, after the ``COZE_EDGE_*`` overrides
    in ``env`` (default ``os.environ``); resolves what was left unset and checks everything.

    Raises ConfigError(problems, source=source) listing every problem with its dotted key.
    """
    env = os.environ if env is None else env
    problems: list[Problem] = []
    data, origins = _apply_overrides(data, env, problems)

    for key in data:
        if key not in TOP_LEVEL:
            problems.append((_key_name(key), _unknown(key, TOP_LEVEL)))

    state_dir = _resolve_state_dir(data.get("state_dir"), env, problems)
    values: dict[str, dict[str, Any]] = {}
    for name, cls in SECTIONS.items():
        values[name] = _read_section(name, cls, data.get(name), problems)

    device = values["device"]
    if device.get("id") is None or device["id"] == "":
        device["id"] = _machine_device_id(machine_id_path, problems)
    if is_int64_id(device["id"]):  # else device.id says why, and the placeholder stays
        prefix = values["mqtt"].get("topic_prefix", DEFAULT_TOPIC_PREFIX)
        values["mqtt"]["topic_prefix"] = prefix.replace(DEVICE_ID_PLACEHOLDER, device["id"])

    config = Config(
        coze=CozeConfig(**values["coze"]),
        auth=AuthConfig(**values["auth"]),
        device=DeviceConfig(**values["device"]),
        state_dir=state_dir,
        audio=AudioConfig(**values["audio"]),
        vad=VadConfig(**values["vad"]),
        mqtt=MqttConfig(**values["mqtt"]),
        wake=WakeConfig(**values["wake"]),
        hooks=HooksConfig(**values["hooks"]),
        tools=ToolsConfig(**values["tools"]),
        homeassistant=HomeAssistantConfig(**values["homeassistant"]),
        log=LogConfig(**values["log"]),
    )
    # A value of the wrong type was left at its default: say only what was wrong with the value.
    reported = {key for key, _ in problems}
    problems += [(key, message) for key, message in config.problems() if key not in reported]
    problems += _state_dir_problems(config.state_dir)
    problems += _file_problems(config.audio)
    problems += _tls_problems(config.mqtt)
    problems += _secret_problems(config)
    problems += _hook_problems(config.hooks)
    problems += media_problems(config)

    if problems:
        only_secrets = all(key in SECRET_FILE_KEYS for key, _ in problems)
        problems = [(key, _with_origin(key, message, origins)) for key, message in problems]
        problems.sort(key=_section_order)  # stable: within a section, the order found
        # A config that is fine but for its secret files: no usable credentials (exit 77).
        raise (CredentialFileError if only_secrets else ConfigError)(problems, source=source)
    return config


def _apply_overrides(
    data: Mapping[Any, Any], env: Mapping[str, str], problems: list[Problem]
) -> tuple[dict[Any, Any], dict[str, str]]:
    """``data`` with the ``COZE_EDGE_*`` overrides applied, and dotted key -> variable name."""
    merged = dict(data)
    origins: dict[str, str] = {}
    for variable in sorted(env):
        if not variable.startswith(ENV_PREFIX) or variable in _NOT_OVERRIDES:
            continue
        section, sep, key = variable[len(ENV_PREFIX) :].lower().partition("__")
        try:
            value = _parse_yaml(env[variable])
        except yaml.YAMLError as exc:
            problems.append((variable, f"not a YAML value: {_yaml_problem(exc)}"))
            continue
        if not sep:  # COZE_EDGE_<KEY>: a top-level key
            if section in SECTIONS:
                problems.append(
                    (variable, f"{section} is a section: set COZE_EDGE_{section.upper()}__<KEY>")
                )
            elif section not in TOP_LEVEL:
                problems.append(
                    (variable, f"unknown top-level key {section!r}{hint(section, TOP_LEVEL)}")
                )
            else:
                merged[section] = value
                origins[section] = variable
            continue
        if section not in SECTIONS:
            problems.append(
                (variable, f"unknown section {section!r}{hint(section, list(SECTIONS))}")
            )
            continue
        fields = _field_names(SECTIONS[section])
        if key not in fields:
            problems.append((variable, f"unknown key {section}.{key}{hint(key, fields)}"))
            continue
        existing = merged.get(section)
        if existing is None:
            merged[section] = {key: value}
        elif isinstance(existing, Mapping):
            merged[section] = {**existing, key: value}
        else:  # the file's section is not a mapping: that is reported on its own
            continue
        origins[f"{section}.{key}"] = variable
    return merged, origins


def _read_section(
    name: str, cls: type[Section], raw: object, problems: list[Problem]
) -> dict[str, Any]:
    """The fields of section ``name`` that have the right type, converted; the rest reported."""
    if raw is None:  # "mqtt:" with nothing under it
        return {}
    if not isinstance(raw, Mapping):
        problems.append((name, f"expected a mapping of keys, got {_kind(raw)}"))
        return {}
    hints = get_type_hints(cls)
    fields = _field_names(cls)
    values: dict[str, Any] = {}
    for key, value in raw.items():
        dotted = f"{name}.{_key_name(key)}"
        if key not in fields:
            problems.append((dotted, _unknown(key, fields)))
            continue
        converted = _convert(hints[key], value)
        if isinstance(converted, _Wrong):
            problems.append((dotted, f"expected {converted.expected}, got {show(value)}"))
        elif converted is not _DEFAULT:
            values[key] = converted
    return values


def _resolve_state_dir(raw: object, env: Mapping[str, str], problems: list[Problem]) -> Path:
    """The configured state_dir, else the first of ``$STATE_DIRECTORY``, else the default."""
    converted = _convert(Path | None, raw)
    if isinstance(converted, _Wrong):
        problems.append(("state_dir", f"expected {converted.expected}, got {show(raw)}"))
    elif isinstance(converted, Path):
        return converted
    directories = [d for d in env.get("STATE_DIRECTORY", "").split(":") if d]
    return Path(directories[0]) if directories else DEFAULT_STATE_DIR


def _machine_device_id(path: Path, problems: list[Problem]) -> str:
    """The device id derived from the machine id in ``path``; "" (and a problem) if unusable."""
    try:
        text = path.read_text(encoding="ascii").strip()
    except (OSError, ValueError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not text"
        problems.append(("device.id", f"cannot read {path} ({reason}): set device.id"))
        return ""
    # systemd writes "uninitialized" until the first boot completes: not unique to this machine
    if not text or text == "uninitialized":
        problems.append(("device.id", f"{path} holds no machine id yet: set device.id"))
        return ""
    return device_id_from_machine_id(text)


def _state_dir_problems(path: Path) -> Iterator[Problem]:
    """state_dir: a directory, or one this user can create (``mkdir -p``) at the start.
    Whether an existing one is writable is left to ``doctor`` and the start: the daemon
    may run as another user than whoever checks the config."""
    try:
        if path.exists():
            if not path.is_dir():
                yield "state_dir", f"{path} is not a directory"
            return
        # The nearest that exists ("/" always does): where the first mkdir happens.
        existing = next(parent for parent in path.parents if parent.exists())
    except PermissionError:
        return  # a directory on the way may not be looked into: the daemon's user may
    if not existing.is_dir():
        yield "state_dir", f"cannot create {path}: {existing} is not a directory"
    elif not os.access(existing, os.W_OK | os.X_OK):
        yield (
            "state_dir",
            f"cannot create {path}: user {_user()} may not write in {existing} "
            "(create it for the service's user, or set state_dir)",
        )


def _user() -> str:
    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a uid without a name (a container)
        return str(os.geteuid())


def _file_problems(audio: AudioConfig) -> Iterator[Problem]:
    """The files the file backend needs: a WAV it can read, an output it can create."""
    if audio.backend != "file":
        return
    if audio.file_input is not None:
        source = audio.file_input
        if not source.is_file():
            what = "is a directory" if source.is_dir() else "does not exist"
            yield "audio.file_input", f"{source} {what}"
        elif not os.access(source, os.R_OK):
            yield "audio.file_input", f"{source} is not readable"
        else:
            from coze_edge.adapters.wav import wav_problem  # numpy: only for this backend

            if (problem := wav_problem(source)) is not None:
                yield "audio.file_input", problem
    if audio.file_output is not None:
        sink = audio.file_output
        if sink.is_dir():
            yield "audio.file_output", f"{sink} is a directory"
        elif not sink.parent.is_dir():
            yield "audio.file_output", f"{sink.parent} (its directory) does not exist"


def _hook_problems(hooks: HooksConfig) -> Iterator[Problem]:
    """The hook's program: an executable regular file (its absolute path is checked above)."""
    if hooks.on_state is None:
        return
    try:
        program = Path(shlex.split(hooks.on_state)[0])
    except (ValueError, IndexError):  # reported by HooksConfig.problems()
        return
    if not program.is_absolute():
        return
    if not program.exists():
        yield "hooks.on_state", f"{program} does not exist"
    elif not program.is_file():
        yield "hooks.on_state", f"{program} is not a regular file"
    elif not os.access(program, os.X_OK):
        yield "hooks.on_state", f"{program} is not executable: chmod +x it"


def _tls_problems(mqtt: MqttConfig) -> Iterator[Problem]:
    """The broker's CA file and the client's certificate and key: each readable and PEM of
    the right kind, and the key the certificate's, as the MQTT connection will need them.
    A file this user may not open is judged by its ``stat`` alone (the daemon's user may)."""
    if mqtt.host is None or not mqtt.tls:
        return
    files = [
        ("mqtt.ca_file", mqtt.ca_file, b"-----BEGIN CERTIFICATE-----", "a PEM certificate"),
        ("mqtt.cert_file", mqtt.cert_file, b"-----BEGIN CERTIFICATE-----", "a PEM certificate"),
        ("mqtt.key_file", mqtt.key_file, b"PRIVATE KEY-----", "a PEM private key"),
    ]
    all_usable = True
    for key, path, marker, kind in files:
        if path is None:
            continue
        try:
            text = read_regular_file(path, limit=TLS_FILE_LIMIT)
        except UnusableFile as exc:
            all_usable = False  # unread: nothing to pair the key with
            if not exc.denied:
                yield key, exc.about(str(path))
            elif problem := regular_file_problem(path, limit=TLS_FILE_LIMIT):
                yield key, f"{path} {problem}"
            continue
        if marker not in text:
            all_usable = False
            yield key, f"{path} is not {kind}"
    if mqtt.cert_file is None or mqtt.key_file is None or not all_usable:
        return  # problems() says cert and key go together; the rest is said above
    try:
        ssl.create_default_context().load_cert_chain(mqtt.cert_file, mqtt.key_file)
    except ssl.SSLError as exc:
        reason = "is not the key of mqtt.cert_file" if exc.reason == "KEY_VALUES_MISMATCH" else ""
        yield "mqtt.key_file", f"{mqtt.key_file} {reason or f'cannot be used: {exc}'}"
    except OSError as exc:  # gone since it was read
        yield "mqtt.cert_file", f"cannot load {mqtt.cert_file}: {exc.strerror or exc}"


def _secret_problems(config: Config) -> Iterator[Problem]:
    """The secret files the daemon will read, read now, so that ``check-config`` finds what
    would stop the start. A file this user may not open is judged by its ``stat`` alone:
    the daemon may run as another user (and reads it again at start)."""
    files = []
    if config.auth.method == "pat" and config.auth.pat_file is not None:
        files.append(("auth.pat_file", config.auth.pat_file))
    if config.auth.method == "token_url" and config.auth.device_secret_file is not None:
        files.append(("auth.device_secret_file", config.auth.device_secret_file))
    if config.mqtt.host is not None and config.mqtt.password_file is not None:
        files.append(("mqtt.password_file", config.mqtt.password_file))
    for key, path in files:
        try:
            read_secret_file(path)
        except UnusableFile as exc:
            if not exc.denied:
                yield key, exc.about(str(path))
            elif problem := regular_file_problem(path, limit=SECRET_LIMIT):
                yield key, f"{path} {problem}"


def _with_origin(key: str, message: str, origins: Mapping[str, str]) -> str:
    variable = origins.get(key)
    return f"{message} (from {variable})" if variable else message


def _section_order(problem: Problem) -> int:
    top = problem[0].partition(".")[0]
    return TOP_LEVEL.index(top) if top in TOP_LEVEL else len(TOP_LEVEL)


# --- value conversion -------------------------------------------------------------------------


class _Default:
    """The value given was null, for a key that cannot be null: keep the default."""


_DEFAULT: Final = _Default()


@dataclass(frozen=True, slots=True)
class _Wrong:
    expected: str


_TYPE_NAMES: Final[Mapping[object, str]] = types.MappingProxyType(
    {str: "str", int: "int", float: "float", bool: "bool", Path: "path"}
)


def _convert(annotation: Any, value: object) -> object:
    """
    ``value`` as the field type ``annotation`` wants it, ``_DEFAULT``, or ``_Wrong``.

    bool is never an int; an int is fine for a float and for a str (YAML reads an unquoted
    ``bot_id: 7496347519799787557`` as an int), as it was written (``id: 0123`` is "0123",
    not YAML 1.1's octal 83); a path is a non-empty string without NUL.
    """
    if get_origin(annotation) is Mapping:
        return _convert_mapping(get_args(annotation)[1], value)
    options = getattr(annotation, "__args__", None) or (annotation,)
    allowed = tuple(t for t in options if t is not type(None))
    nullable = len(allowed) < len(options)
    if value is None:
        return None if nullable else _DEFAULT
    for kind in allowed:
        if kind is bool and isinstance(value, bool):
            return value
        if isinstance(value, bool):
            continue
        if kind is int and isinstance(value, int):
            return int(value)  # a plain int, not a _YamlInt
        if kind is float and isinstance(value, float):
            return value
        if kind is float and isinstance(value, int):
            try:
                return float(value)
            except OverflowError:  # past 1.8e308: not a float, say so below
                continue
        if kind is str and isinstance(value, str):
            return value
        if kind is Path and isinstance(value, str) and value and "\0" not in value:
            return Path(value)
    if str in allowed and isinstance(value, int) and not isinstance(value, bool):
        return value.text if isinstance(value, _YamlInt) else str(value)
    names = [_TYPE_NAMES[kind] for kind in allowed] + (["null"] if nullable else [])
    return _Wrong(" or ".join(names))


def _convert_mapping(values: Any, value: object) -> object:
    """A mapping with string keys: of strings (``Mapping[str, str]``; a number as written),
    or of any JSON value (``Mapping[str, Any]``); read-only. Null is the empty mapping."""
    if value is None:
        return types.MappingProxyType({})
    if not isinstance(value, Mapping):
        return _Wrong("a mapping")
    out: dict[str, object] = {}
    for key, item in value.items():
        name = key.text if isinstance(key, _YamlInt) else key
        if isinstance(name, int) and not isinstance(name, bool):
            name = str(name)
        if not isinstance(name, str):
            return _Wrong("a mapping with text keys")
        if values is str:
            converted = _convert(str, item)
            if not isinstance(converted, str):
                return _Wrong("a mapping of text values")
            out[name] = converted
        elif _is_json(item):
            out[name] = int(item) if isinstance(item, _YamlInt) else item
        else:
            return _Wrong("a mapping of JSON values")
    return types.MappingProxyType(out)


def _is_json(value: object) -> bool:
    if value is None or isinstance(value, str | bool | int | float):
        return True
    if isinstance(value, list):
        return all(_is_json(item) for item in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _is_json(v) for k, v in value.items())
    return False


def _field_names(cls: type[Section]) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls))


def _key_name(key: object) -> str:
    return key if isinstance(key, str) else repr(key)


def _unknown(key: object, known: tuple[str, ...]) -> str:
    """'unknown key', with the section the key belongs in, or the likeliest intended key."""
    name = _key_name(key)
    homes = [f"{s}.{name}" for s, cls in SECTIONS.items() if name in _field_names(cls)]
    if homes:  # e.g. bot_id at the top, or host under coze:
        return f"unknown key (did you mean {' or '.join(homes)}?)"
    if name in SECTIONS and name not in known:
        return f"unknown key ({name} is a section of its own, at the top)"
    return f"unknown key{hint(name, known)}"


def _kind(value: object) -> str:
    names = {dict: "a mapping", list: "a list", str: "a string"}
    return next((text for t, text in names.items() if isinstance(value, t)), show(value))


def _yaml_problem(exc: yaml.YAMLError) -> str:
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    problem = getattr(exc, "problem", None) or str(exc)
    if isinstance(mark, yaml.Mark):
        return f"invalid YAML at line {mark.line + 1}, column {mark.column + 1}: {problem}"
    return f"invalid YAML: {problem}"


MAX_YAML_DEPTH: Final = 32
"""How deeply the config's YAML may nest, aliases followed; the schema needs 3 levels."""

MAX_YAML_VALUES: Final = 10_000
"""How many values (scalars, lists, mappings) the config's YAML may hold once every alias
is followed; the documented example holds about 200. A "billion laughs" document, nine
lines of anchors each repeating the one before nine times, would hold 9**9."""


def _parse_yaml(text: bytes | str) -> Any:
    """One YAML document, by :class:`_StrictLoader`; yaml.YAMLError for anything it refuses."""
    return yaml.load(text, Loader=_StrictLoader)  # a SafeLoader


class _YamlInt(int):
    """An int read from YAML that remembers how it was written: ``0123`` is 83 to YAML 1.1
    (octal), ``1:20`` is 80 (base 60), ``12_345`` is 12345; a key that wants a string (an id)
    gets the digits the user wrote, not the number YAML made of them."""

    text: str

    def __new__(cls, value: int, text: str) -> _YamlInt:
        self = super().__new__(cls, value)
        self.text = text
        return self


class _StrictLoader(yaml.SafeLoader):
    """
    yaml.safe_load, with bounds and one rule more.

    * A key given twice in one mapping is an error, not a silent override.
    * Aliases are bounded: the document is walked with every alias followed before anything
      is built, and refused if that walk goes deeper than MAX_YAML_DEPTH or visits more than
      MAX_YAML_VALUES values. So a "billion laughs" is refused after 10,000 steps instead of
      being expanded (it used to be, by the checks that show a wrong value), and an alias
      to the collection that contains it is refused instead of looping.
    * Nesting is bounded while composing, too: PyYAML's composer recurses once per level,
      so 20,000 ``[`` would end in a RecursionError instead of a YAML error.
    * An int whose digits Python refuses to convert (over 4,300) is a YAML error, not a
      ValueError, and every int keeps its text (:class:`_YamlInt`).
    """

    def __init__(self, stream: bytes | str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise yaml.composer.ComposerError(
                    None, None, f"nested deeper than {MAX_YAML_DEPTH} levels", self.get_mark()
                )
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node: yaml.Node) -> Any:
        _check_expansion(node)
        return super().construct_document(node)

    def construct_yaml_int(self, node: yaml.ScalarNode) -> _YamlInt:
        text = self.construct_scalar(node)
        assert isinstance(text, str)
        try:
            value = super().construct_yaml_int(node)
        except ValueError:  # past sys.get_int_max_str_digits()
            raise yaml.constructor.ConstructorError(
                None, None, f"an integer of {len(text)} digits is too long", node.start_mark
            ) from None
        return _YamlInt(value, text)

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[object] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":  # "<<": merged keys may be overridden
                continue
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
                seen.add(key)
            except TypeError:  # an unhashable key; SafeLoader reports it below
                continue
            if duplicate:
                raise yaml.constructor.ConstructorError(
                    None, None, f"{key!r} is given twice", key_node.start_mark
                )
        return super().construct_mapping(node, deep=deep)


_StrictLoader.add_constructor("tag:yaml.org,2002:int", _StrictLoader.construct_yaml_int)


def _check_expansion(root: yaml.Node) -> None:
    """Raise a YAML error if ``root``, every alias followed, is deeper than MAX_YAML_DEPTH,
    holds more than MAX_YAML_VALUES values, or contains itself; at most that many steps."""
    visited = 0
    # Depth-first, iterative; ``path`` holds the collections above the node being visited.
    stack: list[tuple[yaml.Node, int]] = [(root, 0)]
    path: list[yaml.Node] = []
    while stack:
        node, depth = stack.pop()
        del path[depth:]
        visited += 1
        if visited > MAX_YAML_VALUES:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"more than {MAX_YAML_VALUES} values once its aliases are followed "
                '(a "billion laughs" document?)',
                node.start_mark,
            )
        if any(node is above for above in path):
            raise yaml.constructor.ConstructorError(
                None, None, "an alias here refers to a value that contains it", node.start_mark
            )
        if depth >= MAX_YAML_DEPTH:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"nested deeper than {MAX_YAML_DEPTH} levels once its aliases are followed",
                node.start_mark,
            )
        children: list[yaml.Node] = []
        if isinstance(node, yaml.SequenceNode):
            children = list(node.value)
        elif isinstance(node, yaml.MappingNode):
            children = [child for pair in node.value for child in pair]
        if children:
            path.append(node)
            stack.extend((child, depth + 1) for child in reversed(children))
