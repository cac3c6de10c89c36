"""The .d.ts checker the Node SDK's types are read with (tests/support/dts.py), on
declarations written here: each construct it reads, and what it reports."""

from __future__ import annotations

import pytest

from tests.support.dts import Declarations, DtsError

DECLARATIONS = """
import { type Other } from './other';
/** A comment with a // inside and an { unbalanced brace */
export declare enum Kind {
    A = "a",// trailing comment
    B = 'b'
}
interface Base {
    /** the id */
    id: string;
    kind: Kind;
}
type WithDetail = Base & {
    detail: { logid: string; respond_at?: string };
};
export interface Message extends WithDetail {
    kind: Kind.A;
    tags: string[];
    meta?: Record<string, string>;
    role: 'user' | 'assistant';
    size: number;
    done?: boolean;
}
export interface Other2 extends Base {
    kind: Kind.B;
    data: Omit<Message, 'tags' | 'meta'> & { extra: null };
    all: Required<Pick<Message, 'meta' | 'done'>>;
}
export type Either = Message | Other2;
export declare class Client {
    send(data: Either): void;
    constructor(url: string);
}
export declare const helper: (config: { a: string }) => Promise<Message>;
export {};
"""


@pytest.fixture
def declarations() -> Declarations:
    result = Declarations()
    result.add(DECLARATIONS)
    return result


MESSAGE = {
    "id": "1",
    "kind": "a",
    "detail": {"logid": "l"},
    "tags": ["x"],
    "role": "user",
    "size": 3,
}


def test_a_value_of_the_declared_shape_passes(declarations: Declarations) -> None:
    """Required fields of the right JSON types pass; unnamed extra fields are allowed."""
    assert declarations.check({**MESSAGE, "unnamed": 1}, "Message") == []
    assert declarations.check({**MESSAGE, "meta": {"k": "v"}, "done": False}, "Either") == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"id": None}, ["id: missing"]),
        ({"size": "3"}, ["size: not number"]),
        ({"size": True}, ["size: not number"]),
        ({"role": "bot"}, ["role: not one of 'user', 'assistant': 'bot'"]),
        ({"tags": ["x", 1]}, ["tags[1]: not string"]),
        ({"meta": {"k": 1}}, ["meta.k: not string"]),
        ({"done": None}, ["done: not boolean"]),
        ({"detail": {}}, ["detail.logid: missing"]),
        ({"kind": "b"}, ["kind: not 'a': 'b'"]),
    ],
)
def test_each_shortfall_is_reported_where_it_is(
    declarations: Declarations, change: dict[str, object], expected: list[str]
) -> None:
    """A missing field, a wrong JSON type, a literal or a nested field: one problem, at
    its path (an optional field may be absent, not null)."""
    value = {**MESSAGE, **change}
    if change.get("id", "") is None:
        del value["id"]
    assert [str(p) for p in declarations.check(value, "Message")] == expected


def test_utility_types_and_the_union_discriminant(declarations: Declarations) -> None:
    """Omit drops fields, Required makes them required, and a union member is chosen by
    the literal its frame carries."""
    data = {k: v for k, v in MESSAGE.items() if k != "tags"} | {"extra": None}
    other = {"id": "2", "kind": "b", "data": data, "all": {"meta": {}, "done": True}}
    assert declarations.check(other, "Either") == []

    problems = declarations.check({**other, "all": {}}, "Either")

    assert [str(p) for p in problems] == ["all.meta: missing", "all.done: missing"]
    unknown = declarations.check({**other, "kind": "c"}, "Either")
    assert [str(p) for p in unknown] == ["<value>: matches no member of the union: dict"]


def test_an_unknown_name_is_an_error_not_a_pass(declarations: Declarations) -> None:
    """A type the files do not declare cannot be checked against: DtsError."""
    with pytest.raises(DtsError, match="Other"):
        declarations.check({}, "Other")
