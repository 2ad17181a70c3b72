"""The ``satchel`` command."""

from __future__ import annotations

import os
import secrets
import sys
import time

import click

from .errors import SatchelError
from .log import logger


def _fail(exc: SatchelError) -> None:
    raise click.ClickException(str(exc))


@click.group()
@click.version_option(package_name="satchel")
def main() -> None:
    """satchel: server-side HTTP sessions."""


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@click.option("--store", default=None, help="Store URL (default: SATCHEL_STORE or SQLite).")
def demo(host: str, port: int, store: str | None) -> None:
    """Run the demo app (users alice/wonderland and bob/builder)."""
    import uvicorn

    from .demo import create_app
    from .envconfig import from_env

    try:
        settings = from_env(os.environ, store=store)
        options = dict(settings.options)
        if settings.store.startswith("cookie:"):
            # the browser keeps the sessions; the SQLite file keeps who logged out
            options.setdefault("revocation_store", "sqlite:///satchel.db")
        app = create_app(settings.store, **options)
    except SatchelError as exc:
        _fail(exc)
        return
    logging_setup()
    if settings.generated_key:
        logger.warning(
            "SATCHEL_SECRET_KEYS is not set: using a random key for this run only, so "
            "sessions will not survive a restart (make a key with `satchel keygen`)"
        )
    click.echo(f"satchel demo on http://{host}:{port}/  (store: {settings.store})")
    uvicorn.run(app, host=host, port=port, log_level="warning")


def logging_setup() -> None:
    import logging

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")


@main.command()
def keygen() -> None:
    """Print a new random secret key (256 bits, URL-safe) for SATCHEL_SECRET_KEYS."""
    click.echo(secrets.token_urlsafe(32))


@main.group()
def sessions() -> None:
    """Inspect and maintain a session store."""


def _store(url: str | None):  # type: ignore[no-untyped-def]
    from .envconfig import from_env
    from .stores.registry import store_from_url

    try:
        return store_from_url(from_env(os.environ, store=url).store)
    except SatchelError as exc:
        _fail(exc)


@sessions.command()
@click.option("--store", default=None, help="Store URL (default: SATCHEL_STORE or SQLite).")
def purge(store: str | None) -> None:
    """Delete expired session records."""
    backend = _store(store)
    try:
        removed = backend.purge_expired(time.time())
    except SatchelError as exc:
        _fail(exc)
        return
    click.echo(f"purged {removed} expired session(s)")


@sessions.command()
@click.option("--store", default=None, help="Store URL (default: SATCHEL_STORE or SQLite).")
def stats(store: str | None) -> None:
    """Count live sessions."""
    backend = _store(store)
    try:
        live = backend.count(time.time())
    except SatchelError as exc:
        _fail(exc)
        return
    except NotImplementedError as exc:
        raise click.ClickException(f"this store cannot count its sessions: {exc}") from exc
    click.echo(f"live sessions: {live}")


@main.group()
def db() -> None:
    """Database set-up for SQL stores."""


@db.command("init")
@click.option("--store", default=None, help="Store URL (default: SATCHEL_STORE or SQLite).")
def db_init(store: str | None) -> None:
    """Create the session table and its indexes (PostgreSQL, MariaDB/MySQL, SQLite)."""
    backend = _store(store)
    init = getattr(backend, "init_schema", None)
    try:
        if init is not None:
            init()
    except SatchelError as exc:
        _fail(exc)
        return
    finally:
        backend.close()
    if init is None:
        click.echo(f"{type(backend).__name__} needs no schema: nothing to do")
    else:
        click.echo(f"session table ready ({type(backend).__name__})")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
