"""Reads for the front pages that come from the engine, not the registry (those are registry.selectors)."""
from __future__ import annotations

from leaderboard import engine

# What the page says of each state of a benchmark's data (workers/datasets/installed.py).
STATE_LABELS = {
    "bundled": "runs here",
    "ready": "runs here",
    "unchecked": "configured, not checked",
    "missing": "configured, folder missing",
    "broken": "configured, copy broken",
    "absent": "not installed",
}


def installation_benchmarks(user) -> dict:
    """The installation page: every benchmark with its state and verified counts, then those to add with
    their commands. Staff see the server's folders; other users see the commands with /data/NAME."""
    rows = engine.installation_benchmarks(show_paths=user.is_staff)
    for row in rows:
        row["state_label"] = STATE_LABELS.get(row["state"], row["state"])
    to_add = [row for row in rows if row["runnable"] is False and row["fetch_command"]]
    absent = [row for row in to_add if row["state"] == "absent"]
    return {
        "rows": rows,
        "runnable_count": sum(1 for row in rows if row["runnable"] is True),     # not the unchecked ones
        "unchecked_count": sum(1 for row in rows if row["runnable"] is None),
        "to_add": to_add,
        "roots_example": absent[0]["roots_line"] if absent else "",
        "show_paths": user.is_staff,
    }
