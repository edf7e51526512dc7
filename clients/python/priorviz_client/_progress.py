"""``progress=True``: a tqdm bar per prior, fed by the same events a caller could iterate."""

from __future__ import annotations

from typing import Any

from priorviz_client._results import Event, Progress, Queued


def _tqdm() -> Any:
    try:
        from tqdm.auto import tqdm
    except ImportError as error:
        raise ImportError("progress=True needs tqdm: pip install 'priorviz-client[progress]'") from error
    return tqdm


class ProgressBar:
    """Shows queue position, then one bar per prior with the mean objective value."""

    def __init__(self, description: str = "") -> None:
        self._tqdm = _tqdm()
        self._description = description
        self._bar: Any = None
        self._prior: str | None = None

    def update(self, event: Event) -> None:
        if isinstance(event, Queued):
            self._open(f"{self._description} queued ({event.jobs_ahead} ahead)".strip(), total=None)
        elif isinstance(event, Progress):
            if event.prior != self._prior or self._bar is None or self._bar.total != event.total_steps:
                self._prior = event.prior
                label = (
                    event.prior
                    if event.prior_count == 1
                    else f"{event.prior} ({event.prior_index + 1}/{event.prior_count})"
                )
                self._open(f"{self._description} {label}".strip(), total=event.total_steps)
            self._bar.update(event.step - self._bar.n)
            if event.objective_values:
                self._bar.set_postfix(objective=f"{sum(event.objective_values) / len(event.objective_values):.3g}")

    def _open(self, description: str, total: int | None) -> None:
        self.close()
        self._bar = self._tqdm(total=total, desc=description, unit="step", leave=True)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
