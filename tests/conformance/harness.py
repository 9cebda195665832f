"""Run Placement's gabbi harness and keep every test's outcome, not only the first few failures.

    $PLACEMENT_VENV/bin/python tests/conformance/harness.py TOOLS_DIR OUT_JSON -- HARNESS ARGS...

The harness (TOOLS_DIR/run_gabbits.py, outside this repository) prints one line per file and the
totals line, and its --json keeps at most five failure messages per file. The gate needs the name
and outcome of every test, so this wraps the harness's per-file summary to record the rows, then
writes {"files": {file: [[test, outcome, message], ...]}} to OUT_JSON. Exit status: the harness's.
"""

from __future__ import annotations

import json
import sys
from typing import Any


def main(argv: list[str]) -> int:
    tools, out_path = argv[0], argv[1]
    harness_args = argv[3:] if argv[2:3] == ["--"] else argv[2:]
    sys.path.insert(0, tools)
    import run_gabbits  # type: ignore[import-not-found]

    rows_per_file: list[list[Any]] = []
    summarize = run_gabbits.summarize

    def recording_summarize(rows: list[Any]) -> Any:
        # Called once per file, in run order, with every (test, outcome, message) row.
        rows_per_file.append([list(r) for r in rows])
        return summarize(rows)

    run_gabbits.summarize = recording_summarize
    harness_json = out_path + ".harness"
    sys.argv = ["run_gabbits.py", *harness_args, "--json", harness_json]
    status = run_gabbits.main()
    with open(harness_json) as f:
        names = list(json.load(f)["files"])  # the same run order
    if len(names) != len(rows_per_file):
        print("conformance: could not match the harness's rows to its files", file=sys.stderr)
        return 2
    with open(out_path, "w") as f:
        json.dump({"files": dict(zip(names, rows_per_file, strict=True))}, f, indent=1)
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
