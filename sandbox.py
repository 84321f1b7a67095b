"""
sandbox.py: run untrusted Python programs against tests, fast, and judge them
somewhere the program cannot reach.

Every outcome reward of P-GRPO comes from here, thousands of times per step, so
the sandbox has to be hard to fool (or the policy learns to fool it), fast (or it
is the bottleneck), and impossible to hang (or a multi-day run dies).

Three kinds of test, each a plain JSON-able dict (check_test says what is wrong with
one):

    {"kind": "stdio",  "input": str, "output": str}
    {"kind": "call",   "fn": str, "args": list, "expected": value, "atol": number | None}
    {"kind": "assert", "script": str, "entry_point": str | None, "prelude": str | None}

(prelude: trusted code of the dataset's own, run before the script, whose names the
program cannot replace; HumanEval's prompt, whose helpers some checks call. atol: an
absolute tolerance for expected floats wider than the default 1e-6, as EvalPlus gives a
few tasks; see values_equal. Any test may also carry "timeout": its own wall seconds in
place of Limits.test_timeout, as EvalPlus scales each input's from the reference's time.)

Use it from Python:

    import sandbox
    results = sandbox.run_batch([(program, tests), ...], workers=8)
    results[0].all_passed, results[0].pass_rate, results[0].statuses
    outputs = sandbox.run_outputs([(reference, "fn", [[1, 2], [3, 4]])])  # what it returns

or from the shell:

    python sandbox.py solution.py tests.json     # per-test statuses; exit 0 iff all pass
    python runs/sandbox_bench.py                 # HumanEval throughput vs one python3 per program

What this module holds: the test schema, Limits, results, the judging rules (only here,
in the calling process, are expected outputs looked at), the pool of warm servers and
run_batch, the CLI. The engine the servers run (zygote, children, confinement, the
message format) is sandbox_server.py, whose docstring tells how it is built.

What is guaranteed:
- A pass needs positive evidence: matching output or return value, judged here, or an
  assert script that the server ran to its end. Expected values never reach the
  program's process; only plain data comes back from it.
- Each test runs in a fresh, confined child: limits on wall and CPU time, memory,
  output, files and tasks; no capabilities; a seccomp allowlist; Landlock on reads
  and writes (no /proc, test files or training data); no secrets in its environment;
  as root, its own PID namespace, no network, a bounded tmpfs (as a normal user: no
  PID or network namespace, an unbounded work dir; see below).
- The caller never raises for a job's sake: a bad test record, a malformed or huge
  reply, a dead server are that test's result; other jobs are judged as if alone.

What it cannot do. It is a guard against programs a policy writes, not a security
boundary against a person: children share the host kernel (a kernel bug is an
escape), can burn CPU and memory up to their limits, and read the Python
installation; they can `stat` any path (Landlock does not cover metadata), and
timing channels between concurrent tests exist (none of this can make a pass). With
a system Python under `/usr`, all of `/usr` is readable, benchmark packages there
too. Assert scripts pass programs only plain data (MBPP task 367 cannot run); a
returned value that is not plain data (a re.Match) comes back as an Opaque stand-in,
true and not None but equal to nothing, so a check that compares it fails; a returned
iterator is consumed in the child (an endless one
times out); copy-back covers top-level arguments only; a numpy array compares as a
list; a script calling a helper the program defines (not in `prelude`) calls the
program's. As a normal user: no PID or network namespace, an unbounded work dir.
Against people, run the trainer in a VM or gVisor/nsjail.
"""

# Caller-side pieces that servers never need (subprocess, tqdm, reprlib) are imported
# where they are used.
import _thread
import atexit
import json
import math
import os
import select
import sys
import time
import types
from typing import NamedTuple

from sandbox_server import (MAX_SAME_HASH, Opaque, _error_text,  # noqa: F401
                            _pids_cgroup_parent, _recv, _remove_cgroup, _rmtree, _send,
                            decode_value, encode_value)


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
    value: object = None            # the return value, kept only by run_outputs


class ProgramResult(NamedTuple):
    all_passed: bool
    pass_rate: float
    statuses: list
    first_error: str
    wall_time: float
    tests: list                     # TestResult per test


# ----------------------------------------------------------------------------- judging (caller side)
FLOAT_TOL = 1e-6
_NUMERIC_CHARS = frozenset("0123456789+-.eE")
_INT_CHARS = frozenset("0123456789+-")
_EXACT_FLOAT = 2 ** 53    # beyond this a float no longer holds every integer


def _is_number(tok):
    """A decimal number token (not 'nan', 'inf' or '1_000', which float() accepts)."""
    if not set(tok) <= _NUMERIC_CHARS:
        return False
    try:
        float(tok)
        return True
    except ValueError:
        return False


def _close(a, b, atol=0.0):
    """Within max(atol, FLOAT_TOL) absolute or FLOAT_TOL relative; both must be finite
    (inf - inf is nan, and inf <= tol * inf is true: 1e999 must not equal any finite
    number)."""
    if not (math.isfinite(a) and math.isfinite(b)):
        return False
    return abs(a - b) <= max(atol, FLOAT_TOL) or abs(a - b) <= FLOAT_TOL * max(abs(a), abs(b))


def tokens_equal(got, want):
    """Stdout tokens. Equal text always matches. An expected integer matches only the same
    text (no float tolerance: '123456700.0' is not '123456789'). An expected number with
    a decimal point or exponent matches a finite number within 1e-6 absolute or relative;
    'inf', 'nan' and overflowing tokens such as '1e999' never match a finite one."""
    if got == want:
        return True
    if set(want) <= _INT_CHARS or not (_is_number(got) and _is_number(want)):
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


def values_equal(got, want, atol=0.0):
    """Return values, compared in the caller. Python equality, except:
    - an expected int is matched exactly: by an int, or by a float that is integral,
      within 2**53 (where floats still hold every integer) and equal to it;
    - an expected float is matched within 1e-6 (absolute or relative; absolute atol when
      the test gives a larger one) by a finite int or float; an expected inf only by the
      same inf, an expected nan only by a nan;
    - bool matches only bool (True is not 1 here), in dict keys and sets too;
    - a tuple equals a list with equal items (JSON test files cannot tell them apart).
    EvalPlus differs in two places: its atol applies to any number (np.allclose), ours to
    expected floats only, so an expected int stays exact; and it takes Python's ==, so
    True == 1 there.
    May raise RecursionError on very deep values; judge() turns that into a wrong answer."""
    tg, tw = type(got), type(want)
    if tg is bool or tw is bool:
        return tg is tw and got == want
    if tw is int:
        if tg is float:
            return got.is_integer() and abs(got) <= _EXACT_FLOAT and int(got) == want
        return tg is int and got == want
    if tw is float and (tg is float or tg is int):
        if math.isnan(want):
            return tg is float and math.isnan(got)
        if tg is int and abs(got) > _EXACT_FLOAT:       # float(got) could overflow
            return math.isfinite(want) and got == int(want)
        return got == want if math.isinf(want) else _close(float(got), want, atol)
    if tw in (list, tuple) and tg in (list, tuple):
        return len(got) == len(want) and all(values_equal(g, w, atol) for g, w in zip(got, want))
    if tw is dict and tg is dict:
        return _keys_equal(got, want) and all(values_equal(got[k], want[k], atol) for k in want)
    if tw in (set, frozenset) and tg in (set, frozenset):
        return _keys_equal(got, want)
    return tg is tw and got == want


def _keys_equal(got, want):
    """Dict keys or set members: the same by hash and ==, and each pair the same by
    values_equal too (in a set, True == 1 == 1.0; here True is not 1)."""
    if len(got) != len(want):
        return False
    mine = {k: k for k in got}
    return all(k in mine and values_equal(mine[k], k) for k in want)


_SHORT = []   # the reprlib.Repr for messages, made on first use (servers never need it)


def _short(value, n=200):
    """A short repr for a message, never failing and bounded in work: a long int is not
    turned into decimal digits (quadratic, and refused past 4,300 digits), long
    containers are cut."""
    if not _SHORT:
        import reprlib

        class Short(reprlib.Repr):
            def repr_int(self, x, level):
                return repr(x) if x.bit_length() <= 256 else f"<int of {x.bit_length()} bits>"
        _SHORT.append(Short())
        _SHORT[0].maxstring = _SHORT[0].maxother = n
    try:
        return _SHORT[0].repr(value)[:n]
    except Exception:
        return f"<{type(value).__name__}>"


def judge(test, reply):
    """Turn a server's reply for one test into (status, error). Only here are expected
    outputs looked at, in the calling process. Never raises: a reply that cannot be read
    or compared is a wrong answer (or the runtime error the server reported)."""
    try:
        status, error = reply["status"], str(reply.get("error", ""))
        if status != "ok":
            return status, error
        if test["kind"] == "stdio":
            if stdout_matches(reply["stdout"], test["output"]):
                return "passed", ""
            return "wrong_answer", "output differs: " + repr(reply["stdout"][:200])
        got = decode_value(reply["value"])
        if values_equal(got, test["expected"], test.get("atol") or 0.0):
            return "passed", ""
        return "wrong_answer", f"returned {_short(got)}"
    except Exception as e:     # KeyError, TypeError, RecursionError, MemoryError, ...
        return "wrong_answer", f"reply could not be judged: {_error_text(e)}"


# ----------------------------------------------------------------------------- pool (caller side)
_POOL = []
_POOL_LOCK = _thread.allocate_lock()
_WARNED = set()
# Paths a child may read besides the Python installation and the system's libraries (see
# _readable_paths): say, a directory of read-only files that a benchmark's tasks open.
# Set before the first batch (servers read it when they start).
EXTRA_READABLE = ()
_KEPT_ENV = ("PATH", "LANG", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "OMP_NUM_THREADS",
             "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")


def _home_cpu(slot):
    """The CPU of the pool's slot-th server: the caller's CPUs in turn, each rank of a node
    (torchrun's LOCAL_RANK of LOCAL_WORLD_SIZE) starting at its own share of them."""
    cpus = sorted(os.sched_getaffinity(0))
    rank = int(os.environ.get("LOCAL_RANK", 0))
    ranks = max(int(os.environ.get("LOCAL_WORLD_SIZE", 1)), 1)
    return cpus[(slot + rank * len(cpus) // ranks) % len(cpus)]


def _start_server(slot):
    import subprocess
    # -S: no site hooks in the server (smaller, so cheaper forks); site-packages are
    # still put on sys.path by the server, for programs that import numpy and the like.
    # sandbox_server is imported (from its .pyc), not run: compiling it would leave
    # ~1.4 MB more heap in the server, which every fork then copies.
    # LD_BIND_NOW: resolve every library symbol at start. Lazily, the first call of a C
    # function writes its address into the library's table, which in a child is a
    # copy-on-write fault and a symbol search, paid again by every child.
    here = os.path.dirname(os.path.abspath(__file__))
    # The environment is the trainer's minus anything that could be a secret (tokens, keys):
    # a child sees its server's. No PYTHON* variable passes but PYTHONHASHSEED=0, which -I
    # would ignore (hence -P -s, the rest of what -I does): every server hashes str alike,
    # so a set of strings iterates in the same order on any server, and an expected value
    # made by running a reference (run_outputs) on one server matches a program's on another.
    env = {k: v for k, v in os.environ.items() if k in _KEPT_ENV or k.startswith("LC_")}
    proc = subprocess.Popen([sys.executable, "-P", "-s", "-S", "-c",
                             f"import sys; sys.path.insert(0, {here!r}); import sandbox_server; "
                             f"sys.path.remove({here!r}); sandbox_server.main(sys.argv[1:])",
                             "--serve", json.dumps([_site_dirs(), list(EXTRA_READABLE),
                                                    _home_cpu(slot)])],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0,
                            close_fds=True, env=dict(env, LD_BIND_NOW="1", PYTHONHASHSEED="0"))
    hello = _recv(proc.stdout.fileno())
    if hello is None:
        raise RuntimeError("sandbox server failed to start")
    for w in hello["warnings"]:
        if w not in _WARNED:
            _WARNED.add(w)
            print(f"sandbox: {w}", file=sys.stderr)
    return types.SimpleNamespace(proc=proc,               # subprocess.Popen
                                 base=hello["base"],      # its work dir
                                 cgroup=hello["cgroup"],  # its pids cgroup, or None
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
    _remove_cgroup(srv.cgroup, 1.0)          # a killed server's zygote exits on its EOF


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
    """This machine's CPUs shared among the ranks on it (torchrun's LOCAL_WORLD_SIZE): each
    rank's servers stay on CPUs of their own."""
    return max(1, len(os.sched_getaffinity(0)) // max(int(os.environ.get("LOCAL_WORLD_SIZE", 1)), 1))


def _pool(workers):
    if not _POOL:
        atexit.unregister(shutdown)       # once per process that uses the pool
        atexit.register(shutdown)
        _remove_dead_servers_dirs()
    while len(_POOL) < workers:
        _POOL.append(_start_server(len(_POOL)))
    return _POOL[:workers]


def _remove_dead_servers_dirs():
    """A trainer killed with SIGKILL leaves its servers' work dirs and pids cgroups
    (sandbox-<pid>) behind; remove those whose server is gone (a live pid's are left
    alone, whoever owns them)."""
    for parent, remove in ((os.environ.get("TMPDIR", "/tmp"), _rmtree),
                           (_pids_cgroup_parent(), lambda p: _remove_cgroup(p, 0))):
        try:
            names = os.listdir(parent) if parent else []
        except OSError:
            continue
        for name in names:
            pid = name[len("sandbox-"):]
            if name.startswith("sandbox-") and pid.isdigit() and not _alive(int(pid)):
                remove(os.path.join(parent, name))


def _alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


# The test schema (see the top): field -> (allowed types, required); None: plain data.
_TEST_FIELDS = {
    "stdio": {"input": ((str,), True), "output": ((str,), True)},
    "call": {"fn": ((str,), True), "args": ((list, tuple), True), "expected": (None, True),
             "atol": ((int, float, type(None)), False)},
    "assert": {"script": ((str,), True), "entry_point": ((str, type(None)), False),
               "prelude": ((str, type(None)), False)},
}


def check_test(test):
    """What is wrong with a test record, as (its field or None, reason); None when nothing
    is. The one check of the schema: data.py's loaders use it too. Other keys pass."""
    if type(test) is not dict:
        return None, f"a {type(test).__name__}, not a JSON object"
    kind = test.get("kind")
    if type(kind) is not str or kind not in _TEST_FIELDS:
        return "kind", f"'kind' is {kind!r}, not one of {', '.join(_TEST_FIELDS)}"
    for name, (types_, required) in _TEST_FIELDS[kind].items():
        if name not in test:
            if required:
                return name, f"{kind} test without '{name}'"
        elif types_ is None:
            try:
                encode_value(test[name])
            except (TypeError, ValueError, RecursionError) as e:
                return name, f"{kind} test whose '{name}' is not plain data: {e}"
        elif not isinstance(test[name], types_) or type(test[name]) is bool:
            return name, (f"{kind} test whose '{name}' is {type(test[name]).__name__}, "
                          f"not {' or '.join(t.__name__ for t in types_)}")
    atol = test.get("atol")
    if atol is not None and not 0 <= atol < math.inf:
        return "atol", f"call test whose 'atol' is {atol!r}, not a finite number >= 0"
    timeout = test.get("timeout")
    if timeout is not None and (type(timeout) not in (int, float) or not 0 < timeout < math.inf):
        return "timeout", f"test whose 'timeout' is {timeout!r}, not a number of seconds > 0"
    return None


def _unit_message(program, test, timeout, limits):
    msg = {"kind": test["kind"], "program": program, "timeout": timeout, "limits": limits}
    if test["kind"] == "stdio":
        msg["input"] = test["input"]
    elif test["kind"] == "call":
        msg["fn"], msg["args"] = test["fn"], encode_value(list(test["args"]))
    else:
        msg["script"] = test["script"]
        msg["entry_point"], msg["prelude"] = test.get("entry_point"), test.get("prelude")
    return msg


def _clean_text(text, n=500):
    """A message from a child, safe to log and write as UTF-8 (it may hold lone
    surrogates, from JSON escapes) and short."""
    return str(text)[:n].encode("utf-8", "backslashreplace").decode("utf-8")


def run_batch(jobs, workers=None, stop_on_failure=True, limits=None, progress=False):
    """Run many (program, tests) jobs in parallel on warm servers; results in job order.

    stop_on_failure: a program's tests run in order and stop at its first failure
    (the rest are "not_run"); False runs every test, so pass_rate is exact (the
    soft-gate ablation needs that). A job whose program is None (a response with no code)
    is not run: all_passed False, pass_rate 0, every test "not_run".

    Never raises for a job's sake: a malformed test record is a runtime error for that
    test ("bad test record: ..."), a server that dies or hangs is replaced, and anything a
    child sends is judged or refused. If the batch is interrupted (KeyboardInterrupt),
    servers with a test in flight are replaced, so no later batch reads a stale reply."""
    out = []
    for job in _execute(jobs, workers, stop_on_failure, limits, progress, judge):
        tests = [r or TestResult("not_run") for r in job.results]
        statuses = [r.status for r in tests]
        n_pass = statuses.count("passed")
        first = next((f"test {i}: {r.status}: {r.error}".strip(": ")
                      for i, r in enumerate(tests) if r.status != "passed"), "")
        out.append(ProgramResult(
            all_passed=bool(tests) and n_pass == len(tests),
            pass_rate=n_pass / len(tests) if tests else 0.0,
            statuses=statuses,
            first_error="no program" if job.program is None else first if tests else "no tests",
            wall_time=sum(r.time for r in tests), tests=tests))
    return out


def run_outputs(jobs, workers=None, limits=None, progress=False):
    """What programs return, for building expected outputs from a trusted reference, as
    EvalPlus does for its base and plus inputs. jobs: (program, function name, list of
    argument lists). Per job, one TestResult per call: status "ok" with the decoded
    return value in .value, or the failure (runtime_error, timeout, ...) and its error.
    Every call runs, each in a fresh child as a test would; nothing is judged."""
    state = _execute([(p, [{"kind": "call", "fn": fn, "args": a, "expected": None} for a in calls])
                      for p, fn, calls in jobs], workers, False, limits, progress, _observe)
    return [[r or TestResult("not_run") for r in job.results] for job in state]


def _observe(test, reply):
    """run_outputs' judge: the status and the return value, nothing compared."""
    try:
        if reply["status"] != "ok":
            return reply["status"], str(reply.get("error", "")), None
        value = decode_value(reply["value"])
        if type(value) is Opaque:          # an expected value must be plain data
            return "runtime_error", f"returned {value!r}, not plain data", None
        return "ok", "", value
    except Exception as e:
        return "runtime_error", f"reply could not be read: {_error_text(e)}", None


def _execute(jobs, workers, stop_on_failure, limits, progress, judge_fn):
    """run_batch's engine: each job's test results (TestResult or None where not run), in
    job order; judge_fn(test, reply) gives (status, error) or (status, error, value)."""
    limits = limits or Limits()
    limits_d = limits._asdict()
    workers = workers or default_workers()
    state = [types.SimpleNamespace(program=p, tests=list(t), results=[None] * len(t),
                                   next_test=0, in_flight=0, stopped=False,
                                   used=0.0)    # seconds its tests ran (queued time not counted)
             for p, t in jobs]
    from collections import deque
    ready = deque(i for i, j in enumerate(state) if j.tests and j.program is not None)
    bar = None
    if progress:
        from tqdm import tqdm
        bar = tqdm(total=sum(len(j.tests) for j in state), desc="sandbox", leave=False)

    def record(ji, ti, status, error, t, value=None):
        job = state[ji]
        job.results[ti] = TestResult(status, t, _clean_text(error), value)
        job.in_flight -= 1
        job.used += t
        if bar:
            bar.update(1)
        if status != "passed" and stop_on_failure:
            job.stopped = True
        elif stop_on_failure and job.next_test < len(job.tests):
            ready.append(ji)

    with _POOL_LOCK:
        servers = _pool(workers)
        try:
            _run_units(state, ready, servers, limits, limits_d, stop_on_failure, record, judge_fn)
        finally:
            for i, srv in enumerate(servers):
                if srv.unit is not None:          # interrupted: its reply would be stale
                    _stop_server(srv)
                    _POOL[i] = _start_server(i)
            if bar:
                bar.close()
    return state


def _run_units(state, ready, servers, limits, limits_d, stop_on_failure, record, judge_fn):
    """run_batch's loop: hand each idle server the next test, collect replies, judge."""
    poller = select.poll()
    for s in servers:
        poller.register(s.proc.stdout.fileno(), select.POLLIN)
    busy = 0
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
            test = job.tests[ti]
            problem = check_test(test) if type(job.program) is str else ("program", "not a str")
            if problem:
                record(ji, ti, "runtime_error", f"bad test record: {problem[1]}", 0.0)
                continue
            timeout = min(test.get("timeout") or limits.test_timeout,
                          limits.program_timeout - job.used)
            if timeout <= 0:
                record(ji, ti, "timeout", "program time limit", 0.0)
                continue
            try:
                _send(srv.proc.stdin.fileno(), _unit_message(job.program, test, timeout, limits_d))
            except (TypeError, ValueError) as e:     # not marshallable (a str subclass, say)
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
        for i, srv in enumerate(servers):
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
                poller.unregister(fd)
                _stop_server(srv)
                servers[i] = _POOL[i] = _start_server(i)
                poller.register(servers[i].proc.stdout.fileno(), select.POLLIN)
                record(ji, ti, "runtime_error", "sandbox server died or hung", 0.0)
                continue
            status, error, *value = judge_fn(state[ji].tests[ti], reply)
            t = reply.get("time", 0.0)
            record(ji, ti, status, error, t if type(t) is float else 0.0, *value)


def run_program(program, tests, **kw):
    """One program; see run_batch."""
    return run_batch([(program, tests)], **kw)[0]


# ----------------------------------------------------------------------------- CLI
def _read_cli_inputs(program_path, tests_path):
    """(program text, list of tests) from the CLI's two files; ValueError saying which file,
    where and what, for anything unreadable or malformed."""
    texts = []
    for path in (program_path, tests_path):
        try:
            with open(path, "rb") as f:
                data = f.read()
            texts.append(data.decode("utf-8"))
        except OSError as e:
            raise ValueError(f"{path}: cannot read: {e.strerror}") from None
        except UnicodeDecodeError as e:
            line = data[:e.start].count(b"\n") + 1
            raise ValueError(f"{path}:{line}: not UTF-8 (byte {e.start})") from None
    sys.set_int_max_str_digits(0)       # an expected int may be longer than 4,300 digits
    try:
        tests = json.loads(texts[1])
    except json.JSONDecodeError as e:
        raise ValueError(f"{tests_path}:{e.lineno}:{e.colno}: not JSON: {e.msg}") from None
    tests = tests.get("tests") if isinstance(tests, dict) else tests
    if not isinstance(tests, list) or not tests:
        raise ValueError(f"{tests_path}: expected a non-empty list of tests "
                         "(or {\"tests\": [...]})")
    for i, t in enumerate(tests):
        problem = check_test(t)
        if problem:
            raise ValueError(f"{tests_path}: test {i}: {problem[1]}")
    return texts[0], tests


def main(argv):
    if len(argv) != 2:
        print(__doc__.split("Use it from Python")[0].strip(), file=sys.stderr)
        print("\nusage: python sandbox.py solution.py tests.json", file=sys.stderr)
        return 2
    try:
        program, tests = _read_cli_inputs(*argv)
    except ValueError as e:
        print(f"sandbox: {e}", file=sys.stderr)
        return 2
    res = run_program(program, tests, stop_on_failure=False)
    for i, r in enumerate(res.tests):
        print(f"test {i:3d}  {r.status:14s} {r.time * 1000:8.1f} ms  {r.error}")
    print(f"{sum(s == 'passed' for s in res.statuses)}/{len(res.statuses)} passed")
    return 0 if res.all_passed else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
