from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal
from typing import Any

import pytest

from satchel import ids
from satchel.codec import decode, encode
from satchel.errors import SessionDataError


def test_ids_are_256_bit_unique_and_unstructured() -> None:
    """Checklist 1, 2: 256 bits from secrets, 10,000 unique, no shared prefix."""
    made = [ids.new_session_id() for _ in range(10_000)]
    assert len(set(made)) == 10_000
    assert all(len(ids.b64decode_canonical(i) or b"") == 32 for i in made)
    assert all(ids.is_session_id(i) for i in made)
    assert len({i[:4] for i in made}) > 9_000  # no shared prefix or timestamp


@pytest.mark.parametrize(
    "value",
    [
        "",
        "garbage",
        "../../../../etc/passwd",
        "a" * 42 + "\x00",
        "A" * 10_240,
        "é" * 43,
        "' OR 1=1; --" + "a" * 31,
        "a" * 42 + "=",
        "a" * 42 + "B",  # right alphabet and length, not canonical base64url of 32 bytes
    ],
)
def test_only_the_exact_id_format_is_accepted(value: str) -> None:
    assert not ids.is_session_id(value)


def test_store_key_is_sha256_and_log_ref_is_short() -> None:
    sid = ids.new_session_id()
    key = ids.store_key(sid)
    assert ids.is_store_key(key)
    assert sid not in key
    assert len(ids.log_ref(key)) == 8


def test_handles_are_short_and_not_ids() -> None:
    handle = ids.new_handle()
    assert len(handle) == 12
    assert not ids.is_session_id(handle)


VALUES: list[Any] = [
    None,
    True,
    3,
    2.5,
    "text ✓",
    [1, [2, {"a": None}]],
    {"nested": {"x": [1, 2]}},
    dt.datetime(2026, 11, 22, 1, 2, 3, tzinfo=dt.UTC),
    dt.datetime(2026, 11, 22, 1, 2, 3),
    dt.date(2026, 11, 22),
    uuid.UUID("12345678-1234-5678-1234-567812345678"),
    b"\x00\xffbytes",
    Decimal("1.10"),
    {1, 2, 3},
    frozenset({"a"}),
    (1, "two", (3,)),
    {"$t": "looks like a tag", "v": 1},
]


@pytest.mark.parametrize("value", VALUES, ids=lambda v: type(v).__name__)
def test_codec_round_trips_tagged_types(value: Any) -> None:
    back = decode(encode(value))
    assert back == value
    assert type(back) is type(value)


@pytest.mark.parametrize(
    "value", [object(), float("nan"), float("inf"), {1: "int key"}, [lambda: 1]]
)
def test_codec_refuses_what_json_cannot_hold(value: Any) -> None:
    with pytest.raises(SessionDataError):
        encode(value)


@pytest.mark.parametrize(
    "text", ["{", '{"$t":"nope","v":1}', '{"$t":"decimal","v":"x"}', '{"$t":"bytes","v":"*"}']
)
def test_codec_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match=r".*"):
        decode(text)


def test_codec_never_uses_pickle() -> None:
    from pathlib import Path

    import satchel

    package = Path(satchel.__file__).parent
    for source in package.rglob("*.py"):
        text = source.read_text(encoding="utf-8")
        assert "import pickle" not in text
        assert "pickle.loads" not in text
