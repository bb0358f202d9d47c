"""What a result is worth comparing against: the machine, the commit and the versions."""

from __future__ import annotations

import os
import platform
import re
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

import psutil


def machine_info() -> dict[str, object]:
    cpu_model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu_model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    os_name = platform.system()
    try:
        release = Path("/etc/os-release").read_text()
        found = re.search(r'^PRETTY_NAME="?([^"\n]*)"?', release, re.MULTILINE)
        if found:
            os_name = found.group(1)
    except OSError:
        pass
    return {
        "cpu_model": cpu_model,
        "cores": os.cpu_count(),
        "cores_usable": len(os.sched_getaffinity(0)),
        "memory_bytes": psutil.virtual_memory().total,
        "memory_gib": round(psutil.virtual_memory().total / (1 << 30), 1),
        "kernel": platform.release(),
        "os": os_name,
    }


def load_info(sample_seconds: float = 1.0) -> dict[str, Any]:
    """Load averages and how busy the CPUs are right now (before/after the harness's work)."""
    load1, load5, load15 = os.getloadavg()
    return {
        "loadavg": [round(load1, 2), round(load5, 2), round(load15, 2)],
        "cpu_busy_percent": psutil.cpu_percent(interval=sample_seconds),
    }


def git_commit(repo: Path) -> str | None:
    """HEAD's commit, read from the .git folder (no git binary needed, nothing written)."""
    git = repo / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: <path>"
            git = (repo / git.read_text().split(":", 1)[1].strip()).resolve()
        common = git
        if (git / "commondir").is_file():
            common = (git / (git / "commondir").read_text().strip()).resolve()
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref:"):
            return head
        ref = head.split(":", 1)[1].strip()
        for base in (git, common):
            if (base / ref).is_file():
                return (base / ref).read_text().strip()
        packed = common / "packed-refs"
        if packed.is_file():
            for line in packed.read_text().splitlines():
                sha, _, name = line.partition(" ")
                if name == ref:
                    return sha
    except OSError:
        return None
    return None


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def _command_version(argv: list[str], pattern: str) -> str | None:
    try:
        done = subprocess.run(  # noqa: S603 - fixed argv
            argv, capture_output=True, text=True, timeout=10, check=False
        )
    except OSError:
        return None
    found = re.search(pattern, done.stdout + done.stderr)
    return found.group(1) if found else None


def versions(nginx: str, wrk: str) -> dict[str, str | None]:
    return {
        "python": platform.python_version(),
        "python_implementation": sys.implementation.name,
        "fhirbin": _version("fhirbin"),
        "granian": _version("granian"),
        "starlette": _version("starlette"),
        "psutil": _version("psutil"),
        "nginx": _command_version([nginx, "-v"], r"nginx/(\S+)"),
        "wrk": _command_version([wrk, "-v"], r"wrk (\S+)"),
    }


class OtherCpu:
    """CPU time spent during the run by everything that is not the harness or its children.

    System-wide busy time (user + nice + system, from /proc/stat) minus the CPU time of this
    process and of every child it has waited for (wrk, nginx and fhirbin with their workers,
    which their own parents waited for). Read ``percent()`` only after the servers have stopped.
    """

    def __init__(self) -> None:
        self._wall = time.monotonic()
        self._system = psutil.cpu_times()
        self._own = os.times()

    def percent(self) -> dict[str, float]:
        wall = time.monotonic() - self._wall
        now, own = psutil.cpu_times(), os.times()
        busy = sum(getattr(now, f) - getattr(self._system, f) for f in ("user", "nice", "system"))
        ours = sum(
            getattr(own, f) - getattr(self._own, f)
            for f in ("user", "system", "children_user", "children_system")
        )
        capacity = wall * (psutil.cpu_count() or 1)
        steal = getattr(now, "steal", 0.0) - getattr(self._system, "steal", 0.0)
        return {
            "other_cpu_percent": round(max(0.0, busy - ours) / capacity * 100, 1),
            "harness_cpu_percent": round(ours / capacity * 100, 1),
            "steal_percent": round(steal / capacity * 100, 1),
            "wall_s": round(wall, 1),
        }
