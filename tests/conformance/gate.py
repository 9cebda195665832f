"""The conformance gate: compare one harness run with tests/conformance/expected-failures.txt.

    python tests/conformance/gate.py RESULTS_JSON LIST [--full] [--prune] [--baseline GLOB=WHY ...]

It fails (exit 1) when, in a file that ran:
  - a test failed that the list does not name (a regression, or a new test),
  - a listed test passed (fixed: delete its line, so the list only shrinks),
  - a listed test does not exist in that file (a stale line; with --full, in any file).
Lines for files that did not run (a CONFORMANCE_ONLY subset) are left alone.

--prune deletes the lines of listed tests that passed and the stale ones; it never adds lines.
--baseline GLOB=WHY (maintainers only, for an honest re-baseline after a real run) appends a line
for each unlisted failure in files matching GLOB, with WHY as its reason.
"""

from __future__ import annotations

import argparse
import fnmatch
import json
import sys
from dataclasses import dataclass

SEPARATOR = " :: "
WHY = "  # "


@dataclass(frozen=True)
class Entry:
    file: str
    test: str
    why: str
    line_no: int


def parse_list(lines: list[str]) -> dict[tuple[str, str], Entry]:
    entries: dict[tuple[str, str], Entry] = {}
    for number, raw in enumerate(lines, 1):
        line = raw.rstrip("\n")
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if SEPARATOR not in line or WHY not in line:
            sys.exit(f"{number}: expected 'file.yaml :: test name  # why', got {line!r}")
        file, rest = line.split(SEPARATOR, 1)
        test, why = rest.split(WHY, 1)
        key = (file.strip(), test.strip())
        if key in entries:
            sys.exit(f"{number}: {key[0]} :: {key[1]} is listed twice")
        entries[key] = Entry(key[0], key[1], why.strip(), number)
    return entries


def outcomes(results: dict[str, list[list[str]]]) -> dict[tuple[str, str], str]:
    """(file, test) -> pass | fail | skip; a name used twice in a file fails if either fails."""
    out: dict[tuple[str, str], str] = {}
    for file, rows in results.items():
        for test, outcome, _message in rows:
            key = (file, test)
            if out.get(key) != "fail":
                out[key] = outcome
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("results")
    parser.add_argument("list")
    parser.add_argument("--prune", action="store_true")
    parser.add_argument(
        "--full", action="store_true", help="every file ran: a line naming another file is stale"
    )
    parser.add_argument("--baseline", action="append", default=[], metavar="GLOB=WHY")
    args = parser.parse_args()

    with open(args.results) as f:
        results: dict[str, list[list[str]]] = json.load(f)["files"]
    with open(args.list) as f:
        lines = f.readlines()
    listed = parse_list(lines)
    seen = outcomes(results)
    messages = {(file, row[0]): row[2] for file, rows in results.items() for row in rows}

    new = sorted(k for k, o in seen.items() if o == "fail" and k not in listed)
    fixed = sorted(k for k, o in seen.items() if o == "pass" and k in listed)
    stale = sorted(k for k in listed if (args.full or k[0] in results) and k not in seen)

    if args.prune and (fixed or stale):
        drop = {listed[k].line_no for k in fixed + stale}
        lines = [line for n, line in enumerate(lines, 1) if n not in drop]
        print(f"conformance: pruned {len(fixed)} passing and {len(stale)} stale lines")
        fixed, stale = [], []
    if args.baseline and new:
        rules = [rule.split("=", 1) for rule in args.baseline]
        still_new = []
        for file, test in new:
            why = next((w for g, w in rules if fnmatch.fnmatch(file, g)), None)
            if why is None:
                still_new.append((file, test))
            else:
                lines.append(f"{file}{SEPARATOR}{test}{WHY}{why}\n")
        print(f"conformance: listed {len(new) - len(still_new)} failures (baseline)")
        new = still_new
    if args.prune or args.baseline:
        with open(args.list, "w") as f:
            f.writelines(lines)

    for file, test in new:
        print(f"NEW FAILURE  {file}{SEPARATOR}{test}\n    {messages.get((file, test), '')}")
    for file, test in fixed:
        print(f"NOW PASSES   {file}{SEPARATOR}{test}  (delete its line: CONFORMANCE_PRUNE=1)")
    for file, test in stale:
        print(f"STALE LINE   {file}{SEPARATOR}{test}  (no such test in the file)")
    ran = sum(len(rows) for rows in results.values())
    failing = sum(1 for o in seen.values() if o == "fail")
    expected = sum(1 for k in listed if k[0] in results)
    print(
        f"conformance gate: {len(results)} files, {ran} tests, {failing} failing, "
        f"{expected} expected to fail; {len(new)} new failures, {len(fixed)} now passing, "
        f"{len(stale)} stale lines"
    )
    if new or fixed or stale:
        print("conformance gate: FAILED")
        return 1
    print("conformance gate: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
