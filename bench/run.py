#!/usr/bin/env python3
"""fhirbin against nginx, on the same bytes, in the same run (issue 5). See bench/README.md.

Run with the project's venv python (``make bench`` does, after ``bench/setup.sh``)::

    .venv/bin/python bench/run.py                              # the full run: 1 GiB, 10 s per wrk
    .venv/bin/python bench/run.py --duration 2 --size 64M --json-size 16M   # a quick check

It never asserts a timing. It exits 0 when it measured everything (whatever the numbers), 2
when the harness itself failed (a server did not start, a request errored), 130 on Ctrl-C; it
stops every process it started in all three cases.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import json
import math
import os
import random
import re
import shutil
import signal
import statistics
import subprocess
import sys
import time
import urllib.parse
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import Any

import report
from client import HttpError, Response, request
from machine import OtherCpu, git_commit, load_info, machine_info, versions
from procs import MIB, HarnessError, ManagedProcess, RssReport, RssSampler, free_port
from pyspy import Profile, find_py_spy, recorder

BENCH = Path(__file__).resolve().parent
REPO = BENCH.parent
HOST = "127.0.0.1"  # loopback only: both servers listen here and nothing else is contacted
KIB = 1 << 10
GIB = 1 << 30
SCOPE = "system/Binary.cruds"
FHIR_JSON = "application/fhir+json"
BUSY_PERCENT = 10.0  # other processes' share of the CPUs above which the results get a note

NGINX_CONF = """\
# Written by bench/run.py for one run: a plain static file server as the yardstick.
{user}worker_processes {workers};
daemon off;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{
    worker_connections 4096;
}}
http {{
    access_log off;
    sendfile on;
    default_type application/octet-stream;
    client_body_temp_path {prefix}/client_body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    server {{
        listen {host}:{port};
        root {root};
    }}
}}
"""


def parse_size(text: str) -> int:
    """``1G``, ``64M``, ``512K``, ``100MiB`` or a byte count (binary units throughout)."""
    found = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not found:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 1G, 64M, 512K)")
    unit = {"": 1, "K": KIB, "M": MIB, "G": GIB}[found.group(2).upper()]
    size = int(found.group(1)) * unit
    if size < 2 * MIB:
        raise argparse.ArgumentTypeError("sizes below 2 MiB make no sense here")
    return size


def human_size(size: int) -> str:
    for unit, name in ((GIB, "GiB"), (MIB, "MiB"), (KIB, "KiB")):
        if size >= unit and size % unit == 0:
            return f"{size // unit} {name}"
    return f"{size} B"


@dataclass
class Config:
    size: int
    json_size: int
    slice: int
    duration: float
    warmup: float
    threads: int
    connections: int
    wrk_timeout: float
    runs: int
    workers: int
    fhirbin: str
    nginx: str
    wrk: str
    results_dir: Path
    keep_tmp: bool
    label: str
    profile: bool
    render: Path | None


def parse_args(argv: Sequence[str] | None) -> Config:
    cores = len(os.sched_getaffinity(0))
    parser = argparse.ArgumentParser(
        description="Benchmark fhirbin against nginx on the same machine (see bench/README.md)."
    )
    parser.add_argument("--size", type=parse_size, default=GIB, help="large file (default 1G)")
    parser.add_argument(
        "--json-size",
        type=parse_size,
        default=100 * MIB,
        help="file read in the FHIR JSON (base64) form (default 100M)",
    )
    parser.add_argument(
        "--slice", type=parse_size, default=MIB, help="Range read slice (default 1M)"
    )
    parser.add_argument(
        "--duration", type=float, default=10.0, help="seconds per wrk run (default 10)"
    )
    parser.add_argument(
        "--warmup", type=float, default=1.0, help="unmeasured wrk seconds first (default 1)"
    )
    parser.add_argument("--threads", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument("--connections", type=int, default=64, help="wrk connections (64)")
    parser.add_argument(
        "--wrk-timeout", type=float, default=10.0, help="wrk per-request timeout, s (default 10)"
    )
    parser.add_argument(
        "--runs", type=int, default=3, help="runs of each large transfer; median reported (3)"
    )
    parser.add_argument(
        "--workers", type=int, default=cores, help=f"fhirbin workers (default: cores = {cores})"
    )
    parser.add_argument(
        "--fhirbin",
        default=str(REPO / ".venv" / "bin" / "fhirbin"),
        help="the fhirbin command (default: the project venv's)",
    )
    parser.add_argument("--nginx", default=shutil.which("nginx") or "/usr/sbin/nginx")
    parser.add_argument("--wrk", default=shutil.which("wrk") or "/usr/bin/wrk")
    parser.add_argument(
        "--results-dir", type=Path, default=BENCH / "results", help="default bench/results"
    )
    parser.add_argument(
        "--keep-tmp", action="store_true", help="keep bench/tmp/run-* (files, logs) afterwards"
    )
    parser.add_argument("--label", default="", help="a free-text note stored with the results")
    parser.add_argument(
        "--render",
        type=Path,
        metavar="RESULTS.json",
        help="measure nothing: rewrite the .md, .png and latest.md of an earlier run's JSON",
    )
    parser.add_argument(
        "--profile",
        action="store_true",
        help="also run py-spy on the fhirbin workers during an extra, unmeasured small-read run",
    )
    ns = parser.parse_args(argv)
    if ns.runs < 1 or ns.threads < 1 or ns.connections < ns.threads or ns.workers < 1:
        parser.error("runs, threads and workers must be >= 1; connections >= threads")
    if ns.duration <= 0 or ns.warmup < 0:
        parser.error("duration must be > 0 and warmup >= 0")
    if ns.slice >= ns.size:
        parser.error("--slice must be smaller than --size")
    return Config(
        size=ns.size,
        json_size=ns.json_size,
        slice=ns.slice,
        duration=ns.duration,
        warmup=ns.warmup,
        threads=ns.threads,
        connections=ns.connections,
        wrk_timeout=ns.wrk_timeout,
        runs=ns.runs,
        workers=ns.workers,
        fhirbin=ns.fhirbin,
        nginx=ns.nginx,
        wrk=ns.wrk,
        results_dir=ns.results_dir,
        keep_tmp=ns.keep_tmp,
        label=ns.label,
        profile=ns.profile,
        render=ns.render,
    )


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# --- test files -------------------------------------------------------------------------------


@dataclass
class Files:
    small: Path  # 1 KiB, a (fake) PDF
    medium: Path  # --json-size, read in the FHIR JSON form
    large: Path  # --size


def write_random(path: Path, size: int) -> None:
    block = 8 * MIB
    with path.open("wb") as out:
        left = size
        while left > 0:
            n = min(block, left)
            out.write(os.urandom(n))
            left -= n


def make_files(www: Path, cfg: Config) -> Files:
    www.mkdir(parents=True)
    small = www / "small.pdf"
    head, tail = b"%PDF-1.4\n%", b"\n%%EOF\n"
    small.write_bytes(head + os.urandom(KIB - len(head) - len(tail)) + tail)
    files = Files(small=small, medium=www / "medium.bin", large=www / "large.bin")
    write_random(files.medium, cfg.json_size)
    write_random(files.large, cfg.size)
    # nginx workers may run as another user when not root: let them read the folder.
    for path in (www, *www.iterdir()):
        path.chmod(0o755 if path.is_dir() else 0o644)
    return files


# --- servers ----------------------------------------------------------------------------------


def start_nginx(cfg: Config, prefix: Path, root: Path, workers: int) -> tuple[ManagedProcess, int]:
    prefix.mkdir(parents=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    conf.write_text(
        NGINX_CONF.format(
            # As root, nginx would switch its workers to "nobody"; keep them able to read the tree.
            user="user root;\n" if os.geteuid() == 0 else "",
            workers=workers,
            prefix=prefix,
            host=HOST,
            port=port,
            root=root,
        )
    )
    argv = [cfg.nginx, "-p", f"{prefix}/", "-c", str(conf), "-e", str(prefix / "error.log")]
    server = ManagedProcess("nginx", argv, log=prefix / "stdout.log")
    server.start()
    server.wait_http(HOST, port, "/small.pdf", timeout=30)
    return server, port


def supports_flag(command: str, subcommand: Sequence[str], flag: str) -> bool:
    done = subprocess.run(  # noqa: S603 - fixed argv
        [command, *subcommand, "--help"], capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise HarnessError(f"{command} {' '.join(subcommand)} --help failed:\n{done.stderr}")
    return flag in done.stdout


@dataclass
class Fhirbin:
    server: ManagedProcess
    port: int
    data_dir: Path
    workers_via: str
    client_id: str = ""
    client_secret: str = ""

    @property
    def base_path(self) -> str:
        return "/fhir"

    @property
    def base_url(self) -> str:
        return f"http://{HOST}:{self.port}/fhir"

    def token(self) -> str:
        """A fresh access token (tokens live 5 minutes by default; each measurement gets one)."""
        user = urllib.parse.quote_plus(self.client_id)
        password = urllib.parse.quote_plus(self.client_secret)
        basic = base64.b64encode(f"{user}:{password}".encode()).decode("ascii")
        answer = request(
            HOST,
            self.port,
            "POST",
            f"{self.base_path}/auth/token",
            {
                "Authorization": f"Basic {basic}",
                "Content-Type": "application/x-www-form-urlencoded",
                "Accept": "application/json",
            },
            body=b"grant_type=client_credentials",
            keep_body=True,
            timeout=30,
        )
        if answer.status != 200:
            raise HarnessError(f"token request: {answer.status} {answer.body[:500]!r}")
        token: str = json.loads(answer.body)["access_token"]
        return token

    def upload(self, path: Path, content_type: str, token: str) -> tuple[str, Response]:
        answer = request(
            HOST,
            self.port,
            "POST",
            f"{self.base_path}/Binary",
            {"Authorization": f"Bearer {token}", "Content-Type": content_type},
            body_file=path,
            keep_body=True,
        )
        if answer.status != 201:
            raise HarnessError(f"POST Binary ({path.name}): {answer.status} {answer.body[:500]!r}")
        found = re.search(r"/Binary/([A-Za-z0-9\-.]{1,64})(?:/|$)", answer.header("location"))
        if not found:
            raise HarnessError(f"POST Binary: no id in Location {answer.header('location')!r}")
        return found.group(1), answer


def start_fhirbin(cfg: Config, data_dir: Path, log_path: Path) -> Fhirbin:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FHIRBIN_")}
    env["FHIRBIN_WORKERS"] = str(cfg.workers)  # used when --workers is not a flag (yet)
    env["FHIRBIN_MAX_BINARY_SIZE"] = str(max(GIB, cfg.size, cfg.json_size))
    argv = [cfg.fhirbin, "serve", "--host", HOST, "--port", str(port), "--data-dir", str(data_dir)]
    workers_via = "FHIRBIN_WORKERS"
    if supports_flag(cfg.fhirbin, ["serve"], "--workers"):
        argv += ["--workers", str(cfg.workers)]
        workers_via = "--workers"
    server = ManagedProcess("fhirbin", argv, log=log_path, env=env, cwd=REPO)
    server.start()
    fhirbin = Fhirbin(server=server, port=port, data_dir=data_dir, workers_via=workers_via)
    server.wait_http(HOST, port, "/fhir/metadata", timeout=90)
    created = subprocess.run(  # noqa: S603 - fixed argv
        [
            *(cfg.fhirbin, "client", "create", "bench", "--scope", SCOPE),
            *("--data-dir", str(data_dir), "--json"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
        cwd=REPO,
    )
    if created.returncode != 0:
        raise HarnessError(f"fhirbin client create failed:\n{created.stdout}{created.stderr}")
    client = json.loads(created.stdout)
    fhirbin.client_id, fhirbin.client_secret = client["client_id"], client["client_secret"]
    return fhirbin


def wait_for_workers(server: ManagedProcess, expected: int, timeout: float = 30.0) -> int:
    """How many server processes are up (the main one and its workers), once they settle."""
    deadline = time.monotonic() + timeout
    count = len(server.processes())
    while count < expected + 1 and time.monotonic() < deadline:
        time.sleep(0.2)
        count = len(server.processes())
    return count


# --- measuring --------------------------------------------------------------------------------


@dataclass
class Wrk:
    cfg: Config
    scripts: Path
    warmed: set[str] = field(default_factory=set)

    def script(self, name: str) -> Path:
        path = self.scripts / f"{name}.lua"
        if not path.exists():
            self.scripts.mkdir(parents=True, exist_ok=True)
            body = (BENCH / "wrk" / f"{name}.lua").read_text()
            path.write_text(body + "\n" + (BENCH / "wrk" / "report.lua").read_text())
        return path

    def run(
        self,
        url: str,
        *,
        script: str = "static",
        headers: Mapping[str, str] | None = None,
        args: Sequence[str] = (),
    ) -> dict[str, Any]:
        if self.cfg.warmup > 0:
            self.once(url, script, headers, args, self.cfg.warmup)
        return self.once(url, script, headers, args, self.cfg.duration)

    def once(
        self,
        url: str,
        script: str,
        headers: Mapping[str, str] | None,
        args: Sequence[str],
        duration: float,
    ) -> dict[str, Any]:
        cfg = self.cfg
        argv = [
            cfg.wrk,
            "-t",
            str(cfg.threads),
            "-c",
            str(cfg.connections),
            "-d",
            f"{max(1, round(duration))}s",
            "--timeout",
            f"{max(1, round(cfg.wrk_timeout))}s",
            "-s",
            str(self.script(script)),
        ]
        for name, value in (headers or {}).items():
            argv += ["-H", f"{name}: {value}"]
        argv.append(url)
        if args:
            argv += ["--", *args]
        try:
            done = subprocess.run(  # noqa: S603 - fixed argv
                argv, capture_output=True, text=True, timeout=duration + cfg.wrk_timeout + 60
            )
        except subprocess.TimeoutExpired as exc:
            raise HarnessError(f"wrk did not finish: {url}") from exc
        found = re.search(r"^BENCH_JSON (\{.*\})$", done.stdout, re.MULTILINE)
        if done.returncode != 0 or not found:
            raise HarnessError(
                f"wrk failed ({done.returncode}) on {url}:\n{done.stdout}{done.stderr}"
            )
        raw = json.loads(found.group(1))
        seconds = raw["duration_us"] / 1e6
        requests = raw["requests"]
        latency = raw["latency_us"]
        errors = raw["errors"]
        return {
            "requests": requests,
            "seconds": round(seconds, 3),
            "requests_per_s": round(requests / seconds, 1) if seconds else 0.0,
            "latency_ms": (
                {k: round(v / 1000, 3) for k, v in latency.items()} if latency else None
            ),
            "errors": errors,
            "error_count": sum(errors.values()),
            "bytes_per_response": round(raw["bytes"] / requests) if requests else None,
            "transfer_mib_s": round(raw["bytes"] / seconds / MIB, 1) if seconds else 0.0,
        }


def probe(
    port: int, target: str, headers: Mapping[str, str] | None = None, keep: bool = False
) -> Response:
    """One request, checked by the caller: confirms what the wrk run will be measuring."""
    return request(HOST, port, "GET", target, headers, keep_body=keep, timeout=120)


def describe(answer: Response) -> dict[str, Any]:
    return {
        "status": answer.status,
        "content_type": answer.header("content-type"),
        "content_range": answer.header("content-range") or None,
        "bytes": answer.nbytes,
    }


def expect(answer: Response, status: int, what: str, nbytes: int | None = None) -> None:
    if answer.status != status or (nbytes is not None and answer.nbytes != nbytes):
        raise HarnessError(
            f"{what}: expected {status} with {nbytes} bytes, got {answer.status} with "
            f"{answer.nbytes} bytes {answer.body[:300]!r}"
        )


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    if numerator is None or not denominator:
        return None
    return round(numerator / denominator, 4)


def mib_s(size: int, seconds: float) -> float:
    return round(size / seconds / MIB, 1)


def summarize(runs: list[float]) -> dict[str, Any]:
    return {
        "runs_mib_s": runs,
        "median_mib_s": round(statistics.median(runs), 1),
        "best_mib_s": max(runs),
    }


def worst(reports: list[RssReport]) -> dict[str, Any]:
    return max(reports, key=lambda r: r.growth).as_dict()


def sync_disk() -> None:
    """Flush every dirty page so one timed write does not pay for the previous one's writeback."""
    os.sync()
    time.sleep(0.5)


def fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def timed_copy(src: Path, dst: Path) -> float:
    """``cp`` (no reflink) plus fsync of the file and of its folder, as fhirbin does."""
    started = time.perf_counter()
    done = subprocess.run(  # noqa: S603 - fixed argv
        ["cp", "--reflink=never", str(src), str(dst)],  # noqa: S607 - coreutils cp from PATH
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise HarnessError(f"cp failed: {done.stderr}")
    fsync_path(dst)
    fsync_path(dst.parent)
    return time.perf_counter() - started


# --- the run ----------------------------------------------------------------------------------


@dataclass
class Run:
    cfg: Config
    tmp: Path
    nginx_port: int
    fhirbin: Fhirbin
    files: Files
    wrk: Wrk
    notes: list[str]
    ids: dict[str, str] = field(default_factory=dict)

    def auth(self, extra: Mapping[str, str] | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.fhirbin.token()}", **(extra or {})}

    # d. upload (first: its first run creates the large Binary the reads use)
    def upload(self) -> dict[str, Any]:
        cfg, fb = self.cfg, self.fhirbin
        copies = self.tmp / "copy"
        copies.mkdir()
        fhirbin_runs: list[float] = []
        copy_runs: list[float] = []
        rss: list[RssReport] = []
        for i in range(cfg.runs):
            log(f"upload {human_size(cfg.size)}: run {i + 1}/{cfg.runs}")
            token = fb.token()
            sync_disk()
            with RssSampler(fb.server) as sampler:
                binary_id, answer = fb.upload(self.files.large, "application/octet-stream", token)
            rss.append(sampler.report())
            fhirbin_runs.append(mib_s(cfg.size, answer.seconds))
            self.ids.setdefault("large", binary_id)
            sync_disk()
            target = copies / f"large-{i}.bin"
            copy_runs.append(mib_s(cfg.size, timed_copy(self.files.large, target)))
            target.unlink()
        fhirbin = summarize(fhirbin_runs)
        copy = summarize(copy_runs)
        return {
            "fhirbin": fhirbin,
            "copy": copy,
            "copy_method": (
                "cp --reflink=never SRC DST, then fsync(DST) and fsync(its folder), timed "
                "together; os.sync() before every timed upload and copy; source in page cache"
            ),
            "ratio": ratio(fhirbin["median_mib_s"], copy["median_mib_s"]),
            "ratio_best": ratio(fhirbin["best_mib_s"], copy["best_mib_s"]),
            "rss": worst(rss),
        }

    def setup_small(self) -> None:
        token = self.fhirbin.token()
        self.ids["small"], _ = self.fhirbin.upload(self.files.small, "application/pdf", token)
        self.ids["medium"], _ = self.fhirbin.upload(
            self.files.medium, "application/octet-stream", token
        )

    # a. small raw read
    def small_raw(self) -> dict[str, Any]:
        path = f"/fhir/Binary/{self.ids['small']}"
        auth = self.auth()
        answer = probe(self.fhirbin.port, path, auth)
        expect(answer, 200, "fhirbin small raw read", KIB)
        nginx_answer = probe(self.nginx_port, "/small.pdf")
        expect(nginx_answer, 200, "nginx small read", KIB)
        log("small raw read: nginx")
        nginx = self.wrk.run(f"http://{HOST}:{self.nginx_port}/small.pdf")
        log("small raw read: fhirbin")
        fhirbin = self.wrk.run(f"{self.fhirbin.base_url}/Binary/{self.ids['small']}", headers=auth)
        return {
            "fhirbin": fhirbin,
            "nginx": nginx,
            "probe": {"fhirbin": describe(answer), "nginx": describe(nginx_answer)},
            "ratio": ratio(fhirbin["requests_per_s"], nginx["requests_per_s"]),
        }

    def profile_small_read(self, out_dir: Path, stem: str) -> dict[str, Any]:
        """py-spy on every worker during one more small-read wrk run (not a measurement)."""
        py_spy = find_py_spy()
        if py_spy is None:
            self.notes.append("--profile: py-spy not found (bench/setup.sh installs it).")
            return {}
        server = self.fhirbin.server
        workers = [p for p in server.processes() if p.pid != server.pid] or server.processes()
        url = f"{self.fhirbin.base_url}/Binary/{self.ids['small']}"
        auth = self.auth()
        out_dir.mkdir(parents=True, exist_ok=True)
        raws: list[Path] = []
        spies: list[ManagedProcess] = []
        log(f"profiling the small raw read with py-spy on {len(workers)} worker(s)")
        try:
            for proc in workers:
                raw = out_dir / f"{stem}-profile-small-read-{proc.pid}.txt"
                spy = recorder(
                    py_spy, proc.pid, self.cfg.duration, raw, self.tmp / f"py-spy-{proc.pid}.log"
                )
                spy.start()
                spies.append(spy)
                raws.append(raw)
            time.sleep(0.5)  # let py-spy attach before the load starts
            under_profiler = self.wrk.once(url, "static", auth, (), self.cfg.duration)
            for spy in spies:
                if spy.wait(self.cfg.duration + 30) != 0:
                    self.notes.append(f"--profile: {spy.name} failed: {spy.log_tail(5)}")
        finally:
            for spy in spies:
                spy.stop()
        profile = Profile.load(raws)
        summary = out_dir / f"{stem}-profile-small-read.md"
        summary.write_text(
            profile.markdown("py-spy profile of the small authenticated raw read")
            + "\nRaw collapsed stacks (flamegraph.pl, speedscope): "
            + ", ".join(f"`{raw.name}`" for raw in raws if raw.is_file())
            + "\n"
        )
        return {
            "summary": summary.name,
            "raw": [raw.name for raw in raws if raw.is_file()],
            "samples": profile.total,
            "top_self": [[name, round(share, 4)] for name, share in profile.top_self(10)],
            "top_inclusive": [
                [name, round(own, 4), round(inc, 4)] for name, own, inc in profile.top_inclusive()
            ],
            "requests_per_s_under_profiler": under_profiler["requests_per_s"],
        }

    # b. FHIR JSON read and search of the 1 KiB Binary
    def small_fhir(self, nginx_rps: float) -> dict[str, Any]:
        out: dict[str, Any] = {}
        small = self.ids["small"]
        for name, path, extra in (
            ("fhir_json_read", f"/fhir/Binary/{small}", {"Accept": FHIR_JSON}),
            ("search_id", f"/fhir/Binary?_id={small}", {}),
        ):
            auth = self.auth(extra)
            answer = probe(self.fhirbin.port, path, auth, keep=True)
            expect(answer, 200, f"fhirbin {name}")
            if FHIR_JSON not in answer.header("content-type"):
                raise HarnessError(f"{name}: not FHIR JSON: {answer.header('content-type')}")
            log(f"{name.replace('_', ' ')}: fhirbin")
            result = self.wrk.run(f"{self.fhirbin.base_url}{path[len('/fhir') :]}", headers=auth)
            out[name] = {
                "fhirbin": result,
                "probe": describe(answer),
                "ratio": ratio(result["requests_per_s"], nginx_rps),
                "ratio_to": "nginx, 1 KiB static file (small_raw.nginx)",
            }
        return out

    # c. large native download
    def download(self) -> dict[str, Any]:
        cfg, fb = self.cfg, self.fhirbin
        path = f"/fhir/Binary/{self.ids['large']}"
        fhirbin_runs: list[float] = []
        nginx_runs: list[float] = []
        rss: list[RssReport] = []
        # One unmeasured download from each first: nginx's file is in the page cache (the
        # harness just wrote it), fhirbin's may not be (uploads write past 16 MiB with
        # O_DIRECT), and the comparison is of serving, not of the disk.
        log(f"download {human_size(cfg.size)}: warm-up (unmeasured)")
        expect(probe(fb.port, path, self.auth()), 200, "fhirbin warm-up download", cfg.size)
        expect(probe(self.nginx_port, "/large.bin"), 200, "nginx warm-up download", cfg.size)
        for i in range(cfg.runs):
            log(f"download {human_size(cfg.size)}: run {i + 1}/{cfg.runs}")
            auth = self.auth()
            with RssSampler(fb.server) as sampler:
                answer = probe(fb.port, path, auth)
            rss.append(sampler.report())
            expect(answer, 200, "fhirbin download", cfg.size)
            fhirbin_runs.append(mib_s(cfg.size, answer.seconds))
            answer = probe(self.nginx_port, "/large.bin")
            expect(answer, 200, "nginx download", cfg.size)
            nginx_runs.append(mib_s(cfg.size, answer.seconds))
        fhirbin, nginx = summarize(fhirbin_runs), summarize(nginx_runs)
        return {
            "fhirbin": fhirbin,
            "nginx": nginx,
            "ratio": ratio(fhirbin["median_mib_s"], nginx["median_mib_s"]),
            "ratio_best": ratio(fhirbin["best_mib_s"], nginx["best_mib_s"]),
            "rss": worst(rss),
        }

    # e. FHIR JSON (base64) read of the medium file
    def fhir_json_large(self) -> dict[str, Any]:
        cfg, fb = self.cfg, self.fhirbin
        path = f"/fhir/Binary/{self.ids['medium']}"
        base64_len = 4 * math.ceil(cfg.json_size / 3)
        content_runs: list[float] = []
        wire_runs: list[float] = []
        nginx_runs: list[float] = []
        rss: list[RssReport] = []
        wire_bytes = 0
        for i in range(cfg.runs):
            log(f"FHIR JSON read {human_size(cfg.json_size)}: run {i + 1}/{cfg.runs}")
            auth = self.auth({"Accept": FHIR_JSON})
            with RssSampler(fb.server) as sampler:
                answer = probe(fb.port, path, auth)
            rss.append(sampler.report())
            expect(answer, 200, "fhirbin FHIR JSON read")
            if answer.nbytes < base64_len or FHIR_JSON not in answer.header("content-type"):
                raise HarnessError(
                    f"FHIR JSON read: {answer.nbytes} bytes of "
                    f"{answer.header('content-type')!r}, expected >= {base64_len} of FHIR JSON"
                )
            wire_bytes = answer.nbytes
            content_runs.append(mib_s(cfg.json_size, answer.seconds))
            wire_runs.append(mib_s(answer.nbytes, answer.seconds))
            answer = probe(self.nginx_port, "/medium.bin")
            expect(answer, 200, "nginx medium download", cfg.json_size)
            nginx_runs.append(mib_s(cfg.json_size, answer.seconds))
        content, nginx = summarize(content_runs), summarize(nginx_runs)
        return {
            "fhirbin": content,
            "fhirbin_wire": summarize(wire_runs),
            "wire_bytes": wire_bytes,
            "nginx_raw": nginx,
            "ratio": ratio(content["median_mib_s"], nginx["median_mib_s"]),
            "ratio_to": "nginx serving the raw file (the JSON form has 4/3 the bytes to send)",
            "rss": worst(rss),
        }

    # f. Range reads of --slice slices at random offsets
    def range_reads(self) -> dict[str, Any]:
        cfg = self.cfg
        path = f"/fhir/Binary/{self.ids['large']}"
        first = random.randrange(cfg.size - cfg.slice)  # noqa: S311 - not for security
        range_header = {"Range": f"bytes={first}-{first + cfg.slice - 1}"}
        expected_range = f"bytes {first}-{first + cfg.slice - 1}/{cfg.size}"
        auth = self.auth()
        out: dict[str, Any] = {}
        supported: dict[str, bool] = {}
        for name, port, target, headers in (
            ("nginx", self.nginx_port, "/large.bin", {}),
            ("fhirbin", self.fhirbin.port, path, auth),
        ):
            answer = probe(port, target, {**headers, **range_header})
            if answer.status not in (200, 206):
                raise HarnessError(f"{name} Range probe: status {answer.status}")
            supported[name] = (
                answer.status == 206
                and answer.nbytes == cfg.slice
                and answer.header("content-range") == expected_range
            )
            log(f"Range reads of {human_size(cfg.slice)}: {name}")
            url = f"http://{HOST}:{port}{target}"
            result = self.wrk.run(
                url, script="range", headers=headers, args=[str(cfg.size), str(cfg.slice)]
            )
            out[name] = {**result, "probe": describe(answer), "range_supported": supported[name]}
        comparable = supported["fhirbin"] and supported["nginx"]
        if not supported["fhirbin"]:
            status = out["fhirbin"]["probe"]["status"]
            self.notes.append(
                f"Range: fhirbin answered a Range request with {status} "
                f"({out['fhirbin']['probe']['bytes']} bytes) instead of 206 with "
                f"{cfg.slice} bytes: Range is not supported (yet), so its Range req/s are "
                "whole-file downloads and the ratio is not comparable."
            )
        return {
            **out,
            "range_supported": supported["fhirbin"],
            "ratio": (
                ratio(out["fhirbin"]["requests_per_s"], out["nginx"]["requests_per_s"])
                if comparable
                else None
            ),
        }


TARGETS: list[tuple[str, str, str, float, Callable[[dict[str, Any]], float | None]]] = [
    (
        "small_raw_ratio",
        "small authenticated raw read, req/s vs nginx",
        ">=",
        0.20,
        lambda m: m["small_raw"]["ratio"],
    ),
    (
        "small_raw_p99_ms",
        "small raw read p99 at 64 connections, ms",
        "<",
        20.0,
        lambda m: (m["small_raw"]["fhirbin"]["latency_ms"] or {}).get("p99"),
    ),
    (
        "download_ratio",
        "large download, MiB/s vs nginx",
        ">=",
        0.70,
        lambda m: m["download"]["ratio"],
    ),
    (
        "download_rss_growth_mib",
        "peak RSS growth while downloading, MiB",
        "<",
        64.0,
        lambda m: m["download"]["rss"]["growth_mib"],
    ),
    (
        "upload_rss_growth_mib",
        "peak RSS growth while uploading, MiB",
        "<",
        64.0,
        lambda m: m["upload"]["rss"]["growth_mib"],
    ),
    (
        "fhir_json_rss_growth_mib",
        "peak RSS growth serving the FHIR JSON form, MiB",
        "<",
        64.0,
        lambda m: m["fhir_json_large"]["rss"]["growth_mib"],
    ),
    (
        "upload_ratio",
        "large upload, MiB/s vs cp + fsync on the same disk",
        ">=",
        0.50,
        lambda m: m["upload"]["ratio"],
    ),
]


def check_targets(measurements: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for key, what, op, bound, get in TARGETS:
        value = get(measurements)
        met = None if value is None else (value >= bound if op == ">=" else value < bound)
        out.append(
            {"key": key, "what": what, "op": op, "target": bound, "value": value, "met": met}
        )
    return out


def wrk_notes(measurements: dict[str, Any], notes: list[str]) -> None:
    def check(name: str, result: dict[str, Any]) -> None:
        if result["error_count"]:
            notes.append(f"{name}: wrk counted errors {result['errors']} (status = non-2xx/3xx).")

    check("small raw read, fhirbin", measurements["small_raw"]["fhirbin"])
    check("small raw read, nginx", measurements["small_raw"]["nginx"])
    check("FHIR JSON read", measurements["fhir_json_read"]["fhirbin"])
    check("search _id", measurements["search_id"]["fhirbin"])
    check("Range reads, fhirbin", measurements["range"]["fhirbin"])
    check("Range reads, nginx", measurements["range"]["nginx"])


def run(cfg: Config) -> tuple[dict[str, Any], dict[str, Path]]:
    for tool in (cfg.nginx, cfg.wrk, cfg.fhirbin):
        if not (Path(tool).is_file() and os.access(tool, os.X_OK)):
            raise HarnessError(f"{tool} not found: run bench/setup.sh (make bench does) first")
    started = datetime.now(UTC)
    commit = git_commit(REPO)
    stem = report.file_stem(started.isoformat(timespec="seconds"), commit)
    log("checking how busy the machine is (1 s)")
    load_before = load_info(1.0)
    other_cpu = OtherCpu()
    tmp = BENCH / "tmp" / f"run-{started:%Y%m%dT%H%M%SZ}-{os.getpid()}"
    tmp.mkdir(parents=True)
    servers: list[ManagedProcess] = []
    notes: list[str] = []
    finished = False
    try:
        log(f"writing test files to {tmp / 'www'}")
        files = make_files(tmp / "www", cfg)
        sync_disk()
        log(f"starting nginx ({cfg.workers} workers) and fhirbin ({cfg.workers} workers)")
        nginx, nginx_port = start_nginx(cfg, tmp / "nginx", tmp / "www", cfg.workers)
        servers.append(nginx)
        fhirbin = start_fhirbin(cfg, tmp / "fhirbin-data", tmp / "fhirbin.log")
        servers.append(fhirbin.server)
        processes = wait_for_workers(fhirbin.server, cfg.workers)
        if processes < cfg.workers + 1:
            notes.append(
                f"fhirbin runs {processes} process(es) for {cfg.workers} workers asked "
                f"(via {fhirbin.workers_via})."
            )
        bench = Run(
            cfg=cfg,
            tmp=tmp,
            nginx_port=nginx_port,
            fhirbin=fhirbin,
            files=files,
            wrk=Wrk(cfg, tmp / "wrk"),
            notes=notes,
        )
        measurements: dict[str, Any] = {}
        profile: dict[str, Any] = {}
        bench.setup_small()
        measurements["upload"] = bench.upload()
        measurements["small_raw"] = bench.small_raw()
        if cfg.profile:
            profile = bench.profile_small_read(cfg.results_dir, stem)
        measurements.update(bench.small_fhir(measurements["small_raw"]["nginx"]["requests_per_s"]))
        measurements["download"] = bench.download()
        measurements["fhir_json_large"] = bench.fhir_json_large()
        measurements["range"] = bench.range_reads()
        server_processes = len(fhirbin.server.processes())
        finished = True
    finally:
        for server in reversed(servers):
            log(f"stopping {server.name}")
            server.stop()
        if cfg.keep_tmp:
            log(f"kept {tmp}")
        elif finished:
            shutil.rmtree(tmp, ignore_errors=True)
        else:
            # Keep the logs (fhirbin.log, nginx/error.log) to debug from; drop the bulky data.
            for bulky in ("www", "fhirbin-data", "copy"):
                shutil.rmtree(tmp / bulky, ignore_errors=True)
            log(f"logs kept in {tmp}")
    during = other_cpu.percent()
    load_after = load_info(1.0)
    wrk_notes(measurements, notes)
    if (
        during["other_cpu_percent"] > BUSY_PERCENT
        or load_before["cpu_busy_percent"] > BUSY_PERCENT
        or during["steal_percent"] > BUSY_PERCENT
    ):
        notes.append(
            "The machine was not idle: other processes used "
            f"{during['other_cpu_percent']:g}% of the CPUs during the run "
            f"({load_before['cpu_busy_percent']:g}% in the second before it; "
            f"load average {load_before['loadavg'][0]:g} before"
            + (
                f"; hypervisor steal {during['steal_percent']:g}%"
                if during["steal_percent"] >= 1
                else ""
            )
            + "). Client and servers had less CPU than the machine has, so absolute numbers "
            "are low and ratios noisier; compare ratios from a quiet run."
        )
    results: dict[str, Any] = {
        "schema": 1,
        "started_utc": started.isoformat(timespec="seconds"),
        "finished_utc": datetime.now(UTC).isoformat(timespec="seconds"),
        "commit": commit,
        "label": cfg.label,
        "machine": machine_info(),
        "load": {"before": load_before, "during": during, "after": load_after},
        "versions": versions(cfg.nginx, cfg.wrk),
        "config": {
            "size": cfg.size,
            "json_size": cfg.json_size,
            "slice": cfg.slice,
            "duration_s": cfg.duration,
            "warmup_s": cfg.warmup,
            "wrk_threads": cfg.threads,
            "wrk_connections": cfg.connections,
            "wrk_timeout_s": cfg.wrk_timeout,
            "runs": cfg.runs,
            "fhirbin_workers": cfg.workers,
            "fhirbin_workers_via": fhirbin.workers_via,
            "fhirbin_processes": server_processes,
            "nginx_workers": cfg.workers,
            "large_transfer_client": (
                "bench/client.py: one HTTP/1.1 request per connection, uploads with sendfile, "
                "downloads into a reused 1 MiB buffer; time = connect to last byte"
            ),
            "large_transfer_statistic": "median of runs (best also stored)",
        },
        "measurements": measurements,
        "targets": check_targets(measurements),
        "notes": notes,
        "profile": profile or None,
    }
    paths = report.write(results, cfg.results_dir)
    return results, paths


class Interrupted(KeyboardInterrupt):
    pass


def _on_signal(signum: int, _frame: FrameType | None) -> None:
    raise Interrupted(f"signal {signum}")


@contextlib.contextmanager
def signals_as_interrupts() -> Iterator[None]:
    """SIGTERM/SIGHUP unwind like Ctrl-C, so the ``finally`` that stops the servers runs."""
    previous = {sig: signal.signal(sig, _on_signal) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def main(argv: Sequence[str] | None = None) -> int:
    cfg = parse_args(argv)
    if cfg.render is not None:
        results = json.loads(cfg.render.read_text())
        paths = report.write(results, cfg.render.parent)
        print(report.markdown(results, chart_name=paths["png"].name))
        return 0
    try:
        with signals_as_interrupts():
            results, paths = run(cfg)
    except KeyboardInterrupt:
        log("interrupted; every process the harness started has been stopped")
        return 130
    except (HarnessError, HttpError) as exc:
        log(f"FAILED: {exc}")
        return 2
    print(report.markdown(results, chart_name=paths["png"].name))
    for kind, path in paths.items():
        log(f"wrote {kind}: {path.relative_to(REPO) if path.is_relative_to(REPO) else path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
