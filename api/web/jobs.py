"""Long console tasks (reconciling a large export) run in a thread while the page shows their
progress; the page polls (htmx) and moves on to the result when the task is done.

Jobs live in the serving process (the console's poll goes back to it); a restart forgets them,
never their results, which the task itself records in the ledger.
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

Progress = Callable[[int, int], None]
KEEP = 200


@dataclass
class Job:
    job_id: str
    tenant_id: str
    label: str
    done: int = 0
    total: int = 0
    result: Any = None
    error: Exception | None = None
    finished: bool = False

    @property
    def percent(self) -> int:
        return 100 if self.finished else int(self.done * 100 / self.total) if self.total else 0


@dataclass
class JobBoard:
    jobs: dict[str, Job] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self, tenant_id: str, label: str, task: Callable[[Progress], Any]) -> Job:
        job = Job(secrets.token_urlsafe(12), tenant_id, label)

        def progress(done: int, total: int) -> None:
            job.done, job.total = done, total

        def run() -> None:
            try:
                job.result = task(progress)
            except Exception as e:  # noqa: BLE001 - shown to the person who started it
                job.error = e
            finally:
                job.finished = True

        with self.lock:
            if len(self.jobs) >= KEEP:
                for old in [j for j in self.jobs.values() if j.finished][: KEEP // 2]:
                    del self.jobs[old.job_id]
            self.jobs[job.job_id] = job
        threading.Thread(target=run, name=f"console-job-{job.job_id}", daemon=True).start()
        return job

    def get(self, tenant_id: str, job_id: str) -> Job | None:
        """The tenant's job, or None (another tenant's is not theirs to see)."""
        job = self.jobs.get(job_id)
        return job if job is not None and job.tenant_id == tenant_id else None
