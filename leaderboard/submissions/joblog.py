"""A job's log: timestamped lines, the last LOG_TAIL_LINES kept (the status page shows its tail)."""
from django.utils import timezone

LOG_TAIL_LINES = 200


def stamped(line: str) -> str:
    return f"{timezone.now():%H:%M:%S} {line}"


def append(log_text: str, line: str) -> str:
    lines = (log_text.splitlines() + [stamped(line)])[-LOG_TAIL_LINES:]
    return "\n".join(lines)
