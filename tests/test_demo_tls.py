"""`satchel demo --tls` and `--certfile/--keyfile`: a real server over HTTPS, trusted only
through the SPKI hash it prints (what Chromium's --ignore-certificate-errors-spki-list
takes)."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import os
import queue
import re
import shutil
import ssl
import stat
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from satchel.demo.tls import make_certificate, spki_sha256

from .conftest import KEY
from .services import (
    CHROMIUM,
    CHROMIUM_ARGS,
    LOOPBACK,
    free_port,
    port_open,
    unavailable,
    wait_for,
)

SPKI_FLAG = re.compile(r"--ignore-certificate-errors-spki-list=(\S+)")


def independent_spki(pem: bytes) -> str:
    public = x509.load_pem_x509_certificate(pem).public_key()
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(der).digest()).decode()


def test_make_certificate(tmp_path: Path) -> None:
    made = make_certificate(tmp_path)
    cert = x509.load_pem_x509_certificate(made.certfile.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert san.get_values_for_type(x509.IPAddress) == [
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    ]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "localhost"
    assert cert.issuer == cert.subject  # self-signed
    public = cert.public_key()
    assert isinstance(public, ec.EllipticCurvePublicKey)
    assert isinstance(public.curve, ec.SECP256R1)
    assert cert.signature_hash_algorithm is not None
    assert cert.signature_hash_algorithm.name == "sha256"
    public.verify(
        cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm)
    )
    now = datetime.now(UTC)
    assert abs(cert.not_valid_before_utc - (now - timedelta(hours=1))) < timedelta(minutes=1)
    assert cert.not_valid_after_utc - cert.not_valid_before_utc == timedelta(days=7)
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert stat.S_IMODE(made.keyfile.stat().st_mode) == 0o600
    key = serialization.load_pem_private_key(made.keyfile.read_bytes(), password=None)
    assert key.public_key() == public
    assert made.spki_sha256 == independent_spki(made.certfile.read_bytes())
    assert spki_sha256(made.certfile) == made.spki_sha256
    assert len(base64.b64decode(made.spki_sha256, validate=True)) == 32
    (tmp_path / "again").mkdir()
    assert make_certificate(tmp_path / "again").spki_sha256 != made.spki_sha256  # a fresh key


class Demo:
    """`satchel demo` in a subprocess; its output lines arrive on a queue."""

    def __init__(self, proc: subprocess.Popen[str]) -> None:
        self.proc = proc
        self.lines: queue.Queue[str] = queue.Queue()
        self.output: list[str] = []
        assert proc.stdout is not None
        stdout = proc.stdout

        def read() -> None:
            for line in stdout:
                self.lines.put(line)

        self.reader = threading.Thread(target=read)
        self.reader.start()

    def wait_for_line(self, pattern: re.Pattern[str], timeout: float = 15.0) -> re.Match[str]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.1)
            except queue.Empty:
                assert self.proc.poll() is None, "".join(self.output)
                continue
            self.output.append(line)
            if match := pattern.search(line):
                return match
        raise TimeoutError(f"no line matching {pattern.pattern}: {''.join(self.output)}")

    def all_output(self) -> str:
        """Everything it printed, once it has exited."""
        self.reader.join(timeout=10)
        while not self.lines.empty():
            self.output.append(self.lines.get())
        return "".join(self.output)


@contextmanager
def run_demo(*args: str, cwd: Path, env_extra: dict[str, str] | None = None) -> Iterator[Demo]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SATCHEL_")}
    env["SATCHEL_SECRET_KEYS"] = KEY
    env.update(env_extra or {})
    proc = subprocess.Popen(
        [sys.executable, "-m", "satchel.cli", "demo", "--store", "memory://", *args],
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    demo = Demo(proc)
    try:
        yield demo
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        demo.reader.join(timeout=10)
        assert proc.stdout is not None
        proc.stdout.close()


def check_https(port: int, printed_spki: str, cadir: Path) -> None:
    """Trust only a certificate with the printed SPKI hash, then log in over HTTPS."""
    wait_for(lambda: port_open(port), "the demo's port")
    pem = ssl.get_server_certificate((LOOPBACK, port), timeout=5)
    assert independent_spki(pem.encode()) == printed_spki
    cafile = cadir / "trusted.pem"
    cafile.write_text(pem)
    context = ssl.create_default_context(cafile=str(cafile))  # that one certificate only
    assert context.check_hostname
    with httpx.Client(base_url=f"https://{LOOPBACK}:{port}", verify=context) as client:
        page = client.get("/login")
        assert page.status_code == 200
        form_token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
        assert form_token is not None
        login = client.post(
            "/login",
            data={"username": "alice", "password": "wonderland", "csrf_token": form_token[1]},
        )
        assert login.status_code == 303
        session_cookie = next(
            c for c in login.headers.get_list("set-cookie") if c.startswith("satchel=")
        )
        assert "secure" in [a.strip().lower() for a in session_cookie.split(";")]
        assert client.get("/api/me").json()["username"] == "alice"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        httpx.get(f"https://{LOOPBACK}:{port}/login", verify=ssl.create_default_context())
    with pytest.raises(httpx.TransportError):  # no plain http on the TLS port
        httpx.get(f"http://{LOOPBACK}:{port}/login", timeout=5)


def test_demo_tls_makes_a_certificate_and_removes_it(tmp_path: Path) -> None:
    port = free_port()
    with run_demo("--tls", "--port", str(port), cwd=tmp_path) as demo:
        demo.wait_for_line(re.compile(rf"satchel demo on https://127\.0\.0\.1:{port}/"))
        where = demo.wait_for_line(re.compile(r"self-signed .* in (\S+) \(removed on exit\)"))
        directory = Path(where[1])
        spki = demo.wait_for_line(SPKI_FLAG)[1]
        assert directory.is_dir()
        assert spki == spki_sha256(directory / "cert.pem")
        check_https(port, spki, tmp_path)
    assert demo.proc.returncode == 128 + 15  # left through Python after SIGTERM, not killed
    assert not directory.exists()
    assert "Traceback" not in demo.all_output()


def test_demo_with_own_certificate_files(tmp_path: Path) -> None:
    made = make_certificate(tmp_path)
    port = free_port()
    args = ("--certfile", str(made.certfile), "--keyfile", str(made.keyfile))
    with run_demo(*args, "--port", str(port), cwd=tmp_path) as demo:
        demo.wait_for_line(re.compile(rf"satchel demo on https://127\.0\.0\.1:{port}/"))
        spki = demo.wait_for_line(SPKI_FLAG)[1]
        assert spki == made.spki_sha256
        check_https(port, spki, tmp_path)
    assert made.keyfile.exists()  # the user's files stay


@pytest.mark.slow
def test_chromium_trusts_the_demo_with_the_printed_flag(tmp_path: Path) -> None:
    """The printed flag, as printed, is what real Chromium needs: without it the page does
    not load; with it the login works and the session cookie is Secure."""
    if shutil.which("chromium") is None and not Path(CHROMIUM).exists():
        unavailable("Debian's chromium (apt-get install chromium)")
    from playwright.sync_api import Error, sync_playwright

    port = free_port()
    base = f"https://{LOOPBACK}:{port}"
    with run_demo("--tls", "--port", str(port), cwd=tmp_path) as demo:
        flag = demo.wait_for_line(re.compile(r"--ignore-certificate-errors-spki-list=\S+"))[0]
        wait_for(lambda: port_open(port), "the demo's port")
        with sync_playwright() as p:
            for args, trusted in (([], False), ([flag], True)):
                profile = tmp_path / f"profile-{trusted}"
                context = p.chromium.launch_persistent_context(
                    profile, executable_path=CHROMIUM, args=CHROMIUM_ARGS + args, headless=True
                )
                try:
                    page = context.new_page()
                    if not trusted:
                        with pytest.raises(Error, match="ERR_CERT_AUTHORITY_INVALID"):
                            page.goto(f"{base}/login")
                        continue
                    page.goto(f"{base}/login")
                    page.fill("#username", "alice")
                    page.fill("#password", "wonderland")
                    page.click("button[type=submit]")
                    page.wait_for_url(f"{base}/profile")
                    cookie = next(c for c in context.cookies() if c["name"] == "satchel")
                    assert cookie["secure"]
                finally:
                    context.close()


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("certfile only", "--certfile and --keyfile go together"),
        ("keyfile only", "--certfile and --keyfile go together"),
        ("missing certfile", "'--certfile': File"),
        ("junk certfile", "no PEM certificate in it"),
        ("junk keyfile", "no PEM private key in it"),
        ("another key", "KEY_VALUES_MISMATCH"),
        ("encrypted key", "the key is encrypted"),
    ],
)
def test_demo_refuses_bad_certificate_files(tmp_path: Path, case: str, message: str) -> None:
    made = make_certificate(tmp_path)
    (tmp_path / "other").mkdir()
    other = make_certificate(tmp_path / "other")
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate\n")
    encrypted = tmp_path / "encrypted.pem"
    key = serialization.load_pem_private_key(made.keyfile.read_bytes(), password=None)
    encrypted.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    cert, keyfile = str(made.certfile), str(made.keyfile)
    args = {
        "certfile only": ["--certfile", cert],
        "keyfile only": ["--tls", "--keyfile", keyfile],
        "missing certfile": ["--certfile", str(tmp_path / "nope.pem"), "--keyfile", keyfile],
        "junk certfile": ["--certfile", str(junk), "--keyfile", keyfile],
        "junk keyfile": ["--certfile", cert, "--keyfile", str(junk)],
        "another key": ["--certfile", cert, "--keyfile", str(other.keyfile)],
        "encrypted key": ["--certfile", cert, "--keyfile", str(encrypted)],
    }[case]
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("SATCHEL_")}
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "satchel.cli",
            "demo",
            "--store",
            "memory://",
            "--port",
            str(port),
            *args,
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
        stdin=subprocess.DEVNULL,
    )
    assert done.returncode == 2, done.stderr
    error = done.stderr.strip().splitlines()[-1]
    assert error.startswith("Error: ")
    assert message in error
    assert "satchel demo on" not in done.stdout
    assert not port_open(port)


def test_demo_with_dbsc_binds_sessions_over_https(tmp_path: Path) -> None:
    """SATCHEL_DBSC=true and SATCHEL_DBSC_COOKIE_LIFETIME reach the demo: a login over
    HTTPS offers to bind; once bound, /api/me and "Your sessions" say so."""
    from .dbsc_device import Device, registration_offer

    port = free_port()
    env = {"SATCHEL_DBSC": "true", "SATCHEL_DBSC_COOKIE_LIFETIME": "7"}
    with run_demo("--tls", "--port", str(port), cwd=tmp_path, env_extra=env) as demo:
        spki = demo.wait_for_line(SPKI_FLAG)[1]
        wait_for(lambda: port_open(port), "the demo's port")
        pem = ssl.get_server_certificate((LOOPBACK, port), timeout=5)
        assert independent_spki(pem.encode()) == spki
        cafile = tmp_path / "trusted.pem"
        cafile.write_text(pem)
        context = ssl.create_default_context(cafile=str(cafile))
        with httpx.Client(base_url=f"https://{LOOPBACK}:{port}", verify=context) as client:
            page = client.get("/login")
            token = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert token is not None
            login = client.post(
                "/login",
                data={"username": "alice", "password": "wonderland", "csrf_token": token[1]},
            )
            path, challenge = registration_offer(login.headers["secure-session-registration"])
            assert client.get("/api/me").json()["device_bound"] is False
            proof = Device().proof(challenge, with_jwk=True)
            bound = client.post(path, headers={"secure-session-response": proof})
            assert bound.status_code == 200
            assert "Max-Age=7" in bound.headers["set-cookie"]
            assert client.get("/api/me").json()["device_bound"] is True
            assert "device-bound" in client.get("/sessions").text
