"""MkDocs hooks of the documentation site (mkdocs.yml, ``hooks:``)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Sphinx cross-reference roles in docstrings (:class:`~satchel.session.Session`), which the
# API reference would otherwise show as written: the name alone, as code (``~``: its last
# part, as Sphinx does).
_ROLE = re.compile(r":(?:class|func|meth|mod|data|attr|exc|obj):<code>(~?)([\w.]+)</code>")


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """The changelog page is the repository's CHANGELOG.md, whose links into the
    documentation start at the repository root (``docs/versioning.md``): on the site they
    start in docs/."""
    if page.file.src_uri == "changelog.md":
        return (ROOT / "CHANGELOG.md").read_text().replace("](docs/", "](")
    return markdown


def on_page_content(html: str, page: Any, **_: Any) -> str:
    if not page.file.src_uri.startswith("api/"):
        return html
    return _ROLE.sub(lambda m: f"<code>{m[2].rsplit('.', 1)[-1] if m[1] else m[2]}</code>", html)
