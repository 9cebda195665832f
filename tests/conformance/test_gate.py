"""The conformance gate: it fails on new failures and on fixed ones; prune only shrinks."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

GATE = Path(__file__).with_name("gate.py")
HEADER = "# header comment stays\n"


def run_gate(
    tmp_path: Path, rows: dict[str, list[list[str]]], listed: str, *flags: str
) -> tuple[int, str, str]:
    results = tmp_path / "results.json"
    results.write_text(json.dumps({"files": rows}))
    list_file = tmp_path / "expected-failures.txt"
    list_file.write_text(HEADER + listed)
    done = subprocess.run(
        [sys.executable, str(GATE), str(results), str(list_file), *flags],
        capture_output=True,
        text=True,
        check=False,
    )
    return done.returncode, done.stdout, list_file.read_text()


def test_listed_failures_pass_the_gate(tmp_path: Path) -> None:
    rows = {"a.yaml": [["t1", "pass", ""], ["t2", "fail", "boom"]]}
    status, out, _ = run_gate(tmp_path, rows, "a.yaml :: t2  # not built yet\n")
    assert status == 0, out


def test_an_unlisted_failure_fails_the_gate(tmp_path: Path) -> None:
    rows = {"a.yaml": [["t1", "fail", "AssertionError: 500"]]}
    status, out, _ = run_gate(tmp_path, rows, "")
    assert status == 1
    assert "NEW FAILURE  a.yaml :: t1" in out and "AssertionError: 500" in out


def test_a_listed_test_that_passes_fails_the_gate_until_pruned(tmp_path: Path) -> None:
    rows = {"a.yaml": [["t1", "pass", ""], ["t2", "fail", ""]]}
    listed = "a.yaml :: t1  # fixed now\na.yaml :: t2  # still broken\n"
    status, out, _ = run_gate(tmp_path, rows, listed)
    assert status == 1 and "NOW PASSES   a.yaml :: t1" in out
    status, out, after = run_gate(tmp_path, rows, listed, "--prune")
    assert status == 0, out
    assert after == HEADER + "a.yaml :: t2  # still broken\n"


def test_prune_never_adds_lines_for_new_failures(tmp_path: Path) -> None:
    rows = {"a.yaml": [["t1", "fail", ""], ["t2", "fail", ""]]}
    status, _, after = run_gate(tmp_path, rows, "a.yaml :: t1  # known\n", "--prune")
    assert status == 1
    assert after == HEADER + "a.yaml :: t1  # known\n"


def test_a_subset_judges_only_the_files_that_ran(tmp_path: Path) -> None:
    rows = {"a.yaml": [["t1", "pass", ""]]}
    listed = "b.yaml :: t9  # another capability's\n"
    assert run_gate(tmp_path, rows, listed)[0] == 0
    status, out, _ = run_gate(tmp_path, rows, listed, "--full")
    assert status == 1 and "STALE LINE   b.yaml :: t9" in out


def test_a_name_used_twice_in_a_file_fails_if_either_fails(tmp_path: Path) -> None:
    rows = {"a.yaml": [["same", "pass", ""], ["same", "fail", ""]]}
    assert run_gate(tmp_path, rows, "")[0] == 1
    assert run_gate(tmp_path, rows, "a.yaml :: same  # one of the two\n")[0] == 0


def test_skipped_tests_are_neither_failures_nor_fixes(tmp_path: Path) -> None:
    rows = {"a.yaml": [["t1", "skip", "cannot be sent"]]}
    assert run_gate(tmp_path, rows, "")[0] == 0
