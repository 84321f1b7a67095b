"""
toy.py: the toy world, a code-RL world small enough to run all of ReCode on a CPU, and a
math world (task="math") beside it.

nanoGPT has shakespeare_char; this is the same idea for code RL. Everything is generated
here, nothing is downloaded:

- problems of eight families of our own (arithmetic, list counting, strings, stdin/stdout,
  a LeetCode-style class), each with a statement, a reference program, a reference
  step-by-step reasoning, complete "plus" tests (the family's cases and the boundary or
  special cases where its typical flaw shows), and a difficulty; a few thousand distinct
  problems, of which a fixed tenth (chosen by data.seed_hash of the family and its
  parameters) is held out for evaluation and never trained on;
- base and plus tests, as in EvalPlus (HumanEval / HumanEval+): `tests` are what the reward
  sees, `plus_tests` only evaluation does. Training tests of real code RL are incomplete, so
  for `weak_share` of the problems where it can happen (chosen by hash), the base tests are
  WEAK: only the plus tests on which the flawed program (the wrong constant that the flawed
  reasoning states) gives the reference's answers, at least two of them, and at least one
  that a small bug still fails. A lucky program passes them and fails the plus tests.
  Agreement is computed in-process by running our own programs on each input (see
  `passes`); the tests check it in the sandbox. Three families stay strong: their wrong
  constant agrees with the reference on one input at most (linear at x = 0, shift_class on
  []) or none (repeat_join). All other problems have tests == plus_tests;
- preference pairs made the paper's way, with rules in place of an LLM: each initial
  reasoning y is the reference with one mild flaw; y+ applies the mirror optimization,
  y- applies one or two of the five degradations (factual error, irrelevant step,
  incomplete, logical gap, chaotic order); pairs opt_deg (y+ > y-), ori_deg (y > y-),
  opt_ori (y+ > y);
- a byte-level BPE tokenizer trained on the toy corpus with the Qwen2 pre-tokenizer, saved
  as a Qwen2Tokenizer (tokenizer.json, AutoTokenizer), so that the policy's checkpoints,
  which load their tokenizer by model type, tokenize exactly as the warm start did;
- a tiny Qwen2 policy warm-started by a short supervised run on a deliberately imperfect
  corpus whose passing samples vary in reasoning, as real samples do; its kinds, in the
  exact shares of `warm_mix` (reasons there):
    right    0.35  sound reasoning, right code
    poor     0.15  sound but poor reasoning (a redundant step or a disordered order: the
                   degradations irrelevant_path / chaotic_order, which keep the answer), right code
    lucky    0.10  flawed reasoning (a wrong constant) and the code that follows it, on a
                   problem with weak tests: passes the base tests, fails the plus tests
    flawed   0.20  the same on a problem with complete tests: fails
    buggy    0.20  sound reasoning, a small bug in the code: fails
  The reward model never sees any of this: it learns from the rule-made pairs above only,
  which read no test and no kind;
- a toy LCB-RB built as in the paper: sample the warm-started policy on held-out
  problems, run the plus tests (a lucky pass is a failed sample, as a benchmark that
  knows the complete tests would count it), judge each reasoning against the reference
  (Yes: flawed and the code follows it; No: sound and the code follows it; None: the code
  does not follow the reasoning), pair each flawed+wrong sample with one random
  sound+right sample of the same problem, drop one-sided problems.

The math world (task="math", the paper's Sec. 4 on a CPU) is the same machinery on
problems with a final answer (data.Problem.answer, no tests; prompts.run_responses judges
the boxed answer with mathcheck). Four families of our own, each with its typical flaw as
the wrong key constant that the flawed reasoning states and carries to a wrong answer:
    series     sum of an arithmetic series; off by one: the last term n steps after the
               first instead of n - 1 (its flawed sums may be fractions)
    multiples  multiples of k in a range whose first number is one; a missed case: that
               first number left out
    discount   a sale price after p% off, a decimal answer; the discount taken for the
               share that is paid
    equation   a x + b = c, x an integer or a fraction p/q; a sign error: b moved
               across with its sign kept
The reasoning ends on the answer's expression, and the answer evaluates it; a slip is that
last evaluation off by one unit under the reference reasoning. Rule-made pairs, the split,
the tokenizer and the warm start are the code world's; the warm-start kinds, in the exact
shares of `math_mix` (reasons there):
    right    0.45  sound reasoning, right answer
    poor     0.15  sound but poor reasoning (a redundant step or a disordered order), right answer
    flawed   0.20  flawed reasoning (a wrong constant) and the wrong answer it reaches
    slip     0.20  sound reasoning, a slip in its last step: a wrong answer
There is no lucky kind: an answer is a complete check, there are no weak tests. The toy
LCB-RB is built the same way (final answers in place of programs; the judge's "follows"
is the answer the stated constant leads to).

Everything lands under data_dir (data/toy/; the math world e.g. data/toy_math/) and a
stage is rebuilt only when its output is missing or its recipe (the settings below)
changed:

    python toy.py                      # build whatever is missing or stale
    python train_rm.py && python train_grpo.py   # then: the reward model, then P-GRPO
    python toy.py --stage=warmstart    # only up to this stage: problems, tokenizer, warmstart, lcbrb
    python toy.py --stage=lcbrb --force=True   # rebuild this stage (and what follows) anyway
    python toy.py --task=math --data_dir=data/toy_math   # the math world; then point train_rm.py,
        # train_grpo.py and eval.py at its files (--pairs_file, --init_from, --train_file, ...)
"""

import contextlib
import copy
import dataclasses
import io
import json
import os
import math
import random
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass
from fractions import Fraction
from typing import List

import torch

import data
import mathcheck
import prompts

# ---------------------------------------------------------------- config
data_dir = "data/toy"
task = "code"             # code | math: which toy world to build (module docstring)
seed = 0
n_train = 3000            # training problems (at most: some families have fewer)
n_pair_problems = 800     # training problems that give preference pairs (3 pairs each)
vocab_size = 1024
n_layer, n_embd, n_head = 4, 128, 4
warm_epochs = 6
warm_batch = 32
warm_lr = 3e-3
copy_weight = 5.0         # loss weight of reply tokens copied from the prompt (reply_weights)
# The world's shares below were fixed before any RL run and are not tuned on RL results.
# weak_share: of the problems whose flaw can hide (>= 2 plus tests on which the flawed
# program is right; 5 of the 8 families), the share whose base tests are weak (hashed per
# problem): about 16% of all problems. A chosen setting, not a measured one: EvalPlus's
# plus tests show that real benchmark tests let wrong programs through on a minority of
# problems, and RL training sets scraped from contests carry fewer tests than those.
weak_share = 0.3
# The warm-start corpus, share of each kind (module docstring). 60% of the samples pass
# the base tests (right + poor + lucky), so the warm-started policy sits mid-range, where
# GRPO's groups hold both outcomes. One passing sample in six is lucky (0.10 / 0.60), in
# the range of EvalPlus's finding that the plus tests cut HumanEval pass@k by up to 19-29%
# (the abstract's figures). One passing sample in four reasons soundly but poorly, and the
# failures split evenly between a flaw in the reasoning and a bug under sound reasoning:
# neither paper gives these two figures, they are our round guesses.
warm_mix = dict(right=0.35, poor=0.15, lucky=0.10, flawed=0.20, buggy=0.20)
# The math world's warm-start corpus (task="math"). A math problem is judged by its final
# answer alone, a check that is complete by construction: there are no weak tests, so no
# lucky pass (flawed reasoning always reaches a wrong answer here). Its 0.10 goes to right,
# which keeps the code world's 60% passing samples (right + poor) and its even split of the
# failures between a flaw in the reasoning and a slip under sound reasoning.
math_mix = dict(right=0.45, poor=0.15, flawed=0.20, slip=0.20)
# The toy LCB-RB: every held-out problem (226 exist), 16 samples each (the paper: 50). Measured
# on this world: 150 x 8 gave 49 pairs, 226 x 8 gave 72 (53 s on one thread); the samples are
# seeded per (problem, k), so 16 holds those 8 and 8 more: about twice the pairs, >= 100.
lcbrb_problems = 240      # held-out problems sampled for the toy LCB-RB
lcbrb_samples = 16        # samples per problem
max_new_tokens = 160

STAGES = ("problems", "tokenizer", "warmstart", "lcbrb")
TASKS = ("code", "math")
DISTRACTORS = [
    "Python integers have no fixed size, so overflow is not a concern here.",
    "A list in Python can hold values of any type.",
    "The function could also be written with a while loop instead.",
    "Sorting the input first is possible, though it is not needed.",
    "It is worth remembering that strings in Python are immutable.",
]
MATH_DISTRACTORS = [           # irrelevant_path's true but useless steps in the math world
    "Addition is commutative, so the order of the terms does not matter.",
    "Every whole number is either even or odd.",
    "The problem could also be solved by drawing a small table.",
    "Multiplying by 1 leaves a number unchanged.",
    "A negative number times a negative number is positive.",
]


# ---------------------------------------------------------------- problem families
@dataclass
class ToyTask:
    """One problem plus what the rules need: reasoning steps (index `key` states the
    constant that matters), the reference program, a version of both with a wrong
    constant (a consistent factual error), and a program with a small bug. weak: the
    problem's base tests miss the wrong constant (problem.tests is then a part of
    problem.plus_tests); can_be_weak: they could (whatever weak_share drew).

    A math task (problem.answer set, see make_math_task) fills the same fields with final
    answers in place of programs: code is the reference answer, flawed_code the answer the
    flawed reasoning reaches, buggy_code a slip (the reference reasoning's last step
    evaluated wrongly); it is never weak."""
    problem: data.Problem
    steps: list
    key: int
    code: str
    flawed_steps: list
    flawed_code: str
    buggy_code: str
    const: str          # how the key constant is written in the steps and the code
    wrong: str          # the wrong constant of the flawed versions
    family: str = ""
    params: tuple = ()
    weak: bool = False
    can_be_weak: bool = False

    @property
    def math(self):
        """A math task: its answers are judged by mathcheck, not run."""
        return bool(self.problem.answer)


def _steps(intro, key_step, middle, check, final):
    return [intro, key_step, *middle, check, final]


def _call_tests(fn, inputs, reference):
    """Call tests whose expected values the reference computes (one argument each)."""
    return [{"kind": "call", "fn": fn, "args": [x], "expected": reference(x)} for x in inputs]


def _stdio_tests(inputs, reference):
    return [{"kind": "stdio", "input": x, "output": f"{reference(x)}\n"} for x in inputs]


def _int_lists(rng, lo, hi, n=4, longest=6):
    return [[rng.randint(lo, hi) for _ in range(rng.randint(1, longest))] for _ in range(n)]


def _plus(inputs, extras):
    """The family's inputs, then the special cases it does not already hold."""
    return inputs + [x for x in extras if x not in inputs]


def fam_linear(rng, a, b, fn):
    st = f"Write a function {fn}(x) that returns {a} times x plus {b}."
    def steps(a_):
        return _steps("The input is one integer x and the output is one integer.",
                      f"First multiply x by {a_}.", [f"Then add {b} to the product."],
                      f"Check: x = 2 gives {a_} * 2 + {b} = {2 * a_ + b}.",
                      f"So the function returns {a_} * x + {b}.")
    code = lambda a_, op="+": f"def {fn}(x):\n    return {a_} * x {op} {b}\n"
    tests = _call_tests(fn, _plus(rng.sample(range(-9, 10), 4), [0, 100]), lambda x: a * x + b)
    return st, tests, steps, code, a, code(a, "-"), "easy", fn


def fam_count_multiples(rng, k, fn):
    st = f"Write a function {fn}(nums) that returns how many numbers in the list nums are divisible by {k}."
    def steps(k_):
        return _steps("The input is a list of integers and the output is a count.",
                      f"A number x is divisible by {k_} exactly when x % {k_} == 0.",
                      ["Go through the list once and count the numbers that satisfy it."],
                      f"Check: in [{k_}, {k_ + 1}, {2 * k_}] two numbers qualify.",
                      "Return the count; one pass is O(n) time and O(1) space.")
    code = lambda k_, rem=0: f"def {fn}(nums):\n    return sum(1 for x in nums if x % {k_} == {rem})\n"
    # plus: empty, a zero (a multiple of every k: a remainder bug shows), the wrong divisor alone
    tests = _call_tests(fn, _plus([[k, k + 1, 2 * k]] + _int_lists(rng, 0, 40, longest=7),
                                  [[], [0], [k + 1]]),
                        lambda nums: sum(1 for x in nums if x % k == 0))
    return st, tests, steps, code, k, code(k, 1), "easy", fn


def fam_count_char(rng, c, fn):
    st = f"Write a function {fn}(s) that returns how many times the letter '{c}' appears in the string s."
    def steps(c_):
        return _steps("The input is a string s and the output is a count.",
                      f"We look for the letter '{c_}' only.",
                      ["Each position of s either holds that letter or not."],
                      f"Check: '{c_}x{c_}' holds it twice.",
                      "str.count does the counting in O(n) time.")
    code = lambda c_, start=0: (f"def {fn}(s):\n    return s.count('{c_}')\n" if not start else
                                f"def {fn}(s):\n    return s[1:].count('{c_}')\n")
    words = ["".join(rng.choice(c + "abcdxyz") for _ in range(rng.randint(2, 9))) for _ in range(4)]
    flawed = "abcdefghijklmnopqrstuvwxyz"[("abcdefghijklmnopqrstuvwxyz".index(c) + 1) % 26]
    # plus: empty, the letter first (a skipped first position shows), the wrong letter alone
    tests = _call_tests(fn, _plus(words + [c + c + "z"], ["", c + flawed, flawed + flawed]),
                        lambda s: s.count(c))
    return st, tests, steps, code, c, code(c, 1), "easy", fn, flawed


def fam_repeat_join(rng, k, sep, fn):
    st = f"Write a function {fn}(s) that returns the string s repeated {k} times, joined by '{sep}'."
    def steps(k_):
        return _steps("The input is a string s and the output is a string.",
                      f"We need {k_} copies of s.",
                      [f"Put '{sep}' between neighbouring copies, not at the ends."],
                      f"Check: 'ab' gives {sep.join(['ab'] * k_)!r}.",
                      f"So return '{sep}'.join of a list holding s {k_} times.")
    code = lambda k_, cut=0: f"def {fn}(s):\n    return '{sep}'.join([s] * {k_ - cut})\n"
    tests = _call_tests(fn, _plus(rng.sample(["a", "ab", "xyz", "q", "hi", "tree"], 3), [""]),
                        lambda w: sep.join([w] * k))
    return st, tests, steps, code, k, code(k, 1), "medium", fn


def fam_clamp(rng, lo, hi, fn):
    st = (f"Write a function {fn}(nums) that returns a new list in which every number below "
          f"{lo} becomes {lo} and every number above {hi} becomes {hi}.")
    def steps(hi_):
        return _steps("The input is a list of integers and the output is a list of the same length.",
                      f"The upper limit is {hi_}, the lower limit is {lo}.",
                      ["Each number is first raised to the lower limit, then lowered to the upper limit."],
                      f"Check: [{lo - 3}, {hi_ + 2}] becomes [{lo}, {hi_}].",
                      "One pass builds the new list in O(n) time.")
    code = lambda hi_, swap=False: (
        f"def {fn}(nums):\n    return [min(max(x, {lo}), {hi_}) for x in nums]\n" if not swap else
        f"def {fn}(nums):\n    return [max(min(x, {lo}), {hi_}) for x in nums]\n")
    # plus: empty, both limits (swapped min/max shows), just above the upper limit
    tests = _call_tests(fn, _plus([[hi + 1, lo - 1, hi]] + _int_lists(rng, -5, 25),
                                  [[], [lo, hi], [hi + 1]]),
                        lambda nums: [min(max(x, lo), hi) for x in nums])
    return st, tests, steps, code, hi, code(hi, True), "medium", fn


def fam_shift_class(rng, k, method):
    st = (f"Implement class Solution with a method {method}(self, nums: List[int]) -> List[int] "
          f"that returns the list with {k} added to every element.")
    def steps(k_):
        return _steps("The input is a list of integers and the output is a list of the same length.",
                      f"Every element grows by {k_}.",
                      ["The order of the elements stays the same."],
                      f"Check: [1, 2] becomes [{1 + k_}, {2 + k_}].",
                      "A list comprehension does it in O(n) time.")
    code = lambda k_, cut=False: (
        f"class Solution:\n    def {method}(self, nums: List[int]) -> List[int]:\n"
        f"        return [x + {k_} for x in nums{'[1:]' if cut else ''}]\n")
    tests = _call_tests(method, _plus(_int_lists(rng, -9, 9), [[], [0]]),
                        lambda nums: [x + k for x in nums])
    return st, tests, steps, code, k, code(k, True), "medium", method


def fam_sum_above(rng, t):
    st = (f"The first line of standard input holds n, the second line n integers. Print the sum "
          f"of the integers that are greater than {t}.")
    def steps(t_):
        return _steps("Read n, then the n integers from the second line.",
                      f"Only integers strictly greater than {t_} count.",
                      ["Add up the integers that qualify; an empty sum is 0."],
                      f"Check: for {t_} {t_ + 1} {t_ + 2} the answer is {2 * t_ + 3}.",
                      "Print the sum on one line.")
    code = lambda t_, op=">": (f"n = int(input())\nxs = list(map(int, input().split()))\n"
                               f"print(sum(x for x in xs if x {op} {t_}))\n")
    # random lines around t (from 0 to 20 they tested nothing for t > 20), the boundary where
    # > and >= part ways, and plus: t + 1 alone, where a threshold off by one shows
    lines = [f"{len(xs)}\n{' '.join(map(str, xs))}\n"
             for xs in _plus(_int_lists(rng, max(0, t - 8), t + 8) + [[t], [t + 1, t + 2]],
                             [[t + 1]])]
    tests = _stdio_tests(lines, lambda s: sum(x for x in map(int, s.split()[1:]) if x > t))
    return st, tests, steps, code, t, code(t, ">="), "hard", ""


def fam_spread(rng, m):
    st = (f"Read integers from one line of standard input and print the largest minus the "
          f"smallest, multiplied by {m}.")
    def steps(m_):
        return _steps("Read all integers of the line into a list.",
                      f"The answer is (largest - smallest) * {m_}.",
                      ["max and min each take one pass over the list."],
                      f"Check: 3 1 4 gives (4 - 1) * {m_} = {3 * m_}.",
                      "Print that number.")
    code = lambda m_, paren=True: ("xs = list(map(int, input().split()))\n" +
                                   (f"print((max(xs) - min(xs)) * {m_})\n" if paren else
                                    f"print(max(xs) - min(xs) * {m_})\n"))
    # plus: one number, and equal numbers (a spread of 0, where any factor agrees)
    v = rng.randint(1, 30)
    lines = [" ".join(map(str, xs)) + "\n" for xs in _plus(_int_lists(rng, 0, 30), [[v], [v, v, v]])]
    tests = _stdio_tests(lines, lambda s: (max(map(int, s.split())) - min(map(int, s.split()))) * m)
    return st, tests, steps, code, m, code(m, False), "hard", ""


NAMES = ["f", "compute", "solve", "answer"]
FAMILIES = {
    "linear": (fam_linear, [(a, b, fn) for a in range(2, 13) for b in range(1, 13) for fn in NAMES]),
    "count_multiples": (fam_count_multiples, [(k, fn) for k in range(2, 41)
                                              for fn in ["count_multiples", "how_many"] + NAMES]),
    "count_char": (fam_count_char, [(c, fn) for c in "abcdefghijklmnopqrstuvwxy"
                                    for fn in ["count_letter", "occurrences"] + NAMES]),
    "repeat_join": (fam_repeat_join, [(k, s, fn) for k in range(2, 13) for s in "-+,;:|"
                                      for fn in ["repeat", "chain"] + NAMES]),
    "clamp": (fam_clamp, [(lo, hi, fn) for lo in range(0, 8) for hi in range(8, 23)
                          for fn in ["clamp", "limit"] + NAMES]),
    "shift_class": (fam_shift_class, [(k, m) for k in range(1, 61)
                                      for m in ["shiftAll", "addToAll", "raiseAll"]]),
    "sum_above": (fam_sum_above, [(t,) for t in range(0, 100)]),
    "spread": (fam_spread, [(m,) for m in range(2, 100)]),
}


def make_task(family, params):
    """Build one ToyTask; the plus tests come from the family's own reference computation,
    the base tests are the plus tests or, on a weak problem, the part of them on which
    the flawed program gives the reference's answers (weak_tests)."""
    if family in MATH_FAMILIES:
        return make_math_task(family, params)
    fn_family, _ = FAMILIES[family]
    rng = random.Random(f"{family}{params}")
    st, plus, steps, code, const, buggy, difficulty, entry, *flawed = fn_family(rng, *params)
    wrong = flawed[0] if flawed else const + 1
    pid = f"toy/{family}/" + "_".join(map(str, params))
    weak_tests = _weak_tests(plus, code(wrong), buggy)
    # drawn by hash of the problem alone, like the held-out split: the same problem is weak
    # in every world built with this weak_share, whatever n_train or seed
    weak = bool(weak_tests) and data.seed_hash("weak tests", family, params) / 2 ** 48 < weak_share
    tests = weak_tests if weak else plus
    problem = data.Problem(id=pid, statement=st, tests=tests, difficulty=difficulty,
                           source="toy", entry_point=entry, solution=code(const), plus_tests=plus,
                           starter_code=(f"class Solution:\n    def {entry}(self, nums: List[int]) "
                                         f"-> List[int]:\n        " if family == "shift_class" else ""))
    return ToyTask(problem, steps(const), 1, code(const), steps(wrong), code(wrong), buggy,
                   str(const), str(wrong), family, tuple(params),
                   weak=weak, can_be_weak=bool(weak_tests))


def _weak_tests(plus, flawed_code, buggy_code):
    """The weak base tests a problem could have, or [] if it cannot have any: the plus tests
    that the flawed program passes, when there are at least two (one test is too thin to
    pass for a test set) and they still fail the buggy program (a weak test set misses the
    flaw's case, not every bug: a sound-but-buggy sample still fails)."""
    agree = [t for t, ok in zip(plus, passes(flawed_code, plus)) if ok]
    if len(agree) < 2 or len(agree) == len(plus) or all(passes(buggy_code, agree)):
        return []
    return agree


def passes(code, tests):
    """Whether the program gives each test's expected answer, run in this process.

    Only for our own generated programs (a few lines each, no unbounded loop): thousands
    of problems are checked in well under a second, with no process pool in a data stage,
    and the result is deterministic. Answers must equal the expected ones exactly, which
    is as strict as the sandbox's judging or stricter, so a test found passed here passes
    there; tests/test_toy.py checks the weak problems in the sandbox."""
    program = compile(code, "<toy program>", "exec")
    out = []
    for t in tests:
        env = {"__name__": "__main__", "List": List}        # a fresh namespace per test
        try:
            if t["kind"] == "call":
                exec(program, env)
                fn = getattr(env["Solution"](), t["fn"]) if "Solution" in env else env[t["fn"]]
                out.append(fn(*copy.deepcopy(t["args"])) == t["expected"])
                continue
            stdout, stdin = io.StringIO(), sys.stdin
            sys.stdin = io.StringIO(t["input"])
            try:
                with contextlib.redirect_stdout(stdout):
                    exec(program, env)
            finally:
                sys.stdin = stdin
            out.append(stdout.getvalue() == t["output"])
        except (Exception, SystemExit):     # exit() ends a program, not the build
            out.append(False)
    return out


# ---------------------------------------------------------------- math families (task="math")
# Each family returns (statement, steps, value, const, wrong, difficulty, fmt): steps(c) is
# the reasoning that states the key constant c and carries it through, ending on the
# expression of the answer (so that evaluating it is the last step, where a slip happens);
# value(c) the answer that reasoning reaches, exactly (a Fraction); const the right key
# constant, wrong the family's typical flaw; fmt writes a value as the answer is written.
def _number(x):
    """A rational answer as math answers are written: 12, -3, \\frac{7}{3}, -\\frac{7}{3}."""
    if x.denominator == 1:
        return str(x.numerator)
    return f"{'-' if x < 0 else ''}\\frac{{{abs(x.numerator)}}}{{{x.denominator}}}"


def _decimal(x):
    """An amount of money in whole cents, exactly (no float): 42, 42.5, 42.75."""
    cents = x * 100
    assert cents.denominator == 1, x
    whole, rest = divmod(abs(cents.numerator), 100)
    return f"{'-' if x < 0 else ''}{whole}" + (f".{rest:02d}".rstrip("0") if rest else "")


def mfam_series(rng, a, d, n):
    st = (f"An arithmetic sequence starts at {a}, and each term is {d} more than the one before. "
          f"What is the sum of its first {n} terms?")
    def steps(last):
        return _steps(f"There are {n} terms; the first is {a} and the common difference is {d}.",
                      f"The last term is {last}.",
                      ["The sum of an arithmetic series is the number of terms times the average "
                       "of the first and last terms."],
                      f"Check: the first and last terms add up to {a} + {last} = {a + last}.",
                      f"So the sum is {n} * {a + last} / 2.")
    # the typical flaw, off by one: n steps of d after the first term instead of n - 1 (an
    # odd n with an odd d gives a flawed sum that is not even a whole number)
    value = lambda last: Fraction(n * (a + last), 2)        # noqa: E731
    return st, steps, value, a + (n - 1) * d, a + n * d, "medium", _number


def mfam_multiples(rng, k, m, q, r):
    lo, last = k * m, k * (m + q)
    hi = last + r
    st = f"How many multiples of {k} are there from {lo} to {hi}, both ends included?"
    def steps(first):
        return _steps(f"We count the numbers from {lo} to {hi} that {k} divides.",
                      f"The first multiple in the range is {first}.",
                      [f"The last multiple in the range is {last}, and the multiples go up in steps of {k}."],
                      f"Check: from {first} to {last} there are ({last} - {first}) / {k} = "
                      f"{(last - first) // k} steps.",
                      f"So the count is {(last - first) // k} + 1.")
    # the typical flaw, a missed case: the range's first number, a multiple itself, left out
    return st, steps, lambda first: Fraction((last - first) // k + 1), lo, lo + k, "easy", _number


def mfam_discount(rng, item, price, off):
    st = (f"A {item} costs {price} dollars. In a sale it is sold at {off}% off. What is its sale "
          f"price, in dollars?")
    def steps(pay):
        return _steps(f"The full price is {price} dollars and the discount is {off}%.",
                      f"The buyer pays {pay}% of the full price.",
                      ["A percentage of a price is the price times the percentage, divided by 100."],
                      f"Check: {pay}% of 100 dollars would be {pay} dollars.",
                      f"So the sale price is {price} * {pay} / 100.")
    # the typical flaw, a wrong constant: the discount taken for the share that is paid
    return st, steps, lambda pay: Fraction(price * pay, 100), 100 - off, off, "easy", _decimal


def mfam_equation(rng, a, b, c):
    st = f"Solve for x: {a}x + {b} = {c}."
    def steps(rhs):
        return _steps(f"The equation is {a}x + {b} = {c}, and x is wanted.",
                      f"Taking the constant term to the other side leaves {rhs} on the right.",
                      [f"Then both sides are divided by {a}, the coefficient of x."],
                      f"Check: {a} times x must give {rhs}.",
                      f"So x = {rhs} / {a}.")
    # the typical flaw, a sign error: the constant term moved across with its sign kept
    return st, steps, lambda rhs: Fraction(rhs, a), c - b, c + b, "hard", _number


OFFS = (10, 15, 20, 25, 30, 35, 40, 45, 55, 60, 65, 70, 75, 80, 90)   # not 50: paid = off
MATH_FAMILIES = {
    "series": (mfam_series, [(a, d, n) for a in range(1, 10) for d in range(2, 10) for n in range(5, 17)]),
    "multiples": (mfam_multiples, [(k, m, q, r) for k in range(2, 13) for m in range(2, 7)
                                   for q in range(2, 8) for r in sorted({0, k // 2, k - 1})]),
    "discount": (mfam_discount, [(item, p, off) for item in ("jacket", "lamp")
                                 for p in range(10, 100, 3) for off in OFFS]),
    "equation": (mfam_equation, [(a, b, c) for a in range(2, 10) for b in range(1, 10)
                                 for c in range(-9, 21, 2)]),
}


def make_math_task(family, params):
    """Build one math ToyTask (ToyTask's docstring): no tests, the reference final answer in
    problem.answer. The slip moves the last step's value by one unit (one, or 1/q for a
    fraction p/q), away from the flawed answer when it would land on it, so that the three
    answers differ; every task is checked with the judge's own comparison (right_answer)."""
    fn_family, _ = MATH_FAMILIES[family]
    rng = random.Random(f"{family}{params}")
    st, steps, value, const, wrong, difficulty, fmt = fn_family(rng, *params)
    right, flawed = value(const), value(wrong)
    step = rng.choice((-1, 1)) * (Fraction(1, right.denominator) if fmt is _number else 1)
    slip = right + step if right + step != flawed else right - step
    problem = data.Problem(id=f"toy_math/{family}/" + "_".join(map(str, params)), statement=st,
                           tests=[], difficulty=difficulty, source="toy_math",
                           solution="\n".join(steps(const)), answer=fmt(right))
    t = ToyTask(problem, steps(const), 1, fmt(right), steps(wrong), fmt(flawed), fmt(slip),
                str(const), str(wrong), family, tuple(params))
    if not right_answer(t, t.code) or right_answer(t, t.flawed_code) or right_answer(t, t.buggy_code):
        raise ValueError(f"{problem.id}: the reference answer must be right, the flawed and slip ones wrong")
    return t


def right_answer(task, answer):
    """Whether a final answer is the math task's reference answer, compared as the reward
    compares it (prompts.judge_answer: mathcheck.check): the math world's `passes`."""
    return mathcheck.check(answer, task.problem.answer)[0]


def _families():
    """The problem families of the world `task` builds."""
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, not {task!r}")
    return MATH_FAMILIES if task == "math" else FAMILIES


def held_out(family, params):
    """A fixed tenth of the parameter space, chosen by hash: the evaluation problems."""
    return data.seed_hash("held out", family, params) % 10 == 0


def all_tasks(split, limit=None, seed_=0):
    """Tasks of one split ("train" or "eval") of the world `task` builds, families
    interleaved in a seeded order."""
    keys = [(f, p) for f, (_, grid) in _families().items() for p in grid
            if held_out(f, p) == (split == "eval")]
    random.Random(seed_).shuffle(keys)
    return [make_task(f, p) for f, p in keys[:limit]]


# ---------------------------------------------------------------- reasoning rewrites
def degrade(task, steps, method, rng):
    """Apply one of the five degradations to a list of steps."""
    steps = list(steps)
    if method == "factual_error":         # the key constant becomes a wrong one
        steps = [s.replace(task.const, task.wrong) if i == task.key else s
                 for i, s in enumerate(steps)]
    elif method == "irrelevant_path":     # a true but useless step
        useless = MATH_DISTRACTORS if task.math else DISTRACTORS
        steps.insert(rng.randint(1, len(steps) - 1), rng.choice(useless))
    elif method == "incomplete":          # stop before the conclusion
        steps = steps[:max(2, len(steps) - 2)]
    elif method == "logical_gap":         # drop the key step
        steps = steps[:task.key] + steps[task.key + 1:]
    elif method == "chaotic_order":       # effects before causes
        order = list(range(len(steps)))
        while order == sorted(order):
            rng.shuffle(order)
        steps = [steps[i] for i in order]
    else:
        raise ValueError(f"unknown degradation {method!r}")
    return steps


MILD_FLAWS = {"irrelevant_path": "focus", "chaotic_order": "logical_flow"}


def make_pairs(task, rng):
    """The three pair kinds for one task. y: the reference with one mild flaw; y+: the
    reference (the mirror optimization undoes the flaw); y-: y with one or two
    degradations, at least one of them serious."""
    mild = rng.choice(sorted(MILD_FLAWS))
    y = degrade(task, task.steps, mild, rng) if mild != "chaotic_order" else _swap_two(task.steps, rng)
    serious = rng.choice(["factual_error", "incomplete", "logical_gap"])
    extra = rng.sample([m for m, _ in prompts.DEGRADE_METHODS if m != serious], rng.randint(0, 1))
    y_minus = degrade(task, task.steps, serious, rng)
    for m in extra:
        y_minus = degrade(task, y_minus, m, rng)
    text = lambda s: "\n".join(s)
    meta = {"initial_flaw": mild, "optimized_by": [MILD_FLAWS[mild]], "degraded_by": [serious] + extra}
    p = task.problem             # source: "toy", or "toy_math" in the math world
    return [data.Pair(p.statement, text(task.steps), text(y_minus), "opt_deg", p.source, p.id, meta),
            data.Pair(p.statement, text(y), text(y_minus), "ori_deg", p.source, p.id, meta),
            data.Pair(p.statement, text(task.steps), text(y), "opt_ori", p.source, p.id, meta)]


def _swap_two(steps, rng):
    i = rng.randint(1, len(steps) - 3)
    steps = list(steps)
    steps[i], steps[i + 1] = steps[i + 1], steps[i]
    return steps


# ---------------------------------------------------------------- completions and judging
def completion(steps, code, math=False):
    """A response in the RL format: the code in a python block, or with math=True `code`
    is a final answer, boxed (what mathcheck.extract_answer reads)."""
    think = "\n".join(steps)
    if math:
        return f"<think>\n{think}\n</think>\n<answer>\n\\boxed{{{code}}}\n</answer>"
    return f"<think>\n{think}\n</think>\n<answer>\n```python\n{code}```\n</answer>"


POOR_WAYS = ("irrelevant_path", "chaotic_order")   # degradations that keep the answer


def warm_kinds(tasks):
    """The kind of each task's warm-start completion, in exactly warm_mix's shares (largest
    remainders) and a hashed order of the problems. A lucky pass needs a weak problem (there
    the flawed program passes the base tests), flawed-and-wrong a strong one (anywhere else
    it would be a lucky pass too). If there are too few weak problems, the missing lucky
    ones become flawed-and-wrong, so that flawed reasoning keeps its share. Math tasks take
    math_mix's shares, which hold no lucky kind, and "slip" in place of "buggy".
    Returns (kinds, how many lucky ones were missing)."""
    mix = mix_of(tasks)
    quota = _quotas(len(tasks), mix)
    order = sorted(range(len(tasks)), key=lambda i: data.seed_hash(seed, "warm kind", tasks[i].problem.id))
    kinds = [None] * len(tasks)
    weak = [i for i in order if tasks[i].weak]
    lucky = quota.get("lucky", 0)
    for i in weak[:lucky]:
        kinds[i] = "lucky"
    missing = lucky - min(lucky, len(weak))
    for i in [i for i in order if not tasks[i].weak][:quota["flawed"] + missing]:
        kinds[i] = "flawed"
    rest = [i for i in order if kinds[i] is None]
    n_right, n_poor = quota["right"], quota["poor"]
    wrong = "slip" if "slip" in mix else "buggy"       # sound reasoning, wrong result
    for j, i in enumerate(rest):
        kinds[i] = "right" if j < n_right else "poor" if j < n_right + n_poor else wrong
    return kinds, missing


def mix_of(tasks):
    """The warm-start shares of these tasks' world: math_mix for math tasks, else warm_mix."""
    return math_mix if tasks and tasks[0].math else warm_mix


def _quotas(n, shares):
    """Counts that add up to n, each share * n rounded by largest remainder."""
    total = sum(shares.values())
    exact = {k: n * v / total for k, v in shares.items()}
    counts = {k: math.floor(x) for k, x in exact.items()}
    for k in sorted(exact, key=lambda k: counts[k] - exact[k])[:n - sum(counts.values())]:
        counts[k] += 1
    return counts


def warm_completion(task, kind, rng):
    """The warm-start completion of one kind (warm_kinds): sound or flawed reasoning, and
    the code that follows it, or a small bug. A poor one is the reference reasoning with a
    redundant step or in a jumbled order, and the right code. In the math world the code is
    the final answer, and a slip is the sound reasoning with its last step evaluated wrongly."""
    m = task.math
    if kind == "right":
        return completion(task.steps, task.code, m)
    if kind == "poor":
        return completion(degrade(task, task.steps, rng.choice(POOR_WAYS), rng), task.code, m)
    if kind in ("lucky", "flawed"):
        return completion(task.flawed_steps, task.flawed_code, m)
    if kind in ("buggy", "slip"):
        return completion(task.steps, task.buggy_code, m)
    raise ValueError(f"unknown completion kind {kind!r}")


def judge(task, think, code):
    """The toy judge, on the paper's scale: "No" sound reasoning that the code follows,
    "Yes" flawed reasoning that the code follows, "None" code that does not follow it.
    Sound = the reference's key step is there, its constant right, steps in order. For a
    math task `code` is the final answer (None when there is none) and it follows when it is
    the answer the stated constant leads to (prompts.judge_prompt's math wording)."""
    lines = [ln.strip() for ln in think.strip().splitlines() if ln.strip()]
    key = task.steps[task.key]
    ref_positions = [task.steps.index(ln) for ln in lines if ln in task.steps]
    sound = key in lines and ref_positions == sorted(ref_positions) and \
        task.steps[-1] in lines
    said = task.const if sound else _constant_in(task, lines)
    if said is None or code is None or not _follows(task, code, said):
        return "None"
    return "No" if sound else "Yes"


def _constant_in(task, lines):
    """The constant the reasoning's key step states, if it has one. The key step is known by
    its text up to the constant, where the constant is found as it is written (a quoted
    letter, a whole word): a bare letter can stand earlier, as 'h' does in "the"."""
    key = task.steps[task.key]
    quoted = task.family == "count_char"
    written = f"'{re.escape(task.const)}'" if quoted else rf"(?<!\w){re.escape(task.const)}(?!\w)"
    head = key[:re.search(written, key).start()]
    for ln in lines:
        if ln.startswith(head):
            found = re.match(r"'([a-z])'" if quoted else r"(-?\d+)", ln[len(head):])
            return found.group(1) if found else None
    return None


def _uses(code, const, family):
    """How often the program uses the constant (as a whole number, or as a quoted letter)."""
    pattern = f"'{re.escape(const)}'" if family == "count_char" else rf"(?<![\w.]){re.escape(const)}(?![\w.])"
    return len(re.findall(pattern, code))


def _follows(task, code, said):
    """Whether the code follows a reasoning that states the constant `said`: it uses the
    right and the wrong constant as often as the program written for `said` does. Using
    `said` is not enough, as the wrong constant can stand elsewhere in the right program
    (linear 10 * x + 11 with the wrong multiplier 11)."""
    written = {task.const: task.code, task.wrong: task.flawed_code}.get(said)
    if task.math:          # only the two known constants have a known answer to follow
        return written is not None and mathcheck.check(code, written)[0]
    if written is None:
        return _uses(code, said, task.family) > 0
    return all(_uses(code, c, task.family) == _uses(written, c, task.family)
               for c in (task.const, task.wrong))


# ---------------------------------------------------------------- recipe and stages
def recipe(stage):
    """The settings a stage's output depends on; a change rebuilds it (and what follows).
    The code world's recipe has no `task` key, as before there was a math world, so that
    its existing builds stay fresh; the math world's holds task, its own mix and version
    (weak_share and warm_mix do not touch it)."""
    if task == "code":
        base = dict(seed=seed, n_train=n_train, n_pair_problems=n_pair_problems,
                    weak_share=weak_share, warm_mix=warm_mix, version=6)
    else:
        base = dict(task=task, seed=seed, n_train=n_train, n_pair_problems=n_pair_problems,
                    math_mix=math_mix, version=1)
    more = {"tokenizer": dict(vocab_size=vocab_size),
            "warmstart": dict(vocab_size=vocab_size, n_layer=n_layer, n_embd=n_embd, n_head=n_head,
                              warm_epochs=warm_epochs, warm_batch=warm_batch, warm_lr=warm_lr,
                              copy_weight=copy_weight),
            "lcbrb": dict(lcbrb_problems=lcbrb_problems, lcbrb_samples=lcbrb_samples,
                          max_new_tokens=max_new_tokens,
                          lcbrb_version=4)}   # bumped when the judging or pairing code changes
    r = dict(base)
    for s in STAGES[1:STAGES.index(stage) + 1]:
        r.update(more[s])
    return r


def _stamp_path(stage):
    return os.path.join(data_dir, f".{stage}.recipe.json")


def is_fresh(stage):
    try:
        with open(_stamp_path(stage)) as f:
            return json.load(f) == recipe(stage)
    except (OSError, ValueError):
        return False


def _stamp(stage):
    with open(_stamp_path(stage), "w") as f:
        json.dump(recipe(stage), f)


def build_problems():
    train = all_tasks("train", n_train, seed)
    evals = all_tasks("eval", None, seed)
    data.save_problems([t.problem for t in train], os.path.join(data_dir, "train.jsonl"))
    data.save_problems([t.problem for t in evals], os.path.join(data_dir, "eval.jsonl"))
    # the reward model's pairs come from the rules alone: make_pairs reads the reasoning,
    # never the tests, which problems are weak or which completions are lucky
    rng = random.Random(seed)
    pairs = [p for t in train[:n_pair_problems] for p in make_pairs(t, rng)]
    data.save_pairs(pairs, os.path.join(data_dir, "pairs.jsonl"))
    held = [p for t in evals for p in make_pairs(t, rng)]          # never trained on
    data.save_pairs(held, os.path.join(data_dir, "pairs_eval.jsonl"))
    kinds, missing = warm_kinds(train)
    with open(os.path.join(data_dir, "warm.jsonl"), "w") as f:
        for t, kind in zip(train, kinds):
            text = warm_completion(t, kind, random.Random(data.seed_hash(seed, "warm", t.problem.id)))
            f.write(json.dumps({"id": t.problem.id, "completion": text, "kind": kind}) + "\n")
    print(f"toy: {len(train)} train and {len(evals)} eval problems, {len(pairs)} training "
          f"pairs, {len(held)} held-out pairs")
    if task == "code":          # the math world has no tests, so no weak ones
        print_weak_counts(train, evals)
    count = Counter(kinds)
    print("toy: warm-start corpus " + ", ".join(f"{k} {count[k]} ({count[k] / len(kinds):.3f})"
                                                for k in mix_of(train))
          + (f"; {missing} lucky ones missing (too few weak problems), made flawed" if missing else ""))


def print_weak_counts(train, evals):
    print("toy: weak base tests (weak / could be / all): " + ", ".join(
        f"{f} {w}/{c}/{n}" for f, (w, c, n) in weak_counts(train + evals).items()))
    w, c, n = map(sum, zip(*weak_counts(train + evals).values()))
    print(f"toy: weak share {w / max(1, c):.3f} of the problems that could be weak "
          f"(setting {weak_share}), {w / n:.3f} of all; {sum(t.weak for t in train)} train and "
          f"{sum(t.weak for t in evals)} held-out problems have weak base tests")


def weak_counts(tasks):
    """{family: (weak problems, problems that could be weak, problems)}."""
    out = {}
    for t in tasks:
        w, c, n = out.get(t.family, (0, 0, 0))
        out[t.family] = (w + t.weak, c + t.can_be_weak, n + 1)
    return out


def build_tokenizer():
    """A byte-level BPE trained on the toy corpus, with exactly the Qwen2 tokenizer's
    normalizer and pre-tokenizer, saved as a Qwen2Tokenizer. The policy is a Qwen2 model,
    and transformers 5 loads a qwen2 checkpoint's tokenizer as Qwen2Tokenizer, which
    rebuilds that pipeline whatever tokenizer.json says: any other pipeline would tokenize
    differently after the first checkpoint than during the warm start (it splits digits
    one by one, for instance, which would leave the policy unable to read its constants)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import Qwen2Tokenizer
    from transformers.models.qwen2.tokenization_qwen2 import PRETOKENIZE_REGEX
    from model import TINY_CHAT_TEMPLATE
    tok = Tokenizer(models.BPE())
    tok.normalizer = normalizers.NFC()
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(PRETOKENIZE_REGEX), behavior="isolated"),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)])
    specials = ["<|pad|>", "<|bos|>", "<|eos|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(corpus_texts(), trainer=trainer)
    bpe = json.loads(tok.to_str())["model"]
    qwen = Qwen2Tokenizer(vocab=bpe["vocab"], merges=[tuple(m) for m in bpe["merges"]],
                          unk_token="<|eos|>", pad_token="<|pad|>", bos_token="<|bos|>",
                          eos_token="<|eos|>", padding_side="left")
    qwen.chat_template = TINY_CHAT_TEMPLATE
    qwen.save_pretrained(os.path.join(data_dir, "tokenizer"))
    print(f"toy: tokenizer with {len(qwen)} tokens")


def corpus_texts():
    """Everything the toy tokenizer must encode well: prompts, completions, pair texts."""
    problems = data.load_problems(os.path.join(data_dir, "train.jsonl"))
    problems += data.load_problems(os.path.join(data_dir, "eval.jsonl"))
    for p in problems:
        yield prompts.rl_prompt(p)
        yield p.solution
    for line in open(os.path.join(data_dir, "warm.jsonl")):
        yield json.loads(line)["completion"]
    for pair in data.load_pairs(os.path.join(data_dir, "pairs.jsonl")):
        yield prompts.reward_model_text(pair.prompt, pair.chosen)
        yield pair.rejected


def build_warmstart():
    """A short supervised run of a tiny random Qwen2 on prompt -> completion."""
    from model import apply_chat, load_tokenizer, make_tiny_model, save_checkpoint
    tok = load_tokenizer(os.path.join(data_dir, "tokenizer"))
    model = make_tiny_model(tok, n_layer=n_layer, n_embd=n_embd, n_head=n_head, seed=seed,
                            max_position_embeddings=1024)
    problems = {p.id: p for p in data.load_problems(os.path.join(data_dir, "train.jsonl"))}
    rows = []
    for line in open(os.path.join(data_dir, "warm.jsonl")):
        rec = json.loads(line)
        prompt = tok(apply_chat(tok, prompts.rl_prompt(problems[rec["id"]])), add_special_tokens=False)["input_ids"]
        reply, weights = reply_weights(tok, rec["completion"], problems[rec["id"]].entry_point)
        rows.append((prompt, reply + [tok.eos_token_id], weights + [1.0]))
    opt = torch.optim.AdamW(model.parameters(), lr=warm_lr, weight_decay=0.0)
    g = torch.Generator().manual_seed(seed)
    steps = warm_epochs * (len(rows) // warm_batch)
    t0, done = time.time(), 0
    model.train()
    for epoch in range(warm_epochs):
        order = torch.randperm(len(rows), generator=g).tolist()
        for b in range(len(rows) // warm_batch):
            batch = [rows[i] for i in order[b * warm_batch:(b + 1) * warm_batch]]
            # linear warmup over 20 steps, then cosine decay to 0
            lr = warm_lr * min(1.0, (done + 1) / 20) * 0.5 * (1 + math.cos(math.pi * done / steps))
            for group in opt.param_groups:
                group["lr"] = lr
            loss = sft_loss(model, batch, tok.pad_token_id)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            done += 1
            if done % 25 == 0 or done == steps:
                print(f"toy warm-start: step {done}/{steps} loss {loss.item():.4f} "
                      f"({time.time() - t0:.0f}s)", flush=True)
    save_checkpoint(os.path.join(data_dir, "policy"), model, tok,
                    extra={"toy_recipe": recipe("warmstart"), "final_loss": loss.item()})


def sft_loss(model, batch, pad_id):
    """Weighted mean cross-entropy over the reply tokens of (prompt_ids, reply_ids, token
    weights) triples (weights: one per reply token)."""
    from model import position_ids_from_mask
    width = max(len(p) + len(r) for p, r, _ in batch)
    ids = torch.full((len(batch), width), pad_id)
    attn = torch.zeros((len(batch), width), dtype=torch.long)
    w = torch.zeros((len(batch), width))
    for i, (p, r, wr) in enumerate(batch):
        n = len(p) + len(r)
        ids[i, width - n:] = torch.tensor(p + r)
        attn[i, width - n:] = 1
        w[i, width - len(r):] = torch.tensor(wr, dtype=torch.float)
    logits = model(input_ids=ids, attention_mask=attn, position_ids=position_ids_from_mask(attn)).logits
    nll = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), ids[:, 1:], reduction="none")
    return (nll * w[:, 1:]).sum() / w[:, 1:].sum()


def reply_weights(tok, reply, entry_point=""):
    """The reply's token ids and a loss weight per token: `copy_weight` for the tokens that
    must be copied from the prompt, the problem's constants (a digit, a quoted letter) and
    the name of the function the tests call (the statement names it; five of the eight
    families draw it per problem), 1 for the rest. Copied tokens are so few that a plain
    mean leaves learning to copy them for last: measured on version 6 of this world, 34 of
    the warm start's 36 greedy failures on 48 held-out problems defined the wrong name.
    A math reply has no name (entry_point ""): its weighted tokens are its digits, the
    problem's numbers and those computed from them, the answer's among them."""
    enc = tok(reply, add_special_tokens=False, return_offsets_mapping=True)
    names = [m.span() for m in re.finditer(rf"\b{re.escape(entry_point)}(?=\()", reply)] \
        if entry_point else []      # the name where it is defined or called, not the word
    weights = []
    for (lo, hi) in enc["offset_mapping"]:
        piece = reply[lo:hi]
        copied = any(c.isdigit() for c in piece) or re.fullmatch(r"\W*'[a-z]'\W*", piece) or \
            any(lo < b and a < hi for a, b in names)
        weights.append(copy_weight if copied else 1.0)
    return enc["input_ids"], weights


def build_lcbrb():
    """The toy LCB-RB: sample, test, judge, pair (paper, Section 'LCB-RB construction'). The
    pairing is synth.benchmark_pairs, the rule synth.py builds the real benchmark with."""
    from model import apply_chat, generate, load_policy, load_tokenizer
    from synth import benchmark_pairs
    tok = load_tokenizer(os.path.join(data_dir, "policy"))
    policy = load_policy(os.path.join(data_dir, "policy"), "cpu", dtype=torch.float32).eval()
    tasks = all_tasks("eval", lcbrb_problems, seed + 1)
    sampled = []
    for i in range(0, len(tasks), 8):
        chunk = tasks[i:i + 8]
        texts = [apply_chat(tok, prompts.rl_prompt(t.problem)) for t in chunk for _ in range(lcbrb_samples)]
        seeds = [data.seed_hash(t.problem.id, k) for t in chunk for k in range(lcbrb_samples)]
        outs = generate(policy, tok, texts, max_new_tokens, temperature=1.0, seeds=seeds)
        sampled += [(chunk[j // lcbrb_samples], o.text) for j, o in enumerate(outs)]
    samples, judgments = lcbrb_records(sampled)
    statements = {t.problem.id: t.problem.statement for t in tasks}
    pairs, counts = benchmark_pairs(samples, judgments, statements, seed, source="toy-lcbrb")
    data.save_pairs(pairs, os.path.join(data_dir, "lcbrb.jsonl"))
    counts["lucky (passed base tests only)"] = sum(s["passed_base"] and not s["passed"] for s in samples)
    print("toy LCB-RB: " + "; ".join(f"{k}: {n}" for k, n in counts.items()))


def lcbrb_records(sampled):
    """(task, response) samples as synth's sample and judgment records: the tests run in the
    sandbox, the toy judge reads the reasoning. Sample ids are "<problem id>/<k>". "passed"
    is on the plus tests: a benchmark of reasoning judges a lucky pass (base tests only,
    kept as "passed_base") as the wrong program it is. A math sample is judged by its final
    answer (no tests: "passed" and "passed_base" agree), which the toy judge also reads."""
    texts = [text for _, text in sampled]
    parsed, results = prompts.run_responses(
        [dataclasses.replace(t.problem, tests=t.problem.plus_tests or t.problem.tests)
         for t, _ in sampled], texts)
    _, base = prompts.run_responses([t.problem for t, _ in sampled], texts)
    samples, judgments, seen = [], {}, Counter()
    for (t, text), p, r, b in zip(sampled, parsed, results, base):
        sid = f"{t.problem.id}/{seen[t.problem.id]}"
        seen[t.problem.id] += 1
        samples.append({"id": sid, "problem_id": t.problem.id, "response": text,
                        "generator": "toy policy", "passed": r.all_passed,
                        "passed_base": b.all_passed})
        answer = (p.final or None) if t.math else p.code
        judgments[sid] = {"verdict": judge(t, p.think, answer), "judge": "toy rules",
                          "justification": ""}
    return samples, judgments


BUILDERS = {"problems": build_problems, "tokenizer": build_tokenizer,
            "warmstart": build_warmstart, "lcbrb": build_lcbrb}


def ensure(upto="lcbrb", force=()):
    """Build every stage up to `upto` whose output is missing or stale."""
    _families()                 # an unknown task stops here, before anything is written
    os.makedirs(data_dir, exist_ok=True)
    stale = False
    for stage in STAGES[:STAGES.index(upto) + 1]:
        stale = stale or stage in force or not is_fresh(stage)
        if stale:
            t0 = time.time()
            BUILDERS[stage]()
            _stamp(stage)
            print(f"toy: stage {stage} built in {time.time() - t0:.1f}s", flush=True)


# ---------------------------------------------------------------- main
if __name__ == "__main__":
    from configurator import configure
    stage = ""  # build up to this stage; "" = all
    force = False  # rebuild `stage` even if it is fresh
    threads = 0  # torch threads; 0 = torch's default
    configure(globals())
    if threads:
        torch.set_num_threads(threads)
    ensure(stage or STAGES[-1], force=(stage,) if force else ())
