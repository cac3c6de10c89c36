"""
A checker of JSON values against TypeScript declarations (``.d.ts``), for the official
Node.js SDK's declared types (tests/test_simulator_node.py): every frame the simulator
sends is checked against the type the SDK declares for it.

It reads the subset of TypeScript that declaration files of data shapes use: interfaces
(with ``extends``), type aliases, string enums, object literals, unions, intersections,
arrays, string and number literals, the primitives, and the utility types ``Record``,
``Required``, ``Partial``, ``Omit`` and ``Pick``. Classes, functions, imports and
re-exports are skipped. A name it cannot resolve is an error, never a pass.

Checked as TypeScript's structural typing does for data: every required property must be
there with a value of its type (an optional one may be absent, not ``null``); properties
the type does not name are allowed. A union holds if one member does; for a union of
objects told apart by a literal property (``event_type``), the members whose literal the
value does not contradict are the candidates, and the problems reported are those of the
candidate that comes closest.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final, TypeAlias

# --------------------------------------------------------------------------- the type model


@dataclass(frozen=True)
class Prim:
    name: str
    """string, number, boolean, any, unknown, null, undefined, object, never, void"""


@dataclass(frozen=True)
class Lit:
    value: str | float | bool


@dataclass(frozen=True)
class Prop:
    name: str
    type: Type
    optional: bool


@dataclass(frozen=True)
class Obj:
    props: tuple[Prop, ...]
    index: Type | None = None
    """The type of every other property (``Record<string, T>``, ``[key: string]: T``)."""


@dataclass(frozen=True)
class Arr:
    item: Type


@dataclass(frozen=True)
class Union:
    members: tuple[Type, ...]


@dataclass(frozen=True)
class Inter:
    members: tuple[Type, ...]


@dataclass(frozen=True)
class Ref:
    name: str
    args: tuple[Type, ...] = ()


Type: TypeAlias = Prim | Lit | Obj | Arr | Union | Inter | Ref

PRIMITIVES: Final = frozenset(
    {"string", "number", "boolean", "any", "unknown", "null", "undefined", "object", "never"}
    | {"void", "bigint", "symbol"}
)


@dataclass(frozen=True)
class Problem:
    path: str
    """Where in the value, e.g. ``data.meta_data`` (empty: the value itself)."""
    message: str

    def __str__(self) -> str:
        return f"{self.path or '<value>'}: {self.message}"


# --------------------------------------------------------------------------- reading


_TOKEN = re.compile(
    r"""\s+|//[^\n]*|/\*.*?\*/
    |(?P<string>'(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*")
    |(?P<number>-?\d+(?:\.\d+)?)
    |(?P<name>[A-Za-z_$][\w$]*)
    |(?P<punct>=>|\.\.\.|[{}()\[\]<>;:,|&?=.*])""",
    re.VERBOSE | re.DOTALL,
)


class DtsError(ValueError):
    """A declaration the checker cannot read or a name it cannot resolve."""


def _tokens(text: str) -> list[str]:
    tokens: list[str] = []
    position = 0
    while position < len(text):
        match = _TOKEN.match(text, position)
        if match is None:
            raise DtsError(f"cannot read {text[position : position + 30]!r}")
        position = match.end()
        if match.lastgroup is not None:
            tokens.append(match.group())
    return tokens


class _Parser:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.at = 0

    def peek(self, ahead: int = 0) -> str:
        index = self.at + ahead
        return self.tokens[index] if index < len(self.tokens) else ""

    def take(self, expected: str | None = None) -> str:
        token = self.peek()
        if expected is not None and token != expected:
            raise DtsError(f"expected {expected!r}, got {token!r} at token {self.at}")
        self.at += 1
        return token

    def skip_statement(self) -> None:
        """Up to and including the next ``;`` outside brackets, or a closing ``}`` that
        ends a block statement (class, global)."""
        depth = 0
        while self.at < len(self.tokens):
            token = self.take()
            if token in "({[":
                depth += 1
            elif token in ")}]":
                depth -= 1
                if depth == 0 and token == "}" and self.peek() != "=>":
                    if self.peek() == ";":
                        self.take()
                    return
            elif token == ";" and depth == 0:
                return

    # ---- types

    def type(self) -> Type:
        if self.peek() == "|":
            self.take()
        members = [self.intersection()]
        while self.peek() == "|":
            self.take()
            members.append(self.intersection())
        return members[0] if len(members) == 1 else Union(tuple(members))

    def intersection(self) -> Type:
        members = [self.postfix()]
        while self.peek() == "&":
            self.take()
            members.append(self.postfix())
        return members[0] if len(members) == 1 else Inter(tuple(members))

    def postfix(self) -> Type:
        result = self.primary()
        while self.peek() == "[" and self.peek(1) == "]":
            self.take()
            self.take()
            result = Arr(result)
        return result

    def primary(self) -> Type:
        token = self.peek()
        if token == "{":
            return self.object()
        if token == "(":
            self.take()
            inner = self.type()
            self.take(")")
            return inner
        if token[:1] in "'\"":
            self.take()
            return Lit(token[1:-1])
        if re.fullmatch(r"-?\d+(?:\.\d+)?", token):
            self.take()
            return Lit(float(token))
        if token in ("true", "false"):
            self.take()
            return Lit(token == "true")
        name = self.take()
        if name in PRIMITIVES:
            return Prim(name)
        while self.peek() == ".":
            self.take()
            name += "." + self.take()
        args: list[Type] = []
        if self.peek() == "<":
            self.take()
            args.append(self.type())
            while self.peek() == ",":
                self.take()
                args.append(self.type())
            self.take(">")
        return Ref(name, tuple(args))

    def object(self) -> Obj:
        self.take("{")
        props: list[Prop] = []
        index: Type | None = None
        while self.peek() != "}":
            if self.peek() == "readonly" and self.peek(1) not in (":", "?"):
                self.take()
            if self.peek() == "[":  # [key: string]: T
                self.take()
                self.take()
                self.take(":")
                self.type()
                self.take("]")
                self.take(":")
                index = self.type()
            else:
                name = self.take()
                if name[:1] in "'\"":
                    name = name[1:-1]
                optional = self.peek() == "?"
                if optional:
                    self.take()
                if self.peek() == "(":  # a method: not data
                    self.skip_member()
                    continue
                self.take(":")
                props.append(Prop(name, self.type(), optional))
            if self.peek() in (";", ","):
                self.take()
        self.take("}")
        return Obj(tuple(props), index)

    def skip_member(self) -> None:
        depth = 0
        while True:
            token = self.peek()
            if depth == 0 and token in (";", "}"):
                if token == ";":
                    self.take()
                return
            self.take()
            if token in "({[":
                depth += 1
            elif token in ")}]":
                depth -= 1


class Declarations:
    """The interfaces, type aliases and enums of some ``.d.ts`` files, by name."""

    def __init__(self) -> None:
        self.interfaces: dict[str, tuple[tuple[Type, ...], Obj]] = {}
        self.aliases: dict[str, Type] = {}
        self.enums: dict[str, dict[str, str]] = {}

    @classmethod
    def read(cls, paths: Iterable[Path]) -> Declarations:
        declarations = cls()
        for path in paths:
            declarations.add(path.read_text(encoding="utf-8"))
        return declarations

    def add(self, text: str) -> None:
        parser = _Parser(_tokens(text))
        while parser.at < len(parser.tokens):
            while parser.peek() in ("export", "declare"):
                parser.take()
            keyword = parser.peek()
            if keyword == "interface":
                self._interface(parser)
            elif keyword == "type" and parser.peek(2) in ("=", "<"):
                self._alias(parser)
            elif keyword == "enum":
                self._enum(parser)
            else:
                parser.skip_statement()

    def _interface(self, parser: _Parser) -> None:
        parser.take("interface")
        name = parser.take()
        if parser.peek() == "<":
            raise DtsError(f"generic interface {name} is not supported")
        parents: list[Type] = []
        if parser.peek() == "extends":
            parser.take()
            parents.append(parser.postfix())
            while parser.peek() == ",":
                parser.take()
                parents.append(parser.postfix())
        self.interfaces[name] = (tuple(parents), parser.object())

    def _alias(self, parser: _Parser) -> None:
        parser.take("type")
        name = parser.take()
        if parser.peek() == "<":
            raise DtsError(f"generic type {name} is not supported")
        parser.take("=")
        self.aliases[name] = parser.type()
        if parser.peek() == ";":
            parser.take()

    def _enum(self, parser: _Parser) -> None:
        parser.take("enum")
        name = parser.take()
        parser.take("{")
        members: dict[str, str] = {}
        while parser.peek() != "}":
            member = parser.take()
            parser.take("=")
            value = parser.take()
            if value[:1] not in "'\"":
                raise DtsError(f"enum {name}.{member}: only string enums are supported")
            members[member] = value[1:-1]
            if parser.peek() == ",":
                parser.take()
        parser.take("}")
        self.enums[name] = members

    # ---- resolving

    def resolve(self, t: Type) -> Type:
        """``t`` with a named type at its top replaced by what it stands for."""
        while isinstance(t, Ref):
            t = self._expand(t)
        return t

    def _expand(self, ref: Ref) -> Type:
        name, args = ref.name, ref.args
        if name in self.aliases:
            return self.aliases[name]
        if name in self.interfaces:
            parents, body = self.interfaces[name]
            return Inter((*parents, body)) if parents else body
        if name in self.enums:
            return Union(tuple(Lit(v) for v in self.enums[name].values()))
        enum, _, member = name.partition(".")
        if member and enum in self.enums and member in self.enums[enum]:
            return Lit(self.enums[enum][member])
        if name == "Record" and len(args) == 2:
            return Obj((), args[1])
        if name in ("Required", "Partial") and len(args) == 1:
            obj = self.flatten(args[0])
            optional = name == "Partial"
            return Obj(tuple(Prop(p.name, p.type, optional) for p in obj.props), obj.index)
        if name in ("Omit", "Pick") and len(args) == 2:
            obj = self.flatten(args[0])
            keys = {str(lit.value) for lit in self._literals(args[1])}
            keep = [p for p in obj.props if (p.name in keys) == (name == "Pick")]
            return Obj(tuple(keep), obj.index if name == "Omit" else None)
        if name == "Array" and len(args) == 1:
            return Arr(args[0])
        raise DtsError(f"cannot resolve type {name}")

    def _literals(self, t: Type) -> Iterator[Lit]:
        t = self.resolve(t)
        if isinstance(t, Lit):
            yield t
        elif isinstance(t, Union):
            for member in t.members:
                yield from self._literals(member)
        else:
            raise DtsError(f"expected literal keys, got {t}")

    def flatten(self, t: Type) -> Obj:
        """An object type (or intersection of them) as one object: its properties merged
        (one named twice must be both; it is optional only where both are)."""
        t = self.resolve(t)
        if isinstance(t, Obj):
            return t
        if isinstance(t, Inter):
            merged: dict[str, Prop] = {}
            index: Type | None = None
            for part in (self.flatten(member) for member in t.members):
                index = part.index or index
                for prop in part.props:
                    if prop.name in merged:
                        before = merged[prop.name]
                        prop = Prop(
                            prop.name,
                            Inter((before.type, prop.type)),
                            before.optional and prop.optional,
                        )
                    merged[prop.name] = prop
            return Obj(tuple(merged.values()), index)
        raise DtsError(f"not an object type: {t}")

    # ---- checking

    def check(self, value: object, t: Type | str, path: str = "") -> list[Problem]:
        """Every way ``value`` (parsed JSON) falls short of ``t`` (a type, or a name)."""
        return self._check(value, Ref(t) if isinstance(t, str) else t, path)

    def _check(self, value: object, t: Type, path: str) -> list[Problem]:
        t = self.resolve(t)
        match t:
            case Prim(name):
                return [] if _is_primitive(value, name) else [Problem(path, f"not {name}")]
            case Lit(literal):
                if isinstance(literal, bool):
                    ok = value is literal
                else:
                    ok = value == literal and not isinstance(value, bool)
                return [] if ok else [Problem(path, f"not {literal!r}: {value!r}")]
            case Arr(item):
                if not isinstance(value, list):
                    return [Problem(path, "not an array")]
                return [
                    p for i, v in enumerate(value) for p in self._check(v, item, f"{path}[{i}]")
                ]
            case Obj():
                return self._check_object(value, t, path)
            case Inter(members):
                problems: list[Problem] = []
                for member in members:
                    problems += [p for p in self._check(value, member, path) if p not in problems]
                return problems
            case Union(members):
                return self._check_union(value, members, path)
        raise DtsError(f"unexpected type {t}")  # pragma: no cover - Ref is resolved above

    def _check_object(self, value: object, t: Obj, path: str) -> list[Problem]:
        if not isinstance(value, dict):
            return [Problem(path, "not an object")]
        problems: list[Problem] = []
        for prop in t.props:
            where = f"{path}.{prop.name}" if path else prop.name
            if prop.name not in value:
                if not prop.optional:
                    problems.append(Problem(where, "missing"))
                continue
            problems += self._check(value[prop.name], prop.type, where)
        if t.index is not None:
            named = {prop.name for prop in t.props}
            for key, item in value.items():
                if key not in named:
                    problems += self._check(item, t.index, f"{path}.{key}" if path else key)
        return problems

    def _check_union(self, value: object, members: tuple[Type, ...], path: str) -> list[Problem]:
        resolved = [self.resolve(member) for member in members]
        if all(isinstance(member, Lit) for member in resolved):
            if any(not self._check(value, member, path) for member in resolved):
                return []
            allowed = ", ".join(
                repr(member.value) for member in resolved if isinstance(member, Lit)
            )
            return [Problem(path, f"not one of {allowed}: {value!r}")]
        results = []
        for member in members:
            if self._contradicts_a_literal(value, member):
                continue
            problems = self._check(value, member, path)
            if not problems:
                return []
            results.append(problems)
        if not results:
            return [Problem(path, f"matches no member of the union: {_describe(value)}")]
        return min(results, key=len)

    def _contradicts_a_literal(self, value: object, member: Type) -> bool:
        """Whether ``value`` has a property that ``member`` fixes to a literal, with another
        value: the union's discriminant (``event_type``) says it is another member."""
        if not isinstance(value, dict):
            return False
        try:
            obj = self.flatten(member)
        except DtsError:
            return False
        for prop in obj.props:
            if prop.name in value:
                literals = self._literal_set(prop.type)
                if literals is not None and value[prop.name] not in literals:
                    return True
        return False

    def _literal_set(self, t: Type) -> set[object] | None:
        t = self.resolve(t)
        if isinstance(t, Lit):
            return {t.value}
        if isinstance(t, Inter):
            sets = [s for s in (self._literal_set(m) for m in t.members) if s is not None]
            return set.intersection(*sets) if sets else None
        return None


def _is_primitive(value: object, name: str) -> bool:
    match name:
        case "string":
            return isinstance(value, str)
        case "number":
            return isinstance(value, int | float) and not isinstance(value, bool)
        case "boolean":
            return isinstance(value, bool)
        case "null":
            return value is None
        case "object":
            return isinstance(value, dict | list)
        case "any" | "unknown":
            return True
    return False  # never, undefined, void: no JSON value is one


def _describe(value: object) -> str:
    if isinstance(value, dict) and "event_type" in value:
        return f"event_type {value['event_type']!r}"
    return type(value).__name__
