"""The package as users get it: the wheel and sdist build, pass ``twine check``, carry the
license, the typing marker and the demo's static files, and the wheel installed into a
clean virtual environment with only ``satchel[demo]`` runs ``satchel demo``."""

from __future__ import annotations

import os
import subprocess
import sys
import tarfile
import tomllib
import urllib.request
import zipfile
from pathlib import Path

import pytest

from .conftest import KEY
from .services import free_port, port_open, wait_for

ROOT = Path(__file__).resolve().parent.parent
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def dist(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    subprocess.run(
        [sys.executable, "-m", "build", "--outdir", str(out), str(ROOT)],
        check=True,
        capture_output=True,
        timeout=600,
    )
    return out


def _one(dist: Path, pattern: str) -> Path:
    (found,) = dist.glob(pattern)
    return found


def test_wheel_and_sdist_pass_twine_check_and_carry_what_users_need(dist: Path) -> None:
    from trove_classifiers import classifiers

    checked = subprocess.run(
        [sys.executable, "-m", "twine", "check", "--strict", *map(str, dist.iterdir())],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    wheel = _one(dist, "satchel-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "satchel/py.typed" in names
    assert "satchel/demo/static/style.css" in names
    templates = "satchel/integrations/django_devices/templates"
    assert f"{templates}/satchel/devices/sessions.html" in names  # the Django devices app's
    assert f"{templates}/admin/satchel_devices/user_sessions.html" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/", "reliability/")) for n in names)
    metadata = zipfile.ZipFile(wheel).read(
        next(n for n in names if n.endswith(".dist-info/METADATA"))
    )
    assert b"License-Expression: MIT" in metadata
    assert b"Project-URL: Changelog" in metadata
    sdist = _one(dist, "satchel-*.tar.gz")
    with tarfile.open(sdist) as archive:
        members = {m.name.split("/", 1)[1] for m in archive.getmembers() if "/" in m.name}
    assert {"LICENSE", "README.md", "pyproject.toml"} <= members
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    assert not set(project["classifiers"]) - set(classifiers)


def test_the_wheel_with_only_the_demo_extra_runs_the_demo(dist: Path, tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    wheel = _one(dist, "satchel-*.whl")
    installed = subprocess.run(
        [*pip, f"{wheel}[demo]"], capture_output=True, text=True, timeout=600
    )
    assert installed.returncode == 0, installed.stderr[-2000:]
    listed = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "pip", "list", "--format=freeze"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.lower()
    for dev_only in ("pytest", "mypy", "playwright", "redis", "psycopg", "django", "flask"):
        assert f"\n{dev_only}==" not in f"\n{listed}", f"{dev_only} installed by satchel[demo]"
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SATCHEL_")}
    env["SATCHEL_SECRET_KEYS"] = KEY
    demo = subprocess.Popen(
        [str(venv / "bin" / "satchel"), "demo", "--port", str(port), "--store", "memory://"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(lambda: port_open(port) or demo.poll() is not None, "the demo", timeout=60)
        assert demo.poll() is None, demo.stdout.read() if demo.stdout else b""
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=10) as page:
            assert page.status == 200
            assert b'name="csrf_token"' in page.read()
    finally:
        demo.terminate()
        try:
            demo.wait(timeout=10)
        except subprocess.TimeoutExpired:
            demo.kill()
            demo.wait()
        if demo.stdout is not None:
            demo.stdout.close()
