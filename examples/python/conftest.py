"""pytest fixtures for testing an AT driver against `wsat modem` over TCP.

`wsat_bin` finds the binary (WSAT_BIN, else the newer of target/release/wsat and
target/debug/wsat), `echo_uri` runs `wsat echo-server` for the whole session, and
`start_modem` / `modem` run `wsat modem --tcp 127.0.0.1:0 --control 127.0.0.1:0` for one test,
with the ports read from what it prints on stderr:

    wsat modem: AT port on tcp://127.0.0.1:41234
    wsat modem: control port on tcp://127.0.0.1:41235
"""

import os
import re
import socket
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

# How long a process may take to start listening, and to stop.
START_TIMEOUT = 20.0
STOP_TIMEOUT = 5.0


@pytest.fixture(scope="session")
def wsat_bin():
    if os.environ.get("WSAT_BIN"):
        path = Path(os.environ["WSAT_BIN"])
        if not os.access(path, os.X_OK):
            pytest.fail(f"WSAT_BIN={path} is not an executable", pytrace=False)
        return path
    built = [ROOT / "target" / profile / "wsat" for profile in ("release", "debug")]
    built = [p for p in built if os.access(p, os.X_OK)]
    if not built:
        pytest.fail("no wsat binary: run `cargo build --release` or set WSAT_BIN", pytrace=False)
    return max(built, key=lambda p: p.stat().st_mtime)


def _spawn(args, log_path, patterns):
    """Starts `args` with stderr going to `log_path`; waits until every regex of `patterns`
    has matched a line there. Returns the process and the first group of each match."""
    log = open(log_path, "wb")
    proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log)
    log.close()
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        text = Path(log_path).read_text(errors="replace")
        found = [re.search(p, text, re.MULTILINE) for p in patterns]
        if all(found):
            return proc, [m.group(1) for m in found]
        if proc.poll() is not None or time.monotonic() > deadline:
            _stop(proc)
            raise RuntimeError(f"{' '.join(map(str, args))} did not start:\n{text}")
        time.sleep(0.02)


def _stop(proc):
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _host_port(addr):
    host, port = addr.rsplit(":", 1)
    return host, int(port)


@pytest.fixture(scope="session")
def echo_uri(wsat_bin, tmp_path_factory):
    """ws:// URI of a `wsat echo-server` on a free loopback port."""
    log = tmp_path_factory.mktemp("echo") / "stderr.log"
    proc, (addr,) = _spawn(
        [wsat_bin, "echo-server", "--listen", "127.0.0.1:0"],
        log,
        [r"^echo server listening on ws://(\S+)$"],
    )
    yield f"ws://{addr}"
    _stop(proc)


class Modem:
    """A running `wsat modem`: where its AT port is, and its control port."""

    def __init__(self, proc, at_addr, control_addr):
        self.proc = proc
        self.at_addr = _host_port(at_addr)
        self._control = socket.create_connection(_host_port(control_addr), timeout=10)
        self._replies = self._control.makefile("rb")

    def connect(self):
        """A new AT client (it takes the port over from the previous one)."""
        sock = socket.create_connection(self.at_addr, timeout=10)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def control(self, command):
        """One control command; its answer line (`ok`, `error: ...`, or the status JSON)."""
        self._control.sendall(command.encode() + b"\n")
        line = self._replies.readline()
        if not line:
            raise ConnectionError("the control port closed")
        return line.decode().rstrip("\n")

    def close(self):
        self._replies.close()
        self._control.close()
        _stop(self.proc)


@pytest.fixture
def start_modem(wsat_bin, tmp_path):
    """Starts `wsat modem` with extra options; stopped after the test."""
    started = []

    def start(*extra):
        log = tmp_path / f"modem-{len(started)}.log"
        args = [wsat_bin, "modem", "--tcp", "127.0.0.1:0", "--control", "127.0.0.1:0", *map(str, extra)]
        proc, (at_addr, control_addr) = _spawn(
            args,
            log,
            [r"^wsat modem: AT port on tcp://(\S+)$", r"^wsat modem: control port on tcp://(\S+)$"],
        )
        modem = Modem(proc, at_addr, control_addr)
        started.append(modem)
        return modem

    yield start
    for modem in started:
        modem.close()


@pytest.fixture
def modem(start_modem):
    """A modem that reconnects 300 ms after a lost link (the chip: 10-15 s) and answers a
    failed AT+WSOPEN's ERROR after 300 ms (the chip: about 5 s)."""
    return start_modem("--reconnect-delay-ms", 300, "--open-error-delay-ms", 300)
