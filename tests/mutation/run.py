"""`make mutation`: mutation testing of the critical modules, with mutmut and the hand mutants.

1. mutmut (configured in pyproject's [tool.mutmut]) copies the project into mutants/, mutates the functions of
   the scopes below, runs the selected test files once to learn which tests call which function, then runs
   each mutant against only the tests that called its function, under a wall-clock budget ((the tests' clean
   time + 2 s) x 5), several mutants at a time each on its own test database (tests/mutation/slots.py).
2. The survivors are matched against tests/mutation/equivalent.toml (mutants that cannot change behaviour,
   each with its reason); the rest count against the score: killed / (mutants - equivalent), a timeout counts
   as killed (the tests hung on the mutant) and a mutant no test calls counts as a survivor.
3. tests/mutation/hand.py applies the hand mutants of the SQL held in strings and the state machine's tables.

Exit status 1 when a gated scope (reservations, state machine, outbox relay) is under 90% or a hand mutant
survives. The report (every scope's figures and each surviving mutant's diff) is printed and written to
mutants/report.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
GATE = 0.90


@dataclass(frozen=True)
class Scope:
    name: str
    source: str  # the mutated file
    module: str
    functions: tuple[str, ...] = ()  # empty: every function of the module
    gated: bool = True

    def globs(self) -> list[str]:
        if not self.functions:
            return [f"{self.module}.*"]
        return [f"{self.module}.x_{function}__mutmut_*" for function in self.functions]

    def owns(self, mutant: str) -> bool:
        return any(fnmatch(mutant, glob) for glob in self.globs())


SCOPES = [
    Scope("reservations", "inventory/services/reservations.py", "inventory.services.reservations"),
    Scope("state machine", "orders/status.py", "orders.status"),
    Scope("state machine", "orders/services/state.py", "orders.services.state"),
    Scope(
        "outbox relay",
        "channels/outbox.py",
        "channels.outbox",
        (
            "outbox_enqueue",
            "_kick_relay",
            "outbox_claim",
            "outbox_send",
            "_deliver",
            "_park_or_retry",
            "_backoff",
            "_max_attempts",
            "_error_detail",
            "outbox_relay",
            "outbox_retry_now",
        ),
    ),
    Scope(
        "ingest upsert",
        "orders/services/ingest.py",
        "orders.services.ingest",
        ("orders_ingest_batch", "_create", "_update", "_status_after", "_line_status", "_new_order_rows"),
        gated=False,
    ),
    Scope("routing batch", "fulfillment/services/route/batch.py", "fulfillment.services.route.batch", gated=False),
]
KILLED = {1, 3, 36, -24, 24, 152, 255}  # mutmut's exit codes for killed and timed out
TIMEOUT = {36, -24, 24, 152, 255}


def _equivalents() -> list[dict]:
    return tomllib.loads((ROOT / "tests/mutation/equivalent.toml").read_text())["equivalent"]


def _changed_lines(diff: str) -> list[str]:
    return [
        line[0] + line[1:].strip()
        for line in diff.splitlines()
        if line[:1] in "+-" and not line.startswith(("+++", "---")) and line[1:].strip()
    ]


def _diff(name: str) -> str:
    from mutmut.mutation.diff_apply import get_diff_for_mutant

    return get_diff_for_mutant(name)


def _results(scopes: list[Scope]) -> dict[str, dict[str, int | None]]:
    by_scope: dict[str, dict[str, int | None]] = {scope.name: {} for scope in scopes}
    for scope in scopes:
        meta = ROOT / "mutants" / f"{scope.source}.meta"
        codes = json.loads(meta.read_text())["exit_code_by_key"] if meta.exists() else {}
        by_scope[scope.name].update({name: code for name, code in codes.items() if scope.owns(name)})
    return by_scope


def _report(scopes: list[Scope], seconds: float) -> tuple[list[str], bool]:
    equivalents = _equivalents()
    used: set[int] = set()
    lines = ["# Mutation testing report", ""]
    summary = ["| scope | mutants | equivalent | killed | of which timed out | survived | no test | score |"]
    summary.append("|---|---|---|---|---|---|---|---|")
    details: list[str] = []
    ok = True
    for scope_name, codes in _results(scopes).items():
        gated = any(s.gated for s in scopes if s.name == scope_name)
        killed = sum(1 for code in codes.values() if code in KILLED)
        timeouts = sum(1 for code in codes.values() if code in TIMEOUT)
        untested = [name for name, code in codes.items() if code == 33]
        unchecked = [name for name, code in codes.items() if code is None]
        survivors = [name for name, code in codes.items() if code not in KILLED and code not in (33, None)]
        equivalent, counted = [], []
        for name in sorted(survivors + untested, key=_natural):
            changed = _changed_lines(_diff(name))
            function = name.split(".x_")[0] + "." + name.split(".x_")[1].rsplit("__mutmut_", 1)[0]
            match = next(
                (
                    n
                    for n, eq in enumerate(equivalents)
                    if eq["function"] == function and _changed_lines(eq["diff"]) == changed
                ),
                None,
            )
            if match is None:
                counted.append(name)
            else:
                equivalent.append(name)
                used.add(match)
        total = len(codes) - len(equivalent) - len(unchecked)
        score = killed / total if total else 0.0
        if gated and (score < GATE or unchecked):
            ok = False
        summary.append(
            f"| {scope_name}{'' if gated else ' (not gated)'} | {len(codes)} | {len(equivalent)} | {killed} | "
            f"{timeouts} | {len([n for n in counted if n not in untested])} | "
            f"{len([n for n in counted if n in untested])} | {score:.1%} |"
        )
        if unchecked:
            details.append(f"{scope_name}: {len(unchecked)} mutant(s) not checked (the run was interrupted)")
        for name in counted:
            details += ["", f"### {name}{' (no test calls it)' if name in untested else ''}", "```diff"]
            details += [line for line in _diff(name).splitlines() if not line.startswith(("+++", "---"))]
            details.append("```")
    unused = [eq for n, eq in enumerate(equivalents) if n not in used]
    lines += summary
    lines += ["", f"mutmut run: {seconds:.0f} s", ""]
    if unused:
        lines += [f"{len(unused)} listed equivalent mutant(s) not found in this run (source changed?):"]
        lines += [f"- {eq['function']}: {' / '.join(_changed_lines(eq['diff']))}" for eq in unused]
    lines += ["", "## Surviving mutants that count against the score", *details]
    return lines, ok


def _natural(name: str) -> tuple[str, int]:
    head, _, number = name.rpartition("__mutmut_")
    return head, int(number) if number.isdigit() else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="mutation testing of the critical modules")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("MUTATION_JOBS", "2")))
    parser.add_argument("--keep", action="store_true", help="reuse mutants/ and earlier results (incremental)")
    parser.add_argument("--report-only", action="store_true", help="report the results in mutants/ as they are")
    parser.add_argument(
        "--only",
        choices=["unchecked", "survivors", "pending"],
        help="with the last run's results kept: run only the mutants not checked yet, its survivors, or both",
    )
    parser.add_argument("--no-hand", action="store_true", help="skip the hand mutants")
    parser.add_argument("--scope", action="append", help="only these scopes (by name)")
    args = parser.parse_args(argv)
    os.chdir(ROOT)
    scopes = [s for s in SCOPES if not args.scope or s.name in args.scope]
    env = {**os.environ, "WAYBILL_TESTING": "1", "WAYBILL_TEST_DB_SLOTS": str(max(args.jobs, 1))}
    # mutants/ is a copy of the project one level down: point it at the channel specs beside the checkout.
    env.setdefault("WAYBILL_CHANNEL_SPECS", str(ROOT.parent / "shared" / "channel-specs"))
    started = time.monotonic()
    if not args.report_only:
        if not args.keep and not args.only:
            shutil.rmtree(ROOT / "mutants", ignore_errors=True)
        mutmut = Path(sys.executable).with_name("mutmut")
        globs = [glob for scope in scopes for glob in scope.globs()]
        if args.only:
            codes_wanted = {"unchecked": {None}, "survivors": {0, 33}, "pending": {None, 0, 33}}[args.only]
            wanted = codes_wanted.__contains__
            results = _results(scopes).values()
            globs = [name for codes in results for name, code in sorted(codes.items()) if wanted(code)]
            if not globs:
                print(f"no {args.only} mutants to run")
        done = subprocess.run([str(mutmut), "run", "--max-children", str(args.jobs), *globs], env=env, check=False)
        if done.returncode != 0 and globs:
            print(f"mutmut run failed (exit {done.returncode})")
            return done.returncode
    mutmut_seconds = time.monotonic() - started
    os.environ.update(env)
    lines, ok = _report(scopes, mutmut_seconds)
    if not args.no_hand and not args.report_only:
        started_hand = time.monotonic()
        hand = subprocess.run(
            [sys.executable, "-m", "tests.mutation.hand"], env=env, capture_output=True, text=True, check=False
        )
        lines += ["", "## Hand mutants (SQL in strings, the state machine's tables)", "```", hand.stdout.strip(), "```"]
        lines += [f"hand mutants: {time.monotonic() - started_hand:.0f} s"]
        ok = ok and hand.returncode == 0
    lines += ["", f"total: {time.monotonic() - started:.0f} s", "", "PASS" if ok else "FAIL"]
    text = "\n".join(lines)
    (ROOT / "mutants").mkdir(exist_ok=True)
    (ROOT / "mutants" / "report.md").write_text(text + "\n")
    print(text)
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
