"""The ``satchel`` command: the demo, keys, configuration, and session administration.

Settings come from the same loader apps use (defaults < ``satchel.toml`` or
``$SATCHEL_CONFIG`` < ``SATCHEL_*`` < flags). Every command that opens a store says which
one on stderr (its URL, password masked, and where the setting came from). Exit codes
(:data:`EXIT_CODES`): 0 success, 1 an error (invalid configuration, nothing found or
revoked, a file that does not exist, a port in use), 2 a usage error, 3 the store is
unavailable. ``--json`` prints machine-readable output.
"""

from __future__ import annotations

import json
import logging
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click

from . import ids
from .errors import ConfigurationError, SatchelError, StoreError, StoreUnavailable
from .log import logger
from .printable import printable as safe
from .redact import mask_url, scrub
from .settings import Settings, load_settings
from .stores.base import Store
from .stores.capabilities import Countable, ExpiryCountable, HasSchema, Listable

STORE_UNAVAILABLE = 3
EXIT_CODES = (
    "Exit codes: 0 success; 1 an error (invalid configuration, nothing found or revoked, "
    "a missing SQLite file, a port in use); 2 a usage error; 3 the store is unavailable."
)
PURGE_BATCH = 500
PROGRESS_FROM = 1000  # expired records from which purge shows a progress bar


class StoreDown(click.ClickException):
    exit_code = STORE_UNAVAILABLE


def _fail(exc: BaseException) -> NoReturn:
    message = safe(scrub(str(exc)))
    if isinstance(exc, StoreUnavailable):
        raise StoreDown(message) from exc
    raise click.ClickException(message) from exc


@contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except SatchelError as exc:
        _fail(exc)


def _settings(ctx: click.Context, store: str | None, validate: bool = False) -> Settings:
    with _errors():
        return load_settings(ctx.obj.get("config"), store=store, validate=validate)


def _open_store(settings: Settings, *, create: bool = False, label: str = "store") -> Store:
    """The store the settings name, said on stderr. Only ``create`` (``satchel db init``)
    may create an SQLite file or a file store's directory: elsewhere one that does not
    exist is an error naming the path, not an empty database made by accident."""
    from .stores.registry import local_path, store_from_url

    url = settings.store
    if url.startswith("cookie:"):
        raise click.ClickException(
            "the cookie store keeps sessions in browsers: there is nothing to administer "
            "on the server (its revocation markers live in revocation_store)"
        )
    source = settings.sources.get("store", "default")
    with _errors():
        path = local_path(url)
    if path is not None and not create and not Path(path).exists():
        raise click.ClickException(
            f"no session store at {safe(str(Path(path).absolute()))} (store "
            f"{safe(mask_url(url))}, from {source}): check the path and the working "
            "directory, or create it with `satchel db init`"
        )
    with _errors():
        store = store_from_url(url)
    click.echo(f"{label}: {safe(mask_url(url))} (from {source})", err=True)
    return store


def _when(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _emit_json(data: Any) -> None:
    """JSON, ASCII only: json.dumps escapes C0 controls and every non-ASCII character
    (C1 controls, bidi overrides) as \\uXXXX; DEL, the one ASCII control it keeps, too."""
    click.echo(json.dumps(data, indent=2, sort_keys=True).replace("\x7f", "\\u007f"))


def _table(rows: list[list[str]], headers: list[str]) -> None:
    rows = [[safe(cell) for cell in row] for row in rows]
    widths = [
        max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)
    ]
    click.echo("  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)).rstrip())
    for row in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())


store_option = click.option(
    "--store", default=None, help="Store URL (default: from settings, else sqlite:///satchel.db)."
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


@click.group(epilog=EXIT_CODES)
@click.version_option(package_name="satchel")
@click.option(
    "--config",
    type=click.Path(dir_okay=False),
    default=None,
    help="Settings file (default: $SATCHEL_CONFIG, else ./satchel.toml if present).",
)
@click.pass_context
def main(ctx: click.Context, config: str | None) -> None:
    """satchel: server-side HTTP sessions."""
    ctx.ensure_object(dict)
    ctx.obj["config"] = config


# -- demo -----------------------------------------------------------------------------------------


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", default=8000, show_default=True, type=int)
@store_option
@click.option(
    "--tls", is_flag=True, help="Serve HTTPS with a self-signed certificate made for this run."
)
@click.option(
    "--certfile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="Serve HTTPS with this PEM certificate (chain); needs --keyfile.",
)
@click.option(
    "--keyfile",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    default=None,
    help="The PEM private key of --certfile.",
)
@click.pass_context
def demo(
    ctx: click.Context,
    host: str,
    port: int,
    store: str | None,
    tls: bool,
    certfile: Path | None,
    keyfile: Path | None,
) -> None:
    """Run the demo app (users alice/wonderland and bob/builder)."""
    try:
        import python_multipart  # noqa: F401  (the login form; Starlette needs it)
        import uvicorn  # noqa: F401  (only checked here: a missing one is said at once)

        from .demo import create_app
    except ImportError as exc:
        name = (
            (exc.name or "uvicorn")
            .partition(".")[0]
            .replace("python_multipart", "python-multipart")
        )
        raise click.ClickException(
            f'satchel demo needs {name}, which is not installed: pip install "satchel[demo]"'
        ) from None

    if (certfile is None) != (keyfile is None):
        raise click.UsageError("--certfile and --keyfile go together: give both or neither")
    spki = None
    if certfile is not None and keyfile is not None:
        spki = _check_tls_files(certfile, keyfile)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    settings = _settings(ctx, store)
    if not settings.secret_keys:
        settings = replace(settings, secret_keys=(secrets.token_urlsafe(32),))
        logger.warning(
            "SATCHEL_SECRET_KEYS is not set: using a random key for this run only, so "
            "sessions will not survive a restart (make a key with `satchel keygen`)"
        )
    with _errors():
        options: dict[str, Any] = dict(settings.validate().middleware_options())
    if settings.store.startswith("cookie:") and not settings.revocation_store:
        # the browser keeps the sessions; the SQLite file keeps who logged out
        options["revocation_store"] = "sqlite:///satchel.db"
    with _errors():
        app = create_app(settings.store, **options)
    _check_port(host, port)
    banner = f"(store: {settings.masked()['store']['value']})"
    if certfile is not None and keyfile is not None and spki is not None:
        click.echo(f"satchel demo on https://{host}:{port}/  {banner}")
        _echo_trust(f"certificate: {certfile}", spki)
        _serve(
            app,
            host=host,
            port=port,
            log_level="warning",
            ssl_certfile=certfile,
            ssl_keyfile=keyfile,
        )
    elif tls:
        _demo_with_own_certificate(app, host, port, banner)
    else:
        click.echo(f"satchel demo on http://{host}:{port}/  {banner}")
        _serve(app, host=host, port=port, log_level="warning")


def _serve(app: Any, **options: Any) -> None:
    """uvicorn.run, its start-up failure (exit 3, e.g. the port taken since
    :func:`_check_port`) turned into exit 1: 3 means "store unavailable" here."""
    import uvicorn

    try:
        uvicorn.run(app, **options)
    except SystemExit as exc:
        if exc.code == STORE_UNAVAILABLE:
            raise click.ClickException(
                "the demo server could not start (see the error above)"
            ) from None
        raise


def _check_port(host: str, port: int) -> None:
    """A port that is taken (or a host this machine does not have) is a plain error, exit
    1, said before the server starts -- not uvicorn's exit code 3, which is the "store
    unavailable" code here."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        with socket.socket(family, kind, proto) as sock:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(address)
    except OSError as exc:
        raise click.ClickException(
            f"cannot listen on {host}:{port}: {exc.strerror or exc}; choose another port "
            "with --port (or stop what is using it)"
        ) from None


def _check_tls_files(certfile: Path, keyfile: Path) -> str:
    """The certificate's SPKI hash, or a one-line usage error before any server starts."""
    from .demo.tls import check_files

    try:
        return check_files(certfile, keyfile)
    except (ValueError, OSError) as exc:
        raise click.UsageError(f"cannot serve TLS: {exc}") from None


def _echo_trust(certificate: str, spki: str) -> None:
    click.echo(certificate)
    click.echo(f"SPKI SHA-256: {spki}")
    click.echo(
        "trust it in Chromium (started with its own --user-data-dir): "
        f"--ignore-certificate-errors-spki-list={spki}"
    )


def _demo_with_own_certificate(app: Any, host: str, port: int, banner: str) -> None:
    """Serve HTTPS with a certificate made in a temporary directory, removed on exit."""
    import signal
    import tempfile

    from .demo.tls import make_certificate

    def leave(signum: int, frame: object) -> NoReturn:
        raise SystemExit(128 + signum)

    # uvicorn shuts down on SIGTERM, then raises it again: exit through Python, so the
    # temporary directory is removed, instead of being killed by the default action
    previous = signal.signal(signal.SIGTERM, leave)
    try:
        with tempfile.TemporaryDirectory(prefix="satchel-demo-tls-") as directory:
            cert = make_certificate(Path(directory))
            click.echo(f"satchel demo on https://{host}:{port}/  {banner}")
            _echo_trust(
                f"certificate: self-signed for localhost, 127.0.0.1 and ::1, "
                f"in {directory} (removed on exit)",
                cert.spki_sha256,
            )
            _serve(
                app,
                host=host,
                port=port,
                log_level="warning",
                ssl_certfile=cert.certfile,
                ssl_keyfile=cert.keyfile,
            )
    finally:
        signal.signal(signal.SIGTERM, previous)


# -- keys and configuration ----------------------------------------------------------------------


@main.command()
def keygen() -> None:
    """Print a new random secret key (256 bits, URL-safe) for secret_keys."""
    click.echo(secrets.token_urlsafe(32))


@main.group()
def config() -> None:
    """Configuration."""


@config.command("check")
@json_option
@click.option(
    "--connect", is_flag=True, help="Also open the store (and revocation store) and read from it."
)
@store_option
@click.pass_context
def config_check(ctx: click.Context, as_json: bool, connect: bool, store: str | None) -> None:
    """Validate the settings and print them, secrets masked; exit 1 if invalid.

    Checks every setting, that each store URL has a known scheme and its driver is
    installed, and with --connect that each store answers. --json prints JSON whatever
    happens, errors included."""
    try:
        settings = load_settings(ctx.obj.get("config"), store=store, validate=True)
        for name in ("store", "revocation_store"):
            url = getattr(settings, name)
            if url and url.startswith("cookie:"):
                from .cookie import from_url as cookie_store_from_url

                cookie_store_from_url(url)  # its parameters (nothing to connect to)
            elif url:
                _check_store(name, url, connect)
    except SatchelError as exc:
        message = safe(scrub(str(exc)))
        if as_json:
            _emit_json({"valid": False, "error": message})
            ctx.exit(1)
        raise click.ClickException(message) from None
    masked = settings.masked()
    if as_json:
        _emit_json({"valid": True, "connected": connect, "settings": masked})
        return
    rows = [[name, json.dumps(item["value"]), item["source"]] for name, item in masked.items()]
    _table(rows, ["setting", "value", "source"])
    click.echo("configuration is valid" + (" and the store answers" if connect else ""))


def _check_store(name: str, url: str, connect: bool) -> None:
    """Raise a SatchelError naming setting ``name`` if ``url`` cannot serve, or with
    ``connect``, if the store it names does not answer one read."""
    from .stores.registry import check_url, store_from_url

    try:
        check_url(url)
        if not connect:
            return
        logging.disable(logging.WARNING)  # the cause is reported once, below, not per retry
        store = store_from_url(url)
        try:
            store.load(ids.store_key(ids.new_session_id()), time.time())
        finally:
            store.close()
            logging.disable(logging.NOTSET)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{name}: {exc}") from exc
    except StoreError as exc:
        cause = " ".join(str(exc).split())  # one line, whatever the driver said
        raise StoreUnavailable(f"{name}: cannot reach {mask_url(url)}: {cause}") from exc


@main.group()
def db() -> None:
    """Database set-up for SQL stores."""


@db.command("init")
@store_option
@click.pass_context
def db_init(ctx: click.Context, store: str | None) -> None:
    """Create the session table and its indexes (PostgreSQL, MariaDB/MySQL, SQLite)."""
    backend = _open_store(_settings(ctx, store), create=True)
    try:
        with _errors():
            if isinstance(backend, HasSchema):
                backend.init_schema()
    finally:
        backend.close()
    if not isinstance(backend, HasSchema):
        click.echo(f"{type(backend).__name__} needs no schema: nothing to do")
    else:
        click.echo(f"session table ready ({type(backend).__name__})")


# -- sessions -------------------------------------------------------------------------------


@main.group()
def sessions() -> None:
    """List, revoke, purge and count sessions."""


@sessions.command("list")
@click.option("--user", default=None, help="Only this user's sessions.")
@click.option("--limit", default=1000, show_default=True, help="At most this many rows.")
@store_option
@json_option
@click.pass_context
def sessions_list(
    ctx: click.Context, user: str | None, limit: int, store: str | None, as_json: bool
) -> None:
    """A table: handle, user, device, IP, created, last seen, expires, and "bound" for a
    session bound to its device (DBSC)."""
    from .user_sessions import SessionInfo, UserSessions

    backend = _open_store(_settings(ctx, store))
    now = time.time()
    try:
        with _errors():
            if user is not None:
                infos = UserSessions(backend).sessions(user)
            else:
                infos = [SessionInfo.of(m) for _, m in _listable(backend, now, "use --user")]
    finally:
        backend.close()
    infos = infos[:limit]
    if as_json:
        _emit_json([asdict(i) for i in infos])
        return
    rows = [
        [
            i.handle,
            i.user_id or "-",
            (i.user_agent or "-")[:40],
            i.client_ip or "-",
            _when(i.created),
            _when(i.last_seen),
            _when(i.expires_at),
            "bound" if i.device_bound else "-",
        ]
        for i in infos
    ]
    _table(rows, ["handle", "user", "device", "ip", "created", "last seen", "expires", "dbsc"])


@sessions.command("revoke")
@click.option("--user", default=None, help="Revoke every session of this user.")
@click.option("--handle", default=None, help="Revoke the session with this public handle.")
@store_option
@json_option
@click.pass_context
def sessions_revoke(
    ctx: click.Context, user: str | None, handle: str | None, store: str | None, as_json: bool
) -> None:
    """Revoke sessions: all of a user's (--user), or one (--handle, optionally --user).
    Exits 1 when nothing was revoked."""
    from .user_sessions import UserSessions

    if user is None and handle is None:
        raise click.UsageError("give --user, --handle, or both")
    backend = _open_store(_settings(ctx, store))
    admin = UserSessions(backend)
    try:
        with _errors():
            if handle is None:
                assert user is not None
                revoked = admin.revoke_all(user)
            else:
                owner = user
                if owner is None:
                    owner = next((m.user_id for _, m in _all(backend) if m.handle == handle), None)
                revoked = int(owner is not None and admin.revoke(owner, handle))
                if owner is None:  # an anonymous session: find it by handle and delete it
                    key = next((k for k, m in _all(backend) if m.handle == handle), None)
                    revoked = int(key is not None and backend.delete(key))
    finally:
        backend.close()
    if as_json:
        _emit_json({"revoked": revoked})
    else:
        click.echo(f"revoked {revoked} session(s)")
    if revoked == 0:  # nothing to revoke, by user or by handle: the same exit code
        ctx.exit(1)


def _all(backend: Store) -> Iterator[tuple[str, Any]]:
    yield from _listable(backend, time.time(), "give --user with --handle")


def _listable(backend: Store, now: float, instead: str) -> Iterator[tuple[str, Any]]:
    """Every live session, or a clear refusal (saying what to do ``instead``) from a store
    that cannot list them all."""
    if not isinstance(backend, Listable):
        raise click.ClickException(
            f"{type(backend).__name__} cannot list all its sessions; {instead}"
        )
    yield from backend.iter_sessions(now)


@sessions.command("purge")
@store_option
@json_option
@click.pass_context
def sessions_purge(ctx: click.Context, store: str | None, as_json: bool) -> None:
    """Delete expired records, in batches (a progress bar on large stores)."""
    backend = _open_store(_settings(ctx, store))
    now = time.time()
    try:
        with _errors():
            total = backend.count_expired(now) if isinstance(backend, ExpiryCountable) else None
            if total is not None and total >= PROGRESS_FROM and not as_json:
                with click.progressbar(length=total, label="purging", file=sys.stderr) as bar:
                    removed = backend.purge_expired(now, PURGE_BATCH, on_batch=bar.update)
            else:
                removed = backend.purge_expired(now, PURGE_BATCH)
    finally:
        backend.close()
    if as_json:
        _emit_json({"purged": removed})
    else:
        click.echo(f"purged {removed} expired session(s)")


@sessions.command("stats")
@store_option
@json_option
@click.pass_context
def sessions_stats(ctx: click.Context, store: str | None, as_json: bool) -> None:
    """Counts: live sessions, logged-in users, expired records awaiting a purge."""
    backend = _open_store(_settings(ctx, store))
    now = time.time()
    try:
        with _errors():
            if not isinstance(backend, Countable):
                raise click.ClickException(
                    f"this store cannot count its sessions: {type(backend).__name__} cannot "
                    "count one application's sessions"
                )
            live = backend.count(now)
            users: int | None = None
            if isinstance(backend, Listable):
                users = len({m.user_id for _, m in backend.iter_sessions(now) if m.user_id})
            expired = backend.count_expired(now) if isinstance(backend, ExpiryCountable) else None
    finally:
        backend.close()
    stats = {"live_sessions": live, "users_logged_in": users, "expired_awaiting_purge": expired}
    if as_json:
        _emit_json(stats)
        return
    click.echo(f"live sessions: {live}")
    if users is not None:
        click.echo(f"users logged in: {users}")
    if expired is not None:
        click.echo(f"expired, awaiting purge: {expired}")


@contextmanager
def _progress(show: bool, total: int | None, label: str) -> Iterator[Callable[[int], None] | None]:
    """A progress bar on stderr (its ``update``), or None when it is not to be shown."""
    if not show:
        yield None
        return
    bar: Any = click.progressbar(length=total, label=label, file=sys.stderr)
    with bar:
        yield bar.update


def _migration_target(ctx: click.Context, url: str, dry_run: bool) -> Store:
    """The target store; created if it is a file not there yet, but for a dry run, which
    writes nothing: it then counts every session as one to copy (an empty stand-in)."""
    from .stores.memory import MemoryStore
    from .stores.registry import local_path

    with _errors():
        path = local_path(url)
    if dry_run and path is not None and not Path(path).exists():
        click.echo(f"to: {safe(mask_url(url))} (does not exist yet)", err=True)
        return MemoryStore()
    return _open_store(_settings(ctx, url), create=True, label="to")


@sessions.command("migrate")
@click.option("--from", "source", required=True, help="URL of the store to copy from.")
@click.option("--to", "target", required=True, help="URL of the store to copy into.")
@click.option("--dry-run", is_flag=True, help="Only say what would be copied.")
@click.option(
    "--batch-size",
    default=1000,
    show_default=True,
    type=click.IntRange(1),
    help="Records read from the source at a time.",
)
@click.option(
    "--workers",
    default=8,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Threads copying each batch.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
@json_option
@click.pass_context
def sessions_migrate(
    ctx: click.Context,
    source: str,
    target: str,
    dry_run: bool,
    batch_size: int,
    workers: int,
    quiet: bool,
    as_json: bool,
) -> None:
    """Copy every live session, with its data, expiry and user index, from one store into
    another; nobody is logged out. Safe to run again (an interrupted run resumes: what is
    already there is skipped, nothing newer in the target is overwritten). Exits 1 when
    the final check finds sessions of the source missing from the target (created during
    the run: run it again). See docs/migrating-stores.md."""
    from .migration import Migration
    from .stores.capabilities import Countable

    if source == target:
        raise click.UsageError("--from and --to name the same store")
    from .stores.capabilities import Exportable

    old = _open_store(_settings(ctx, source), label="from")
    if not isinstance(old, Exportable):
        old.close()
        raise click.ClickException(
            f"{type(old).__name__} cannot list its records, so it cannot be the source of "
            "a migration (Memcached has no way to enumerate its keys): put the app on a "
            "read-through store (readthrough+<new URL>?from=<old URL>) and let sessions "
            "be copied as they are used; see docs/migrating-stores.md"
        )
    try:
        new = _migration_target(ctx, target, dry_run)
    except BaseException:
        old.close()
        raise
    try:
        with _errors():
            show = not quiet and not as_json and sys.stderr.isatty()
            total = old.count(time.time()) if show and isinstance(old, Countable) else None
            label = "dry run" if dry_run else "migrating"
            with _progress(show, total, label) as step:
                report = Migration(
                    old,
                    new,
                    dry_run=dry_run,
                    batch_size=batch_size,
                    workers=workers,
                    on_progress=step,
                ).run()
    finally:
        try:
            new.close()
        finally:
            old.close()
    if as_json:
        _emit_json(report.as_dict())
    elif dry_run:
        click.echo(
            f"dry run: {report.seen} live session(s) in the source; would copy "
            f"{report.copied}, would bring {report.updated} up to date; {report.present} "
            f"already there; {report.kept_newer} newer in the target (kept)"
        )
    else:
        click.echo(
            f"copied {report.copied} session(s), brought {report.updated} up to date; "
            f"{report.present} already there; {report.kept_newer} newer in the target (kept); "
            f"{report.vanished} destroyed during the copy (not kept) "
            f"in {report.seconds:.1f} s"
        )
        click.echo(
            f"check: {report.source_live} live in the source, "
            f"{(report.source_live or 0) - report.missing} of them in the target"
        )
    if report.missing:
        click.echo(
            f"{report.missing} session(s) of the source are not in the target (created "
            "during the copy?): run the command again",
            err=True,
        )
        ctx.exit(1)


if __name__ == "__main__":  # pragma: no cover
    main()
