"""The escape catalogue: hostile programs run in the sandbox, and nothing outside it may change or leak.

Every attack runs with the static check off (it is a courtesy, never the protection) in a fresh
worker. After each one, :func:`assert_contained` checks that the canary key in the parent's
environment and the secret file outside the scratch folder did not come back in any answer,
error or output, that the watched folder outside is byte-for-byte unchanged, that no file named
by the attack appeared, and that the parent is alive. Each test also asserts the specific way
the attack was stopped, so a test fails if the attack's premise stops holding.
"""

from __future__ import annotations

import hashlib
import os
import socket
import threading
import uuid
from pathlib import Path

import numpy as np
import pytest

from llmrl.sandbox import (
    LAYERS,
    CodeFailure,
    Limits,
    Sandbox,
    SandboxUnavailable,
    reject_early,
    static_check,
)

CANARY_KEY = f"sk-canary-{uuid.uuid4().hex}"
SECRET = f"secret-{uuid.uuid4().hex}"
TOKEN = uuid.uuid4().hex[:12]
ESCAPE = f"/tmp/llmrl-escape-{TOKEN}"  # no attack may create this
LIMITS = Limits(call_seconds=1.0, memory_mb=768, file_mb=4, cpu_seconds=30)


def _snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
            for p in sorted(root.rglob("*"))}  # fmt: skip


class Listener:
    """A TCP server on the parent's loopback that records whether anyone connected."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(4)
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.stop = False
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stop:
            try:
                conn, _ = self.sock.accept()
            except (TimeoutError, OSError):
                continue
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.stop = True
        self.thread.join()
        self.sock.close()


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    outside = tmp_path_factory.mktemp("outside")
    (outside / "secret.txt").write_text(SECRET)
    (outside / "notes").mkdir()
    (outside / "notes" / "a.txt").write_text("keep me")
    listener = Listener()
    os.environ["LLMRL_CANARY_API_KEY"] = CANARY_KEY
    try:
        yield {"outside": outside, "listener": listener}
    finally:
        del os.environ["LLMRL_CANARY_API_KEY"]
        listener.close()


@pytest.fixture
def attack(world, tmp_path):
    """``attack(code, *args)`` -> ("ok", value) or ("failed", CodeFailure), then the containment checks."""
    outside = world["outside"]
    before = _snapshot(outside)
    worker_file = Path(__import__("llmrl.sandbox._worker", fromlist=["x"]).__file__)
    worker_hash = hashlib.sha256(worker_file.read_bytes()).hexdigest()
    boxes = []

    def run(code: str, *args, entry: str = "f", limits: Limits = LIMITS, skip: tuple[str, ...] = ()):
        code = code.replace("OUTSIDE", str(outside)).replace("ESCAPE", ESCAPE).replace(
            "PORT", str(world["listener"].port))
        box = Sandbox(limits, scratch=tmp_path / f"scratch{len(boxes)}", _skip_layers=skip, allow_weaker=skip)
        boxes.append(box)
        try:
            box.load(code, [entry])
            outcome = ("ok", box.call(entry, *args))
        except CodeFailure as e:
            outcome = ("failed", e)
        seen = repr(outcome[1]) + (outcome[1].feedback() if outcome[0] == "failed" else "") + box.output(10**6)
        assert CANARY_KEY not in seen and SECRET not in seen, "a secret leaked into the sandbox's answer"
        box.close_worker()
        return outcome

    yield run
    for box in boxes:
        box.close()
    assert _snapshot(outside) == before, "a file outside the scratch folder changed"
    assert not os.path.exists(ESCAPE), "the attack created a file outside the scratch folder"
    assert hashlib.sha256(worker_file.read_bytes()).hexdigest() == worker_hash
    assert os.environ.get("LLMRL_CANARY_API_KEY") == CANARY_KEY
    assert world["listener"].connections == 0, "the sandbox reached a server on the parent's loopback"


def failed(outcome, *kinds: str) -> CodeFailure:
    assert outcome[0] == "failed", f"the attack was not stopped: {outcome[1]!r}"
    if kinds:
        assert outcome[1].kind in kinds, outcome[1]
    return outcome[1]


def denied(outcome) -> None:
    """The attack raised a permission error (EPERM or EACCES) or could not find what it looked for."""
    e = failed(outcome, "exception")
    assert any(w in e.message for w in ("PermissionError", "Operation not permitted", "Permission denied",
                                        "FileNotFoundError", "No such file")), e.message  # fmt: skip


# --- sanity: the sandbox works, and states its layers ------------------------------------------------


def test_every_layer_holds_on_this_machine():
    with Sandbox(LIMITS) as box:
        box.load("def f(x):\n    return x * 2\n", ["f"])
        assert box.call("f", 21) == 42
        assert {k for k, v in box.layers.items() if v["ok"]} >= set(LAYERS), box.layers


def test_a_missing_layer_refuses_to_run_unless_allowed(tmp_path):
    # A skipped layer is reported exactly as one the kernel lacks.
    with Sandbox(LIMITS, scratch=tmp_path, _skip_layers=("syscalls",)) as box:
        with pytest.raises(SandboxUnavailable, match=r"syscalls \(skipped on request\).*allow_weaker=\('syscalls',\)"):
            box.load("def f():\n    return 1\n", ["f"])
        assert not box.alive
    from llmrl.cli import _expected

    assert _expected(SandboxUnavailable("x"))  # the command line prints it as one line, no traceback


def test_weaker_mode_runs_when_opted_in(tmp_path):
    with Sandbox(LIMITS, scratch=tmp_path, allow_weaker=("syscalls",), _skip_layers=("syscalls",)) as box:
        box.load("def f():\n    return 1\n", ["f"])
        assert box.call("f") == 1 and not box.layers["syscalls"]["ok"]


def test_the_scratch_folder_is_writable(attack, tmp_path):
    ok, value = attack("def f():\n    open('out.txt', 'w').write('fine')\n    return open('out.txt').read()\n")
    assert (ok, value) == ("ok", "fine")


# --- files --------------------------------------------------------------------------------------------


def test_read_secret_file_outside(attack):
    denied(attack("def f():\n    return open('OUTSIDE/secret.txt').read()\n"))


def test_read_etc_passwd(attack):
    denied(attack("def f():\n    return open('/etc/passwd').read()\n"))


def test_read_home_ssh_keys(attack):
    denied(attack("import os\ndef f():\n    return os.listdir(os.path.expanduser('~'))\n"))


def test_write_file_outside(attack):
    denied(attack("def f():\n    open('OUTSIDE/notes/a.txt', 'w').write('pwned')\n"))


def test_create_file_in_tmp(attack):
    denied(attack("def f():\n    open('ESCAPE', 'w').write('x')\n"))


def test_delete_file_outside(attack):
    denied(attack("import os\ndef f():\n    os.remove('OUTSIDE/secret.txt')\n"))


def test_rename_outside_file_into_scratch(attack):
    denied(attack("import os\ndef f():\n    os.rename('OUTSIDE/secret.txt', 'stolen.txt')\n"))


def test_relative_path_out_of_scratch(attack):
    denied(attack("import os\ndef f():\n    open(os.path.join('..', '..', 'ESCAPE'.lstrip('/')), 'w')\n"
                  "    open('../' * 20 + 'ESCAPE'.lstrip('/'), 'w').write('x')\n"))


def test_symlink_from_scratch_to_outside(attack):
    denied(attack("import os\ndef f():\n    os.symlink('OUTSIDE/notes/a.txt', 'link')\n"
                  "    open('link', 'w').write('pwned')\n"))


def test_hard_link_outside_file(attack):
    denied(attack("import os\ndef f():\n    os.link('OUTSIDE/secret.txt', 'hard')\n    return open('hard').read()\n"))


def test_overwrite_the_sandbox_source(attack):
    denied(attack("import sys\ndef f():\n    open(sys.modules['__main__'].__file__, 'a').write('# pwned')\n"))


def test_mmap_an_outside_file(attack):
    denied(attack("import os\ndef f():\n    fd = os.open('OUTSIDE/secret.txt', os.O_RDWR)\n"
                  "    import mmap\n    m = mmap.mmap(fd, 0)\n    m[:6] = b'pwned!'\n"))


def test_fill_the_disk(attack):
    e = failed(attack("def f():\n    with open('big', 'wb') as out:\n        for _ in range(100):\n"
                      "            out.write(b'x' * (1 << 20))\n"), "exception")
    assert "File too large" in e.message


# --- /proc and /sys -------------------------------------------------------------------------------------


def test_proc_parent_environ(attack):
    denied(attack("import os\ndef f():\n    return open(f'/proc/{os.getppid()}/environ').read()\n"))


def test_proc_self_environ(attack):
    denied(attack("def f():\n    return open('/proc/self/environ').read()\n"))


def test_proc_parent_memory(attack):
    denied(attack("import os\ndef f():\n    with open(f'/proc/{os.getppid()}/mem', 'wb') as m:\n"
                  "        m.seek(0x400000)\n        m.write(b'x')\n"))


def test_proc_parent_cmdline_and_fds(attack):
    denied(attack("import os\ndef f():\n    return os.listdir(f'/proc/{os.getppid()}/fd')\n"))


def test_sys_write(attack):
    denied(attack("def f():\n    open('/sys/kernel/mm/transparent_hugepage/enabled', 'w').write('never')\n"))


# --- environment and keys ---------------------------------------------------------------------------------


def test_environment_is_empty(attack):
    ok, env = attack("import os\ndef f():\n    return dict(os.environ)\n")
    assert ok == "ok" and not any("KEY" in k or "TOKEN" in k or "SECRET" in k for k in env)
    assert set(env) <= {"PATH", "LANG", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS",
                        "PYTHONDONTWRITEBYTECODE"}  # fmt: skip


def test_keys_in_config_files(attack):
    denied(attack("import os\ndef f():\n    return open(os.path.expanduser('~/.config/openai/key')).read()"
                  " + open('/root/.bash_history').read()\n"))


# --- network ----------------------------------------------------------------------------------------------------

CONNECT = """
import ctypes, struct
def f():
    libc = ctypes.CDLL(None, use_errno=True)
    fd = libc.socket(2, 1, 0)
    if fd < 0:
        raise PermissionError(ctypes.get_errno(), 'socket')
    addr = struct.pack('<HH4s8x', 2, __import__('socket').htons(PORT) if False else ((PORT >> 8) | ((PORT & 255) << 8)),
                       bytes([127, 0, 0, 1]))
    if libc.connect(fd, addr, 16) < 0:
        raise PermissionError(ctypes.get_errno(), 'connect')
    return 'connected'
"""


def test_tcp_connect_to_parent_loopback(attack):
    denied(attack(CONNECT))


def test_network_namespace_holds_without_seccomp(attack):
    # socket() now succeeds; the connect must still fail: the namespace has no usable loopback.
    e = failed(attack(CONNECT, skip=("syscalls",)), "exception")
    assert "connect" in e.message


def test_dns_lookup(attack):
    e = failed(attack("import socket\ndef f():\n    return socket.gethostbyname('example.com')\n"), "exception")
    assert any(w in e.message for w in ("socket", "PermissionError", "gaierror", "Operation not permitted"))


def test_unix_socket_to_outside(attack):
    denied(attack("import ctypes\ndef f():\n    fd = ctypes.CDLL(None, use_errno=True).socket(1, 1, 0)\n"
                  "    if fd < 0:\n        raise PermissionError('unix socket')\n"))


# --- processes and threads ---------------------------------------------------------------------------------------------


def test_fork(attack):
    denied(attack("import os\ndef f():\n    return os.fork()\n"))


def test_fork_bomb(attack):
    denied(attack("import os\ndef f():\n    while True:\n        os.fork()\n"))


def test_os_system(attack):
    ok, value = attack("import os\ndef f():\n    return os.system('touch ESCAPE')\n")
    assert ok == "failed" or value != 0


def test_exec_a_program(attack):
    denied(attack("import os\ndef f():\n    os.execv('/bin/sh', ['sh', '-c', 'touch ESCAPE'])\n"))


def test_posix_spawn(attack):
    denied(attack("import os\ndef f():\n    os.posix_spawn('/bin/touch', ['touch', 'ESCAPE'], {})\n"))


def test_subprocess_module(attack):
    failed(attack("import subprocess\ndef f():\n    subprocess.run(['touch', 'ESCAPE'])\n"), "exception")


def test_threads(attack):
    e = failed(attack("import threading\ndef f():\n    threading.Thread(target=print).start()\n"), "exception")
    assert "thread" in e.message


def test_kill_the_parent(attack):
    denied(attack("import os, signal\ndef f():\n    os.kill(os.getppid(), signal.SIGKILL)\n"))


def test_ptrace_the_parent(attack):
    denied(attack("import ctypes, os\ndef f():\n    libc = ctypes.CDLL(None, use_errno=True)\n"
                  "    if libc.ptrace(16, os.getppid(), 0, 0) < 0:\n        raise PermissionError('ptrace')\n"))


def test_new_namespaces_and_mounts(attack):
    denied(attack("import ctypes\ndef f():\n    libc = ctypes.CDLL(None, use_errno=True)\n"
                  "    if libc.unshare(0x00020000) < 0 or libc.mount(b'none', b'/tmp', b'tmpfs', 0, None) < 0:\n"
                  "        raise PermissionError('unshare/mount')\n"))


def test_raise_resource_limits(attack):
    failed(attack("import resource\ndef f():\n    resource.setrlimit(resource.RLIMIT_AS, (-1, -1))\n"), "exception")


# --- ctypes, memory, interpreter internals ---------------------------------------------------------------


def test_ctypes_raw_socket_syscall(attack):
    denied(attack("import ctypes\ndef f():\n    r = ctypes.CDLL(None, use_errno=True).syscall(41, 2, 1, 0)\n"
                  "    if r < 0:\n        raise PermissionError('socket syscall')\n"))


NATIVE_SOCKET = """
import ctypes
def f():
    try:
        import cffi  # noqa: F401 - where it is installed it reaches the same kernel
    except ImportError:
        pass
    # Raw x86-64 machine code: socket(AF_INET, SOCK_STREAM, 0) by the syscall instruction, no libc.
    code = bytes.fromhex('b829000000bf02000000be0100000031d20f05c3')
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
    page = libc.mmap(None, 4096, 7, 0x22, -1, 0)  # read, write, execute; private, anonymous
    ctypes.memmove(page, code, len(code))
    return ctypes.CFUNCTYPE(ctypes.c_long)(page)()
"""


@pytest.mark.skipif(__import__("platform").machine() != "x86_64", reason="x86-64 machine code")
def test_native_code_issuing_a_raw_syscall(attack):
    # cffi or hand-made machine code reach the kernel directly; the seccomp filter still answers.
    ok, value = attack(NATIVE_SOCKET)
    assert ok == "ok" and value == -1, value  # -EPERM from the filter, no socket
    ok, value = attack(NATIVE_SOCKET, skip=("syscalls",))
    assert ok == "ok" and value >= 0, value  # the premise: without the filter the call succeeds


def test_ctypes_segfault_kills_only_the_worker(attack):
    failed(attack("import ctypes\ndef f():\n    ctypes.string_at(0)\n"), "killed", "memory")


def test_subclasses_walk_to_popen(attack):
    failed(attack("def f():\n    for c in ().__class__.__base__.__subclasses__():\n"
                  "        if c.__name__ == 'Popen':\n            return c(['touch', 'ESCAPE']).wait()\n"
                  "    for c in ().__class__.__base__.__subclasses__():\n"
                  "        if c.__name__ == '_wrap_close':\n"
                  "            return c.__init__.__globals__['system']('touch ESCAPE') and 1/0\n"), "exception")


def test_frame_walk_to_the_worker(attack):
    # Reaching the worker's own globals works (same process) and buys nothing: the next program
    # gets a fresh process, and the parent checks every answer.
    ok, _ = attack("import sys\ndef f():\n    g = sys._getframe().f_back.f_globals\n"
                   "    g['SYSCALLS_ALLOWED'] = ('socket',)\n    return sorted(k for k in g if k.isupper())[:3]\n")
    assert ok == "ok"


def test_generator_frame_walk(attack):
    ok, _ = attack("def f():\n    g = (x for x in [1])\n    fr = g.gi_frame\n"
                   "    b = fr.f_back or fr\n    return str(type(fr.f_builtins))\n")
    assert ok == "ok"


def test_format_string_attribute_access(attack):
    ok, text = attack("def f():\n    return '{0.__class__.__base__.__subclasses__}'.format(())[:60]\n")
    assert ok == "ok" and "method" in text  # works, and reaches nothing: the layers are below Python


def test_builtins_tampering_does_not_reach_the_next_program(attack, tmp_path):
    with Sandbox(LIMITS, scratch=tmp_path / "box") as box:
        box.load("import builtins\ndef f():\n    builtins.len = lambda x: 0\n    builtins.float = lambda x: 1e9\n"
                 "    return len([1, 2])\n", ["f"])
        try:
            assert box.call("f") == 0
        except CodeFailure as e:  # the patched float broke the worker's own encoder: its problem
            assert e.kind == "bad_output"
        box.load("def f():\n    return len([1, 2]), float('2')\n", ["f"])
        assert box.call("f") == (2, 2.0)


def test_import_hook(attack):
    ok, _ = attack("import sys\nclass Hook:\n    def find_spec(self, *a, **k):\n"
                   "        open('ESCAPE', 'w')\n"
                   "sys.meta_path.insert(0, Hook())\ndef f():\n    try:\n        import json2\n"
                   "    except BaseException as e:\n        return type(e).__name__\n")
    assert ok == "ok"


def test_signal_handlers_cannot_dodge_the_deadline(attack):
    e = failed(attack("import signal\nfor s in (signal.SIGTERM, signal.SIGINT, signal.SIGALRM):\n"
                      "    signal.signal(s, signal.SIG_IGN)\ndef f():\n    while True:\n        pass\n"), "timeout")
    assert "killed" in e.message


def test_pickle_payload_cannot_cross(attack):
    e = failed(attack("import pickle, os\nclass P:\n    def __reduce__(self):\n"
                      "        return (os.system, ('touch ESCAPE',))\ndef f():\n    return P()\n"), "bad_output")
    assert "cannot cross" in e.message
    failed(attack("import pickle\ndef f():\n    return pickle.dumps([1, 2])\n"), "bad_output")


def test_forged_protocol_bytes(attack):
    e = failed(attack("import os\ndef f():\n    os.write(4, b'LRSB' + b'\\xff' * 8)\n    return 1\n"),
               "bad_output", "timeout")
    assert "killed" in e.message


# --- bombs --------------------------------------------------------------------------------------------------


def test_memory_bomb(attack):
    failed(attack("def f():\n    return len(bytearray(8 << 30))\n"), "memory", "exception")


def test_growing_list_bomb(attack):
    failed(attack("def f():\n    xs = []\n    while True:\n        xs.append('x' * 10**6)\n"),
           "memory", "exception", "killed")


def test_recursion_bomb(attack):
    e = failed(attack("def f():\n    return f()\n"), "exception")
    assert "RecursionError" in e.message


def test_recursion_limit_raised_then_bomb(attack):
    failed(attack("import sys\nsys.setrecursionlimit(10**7)\ndef f(n=0):\n    return f(n + 1)\n"),
           "killed", "memory", "exception", "timeout")


def test_huge_integer(attack):
    failed(attack("def f():\n    return 10**10**10\n"), "timeout", "memory", "exception")


def test_infinite_loop(attack):
    failed(attack("def f():\n    while True:\n        pass\n"), "timeout")


def test_infinite_loop_swallowing_exceptions(attack):
    failed(attack("def f():\n    while True:\n        try:\n            while True:\n                pass\n"
                  "        except BaseException:\n            pass\n"), "timeout")


def test_sleep_forever(attack):
    failed(attack("import time\ndef f():\n    time.sleep(1000)\n"), "timeout")


def test_megabytes_of_output(attack, tmp_path):
    outcome = attack("def f():\n    for _ in range(64):\n        print('x' * (1 << 20))\n    return 1\n")
    assert outcome[0] in ("ok", "failed")
    assert all(p.stat().st_size <= LIMITS.file_mb << 20 for p in tmp_path.rglob("output.log"))


def test_huge_answer_is_refused(attack):
    e = failed(attack("import numpy as np\ndef f():\n    return np.zeros((1 << 24) + 1)\n",
                      limits=Limits(call_seconds=5, memory_mb=1024, max_result_mb=64)), "bad_output")
    assert "over the limit" in e.message


def test_too_many_open_files(attack):
    e = failed(attack("def f():\n    return [open('f%d' % i, 'w') for i in range(10000)]\n"), "exception")
    assert "Too many open files" in e.message


def test_exit_and_system_exit(attack):
    failed(attack("import os\ndef f():\n    os._exit(0)\n"), "killed")
    e = failed(attack("def f():\n    raise SystemExit(3)\n"), "exception")
    assert "SystemExit" in e.message


def test_code_runs_at_import_time(attack):
    # Work at module level runs inside the sandbox too, before any function is called.
    denied(attack("open('ESCAPE', 'w').write('x')\ndef f():\n    return 1\n"))


# --- the static check is a courtesy ------------------------------------------------------------------------


def test_static_check_names_the_problem():
    assert static_check("import numpy as np\ndef f(x):\n    return np.tanh(x)\n") == []
    problems = static_check("import os\ndef f():\n    return ().__class__.__subclasses__()\n")
    assert any("'os'" in p for p in problems) and any("__subclasses__" in p for p in problems)
    with pytest.raises(CodeFailure, match="rejected.*line 1"):
        reject_early("import subprocess\n")
    with pytest.raises(CodeFailure) as e:
        reject_early("def f(:\n")
    assert e.value.kind == "syntax"


def test_inputs_come_back_unchanged(attack):
    # The worker gets copies: a program that writes into its arguments changes nothing here.
    obs = np.arange(6.0)
    ok, _ = attack("def f(x):\n    x[:] = -1\n    return float(x.sum())\n", obs)
    assert ok == "ok" and obs.tolist() == [0.0, 1.0, 2.0, 3.0, 4.0, 5.0]
