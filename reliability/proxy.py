"""``tests.services.TcpProxy`` in a process of its own: its forwarding threads must not
compete for the GIL with the load generator (which would add their time to the latencies
measured). ``python -m reliability.proxy TARGET_PORT`` prints its port, then obeys one
command per line on stdin (``cut``, ``restore``, ``freeze``, ``thaw``), answering ``ok``;
it exits at end of input."""

from __future__ import annotations

import subprocess
import sys

from .servers import ROOT


class ProxyProcess:
    """The proxy's controls, as :class:`tests.services.TcpProxy` names them."""

    def __init__(self, target_port: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-m", "reliability.proxy", str(target_port)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())

    def _say(self, command: str) -> None:
        assert self.process.stdin is not None
        assert self.process.stdout is not None
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        if self.process.stdout.readline().strip() != "ok":
            raise RuntimeError(f"proxy: {command} failed")

    def cut(self) -> None:
        self._say("cut")

    def restore(self) -> None:
        self._say("restore")

    def freeze(self) -> None:
        self._say("freeze")

    def thaw(self) -> None:
        self._say("thaw")

    def close(self) -> None:
        if self.process.poll() is None:
            assert self.process.stdin is not None
            self.process.stdin.close()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def main() -> None:
    from tests.services import TcpProxy

    proxy = TcpProxy(int(sys.argv[1]))
    print(proxy.port, flush=True)
    actions = {"cut": proxy.cut, "restore": proxy.restore, "freeze": proxy.freeze}
    actions["thaw"] = proxy.thaw
    for line in sys.stdin:
        actions[line.strip()]()
        print("ok", flush=True)
    proxy.close()


if __name__ == "__main__":
    main()
