"""Writes the seed corpus of every target (``fuzz/corpus/<target>/``): real inputs made
with satchel's own encoders and, for the DBSC proofs, ``tests/dbsc_device.py``'s Device.
Run from the repository root: ``python fuzz/make_corpus.py`` (it replaces the seeds)."""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "fuzz")]

import targets as t  # noqa: E402
from tests.dbsc_device import Device  # noqa: E402

from satchel import ids  # noqa: E402
from satchel.csrf import mask  # noqa: E402
from satchel.dbsc.bound_cookie import new_bound_cookie  # noqa: E402
from satchel.dbsc.challenge import REGISTER, new_challenge  # noqa: E402
from satchel.dbsc.state import DeviceState  # noqa: E402
from satchel.keyring import PURPOSE_COOKIE, Keyring  # noqa: E402
from satchel.record import Meta  # noqa: E402

CORPUS = ROOT / "fuzz" / "corpus"


def seeds() -> dict[str, list[bytes]]:
    sid = ids.new_session_id()
    token = t.ENGINE.token_for(sid)
    old = f"{sid}.{Keyring([t.OLD_KEY]).sign(PURPOSE_COOKIE, sid)}"
    meta = Meta("h" * 12, t.NOW, t.NOW, t.NOW + 3600, 1800.0, "alice", "ua", "127.0.0.1")
    bound = meta._replace(device=DeviceState({"kty": "EC"}, "id", 1, 2).encode())
    data = {"cart": '[1,2,{"$t":"set","v":[3]}]', "n": "1"}
    cookies = [b.encode(data, m) for b in t.COOKIE_BACKENDS for m in (meta, bound)]
    csrf = mask(t.CSRF_SECRETS[0])
    boundary = "XyZ0123"
    multipart = (
        f'--{boundary}\r\nContent-Disposition: form-data; name="a"\r\n\r\n1\r\n'
        f'--{boundary}\r\nContent-Disposition: form-data; name="csrf_token"\r\n\r\n{csrf}\r\n'
        f"--{boundary}--\r\n"
    )
    forms = [
        f"application/x-www-form-urlencoded\na=1&csrf_token={csrf}&b=%20x".encode(),
        f"multipart/form-data; boundary={boundary}\n{multipart}".encode(),
        b"application/x-www-form-urlencoded\ncsrf+token=x&csrf%5Ftoken=y",
        b"text/plain\ncsrf_token=x",
    ]
    device, rsa = Device(), Device("RS256")
    register = new_challenge(t.KEYRING, t.HANDLE, t.NOW, REGISTER)
    refresh = new_challenge(t.KEYRING, t.HANDLE, t.NOW)
    payloads = [
        json.dumps({"d": data, "m": list(meta)}).encode(),
        json.dumps({"d": {}, "m": list(bound)}).encode(),
        b'{"d":{"a":"1"},"m":["h",1,1,2,3,null,null,null,false,1]}',
    ]
    import zlib

    return {
        "session_token": [
            f"{t.COOKIE_NAME}={token}".encode(),
            f'other=1; {t.COOKIE_NAME}="{old}"; {t.COOKIE_NAME}={sid}'.encode(),
            f"{t.COOKIE_NAME}={sid}".encode(),
        ],
        "bearer_header": [f"Bearer {token}".encode(), f"bearer  {old} ".encode(), b"Basic x"],
        "cookie_store": [f"{t.COOKIE_NAME}={c}".encode() for c in cookies]
        + [f"{t.COOKIE_NAME}={cookies[0]}; {t.COOKIE_NAME}-logout=1800000000000.abc".encode()],
        "cookie_payload": payloads + [zlib.compress(p) for p in payloads],
        "csrf_token": [csrf.encode(), mask(b"\x00" * 32).encode(), b" " + csrf.encode()],
        "form_body": forms,
        "form_body_async": forms,
        "dbsc_registration": [
            device.proof(register, with_jwk=True).encode(),
            rsa.proof(register, with_jwk=True, authorization="code").encode(),
        ],
        "dbsc_refresh": [
            json.dumps(device.jwk).encode() + b"\n" + device.proof(refresh).encode(),
            json.dumps(rsa.jwk).encode() + b"\n" + rsa.proof(refresh).encode(),
        ],
        "dbsc_challenge": [register.encode(), refresh.encode()],
        "dbsc_bound_cookie": [new_bound_cookie(t.KEYRING, t.HANDLE, t.NOW, 600).encode()],
        "dbsc_state": [
            DeviceState(device.jwk, "thumb", 1, 2, True).encode().encode(),
            DeviceState(required=True).encode().encode(),
            b"{}",
        ],
    }


def main() -> None:
    made = seeds()
    assert made.keys() == t.TARGETS.keys()
    for name, inputs in made.items():
        folder = CORPUS / name
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        for data in inputs:
            t.TARGETS[name](data)  # every seed passes its target
            (folder / hashlib.sha1(data).hexdigest()).write_bytes(data)  # noqa: S324 - a name
        print(f"{name}: {len(inputs)} seeds")


if __name__ == "__main__":
    main()
