"""
runs/fork_floor.py: what does forking alone buy over one fresh python3 per program?

    python runs/fork_floor.py [workers] [rounds]

Times three ways of running the 164 HumanEval canonical solutions, in alternating rounds
(so drift in the machine's speed falls on all three; each round's programs and scripts are
new text, so nothing compiled in an earlier round helps), and prints the medians:

- naive: one fresh python3 per program (the baseline of `python runs/sandbox_bench.py`);
- floor: a bare fork runner: one warm `python -I -S` per worker, the same modules
  pre-imported and its heap frozen, that compiles program + test script, forks, runs
  both in the child and takes exit status 0 as a pass. No confinement, no judging
  outside the program's process (any program can fake a pass here), nothing but a fork
  per program: a reference point, not a sandbox;
- sandbox: sandbox.run_batch, which adds what the floor leaves out (remote calls so
  that test scripts never run beside the program, confinement, a zygote, judging in
  the caller).

It answers how much of the naive way's cost a fork per program removes on this machine,
and what the sandbox's guarantees cost on top of that.
"""
import os
import select
import statistics
import struct
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import sandbox  # noqa: E402
import sandbox_bench  # noqa: E402  (beside this file)

FLOOR_SERVER = r"""
import gc, os, struct, sys
import bisect, collections, copy, functools, heapq, itertools, json, math, operator, re, string, typing

def read(n):
    data = b""
    while len(data) < n:
        more = os.read(0, n - len(data))
        if not more:
            os._exit(0)
        data += more
    return data

gc.freeze()
while True:
    code = compile(read(struct.unpack(">I", read(4))[0]), "<program>", "exec")
    pid = os.fork()
    if pid == 0:
        null = os.open(os.devnull, os.O_RDWR)
        os.dup2(null, 1), os.dup2(null, 2)
        try:
            exec(code, {"__name__": "__main__"})
        except BaseException:
            os._exit(1)
        os._exit(0)
    os.write(1, b"1" if os.waitpid(pid, 0)[1] == 0 else b"0")
"""


def floor_round(servers, sources):
    """Every source once over the floor servers; how many passed."""
    todo, busy, passed = iter(sources), {}, 0

    def feed(srv):
        src = next(todo, None)
        if src is not None:
            srv.stdin.write(struct.pack(">I", len(src)) + src)
            busy[srv.stdout.fileno()] = srv

    for srv in servers:
        feed(srv)
    while busy:
        for fd in select.select(list(busy), [], [])[0]:
            passed += os.read(fd, 1) == b"1"
            feed(busy.pop(fd))
    return passed


def main(workers, rounds):
    servers = [subprocess.Popen([sys.executable, "-I", "-S", "-c", FLOOR_SERVER], bufsize=0,
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE)
               for _ in range(workers)]
    ways = {
        "naive": lambda jobs: sandbox_bench.naive_round(jobs, workers),
        "floor": lambda jobs: floor_round(servers, [sandbox_bench.standalone(prog, test).encode()
                                                    for prog, (test,) in jobs]),
        "sandbox": lambda jobs: sum(r.all_passed for r in sandbox.run_batch(jobs, workers=workers)),
    }
    for way in ways.values():         # warm: servers started, caches filled
        way(sandbox_bench.humaneval_jobs("warm-up"))
    rates = {name: [] for name in ways}
    for k in range(rounds):
        jobs = sandbox_bench.humaneval_jobs(f"round {k}")    # new text: nothing compiled before
        for name, way in ways.items():
            t = time.perf_counter()
            passed = way(jobs)
            rates[name].append(len(jobs) / (time.perf_counter() - t))
            assert passed == len(jobs), f"{name}: {passed} of {len(jobs)} passed"
    for srv in servers:
        srv.stdin.close()
    med = {name: statistics.median(r) for name, r in rates.items()}
    print(f"HumanEval canonical solutions, {len(jobs)} programs, {workers} workers, "
          f"median of {rounds} alternating rounds (programs/s)")
    for name, r in rates.items():
        print(f"{name:8s} {med[name]:6.0f}   x{med[name] / med['naive']:.1f} naive   "
              f"rounds {', '.join(f'{x:.0f}' for x in r)}")
    print(f"sandbox / floor: {med['sandbox'] / med['floor']:.2f}")


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else sandbox.default_workers(),
         int(sys.argv[2]) if len(sys.argv) > 2 else 5)
