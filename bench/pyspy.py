"""``--profile``: py-spy on every fhirbin worker during an extra (unmeasured) small-read run.

py-spy records with ``--gil`` (only samples where a thread holds the GIL, i.e. Python CPU time,
not threads waiting on a queue) and ``--nonblocking`` (the workers are not paused to sample),
in the collapsed-stack format that flamegraph.pl and speedscope read. The summary names the
functions that cost the most, with line numbers folded away.
"""

from __future__ import annotations

import collections
import re
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path

from procs import ManagedProcess

_LINE = re.compile(r"^(.*) (\d+)$")
_LINENO = re.compile(r":\d+\)$")
NO_FRAME = "(no Python frame: granian's Rust side, or between calls)"
_APP_CODE = ("fhirbin/", "starlette/", "sqlalchemy/", "aiosqlite/", "jwt/", "anyio/", "structlog/")


def find_py_spy() -> str | None:
    beside = Path(sys.executable).parent / "py-spy"
    if beside.is_file():
        return str(beside)
    return shutil.which("py-spy")


def recorder(py_spy: str, pid: int, seconds: float, output: Path, log: Path) -> ManagedProcess:
    argv = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(max(1, round(seconds))),
        "--rate",
        "250",
        "--gil",
        "--nonblocking",
        "--format",
        "raw",
        "--output",
        str(output),
    ]
    return ManagedProcess(f"py-spy {pid}", argv, log=log)


def _frame(frame: str) -> str:
    return _LINENO.sub(")", frame.strip())


@dataclass
class Profile:
    """Samples per function (line numbers folded away): where it ran, and what it was under."""

    total: int
    own: collections.Counter[str]
    inclusive: collections.Counter[str]

    @classmethod
    def load(cls, paths: list[Path]) -> Profile:
        own: collections.Counter[str] = collections.Counter()
        inclusive: collections.Counter[str] = collections.Counter()
        total = 0
        for path in paths:
            if not path.is_file():
                continue
            for line in path.read_text(errors="replace").splitlines():
                found = _LINE.match(line)
                if not found:
                    continue
                count = int(found.group(2))
                frames = [_frame(f) for f in found.group(1).split(";") if f.strip()] or [NO_FRAME]
                total += count
                own[frames[-1]] += count
                for frame in set(frames):
                    inclusive[frame] += count
        return cls(total=total, own=own, inclusive=inclusive)

    def top_inclusive(self, top: int = 20) -> list[tuple[str, float, float]]:
        """(function, self share, inclusive share) of the request path's own code.

        Only frames of the application and the libraries it calls per request (_APP_CODE) are
        ranked: the server's scaffolding (granian, the event loop, click) is in every stack.
        """
        if not self.total:
            return []
        names = [
            name
            for name, _ in self.inclusive.most_common()
            if any(part in name for part in _APP_CODE) and "fhirbin/cli.py" not in name
        ]
        return [(n, self.own[n] / self.total, self.inclusive[n] / self.total) for n in names[:top]]

    def top_self(self, top: int = 10) -> list[tuple[str, float]]:
        if not self.total:
            return []
        return [(name, n / self.total) for name, n in self.own.most_common(top)]

    def markdown(self, title: str) -> str:
        lines = [
            f"### {title}",
            "",
            f"{self.total} samples of threads holding the GIL (Python CPU time), all workers.",
            "",
            "Highest self time:",
            "",
            "| self | function |",
            "|---:|---|",
        ]
        lines += [f"| {share:.1%} | `{name}` |" for name, share in self.top_self(12)]
        lines += [
            "",
            "Highest inclusive time in the application and its per-request libraries:",
            "",
            "| inclusive | self | function |",
            "|---:|---:|---|",
        ]
        lines += [
            f"| {inc:.1%} | {own:.1%} | `{name}` |" for name, own, inc in self.top_inclusive()
        ]
        return "\n".join(lines) + "\n"
