"""A driver's tests against `wsat modem` over TCP, with faults from its control port.

    cargo build --release                       # or set WSAT_BIN=path/to/wsat
    .venv/bin/python -m pytest examples/python -q

`AtDriver` stands in for your driver: it speaks ESP-AT over a socket as an MCU does over its
UART (sends a command, reads up to OK / ERROR / busy p..., keeps the URCs that come in
between, retries what the chip may refuse). The tests open a link to an echo server and then
break things through the modem's control port (`wifi off`, `drop 0`, `fail AT+WSOPEN 1`,
`busy 1000`, a `--faults` schedule, a second client taking the port over) and check that the
driver sees exactly what the chip would print. Fixtures: conftest.py.
"""

import json
import time
from collections import deque

# The longest the driver waits for anything from the modem.
ANSWER_TIMEOUT = 10.0


class AtError(Exception):
    """A command that did not answer OK."""


class AtDriver:
    """A minimal ESP-AT WebSocket driver over a byte stream (here a TCP socket).

    URCs are tuples: ("ready",), ("+WS_CONNECTED", link), ("+WS_DISCONNECTED", link),
    ("+WS_CLOSED", link), ("+WS_DATA", link, data), ("WIFI DISCONNECT",), ...
    """

    def __init__(self, sock):
        self.sock = sock
        self.buf = bytearray()
        self.urcs = deque()

    # -- commands ------------------------------------------------------------------------

    def command(self, command):
        """Sends one command line; returns ("OK", info_lines), ("ERROR", []) or ("busy", [])."""
        self.sock.sendall(command.encode() + b"\r\n")
        return self._result(command)

    def ok(self, command):
        result, lines = self.command(command)
        if result != "OK":
            raise AtError(f"{command}: {result}")
        return lines

    def retry(self, command, attempts=10, pause=0.1):
        """Sends `command` again, after a pause, while it answers ERROR or busy p...
        Returns (info_lines, how many attempts it took)."""
        for attempt in range(1, attempts + 1):
            result, lines = self.command(command)
            if result == "OK":
                return lines, attempt
            time.sleep(pause)
        raise AtError(f"{command}: no OK after {attempts} attempts")

    def open(self, link, uri):
        """Opens `link` (retrying a refusal); returns how many attempts it took."""
        _, attempts = self.retry(f'AT+WSOPEN={link},"{uri}"')
        self.wait_for(("+WS_CONNECTED", link))
        return attempts

    def send(self, link, data):
        """One text message: AT+WSSEND, the > prompt, the bytes, SEND OK."""
        command = f"AT+WSSEND={link},{len(data)}"
        self.ok(command)
        if self._item() != ("prompt",):
            raise AtError(f"{command}: no > prompt")
        self.sock.sendall(data)
        result, _ = self._result(command)
        if result != "OK":
            raise AtError(f"{command}: {result} after the payload")

    def receive(self, link, length):
        """+WS_DATA of `link` until `length` bytes have come (the chip may cut a message)."""
        got = b""
        while len(got) < length:
            urc = self.next_urc()
            if urc[0] == "+WS_DATA" and urc[1] == link:
                got += urc[2]
            elif not urc[0].startswith("WIFI"):
                raise AtError(f"expected +WS_DATA:{link}, got {urc}")
        return got

    def wait_for(self, want):
        """Waits for the URC `want`, skipping others; returns those skipped."""
        skipped = []
        while (urc := self.next_urc()) != want:
            skipped.append(urc)
        return skipped

    def next_urc(self):
        while not self.urcs:
            item = self._item()
            if item[0] == "data":
                self.urcs.append(("+WS_DATA", item[1], item[2]))
            elif item[0] == "line" and (urc := parse_urc(item[1])):
                self.urcs.append(urc)
            else:
                raise AtError(f"unexpected {item}")
        return self.urcs.popleft()

    # -- the byte stream -----------------------------------------------------------------

    def _result(self, command):
        lines = []
        while True:
            item = self._item()
            if item[0] == "data":
                self.urcs.append(("+WS_DATA", item[1], item[2]))
            elif item[0] == "prompt":
                raise AtError(f"{command}: unexpected > prompt")
            elif item[1] == command:
                pass  # the echo (ATE1)
            elif item[1] in ("OK", "SEND OK"):
                return "OK", lines
            elif item[1] == "ERROR":
                return "ERROR", []
            elif item[1] == "busy p...":
                return "busy", []
            elif urc := parse_urc(item[1]):
                self.urcs.append(urc)
            else:
                lines.append(item[1])

    def _item(self):
        """The next ("line", text), ("prompt",) or ("data", link, bytes) from the modem."""
        deadline = time.monotonic() + ANSWER_TIMEOUT
        while (item := self._parse()) is None:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError(f"no answer from the modem; have {bytes(self.buf)!r}")
            self.sock.settimeout(left)
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the modem closed the AT port")
            self.buf += chunk
        return item

    def _parse(self):
        buf = self.buf
        while buf.startswith(b"\r\n"):
            del buf[:2]
        if buf.startswith(b">"):
            del buf[:1]
            return ("prompt",)
        if buf.startswith(b"+WS_DATA:"):
            # +WS_DATA:<link>,<len>,<data>\r\n: the data is binary, <len> bytes long.
            head = buf.split(b",", 2)
            if len(head) < 3:
                return None
            link, length = int(head[0][len(b"+WS_DATA:") :]), int(head[1])
            start = len(head[0]) + len(head[1]) + 2
            if len(buf) < start + length + 2:
                return None
            data = bytes(buf[start : start + length])
            del buf[: start + length + 2]
            return ("data", link, data)
        end = buf.find(b"\r\n")
        if end < 0:
            return None
        line = buf[:end].decode(errors="replace")
        del buf[: end + 2]
        return ("line", line)


def parse_urc(line):
    """The URC a line is, or None (an information line of the running command)."""
    name, _, link = line.partition(":")
    if name in ("+WS_CONNECTED", "+WS_DISCONNECTED", "+WS_CLOSED") and link.isdigit():
        return (name, int(link))
    if line in ("ready", "+TIME_UPDATED") or line.startswith("WIFI "):
        return (line,)
    return None


def driver_for(modem):
    """A driver on a new AT connection, past the banner and with echo off."""
    at = AtDriver(modem.connect())
    at.wait_for(("ready",))
    at.ok("ATE0")
    return at


# -- the tests ---------------------------------------------------------------------------


def test_opens_a_link_and_echoes(modem, echo_uri):
    at = driver_for(modem)
    at.ok("AT+CWMODE=1")
    at.ok('AT+CWJAP="espressif","1234567890"')
    assert at.open(0, echo_uri) == 1
    at.send(0, b"hello")
    assert at.receive(0, 5) == b"hello"
    assert at.ok("AT+WSOPEN?") == [f'+WSOPEN:0,2,"{echo_uri}"']
    at.ok("AT+WSCLOSE=0")
    assert at.ok("AT+WSOPEN?") == []


def test_wifi_off_disconnects_and_wifi_on_reconnects(modem, echo_uri):
    at = driver_for(modem)
    at.open(0, echo_uri)

    assert modem.control("wifi off") == "ok"
    assert at.next_urc() == ("WIFI DISCONNECT",)
    assert at.next_urc() == ("+WS_DISCONNECTED", 0)
    assert json.loads(modem.control("status"))["wifi"] == "off"

    assert modem.control("wifi on") == "ok"
    # Reconnect attempts that failed while Wi-Fi was down each printed +WS_DISCONNECTED:0.
    skipped = at.wait_for(("+WS_CONNECTED", 0))
    assert [u for u in skipped if u != ("+WS_DISCONNECTED", 0)] == [("WIFI CONNECTED",), ("WIFI GOT IP",)]
    at.send(0, b"back")
    assert at.receive(0, 4) == b"back"


def test_a_refused_open_is_retried(modem, echo_uri):
    at = driver_for(modem)
    assert modem.control("fail AT+WSOPEN 1") == "ok"
    assert json.loads(modem.control("status"))["faults"]["fail"] == {"AT+WSOPEN": 1}
    assert at.open(0, echo_uri) == 2
    at.send(0, b"second try")
    assert at.receive(0, 10) == b"second try"


def test_a_lost_connection_comes_back_by_itself(modem, echo_uri):
    at = driver_for(modem)
    at.open(0, echo_uri)
    assert modem.control("drop 0") == "ok"
    assert at.next_urc() == ("+WS_DISCONNECTED", 0)
    assert at.next_urc() == ("+WS_CONNECTED", 0)
    at.send(0, b"again")
    assert at.receive(0, 5) == b"again"
    assert modem.control("drop 1").startswith("error: link 1 is not connected")


def test_a_busy_chip_is_waited_out(modem):
    at = driver_for(modem)
    assert modem.control("busy 1000") == "ok"
    assert at.command("AT") == ("busy", [])
    _, attempts = at.retry("AT", attempts=100, pause=0.05)
    assert attempts > 1


def test_a_new_client_takes_the_port_over(modem, echo_uri):
    first = driver_for(modem)
    first.open(0, echo_uri)
    # A new connection gets the banner and the port as after boot (echo on again); the
    # link survives; the old connection is closed.
    second = AtDriver(modem.connect())
    second.wait_for(("ready",))
    assert second.ok("AT+WSOPEN?") == [f'+WSOPEN:0,2,"{echo_uri}"']
    first.sock.settimeout(ANSWER_TIMEOUT)
    try:
        assert first.sock.recv(1) == b""
    except ConnectionResetError:
        pass


def test_a_fault_schedule(start_modem, echo_uri, tmp_path):
    faults = tmp_path / "faults.txt"
    faults.write_text("# the access point reboots\n@2500 wifi off\n@3000 wifi on\n")
    modem = start_modem("--reconnect-delay-ms", 200, "--faults", faults)
    at = driver_for(modem)
    at.open(0, echo_uri)
    assert at.next_urc() == ("WIFI DISCONNECT",)
    assert at.next_urc() == ("+WS_DISCONNECTED", 0)
    skipped = at.wait_for(("+WS_CONNECTED", 0))
    assert [u for u in skipped if u != ("+WS_DISCONNECTED", 0)] == [("WIFI CONNECTED",), ("WIFI GOT IP",)]


def test_the_control_port_says_what_is_wrong(modem):
    assert modem.control("drop 7").startswith("error: no link 7")
    assert modem.control("fail AT+NOSUCH 1") == "error: no such AT command: AT+NOSUCH"
    assert modem.control("explode").startswith("error: unknown or malformed command: explode")
    status = json.loads(modem.control("status"))
    assert status["host_attached"] is False
    assert [link["state"] for link in status["links"]] == [0, 0, 0]
