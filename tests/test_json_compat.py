"""satchel reads what satchel 0.1 wrote: 0.1 encoded with the standard library's json,
0.2 with msgspec (satchel._json). Every value, metadata document and record document 0.1
could write must read back equal, exact for integers of any size."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from satchel import _json, codec
from satchel.errors import CorruptRecord
from satchel.record import Meta, Record

from .test_ids_codec import VALUES

# The encoders satchel 0.1 used: session values (codec), metadata and record documents
# (record.py; ASCII-escaped, the standard library's default).
V01_VALUE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, allow_nan=False)
V01_DOCUMENT = json.JSONEncoder(separators=(",", ":"))

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()  # unbounded: 0.1 stored big integers exactly
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


@pytest.mark.parametrize("value", [*VALUES, 2**64, -(2**70), 10**300, "é ✓ 😀"], ids=repr)
def test_values_written_by_0_1_read_back_equal(value: Any) -> None:
    text = V01_VALUE.encode(codec._to_json(value))
    back = codec.decode(text)
    assert back == value
    assert type(back) is type(value)


@given(json_values)
def test_any_json_0_1_wrote_reads_back_equal(value: Any) -> None:
    for encoder in (V01_VALUE, V01_DOCUMENT):
        assert _json.loads(encoder.encode(value)) == value
    assert json.loads(_json.dumps(value)) == value  # and 0.1 could read what 0.2 writes


def test_big_integers_stay_exact_both_ways() -> None:
    big = 2**64 + 1
    assert codec.decode(codec.encode(big)) == big
    assert type(codec.decode(codec.encode(big))) is int


def test_metadata_and_record_documents_of_0_1_read_back() -> None:
    meta = Meta("h" * 22, 1.5, 2.25, 1e9, 1800.0, "alïce", "UA ✓", "127.0.0.1", True, 7)
    assert Meta.from_json(V01_DOCUMENT.encode(meta._asdict())) == meta
    record = Record({"n": "1", "name": '"é"'}, meta)
    old = V01_DOCUMENT.encode({"data": dict(record.data), "meta": meta._asdict()})
    assert "\\u00ef" in old  # 0.1 escaped non-ASCII in documents
    assert Record.from_document(old) == record
    assert Record.from_document(record.to_document()) == record


@pytest.mark.parametrize("text", ['"\\ud800"', '["\\udc00x"]', "1e400", "[" * 5000 + "]" * 5000])
def test_malformed_stored_text_is_refused_not_crashed(text: str) -> None:
    with pytest.raises(ValueError, match=r".*"):
        codec.decode(text)
    with pytest.raises(CorruptRecord):
        Record.from_document(f'{{"data":{{"k":{text}}},"meta":{{}}}}')


@pytest.mark.parametrize("created", ["1" + "0" * 400, "true", '"1"', "null"])
def test_metadata_with_a_number_no_float_holds_is_corrupt_not_a_crash(created: str) -> None:
    meta = Meta("h" * 22, 1.5, 2.25, 1e9, 1800.0)
    text = _json.dumps(meta._asdict()).replace('"created":1.5', f'"created":{created}')
    with pytest.raises(CorruptRecord):
        Meta.from_json(text)
    with pytest.raises(CorruptRecord):
        Meta.from_fields([meta.handle, _json.loads(created), *meta[2:]])
