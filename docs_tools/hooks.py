"""MkDocs hooks of the documentation site (mkdocs.yml, ``hooks:``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent


def on_page_markdown(markdown: str, page: Any, **_: Any) -> str:
    """The changelog page is the repository's CHANGELOG.md, whose links into the
    documentation start at the repository root (``docs/versioning.md``): on the site they
    start in docs/."""
    if page.file.src_uri == "changelog.md":
        return (ROOT / "CHANGELOG.md").read_text().replace("](docs/", "](")
    return markdown
