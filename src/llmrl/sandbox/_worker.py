"""The sandbox's worker: a fresh Python process that locks itself down, then runs untrusted code.

This file is run as a script (``python -I _worker.py``), never imported by the untrusted code's
process as part of llmrl, so the worker imports only the standard library and numpy. The parent
(:mod:`llmrl.sandbox`) imports it as a module for the wire format (:func:`write_frame`,
:func:`read_frame`), the one piece of code both sides share.

Start-up, in order (each step needs what the later ones take away):

1. read the settings frame; import numpy and the modules candidates may use (no file reads later);
2. move the protocol pipes to private descriptors; fd 0 is /dev/null, fds 1 and 2 go to
   ``output.log`` in the scratch folder (capped by the file-size limit);
3. ``unshare(CLONE_NEWNET)`` (after ``CLONE_NEWUSER`` when not root): no network interfaces;
4. ``no_new_privs``, then Landlock: the whole file system readable, only the scratch folder
   writable, no ptrace or signals across the domain;
5. as root, drop to ``nobody`` (no capabilities left, and the process limit applies);
6. resource limits (address space, CPU time, processes, file size, open files, no core dumps);
7. the seccomp allowlist (libseccomp): no sockets, no new processes or threads, no signals to
   others, no mounts or namespaces; everything else not listed fails with EPERM.

Then it says which layers hold (the parent refuses to go on if one it needs is missing) and serves
``load``/``call``/``batch`` requests until its pipe closes. Data crosses as JSON and raw numpy
buffers, never pickle.
"""

from __future__ import annotations

import ctypes
import errno
import json
import math
import os
import select
import struct
import sys
import time
import traceback
from typing import Any

import numpy as np

MAGIC = b"LRSB"
MAX_HEADER = 1 << 20
ARRAY_DTYPES = ("bool", "int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64",
                "float16", "float32", "float64")  # fmt: skip
_NAMES = {np.dtype(name): name for name in ARRAY_DTYPES}  # dtype.name is slow in a hot loop

# --- wire format: [MAGIC][u32 header length][header JSON][buffers] ------------------------------


def _encode(value: Any, buffers: list[bytes]) -> Any:
    """JSON-able form of ``value``; numpy arrays go out of band as raw bytes."""
    if isinstance(value, np.ndarray):
        name = _NAMES.get(value.dtype)
        if name is None:
            raise TypeError(f"arrays of dtype {value.dtype} cannot cross the sandbox (numbers and booleans only)")
        buffers.append(value.tobytes())  # C order, whatever the layout
        return {"__array__": [name, list(value.shape)]}
    if isinstance(value, np.generic):
        if value.dtype not in _NAMES:
            raise TypeError(f"numpy scalars of dtype {value.dtype} cannot cross the sandbox")
        return _encode(value.item(), buffers)
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        if abs(value) >= 1 << 63:
            raise TypeError("integers beyond 64 bits cannot cross the sandbox")
        return value
    if isinstance(value, float):
        return value if value == value and abs(value) != float("inf") else {"__float__": repr(value)}
    if isinstance(value, (list, tuple)):
        return {"__tuple__": [_encode(v, buffers) for v in value]} if isinstance(value, tuple) else [
            _encode(v, buffers) for v in value]
    if isinstance(value, dict):
        if not all(isinstance(k, str) for k in value):
            raise TypeError("only dicts with string keys can cross the sandbox")
        columns = list(value.values())
        if len(columns) > 1 and all(isinstance(c, np.ndarray) and c.dtype == np.float64 and c.ndim == 1
                                    and c.shape == columns[0].shape for c in columns):  # fmt: skip
            buffers.append(np.stack(columns).tobytes())  # a table of named columns: one buffer
            return {"__table__": [list(value), len(columns[0])]}
        return {"__dict__": {k: _encode(v, buffers) for k, v in value.items()}}
    raise TypeError(f"a {type(value).__name__} cannot cross the sandbox: return numbers, arrays, "
                    "lists, tuples or dicts of them")


def _decode(value: Any, buffers: list[memoryview], max_elements: int) -> Any:
    if isinstance(value, list):
        return [_decode(v, buffers, max_elements) for v in value]
    if not isinstance(value, dict):
        return value
    if "__array__" in value:
        dtype, shape = value["__array__"]
        if dtype not in ARRAY_DTYPES or not all(isinstance(n, int) and n >= 0 for n in shape):
            raise ValueError(f"bad array header {value['__array__']!r}")
        n = math.prod(shape)
        if n > max_elements or not buffers:
            raise ValueError(f"array of {n} elements is over the limit or has no data")
        buf = buffers.pop(0)
        arr = np.frombuffer(buf, dtype=dtype)
        if arr.size != n:
            raise ValueError("array data does not match its shape")
        return arr.reshape(shape).copy()
    if "__table__" in value:
        names, n = value["__table__"]
        if not isinstance(n, int) or n < 0 or n * len(names) > max_elements or not buffers:
            raise ValueError("bad table header")
        table = np.frombuffer(buffers.pop(0), dtype=np.float64)
        if table.size != n * len(names):
            raise ValueError("table data does not match its header")
        return dict(zip((str(k) for k in names), table.reshape(len(names), n).copy()))
    if "__float__" in value:
        return float(value["__float__"])  # nan, inf, -inf only: float() parses nothing else unsafe
    if "__tuple__" in value:
        return tuple(_decode(v, buffers, max_elements) for v in value["__tuple__"])
    if "__dict__" in value:
        return {str(k): _decode(v, buffers, max_elements) for k, v in value["__dict__"].items()}
    raise ValueError("unknown value tag")


def write_frame(fd: int, message: dict[str, Any]) -> None:
    buffers: list[bytes] = []
    payload = dict(message)
    if "value" in payload:
        payload["value"] = _encode(payload["value"], buffers)
    payload["buffers"] = [len(b) for b in buffers]
    header = json.dumps(payload, allow_nan=False).encode()
    data = b"".join([MAGIC, struct.pack("<I", len(header)), header, *buffers])
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


class Reader:
    """Frames from a pipe, buffered: one ``read`` usually brings a whole frame (a round trip's
    cost is mostly system calls), and bytes past a frame wait for the next one."""

    def __init__(self, fd: int, spin_seconds: float = 0.0) -> None:
        self.fd, self.buf, self.spin = fd, bytearray(), spin_seconds
        if spin_seconds:
            os.set_blocking(fd, False)

    def _poll(self, n: int) -> None:
        """Busy-read for up to ``spin`` seconds: an answer that comes within a millisecond is taken
        without the sleep and wake-up a blocking wait costs (tens of microseconds on a virtual
        machine, more than the answer itself for a small batch)."""
        until = time.perf_counter() + self.spin
        while len(self.buf) < n and time.perf_counter() < until:
            try:
                chunk = os.read(self.fd, max(n - len(self.buf), 1 << 16))
            except BlockingIOError:
                os.sched_yield()  # the worker may need this core
                continue
            if not chunk:
                raise EOFError("the other side closed the pipe")
            self.buf += chunk

    def take(self, n: int, deadline: float | None = None) -> bytes:
        if self.spin and len(self.buf) < n:
            self._poll(n)
        while len(self.buf) < n:
            if deadline is not None:
                wait = deadline - time.monotonic()
                if wait <= 0 or not select.select([self.fd], [], [], wait)[0]:
                    raise TimeoutError("no answer before the deadline")
            try:
                chunk = os.read(self.fd, max(n - len(self.buf), 1 << 16))
            except BlockingIOError:  # select said readable, another reader was faster: wait again
                continue
            if not chunk:
                raise EOFError("the other side closed the pipe")
            self.buf += chunk
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def read_frame(reader: Reader, max_bytes: int = 256 << 20, max_elements: int = 1 << 26,
               deadline: float | None = None) -> dict[str, Any]:
    """One message; ValueError on anything malformed or over ``max_bytes``, TimeoutError past
    ``deadline`` (a ``time.monotonic()`` time)."""
    head = reader.take(8, deadline)
    if head[:4] != MAGIC:
        raise ValueError("bad frame marker")
    (n,) = struct.unpack("<I", head[4:])
    if n > MAX_HEADER:
        raise ValueError(f"frame header of {n} bytes is over the limit")
    message = json.loads(reader.take(n, deadline))
    if not isinstance(message, dict):
        raise ValueError("bad frame header")
    sizes = message.pop("buffers", [])
    if not isinstance(sizes, list) or not all(isinstance(s, int) and s >= 0 for s in sizes):
        raise ValueError("bad frame header")
    if sum(sizes) > max_bytes:
        raise ValueError(f"frame of {sum(sizes)} bytes is over the limit of {max_bytes}")
    data = memoryview(reader.take(sum(sizes), deadline)) if sizes else memoryview(b"")
    buffers, at = [], 0
    for size in sizes:
        buffers.append(data[at:at + size])
        at += size
    if "value" in message:
        message["value"] = _decode(message["value"], buffers, max_elements)
    return message


# --- the layers ---------------------------------------------------------------------------------

CLONE_NEWNET, CLONE_NEWUSER = 0x40000000, 0x10000000
PR_SET_NO_NEW_PRIVS = 38
SYS_LANDLOCK = {"x86_64": (444, 445, 446), "aarch64": (444, 445, 446)}
LANDLOCK_CREATE_RULESET_VERSION = 1
# Filesystem rights by ABI: execute .. make_sym (1), refer (2), truncate (3), ioctl_dev (5).
FS_RIGHTS_BY_ABI = {1: (1 << 13) - 1, 2: (1 << 14) - 1, 3: (1 << 15) - 1, 4: (1 << 15) - 1, 5: (1 << 16) - 1}
FS_READ = 1 | 4 | 8  # execute, read_file, read_dir
NET_TCP = 1 | 2  # bind, connect (ABI 4)
SCOPE_ALL = 1 | 2  # abstract unix sockets, signals (ABI 6)
NOBODY = 65534

# Everything a numpy-computing Python process needs once its imports are done; nothing that opens
# a socket, makes a process or thread, signals another process, or changes the system.
SYSCALLS_ALLOWED = (
    "read", "write", "readv", "writev", "pread64", "pwrite64", "lseek", "close", "fstat", "newfstatat", "statx",
    "stat", "lstat", "openat", "open", "getdents64", "readlink", "readlinkat", "access", "faccessat", "faccessat2",
    "fcntl", "dup", "dup2", "dup3", "getcwd", "unlink", "unlinkat", "mkdir", "mkdirat", "rename", "renameat",
    "ftruncate", "fsync", "fdatasync",
    "mmap", "munmap", "mremap", "mprotect", "madvise", "brk",
    "rt_sigaction", "rt_sigprocmask", "rt_sigreturn", "sigaltstack",
    "futex", "getrandom", "clock_gettime", "clock_getres", "clock_nanosleep", "nanosleep", "gettimeofday", "time",
    "getpid", "gettid", "getppid", "getuid", "geteuid", "getgid", "getegid", "getgroups",
    "sched_yield", "sched_getaffinity", "getrlimit", "prlimit64", "getrusage", "times", "uname", "sysinfo",
    "exit", "exit_group", "restart_syscall", "set_robust_list", "rseq", "poll", "ppoll", "select", "pselect6",
)  # fmt: skip


def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def _check(ret: int, what: str) -> int:
    if ret < 0:
        e = ctypes.get_errno()
        raise OSError(e, f"{what}: {os.strerror(e)}")
    return ret


def _no_network() -> str:
    libc = _libc()
    flags = CLONE_NEWNET if os.geteuid() == 0 else CLONE_NEWUSER | CLONE_NEWNET
    _check(libc.unshare(flags), "unshare(CLONE_NEWNET)")
    return "network namespace" + (" (in a user namespace)" if flags & CLONE_NEWUSER else "")


def _landlock(scratch: str, readable: list[str]) -> str:
    import platform

    nrs = SYS_LANDLOCK.get(platform.machine())
    if nrs is None:
        raise OSError(errno.ENOSYS, f"no Landlock system-call numbers for {platform.machine()}")
    create, add_rule, restrict = nrs
    libc = _libc()
    libc.syscall.restype = ctypes.c_long
    abi = _check(libc.syscall(create, None, ctypes.c_size_t(0), ctypes.c_uint32(LANDLOCK_CREATE_RULESET_VERSION)),
                 "landlock_create_ruleset(VERSION)")
    fs_all = FS_RIGHTS_BY_ABI[min(abi, 5)]
    attr = struct.pack("<QQQ", fs_all, NET_TCP if abi >= 4 else 0, SCOPE_ALL if abi >= 6 else 0)
    size = 8 if abi < 4 else 16 if abi < 6 else 24
    buf = ctypes.create_string_buffer(attr[:size], size)
    ruleset = _check(libc.syscall(create, buf, ctypes.c_size_t(size), ctypes.c_uint32(0)), "landlock_create_ruleset")
    try:
        for path, rights in [*((p, FS_READ) for p in readable), (scratch, fs_all)]:
            try:
                fd = os.open(path, os.O_PATH | os.O_DIRECTORY)
            except (FileNotFoundError, NotADirectoryError):
                continue
            try:
                rule = ctypes.create_string_buffer(struct.pack("<Qi", rights, fd), 12)
                _check(libc.syscall(add_rule, ctypes.c_int(ruleset), ctypes.c_int(1), rule, ctypes.c_uint32(0)),
                       f"landlock_add_rule({path})")
            finally:
                os.close(fd)
        _check(libc.syscall(restrict, ctypes.c_int(ruleset), ctypes.c_uint32(0)), "landlock_restrict_self")
    finally:
        os.close(ruleset)
    return f"Landlock ABI {abi}" + ("" if abi >= 4 else " (no network rules)") + ("" if abi >= 6 else " (no scopes)")


def _drop_root() -> str:
    if os.geteuid() != 0:
        return "not root"
    os.setgroups([])
    os.setgid(NOBODY)
    os.setuid(NOBODY)
    if os.geteuid() == 0:
        raise OSError(errno.EPERM, "still root after setuid")
    return "running as nobody"


def _limits(limits: dict[str, int]) -> str:
    import resource

    def cap(which: int, value: int) -> None:
        soft, hard = resource.getrlimit(which)
        value = value if hard == resource.RLIM_INFINITY else min(value, hard)
        resource.setrlimit(which, (value, value))

    cap(resource.RLIMIT_AS, limits["memory_bytes"])
    cap(resource.RLIMIT_CPU, limits["cpu_seconds"])
    cap(resource.RLIMIT_FSIZE, limits["file_bytes"])
    cap(resource.RLIMIT_NOFILE, limits["open_files"])
    cap(resource.RLIMIT_NPROC, limits["processes"])
    cap(resource.RLIMIT_CORE, 0)
    return "limits set"


def _load_libseccomp() -> Any:
    """libseccomp, loaded before the lock-down (finding it may run ldconfig and read /etc)."""
    import ctypes.util

    try:
        return ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    except OSError as e:
        return e


def _seccomp(lib: Any) -> str:
    if isinstance(lib, OSError):
        raise OSError(errno.ENOENT, f"libseccomp is not available ({lib}): apt install libseccomp2")
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int, ctypes.c_uint]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    act_errno = 0x00050000 | errno.EPERM
    act_allow = 0x7FFF0000
    ctx = lib.seccomp_init(act_errno)
    if not ctx:
        raise OSError(errno.EINVAL, "seccomp_init failed")
    try:
        for call in SYSCALLS_ALLOWED:
            nr = lib.seccomp_syscall_resolve_name(call.encode())
            if nr < 0:
                continue  # not on this architecture (e.g. open, stat on aarch64)
            if lib.seccomp_rule_add(ctx, act_allow, nr, 0) < 0:
                raise OSError(errno.EINVAL, f"seccomp_rule_add({call}) failed")
        if lib.seccomp_load(ctx) < 0:
            raise OSError(errno.EINVAL, "seccomp_load failed")
    finally:
        lib.seccomp_release(ctx)
    return f"seccomp allowlist of {len(SYSCALLS_ALLOWED)} system calls"


def _readable() -> list[str]:
    """What stays readable: Python's own installation and the system's shared libraries, nothing
    else (no /home, /etc, /proc, /tmp, no project folders)."""
    import sysconfig

    paths = {sysconfig.get_path(k) for k in ("stdlib", "platstdlib", "purelib", "platlib")}
    paths |= {os.path.dirname(os.path.dirname(sys.modules["numpy"].__file__ or ""))}
    paths |= {"/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/local/lib"}
    return sorted(p for p in paths if p)


def _lock_down(settings: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Apply every layer; each entry says whether it holds and, if not, why."""
    report: dict[str, dict[str, Any]] = {}

    def layer(name: str, fn: Any, *args: Any) -> None:
        if name in settings.get("skip", ()):
            report[name] = {"ok": False, "detail": "skipped on request"}
            return
        try:
            report[name] = {"ok": True, "detail": fn(*args)}
        except Exception as e:  # a layer the kernel lacks: the parent decides
            report[name] = {"ok": False, "detail": f"{type(e).__name__}: {e}"}

    layer("network", _no_network)
    try:
        _check(_libc().prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    except (OSError, AttributeError) as e:  # AttributeError: no prctl (not Linux)
        report["no_new_privs"] = {"ok": False, "detail": str(e)}
    layer("filesystem", _landlock, settings["scratch"], _readable())
    layer("privileges", _drop_root)
    layer("limits", _limits, settings["limits"])
    layer("syscalls", _seccomp, settings["libseccomp"])
    return report


# --- serving ------------------------------------------------------------------------------------

PRELOADED = ("math", "cmath", "random", "statistics", "itertools", "functools", "collections", "operator",
             "numpy", "numpy.linalg", "numpy.random", "re", "string", "dataclasses", "typing", "heapq", "bisect")  # fmt: skip


def _error(kind: str, exc: BaseException | None = None, message: str = "") -> dict[str, Any]:
    if exc is not None:
        tb = traceback.format_exception(type(exc), exc, exc.__traceback__)
        # The candidate's own frames only: the worker's are noise to the LM.
        tb = [line for line in tb if 'File "/' not in line or "<candidate>" in line]
        message = message or f"{type(exc).__name__}: {exc}"
        return {"ok": False, "kind": kind, "message": message[:2000], "traceback": "".join(tb)[-4000:]}
    return {"ok": False, "kind": kind, "message": message[:2000], "traceback": ""}


def _serve(reader: Reader, wfd: int, settings: dict[str, Any]) -> None:
    namespace: dict[str, Any] = {}
    while True:
        try:
            request = read_frame(reader, settings["max_input_bytes"])
        except EOFError:
            return
        op = request.get("op")
        reply: dict[str, Any]
        try:
            if op == "load":
                namespace = {"__name__": "candidate", "__builtins__": __builtins__}
                try:
                    code = compile(request["code"], "<candidate>", "exec")
                except SyntaxError as e:
                    reply = _error("syntax", e, f"SyntaxError: {e.msg} (line {e.lineno})")
                else:
                    exec(code, namespace)
                    missing = [n for n in request.get("entries", []) if not callable(namespace.get(n))]
                    reply = (_error("missing", message=f"the code defines no function {', '.join(missing)}")
                             if missing else {"ok": True})
            elif op == "call":
                fn = namespace[request["entry"]]
                reply = {"ok": True, "value": fn(*request["value"])}
            elif op == "batch":
                fn = namespace[request["entry"]]
                columns = request["value"]  # a list of arguments, each an array or a dict of arrays
                n = int(request["n"])
                # Rows of plain Python numbers (numpy scalars are several times slower to compute with).
                args = [_dict_rows(a, n) if isinstance(a, dict) else _rows_of(a) for a in columns]
                rows = [fn(*row) for row in zip(*args)]
                reply = {"ok": True, "value": _columns(rows) if request.get("columns") else rows}
            else:
                reply = _error("protocol", message=f"unknown op {op!r}")
        except RecursionError as e:
            reply = _error("exception", e)
        except MemoryError as e:
            reply = _error("memory", e, "MemoryError: the code ran out of its memory limit")
        except BaseException as e:  # noqa: BLE001 - SystemExit, KeyboardInterrupt from hostile code too
            reply = _error("exception", e)
        try:
            write_frame(wfd, reply)
        except (TypeError, ValueError, OverflowError) as e:
            write_frame(wfd, _error("bad_output", e, f"the function's result cannot be sent back: {e}"))


def _dict_rows(columns: dict[str, Any], n: int) -> list[dict[str, Any]]:
    """A dict of columns as one dict per row."""
    keys = list(columns)
    if not keys:
        return [{} for _ in range(n)]
    return [dict(zip(keys, values)) for values in zip(*(_rows_of(columns[k]) for k in keys))]


def _rows_of(a: Any) -> list[Any]:
    """An argument column as rows: Python numbers for a 1-d column, numpy rows for a 2-d one
    (an action vector stays an array, as the function's author expects ``a[0]`` to work)."""
    return a.tolist() if isinstance(a, np.ndarray) and a.ndim == 1 else list(a)


def _columns(rows: list[Any]) -> Any:
    """Rows of ``number`` or ``(number, {name: number})`` as arrays, one round of JSON for the
    batch instead of one per row; anything else goes back as rows, for the parent to judge."""
    if not rows:
        return rows
    try:
        first = rows[0]
        if isinstance(first, tuple) and len(first) == 2 and isinstance(first[1], dict):
            keys = first[1].keys()
            if not all(type(r) is tuple and len(r) == 2 and type(r[1]) is dict and r[1].keys() == keys for r in rows):
                return rows
            parts = {k: [r[1][k] for r in rows] for k in keys}
            values = [[r[0] for r in rows], *parts.values()]
        else:
            parts, values = {}, [rows]
        if any(None in v for v in values):  # float(None) would be NaN: let the parent name it
            return rows
        arrays = [np.array(v, dtype=np.float64) for v in values]
        if any(arr.shape != (len(rows),) for arr in arrays):
            return rows
        return {"__columns__": True, "reward": arrays[0], "parts": dict(zip(parts, arrays[1:]))}
    except (TypeError, ValueError, KeyError, OverflowError):
        return rows


def main() -> None:
    rfd, wfd = os.dup(0), os.dup(1)
    reader = Reader(rfd)
    settings = read_frame(reader)["value"]
    import importlib

    for name in PRELOADED + ("resource", "ctypes.util", "platform", "select", "signal", "traceback"):
        importlib.import_module(name)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    log = os.open(os.path.join(settings["scratch"], "output.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    os.dup2(log, 1)
    os.dup2(log, 2)
    os.close(log)
    sys.stdout = open(1, "w", buffering=1, closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, closefd=False)  # noqa: SIM115
    os.chdir(settings["scratch"])
    import signal

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write over the file limit raises, not kills
    if os.geteuid() == 0:
        os.chown(settings["scratch"], NOBODY, NOBODY)
        os.chown(os.path.join(settings["scratch"], "output.log"), NOBODY, NOBODY)
    settings["libseccomp"] = _load_libseccomp()
    report = _lock_down(settings)
    write_frame(wfd, {"ok": True, "value": {"layers": report, "pid": os.getpid()}})
    sys.setrecursionlimit(settings["recursion_limit"])
    _serve(reader, wfd, settings)


if __name__ == "__main__":
    main()
