"""Framework integrations, each behind its extra: ``satchel[flask]``, ``satchel[fastapi]``,
``satchel[django]``, ``satchel[litestar]``, ``satchel[falcon]``, ``satchel[quart]``,
``satchel[aiohttp]``. Importing satchel imports none of them."""

from __future__ import annotations


def missing_framework(exc: ModuleNotFoundError, extra: str) -> ModuleNotFoundError:
    """The error an integration raises when its framework is not installed: it names
    the package and the extra that installs it, instead of a bare ``No module named``."""
    name = (exc.name or extra).partition(".")[0]
    return ModuleNotFoundError(
        f"this satchel integration needs {name!r}, which is not installed: "
        f'pip install "satchel[{extra}]"',
        name=exc.name,
    )
