"""
evalplus_check.py: load an EvalPlus release file (HumanEvalPlus.jsonl, MbppPlus.jsonl) the
way eval.py does, which runs every task's reference on its inputs to make the expected
outputs (data.fill_expected), then run each reference against the tests so built: every
one should pass. Prints the counts, what was dropped or skipped, and the times.

    python runs/evalplus_check.py MbppPlus.jsonl
"""
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import data  # noqa: E402
import sandbox  # noqa: E402


def main(path):
    stats, t = {}, time.time()
    problems = data.load_problems(path, stats=stats)
    load_s = time.time() - t
    n_inputs = sum(len(p.plus_tests) for p in problems)
    print(f"{path}: {len(problems)} tasks, {n_inputs} inputs ({sum(len(p.tests) for p in problems)} "
          f"base) in {load_s:.0f} s ({n_inputs / load_s:.0f} reference calls/s); skipped "
          f"{stats.get('skipped') or 'none'}; inputs dropped {stats.get('dropped_inputs') or 'none'}")
    t = time.time()
    results = sandbox.run_batch([(p.solution, p.plus_tests) for p in problems],
                                stop_on_failure=False, progress=True)
    failing = [(p.id, r.first_error[:120]) for p, r in zip(problems, results) if not r.all_passed]
    print(f"references on their own base + plus tests: {len(problems) - len(failing)} of "
          f"{len(problems)} pass, {time.time() - t:.0f} s")
    for task, error in failing:
        print(f"  {task}: {error}")
    return 1 if failing else 0


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__.strip())
    sys.exit(main(sys.argv[1]))
