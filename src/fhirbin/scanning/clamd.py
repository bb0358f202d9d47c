"""An asyncio client for clamd's INSTREAM command (ClamAV, clamd(8) "COMMANDS").

Protocol, as documented in clamd(8) and the ClamAV manual ("Scanning: clamd"):

- connect to the unix socket (``LocalSocket``) or TCP port (``TCPSocket``);
- send ``zINSTREAM\\0`` (the ``z`` prefix: the command and the reply end with a NUL byte);
- send the data as chunks, each prefixed by its length as a 4-byte unsigned big-endian integer,
  and end the stream with a zero-length chunk (so an empty chunk must never be sent mid-stream);
- read one reply: ``stream: OK``, ``stream: <signature> FOUND`` or ``... ERROR``.

clamd stops reading and answers ``INSTREAM size limit exceeded. ERROR`` as soon as the stream
passes its ``StreamMaxLength`` (100 MiB by default in ClamAV 1.4, measured), then closes the
connection. The reply is read by a task started with the scan, so the answer is caught even when
the next write fails on the closed socket, and the scan stops sending as soon as it arrives.

Everything here raises :class:`ClamdError` subclasses; scanning/screener.py decides what they
mean for an upload.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from fhirbin.config import SettingsError

_TERMINATOR = b"\0\0\0\0"
_MAX_FRAME = 1 << 20  # chunk payloads are sent in frames of at most 1 MiB
_REPLY_LIMIT = 4096


class ClamdError(Exception):
    """clamd did not give a verdict."""


class ClamdUnreachable(ClamdError):
    """The connection to clamd could not be made (or timed out while connecting)."""


class ClamdFailed(ClamdError):
    """A scan had started and no verdict came: a timeout, a dropped connection, an ERROR."""


class ClamdTimeout(ClamdFailed):
    """clamd stopped reading the stream, or gave no verdict, within the timeout."""


class ClamdLimitExceeded(ClamdError):
    """The stream passed clamd's StreamMaxLength; clamd scanned nothing."""


@dataclass(frozen=True)
class ClamdAddress:
    """Where clamd listens: ``unix:///path/to/clamd.ctl`` or ``tcp://host:port``."""

    path: str | None = None
    host: str | None = None
    port: int | None = None

    @classmethod
    def parse(cls, url: str, setting: str = "FHIRBIN_CLAMAV") -> ClamdAddress:
        parts = urlsplit(url)
        if parts.scheme == "unix" and parts.path and not parts.netloc:
            return cls(path=parts.path)
        if parts.scheme == "tcp" and parts.hostname and not parts.path.strip("/"):
            try:
                port = parts.port
            except ValueError:
                port = None
            if port:
                return cls(host=parts.hostname, port=port)
        raise SettingsError(f"{setting}: {url!r} is neither unix:///path nor tcp://host:port")

    def __str__(self) -> str:
        if self.path is not None:
            return f"unix://{self.path}"
        host = f"[{self.host}]" if self.host and ":" in self.host else self.host
        return f"tcp://{host}:{self.port}"

    async def connect(self) -> socket.socket:
        """A connected non-blocking socket (every address a TCP host name resolves to is
        tried in turn)."""
        loop = asyncio.get_running_loop()
        if self.path is not None:
            targets: list[tuple[int, str | tuple[Any, ...]]] = [(socket.AF_UNIX, self.path)]
        else:
            infos = await loop.getaddrinfo(self.host, self.port, type=socket.SOCK_STREAM)
            targets = [(family, sockaddr) for family, _, _, _, sockaddr in infos]
        error: OSError = OSError(f"{self} has no address")
        for family, target in targets:
            sock = socket.socket(family, socket.SOCK_STREAM)
            sock.setblocking(False)
            try:
                await loop.sock_connect(sock, target)
            except BaseException as exc:
                sock.close()
                if not isinstance(exc, OSError):
                    raise
                error = exc
                continue
            return sock
        raise error


@dataclass(frozen=True)
class Verdict:
    """clamd's answer about a clean stream (``signature`` None) or an infected one."""

    signature: str | None = None

    @property
    def clean(self) -> bool:
        return self.signature is None


def parse_reply(raw: bytes) -> Verdict:
    """``stream: OK`` / ``stream: Name FOUND``; anything else raises."""
    text = raw.rstrip(b"\0").decode("utf-8", "replace").strip()
    body = text.partition(": ")[2] if text.startswith("stream:") else text
    body = body.strip()
    if body == "OK":
        return Verdict()
    if body.endswith(" FOUND"):
        return Verdict(body.removesuffix(" FOUND").strip() or "unknown")
    if "size limit exceeded" in text:
        raise ClamdLimitExceeded(text)
    raise ClamdFailed(f"clamd answered {text[:200]!r}")


class InstreamScan:
    """One INSTREAM scan: :meth:`open`, :meth:`feed` every chunk, then :meth:`verdict`.

    Always :meth:`close` it (``async with`` does), whatever happened. Plain non-blocking
    sockets rather than asyncio streams: when clamd answers "size limit exceeded" and resets
    the connection, a stream transport drops the answer still queued in the socket as soon as a
    write fails, while the socket itself hands it over before reporting the reset.
    """

    def __init__(self, sock: socket.socket, seconds: float) -> None:
        self._sock = sock
        self._timeout = seconds
        self._loop = asyncio.get_running_loop()
        self._reply = asyncio.ensure_future(self._read_reply())
        # The reply may fail or be cancelled without anyone awaiting it: mark it retrieved.
        self._reply.add_done_callback(_retrieve)
        self.sent = 0

    @classmethod
    async def open(cls, address: ClamdAddress, seconds: float) -> InstreamScan:
        """Connect and start an INSTREAM; every later step may take at most ``seconds``."""
        try:
            async with asyncio.timeout(seconds):
                sock = await address.connect()
                try:
                    await asyncio.get_running_loop().sock_sendall(sock, b"zINSTREAM\0")
                except BaseException:
                    sock.close()
                    raise
        except (OSError, TimeoutError) as exc:
            raise ClamdUnreachable(f"cannot reach clamd at {address}: {exc!r}") from exc
        return cls(sock, seconds)

    async def _read_reply(self) -> bytes:
        data = bytearray()
        while b"\0" not in data and len(data) < _REPLY_LIMIT:
            try:
                part = await self._loop.sock_recv(self._sock, _REPLY_LIMIT)
            except OSError:
                break
            if not part:
                break
            data += part
        return bytes(data)

    async def feed(self, chunk: bytes) -> None:
        """Send one chunk (an empty one is skipped: it would end the stream)."""
        if self._reply.done():
            await self._early_reply()
        view = memoryview(chunk)
        try:
            async with asyncio.timeout(self._timeout):
                for start in range(0, len(view), _MAX_FRAME):
                    frame = view[start : start + _MAX_FRAME]
                    await self._loop.sock_sendall(self._sock, struct.pack(">I", len(frame)))
                    await self._loop.sock_sendall(self._sock, frame)
        except TimeoutError as exc:
            raise ClamdTimeout("clamd stopped reading the stream (timeout)") from exc
        except OSError as exc:
            await self._early_reply(exc)
        self.sent += len(chunk)

    async def verdict(self) -> Verdict:
        """End the stream and wait (at most the timeout) for clamd's answer."""
        try:
            async with asyncio.timeout(self._timeout):
                if not self._reply.done():
                    await self._loop.sock_sendall(self._sock, _TERMINATOR)
                raw = await self._reply
        except TimeoutError as exc:
            raise ClamdTimeout("clamd gave no verdict in time") from exc
        except OSError as exc:
            await self._early_reply(exc)
            raise  # not reached: _early_reply always raises
        if not raw.endswith(b"\0"):
            raise ClamdFailed(f"clamd dropped the connection: {raw[:200]!r}")
        return parse_reply(raw)

    async def _early_reply(self, cause: BaseException | None = None) -> None:
        """clamd answered (or hung up) before the end of the stream: why?"""
        raw = b""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(min(self._timeout, 5.0)):
                raw = await asyncio.shield(self._reply)
        if raw.endswith(b"\0"):
            parse_reply(raw)  # raises ClamdLimitExceeded, or ClamdFailed for an ERROR
            raise ClamdFailed(f"clamd answered before the end of the stream: {raw[:200]!r}")
        raise ClamdFailed(f"clamd dropped the connection mid-stream: {cause!r}") from cause

    async def close(self) -> None:
        self._reply.cancel()
        await asyncio.wait([self._reply])  # never raises the task's own error
        self._sock.close()

    async def __aenter__(self) -> InstreamScan:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()


def _retrieve(task: asyncio.Future[bytes]) -> None:
    if not task.cancelled():
        task.exception()


async def ping(address: ClamdAddress, seconds: float = 5.0) -> bool:
    """clamd's ``zPING``: True when it answers ``PONG``."""
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(seconds):
            sock = await address.connect()
            try:
                await loop.sock_sendall(sock, b"zPING\0")
                return await loop.sock_recv(sock, 16) == b"PONG\0"
            finally:
                sock.close()
    except (OSError, TimeoutError):
        return False
