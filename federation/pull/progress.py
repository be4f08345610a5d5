"""The progress bar `mcpfed pull` shows: bytes verified, overall rate, and each holder's rate or fate."""

from __future__ import annotations

from types import TracebackType

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TaskID, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from federation.pull.download import PullReport

__all__ = ["PullBar"]


class PullBar:
    """`with PullBar(console, label) as bar:` then hand `bar.show` to `pull_model(on_progress=...)`.

    `quiet_until_pulling`: the bar appears only at the first report, so `serve` with a model already on
    disk (or a path that does not exist, which is refused as such) shows none; `mcpfed pull` shows it at once.
    """

    def __init__(self, console: Console, label: str, *, quiet_until_pulling: bool = False) -> None:
        self._progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[holders]}"),
            console=console,
            transient=False,
        )
        self._task: TaskID | None = None
        self._label = label
        self._quiet = quiet_until_pulling

    def __enter__(self) -> PullBar:
        if not self._quiet:
            self._start()
        return self

    def _start(self) -> None:
        self._progress.__enter__()
        self._task = self._progress.add_task(self._label, total=None, holders="finding holders…")

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._task is not None:
            self._progress.__exit__(exc_type, exc, tb)

    def show(self, report: PullReport) -> None:
        if self._task is None:
            self._start()
        assert self._task is not None
        holders = "  ".join(
            f"{stats.name} {stats.rate / 1e6:.0f} MB/s ({stats.chunks})" if stats.state == "active" else f"{stats.name} {stats.state}"
            for stats in report.holders.values()
        )
        if report.resumed_chunks:
            holders += f"  [{report.resumed_chunks} chunks resumed]"
        self._progress.update(self._task, description=report.manifest.name, total=report.manifest.size, completed=report.verified_bytes, holders=holders)
