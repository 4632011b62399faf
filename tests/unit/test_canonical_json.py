"""The fast RFC 8785 writer gives the rfc8785 package's bytes (or its refusal) for every value."""

from __future__ import annotations

import enum
import json
from datetime import UTC
from typing import Any

import pytest
import rfc8785
from hypothesis import given, settings
from hypothesis import strategies as st

from application.evidence import bundle_contents, canonical_json
from application.invoices.ledger import _jsonable
from domain.calendar import SHANGHAI
from infrastructure.evidence import fast_json


class Colour(enum.StrEnum):
    RED = "红"


class Size(enum.IntEnum):
    BIG = 3


@pytest.fixture(autouse=True, scope="module", params=["json", "orjson"])
def writer(request: pytest.FixtureRequest) -> Any:
    """Every test with each writer: the standard library's encoder alone, and orjson's
    (`fast_json.write`, which the bootstrap and the verifier install)."""
    canonical_json.use_writer(fast_json.write if request.param == "orjson" else None)
    yield request.param
    canonical_json.use_writer(None)


def _both(value: Any) -> tuple[object, object]:
    def run(f: Any) -> object:
        try:
            return f(value)
        except Exception as e:  # noqa: BLE001 - the refusal's type is compared
            return type(e)

    return run(rfc8785.dumps), run(canonical_json.dumps)


scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**60), max_value=2**60),
    st.sampled_from([2**53 - 1, -(2**53 - 1), 2**53, -(2**53), Colour.RED, Size.BIG]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(),
    st.text(alphabet=st.characters(min_codepoint=0, max_codepoint=0x7F)),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(st.text(), inner)),
    max_leaves=20,
)


@settings(max_examples=2000, deadline=None)
@given(values)
def test_the_fast_writer_gives_the_rfc8785_packages_bytes_or_its_refusal(value: Any) -> None:
    expected, got = _both(value)
    assert got == expected


@pytest.mark.parametrize("code", [*range(0, 0x100), 0x2028, 0xE000, 0xFFFF, 0x10000, 0x1F600])
def test_every_escape_and_key_order_matches(code: int) -> None:
    c = chr(code)
    value = {c: c, "k": [c, f"a{c}b"], f"{c}z": 1, "\ue000": 2, "\U0001f600": 3}
    expected, got = _both(value)
    assert got == expected


def test_lone_surrogates_floats_and_big_integers_are_refused_as_rfc8785_refuses() -> None:
    for value in ("\ud800", {"\udfff": 1}, 2**53, float("nan")):
        expected, got = _both(value)
        assert isinstance(expected, type) and got is expected


ledger_values = st.recursive(
    st.one_of(
        scalars,
        st.datetimes(timezones=st.sampled_from([None, UTC, SHANGHAI])),
        st.dates(),
        st.decimals(allow_nan=False, allow_infinity=False),
        st.uuids(),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner),
        st.dictionaries(st.text(), inner, max_size=4),
    ),
    max_leaves=20,
)


def _outcome(f: Any, value: Any) -> object:
    try:
        return f(value)
    except Exception as e:  # noqa: BLE001 - the refusal's type is compared
        return type(e)


@settings(max_examples=2000, deadline=None)
@given(ledger_values)
def test_bundle_json_is_what_the_slow_path_writes_and_reads_back(value: Any) -> None:
    slow_canonical = _outcome(lambda v: rfc8785.dumps(_jsonable(v)), value)
    assert _outcome(bundle_contents.canonical, value) == slow_canonical
    slow = _outcome(
        lambda v: json.loads(json.dumps(_jsonable(v), sort_keys=True, ensure_ascii=False)), value
    )
    fast = _outcome(bundle_contents.as_json, value)
    assert repr(fast) == repr(slow)  # repr: NaN != NaN, and key order counts


def _sorted(value: Any) -> Any:
    """The value with every object's keys in order (what as_json reads back)."""
    if isinstance(value, dict):
        return {k: _sorted(value[k]) for k in sorted(value)}
    if isinstance(value, list):
        return [_sorted(v) for v in value]
    return value


@settings(max_examples=2000, deadline=None)
@given(ledger_values)
def test_as_json_bytes_is_as_json_and_canonical_in_one_walk(value: Any) -> None:
    # The exporter and the verifier take a value's readable form and its bytes at once, and
    # hand it the values without _jsonable (the walk converts them): the same as doing both.
    both = _outcome(bundle_contents.as_json_bytes, value)
    slow = _outcome(bundle_contents.as_json, _jsonable(value))
    if not isinstance(both, tuple):  # refused: as the readable form is refused
        assert both == slow
        return
    read, data = both
    assert repr(_sorted(read)) == repr(slow)
    expected = _outcome(bundle_contents.canonical, _jsonable(value))
    assert data == (expected if isinstance(expected, bytes) else None)
    if data is not None:
        assert bundle_contents.canonical(read) == data


json_texts = st.one_of(
    values.map(lambda v: json.dumps(v, ensure_ascii=False)),  # floats, NaN, Infinity too
    values.map(lambda v: json.dumps(v, ensure_ascii=True)),  # \\u escapes, surrogate pairs
    st.sampled_from(
        [
            '{"a": 1, "a": 2}',  # a repeated key: the last one
            '"\\ud800"',  # a lone surrogate
            str(2**64),
            str(-(2**63) - 1),
            "1e400",
            "1e-400",
            "1E+2",
            str(2**63),
            "9007199254740993",
            "2.2250738585072011e-308",
            "1.00000000000000011102230246251565404236316680908203125",  # halfway: even
            "0.1000000000000000055511151231257827021181583404541015625",
            "-0",
            "[" * 2000 + "]" * 2000,  # deeper than either parser goes
            "\ufeff{}",  # a byte-order mark
            "[1,]",
            "",
        ]
    ),
    st.text(max_size=20),
)


@settings(max_examples=2000, deadline=None)
@given(json_texts, st.booleans())
def test_fast_read_reads_what_json_reads_to_the_same_values_or_fails_as_it_does(
    text: str, as_bytes: bool
) -> None:
    data: str | bytes = text.encode("utf-8", "surrogatepass") if as_bytes else text

    def run(f: Any) -> object:
        try:
            return ("ok", repr(f(data)))  # repr: NaN equals itself, -0.0 is not 0.0
        except Exception as e:  # noqa: BLE001 - the refusal is compared
            return (type(e), str(e))

    assert run(fast_json.read) == run(json.loads)
