"""HAProxy 2.6's runtime API, as the HAProxy backend uses it (management.txt, section 9.3).

Every command opens its own connection to a UNIX socket and reads the reply until HAProxy
closes it (the non-interactive mode). Payloads (a PEM bundle, a crt-list line) follow ``<<``
and end with an empty line, so a payload must not contain one.

Certificate changes are transactions: ``set ssl cert F`` opens one, ``commit ssl cert F``
makes it live. HAProxy 2.6 holds ONE open transaction in the whole process; a second ``set`` for
another file while one is open is refused, and a ``commit`` commits whatever is open. The
callers therefore run ``set`` and ``commit`` back to back for one file at a time (the agent
applies one change at a time) and check that each reply names the file they asked for; on any
doubt they ``abort`` the open transaction.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path


class RuntimeApiError(Exception):
    """The runtime socket could not be reached or refused a command (its own words)."""


@dataclass(frozen=True)
class CrtListEntry:
    path: str
    line: int | None  # None: added by the agent since HAProxy last listed it
    filters: tuple[str, ...]


async def command(socket: Path, text: str, payload: bytes | None = None, timeout: float = 30) -> str:
    """Send one command (with an optional ``<<`` payload); return HAProxy's reply as text."""
    data = text.encode()
    if payload is not None:
        body = b"\n".join(line for line in payload.replace(b"\r\n", b"\n").split(b"\n") if line)
        data += b" <<\n" + body + b"\n\n"
    else:
        data += b"\n"
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket)), timeout)
    except (OSError, TimeoutError) as exc:
        raise RuntimeApiError(f"cannot connect to {socket}: {exc}") from None
    try:
        writer.write(data)
        await writer.drain()
        # End of request: the master CLI (2.6) waits for more commands until it sees it.
        writer.write_eof()
        reply = await asyncio.wait_for(reader.read(), timeout)
    except (OSError, TimeoutError) as exc:
        raise RuntimeApiError(f"{text.split(' <<')[0]}: no reply from {socket}: {exc}") from None
    finally:
        writer.close()
    return reply.decode(errors="replace").strip()


def parse_crt_list(text: str) -> list[CrtListEntry]:
    """``show ssl crt-list -n <list>`` → its entries in order.

    Lines read ``<path>:<line> [<ssl options>] <filter> ...``; the agent writes one filter per
    line, so the first filter names the entry.
    """
    entries: list[CrtListEntry] = []
    for raw in text.splitlines():
        if not raw or raw.startswith("#"):
            continue
        head, _, rest = raw.partition(" ")
        path, _, number = head.rpartition(":")
        if not number.isdigit():
            continue
        if rest.startswith("["):
            rest = rest.partition("]")[2]
        filters = tuple(rest.split())
        if filters:
            entries.append(CrtListEntry(path, int(number), filters))
    return entries


def _opened(reply: str, path: str) -> bool:
    """``set ssl cert`` opened or updated the transaction of ``path`` itself."""
    return (f"Transaction created for certificate {path}!" in reply
            or f"Transaction updated for certificate {path}!" in reply)


class Runtime:
    """The commands the backend needs, each checked against the reply HAProxy 2.6 gives."""

    def __init__(self, socket: Path, timeout: float = 30) -> None:
        self.socket = socket
        self.timeout = timeout

    async def _ok(self, text: str, expect: str, payload: bytes | None = None) -> str:
        reply = await command(self.socket, text, payload, self.timeout)
        if expect not in reply:
            raise RuntimeApiError(f"{text}: {reply or 'empty reply'}")
        return reply

    async def crt_list(self, crt_list: Path) -> list[CrtListEntry]:
        reply = await command(self.socket, f"show ssl crt-list -n {crt_list}", None, self.timeout)
        if not reply.startswith("#"):
            raise RuntimeApiError(f"show ssl crt-list {crt_list}: {reply or 'empty reply'}")
        return parse_crt_list(reply)

    async def load_cert(self, path: str, pem: bytes, *, new: bool) -> None:
        """Create (``new``) or replace the certificate stored under ``path``: set + commit."""
        if new:
            await self._ok(f"new ssl cert {path}", "New empty certificate store")
        reply = await command(self.socket, f"set ssl cert {path}", pem, self.timeout)
        if not _opened(reply, path):
            # Another file's transaction is open (an agent stopped between set and commit, a
            # reply that timed out): HAProxy 2.6 then answers "Transaction updated for
            # certificate <that file>" and has put OUR payload into it, which a later commit of
            # that file would serve. Abort whatever is open, and try once more.
            for other in await self.open_transactions():
                await command(self.socket, f"abort ssl cert {other}", None, self.timeout)
            reply = await command(self.socket, f"set ssl cert {path}", pem, self.timeout)
            if not _opened(reply, path):
                await command(self.socket, f"abort ssl cert {path}", None, self.timeout)
                raise RuntimeApiError(f"set ssl cert {path}: {reply or 'empty reply'}")
        reply = await command(self.socket, f"commit ssl cert {path}", None, self.timeout)
        if f"Committing {path}" not in reply or "Success!" not in reply:
            await command(self.socket, f"abort ssl cert {path}", None, self.timeout)
            raise RuntimeApiError(f"commit ssl cert {path}: {reply or 'empty reply'}")

    async def open_transactions(self) -> list[str]:
        """The files with an open certificate transaction (``show ssl cert``: the ``*`` lines
        under ``# transaction``)."""
        reply = await command(self.socket, "show ssl cert", None, self.timeout)
        found, section = [], ""
        for line in reply.splitlines():
            if line.startswith("#"):
                section = line
            elif section.startswith("# transaction") and line.startswith("*"):
                found.append(line[1:].strip())
        return found

    async def delete_cert(self, path: str) -> None:
        await self._ok(f"del ssl cert {path}", "deleted")

    async def add_line(self, crt_list: Path, path: str, name: str) -> None:
        await self._ok(
            f"add ssl crt-list {crt_list}", "Success!", f"{path} {name}".encode()
        )

    async def delete_line(self, crt_list: Path, path: str, line: int | None) -> None:
        target = f"{path}:{line}" if line is not None else path
        await self._ok(f"del ssl crt-list {crt_list} {target}", "deleted")


class MasterCli:
    """The master process's CLI (``-S`` socket of ``haproxy -W``): ``show proc``, ``reload``."""

    def __init__(self, socket: Path, timeout: float = 30) -> None:
        self.socket = socket
        self.timeout = timeout

    async def processes(self) -> tuple[list[int], int]:
        """(current worker PIDs, failed reloads) from ``show proc``."""
        reply = await command(self.socket, "show proc", None, self.timeout)
        workers: list[int] = []
        failed = 0
        section = ""
        for line in reply.splitlines():
            if line.startswith("#"):
                section = line
                continue
            fields = line.split()
            if len(fields) < 2:
                continue
            if fields[1] == "master" and "[failed:" in line:
                failed = int(line.split("[failed:")[1].split("]")[0].strip() or 0)
            elif fields[1] == "worker" and section.startswith("# workers"):
                workers.append(int(fields[0]))
        if not reply.startswith("#<PID>"):
            raise RuntimeApiError(f"show proc: {reply or 'empty reply'}")
        return workers, failed

    async def reload(self, timeout: float) -> list[int]:
        """Reload and wait until a new worker serves; return its PIDs.

        The master re-executes itself and parses the configuration (tens of seconds at
        10,000 certificates) while the old worker keeps serving; a configuration that does not
        load leaves the old worker in place and raises the master's failed-reload count.
        """
        before, failed = await self.processes()
        await command(self.socket, "reload", None, self.timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            await asyncio.sleep(0.1)
            try:
                workers, failed_now = await self.processes()
            except RuntimeApiError:
                workers, failed_now = [], failed  # the master is re-executing
            if failed_now > failed:
                raise RuntimeApiError("the reload failed: the new configuration did not load")
            if workers and not set(workers) & set(before):
                return workers
            if loop.time() > deadline:
                raise RuntimeApiError(f"no new worker within {timeout} s of the reload")
