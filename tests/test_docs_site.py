"""The documentation site builds in strict mode (mkdocs.yml): a broken link or anchor, a page
left out of the nav, a missing snippet of an example, or an API reference that does not
resolve fails the suite. The build reaches no network: proxies that refuse every
connection are set, so a plugin or theme that fetched would fail it."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("site")
    refused = "http://127.0.0.1:9"  # the discard port: nothing listens, every fetch fails
    env = {
        **os.environ,
        "NO_MKDOCS_2_WARNING": "1",
        "HTTP_PROXY": refused,
        "HTTPS_PROXY": refused,
        "http_proxy": refused,
        "https_proxy": refused,
        "NO_PROXY": "",
        "no_proxy": "",
    }
    build = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    return out


def test_every_page_is_built(site: Path) -> None:
    pages = [p.relative_to(DOCS) for p in DOCS.rglob("*.md")]
    assert len(pages) > 30
    for page in pages:
        folder = page.parent if page.stem == "index" else page.with_suffix("")
        assert (site / folder / "index.html").is_file(), page


def test_api_reference_holds_the_public_api(site: Path) -> None:
    import satchel

    html = (site / "api" / "satchel" / "index.html").read_text()
    public = [name for name in satchel.__all__ if not name.startswith("_")]
    missing = [name for name in public if f'id="satchel.{name}"' not in html]
    assert missing == []
    integrations = (site / "api" / "integrations" / "index.html").read_text()
    for module in ("flask", "starlette", "fastapi", "django"):
        assert f'id="satchel.integrations.{module}"' in integrations


def test_no_page_loads_anything_from_another_site(site: Path) -> None:
    """No web fonts, scripts or styles from elsewhere: the site works offline."""
    for page in site.rglob("*.html"):
        text = page.read_text()
        tags = re.findall(r"<(?:link|script)\b[^>]*>", text)
        remote = [
            tag
            for tag in tags
            if re.search(r'(?:href|src)="https?://', tag) and "canonical" not in tag
        ]
        assert remote == [], page
