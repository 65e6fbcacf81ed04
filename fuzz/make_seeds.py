#!/usr/bin/env python3
"""Writes the hand-made seed inputs under fuzz/corpus/<target>/ (named seed-*).

The input formats are documented on the target functions: wsat_proto::fuzzing::{frame_decoder,
handshake} and wsat_at::fuzzing::{engine, params}. Other files in the corpus directories were
found by fuzzing (scripts/fuzz.sh) and minimized; this script leaves them alone.

Run from anywhere: python3 fuzz/make_seeds.py
"""

import os
import struct

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")


def write(target, name, data):
    d = os.path.join(ROOT, target)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, "seed-" + name), "wb") as f:
        f.write(data)


# ---------------------------------------------------------------- frame_decoder

def frame(op, payload=b"", fin=True, mask=None, rsv=0, length_form=None):
    """One frame; length_form forces the 7-bit, 16-bit or 64-bit length encoding."""
    out = bytes([(0x80 if fin else 0) | (rsv << 4) | op])
    n = len(payload)
    form = length_form or (7 if n < 126 else 16 if n < 65536 else 64)
    m = 0x80 if mask else 0
    if form == 7:
        out += bytes([m | n])
    elif form == 16:
        out += bytes([m | 126]) + struct.pack(">H", n)
    else:
        out += bytes([m | 127]) + struct.pack(">Q", n)
    if mask:
        out += mask
        payload = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return out + payload


STRICT, EAGER, SERVER, TIMERS, LIMIT, RESET = 1, 2, 4, 8, 16, 32


def fd(name, flags, max_chunk, schedule, wire):
    write("frame_decoder", name, bytes([flags, max_chunk - 1, len(schedule)]) + bytes(schedule) + wire)


MASK = bytes([0x37, 0xFA, 0x21, 0x3D])
FEED, READ_PROCESS, PROCESS_MESSAGE = 0x00, 0x40, 0x80


def timer(quarter_seconds):
    return 0xC0 | quarter_seconds


# RFC 6455 §5.7 examples.
fd("rfc-unmasked-hello", STRICT, 256, [63], frame(1, b"Hello"))
fd("rfc-masked-hello-server", STRICT | SERVER, 256, [63], frame(1, b"Hello", mask=MASK))
fd("rfc-fragmented-hello", STRICT, 256, [3, 4], frame(1, b"Hel", fin=False) + frame(0, b"lo"))
fd("rfc-ping-pong", STRICT, 256, [1], frame(9, b"Hello") + frame(10, b"Hello"))
fd("rfc-masked-ping-server", STRICT | SERVER, 4, [2], frame(9, b"Hello", mask=MASK))
fd("rfc-256-binary-16bit", STRICT, 100, [63, 7], frame(2, bytes(range(256))))
fd("binary-64bit-length-form", STRICT | EAGER, 64, [10, 1], frame(2, b"x" * 300, length_form=64))
fd("text-16bit-length-form-short", 0, 8, [5], frame(1, b"short", length_form=16))
fd("huge-announced-length", STRICT, 256, [63], b"\x82\x7f\x00\x00\x01\x00\x00\x00\x00\x00" + b"a" * 500)
fd("length-with-top-bit", 0, 256, [63], b"\x82\x7f\x80\x00\x00\x00\x00\x00\x00\x01abc")
# FIRMWARE.md §13.6: a 2500-byte text frame delivered in buffer-size chunks (256 here).
fd("esp-2500-byte-text", 0, 256, [63, READ_PROCESS | 40], frame(1, b"a" * 2500))
fd("eager-one-byte-pieces", STRICT | EAGER, 16, [1], frame(1, "κόσμε".encode() * 3) + frame(2, b"\x00" * 20))
fd("utf8-split-over-fragments", STRICT, 2, [1, 2, 3],
   frame(1, "aκ".encode()[:2], fin=False) + frame(0, "aκ".encode()[2:] + "€".encode()))
fd("utf8-invalid-mid-frame", STRICT | EAGER, 4, [3], frame(1, b"ok" + b"\xff" + b"more text"))
fd("utf8-invalid-at-end", STRICT, 256, [63], frame(1, b"abc\xce"))
fd("ping-inside-fragmented", STRICT, 256, [PROCESS_MESSAGE | 5],
   frame(1, b"one ", fin=False) + frame(9, b"p") + frame(0, b"two", fin=False) + frame(0, b"", fin=True))
fd("session-text-binary-ping-close", STRICT, 256, [PROCESS_MESSAGE | 63],
   frame(1, b"hi") + frame(2, b"\x01\x02") + frame(9) + frame(8, struct.pack(">H", 1000) + b"bye") + frame(1, b"late"))
fd("close-1000-bye", STRICT, 256, [63], frame(8, struct.pack(">H", 1000) + b"bye"))
fd("close-empty", STRICT, 256, [63], frame(8))
fd("close-one-byte", STRICT, 256, [63], frame(8, b"\x03") + frame(8))
fd("close-code-1005", STRICT, 256, [63], frame(8, struct.pack(">H", 1005)))
fd("close-reason-not-utf8", 0, 256, [63], frame(8, struct.pack(">H", 1001) + b"\xff"))
fd("close-then-timeout", STRICT, 256, [63, timer(63)], frame(1, b"\xff") + frame(8))
fd("reserved-bits-and-opcodes-lenient", 0, 256, [63], frame(3, b"r", rsv=4) + frame(11, b"c") + frame(1, b"ok"))
fd("reserved-bits-strict", STRICT, 256, [63], frame(1, b"x", rsv=2) + frame(8))
fd("masked-to-client-strict", STRICT, 256, [63], frame(1, b"masked", mask=MASK))
fd("masked-to-client-lenient", 0, 3, [2], frame(1, b"masked", mask=MASK) + frame(0, b"orphan"))
fd("unmasked-to-server", STRICT | SERVER, 256, [63], frame(1, b"plain"))
fd("fragmented-control-strict", STRICT, 256, [63], frame(9, b"x", fin=False))
fd("control-too-long", 0, 256, [63], frame(9, b"p" * 126))
fd("frame-limit-1009", STRICT | LIMIT, 64, [63], frame(2, b"z" * 301) + frame(8))
fd("new-message-inside-fragmented", STRICT, 256, [63], frame(1, b"a", fin=False) + frame(1, b"b"))
fd("continuation-without-start", STRICT, 256, [63], frame(0, b"c"))
fd("empty-frames", STRICT, 1, [1], frame(1) + frame(2) + frame(9) + frame(10) + frame(1, fin=False) + frame(0))
fd("keepalive-pong-in-time", STRICT | TIMERS, 256, [timer(4), 2, timer(4), timer(4), 2], frame(10) + frame(10))
fd("keepalive-pong-timeout", TIMERS | RESET, 256, [timer(4), timer(4), timer(4), 63], frame(1, b"late"))
fd("mixed-feed-methods", STRICT | EAGER, 5, [FEED | 3, READ_PROCESS | 2, PROCESS_MESSAGE | 7, FEED, timer(1)],
   frame(1, b"abc") + frame(2, b"defgh" * 4) + frame(9, b"!") + frame(1, b"end", fin=False) + frame(0, b"."))

# ---------------------------------------------------------------- handshake_response

REQUEST, STRICT_HS = 1, 2
ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="  # RFC 6455 §1.3 for dGhlIHNhbXBsZSBub25jZQ==


def hs(name, flags, seed, text):
    data = text.encode() if isinstance(text, str) else text
    write("handshake_response", name, bytes([flags, seed]) + data)


RFC_101 = ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           f"Sec-WebSocket-Accept: {ACCEPT}\r\nSec-WebSocket-Protocol: chat\r\n\r\n")
hs("rfc-101-strict", STRICT_HS, 1, RFC_101)
hs("rfc-101-lenient", 0, 200, RFC_101)
hs("101-piggybacked-frame", STRICT_HS, 7, RFC_101.encode() + frame(1, b"Test") + frame(9))
hs("101-python-websockets", STRICT_HS, 3,
   "HTTP/1.1 101 Switching Protocols\r\nDate: Sun, 22 Nov 2026 04:00:00 GMT\r\nUpgrade: websocket\r\n"
   f"Connection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\nServer: Python/3.12 websockets/14.1\r\n\r\n")
hs("101-lowercase-keep-alive", STRICT_HS, 9,
   f"HTTP/1.1 101 Web Socket Protocol Handshake\r\nconnection: keep-alive, upgrade\r\nupgrade: WebSocket\r\n"
   f"sec-websocket-accept: {ACCEPT}\r\nsec-websocket-protocol: superchat\r\n\r\n")
hs("101-lf-only", 0, 4, f"HTTP/1.1 101 Switching Protocols\nUpgrade: websocket\nConnection: Upgrade\n"
   f"Sec-WebSocket-Accept: {ACCEPT}\n\n")
hs("101-wrong-accept", 0, 5, "HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
   "Sec-WebSocket-Accept: HSmrc0sMlYUkAGmm5OPpG2HaGWk=\r\n\r\n")
hs("101-two-accepts", STRICT_HS, 6, RFC_101.replace("\r\n\r\n", f"\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n"))
hs("101-no-upgrade", STRICT_HS, 8, f"HTTP/1.1 101 OK\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n")
hs("101-no-connection", STRICT_HS, 8, f"HTTP/1.1 101 OK\r\nUpgrade: websocket\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n")
hs("101-unoffered-protocol", STRICT_HS, 2, RFC_101.replace("chat", "other"))
hs("101-extension", STRICT_HS, 2, RFC_101.replace("\r\n\r\n", "\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"))
hs("200-with-accept", 0, 11, f"HTTP/1.1 200 OK\r\nSec-WebSocket-Accept: {ACCEPT}\r\n\r\n")
hs("404", STRICT_HS, 12, "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
hs("302-location", STRICT_HS, 13, "HTTP/1.1 302 Found\r\nLocation: ws://elsewhere:8080/x\r\n\r\n")
hs("307-without-location", 0, 14, "HTTP/1.1 307 Temporary Redirect\r\nContent-Length: 0\r\n\r\n")
hs("partial-head", STRICT_HS, 15, RFC_101[:60])
hs("garbage", 0, 16, "garbage\r\n\r\n")
hs("too-many-headers", 0, 17, "HTTP/1.1 101 OK\r\n" + "X-A: b\r\n" * 70 + "\r\n")
hs("obs-text-value", STRICT_HS, 18, RFC_101.encode().replace(b"chat\r\n", b"chat\r\nX-Note: caf\xe9\r\n"))

RFC_REQUEST = ("GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
               "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n"
               "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n")
hs("rfc-request", REQUEST, 1, RFC_REQUEST)
# The ESP client's request (FIRMWARE.md §11.2 order), with basic auth and a piggybacked masked frame.
hs("esp-request-with-frame", REQUEST, 2,
   ("GET /chat?x=1 HTTP/1.1\r\nConnection: Upgrade\r\nHost: 127.0.0.1:8765\r\nUser-Agent: ESP32 Websocket Client\r\n"
    "Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: x3JJHMbDL1EzLkh9GBhXDw==\r\n"
    "Sec-WebSocket-Protocol: a,b ,, c\r\nAuthorization: Basic dTpw\r\n\r\n").encode() + frame(1, b"hi", mask=MASK))
hs("request-version-8", REQUEST, 3, RFC_REQUEST.replace("Version: 13", "Version: 8"))
hs("request-post", REQUEST, 4, RFC_REQUEST.replace("GET", "POST"))
hs("request-no-key", REQUEST, 5, RFC_REQUEST.replace("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", ""))
hs("request-two-protocol-headers", REQUEST, 6,
   RFC_REQUEST.replace("\r\n\r\n", "\r\nSec-WebSocket-Protocol: mqtt\r\nsec-websocket-key: second\r\n\r\n"))
hs("request-partial", REQUEST, 7, RFC_REQUEST[:100])

# ---------------------------------------------------------------- at_engine

SEP = b"\xff"
SERVICE = b"\x01"


def at(name, master, *ops):
    ops = [op.encode() if isinstance(op, str) else op for op in ops]
    assert all(SEP not in op for op in ops), name
    write("at_engine", name, bytes([1 if master else 0]) + SEP.join(ops))


def complete(k, ok=True, event=True, unix=None):
    out = bytes([2, k, (1 if ok else 0) | (2 if event else 0)])
    return out + (struct.pack("<q", unix) if unix is not None else b"")


def link(id_, event, gen_back=0, opcode=None, shape=0, data=b""):
    out = bytes([3, id_, gen_back, event])
    if opcode is not None:
        out += bytes([opcode, shape]) + data
    return out


CONNECTED, DISCONNECTED, CLOSED, DATA, CONNECTING = 1, 2, 3, 4, 0

# FIRMWARE.md §13.1: open, send, echo back, query, close.
at("13-1-open-send-query-close", False,
   'AT+WSOPEN=0,"ws://192.168.200.249:8765"\r\n', SERVICE, "AT+WSSEND=0,4\r\n", "test", SERVICE,
   link(0, DATA, opcode=1, shape=1, data=b"test"), "AT+WSOPEN?\r\n", "AT+WSCLOSE=0\r\n", SERVICE)
# FIRMWARE.md §13.2: surplus payload.
at("13-2-surplus", False, 'AT+WSOPEN=0,"ws://h"\r\n', SERVICE, "AT+WSSEND=0,4\r\n", "testXY", SERVICE)
# FIRMWARE.md §13.3: headers.
at("13-3-headers", False, "AT+WSHEAD=49\r\n", "AUTHORIZATION: Basic QTIzMzIyMDE5OTk6MTIzNDU2Nzg=",
   "AT+WSHEAD?\r\n", "AT+WSHEAD=0\r\n", "AT+WSHEAD?\r\n")
# FIRMWARE.md §13.4: failures.
at("13-4-failures", False,
   'AT+WSOPEN=1,"ws://10.0.0.99:9"\r\n', complete(0, ok=False), 'AT+WSOPEN=0,"ws://host"\r\n', SERVICE,
   'AT+WSOPEN=0,"ws://host"\r\n', "AT+WSSEND=2,4\r\n", link(0, DISCONNECTED), "AT+WSSEND=0,4\r\n", "test", SERVICE,
   "AT+WSCFG=0,10,120,1024,2,0,5\r\n")
# FIRMWARE.md §13.5: unsolicited lifecycle.
at("13-5-lifecycle", False, 'AT+WSOPEN=0,"ws://h"\r\n', SERVICE, link(0, DISCONNECTED), link(0, CONNECTING),
   link(0, DISCONNECTED), link(0, CONNECTING), link(0, CONNECTED), "AT+WSOPEN?\r\n", link(0, CLOSED),
   "AT+WSOPEN?\r\n")
# FIRMWARE.md §13.6: large incoming frame in 1024-byte chunks.
at("13-6-large-frame", False, 'AT+WSOPEN=0,"ws://h"\r\n', SERVICE,
   *(link(0, DATA, opcode=1, shape=0b111, data=struct.pack("<QQ", 2500, off) + b"a" * min(1024, 2500 - off))
     for off in (0, 1024, 2048)))
at("master-datafmt-fin", True, "AT+SYSLOG=1\r\n", 'AT+WSOPEN=2,"wss://h:1/p","chat",5000,"Bearer x"\r\n', SERVICE,
   "AT+WSDATAFMT=2,2,63\r\n", "AT+WSSEND=2,0,2,100,0\r\n", SERVICE, "AT+WSSEND=2,3,1,100,1\r\n", "abc", SERVICE,
   link(2, DATA, opcode=2, shape=0b10, data=b"first"), link(2, DATA, opcode=2, shape=0b111,
                                                          data=struct.pack("<QQ", 12, 5) + b"second!"),
   link(2, DATA, opcode=9, shape=1, data=b"ping"))
at("wscfg-pki-and-limits", True, "AT+WSCFG=0,1,1\r\n", "AT+WSCFG=1,5,5,64,3,1,1\r\n", "AT+WSCFG=0,7200,7200,16384,1,0,0\r\n",
   "AT+WSCFG=2,10,120,1024,2,0,1\r\n", "AT+WSCFG=0,0,1\r\n", "AT+WSCFG=3,1,1\r\n", "AT+WSCFG=0,1,1,0x10\r\n")
at("busy-and-force-restart", False, "AT+SYSLOG=1\r\n", 'AT+WSOPEN=0,"ws://h"\r\n', "AT\r\n", "x", "AT+RST\r\n",
   complete(0), 'AT+WSOPEN=0,"ws://h"\r\n', SERVICE, "AT+WSOPEN?\r\n")
at("sntp-and-time", False, "AT+CIPSNTPCFG=1,8\r\n", SERVICE, "AT+CIPSNTPTIME?\r\n", complete(0, unix=1_700_000_000),
   "AT+CIPSNTPCFG=1,-1230\r\n", "AT+CIPSNTPTIME?\r\n", complete(0, unix=-(2 ** 62)), "AT+CIPSNTPCFG?\r\n")
at("system-commands", False, "AT+GMR\r\n", "AT+CMD?\r\n", "ATE0\r\n", "AT+SYSMSG=4\r\n", "AT+SYSMSG?\r\n",
   "AT+CWMODE=3\r\n", "AT+CWMODE?\r\n", 'AT+CWJAP="ssid","password"\r\n', "AT+CWJAP?\r\n", "AT+GMR,junk\r\n",
   "AT+UNKNOWN\r\n", "at+wsopen=?\r\n", "AT+WSOPEN? \r\n")
at("line-assembly", False, b"\x07\x00AT\r\n", "A", "T\r", "\n", "AT\x00AT\r\n", "A" * 300, "\r\n", b"\x06" + bytes(
    b ^ 0x80 for b in b"AT+WSHEAD=3\r\n") + bytes([0x7F, 0xBA, 0x80]))
at("stray-and-stale", False, 'AT+WSOPEN=0,"ws://h"\r\n', complete(0), "AT+WSCLOSE=0\r\n",
   bytes([4, 0, 0, 1]), bytes([4, 2, 0, 1]), bytes([4, 4, 1, 3]) + struct.pack("<q", 0), SERVICE,
   link(0, CONNECTED, gen_back=1), link(0, DATA, gen_back=0x81, opcode=1, data=b"x"), link(7, CLOSED), b"\x05")
at("send-opcodes-v5", False, 'AT+WSOPEN=1,"ws://h"\r\n', SERVICE, "AT+WSSEND=1,3,8\r\n", b"\x03\xe8!", SERVICE,
   "AT+WSSEND=1,0,9,0\r\n", SERVICE, "AT+WSSEND=1,8192\r\n", "z" * 8192, complete(0, ok=False))

# ---------------------------------------------------------------- at_params

PARAM_COMMANDS = ["+WSCFG", "+WSOPEN", "+WSSEND", "+WSHEAD", "+WSCLOSE", "+WSDATAFMT", "+CIPSNTPCFG", "+SYSLOG",
                  "+SYSMSG", "+CWMODE", "+CWJAP", "+X"]


def par(name, command, text, master=False):
    sel = PARAM_COMMANDS.index(command) | (0x80 if master else 0)
    write("at_params", name, bytes([sel]) + (text.encode() if isinstance(text, str) else text))


par("wscfg-full", "+WSCFG", "1,10,120,1024,3,0,1")
par("wscfg-hex-negative", "+WSCFG", "0x1,-5,4294967295,0X400")
par("wscfg-overflow", "+WSCFG", "0,4294967296,1")
par("wsopen-all-params", "+WSOPEN", r'1,"ws://u:p@host:80/path?q=1","chat",15000,"Basic \"x\,y\""')
par("wsopen-escapes", "+WSOPEN", r'2,"wss://h\\\,",,1')
par("wsopen-unterminated-quote", "+WSOPEN", '1,"ws://h')
par("wssend-master-fin", "+WSSEND", "0,5,1,100,0", master=True)
par("wssend-v5", "+WSSEND", "0,4,2,60000")
par("wshead-len", "+WSHEAD", "5")
par("wshead-zero", "+WSHEAD", "0")
par("wsclose", "+WSCLOSE", "0")
par("wsdatafmt", "+WSDATAFMT", "0,2,63", master=True)
par("sntpcfg", "+CIPSNTPCFG", '1,-1230,"pool.ntp.org","time.google.com"')
par("syslog", "+SYSLOG", "1")
par("sysmsg-junk", "+SYSMSG", "1a")
par("cwmode-empty", "+CWMODE", "")
par("cwjap", "+CWJAP", r'"my\"ssid","pa\\ss"')
par("test-form", "+X", "?")
par("query-junk", "+X", "?junk")
par("lone-quote-and-backslash", "+X", '",\\",\\')
par("long-line", "+WSOPEN", '0,"ws://' + "h" * 260 + '"')
par("crlf-inside", "+WSSEND", "0,1\r\nAT+RST\r\n")
par("nul-inside", "+WSCFG", b"0,1\x00AT+WSCFG=0,1,1")
