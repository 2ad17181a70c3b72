"""Change tracking on the Session mapping itself."""

from __future__ import annotations

import json

import pytest

import satchel
from satchel import Session, SessionDataError, SessionStateError
from satchel.codec import encode
from satchel.record import Meta


def loaded(**data: object) -> Session:
    session = Session()
    meta = Meta(handle="h", created=0, last_seen=0, absolute_deadline=100, idle_timeout=10)
    session.restore("x" * 43, "k" * 64, {k: encode(v) for k, v in data.items()}, meta)
    return session


def test_new_session_state() -> None:
    session = Session()
    assert session.new
    assert not session.accessed
    assert not session.modified
    assert session.handle is None
    assert session.user_id is None


def test_reading_marks_accessed_not_modified() -> None:
    session = loaded(a=1)
    assert session["a"] == 1
    assert session.accessed
    assert not session.modified


def test_nested_change_is_detected() -> None:
    session = loaded(cart=[1], prefs={"theme": "light"})
    session["cart"].append(2)
    session["prefs"]["theme"] = "dark"
    change = session.pending_change(lambda: session.meta)  # type: ignore[arg-type,return-value]
    assert change is not None
    assert dict(change.set) == {"cart": "[1,2]", "prefs": '{"theme":"dark"}'}
    assert change.delete == frozenset()


def test_deletes_and_pops_are_tracked() -> None:
    session = loaded(a=1, b=2, c=3)
    del session["a"]
    session.pop("b")
    session.setdefault("d", 4)
    change = session.pending_change(lambda: session.meta)  # type: ignore[arg-type,return-value]
    assert change is not None
    assert change.delete == frozenset({"a", "b"})
    assert dict(change.set) == {"d": "4"}


def test_clear_logs_out() -> None:
    """clear() empties the data, unbinds the user and retires the ID, as apps that log out
    with session.clear() expect."""
    session = loaded(a=1)
    session.mark_seen(session.meta.with_changes(user_id="alice"))  # type: ignore[union-attr]
    session.clear()
    assert dict(session) == {}
    assert session.user_id is None
    assert session.new
    assert session.take_destroyed()[0] == ["k" * 64]
    session["b"] = 2  # starts a new session at commit


def test_unstorable_values_fail_at_assignment() -> None:
    session = Session()
    with pytest.raises(SessionDataError, match="cannot store a object"):
        session["x"] = object()
    with pytest.raises(TypeError, match="keys must be strings"):
        session[1] = "x"  # type: ignore[index]
    assert "x" not in session


def test_it_is_a_dict_for_code_that_expects_one() -> None:
    session = loaded(a=1)
    session.update({"b": 2}, c=3)
    assert isinstance(session, dict)
    assert dict(session) == {"a": 1, "b": 2, "c": 3}
    assert json.loads(json.dumps(session)) == {"a": 1, "b": 2, "c": 3}
    assert session == {"a": 1, "b": 2, "c": 3}
    assert sorted(session.keys()) == ["a", "b", "c"]
    assert len(session) == 3


def test_save_without_a_store_is_a_clear_error() -> None:
    with pytest.raises(SessionStateError, match="not bound"):
        Session().save()


def test_destroy_then_write_starts_over() -> None:
    session = loaded(a=1)
    session.destroy()
    assert session.new
    assert dict(session) == {}
    session["flash"] = "bye"
    assert session.take_destroyed()[0] == ["k" * 64]


def test_set_expiry_validates() -> None:
    with pytest.raises(ValueError, match="positive"):
        Session().set_expiry(idle_timeout=0)


def test_reading_immutable_values_needs_no_diff() -> None:
    session = loaded(a=1, name="x", when=None)
    assert (session["a"], session.get("name"), session.get("when")) == (1, "x", None)
    assert not session.needs_commit
    assert session.pending_change(lambda: session.meta) is None  # type: ignore[arg-type,return-value]


def test_mutable_values_handed_out_by_get_are_tracked() -> None:
    session = loaded(cart=[1], pair=([1], 2))
    session.get("cart").append(2)
    session["pair"][0].append(3)
    assert session.needs_commit
    change = session.pending_change(lambda: session.meta)  # type: ignore[arg-type,return-value]
    assert change is not None
    assert set(change.set) == {"cart", "pair"}


def test_an_encoding_kept_from_assignment_never_outlives_its_value() -> None:
    """The commit reuses the encoding made when a value that cannot change in place was
    assigned; a value replaced by a mutable one, popped, or reloaded is encoded afresh."""
    session = loaded(a=1)
    session["a"] = 2  # kept: "2"
    session["b"] = "x"
    session["b"] = ["x"]  # a list may change in place: its encoding is not kept
    session["b"].append("y")
    session.pop("a")
    session["c"] = 3
    change = session.pending_change(lambda: session.meta)  # type: ignore[arg-type,return-value]
    assert change is not None
    assert dict(change.set) == {"b": '["x","y"]', "c": "3"}
    assert change.delete == frozenset({"a"})
    assert session.encoded() == {"b": '["x","y"]', "c": "3"}
    assert session.encoded_if_changed() == {"b": '["x","y"]', "c": "3"}
    session.restore("x" * 43, "k" * 64, {"c": encode(4)}, session.meta)  # type: ignore[arg-type]
    assert session.encoded() == {"b": '["x","y"]', "c": "4"}


def test_an_untouched_session_is_idle_until_read_or_changed() -> None:
    session = Session()
    assert session.idle()
    assert "k" not in session  # a read: the response varies on the cookie
    assert not session.idle()
    assert loaded(a=1).idle()
    assert loaded(a=1).encoded_if_changed() is None


@pytest.mark.parametrize(("methods", "level"), [((), None), (["pwd", "otp", "pwd"], "aal2")])
def test_a_login_writes_the_facts_as_authfacts_would(methods: list[str], level: str | None) -> None:
    """login() writes the authentication facts' JSON without building an AuthFacts
    (auth_facts.facts_json): the same text, read back as the same facts."""
    from satchel.auth_facts import AuthFacts

    session = Session()
    satchel.login(session, "alice", methods=methods, level=level)
    text = session.pending_meta["auth"]
    facts = AuthFacts.from_json(text)
    assert facts is not None
    assert facts == AuthFacts(facts.time, tuple(dict.fromkeys(methods)), level)
    assert text == facts.to_json()


def test_the_defaults_fast_path_still_checks_what_it_is_given() -> None:
    from satchel.auth_facts import checked

    assert checked((), None) == ((), None)
    assert checked([], None) == ((), None)
    assert checked((), "aal1") == ((), "aal1")
    with pytest.raises(satchel.ConfigurationError):
        checked("", None)
    with pytest.raises(satchel.ConfigurationError):
        checked((), "bad level!")


@pytest.mark.parametrize(
    ("user_id", "error"),
    [
        ("a" * 1020, None),
        ("a" * 1021, SessionDataError),  # (ASCII: a byte a character)
        ("é" * 510, None),
        ("é" * 511, SessionDataError),  # 1,022 bytes in UTF-8
        ("al\x00ice", SessionDataError),
        ("\ud800", SessionDataError),
        ("", satchel.ConfigurationError),
    ],
)
def test_login_checks_the_user_id(user_id: str, error: type[Exception] | None) -> None:
    session = Session()
    if error is not None:
        with pytest.raises(error):
            satchel.login(session, user_id)
        assert not session.regenerating
        assert session.pending_meta == {}
        return
    satchel.login(session, user_id)
    assert session.user_id == user_id
    assert session.regenerating


def test_login_queues_one_change_of_state() -> None:
    """A login regenerates (one new handle per commit, as regenerate() chose it), binds
    the user with the authentication facts, and starts over only for another user."""
    session = Session()
    session["cart"] = [1]
    session.set_expiry(persistent=True)
    session.regenerate()
    handle = session.handle
    satchel.login(session, "alice", methods=["pwd"], level="aal1")
    queued = dict(session.pending_meta)
    assert queued.pop("handle") == handle  # the one regenerate() chose
    auth = json.loads(queued.pop("auth"))
    assert auth["m"] == ["pwd"]
    assert auth["l"] == "aal1"
    assert queued == {
        "persistent": True,
        "user_id": "alice",
        "restart": True,
        "login_device": True,
    }
    assert session["cart"] == [1]  # an anonymous session's data is kept
    satchel.login(session, "bob")  # another user: nothing of alice's
    assert dict(session) == {}
    assert session.pending_meta["fresh"] is True
    assert session.handle == handle
    assert session.user_id == "bob"
