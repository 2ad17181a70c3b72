"""Found by the codec's property tests (issue 14): a set or frozenset is encoded in its
iteration order, which depends on the order its members were added and, for text and
bytes, on the process's hash seed (random in every worker). Two equal sets may encode to
different text, so a session that only *reads* a set value, in another worker than the one
that wrote it, sees a "change" at commit and writes the value back: a spurious write, and a
lost update when another request changed that key meanwhile.

Both tests failed until the codec encoded sets in a canonical order (members sorted by
their encoded text)."""

from __future__ import annotations

import os
import subprocess
import sys

from satchel import ids
from satchel.codec import encode
from satchel.engine import Engine
from satchel.expiry import ExpiryPolicy
from satchel.ops import drive
from satchel.record import Record
from satchel.session import Session
from satchel.stores.memory import MemoryStore
from satchel.testing.flows import INFO, make_meta, request

from .conftest import KEY


def test_equal_sets_encode_to_the_same_text() -> None:
    # 8 and 16 share a slot in a small hash table: the one added first iterates first
    assert encode(frozenset([8, 16])) == encode(frozenset([16, 8]))
    assert encode({8, 16}) == encode({16, 8})


def _encoded_in_a_process_with_hash_seed(seed: int, members: list[str]) -> str:
    """What another worker (its own hash seed) writes for the set of ``members``."""
    code = f"from satchel.codec import encode; print(encode(set({members!r})))"
    env = {**os.environ, "PYTHONHASHSEED": str(seed)}
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


MEMBERS = ["apple", "pear", "plum", "fig", "kiwi", "lime"]


def test_a_set_encodes_the_same_in_every_worker() -> None:
    # (before the fix, seeds 1 and 2 gave two different texts for these members)
    texts = {_encoded_in_a_process_with_hash_seed(seed, MEMBERS) for seed in (1, 2, 3)}
    assert len(texts) == 1
    assert texts == {encode(set(MEMBERS))}


def test_reading_a_set_does_not_undo_a_concurrent_write() -> None:
    store, now = MemoryStore(), 1_000_000.0
    engine = Engine(secret_keys=[KEY], expiry=ExpiryPolicy(), clock=lambda: now)
    stored = _encoded_in_a_process_with_hash_seed(2, MEMBERS)  # another worker wrote it
    sid = ids.new_session_id()
    store.create(ids.store_key(sid), Record({"tags": stored}, make_meta(now)))
    reader = drive(engine.open(Session(), sid), store)
    writer = drive(engine.open(Session(), sid), store)
    assert "fig" in reader["tags"]  # only read
    writer["tags"] = {"new"}
    drive(engine.commit(writer, INFO), store)
    drive(engine.commit(reader, INFO), store)
    assert drive(request(engine, sid), store)[0]["tags"] == {"new"}
