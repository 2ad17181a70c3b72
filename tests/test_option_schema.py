"""The option schema is the one declaration: the middleware keywords, the settings loader,
Flask's and Django's keys and the docs' reference table are derived from it or checked
against it here, and an unknown name is refused the same way at every entry point."""

from __future__ import annotations

import inspect
import re
import typing
from collections.abc import Callable
from dataclasses import fields
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from starlette.applications import Starlette

from satchel import asgi, wsgi
from satchel.cookies import CookieOptions
from satchel.csrf import CSRFOptions
from satchel.dbsc.options import DeviceBindingOptions
from satchel.errors import ConfigurationError
from satchel.expiry import ExpiryPolicy
from satchel.integrations.flask import Satchel
from satchel.option_docs import with_reference_table
from satchel.option_schema import (
    BY_NAME,
    ENV,
    FLASK_KEYS,
    KEYWORDS,
    OPTIONS,
    SETTINGS,
    SessionOptions,
    default,
    refuse_unknown,
)
from satchel.settings import Settings, load_settings

from .conftest import KEY

DOCS = Path(__file__).resolve().parent.parent / "docs" / "configuration.md"


# -- everything derives from, or matches, the one declaration ----------------------------------


def test_session_options_typeddict_matches_the_schema() -> None:
    """SessionOptions stays hand-written (``Unpack[...]`` needs a literal TypedDict): its keys
    and annotations must be the schema's keyword options, exactly."""
    assert set(SessionOptions.__annotations__) == KEYWORDS
    for name, annotation in SessionOptions.__annotations__.items():
        if isinstance(annotation, typing.ForwardRef):
            annotation = annotation.__forward_arg__
        assert annotation == BY_NAME[name].type, name
    typing.get_type_hints(SessionOptions)  # every annotation resolves


def test_settings_fields_match_the_schema() -> None:
    """Settings holds what can be read from text: one field per setting, typed as its parser
    produces, defaulting to the schema's default."""
    declared = {f.name: f for f in fields(Settings) if f.name != "sources"}
    assert set(declared) == set(SETTINGS)
    for name, f in declared.items():
        parser = BY_NAME[name].parse
        assert parser is not None
        assert f.type == parser.type, name
        assert f.default == default(name), name


def test_middleware_parameters_are_declared() -> None:
    for cls in (asgi.SessionMiddleware, wsgi.SessionMiddleware):
        params = inspect.signature(cls.__init__).parameters.values()
        own = {p.name for p in params if p.kind is p.KEYWORD_ONLY or p.name == "store"}
        assert own <= set(BY_NAME), cls


def test_defaults_are_the_dataclasses_own() -> None:
    """Where an option becomes a dataclass field, the field's default is the only one."""
    owned = {o.owner for o in OPTIONS if o.owner is not None}
    assert owned == {CookieOptions, ExpiryPolicy, CSRFOptions, DeviceBindingOptions}
    for option in OPTIONS:
        if option.owner is not None:
            found = {f.name: f for f in fields(option.owner)}[option.field]
            assert option.field == found.name
    site = asgi.SessionMiddleware(Starlette(), store="memory://", secret_keys=[KEY])
    assert site.policy.cookie == CookieOptions()
    assert site.backend.expiry == ExpiryPolicy()  # type: ignore[attr-defined]
    assert site.policy.csrf == CSRFOptions()
    assert site.policy.device == DeviceBindingOptions()
    assert load_settings(env={}, use_file=False, validate=False) == Settings()


def test_environment_and_flask_names_come_from_the_schema() -> None:
    assert {f"SATCHEL_{name.upper()}": name for name in SETTINGS} == ENV
    assert FLASK_KEYS == {**ENV, "SATCHEL_LOGIN_URL": "login_url"}


def test_docs_reference_table_is_generated_from_the_schema() -> None:
    """Regenerate with ``make docs-reference``."""
    text = DOCS.read_text()
    assert with_reference_table(text) == text, "docs/configuration.md's table is stale"
    for option in OPTIONS:
        assert f"| `{option.name}` |" in text


# -- an unknown option: refused the same way at every entry point ------------------------------


def _flask(config: dict[str, Any], **explicit: Any) -> None:
    app = Flask("schema")
    app.config.update(SECRET_KEY=KEY, SATCHEL_STORE="memory://", **config)
    Satchel(app, **explicit)


def _toml(tmp_path: Path, text: str) -> Callable[[], Any]:
    path = tmp_path / "satchel.toml"
    path.write_text(text)
    return lambda: load_settings(path, env={})


ENTRY_POINTS: dict[str, tuple[Callable[[Path], Callable[[], Any]], str, str]] = {
    # what is given, where it is named, the suggestion
    "asgi keyword": (
        lambda tmp: (
            lambda: asgi.SessionMiddleware(  # type: ignore[call-arg]
                Starlette(), store="memory://", secret_keys=[KEY], cookie_nme="x"
            )
        ),
        "SessionMiddleware: unknown option 'cookie_nme'",
        "cookie_name",
    ),
    "wsgi keyword": (
        lambda tmp: (
            lambda: wsgi.SessionMiddleware(  # type: ignore[call-arg]
                lambda e, s: [], store="memory://", secret_keys=[KEY], idle_timout=5
            )
        ),
        "SessionMiddleware: unknown option 'idle_timout'",
        "idle_timeout",
    ),
    "TOML key": (
        lambda tmp: _toml(tmp, 'secret_keys = ["' + KEY + '"]\nmax_session_per_user = 3\n'),
        "satchel.toml: unknown option 'max_session_per_user'",
        "max_sessions_per_user",
    ),
    "TOML [section] key": (
        lambda tmp: _toml(tmp, "[cookie]\nsamesit = 'lax'\n"),
        "satchel.toml: unknown option 'cookie_samesit'",
        "cookie_samesite",
    ),
    "environment variable": (
        lambda tmp: (
            lambda: load_settings(
                env={"SATCHEL_SECRET_KEYS": KEY, "SATCHEL_COOKIE_SECUR": "0"}, use_file=False
            )
        ),
        "environment: unknown option 'SATCHEL_COOKIE_SECUR'",
        "SATCHEL_COOKIE_SECURE",
    ),
    "load_settings argument": (
        lambda tmp: lambda: load_settings(env={}, use_file=False, trusted_proxy=["10.0.0.1"]),
        "argument: unknown option 'trusted_proxy'",
        "trusted_proxies",
    ),
    "load_settings layer": (
        lambda tmp: lambda: load_settings(env={}, use_file=False, layers={"mine": {"csrf_x": 1}}),
        "mine: unknown option 'csrf_x'",
        "csrf",
    ),
    "Flask Satchel(...) argument": (
        lambda tmp: lambda: _flask({}, login_ur="/in"),
        r"Satchel\(\.\.\.\): unknown option 'login_ur'",
        "login_url",
    ),
    "Flask app.config key": (
        lambda tmp: lambda: _flask({"SATCHEL_ABSOLUTE_TIMEOT": 60}),
        "app.config: unknown option 'SATCHEL_ABSOLUTE_TIMEOT'",
        "SATCHEL_ABSOLUTE_TIMEOUT",
    ),
}  # Django's settings.SATCHEL: tests/test_integration_django.py (settings are process-wide)


@pytest.mark.parametrize("entry", ENTRY_POINTS)
def test_unknown_option_is_refused_naming_the_closest_and_the_valid_ones(
    entry: str, tmp_path: Path
) -> None:
    make, named, closest = ENTRY_POINTS[entry]
    with pytest.raises(ConfigurationError) as raised:
        make(tmp_path)()
    message = str(raised.value)
    assert re.search(named, message), message
    assert f"(did you mean {closest!r}?)" in message
    valid = message.partition("valid options: ")[2].partition(" (see")[0]
    assert closest in valid.split(", ")
    assert "docs/configuration.md" in message


def test_refusal_names_every_unknown_and_suggests_only_when_close() -> None:
    with pytest.raises(ConfigurationError) as raised:
        refuse_unknown(["zzz", "cookie_nam"], ["cookie_name", "csrf"], "here")
    assert str(raised.value) == (
        "here: unknown options 'cookie_nam' (did you mean 'cookie_name'?), 'zzz'; "
        "valid options: cookie_name, csrf (see docs/configuration.md)"
    )
    refuse_unknown(["csrf"], ["cookie_name", "csrf"], "here")  # all known: no error


def test_satchel_config_is_not_an_unknown_environment_variable(tmp_path: Path) -> None:
    path = tmp_path / "elsewhere.toml"
    path.write_text('idle_timeout = 600\nsecret_keys = ["' + KEY + '"]\n')
    assert load_settings(env={"SATCHEL_CONFIG": str(path)}).idle_timeout == 600
