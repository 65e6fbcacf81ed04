#!/usr/bin/env python3
"""Gate an Autobahn (kosoku) report: decide pass/fail and summarise per group.

Usage:
    autobahn_gate.py autobahn-reports/clients/index.json --agent wsat
                     [--expect-cases N] [--markdown FILE] [--strict] [--no-unimplemented]
    autobahn_gate.py autobahn-reports/servers/index.json --server [--agent NAME] ...

A client report (kosoku in fuzzingserver mode) is the default; --server reads a server
report (kosoku in fuzzingclient mode, where the agent is whatever the server under test
named itself, so --agent may be left out when the report holds one agent) and implies
--no-unimplemented. --title replaces the Markdown heading.

The index is Autobahn's format, as kosoku writes it:
    { agent: { case_id: {"behavior": ..., "behaviorClose": ..., "remoteCloseCode": ...,
                         "duration": ms, "reportfile": "<agent>_case_<id>.json"} } }

A case's verdict is its ``behavior`` (OK, NON-STRICT, INFORMATIONAL, FAILED, UNIMPLEMENTED;
kosoku also has ERROR, counted as FAILED), except that a passing ``behavior`` with a
``behaviorClose`` other than OK/INFORMATIONAL (WRONG CODE, UNCLEAN, FAILED BY CLIENT, FAILED)
counts as FAILED -- the same rule as kosoku's own ``CaseResult.passed``.

The gate fails (exit 1) on any FAILED case, on UNIMPLEMENTED outside groups 12 and 13
(permessage-deflate) -- anywhere with --no-unimplemented or --server --, on NON-STRICT with
--strict, on an empty report, or when --expect-cases is given and a different number of
cases was reported. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter

GROUPS = {
    1: "framing",
    2: "ping/pong",
    3: "reserved bits",
    4: "opcodes",
    5: "fragmentation",
    6: "UTF-8",
    7: "close",
    9: "limits/performance",
    10: "misc",
    12: "permessage-deflate",
    13: "permessage-deflate params",
}
VERDICTS = ["OK", "NON-STRICT", "INFORMATIONAL", "FAILED", "UNIMPLEMENTED"]
PASSING = {"OK", "NON-STRICT", "INFORMATIONAL"}
CLOSE_OK = {"OK", "INFORMATIONAL"}
UNIMPLEMENTED_ALLOWED = {12, 13}


def case_key(case_id: str) -> list[int]:
    """Numeric sort key: 1.2.10 after 1.2.9."""
    return [int(p) if p.isdigit() else 0 for p in case_id.split(".")]


def verdict(entry: dict) -> tuple[str, str | None]:
    """(verdict column, reason it failed or None)."""
    behavior = entry.get("behavior", "MISSING")
    close = entry.get("behaviorClose", "MISSING")
    if behavior in PASSING:
        if close in CLOSE_OK:
            return behavior, None
        return "FAILED", f"behavior={behavior}, behaviorClose={close}"
    if behavior == "UNIMPLEMENTED":
        return "UNIMPLEMENTED", None
    return "FAILED", f"behavior={behavior}, behaviorClose={close}"


def table_rows(counts: dict[int, Counter]) -> list[list[str]]:
    rows = []
    total: Counter = Counter()
    for group in sorted(counts):
        c = counts[group]
        total.update(c)
        rows.append(
            [str(group), GROUPS.get(group, "?")]
            + [str(c[v]) for v in VERDICTS]
            + [str(sum(c.values()))]
        )
    rows.append(["all", ""] + [str(total[v]) for v in VERDICTS] + [str(sum(total.values()))])
    return rows


HEADER = ["group", "topic"] + VERDICTS + ["total"]


def plain_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADER] + rows) for i in range(len(HEADER))]
    fmt = lambda r: "  ".join(  # noqa: E731
        cell.ljust(w) if i < 2 else cell.rjust(w) for i, (cell, w) in enumerate(zip(r, widths))
    )
    lines = [fmt(HEADER), fmt(["-" * w for w in widths])]
    lines += [fmt(r) for r in rows]
    return "\n".join(lines)


def default_title(agent: str, server: bool) -> str:
    if server:
        return f"Autobahn TestSuite (kosoku fuzzingclient), server `{agent}`:"
    return f"Autobahn TestSuite (kosoku fuzzingserver), client `{agent}`:"


def markdown_table(rows: list[list[str]], title: str) -> str:
    lines = [
        title,
        "",
        "| " + " | ".join(HEADER) + " |",
        "|" + "|".join(["---", "---"] + ["---:"] * (len(HEADER) - 2)) + "|",
    ]
    for r in rows:
        cells = [f"**{c}**" if r[0] == "all" and c else c for c in r]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("index", help="path to index.json (e.g. autobahn-reports/clients/index.json)")
    parser.add_argument("--agent", help="agent name the testee reported (required for a client report; "
                        "for a server report, the only agent in it when left out)")
    parser.add_argument("--expect-cases", type=int, help="fail unless exactly N cases are reported")
    parser.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    parser.add_argument("--strict", action="store_true",
                        help="also fail on NON-STRICT cases (wsat's client has none: keep it that way)")
    parser.add_argument("--no-unimplemented", action="store_true",
                        help="also fail on UNIMPLEMENTED in 12.*/13.* (permessage-deflate negotiated)")
    parser.add_argument("--server", action="store_true",
                        help="a server report (kosoku fuzzingclient): heading says so, implies "
                        "--no-unimplemented, --agent optional")
    parser.add_argument("--title", help="the Markdown table's heading (default: names the mode and agent)")
    args = parser.parse_args()
    if args.agent is None and not args.server:
        parser.error("--agent is required (unless --server)")
    no_unimplemented = args.no_unimplemented or args.server

    try:
        with open(args.index, encoding="utf-8") as f:
            index = json.load(f)
    except FileNotFoundError:
        print(f"autobahn gate: {args.index} not found (did the run finish?)", file=sys.stderr)
        return 1
    if args.agent is None:
        if len(index) != 1:
            print(f"autobahn gate: give --agent; {args.index} has agents {sorted(index)}", file=sys.stderr)
            return 1
        args.agent = next(iter(index))
    if args.agent not in index:
        print(
            f"autobahn gate: agent {args.agent!r} not in {args.index}; agents: {sorted(index)}",
            file=sys.stderr,
        )
        return 1
    cases: dict = index[args.agent]
    report_dir = os.path.dirname(os.path.abspath(args.index))

    counts: dict[int, Counter] = {}
    by_verdict: dict[str, list[str]] = {v: [] for v in VERDICTS}
    failures: list[str] = []
    for case_id in sorted(cases, key=case_key):
        entry = cases[case_id]
        group = case_key(case_id)[0]
        v, reason = verdict(entry)
        counts.setdefault(group, Counter())[v] += 1
        by_verdict[v].append(case_id)
        if v == "FAILED":
            failures.append(f"{case_id}: {reason}, remoteCloseCode={entry.get('remoteCloseCode')}"
                            f"  ({os.path.join(report_dir, entry.get('reportfile', '?'))})")
        elif v == "UNIMPLEMENTED" and no_unimplemented:
            failures.append(f"{case_id}: UNIMPLEMENTED (refused by --no-unimplemented / --server)")
        elif v == "UNIMPLEMENTED" and group not in UNIMPLEMENTED_ALLOWED:
            failures.append(f"{case_id}: UNIMPLEMENTED outside 12.*/13.*")

    for v in ("NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED"):
        if by_verdict[v]:
            print(f"{v} ({len(by_verdict[v])}): {' '.join(by_verdict[v])}")
    rows = table_rows(counts)
    print()
    print(plain_table(rows))
    print()

    if args.markdown:
        with open(args.markdown, "w", encoding="utf-8") as f:
            f.write(markdown_table(rows, args.title or default_title(args.agent, args.server)))
        print(f"autobahn gate: wrote {args.markdown}")

    problems = list(failures)
    if args.strict:
        problems.extend(f"{c}: NON-STRICT (--strict)" for c in by_verdict["NON-STRICT"])
    if not cases:
        problems.append("the report has no cases")
    if args.expect_cases is not None and len(cases) != args.expect_cases:
        problems.append(f"expected {args.expect_cases} cases, the report has {len(cases)}")
    for p in problems:
        print(f"GATE FAIL {p}")

    passed = sum(len(by_verdict[v]) for v in PASSING)
    failed = len(by_verdict["FAILED"])
    print(f"autobahn: {passed} passed, {failed} failed")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
