"""The grid's oracle: which grid point runs next, derived from the recorded trials alone.

It serves one process (the default) and a chief with any number of workers alike. What it
adds to KerasTuner 1.4.8, each for a failure measured with the stock oracles:

- the next point is the first one no recorded trial has taken, so N workers keep N trials
  running (the stock GridSearchOracle hands out a point only after a trial ends) and a reload
  never repeats or skips a point (the stock one keeps its position in memory only and fails
  with KeyError after a restart, keras-tuner #1055);
- leases: a running trial whose worker has reported nothing (heartbeat, update, end) for
  `lease` seconds is given up and its point handed out again as a new trial; whatever the
  lost worker sends later about the old trial is ignored (the stock oracle keeps it RUNNING
  for ever and the search never ends);
- a restart keeps running trials running (their workers are alive and report back) instead of
  queueing them again beside the workers still training them, and never re-queues a trial
  that had already ended (KerasTuner saves its state before it drops an ended trial from
  `ongoing_trials`);
- state files are written atomically, so a kill mid-write cannot leave an unreadable grid;
- on a chief (`require_files`), a trial counts as COMPLETED only once the chief accepted its
  files (`accept`); a rejected upload ends the trial FAILED with its reason, and a worker can
  neither change a trial's hyperparameters nor end a trial that another worker holds.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import keras_tuner as kt

from kboolq.files import write_json
from tuning import kt_private

RUNNING = kt.engine.trial.TrialStatus.RUNNING
FAILED = kt.engine.trial.TrialStatus.FAILED


def values_key(values: dict[str, Any]) -> str:
    return json.dumps(values, sort_keys=True)


def rank(trial_id: str, score: float | None) -> tuple:
    """The one order of trials everywhere (best/, trials.csv, the progress line): the higher
    score first, a tie to the trial made first (the lower id), trials without a score last."""
    return (score is None, -(score or 0.0), trial_id)


class ResumableGridOracle(kt.oracles.GridSearchOracle):
    """GridSearch's order of points, handed out from the recorded trials, with leases.

    Args:
        grid_size: number of grid points; the search stops when each has a finished trial.
        lease: seconds a running trial may go without a report before its point is handed to
            another worker; None (one process) never takes a trial back.
        on_trial_end: called with each trial that ended and its run time in seconds.
        require_files: a trial completes only after `accept` (a chief, whose workers upload).
        **kwargs: GridSearchOracle's (objective, seed...).
    """

    def __init__(
        self,
        grid_size: int,
        lease: float | None = None,
        on_trial_end: Callable[[kt.engine.trial.Trial, float], None] | None = None,
        require_files: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(max_trials=grid_size, **kwargs)
        self.grid_size, self.lease, self.on_trial_end = grid_size, lease, on_trial_end
        self.require_files = require_files
        self.accepted: set[str] = set()  # trials whose files the chief checked and kept
        self.rejected: dict[str, str] = {}  # trial id -> why its files cannot count
        self.expired: list[str] = []  # trials whose lease ran out; their points ran again
        self.last_report: dict[str, float] = {}  # running trial id -> time.monotonic()
        self.started: dict[str, float] = {}

    def _combinations(self) -> list[dict[str, Any]]:
        hps = self.get_space()
        current = {hp.name: hp.default for hp in hps.space}
        combinations = []
        while current is not None:
            combinations.append(dict(current))
            current = kt_private.next_combination(self, current)
        return combinations

    def _untaken(self) -> list[dict[str, Any]]:
        taken = {
            values_key(trial.hyperparameters.values)
            for trial_id, trial in self.trials.items()
            if trial_id not in self.expired
        }
        return [v for v in self._combinations() if values_key(v) not in taken]

    def populate_space(self, trial_id: str) -> dict[str, Any]:
        untaken = self._untaken()
        if untaken:
            return {"status": RUNNING, "values": untaken[0]}
        status = "IDLE" if self.ongoing_trials or kt_private.retry_queue(self) else "STOPPED"
        return {"status": getattr(kt.engine.trial.TrialStatus, status), "values": None}

    @kt.synchronized
    def finished(self) -> bool:
        """Every grid point has a trial that ended, and none is running or waiting for a retry."""
        return not self.ongoing_trials and not kt_private.retry_queue(self) and not self._untaken()

    @kt.synchronized
    def create_trial(self, tuner_id: str) -> kt.engine.trial.Trial:
        self.expire_leases()
        if tuner_id not in self.ongoing_trials and not kt_private.retry_queue(self):
            response = self.populate_space("")
            if response["status"] != RUNNING:  # KerasTuner would say STOPPED while trials run
                self.tuner_ids.add(tuner_id)
                if response["status"] == kt.engine.trial.TrialStatus.STOPPED:
                    self.tuner_ids.discard(tuner_id)  # told to stop: no longer waited for
                return kt.engine.trial.Trial(
                    self.hyperparameters.copy(), trial_id=str(len(self.trials)),
                    status=response["status"],
                )  # fmt: skip
        self.max_trials = self.grid_size + len(self.expired)  # expired trials hold no point
        trial = super().create_trial(tuner_id)
        if trial.status == RUNNING:
            now = time.monotonic()
            self.last_report[trial.trial_id] = now
            self.started.setdefault(trial.trial_id, now)
            display = kt_private.display(self)
            if trial.trial_id not in display.trial_start:  # a trial kept over a restart
                display.on_trial_begin(trial)
            self.save()  # KerasTuner saved before its display noted the trial's start
        return trial

    def get_best_trials(self, num_trials: int = 1) -> list[kt.engine.trial.Trial]:
        """Completed trials only, by `rank` (KerasTuner pads the list with failed or running
        ones, and leaves the order of equal scores to its dictionary's order)."""
        completed = kt.engine.trial.TrialStatus.COMPLETED
        done = [t for t in self.trials.values() if t.status == completed and t.score is not None]
        return sorted(done, key=lambda t: rank(t.trial_id, t.score))[:num_trials]

    @kt.synchronized
    def holds(self, tuner_id: str, trial_id: str) -> bool:
        """Whether `tuner_id` is the worker running `trial_id` now."""
        trial = self.ongoing_trials.get(tuner_id)
        return trial is not None and trial.trial_id == trial_id

    @kt.synchronized
    def accept(self, trial_id: str) -> None:
        self.accepted.add(trial_id)
        self.rejected.pop(trial_id, None)
        self.save()

    @kt.synchronized
    def reject(self, trial_id: str, reason: str) -> None:
        self.rejected[trial_id] = reason
        self.accepted.discard(trial_id)
        self.save()

    @kt.synchronized
    def report(self, trial_id: str) -> bool:
        """A sign of life from the worker running `trial_id`; False when that trial is no
        longer running there (its lease ran out, or it ended)."""
        if trial_id in self.expired or trial_id not in self.last_report:
            return False
        self.last_report[trial_id] = time.monotonic()
        return True

    @kt.synchronized
    def update_trial(self, trial_id: str, metrics: dict[str, float], step: int = 0):
        if trial_id in self.expired:
            return self.trials[trial_id]  # a late report from a worker that lost the trial
        self.report(trial_id)
        return super().update_trial(trial_id, metrics, step=step)

    @kt.synchronized
    def get_trial(self, trial_id: str) -> kt.engine.trial.Trial:
        self.report(trial_id)
        return super().get_trial(trial_id)

    @kt.synchronized
    def end_trial(self, trial: kt.engine.trial.Trial) -> None:
        if trial.trial_id in self.expired:
            return  # its point was handed to another worker, whose result stands
        if all(t.trial_id != trial.trial_id for t in self.ongoing_trials.values()):
            return  # sent again by a worker whose first call reached a chief that then died
        trial.hyperparameters = self.trials[trial.trial_id].hyperparameters  # the chief's point
        if self.require_files and trial.status == kt.engine.trial.TrialStatus.COMPLETED:
            if trial.trial_id in self.rejected:
                trial.status, trial.message = FAILED, self.rejected[trial.trial_id]
            elif trial.trial_id not in self.accepted:
                trial.status, trial.message = FAILED, "the worker sent no files for this trial"
        kt.Oracle.end_trial(self, trial)  # skip GridSearchOracle's in-memory bookkeeping
        self.last_report.pop(trial.trial_id, None)
        self.save()  # KerasTuner saved before dropping the trial from ongoing_trials
        started = self.started.pop(trial.trial_id, None)
        if self.on_trial_end is not None:
            seconds = None if started is None else time.monotonic() - started
            self.on_trial_end(self.trials[trial.trial_id], seconds)

    @kt.synchronized
    def expire_leases(self) -> list[str]:
        """Give up the running trials whose worker has been silent for longer than the lease."""
        if self.lease is None:
            return []
        now, expired = time.monotonic(), []
        for tuner_id, trial in list(self.ongoing_trials.items()):
            silent = now - self.last_report.setdefault(trial.trial_id, now)
            if silent <= self.lease:
                continue
            del self.ongoing_trials[tuner_id]
            self.tuner_ids.discard(tuner_id)
            self.last_report.pop(trial.trial_id, None)
            self.started.pop(trial.trial_id, None)
            trial.status = FAILED
            trial.message = (
                f"lease expired: {tuner_id} sent nothing for {silent:.0f} s (lease "
                f"{self.lease:g} s); the grid point was handed out again"
            )
            self.expired.append(trial.trial_id)
            self._save_trial(trial)
            expired.append(trial.trial_id)
            print(f"grid: trial {trial.trial_id} given up ({trial.message})", flush=True)
        if expired:
            self.save()
        return expired

    def get_state(self) -> dict[str, Any]:
        return {
            **super().get_state(),
            "expired": list(self.expired),
            "accepted": sorted(self.accepted),
            "rejected": dict(self.rejected),
        }

    def set_state(self, state: dict[str, Any]) -> None:
        super().set_state(state)
        self.expired = list(state.get("expired", []))
        self.accepted = set(state.get("accepted", []))
        self.rejected = dict(state.get("rejected", {}))
        self._reloaded_ongoing = dict(self.ongoing_trials)

    def reload(self) -> None:
        """Running trials stay with their tuners (a restarted chief's workers are still
        training them; a restarted single process gets its own trial back), with a fresh
        lease; trials that had ended, or expired, are not run again."""
        self._reloaded_ongoing = {}
        super().reload()  # KerasTuner queues every saved ongoing trial for a retry
        saved = self._reloaded_ongoing
        requeued = {trial.trial_id for trial in saved.values()}
        queue = kt_private.retry_queue(self)
        kt_private.set_retry_queue(self, [t for t in queue if t not in requeued])
        self.ongoing_trials = {
            tuner_id: trial
            for tuner_id, trial in saved.items()
            if trial.status == RUNNING and trial.trial_id not in self.expired
        }
        self._give_up_unrecorded()
        self.tuner_ids = set(self.ongoing_trials)
        now = time.monotonic()
        self.last_report = {trial.trial_id: now for trial in self.ongoing_trials.values()}
        self.started = dict(self.last_report)

    def _give_up_unrecorded(self) -> None:
        """A trial that its trial.json calls running but the oracle's state does not hold was
        created by a chief killed between writing the two files (KerasTuner writes trial.json
        first): no worker ever received it, so its point is handed out again."""
        kept = {trial.trial_id for trial in self.ongoing_trials.values()}
        for trial_id, trial in self.trials.items():
            if trial.status != RUNNING or trial_id in kept or trial_id in self.expired:
                continue
            trial.status = FAILED
            trial.message = (
                "the grid stopped before recording this trial's start; the grid point was "
                "handed out again"
            )
            self.expired.append(trial_id)
            self._save_trial(trial)
            print(f"grid: trial {trial_id} given up ({trial.message})", flush=True)

    # KerasTuner writes its JSON state in place; a kill mid-write would leave a file that the
    # resumed grid cannot read, so both files are written atomically instead.
    def save(self) -> None:
        write_json(Path(kt_private.oracle_state_file(self)), self.get_state())

    def _save_trial(self, trial: kt.engine.trial.Trial) -> None:
        trial_dir = Path(kt_private.trial_dir(self, trial.trial_id))
        write_json(trial_dir / "trial.json", trial.get_state())
