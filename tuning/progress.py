"""The grid's progress line: trials done, time spent, the best so far and the time left."""

from __future__ import annotations

import time

from tuning.oracle import ResumableGridOracle, rank


def duration(seconds: float) -> str:
    minutes, secs = divmod(round(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{secs:02d}s"


def progress_line(
    done: int,
    total: int,
    elapsed: float,
    trial_seconds: list[float],
    best: tuple[float, str] | None,
    workers: int = 1,
) -> str:
    """'grid: trial k of n done, elapsed ..., best so far ..., about ... left (...)': the
    estimate is the trials left times the mean time of the trials ended since this process
    started, shared among the workers."""
    parts = [f"grid: trial {done} of {total} done", f"elapsed {duration(elapsed)}"]
    if best is not None:
        parts.append(f"best so far {best[0]:.4f} (trial {best[1]})")
    left = total - done
    if left > 0 and trial_seconds:
        mean = sum(trial_seconds) / len(trial_seconds)
        shared = f" / {workers} workers" if workers > 1 else ""
        parts.append(
            f"about {duration(left * mean / workers)} left "
            f"({left} trials x {duration(mean)}{shared})"
        )
    return ", ".join(parts)


class Progress:
    """Prints a progress line each time the oracle ends a trial (in one process or on the
    chief, which sees every worker's trials)."""

    def __init__(self, total: int) -> None:
        self.total, self.started = total, time.monotonic()
        self.trial_seconds: list[float] = []
        self.oracle: ResumableGridOracle | None = None

    def __call__(self, trial, seconds: float | None) -> None:
        if seconds is not None:
            self.trial_seconds.append(seconds)
        done = [t for t in self.oracle.trials.values() if t.status == "COMPLETED"]
        best = min(done, key=lambda t: rank(t.trial_id, t.score), default=None)
        workers = max(1, len(self.oracle.tuner_ids))
        print(
            progress_line(
                len(done),
                self.total,
                time.monotonic() - self.started,
                self.trial_seconds,
                None if best is None else (best.score, best.trial_id),
                workers,
            ),
            flush=True,
        )
