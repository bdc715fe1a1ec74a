"""The refusal of a submission, and the upload check behind it.

Uploads are checked by the engine itself (leaderboard/engine.py → workers/uploads.py): it sniffs
the format, opens the file with a loader that cannot run code and checks it against the
architecture or the benchmark, exactly as the evaluation will read it. This module only turns
the engine's typed errors into the one `SubmissionRefused` the form and the `submit` command show.
"""
from __future__ import annotations

from pathlib import Path

from leaderboard import engine


class SubmissionRefused(Exception):
    """A submission that cannot be accepted; the message is for the submitter."""


class OverAllowance(SubmissionRefused):
    """The submitter's fair-use allowance is spent (submissions a day, jobs at once): try later."""


class DuplicateSubmission(SubmissionRefused):
    """The same form was sent again within minutes: `submission` is the one already received."""

    def __init__(self, submission):
        super().__init__(f"This submission was already received as #{submission.pk}; it was not made twice.")
        self.submission = submission


def check_upload(source: str, path: Path, *, architecture: str = "", benchmark: str = "",
                 folder_into: Path | None = None):
    """The engine's `UploadInspection` of `path` (format, sha256, suffix), or `SubmissionRefused`."""
    try:
        return engine.inspect_upload(source, path, architecture=architecture, benchmark=benchmark,
                                     folder_into=folder_into)
    except engine.EngineError as exc:
        raise SubmissionRefused(str(exc)) from None
