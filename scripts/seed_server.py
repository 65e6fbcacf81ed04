#!/usr/bin/env python3
"""Run one of the seed document's own WebSocket echo servers, unchanged apart from
host, port and certificate paths.

The seed document (``$WSAT_SHARED/seeds/001_*.txt``, the ESP-AT "WebSocket AT
examples") contains two Python servers:

* ``ws-server.py``  -- plain TCP, ``from websockets.server import serve``, port 8765
* ``wss-server.py`` -- mutual TLS, ``ssl.SSLContext``, port 8766

This script extracts their ``.. code-block:: python`` blocks verbatim, replaces
only the assignments ``host = ...``, ``port = ...`` and (wss) ``server_ca``,
``server_cert``, ``server_key``, then ``exec``s the result in ``__main__``.
It needs ``websockets==12.0`` (see scripts/requirements-peers.txt); on 17.x the
seed's ``wss-server.py`` does not start.

Usage:
    seed_server.py ws  --port N [--host 127.0.0.1] [--shared DIR]
    seed_server.py wss --port N [--host 127.0.0.1] [--shared DIR]
                       [--ca FILE --cert FILE --key FILE]
    seed_server.py {ws,wss} --print-source ...   # show the code that would run

For wss the certificate paths default to the seed's own PKI in
``$WSAT_SHARED/pki/seed-example-server/{server_ca.crt,server.crt,server.key}``.

Exit status 77 (the conventional "skipped") when the shared directory is absent.
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import sys

EXIT_SKIP = 77


def find_shared(cli_value: str | None) -> str | None:
    """The shared reference directory: --shared, else $WSAT_SHARED, else <repo>/../shared."""
    if cli_value:
        return cli_value if os.path.isdir(cli_value) else None
    env = os.environ.get("WSAT_SHARED")
    if env:
        return env if os.path.isdir(env) else None
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    candidate = os.path.join(os.path.dirname(repo), "shared")
    return candidate if os.path.isdir(candidate) else None


def python_blocks(text: str) -> list[str]:
    """All ``.. code-block:: python`` bodies of an RST document, dedented."""
    blocks: list[str] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        m = re.match(r"^(\s*)\.\. code-block:: python\s*$", lines[i])
        if not m:
            i += 1
            continue
        directive_indent = len(m.group(1))
        i += 1
        body: list[str] = []
        while i < len(lines):
            line = lines[i]
            if line.strip() == "":
                body.append("")
                i += 1
                continue
            indent = len(line) - len(line.lstrip())
            if indent <= directive_indent:
                break
            body.append(line)
            i += 1
        while body and body[0] == "":
            body.pop(0)
        while body and body[-1] == "":
            body.pop()
        if body:
            strip = min(len(l) - len(l.lstrip()) for l in body if l.strip())
            blocks.append("\n".join(l[strip:] for l in body) + "\n")
    return blocks


def pick_block(blocks: list[str], kind: str) -> str:
    """The ws (``from websockets.server import serve``) or wss (``import ssl``) server."""
    for block in blocks:
        if kind == "ws" and "from websockets.server import serve" in block and "ssl" not in block:
            return block
        if kind == "wss" and "import ssl" in block and "websockets.serve" in block:
            return block
    raise SystemExit(f"seed_server: no {kind} server code block found in the seed document")


def substitute(code: str, name: str, value: object) -> str:
    """Replace the single top-level ``name = ...`` assignment with ``name = repr(value)``."""
    pattern = re.compile(rf"^{re.escape(name)}\s*=.*$", re.MULTILINE)
    new, count = pattern.subn(lambda _m: f"{name} = {value!r}", code)
    if count != 1:
        raise SystemExit(
            f"seed_server: expected exactly one '{name} = ...' line in the seed code, found {count}"
        )
    return new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("kind", choices=["ws", "wss"])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--shared", help="shared reference dir (default $WSAT_SHARED or ../shared)")
    parser.add_argument("--ca", help="CA that verifies client certificates (wss)")
    parser.add_argument("--cert", help="server certificate chain PEM (wss)")
    parser.add_argument("--key", help="server private key PEM (wss)")
    parser.add_argument("--print-source", action="store_true", help="print the code, do not run it")
    args = parser.parse_args()

    shared = find_shared(args.shared)
    if shared is None:
        print(
            "seed_server: ../shared not found (WSAT_SHARED unset): the seed examples cannot be run",
            file=sys.stderr,
        )
        raise SystemExit(EXIT_SKIP)

    seeds = sorted(glob.glob(os.path.join(shared, "seeds", "001_*.txt")))
    if not seeds:
        print(f"seed_server: {shared}/seeds/001_*.txt not found", file=sys.stderr)
        raise SystemExit(EXIT_SKIP)
    with open(seeds[0], encoding="utf-8") as f:
        code = pick_block(python_blocks(f.read()), args.kind)

    code = substitute(code, "host", args.host)
    code = substitute(code, "port", args.port)
    if args.kind == "wss":
        pki = os.path.join(shared, "pki", "seed-example-server")
        paths = {
            "server_ca": args.ca or os.path.join(pki, "server_ca.crt"),
            "server_cert": args.cert or os.path.join(pki, "server.crt"),
            "server_key": args.key or os.path.join(pki, "server.key"),
        }
        for name, path in paths.items():
            if not os.path.isfile(path):
                raise SystemExit(f"seed_server: {name} file not found: {path}")
            code = substitute(code, name, os.path.abspath(path))
    elif args.ca or args.cert or args.key:
        parser.error("--ca/--cert/--key only apply to wss")

    if args.print_source:
        sys.stdout.write(code)
        return

    # Line-buffer stdout so "Server started at ..." reaches a pipe at once.
    sys.stdout.reconfigure(line_buffering=True)
    exec(compile(code, f"{os.path.basename(seeds[0])}:{args.kind}-server.py", "exec"),
         {"__name__": "__main__", "__file__": f"{args.kind}-server.py"})


if __name__ == "__main__":
    main()
