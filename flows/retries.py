"""Which task failures Prefect tries again: transient ones only.

A user's mistake (a checksum mismatch, a bad weights file, a reordered index) fails the same way every
time, so another try only delays the one-sentence message; a lost worker or an I/O hiccup may not.
Downloads already retry their own transient HTTP failures (tasks.ingest.download), so a download that
still fails raises a UserError and is not multiplied by task retries.
"""

from __future__ import annotations

from configs.errors import UserError


def retry_unless_user_error(task, task_run, state) -> bool:
    """A Prefect `retry_condition_fn`: True (retry) unless the task raised a UserError."""
    try:
        state.result()
    except UserError:
        return False
    except Exception:
        return True
    return True
