"""Conversions of untrusted documents in a child process with time and memory limits.

A zygote (``python -m fax.sandbox``, started once, with the renderer's modules imported)
forks one child per conversion, so a child starts in about a millisecond instead of the
~200 ms of a fresh interpreter. Per conversion the parent makes a socket pair and hands
one end to the zygote (SCM_RIGHTS) with the time budget:

    parent ──request──▶ child        header (JSON) + document, on the pair
    parent ◀──reply──── child        status, header (JSON), payload
    parent ◀──trailer── zygote       after the child is gone: how it ended, the CPU time

The child limits itself first (RLIMIT_AS: its current size plus the memory budget;
RLIMIT_CPU; no core files), then converts. The zygote kills it at the wall-clock
deadline (SIGKILL), reaps it, and only then appends the fixed-size trailer, so the last
bytes the parent reads always come from the zygote, whatever the child wrote. Nothing the
child sends is unpickled: the reply is JSON and raw bytes.

The CPU time reported is what the conversion cost the machine: the child's (all its
threads', and any process it forked and reaped) and the zygote's own for the fork (which
copies the zygote's page tables). After its warm-up the zygote returns freed memory to
the system and freezes its objects out of the garbage collector, so a child's first
writes get fresh pages instead of copying the zygote's.
"""

from __future__ import annotations

import contextlib
import ctypes
import gc
import json
import os
import resource
import selectors
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

TRAILER = struct.Struct("!4sBBHQ")  # magic, how (0 exited, 1 signal, 2 deadline), code, _, cpu µs
MAGIC = b"FAXZ"
EXITED, SIGNALLED, DEADLINE = 0, 1, 2
FRAME = struct.Struct("!cIQ")  # status (b"O" ok, b"E" error), header length, payload length
REQUEST = struct.Struct("!IQ")  # header length, document length


@dataclass(frozen=True)
class Outcome:
    """How a conversion ended: the child's reply (if complete) and how it exited."""

    status: bytes | None  # b"O", b"E" or None (no complete reply)
    header: dict[str, Any]
    payload: bytes
    how: int
    code: int
    cpu_seconds: float


class ZygoteLost(RuntimeError):
    """The zygote ended before it reported how a conversion ended."""


# -- parent side ---------------------------------------------------------------------------
class Sandbox:
    """One zygote and the conversions it forks; thread-safe, at most ``slots`` at once."""

    def __init__(self, slots: int | None = None) -> None:
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(slots or os.cpu_count() or 1)
        self._proc: subprocess.Popen[bytes] | None = None
        self._ctrl: socket.socket | None = None

    def _zygote(self) -> socket.socket:
        if self._ctrl is not None and self._proc is not None and self._proc.poll() is None:
            return self._ctrl
        self._stop()
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        # numpy's BLAS threads are of no use here and would make the zygote multi-threaded.
        for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            env[var] = "1"
        # glibc's malloc asks for transparent huge pages: a child's page-sized buffers
        # (4 MB each) are then faulted in two steps instead of a thousand.
        env.setdefault("GLIBC_TUNABLES", "glibc.malloc.hugetlb=1")
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "fax.sandbox", str(theirs.fileno())],
            pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL, env=env, close_fds=True,
        )  # fmt: skip
        theirs.close()
        self._ctrl = mine
        return mine

    @property
    def zygote_pid(self) -> int | None:
        """The zygote's process id (None before it started or after it stopped)."""
        return self._proc.pid if self._proc is not None else None

    def start(self) -> None:
        """Start the zygote now rather than at the first conversion."""
        with self._lock:
            self._zygote()

    def run(self, header: dict[str, Any], document: bytes, *, timeout: float) -> Outcome:
        """Convert in a child: ``header`` and ``document`` go to it, its reply comes back.
        If the zygote died meanwhile, a new one is started and the conversion tried once
        more; a second loss raises ``RuntimeError``."""
        try:
            return self._run_once(header, document, timeout)
        except ZygoteLost:
            with self._lock:
                self._stop()
            return self._run_once(header, document, timeout)

    def _run_once(self, header: dict[str, Any], document: bytes, timeout: float) -> Outcome:
        with self._slots:
            parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                with self._lock:
                    ctrl = self._zygote()
                    order = json.dumps({"timeout": timeout}).encode()
                    try:
                        socket.send_fds(ctrl, [struct.pack("!I", len(order)) + order],
                                        [child.fileno()])  # fmt: skip
                    except OSError:
                        self._stop()
                        ctrl = self._zygote()
                        socket.send_fds(ctrl, [struct.pack("!I", len(order)) + order],
                                        [child.fileno()])  # fmt: skip
                child.close()
                return _exchange(parent, header, document, timeout)
            finally:
                child.close()
                parent.close()

    def _stop(self) -> None:
        if self._ctrl is not None:
            self._ctrl.close()
            self._ctrl = None
        if self._proc is not None:
            if self._proc.poll() is None:
                self._proc.kill()
            self._proc.wait()
            self._proc = None

    def close(self) -> None:
        """Stop the zygote (it kills any child still running)."""
        with self._lock:
            self._stop()


def _exchange(sock: socket.socket, header: dict[str, Any], document: bytes,
              timeout: float) -> Outcome:  # fmt: skip
    """Send the request, read everything until the zygote closes the pair."""
    sock.settimeout(timeout + 30)  # the zygote enforces the deadline; this is a backstop
    head = json.dumps(header).encode()
    sender = threading.Thread(target=_send, args=(sock, REQUEST.pack(len(head), len(document))
                                                  + head, document), daemon=True)  # fmt: skip
    sender.start()
    chunks = []
    reset = False
    try:
        while True:
            chunk = sock.recv(1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    except ConnectionError:
        # The far end closed with some of the document unread: a child killed before it
        # read everything (its deadline), whose trailer came first and is kept, or a
        # zygote that died (no trailer).
        reset = True
    sender.join()
    data = b"".join(chunks)
    if len(data) < TRAILER.size:
        raise ZygoteLost("the fax conversion sandbox went away")
    magic, how, code, _, cpu_us = TRAILER.unpack(data[-TRAILER.size :])
    if magic != MAGIC:
        if reset:
            raise ZygoteLost("the fax conversion sandbox went away")
        raise RuntimeError("the fax conversion sandbox answered garbage")
    body = data[: -TRAILER.size]
    status: bytes | None = None
    reply: dict[str, Any] = {}
    payload = b""
    if how == EXITED and code == 0 and len(body) >= FRAME.size:
        kind, hlen, plen = FRAME.unpack(body[: FRAME.size])
        if len(body) == FRAME.size + hlen + plen and kind in (b"O", b"E"):
            status = kind
            reply = json.loads(body[FRAME.size : FRAME.size + hlen])
            payload = body[FRAME.size + hlen :]
    return Outcome(status, reply, payload, how, code, cpu_us / 1e6)


def _send(sock: socket.socket, head: bytes, document: bytes) -> None:
    # The child may die before reading everything (memory limit): its reply tells.
    with contextlib.suppress(OSError):
        sock.sendall(head)
        sock.sendall(document)


# -- child side ----------------------------------------------------------------------------
Worker = Callable[[dict[str, Any], bytes], tuple[dict[str, Any], bytes]]


def _recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray()
    while len(buf) < n:
        chunk = sock.recv(min(n - len(buf), 1 << 20))
        if not chunk:
            raise EOFError("request cut short")
        buf += chunk
    return bytes(buf)


def _vm_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


def _limit(memory: int, cpu: float) -> None:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    seconds = max(1, int(cpu + 0.999))
    resource.setrlimit(resource.RLIMIT_CPU, (seconds, seconds + 1))
    space = _vm_bytes() + memory
    resource.setrlimit(resource.RLIMIT_AS, (space, space))


def child_main(sock: socket.socket, worker: Worker) -> None:
    """Serve one request on ``sock`` in this (forked) process, then exit."""
    status, reply, payload = b"E", {"code": "broken", "reason": "conversion failed"}, b""
    try:
        hlen, dlen = REQUEST.unpack(_recv_exact(sock, REQUEST.size))
        header = json.loads(_recv_exact(sock, hlen))
        document = _recv_exact(sock, dlen)
        _limit(int(header.get("memory", 1 << 30)), float(header.get("cpu", 30)))
        reply, payload = worker(header, document)
        status = b"O"
    except MemoryError:
        reply = {"code": "too_large", "reason": "the document needs more memory than allowed"}
    except Exception as exc:  # reported to the parent, which decides
        code = getattr(exc, "code", None)
        reason = getattr(exc, "reason", None)
        if isinstance(code, str) and isinstance(reason, str):
            reply = {"code": code, "reason": reason}
        else:
            traceback.print_exc()
            reply = {"code": "broken", "reason": f"the renderer failed ({type(exc).__name__})"}
    head = json.dumps(reply).encode()
    with contextlib.suppress(OSError):
        sock.sendall(FRAME.pack(status, len(head), len(payload)) + head)
        sock.sendall(payload)


# -- the zygote ----------------------------------------------------------------------------
def zygote(ctrl: socket.socket, worker: Worker) -> None:
    """Fork a child per order on ``ctrl``; kill it at its deadline; report how it ended."""
    rfd, wfd = os.pipe()
    os.set_blocking(wfd, False)
    signal.set_wakeup_fd(wfd)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    jobs: dict[int, tuple[socket.socket, float, bool]] = {}  # pid -> (pair, deadline, killed)
    sel = selectors.DefaultSelector()
    sel.register(ctrl, selectors.EVENT_READ)
    sel.register(rfd, selectors.EVENT_READ)
    open_ctrl = True
    while open_ctrl or jobs:
        now = time.monotonic()
        wait = min((d for _, d, k in jobs.values() if not k), default=now + 60) - now
        for key, _ in sel.select(max(0.0, wait)):
            if key.fileobj is ctrl:
                open_ctrl = _accept(ctrl, worker, jobs, sel, rfd)
                if not open_ctrl:
                    sel.unregister(ctrl)
            else:
                with contextlib.suppress(BlockingIOError):
                    os.read(rfd, 4096)
        now = time.monotonic()
        for pid, (pair, deadline, killed) in list(jobs.items()):
            if not killed and (now >= deadline or not open_ctrl):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                jobs[pid] = (pair, deadline, True)
        _reap(jobs)


def _accept(ctrl: socket.socket, worker: Worker, jobs: dict[int, tuple[socket.socket, float, bool]],
            sel: selectors.BaseSelector, rfd: int) -> bool:  # fmt: skip
    try:
        msg, fds, _, _ = socket.recv_fds(ctrl, 4096, 1)
    except OSError:
        return False
    if not msg:
        return False
    (olen,) = struct.unpack("!I", msg[:4])
    order = json.loads(msg[4 : 4 + olen])
    pair = socket.socket(fileno=fds[0])
    started = time.process_time()
    pid = os.fork()
    if pid == 0:  # the child
        try:
            _die_with_parent()
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            sel.close()
            ctrl.close()
            for other, _, _ in jobs.values():  # other conversions' pairs: not ours to hold
                other.close()
            os.close(rfd)
            child_main(pair, worker)
        finally:
            os._exit(0)
    jobs[pid] = (pair, time.monotonic() + float(order["timeout"]), False)
    # Forking copies the page tables of the whole zygote: the conversion's cost, not ours.
    _fork_cpu[pid] = time.process_time() - started
    return True


def _die_with_parent() -> None:
    """Ask Linux to kill this child when the zygote dies (nobody else would stop it)."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


_fork_cpu: dict[int, float] = {}  # pid -> the zygote's CPU seconds spent forking it


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _reap(jobs: dict[int, tuple[socket.socket, float, bool]]) -> None:
    while jobs:
        before = _children_cpu()
        try:
            pid, status, _ = os.wait4(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        # What the child used, with the helpers it forked and reaped (wait4's own figure
        # leaves those out), and the fork itself.
        cpu = _children_cpu() - before + _fork_cpu.pop(pid, 0.0)
        pair, _, killed = jobs.pop(pid)
        how: int
        code: int
        if killed:
            how, code = DEADLINE, int(signal.SIGKILL)
        elif os.WIFSIGNALED(status):
            how, code = SIGNALLED, os.WTERMSIG(status)
        else:
            how, code = EXITED, os.WEXITSTATUS(status)
        cpu_us = int(cpu * 1e6)
        with contextlib.suppress(OSError):
            pair.sendall(TRAILER.pack(MAGIC, how, code & 0xFF, 0, cpu_us))
        pair.close()


def main() -> None:
    """Entry point of the zygote process: ``python -m fax.sandbox FD``."""
    from fax.documents import sandbox_worker, warm_up  # imported once, before forking

    ctrl = socket.socket(fileno=int(sys.argv[1]))
    warm_up()
    _settle()
    zygote(ctrl, sandbox_worker)


def _settle() -> None:
    """Leave the zygote as cheap to fork as possible: the warm-up's freed memory goes back
    to the system (a child would otherwise copy those pages on first write instead of
    getting fresh ones), and the objects alive now are frozen out of the garbage
    collector's reach (a collection in a child would touch, and so copy, all of them)."""
    gc.collect()
    gc.freeze()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None).malloc_trim(0)


if __name__ == "__main__":
    main()
