"""What an experiment prints while it runs: a short table and a progress line, nothing else.

Ray's own output (trial boxes, status tables, worker logs) is off unless ``-v``. Instead this
callback prints one line per trial that ends (finished, stopped early by the scheduler, failed),
and every ``every`` seconds a table of the running trials (trial, epoch, the metric, its best so
far, then the parameters that move, in full, 4 significant digits) with a progress line: trials
done / running / pending and the time left. A trial is done when it finished (its epochs or
patience), was stopped by the scheduler, or failed; one that Ray ends because the experiment was
interrupted is not. A progress line equal to the last one printed is not printed again.

The time left comes from the budget, not from trial durations: the trial-epochs still allowed
(every pending trial's ``max_t`` evaluations, and what each running one has left) divided by the
pace of this run so far (trial-epochs completed per second, all trials together), so it does not
jump as the number of running trials changes. It is an upper bound: ASHA and patience stop
trials before their budget. The first evaluation prints the plan's size; the time left shows from
the second one on. Without a budget (``max_t`` 0) no time left is shown.

On ``--resume`` the best so far includes the trials that ended in earlier runs, and the
evaluations a continued trial replays from its checkpoint count for its best but not for the pace.
"""

from __future__ import annotations

import time
from typing import Any, Sequence

from ray.tune import Callback

from .keys import config_key


def _value(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def trial_params(config: dict[str, Any], params: Sequence[str]) -> str:
    """``M=50 q=2`` for the moving parameters of a trial (grid points included)."""
    point = dict(config.get("point") or {})
    values = {**config, **point}
    shown = [f"{p}={_value(values[p])}" for p in params if p in values]
    return " ".join(shown) or ("defaults" if point.get("sweep") == "default" else "-")


def duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 90:
        return f"{seconds} s"
    if seconds < 5400:
        return f"{round(seconds / 60)} min"
    return f"{seconds / 3600:.1f} h"


def trial_name(trial: Any) -> str:
    """A trial's key (its folder under trials/), else Ray's id."""
    return config_key(getattr(trial, "config", None) or {}) or trial.trial_id


class Console(Callback):
    """Compact progress for a researcher: see the module docstring. ``ledger.stopped`` holds the
    keys of the trials the scheduler stopped; ``done_before`` counts trials that ended in earlier
    runs of the experiment and ``best_before`` is the best metric they reached."""

    def __init__(self, params: Sequence[str], metric: str, total: int, ledger: Any = None, done_before: int = 0,
                 every: float = 30.0, max_t: int = 0, best_before: float | None = None) -> None:
        self.params, self.metric, self.total, self.every = tuple(params), metric, total, every
        self.ledger, self.done_before, self.max_t, self.best_before = ledger, done_before, max_t, best_before
        self.setup()

    def setup(self, **info: Any) -> None:
        self.began = time.monotonic()
        self.last_table = self.began
        self.latest: dict[str, dict[str, Any]] = {}
        self.ended: set[str] = set()
        self.failed: set[str] = set()
        self.last_line = ""
        self.evaluations: dict[str, int] = {}  #: per trial: evaluations reported in this run
        self.first_result: float | None = None

    # ------------------------------------------------------------------ events
    def on_trial_result(self, iteration: int, trials: list, trial: Any, result: dict, **info: Any) -> None:
        if self.metric not in result:
            return
        seen = self.latest.setdefault(trial.trial_id, {"best": float("-inf")})
        seen.update(epoch=result.get("epoch"), value=result[self.metric], done=bool(result.get("finished")),
                    iteration=int(result.get("training_iteration") or 0))
        seen["best"] = max(seen["best"], result[self.metric])
        if result.get("replayed"):  # reached in an earlier run: no part of this run's pace
            return
        self.evaluations[trial.trial_id] = self.evaluations.get(trial.trial_id, 0) + 1
        if self.first_result is None:
            self.first_result = time.monotonic()
            if self.max_t:
                budget = self.total * self.max_t
                print(f"first evaluation after {duration(self.first_result - self.began)}; the plan is "
                      f"{self.total} trials of at most {self.max_t} evaluations ({budget} trial-epochs), fewer "
                      "where ASHA or patience stop a trial", flush=True)

    def on_trial_recover(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        print(f"trial {trial_name(trial)} failed; Ray restarts it from its last checkpoint", flush=True)

    def _stopped(self, trial: Any) -> bool:
        return self.ledger is not None and trial_name(trial) in self.ledger.stopped

    def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        seen = self.latest.get(trial.trial_id, {})
        where = f"at epoch {seen.get('epoch', '?')} ({trial_params(trial.config, self.params)})"
        if not seen.get("done") and not self._stopped(trial):  # Ray ended it because the run is stopping
            print(f"trial {trial_name(trial)} interrupted {where}; --resume continues it", flush=True)
            return
        self.ended.add(trial.trial_id)
        how = "finished" if seen.get("done") else "stopped early by the scheduler"
        best = f"best {self.metric} {seen['best']:.4f}" if "best" in seen else "no evaluation"
        self._print(f"trial {trial_name(trial)} {how} {where}: {best}", trials)

    def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
        if self.ledger is not None:
            self.ledger.fail(trial)
        self.failed.add(trial.trial_id)
        self.ended.add(trial.trial_id)
        self._print(f"trial {trial_name(trial)} failed ({trial_params(trial.config, self.params)}); "
                    f"its error is in results.csv", trials)

    def on_step_end(self, iteration: int, trials: list, **info: Any) -> None:
        now = time.monotonic()
        if now - self.last_table < self.every:
            return
        self.last_table = now
        running = [t for t in trials if t.status == "RUNNING"]
        line = self.progress(trials)
        if _content(line) == _content(self.last_line):
            return  # nothing moved since the last line
        if running:
            print(self.table(running), flush=True)
        self.last_line = line
        print(line, flush=True)

    def on_experiment_end(self, trials: list, **info: Any) -> None:
        line = self.progress(trials)
        if _content(line) != _content(self.last_line):
            print(line, flush=True)

    # ------------------------------------------------------------------ text
    def _print(self, line: str, trials: list) -> None:
        self.last_line = self.progress(trials)
        print(f"{line}\n{self.last_line}", flush=True)

    def table(self, running: list) -> str:
        header = f"{'trial':<16} {'epoch':>5} {self.metric:>16} {'best':>8}  parameters"
        lines = [header]
        for trial in running:
            seen = self.latest.get(trial.trial_id, {})
            value = f"{seen['value']:.4f}" if "value" in seen else "-"
            best = f"{seen['best']:.4f}" if "value" in seen else "-"
            lines.append(f"{trial_name(trial):<16} {seen.get('epoch', '-')!s:>5} {value:>16} {best:>8}  "
                         f"{trial_params(trial.config, self.params)}")
        return "\n".join(lines)

    def seconds_left(self, trials: list, pending: int) -> float | None:
        """The budget's trial-epochs still allowed over this run's pace (see the module docstring)."""
        if not self.max_t or self.first_result is None:
            return None
        done = sum(self.evaluations.values())
        elapsed = time.monotonic() - self.first_result
        if done < 2 or elapsed <= 0:
            return None
        left = pending * self.max_t + sum(
            max(0, self.max_t - self.latest.get(t.trial_id, {}).get("iteration", 0))
            for t in trials if t.status == "RUNNING" and t.trial_id not in self.ended)
        return left / (done / elapsed)

    def progress(self, trials: list) -> str:
        ended = [t.status == "ERROR" or t.trial_id in self.ended for t in trials]
        done = sum(ended) + self.done_before
        failed = sum(t.status == "ERROR" or t.trial_id in self.failed for t in trials)
        running = sum(t.status == "RUNNING" and not e for t, e in zip(trials, ended))
        total = max(self.total, len(trials) + self.done_before)
        pending = total - done - running
        bests = [s["best"] for s in self.latest.values() if "best" in s]
        best = max(bests + ([] if self.best_before is None else [self.best_before]), default=None)
        parts = [f"[{duration(time.monotonic() - self.began)}] {done}/{total} trials done"
                 + (f" ({failed} failed)" if failed else ""), f"{running} running", f"{pending} pending"]
        if best is not None:
            parts.append(f"best {self.metric} {best:.4f}")
        left = self.seconds_left(trials, pending) if pending + running else None
        if left is not None:
            parts.append(f"at most {duration(left)} left" if left >= 60 else "under a minute left")
        return ", ".join(parts)


def _content(line: str) -> str:
    """A progress line without its clock: '[3 min] 4/24 trials done, ...' -> '4/24 trials done, ...'."""
    return line.split("] ", 1)[-1] if line.startswith("[") else line
