r"""Tests for mathcheck.py (final-answer extraction and equivalence) and for data.py's math
problems: the loaders on the real public samples (every record's own solution must match its
answer), the Problem record's `answer`, and located load errors."""

import json
import os
import sys
import threading
import types

import pytest

import data
import mathcheck
from data import Problem
from mathcheck import check, equivalent, extract_answer, normalize

FORMATS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                       "..", "shared", "formats")


@pytest.fixture
def formats():
    if not os.path.isdir(FORMATS):
        pytest.skip(f"public format samples not found at {FORMATS}")
    return lambda name: os.path.join(FORMATS, name)


@pytest.fixture
def no_math_verify(monkeypatch):
    """The small checker alone: `import math_verify` raises ImportError."""
    monkeypatch.setitem(sys.modules, "math_verify", None)


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return str(path)

# ---------------------------------------------------------------- extraction


@pytest.mark.parametrize("text,answer", [
    (r"so the answer is $\boxed{\frac{1}{2}}$.", r"\frac{1}{2}"),
    (r"$\boxed{\left( 3, \frac{\pi}{2} \right)}$", r"\left( 3, \frac{\pi}{2} \right)"),  # nested
    (r"first \boxed{1}, then \boxed{2}, finally \boxed{ 3 }", "3"),                   # the last
    (r"\boxed{\{1, 2\}}", r"\{1, 2\}"),
    (r"$\boxed{\left\{ \begin{array}{ll} x & x>0 \\ 0 & x \le 0 \end{array} \right.}$",
     r"\left\{ \begin{array}{ll} x & x>0 \\ 0 & x \le 0 \end{array} \right."),  # \{ unpaired
    (r"\fbox{7}", "7"),
    (r"\boxed {5} cm", "5"),
    ("<answer> 42 </answer>", "42"),
    ("<answer>1</answer> then <answer>\n2\n</answer>", "2"),
    (r"<answer>1</answer> and \boxed{2}", "2"),                        # a box wins over a tag
    (r"\boxed{2} and <answer>1</answer>", "2"),
    ("The answer is 5.", ""),
    ("", ""),
    (r"\boxed{1} and at the end a box cut short: \boxed{2", ""),          # unclosed last box
    (r"<answer>7</answer> \boxed{2", "7"),
])
def test_extract_answer(text, answer):
    assert extract_answer(text) == answer

# ---------------------------------------------------------------- equivalence, by case


EQUAL = [
    # integers: thousands separators, leading +, trailing .0, leading zeros, spaces
    ("1,000", "1000"), ("+5", "5"), ("7.0", "7"), ("025", "25"), ("1,000,000", "10^6"),
    ("- 3", "-3"), ("10,\\!000", "10000"),
    # fractions
    (r"\frac{1}{2}", "1/2"), (r"\dfrac{3}{4}", "0.75"), (r"\tfrac{2}{4}", r"\frac12"),
    (r"-\frac{1}{2}", r"\frac{-1}{2}"), (r"\frac{14}{3}", "14/3"),
    # decimals, exactly
    ("0.5", r"\frac{1}{2}"), (".5", "0.50"), ("3e8", r"3 \times 10^{8}"), ("5.", "5"),
    ("1.6", r"1.60"),
    # roots and pi: structure, then numbers
    (r"2\sqrt{3}", r"\sqrt{12}"), (r"\sqrt2", r"\sqrt{2}"), (r"3\sqrt 2", r"3 \sqrt{2}"),
    (r"\frac{\sqrt{2}}{2}", r"\frac{1}{\sqrt{2}}"), (r"\frac{\pi}{2}", r"\pi/2"),
    (r"\sqrt{4}", "2"), (r"\sqrt[3]{8}", "2"), (r"2\pi", r"\pi \cdot 2"),
    # LaTeX wrappers
    (r"\text{Evelyn}", "Evelyn"), ("$5$", "5"), (r"\boxed{5}", "5"), (r"\(5\)", "5"),
    (r"\left( 3, \frac{\pi}{2} \right)", r"(3,\frac{\pi}{2})"), ("x = 5", "5"),
    (r"t_{s} = 4", "4"), (r"90^\circ", "90"), (r"90^{\circ}", "90"), (r"50\%", "50"),
    (r"\textbf{(073)}", "73"), (r"\mathrm{5}", "5"), (r"\$18", "18"), (r"\displaystyle 5", "5"),
    # units and trailing words
    ("5 cm", "5"), ("12 dollars", "12"), (r"12 \text{ inches}", "12"), (r"1.6 \mathrm{~cm}", "1.6"),
    ("560 nm", "560"), ("1,000 dollars", "1000"), (r"5\text{ cm}^2", "5"),
    # tuples and intervals (order and brackets kept), sets (order free)
    ("(1,2)", "(1, 2)"), ("[1,2)", r"\left[ 1, 2 \right)"), ("1,-2", "-2, 1"),
    (r"\{1,2\}", "2,1"), (r"(-\infty, 3]", r"(-\infty,3]"),
    (r"(\frac12, 0.25)", r"(0.5, \frac{1}{4})"), ("x=1, y=2", "1, 2"),
    # other text: compared as normalized text
    ("p - q", "p-q"), (r"\text{(A)}", "A"),
]

NOT_EQUAL = [
    # what a too-lenient checker would accept
    ("1/2", "2"), (r"\frac{1}{2}", "2"), (r"\sqrt{2}", "2"), ("12", "1.2"), ("-3", "3"),
    ("1,2", "12"), ("1,00", "100"), ("10", "100"), ("2x", "2"), ("5 cm", "6"), ("5 cm", "50"),
    ("2 3", "6"),  # two numbers side by side are not a product
    # fractions and decimals compare exactly
    (r"\frac{1}{3}", "0.333"), (r"\frac{1}{3}", "0.333333"), (r"\frac{2}{3}", r"\frac{3}{2}"),
    (r"-\frac12", r"\frac12"), ("0.5", "5"), ("1.4142", r"\sqrt{2}"), (r"\pi", "3.14"),
    (r"2\sqrt{3}", r"3\sqrt{2}"), (r"\sqrt{3}", "3"), (r"\frac{\pi}{2}", r"\pi"),
    # a percentage is its number, not its fraction (math-verify would say equal)
    ("0.5", r"50\%"),
    # prefixes and degrees do not eat the value
    ("x = 5", "-5"), (r"90^\circ", "9"),
    # tuples and intervals: brackets and order matter; sets: their size and parts
    ("(1,2)", "[1,2]"), ("(1,2)", "(2,1)"), ("[1,2)", "[1,2]"), ("1,2", "1,2,3"),
    ("1", "1,-2"), ("(1,2)", "1,2"), ("1,2", "1,3"), ("(1,2,3)", "(1,2)"),
    # text the small checker cannot relate: not equal without math_verify
    (r"\text{Evelyn}", r"\text{Emily}"), ("q - p", "p - q"), ("52_8", "52"),
    # wrappers and units strip only themselves
    ("12 dollars", "120"), (r"\text{5 inches}", "6"), (r"\boxed{5}", "6"), (r"50\%", "5"),
    ("x = 5", "x = 6"), (r"\textbf{(073)}", "703"), ("025", "250"), ("1,000", "100"),
    ("1,000", "1"), (r"\frac{14}{3}", "14.3"), ("3e8", "3e9"), ("0", "-0.1"),
    ("(0,1]", "(0,1)"), (r"\{1,2\}", r"\{1,3\}"),
    # nothing extracted never equals
    ("", "5"), ("", ""),
]


def test_enough_pairs():
    assert len(EQUAL) >= 40 and len(NOT_EQUAL) >= 40


@pytest.mark.parametrize("pred,ref", EQUAL)
def test_equal_pairs_by_the_small_checker(pred, ref, no_math_verify):
    assert check(pred, ref) == (True, "mathcheck")
    assert check(ref, pred) == (True, "mathcheck")
    if not any(w in pred + ref for w in ("\\sqrt", "\\pi")):  # floats compare by value only
        assert normalize(pred) == normalize(ref)


@pytest.mark.parametrize("pred,ref", NOT_EQUAL)
def test_not_equal_pairs(pred, ref, no_math_verify):
    assert equivalent(pred, ref) is False
    assert equivalent(ref, pred) is False


@pytest.mark.parametrize("pred,ref", [
    ("1/2", "2"), ("12", "1.2"), ("-3", "3"), ("1,2", "12"), (r"\sqrt{2}", "2"),
    ("1.4142", r"\sqrt2"), ("(1,2)", "[1,2]"), ("(1,2)", "(2,1)"), ("1", "1,-2"),
    (r"\frac{1}{3}", "0.333333")])
def test_numbers_and_collections_are_decided_here(pred, ref):
    """Decided by the small checker whatever is installed: math_verify is never asked."""
    assert check(pred, ref) == (False, "mathcheck")


@pytest.mark.parametrize("ans,canonical", [
    (r"\dfrac{1}{2}", "1/2"), ("1,000", "1000"), ("0.50", "1/2"), ("-4.0", "-4"), ("025", "25"),
    ("2, 1", "{1,2}"), (r"\left[ 1, \frac{6}{4} \right)", "[1,3/2)"),
    (r"\text{ Evelyn }", "Evelyn"), (r"x = \sqrt 2", r"\sqrt{2}"), ("12 dollars", "12"),
    (r"\boxed{p - q}", "p-q"),
])
def test_normalize(ans, canonical):
    assert normalize(ans) == canonical


def test_huge_and_broken_arithmetic_is_undecided_not_an_error(no_math_verify):
    for pred, ref in [("2^{2^{2^{2^{2}}}}", "1"), ("10^{100000}", "1"), (r"\frac{1}{0}", "1"),
                      (r"\sqrt{-4}", "2"), (r"\frac{1}{", "1"), ("((1)", "1"), ("1e99999", "1")]:
        assert check(pred, ref) in ((False, "undecided"), (False, "mathcheck"))

def test_never_raises_on_random_latex(no_math_verify):
    import random
    rng = random.Random(0)
    alphabet = ["1", "0", "9", ".", ",", "-", "+", "/", "^", "{", "}", "(", ")", "[", "]", " ",
                "x", "e", r"\frac", r"\sqrt", r"\pi", r"\text{", r"\boxed{", r"\{", r"\}",
                r"\left(", r"\right)", "=", "%", r"\%", "$", r"\cdot", "cm", r"^\circ"]
    for _ in range(2000):
        pred, ref = ("".join(rng.choices(alphabet, k=rng.randint(0, 12))) for _ in range(2))
        verdict, how = check(pred, ref)
        assert isinstance(verdict, bool) and how in ("mathcheck", "undecided")
        assert isinstance(normalize(pred), str) and isinstance(extract_answer(pred), str)

def test_large_sets_and_long_answers(no_math_verify):
    parts = [str(i) for i in range(30)]
    assert check(", ".join(parts), ",".join(reversed(parts))) == (True, "mathcheck")
    assert check(",".join(parts + [r"\sqrt{841}"]), ",".join(parts + ["29"]))[0]  # exact: 29
    # equal by value but not as text: paired one by one only up to 20 parts
    assert check(",".join(parts + [r"2\sqrt{2}"]), ",".join(parts + [r"\sqrt{8}"])) == (
        False, "undecided")
    assert check(",".join(parts[:19] + [r"2\sqrt{2}"]), ",".join(parts[:19] + [r"\sqrt{8}"])) == (
        True, "mathcheck")
    long = "x + " * 300 + "1"
    assert len(long) > mathcheck.MAX_ANSWER and normalize(long) == long.replace(" ", "")
    assert check(long, long.replace(" ", "")) == (True, "mathcheck")
    assert check(long, long + "1") == (False, "mathcheck")


def test_arithmetic_is_read_up_to_a_length(no_math_verify):
    assert check("(" * 100 + "5" + ")" * 100, "5") == (True, "mathcheck")
    assert check("(" * 200 + "5" + ")" * 200, "5") == (False, "undecided")  # over 300 chars


def test_pathological_answers_are_quick(no_math_verify):
    import time
    start = time.perf_counter()
    for n in (300, 1000, 16000):
        for s in ["a " * n + "!", "1," * n, "(" * n, "{" * n + "}" * n, "2^{" * n + "2" + "}" * n,
                  r"\frac{" * n + "1" + "}{2}" * n, r"\text{" * n + "}" * n, r"\sqrt{2}," * n]:
            check(s, "5"), check(s, s + "1"), normalize(s), extract_answer(r"\boxed{" + s + "}")
    assert time.perf_counter() - start < 10  # about 1 s; quadratic paths took minutes

# ---------------------------------------------------------------- math_verify fallback


def fake_math_verify(monkeypatch, verdict=True, fail=False):
    """A stand-in math_verify that records its calls and their timeouts."""
    calls = []

    def parse(text, parsing_timeout=None):
        calls.append(("parse", text, parsing_timeout))
        if fail:
            raise RuntimeError("inside math_verify")
        return [text]

    def verify(gold, answer, timeout_seconds=None):
        calls.append(("verify", gold[0], answer[0], timeout_seconds))
        return verdict

    monkeypatch.setitem(sys.modules, "math_verify",
                        types.SimpleNamespace(parse=parse, verify=verify))
    return calls


def test_math_verify_absent(no_math_verify):
    assert check("q - p", "p - q") == (False, "undecided")
    assert check("p - q", "p-q") == (True, "mathcheck")


def test_undecided_pairs_go_to_math_verify_with_its_timeouts(monkeypatch):
    calls = fake_math_verify(monkeypatch, verdict=True)
    assert check("q - p", "p - q") == (True, "math_verify")
    timeout = mathcheck.MATH_VERIFY_TIMEOUT
    assert calls == [("parse", "$p - q$", timeout), ("parse", "$q - p$", timeout),
                     ("verify", "$p - q$", "$q - p$", timeout)]
    calls.clear()
    assert check("0.5", r"\frac12") == (True, "mathcheck") and check("2", "3")[1] == "mathcheck"
    assert calls == []  # decided pairs never reach it


def test_math_verify_failure_or_thread_leaves_undecided(monkeypatch):
    calls = fake_math_verify(monkeypatch, fail=True)
    assert check("q - p", "p - q") == (False, "undecided") and calls
    calls = fake_math_verify(monkeypatch, verdict=True)
    out = []
    worker = threading.Thread(target=lambda: out.append(check("q - p", "p - q")))
    worker.start()
    worker.join()
    assert out == [(False, "undecided")] and calls == []  # its signal.alarm needs the main thread


def test_real_math_verify_if_installed():
    pytest.importorskip("math_verify")
    assert check("q - p", "-(p - q)") == (True, "math_verify")
    assert check("(x+1)^2", "x^2 + 2x + 1") == (True, "math_verify")
    assert check("x + 2", "x + 1") == (False, "math_verify")
    assert check(r"\frac{1}{3}", "0.333333") == (False, "mathcheck")  # decided before it is asked

# ---------------------------------------------------------------- the Problem record


def test_math_problem_round_trip_and_own_format_checks(tmp_path):
    problems = [Problem("m", "What is 1/2 + 1/2?", [], answer="1", difficulty="level 1"),
                Problem("c", "st", [{"kind": "stdio", "input": "", "output": "1"}])]
    data.save_problems(problems, tmp_path / "p.jsonl")
    assert json.loads((tmp_path / "p.jsonl").read_text().splitlines()[0])["answer"] == "1"
    assert data.load_problems(str(tmp_path / "p.jsonl"), strict=True) == problems
    for row, field, words in [
            ({"id": "c", "statement": "s", "tests": []}, "tests", "problem has no tests"),
            ({"id": "c", "statement": "s", "tests": [], "answer": ""}, "tests", "no tests"),
            ({"id": "m", "statement": "s", "tests": [], "answer": 5}, "answer", "expected str"),
            ({"id": "b", "statement": "s", "answer": "1",
              "tests": [{"kind": "stdio", "input": "", "output": "1"}]}, "answer", "not both")]:
        path = write_jsonl(tmp_path / "bad.jsonl", [row])
        with pytest.raises(data.LoadError, match=f"bad.jsonl, line 1, field '{field}': .*{words}"):
            data.load_problems(path, strict=True)

# ---------------------------------------------------------------- real samples


def gsm8k_final(worked):
    return worked.rsplit("####", 1)[1].strip()


def own_answer(solution):
    """The final answer a record's own solution states: GSM8K's "####" line, else the box."""
    return gsm8k_final(solution) if "####" in solution else extract_answer(solution)


# Shared-sample solutions whose final answer cannot be read by the rules above, and why.
UNMATCHED = {
    "2024-I-1": "the AoPS solution ends '$180 + 24 = 204$. -sepehr2010': no \\boxed, no tag",
}

SAMPLES = [  # file, format, count, the answers as loaded
    ("math500_test.jsonl", "math500", 10,
     [r"\left( 3, \frac{\pi}{2} \right)", "p - q", r"\frac{14}{3}", "9", r"\text{Evelyn}",
      r"90^\circ", "5", "1,-2", "225", "52_8"]),
    ("gsm8k_test.jsonl", "gsm8k", 7, ["18", "3", "70000", "540", "20", "2125", "-10"]),
    ("aime2024.jsonl", "aime2024", 5, ["204", "110", "025", "073", "045"]),
    ("minerva_math_test.jsonl", "minerva_math", 10,
     ["1.6", "100", "16", "11000", "I(0)", r"-\tau \ln \Delta", "3e8", "560",
      r"-\frac{1}{2} X^{-\frac{1}{2}}",
      r"\hbar \omega(v+1 / 2)-\frac{E_{0}^{2} e^{2}}{2 m \omega^{2}}"]),
    ("dapo_math_17k.jsonl", "dapo_math", 3, ["34", "113", "-3"]),
]


@pytest.mark.parametrize("name,fmt,count,answers", SAMPLES)
def test_math_samples_load(formats, name, fmt, count, answers):
    stats = {}
    problems = data.load_problems(formats(name), strict=True, stats=stats)
    assert stats["format"] == fmt and stats["skipped"] == {} and len(problems) == count
    assert data.load_problems(formats(name), fmt=fmt) == problems
    assert [p.answer for p in problems] == answers
    assert all(p.tests == [] and p.plus_tests == [] and p.entry_point == "" for p in problems)
    assert len({p.id for p in problems}) == count
    rows = [json.loads(line) for line in open(formats(name), encoding="utf-8")]
    for p, row in zip(problems, rows):
        if fmt == "dapo_math":
            content = row["prompt"][0]["content"]
            assert content.startswith("Solve the following math problem step by step.")
            assert content.endswith(p.statement + '\n\nRemember to put your answer on its own '
                                    'line after "Answer:".')
            assert "Answer:" not in p.statement and p.id == row["extra_info"]["index"]
        else:
            assert p.statement == row.get("problem", row.get("question"))
            assert p.solution == row.get("solution", row.get("answer"))


def test_math_sample_fields(formats):
    m = data.load_problems(formats("math500_test.jsonl"))
    assert (m[0].id, m[0].difficulty, m[0].source) == (
        "test/precalculus/807.json", "level 2", "math500/Precalculus")
    assert m[8].source == "math500/Counting & Probability"
    g = data.load_problems(formats("gsm8k_test.jsonl"))
    assert g[5].id == "gsm8k_test/5" and gsm8k_final(g[5].solution) == "2,125"
    assert g[0].source == "gsm8k" and g[0].difficulty == ""
    a = data.load_problems(formats("aime2024.jsonl"))
    assert [p.id for p in a] == ["2024-I-1", "2024-I-13", "2024-I-2", "2024-II-1", "2024-II-3"]
    v = data.load_problems(formats("minerva_math_test.jsonl"))
    assert (v[0].id, v[0].source) == (
        "minerva_math/0", "minerva_math/Introduction to Astronomy (8.282J Spring 2006)")
    stats = {}
    d = data.load_problems(formats("dapo_math_17k.jsonl"), stats=stats)
    assert d[0].statement.startswith(r"In triangle $ABC$, $\sin \angle A = \frac{4}{5}$")
    assert d[0].statement.endswith("find $a + b + c$.") and "deduplicate" in stats["note"]


@pytest.mark.parametrize("name", [s[0] for s in SAMPLES if s[1] != "dapo_math"])
def test_every_sample_solution_matches_its_answer(formats, name, no_math_verify):
    """Each record's own solution, read by the rules a response is read by, equals its answer
    by the small checker alone; the exceptions are listed in UNMATCHED with their reason."""
    problems = data.load_problems(formats(name), strict=True)
    unmatched = {p.id: own_answer(p.solution) for p in problems
                 if check(own_answer(p.solution), p.answer) != (True, "mathcheck")}
    assert unmatched == {p.id: "" for p in problems if p.id in UNMATCHED}  # "": nothing to read

# ---------------------------------------------------------------- located load errors


GOOD = {
    "math500": {"problem": "p", "solution": r"\boxed{1}", "answer": "1", "subject": "Algebra",
                "level": 1, "unique_id": "test/algebra/1.json"},
    "aime2024": {"id": 1, "problem": "p", "solution": "s", "answer": "001", "url": "u"},
    "minerva_math": {"problem": "p", "solution": r"\boxed{1}", "type": "t", "idx": 0},
    "gsm8k": {"question": "q", "answer": "1+1=2\n#### 2"},
    "dapo_math": {"prompt": [{"role": "user", "content": "p"}],
                  "reward_model": {"ground_truth": "2", "style": "rule"}},
}


@pytest.mark.parametrize("fmt,change,field,words", [
    ("math500", {"answer": None}, "answer", "missing"),
    ("math500", {"answer": "  "}, "answer", "empty answer"),
    ("math500", {"problem": None}, "problem", "missing"),
    ("aime2024", {"answer": None}, "answer", "missing"),
    ("aime2024", {"answer": ["1"]}, "answer", "expected str or int"),
    ("gsm8k", {"answer": "just text"}, "answer", "no '#### <final answer>' line"),
    ("gsm8k", {"answer": "text\n#### "}, "answer", "empty answer"),
    ("minerva_math", {"solution": "no box here"}, "solution", r"no \\boxed\{\} answer"),
    ("dapo_math", {"reward_model": {"style": "rule"}}, "reward_model.ground_truth", "missing"),
    ("dapo_math", {"prompt": [{"role": "system", "content": "x"}]}, "prompt", "no user message"),
])
def test_math_loader_errors_name_file_line_field(tmp_path, fmt, change, field, words):
    bad = {k: v for k, v in {**GOOD[fmt], **change}.items() if v is not None}
    path = write_jsonl(tmp_path / f"{fmt}.jsonl", [GOOD[fmt], bad])
    assert len(data.load_problems(write_jsonl(tmp_path / "ok.jsonl", [GOOD[fmt]]))) == 1
    with pytest.raises(data.LoadError, match=f"{fmt}.jsonl, line 2, field '{field}': {words}"):
        data.load_problems(path, strict=True)
    stats = {}
    assert len(data.load_problems(path, stats=stats)) == 1 and sum(stats["skipped"].values()) == 1
    assert stats["format"] == fmt


def test_answer_missing_from_first_record_needs_fmt(tmp_path):
    path = write_jsonl(tmp_path / "g.jsonl", [{"question": "q"}])
    with pytest.raises(data.LoadError, match="unknown format"):
        data.load_problems(path, strict=True)
    with pytest.raises(data.LoadError, match="g.jsonl, line 1, field 'answer': missing"):
        data.load_problems(path, fmt="gsm8k", strict=True)
