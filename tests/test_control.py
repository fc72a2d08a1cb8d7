"""The control scripts' QMP client against a scripted QMP server (a Python Unix socket peer):
replies are read as they come (no fixed waits), error replies fail with the reply, and
microvm-shutdown returns when the hypervisor closes its end (the real QEMU: test_e2e_qemu)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from microvm import runner
from microvm.document import from_document


class FakeQmp:
    """Accepts connections on `path`, greets, answers each command with `reply(cmd)`, logs
    every command, and closes a connection when `close_after` says so."""

    def __init__(self, path: Path, reply: object, close_after: str | None = None,
                 linger: float = 0.0) -> None:
        self.commands: list[dict[str, object]] = []
        self.reply = reply
        self.close_after = close_after
        self.linger = linger
        self.server = socket.socket(socket.AF_UNIX)
        self.server.bind(str(path))
        self.server.listen()
        self.closed = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.closed.is_set():
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._talk, args=(conn,), daemon=True).start()

    def _talk(self, conn: socket.socket) -> None:
        # a client that only checks the socket is alive connects and closes at once
        with contextlib.suppress(OSError):
            self._answer(conn)

    def _answer(self, conn: socket.socket) -> None:
        with conn, conn.makefile("r") as r, conn.makefile("w") as f:
            f.write('{"QMP": {"version": {}, "capabilities": []}}\n')
            f.flush()
            for line in r:
                cmd = json.loads(line)
                self.commands.append(cmd)
                if cmd["execute"] == "qmp_capabilities":
                    f.write('{"return": {}}\n')
                else:
                    f.write('{"timestamp": {"seconds": 1}, "event": "POWERDOWN"}\n')
                    f.write(json.dumps(self.reply) + "\n")
                f.flush()
                if cmd["execute"] == self.close_after:
                    # the hypervisor exits a little later: connection and listener go away
                    self.closed.wait(self.linger)
                    self.server.close()
                    return
            # the client went away first: keep serving others

    def stop(self) -> None:
        self.closed.set()
        self.server.close()


@pytest.fixture
def vm_dir(tmp_path: Path) -> Path:
    doc = {"hostName": "c", "microvm": {"kernel": "/k", "storeOnDisk": False, "balloon": True,
                                        "socket": "control.sock", "mem": 512}}
    runner.write(from_document(doc), tmp_path / "r")
    return tmp_path


def run(vm_dir: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    # the timeout is a liveness bound, not a measurement: the old client waited ~5 s here
    return subprocess.run([str(vm_dir / "r" / "bin" / argv[0]), *argv[1:]], cwd=vm_dir,
                          text=True, capture_output=True, timeout=4)


def test_balloon_returns_on_the_reply_while_the_connection_stays_open(vm_dir: Path) -> None:
    server = FakeQmp(vm_dir / "control.sock", {"return": {}})
    try:
        p = run(vm_dir, "microvm-balloon", "100")
    finally:
        server.stop()
    assert p.returncode == 0, p.stderr
    assert [c["execute"] for c in server.commands] == ["qmp_capabilities", "balloon"]
    assert server.commands[1]["arguments"] == {"value": 412 << 20}


def test_an_error_reply_fails_and_is_shown(vm_dir: Path) -> None:
    server = FakeQmp(vm_dir / "control.sock",
                     {"error": {"class": "GenericError", "desc": "no balloon device"}})
    try:
        p = run(vm_dir, "microvm-balloon", "100")
    finally:
        server.stop()
    assert p.returncode == 1
    assert "control.sock: error:" in p.stderr and "no balloon device" in p.stderr


def test_shutdown_returns_when_the_hypervisor_closes_the_socket(vm_dir: Path) -> None:
    server = FakeQmp(vm_dir / "control.sock", {"return": {}}, close_after="system_powerdown",
                     linger=0.5)
    try:
        p = run(vm_dir, "microvm-shutdown")
    finally:
        server.stop()
    assert p.returncode == 0, p.stderr
    assert [c["execute"] for c in server.commands][-1] == "system_powerdown"


def test_shutdown_gives_up_after_its_timeout(vm_dir: Path) -> None:
    server = FakeQmp(vm_dir / "control.sock", {"return": {}})  # never closes
    try:
        p = subprocess.run([str(vm_dir / "r/bin/microvm-shutdown")], cwd=vm_dir, text=True,
                           capture_output=True, timeout=10,
                           env={"PATH": "/usr/bin:/bin", "MICROVM_SHUTDOWN_TIMEOUT": "1"})
    finally:
        server.stop()
    assert p.returncode == 1
    assert "still running after 1 s" in p.stderr or "did not power off" in p.stderr
