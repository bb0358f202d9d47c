"""Processes the harness starts (nginx, fhirbin), how it stops them, and RSS sampling.

Every server runs in its own session (``start_new_session``), so its process group holds the
server and everything it forks (nginx workers, granian workers): ``stop`` signals that group,
then kills, by pid, any descendant seen while it ran that is somehow still alive. A Ctrl-C in the
terminal reaches only the harness, which then stops the servers from its ``finally``.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import statistics
import subprocess
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType

import psutil
from client import HttpError, request

MIB = 1 << 20


class HarnessError(Exception):
    """The harness could not do its job (a server did not start, a request failed)."""


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class ManagedProcess:
    """A server subprocess in its own process group, with its output in a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        *,
        log: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.argv = list(argv)
        self.log = log
        self.env = dict(env) if env is not None else None
        self.cwd = cwd
        self.popen: subprocess.Popen[bytes] | None = None
        self._seen: dict[int, psutil.Process] = {}

    @property
    def pid(self) -> int:
        if self.popen is None:
            raise HarnessError(f"{self.name} is not running")
        return self.popen.pid

    def start(self) -> None:
        with self.log.open("wb") as sink:
            self.popen = subprocess.Popen(  # noqa: S603 - fixed argv, no shell
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=sink,
                stderr=subprocess.STDOUT,
                env=self.env,
                cwd=self.cwd,
                start_new_session=True,
            )

    def wait(self, timeout: float) -> int | None:
        """Wait for the process to exit by itself; its exit code, or None if it did not."""
        if self.popen is None:
            return None
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def alive(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def processes(self) -> list[psutil.Process]:
        """The server process and all its descendants (remembered for ``stop``)."""
        try:
            root = psutil.Process(self.pid)
            found = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        for proc in found:
            self._seen.setdefault(proc.pid, proc)
        return found

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def wait_http(self, host: str, port: int, path: str, timeout: float = 60.0) -> None:
        """Wait until ``GET path`` answers 200; fail if the process exits first."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        while time.monotonic() < deadline:
            if not self.alive():
                raise HarnessError(
                    f"{self.name} exited with {self.popen.returncode if self.popen else '?'} "
                    f"before answering; log {self.log}:\n{self.log_tail()}"
                )
            try:
                answer = request(host, port, "GET", path, timeout=5)
                if answer.status == 200:
                    self.processes()
                    return
                last = f"status {answer.status}"
            except HttpError as exc:
                last = str(exc)
            time.sleep(0.1)
        raise HarnessError(
            f"{self.name} did not answer GET {path} within {timeout:.0f} s ({last}); "
            f"log {self.log}:\n{self.log_tail()}"
        )

    def stop(self, timeout: float = 15.0) -> None:
        """Stop the whole process group: SIGTERM, then SIGKILL; then any stragglers by pid."""
        if self.popen is None:
            return
        with contextlib.suppress(psutil.Error):
            self.processes()
        pgid = self.popen.pid  # start_new_session: the group id is the leader's pid
        if self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, signal.SIGTERM)
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pgid, signal.SIGKILL)
                self.popen.wait(timeout)
        # Workers may outlive their leader for a moment; give them the same deadline.
        leftovers = [p for p in self._seen.values() if _running(p)]
        if leftovers:
            _gone, alive = psutil.wait_procs(leftovers, timeout=timeout)
            for proc in alive:
                with contextlib.suppress(psutil.Error):
                    proc.kill()
            psutil.wait_procs(alive, timeout=5)
        self.popen = None


def _running(proc: psutil.Process) -> bool:
    try:
        return proc.is_running() and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


@dataclass
class RssReport:
    """Resident set size of a server (its process plus every worker), in bytes."""

    baseline: int  # sum over the processes, idle, just before the measurement
    peak: int  # highest sum seen while it ran
    peak_process_growth: int  # the largest growth of any single process over its own baseline
    samples: int
    interval_s: float
    processes: int

    @property
    def growth(self) -> int:
        return max(0, self.peak - self.baseline)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "baseline_mib": round(self.baseline / MIB, 1),
            "peak_mib": round(self.peak / MIB, 1),
            "growth_mib": round(self.growth / MIB, 1),
            "peak_single_process_growth_mib": round(self.peak_process_growth / MIB, 1),
            "processes": self.processes,
            "samples": self.samples,
            "interval_ms": round(self.interval_s * 1000, 1),
        }


@dataclass
class RssSampler:
    """Samples the RSS of a server and its workers every ``interval`` seconds in a thread.

    Use as a context manager around the transfers; ``report()`` afterwards. The baseline is
    the median of a few idle samples taken on entry.
    """

    server: ManagedProcess
    interval: float = 0.01
    _procs: list[psutil.Process] = field(default_factory=list)
    _baseline: dict[int, int] = field(default_factory=dict)
    _peak_sum: int = 0
    _peak_each: dict[int, int] = field(default_factory=dict)
    _samples: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def _sample(self) -> dict[int, int]:
        rss: dict[int, int] = {}
        for proc in self._procs:
            with contextlib.suppress(psutil.Error):
                rss[proc.pid] = proc.memory_info().rss
        return rss

    def __enter__(self) -> RssSampler:
        self._procs = self.server.processes()
        if not self._procs:
            raise HarnessError(f"{self.server.name} is not running")
        idle: list[dict[int, int]] = []
        for _ in range(5):
            idle.append(self._sample())
            time.sleep(0.02)
        self._baseline = {
            pid: int(statistics.median(s.get(pid, 0) for s in idle)) for pid in idle[0]
        }
        self._peak_sum = sum(self._baseline.values())
        self._peak_each = dict(self._baseline)
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            rss = self._sample()
            self._samples += 1
            self._peak_sum = max(self._peak_sum, sum(rss.values()))
            for pid, value in rss.items():
                self._peak_each[pid] = max(self._peak_each.get(pid, 0), value)
            self._stop.wait(self.interval)

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def report(self) -> RssReport:
        growth_each = [
            peak - self._baseline.get(pid, peak) for pid, peak in self._peak_each.items()
        ]
        return RssReport(
            baseline=sum(self._baseline.values()),
            peak=self._peak_sum,
            peak_process_growth=max([0, *growth_each]),
            samples=self._samples,
            interval_s=self.interval,
            processes=len(self._procs),
        )
