"""Package hygiene: what `import satchel` costs and exposes."""

from __future__ import annotations

import json
import subprocess
import sys

import satchel

OPTIONAL = [
    "redis",
    "psycopg",
    "psycopg_pool",
    "pymysql",
    "aiomysql",
    "sqlalchemy",
    "pymemcache",
    "flask",
    "fastapi",
    "django",
    "litestar",
    "falcon",
    "quart",
    "hypercorn",
    "aiohttp",
    "starlette",
    "uvicorn",
    "jinja2",
    "playwright",
    "jwt",
    "ua_parser",  # the demo's device names
    "python_multipart",  # a core dependency, imported only when a multipart form arrives
    "opentelemetry",  # satchel.integrations.opentelemetry, the otel extra
]


def test_import_satchel_imports_no_driver_or_framework() -> None:
    code = (
        "import json, sys, satchel, satchel.asgi, satchel.wsgi, satchel.stores; "
        f"print(json.dumps(sorted(m for m in {OPTIONAL!r} if m in sys.modules)))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    )
    assert json.loads(result.stdout) == []


def test_all_is_sorted_and_complete() -> None:
    import inspect

    public = {
        name
        for name in dir(satchel)
        if not name.startswith("_") and not inspect.ismodule(getattr(satchel, name))
    }
    assert satchel.__all__ == sorted(satchel.__all__)
    assert public <= set(satchel.__all__)


def test_one_exception_tree() -> None:
    for name in satchel.__all__:
        value = getattr(satchel, name)
        if isinstance(value, type) and issubclass(value, Exception):
            assert issubclass(value, satchel.SatchelError), name
