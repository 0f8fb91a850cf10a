"""Checks what `make demo` printed (CI, issue: the first five minutes): the streamed steps, the stored run
details, the web console's address and that it served the run's page, and that the run really is in the demo
database afterwards.

Usage: python scripts/check_demo_output.py DEMO_LOG [DB_PATH]
"""

from __future__ import annotations

import re
import sqlite3
import sys
from pathlib import Path


def main(argv: list[str]) -> int:
    log_path = Path(argv[1])
    db_path = Path(argv[2]) if len(argv) > 2 else Path("data/demo/runs.db")
    text = log_path.read_text()
    problems: list[str] = []
    streamed = re.findall(r"^\[(\d+)\] (\w+)", text, flags=re.MULTILINE)
    kinds = [kind for _, kind in streamed]
    for kind in ("model_call", "tool_call", "tool_result", "final_response"):
        if kind not in kinds:
            problems.append(f"no streamed {kind} step in the demo output")
    if "status: COMPLETED" not in text:
        problems.append("the demo run did not print status: COMPLETED")
    console = re.search(r"^==> web console: (http://127\.0\.0\.1:\d+)/", text, flags=re.MULTILINE)
    if console is None:
        problems.append("the demo did not print the web console's address")
    elif f"==> the run in the web console: {console.group(1)}/runs/" not in text:
        problems.append("the demo did not print the run's page in the web console")
    if "web console served the run page (HTTP 200)" not in text:
        problems.append("the web console did not serve the run's page")
    if "stored: yes" not in text:
        problems.append("the run's stream ended before RunsService stored it (no 'stored: yes' in the summary)")
    match = re.search(r"agentrun runs show ([0-9a-f-]{36})", text)
    if match is None:
        problems.append("the demo did not show a stored run")
    else:
        run_id = match.group(1)
        for needle in ("tokens", "steps", "tool calls", "trace id", "get_current_time"):
            if needle not in text.split(match.group(0), 1)[1]:
                problems.append(f"the stored run details lack {needle!r}")
        with sqlite3.connect(db_path) as db:
            row = db.execute("SELECT status, total_tokens FROM runs WHERE id = ?", (run_id,)).fetchone()
            steps = db.execute("SELECT count(*) FROM run_steps WHERE run_id = ?", (run_id,)).fetchone()[0]
        if row is None:
            problems.append(f"run {run_id} is not in {db_path}")
        elif row[0] != "COMPLETED" or row[1] <= 0 or steps != len(streamed):
            problems.append(f"run {run_id} stored as {row}, {steps} steps; streamed {len(streamed)}")
    if problems:
        print("demo check failed:\n  " + "\n  ".join(problems), file=sys.stderr)
        return 1
    print(f"demo check passed: {len(streamed)} streamed steps, stored run {match.group(1) if match else ''} found")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
