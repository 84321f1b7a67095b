import json
import math
import os
import random
import re
import subprocess
import sys

import pytest
import torch

import synth
import train_rm
from data import LoadError, load_pairs, load_problems, seed_hash, split_by_problem
from model import GenerationOutput, make_tiny_checkpoint
from prompts import (DEGRADE_METHODS, OPTIMIZE_METHODS, ParsedRewrite, parse_judge, parse_rewrite,
                     parse_score)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PROBLEMS = os.path.join(REPO, "tests", "fixtures", "toy_problems.jsonl")
TOY_PAIRS = os.path.join(REPO, "tests", "fixtures", "toy_pairs.jsonl")


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    # the tiny model's generations are compared across processes that run on one thread
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def problems():
    return load_problems(PROBLEMS)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return make_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny") / "model"))


def out(text, truncated=False):
    return GenerationOutput(prompt_ids=[], response_ids=[0] * len(text.split()), text=text,
                            truncated=truncated)


def read(path):
    with open(path) as f:
        return [json.loads(line) for line in f]

# ---------------------------------------------------------------- parsing generator outputs


WELL_FORMED = ("Rewritten reasoning:\nStep 1. Read n.\nStep 2. Print 2 * n.\n"
               "Explanation of changes:\nI removed a key step between reading and printing "
               "(logical gap) and added a misleading remark about sorting.")


def test_rewrite_status_on_hand_written_outputs():
    source = "Step 1. Read n.\nStep 2. Print 2 * n."
    different = "Step 1. Read n.\nStep 2. Print n * n."
    assert synth.rewrite_status(parse_rewrite(WELL_FORMED.replace(
        "Step 2. Print 2 * n.", "Step 2. Print n * n.")), source) == "kept"
    # identical to the source up to whitespace: dropped
    assert synth.rewrite_status(parse_rewrite(
        "Rewritten reasoning:\n  Step 1. Read n.   Step 2. Print 2 * n.\n"
        "Explanation of changes:\nnone"), source) == "identical to the original"
    # partial: stopped before the explanation
    assert synth.rewrite_status(parse_rewrite(f"Rewritten reasoning:\n{different}"), source) == \
        "no 'Explanation of changes' label after the reasoning"
    # malformed: no labels at all, or an empty part
    assert synth.rewrite_status(parse_rewrite(different), source) == "no 'Rewritten reasoning' label"
    assert synth.rewrite_status(parse_rewrite(
        "Rewritten reasoning:\n\nExplanation of changes:\nI changed nothing."), source) == \
        "empty reasoning or explanation"
    assert synth.rewrite_status(ParsedRewrite(False, "", "", "response is not text"), source) == \
        "response is not text"


def test_claimed_methods_reads_the_explanation():
    explanation = parse_rewrite(WELL_FORMED).explanation
    assert synth.claimed_methods(explanation, DEGRADE_METHODS) == ["irrelevant_path", "logical_gap"]
    assert synth.claimed_methods("Verified the complexity claim and corrected it; then "
                                 "removed a redundant step.", OPTIMIZE_METHODS) == ["fact_check", "focus"]
    assert synth.claimed_methods("I reordered the steps into a clear sequence.",
                                 OPTIMIZE_METHODS) == ["logical_flow"]
    assert synth.claimed_methods("Step 2 now has a FACTUAL ERROR.", DEGRADE_METHODS) == ["factual_error"]
    assert synth.claimed_methods("", DEGRADE_METHODS) == []
    # every method of both tables has a pattern
    assert {n for n, _ in DEGRADE_METHODS + OPTIMIZE_METHODS} == set(synth.CLAIM_PATTERNS)


def test_pick_methods_fixed_and_random():
    assert synth.pick_methods(DEGRADE_METHODS, "logical_gap, incomplete", 2, random.Random(0)) == \
        ["logical_gap", "incomplete"]
    with pytest.raises(ValueError, match="unknown methods.*focus"):
        synth.pick_methods(DEGRADE_METHODS, "focus", 2, random.Random(0))
    names = [n for n, _ in OPTIMIZE_METHODS]
    sizes = set()
    for s in range(60):
        picked = synth.pick_methods(OPTIMIZE_METHODS, "", 3, random.Random(s))
        assert 1 <= len(picked) <= 3 and picked == [n for n in names if n in picked]
        sizes.add(len(picked))
    assert sizes == {1, 2, 3}
    assert synth.pick_methods(OPTIMIZE_METHODS, "", 2, random.Random(5)) == \
        synth.pick_methods(OPTIMIZE_METHODS, "", 2, random.Random(5))
    with pytest.raises(ValueError, match="max_methods"):
        synth.pick_methods(OPTIMIZE_METHODS, "", 0, random.Random(0))


def test_reasoning_status():
    assert synth.reasoning_status("  \n", False, False) == "empty"
    assert synth.reasoning_status("Step 1 ...", True, False) == "truncated"
    assert synth.reasoning_status("Step 1 ...", True, True) == "kept"
    assert synth.reasoning_status("Step 1 ...", False, False) == "kept"


@pytest.mark.parametrize("text, verdict", [
    ("Yes\nStep 3 claims O(n) but the loop is nested; the code follows it.", "Yes"),
    ("**No.**\nSound and faithfully implemented.", "No"),
    ("None\nThe code sorts, the reasoning never mentions sorting.", "None"),
    ("Verdict: Yes\nflawed", "Yes"),
    ("I think the answer is yes because", "invalid"),
    ("", "invalid"),
])
def test_judge_outputs(text, verdict):
    assert parse_judge(text)[0] == verdict


@pytest.mark.parametrize("text, grade", [
    ("0.7\nMinor gap in step 2.", 0.7), ("Score: 1.0\nclean", 1.0), ("**0.3**", 0.3),
    ("7/10", None), ("1.5\ntoo high", None), ("The grade is 0.4", None),
])
def test_score_outputs(text, grade):
    assert parse_score(text) == grade

# ---------------------------------------------------------------- pairing rules


def reasoning_record(pid, text="y"):
    return {"id": pid, "problem_id": pid, "status": "kept", "reasoning": text, "generator": "gen"}


def rewrite_record(pid, direction, text):
    return {"id": f"{pid}/{direction}", "problem_id": pid, "direction": direction,
            "status": "kept", "reasoning": text, "explanation": f"why {text}",
            "methods_asked": ["focus"], "methods_claimed": []}


def test_build_pairs_types_and_counts(problems):
    a, b, c, d = problems[:4]
    reasonings = [reasoning_record(p.id, f"y {p.id}") for p in (a, b, c)]  # d: none kept
    rewrites = [rewrite_record(a.id, "optimize", "y+ a"), rewrite_record(a.id, "degrade", "y- a"),
                rewrite_record(b.id, "degrade", "y- b"), rewrite_record(c.id, "optimize", "y+ c")]
    pairs, counts = synth.build_pairs([a, b, c, d], reasonings, rewrites)
    got = {(p.problem_id, p.pair_type, p.chosen, p.rejected) for p in pairs}
    assert got == {(a.id, "opt_deg", "y+ a", "y- a"), (a.id, "ori_deg", f"y {a.id}", "y- a"),
                   (a.id, "opt_ori", "y+ a", f"y {a.id}"), (b.id, "ori_deg", f"y {b.id}", "y- b"),
                   (c.id, "opt_ori", "y+ c", f"y {c.id}")}
    assert len(pairs) == 5
    assert counts == {"opt_deg pairs": 1, "ori_deg pairs": 2, "opt_ori pairs": 2,
                      "opt_deg not made: no kept optimized rewrite": 1,  # b
                      "opt_deg not made: no kept degraded rewrite": 1,  # c
                      "ori_deg not made: no kept degraded rewrite": 1,  # c
                      "opt_ori not made: no kept optimized rewrite": 1,  # b
                      "problems without a kept initial reasoning": 1}  # d
    strong = next(p for p in pairs if p.pair_type == "opt_deg")
    assert strong.prompt == a.statement and strong.meta["generator"] == "gen"
    assert strong.meta["chosen"]["kind"] == "optimized" and strong.meta["rejected"]["kind"] == "degraded"
    assert strong.meta["rejected"]["explanation"] == "why y- a"
    only_strong, _ = synth.build_pairs([a, b, c], reasonings, rewrites, ("opt_deg",))
    assert [p.pair_type for p in only_strong] == ["opt_deg"]
    with pytest.raises(ValueError, match="unknown pair types"):
        synth.build_pairs([a], reasonings, rewrites, ("strong",))


def judged(pid, index, passed, verdict, think=None):
    sample = {"id": f"{pid}/{index}", "problem_id": pid, "index": index, "passed": passed,
              "generator": "policy",
              "response": f"<think>{think or f'reasoning {pid}/{index}'}</think>"
                          "<answer>```python\npass\n```</answer>"}
    return sample, {"id": sample["id"], "verdict": verdict, "justification": f"because {index}",
                    "judge": "judge"}


def test_benchmark_pairs_rule():
    rows = [judged("p", 0, True, "No"), judged("p", 1, True, "No"), judged("p", 2, False, "Yes"),
            judged("p", 3, False, "Yes"), judged("p", 4, False, "Yes"), judged("p", 5, True, "Yes"),
            judged("p", 6, False, "No"), judged("p", 7, True, "None"), judged("p", 8, False, "invalid"),
            judged("p", 9, False, "None"),
            judged("q", 0, True, "No"), judged("q", 1, True, "No"),          # only chosen
            judged("r", 0, False, "Yes"), judged("r", 1, True, "None"),      # only rejected
            judged("s", 0, False, "Yes"), judged("s", 1, True, "No")]
    samples = [s for s, _ in rows] + [{"id": "s/2", "problem_id": "s", "index": 2, "passed": True,
                                       "generator": "policy", "response": "x"}]
    judgments = {j["id"]: j for _, j in rows}
    statements = {pid: f"statement {pid}" for pid in "pqrs"}
    pairs, counts = synth.benchmark_pairs(samples, judgments, statements, seed=3)
    assert counts == {"samples": 17, "passed": 9, "failed": 8, "chosen": 5, "rejected": 5,
                      "left out: passed, judged Yes": 1, "left out: failed, judged No": 1,
                      "left out: passed, judged None": 2, "left out: failed, judged None": 1,
                      "left out: failed, judged invalid": 1,
                      "left out: passed, judged not judged yet": 1,
                      "problems dropped: only chosen samples": 1,
                      "problems dropped: only rejected samples": 1,
                      "problems paired": 2, "pairs": 4}
    # one pair per rejected sample of a two-sided problem, its chosen from the same problem
    assert sorted(p.meta["rejected_id"] for p in pairs) == ["p/2", "p/3", "p/4", "s/0"]
    for p in pairs:
        assert p.meta["chosen_id"] in ({"p/0", "p/1"} if p.problem_id == "p" else {"s/1"})
        assert p.chosen == f"reasoning {p.meta['chosen_id']}"
        assert p.rejected == f"reasoning {p.meta['rejected_id']}"
        assert p.prompt == f"statement {p.problem_id}" and p.pair_type == "lcbrb"
    assert pairs[-1].meta["rejected_justification"] == "because 0"
    # seeded: the same draw again; across seeds the draw for p varies
    assert synth.benchmark_pairs(samples, judgments, statements, seed=3)[0] == pairs
    draws = {tuple(p.meta["chosen_id"] for p in synth.benchmark_pairs(
        samples, judgments, statements, seed=s)[0]) for s in range(20)}
    assert len(draws) > 1
    # a problem's draw does not depend on the problems around it
    alone = synth.benchmark_pairs([s for s in samples if s["problem_id"] == "p"], judgments,
                                  statements, seed=3)[0]
    last = synth.benchmark_pairs(samples[9:] + samples[:9], judgments, statements, seed=3)[0]
    for other in (alone, last):
        assert [p.meta for p in other if p.problem_id == "p"] == \
            [p.meta for p in pairs if p.problem_id == "p"]


def test_split_depends_only_on_the_problems():
    """synth splits every file over the problem file's ids: a problem lands on the same
    side whatever records a file holds, in whatever order."""
    ids = [f"problem{i}" for i in range(400)]
    val = set(split_by_problem(ids, 0.1, 7, key=str)[1])
    assert len(val) == 40
    records = [{"problem_id": i, "k": k} for i in ids[:50] for k in range(3)][::-1]
    _, val_records = split_by_problem(records, 0.1, 7, lambda r: r["problem_id"], problems=ids)
    assert {r["problem_id"] for r in val_records} == val & set(ids[:50])
    assert not split_by_problem(ids, 0.0, 7, key=str)[1]
    assert set(split_by_problem(ids, 0.1, 8, key=str)[1]) != val      # seeded

# ---------------------------------------------------------------- stage files


def test_read_jsonl_torn_end_and_errors(tmp_path):
    path = str(tmp_path / "x.part0.jsonl")
    with open(path, "w") as f:
        f.write('{"id": "a"}\n{"id": "b"}\n{"id": "c", "sta')
    assert [r["id"] for r in synth.read_jsonl(path, torn_end_ok=True)] == ["a", "b"]
    with pytest.raises(ValueError, match=r"x.part0.jsonl, line 3: malformed JSON"):
        synth.read_jsonl(path)
    with open(path, "w") as f:
        f.write('{"id": "a"}\n{"id": \n{"id": "c"}\n')
    with pytest.raises(ValueError, match="line 2"):
        synth.read_jsonl(path, torn_end_ok=True)  # only a last line may be torn
    assert synth.read_jsonl(str(tmp_path / "absent.jsonl")) == []


def test_merge_parts_orders_and_dedups(tmp_path):
    path = str(tmp_path / "s.jsonl")
    synth.write_jsonl(path, [{"id": "c", "v": 1}])
    synth.write_jsonl(str(tmp_path / "s.part0.jsonl"), [{"id": "b", "v": 2}, {"id": "zz", "v": 3}])
    synth.write_jsonl(str(tmp_path / "s.part1.jsonl"), [{"id": "a", "v": 4}, {"id": "c", "v": 5}])
    synth.merge_parts(path, ["a", "b", "c"])
    assert [(r["id"], r["v"]) for r in read(path)] == [("a", 4), ("b", 2), ("c", 1), ("zz", 3)]
    assert sorted(os.listdir(tmp_path)) == ["s.jsonl"]

# ---------------------------------------------------------------- stages with a scripted generator


def scripted(responses):
    """A Run.complete that answers from `responses(prompt, seed)` and logs every call."""
    calls = []

    def complete(prompts, seeds):
        calls.append(list(prompts))
        replies = [responses(p, s) for p, s in zip(prompts, seeds)]
        return [out(*r) if isinstance(r, tuple) else out(r) for r in replies]
    complete.calls = calls
    return complete


def od_generator(prompt, seed):
    """Plays the generator of the OD method; the problem's first word picks a behaviour."""
    if "Write out, step by step" in prompt:
        if "largest" in prompt:
            return ("Step 1. Compare the elements", True)  # cut at max_new_tokens: dropped
        return f"Step 1. Understand the task.\nStep 2. Solve it. ({seed % 97})"
    if "into a better version" in prompt:
        if "reverse order" in prompt:
            return "I cannot do that."  # unparsable: dropped
        return ("Rewritten reasoning:\nStep 1. Understand the task and its limits.\nStep 2. Solve "
                "it, checking an example.\nExplanation of changes:\nBridged a gap by adding an "
                "intermediate step and verified the claims.")
    if "into a flawed version" in prompt:
        original = prompt.split("## Original reasoning\n")[1].split("\n\n## Methods")[0]
        if "vowels" in prompt:  # returned unchanged: dropped
            return f"Rewritten reasoning:\n{original}\nExplanation of changes:\nnone needed"
        return ("Rewritten reasoning:\nStep 2. Solve it.\nExplanation of changes:\nI left out the "
                "first step, a logical gap, and the order is reversed.")
    if "Grade the reasoning" in prompt:
        return "eight out of ten" if "isEven" in prompt else "0.8\nclear"
    raise AssertionError(f"unexpected prompt {prompt[:80]!r}")


def test_od_stages_end_to_end(problems, tmp_path):
    complete = scripted(od_generator)
    run = synth.Run(str(tmp_path), complete=complete, generator="scripted", batch_size=3, seed=5)
    records = synth.reason(run, problems)
    assert [r["id"] for r in records] == [p.id for p in problems]  # work order
    assert {r["id"]: r["status"] for r in records}["max_list"] == "truncated"
    assert sum(r["status"] == "kept" for r in records) == 7
    assert sorted(len(c) for c in complete.calls) == [2, 3, 3]

    rewrites = synth.rewrite(run, problems, degrade_methods="logical_gap,chaotic_order")
    assert len(rewrites) == 14
    status = {r["id"]: r["status"] for r in rewrites}
    assert status["reverse_words/optimize"] == "no 'Rewritten reasoning' label"
    assert status["count_vowels/degrade"] == "identical to the original"
    assert sum(s == "kept" for s in status.values()) == 12
    degraded = next(r for r in rewrites if r["id"] == "add/degrade")
    assert degraded["methods_asked"] == ["logical_gap", "chaotic_order"]
    assert degraded["methods_claimed"] == ["logical_gap", "chaotic_order"]
    assert degraded["reasoning"] == "Step 2. Solve it." and degraded["generator"] == "scripted"
    optimized = next(r for r in rewrites if r["id"] == "add/optimize")
    assert 1 <= len(optimized["methods_asked"]) <= 2
    assert optimized["methods_claimed"] == ["fact_check", "bridge_gaps"]

    synth.make_pairs(run, problems, val_fraction=0.3)
    train = load_pairs(str(tmp_path / "pairs_train.jsonl"), strict=True)
    val = load_pairs(str(tmp_path / "pairs_val.jsonl"), strict=True)
    pairs = train + val
    # 7 problems with y; reverse_words lacks y+, count_vowels lacks y-: 5*3 + 1 + 1
    assert len(pairs) == 17
    assert {p.problem_id for p in train}.isdisjoint({p.problem_id for p in val})
    assert {p.problem_id for p in val} == \
        set(split_by_problem([p.id for p in problems], 0.3, 5, key=str)[1]) & {p.problem_id for p in pairs}
    assert {p.pair_type for p in pairs if p.problem_id == "reverse_words"} == {"ori_deg"}
    strong = next(p for p in pairs if p.problem_id == "add" and p.pair_type == "opt_deg")
    assert strong.meta["rejected"]["methods_asked"] == ["logical_gap", "chaotic_order"]
    assert strong.meta["generator"] == "scripted" and strong.source == "synth"

    scores = synth.score(run, problems, score_rewrites=True, val_fraction=0.3)
    assert len(scores) == 7 + 12
    assert {r["id"] for r in scores if r["status"] == "no grade on the first line"} == \
        {"is_even", "is_even/optimize", "is_even/degrade"}
    grades = (train_rm.load_grades(str(tmp_path / "grades_train.jsonl"))
              + train_rm.load_grades(str(tmp_path / "grades_val.jsonl")))
    assert len(grades) == 16 and {g.grade for g in grades} == {0.8}
    assert {g.meta["kind"] for g in grades} == {"original", "optimize", "degrade"}
    # the same problems are validation problems for pairs and for grades
    assert {g.problem_id for g in train_rm.load_grades(str(tmp_path / "grades_val.jsonl"))} == \
        {p.problem_id for p in val}


GOOD = {"add": "def add(a, b):\n    return a + b\n", "double_stdin": "print(2 * int(input()))\n",
        "max_list": "def largest(xs):\n    return max(xs)\n"}
BAD = {"add": "def add(a, b):\n    return a - b\n", "double_stdin": "print(int(input()))\n",
       "max_list": "def largest(xs):\n    return xs[0]\n"}
# (problem, k): passes the tests?, the reasoning's marker for the scripted judge
PLAN = {("add", 0): (True, "SOUND"), ("add", 1): (False, "FLAWED"), ("add", 2): (False, "FLAWED"),
        ("add", 3): (True, "ODD"),
        ("double_stdin", 0): (True, "SOUND"), ("double_stdin", 1): (True, "SOUND"),
        ("double_stdin", 2): (True, "FLAWED"), ("double_stdin", 3): (True, None),
        ("max_list", 0): (False, "FLAWED"), ("max_list", 1): (False, "SOUND"),
        ("max_list", 2): (False, "MUMBLE"), ("max_list", 3): (True, "SOUND")}


def test_lcbrb_stages_end_to_end(problems, tmp_path):
    three = problems[:3]
    seeds = {seed_hash(11, "samples", f"{pid}/{k}"): (pid, k) for pid, k in PLAN}

    def policy(prompt, seed):
        pid, k = seeds[seed]
        passes, marker = PLAN[pid, k]
        if marker is None:
            return "I would just print it."  # no code: never judged
        code = (GOOD if passes else BAD)[pid]
        return f"<think>{marker} reasoning for {pid} {k}</think>\n<answer>```python\n{code}```</answer>"

    def judge(prompt, seed):
        assert "Review a solution" in prompt
        for marker, reply in (("SOUND", "No\nfine"), ("FLAWED", "Yes\nstep 2 is wrong"),
                              ("ODD", "None\ncode ignores the plan"), ("MUMBLE", "Perhaps.")):
            if f"{marker} reasoning" in prompt:
                return reply
        raise AssertionError(prompt)

    run = synth.Run(str(tmp_path), complete=scripted(policy), generator="policy", batch_size=5, seed=11)
    samples = synth.sample(run, three, n_samples=4, sandbox_workers=2)
    by_id = {s["id"]: s for s in samples}
    for (pid, k), (passes, marker) in PLAN.items():
        s = by_id[f"{pid}/{k}"]
        assert s["passed"] == (passes and marker is not None), s
        assert s["status"] == ("no code" if marker is None else "passed" if passes else "failed")
    assert by_id["add/1"]["statuses"] == ["wrong_answer", "not_run"]

    judge_run = synth.Run(str(tmp_path), complete=scripted(judge), generator="judge", batch_size=5,
                          seed=11)
    judgments = {j["id"]: j for j in synth.judge(judge_run, three)}
    assert judgments["double_stdin/3"]["status"] == "unjudged (no reasoning)"
    assert judgments["max_list/2"]["verdict"] == "invalid"
    assert judgments["add/1"]["justification"] == "step 2 is wrong"
    assert sum(len(c) for c in judge_run.complete.calls) == 11

    pairs = synth.make_benchmark(judge_run, three)
    assert load_pairs(str(tmp_path / "lcbrb.jsonl"), strict=True) == pairs
    assert sorted((p.problem_id, p.meta["chosen_id"], p.meta["rejected_id"]) for p in pairs) == [
        ("add", "add/0", "add/1"), ("add", "add/0", "add/2"), ("max_list", "max_list/3", "max_list/0")]
    assert pairs[0].chosen == "SOUND reasoning for add 0" and pairs[0].meta["judge"] == "judge"

    # Appendix A.4 from the same files: passed x (No, Yes) = 4, 1 (add/0, double_stdin/0,1,
    # max_list/3; double_stdin/2); failed = 1, 3 (max_list/1; add/1,2, max_list/0); None,
    # invalid and unjudged left out. chi2 = 9 (4*3 - 1*1)^2 / (5*4*5*4) = 2.7225
    out = synth.correlate(judge_run, three)
    assert out["table"] == {"passed": {"flawless": 4, "flawed": 1}, "failed": {"flawless": 1, "flawed": 3}}
    assert out["left_out"] == {"judged None": 1, "judged invalid": 1, "judged unjudged": 1}
    assert out["chi2"] == pytest.approx(2.7225) and out["p_value"] == pytest.approx(0.098943, abs=1e-5)
    assert json.load(open(tmp_path / "correlation.json"))["table"] == out["table"]


def test_pearson_chi2_by_hand():
    # [[10, 20], [30, 40]]: 100 (400 - 600)^2 / (30 * 70 * 40 * 60) = 0.79365
    chi2, p = synth.pearson_chi2_2x2([[10, 20], [30, 40]])
    assert chi2 == pytest.approx(0.793651, rel=1e-5) and p == pytest.approx(0.372998, abs=1e-5)
    # [[1, 0], [0, 1]]: chi2 = 2, p = erfc(1) = 0.157299; at chi2(1)'s 5% value p = 0.05
    assert synth.pearson_chi2_2x2([[1, 0], [0, 1]]) == pytest.approx((2.0, 0.157299), abs=1e-6)
    assert synth.pearson_chi2_2x2([[30, 10], [10, 30]])[0] == pytest.approx(20.0)
    assert all(math.isnan(x) for x in synth.pearson_chi2_2x2([[3, 0], [5, 0]]))  # an empty column


def test_skip_one_sided_leaves_them_unjudged(problems, tmp_path):
    def policy(prompt, seed):
        code = GOOD["add"] if "add(a, b)" in prompt else "def f():\n    pass\n"
        return f"<think>plan</think><answer>```python\n{code}```</answer>"
    run = synth.Run(str(tmp_path), complete=scripted(policy), batch_size=4)
    synth.sample(run, problems[:2], n_samples=2, sandbox_workers=1)
    judge_run = synth.Run(str(tmp_path), complete=scripted(lambda p, s: "No\nok"), batch_size=4)
    statuses = {j["status"] for j in synth.judge(judge_run, problems[:2], skip_one_sided=True)}
    assert statuses == {"unjudged (one-sided problem)"} and judge_run.complete.calls == []


def test_later_stages_name_what_is_missing(problems, tmp_path):
    run = synth.Run(str(tmp_path), complete=scripted(od_generator))
    with pytest.raises(FileNotFoundError, match="reasoning.jsonl does not exist"):
        synth.rewrite(run, problems)
    with pytest.raises(ValueError, match="needs a model"):
        synth.reason(synth.Run(str(tmp_path)), problems)


def test_stage_records_refuse_a_file_with_nothing_to_use(problems, tmp_path):
    by_id = {p.id: p for p in problems}
    path = tmp_path / "reasoning.jsonl"
    cases = [([], "the file holds none"),
             ([reasoning_record("elsewhere"), reasoning_record("other")],
              r"all 2 left out: problem not in --problems/--limit 2"),
             ([dict(reasoning_record("add"), status="truncated"), reasoning_record("gone")],
              r"all 2 left out: dropped \(truncated\) 1, problem not in --problems/--limit 1")]
    for records, words in cases:
        synth.write_jsonl(str(path), records)
        with pytest.raises(LoadError, match=r"reasoning\.jsonl, file: no record to use: " + words):
            synth.stage_records(str(tmp_path), "reasoning", by_id)
    synth.write_jsonl(str(path), cases[2][0] + [reasoning_record("add")])
    assert [r["id"] for r in synth.stage_records(str(tmp_path), "reasoning", by_id)] == ["add"]


def test_a_part_file_cut_inside_a_character_is_redone(tmp_path):
    path = tmp_path / "x.part0.jsonl"
    path.write_bytes(b'{"id": "a"}\n' + '{"id": "b", "reasoning": "caf\u00e9'.encode()[:-1])
    assert [r["id"] for r in synth.read_jsonl(str(path), torn_end_ok=True)] == ["a"]
    with pytest.raises(LoadError, match=r"x\.part0\.jsonl, line 2: malformed JSON"):
        synth.read_jsonl(str(path))

# ---------------------------------------------------------------- bad input through the script


def synth_fails_cleanly(stage, *flags):
    """The last stderr line of a synth.py run that must stop on bad input: non-zero exit,
    no traceback."""
    proc = subprocess.run([sys.executable, "synth.py", stage, *flags], cwd=REPO,
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


def earlier_run(folder):
    """Files of every stage, as an earlier run left them: none may change."""
    folder.mkdir()
    synth.write_jsonl(str(folder / "reasoning.jsonl"), [reasoning_record("add")])
    for name in ("rewrites", "samples", "judgments", "scores", "pairs_train", "pairs_val",
                 "lcbrb", "grades_train", "grades_val"):
        (folder / f"{name}.jsonl").write_text(f'{{"id": "{name} from before"}}\n')
    return snapshot(folder)


WRONG_TYPES = "".join(json.dumps({"id": i, "statement": "s", "tests": [
    {"kind": "call", "fn": "f", "args": 1, "expected": 2}]}) + "\n" for i in "ab")
LATIN1 = WRONG_TYPES.encode() + b'{"id": "caf\xe9"}\n'  # a latin-1 e-acute on line 3


BAD_PROBLEM_FILES = [  # one case per stage: every stage reads the problem file
    ("reason", b"\n", r"no problems: the file holds no records$"),
    ("rewrite", WRONG_TYPES.encode(), r"no problems: all 2 record\(s\) left out: bad field 'tests' "
     r"x2 \(first at line 1: test 0 is not a sandbox test record: call test whose 'args' is int"),
    ("pairs", LATIN1, r"line 3: not UTF-8: byte 0xe9 at byte offset \d+"),
    ("sample", WRONG_TYPES.encode(), r"no problems: all 2 record\(s\) left out"),
    ("judge", b"", r"no problems: the file holds no records$"),
    ("benchmark", LATIN1, r"line 3: not UTF-8"),
    ("correlate", b"\n\n", r"no problems: the file holds no records$"),
    ("score", WRONG_TYPES.encode(), r"no problems: all 2 record\(s\) left out")]


def test_the_bad_problem_files_cover_every_stage():
    assert sorted(stage for stage, _, _ in BAD_PROBLEM_FILES) == sorted(synth.STAGES)


@pytest.mark.parametrize("stage,content,message", BAD_PROBLEM_FILES)
def test_every_stage_stops_on_a_bad_problem_file(tiny, tmp_path, stage, content, message):
    bad = tmp_path / "problems.jsonl"
    bad.write_bytes(content)
    out = tmp_path / "out"
    before = earlier_run(out)
    last = synth_fails_cleanly(stage, f"--problems={bad}", f"--out_dir={out}", f"--model={tiny}")
    assert last.startswith(f"synth.py {stage}: error: {bad}, ") and re.search(message, last), last
    assert snapshot(out) == before


def truncated_reasonings(out):
    synth.write_jsonl(str(out / "reasoning.jsonl"),
                      [dict(reasoning_record(pid), status="truncated") for pid in ("add", "square")])


def empty_rewrites(out):
    synth.write_jsonl(str(out / "reasoning.jsonl"), [reasoning_record("add")])
    (out / "rewrites.jsonl").write_text("")


def samples_of_other_problems(out):
    synth.write_jsonl(str(out / "samples.jsonl"),
                      [judged(pid, 0, True, "No")[0] for pid in ("gone", "elsewhere")])


def latin1_judgments(out):
    synth.write_jsonl(str(out / "samples.jsonl"), [judged("add", 0, True, "No")[0]])
    (out / "judgments.jsonl").write_bytes(b'{"id": "add/0", "problem_id": "add", "status": "No"}\n'
                                          b'{"id": "add/1", "justification": "d\xe9j\xe0 vu"}\n')


def unfinished_reasoning(out):
    synth.write_jsonl(str(out / "reasoning.part1.jsonl"), [reasoning_record("add")])


@pytest.mark.parametrize("stage,make,message", [
    ("rewrite", truncated_reasonings,
     r"reasoning\.jsonl, file: no record to use: all 2 left out: dropped \(truncated\) 2$"),
    ("pairs", empty_rewrites, r"rewrites\.jsonl, file: no record to use: the file holds none$"),
    ("judge", samples_of_other_problems,
     r"samples\.jsonl, file: no record to use: all 2 left out: problem not in --problems/--limit 2$"),
    ("benchmark", latin1_judgments, r"judgments\.jsonl, line 2: not UTF-8: byte 0xe9"),
    ("correlate", samples_of_other_problems,
     r"samples\.jsonl, file: no record to use: all 2 left out: problem not in --problems/--limit 2$"),
    ("score", unfinished_reasoning, r"reasoning\.jsonl, file: part files of an unfinished run")])
def test_a_stage_stops_on_an_earlier_stage_file_it_cannot_use(tiny, tmp_path, stage, make, message):
    out = tmp_path / "out"
    out.mkdir()
    make(out)
    before = snapshot(out)
    last = synth_fails_cleanly(stage, f"--problems={PROBLEMS}", f"--out_dir={out}",
                               f"--model={tiny}")
    assert last.startswith(f"synth.py {stage}: error: {out}{os.sep}") and re.search(message, last), last
    assert snapshot(out) == before


def test_a_missing_earlier_stage_file_is_named(tiny, tmp_path):
    last = synth_fails_cleanly("judge", f"--problems={PROBLEMS}", f"--out_dir={tmp_path}",
                               f"--model={tiny}")
    assert last == (f"synth.py judge: error: {tmp_path / 'samples.jsonl'} does not exist: run the stage "
                    "that writes it first")
    assert os.listdir(tmp_path) == []

# ---------------------------------------------------------------- the tiny model: plumbing, resume, ranks


def test_every_stage_runs_with_the_tiny_model(tiny, problems, tmp_path):
    complete = synth.hf_completer(tiny, "cpu", temperature=1.0, top_p=1.0, max_new_tokens=8)
    run = synth.Run(str(tmp_path), complete=complete, generator="tiny", batch_size=4, seed=2)
    few = problems[:3]
    first = synth.reason(run, few)
    assert [r["id"] for r in first] == [p.id for p in few]
    for r in first:  # 8 random tokens: nearly always cut short
        assert r["status"] == synth.reasoning_status(r["reasoning"], r["truncated"], False)
        assert 1 <= r["tokens"] <= 8 and r["generator"] == "tiny"
    assert synth.reason(run, few, keep_truncated=True) == first  # all done: nothing redone
    kept = synth.reason(synth.Run(str(tmp_path / "kept"), complete=complete, batch_size=4), few,
                        keep_truncated=True)
    assert [r["status"] for r in kept] == ["kept"] * 3
    run.out_dir = str(tmp_path / "kept")
    rewrites = synth.rewrite(run, few)
    assert len(rewrites) == 6 and all(r["status"] != "kept" for r in rewrites)  # noise: no labels
    with pytest.raises(LoadError, match="rewrites.jsonl, file: no record to use: all 6 left out"):
        synth.make_pairs(run, few)  # no kept rewrite: no pair of any type can be made
    assert not os.path.exists(tmp_path / "kept" / "pairs_train.jsonl")
    samples = synth.sample(run, few, n_samples=2, sandbox_workers=1)
    assert len(samples) == 6 and {s["status"] for s in samples} == {"no code"}
    assert len(synth.judge(run, few)) == 6
    assert synth.make_benchmark(run, few) == []
    scores = synth.score(run, few)
    assert [s["status"] for s in scores] == ["no grade on the first line"] * 3
    assert os.path.getsize(tmp_path / "kept" / "grades_train.jsonl") == 0


def test_resume_after_a_kill_redoes_only_the_missing(tiny, problems, tmp_path):
    complete = synth.hf_completer(tiny, "cpu", temperature=1.0, top_p=1.0, max_new_tokens=8)
    whole = synth.reason(synth.Run(str(tmp_path / "whole"), complete=complete, batch_size=3),
                         problems, keep_truncated=True)

    calls = []

    def dies_on_second_batch(prompts, seeds):
        calls.append(len(prompts))
        if len(calls) == 2:
            raise KeyboardInterrupt
        return complete(prompts, seeds)
    cut = str(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        synth.reason(synth.Run(cut, complete=dies_on_second_batch, batch_size=3), problems,
                     keep_truncated=True)
    part = os.path.join(cut, "reasoning.part0.jsonl")
    assert len(read(part)) == 3 and not os.path.exists(os.path.join(cut, "reasoning.jsonl"))
    with open(part, "a") as f:
        f.write('{"id": "square", "status": "ke')  # the record being written when killed

    calls.clear()
    again = synth.reason(synth.Run(cut, complete=dies_on_second_batch, batch_size=5), problems,
                         keep_truncated=True)
    assert calls == [5]  # only the 5 problems not on disk, in one batch
    assert again == whole  # seeded per item: batch size and the kill change nothing
    assert len({r["id"] for r in again}) == len(again) == 8
    assert os.listdir(cut) == ["reasoning.jsonl"]


def test_two_ranks_write_what_one_process_writes(tiny, problems, tmp_path):
    flags = [f"--model={tiny}", f"--problems={PROBLEMS}", "--max_new_tokens=8",
             "--keep_truncated=True", "--batch_size=3", "--seed=4"]
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc_per_node=2", "synth.py", "reason", *flags,
                           f"--out_dir={tmp_path / 'two'}"], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "8 to do over 2 ranks" in proc.stdout
    complete = synth.hf_completer(tiny, "cpu", temperature=0.7, top_p=1.0, max_new_tokens=8)
    one = synth.reason(synth.Run(str(tmp_path / "one"), complete=complete, generator=tiny,
                                 batch_size=8, seed=4), problems, keep_truncated=True)
    assert read(tmp_path / "two" / "reasoning.jsonl") == one


# ---------------------------------------------------------------- train_rm.py --objective=score


def test_grade_loss_by_hand():
    scores, grades = torch.tensor([0.0, 2.0]), torch.tensor([1.0, 0.5])
    # sigmoid(0) = 0.5: (0.5 - 1)^2 = 0.25; sigmoid(2) = 0.8807970780: (0.3807970780)^2 =
    # 0.1450064168; mean = 0.1975032084
    assert train_rm.grade_loss(scores, grades).item() == pytest.approx(0.1975032084, abs=1e-6)
    s = scores.clone().requires_grad_(True)
    train_rm.grade_loss(s, grades).backward()
    # dL/dr_i = 2 (sigmoid(r_i) - g_i) sigmoid'(r_i) / N: 2 * -0.5 * 0.25 / 2 = -0.125;
    # 2 * 0.3807970780 * 0.1049935854 / 2 = 0.0399812504
    assert s.grad.tolist() == pytest.approx([-0.125, 0.0399812504], abs=1e-6)


def test_grade_metrics_by_hand():
    grades = torch.tensor([0.2, 0.9, 0.5, 0.5])
    # pairs with different grades (5): (0.9 > 0.2), (0.5 > 0.2) x2, (0.9 > 0.5) x2;
    # scores order 1 > 0 yes, 2 > 0 yes, 3 > 0 no (tie), 1 > 2 no, 1 > 3 yes: 3 / 5
    m = train_rm.grade_metrics(torch.tensor([0.0, 1.0, 2.0, 0.0]), grades)
    assert m["accuracy"] == pytest.approx(0.6)
    # |sigmoid - g|: 0.3, 0.1689414214, 0.3807970780, 0: mean 0.2124346249
    assert m["mae"] == pytest.approx(0.2124346249, abs=1e-6)
    assert train_rm.grade_metrics(torch.tensor([1.0, 2.0]), torch.tensor([0.5, 0.5]))["accuracy"] == 0.0


def test_objective_switches_loss():
    scores = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    pair_loss = train_rm.OBJECTIVES["bt"].loss(scores, [None, None])
    assert pair_loss.item() == pytest.approx(train_rm.bradley_terry_loss(scores[0], scores[1]).item())
    graded = [train_rm.Graded("x", "y", 1.0), train_rm.Graded("x", "z", 0.0)]
    assert train_rm.OBJECTIVES["score"].loss(scores[:1], graded).item() == pytest.approx(
        train_rm.grade_loss(scores[0], torch.tensor([1.0, 0.0])).item())


def test_load_grades_names_the_bad_line(tmp_path):
    path = tmp_path / "g.jsonl"
    path.write_text('{"prompt": "p", "reasoning": "r", "grade": 0.5}\n'
                    '{"prompt": "p", "reasoning": "r", "grade": 1.5}\n')
    with pytest.raises(LoadError, match=r"g.jsonl, line 2, field 'grade'"):
        train_rm.load_grades(str(path))
    path.write_text('{"prompt": "p", "reasoning": "", "grade": 0.5}\n')
    with pytest.raises(LoadError, match="line 1, field 'reasoning'"):
        train_rm.load_grades(str(path))
    path.write_text('{"prompt": "p", "reasoning": "r", "grade": 1, "problem_id": 7}\n')
    assert train_rm.load_grades(str(path)) == [train_rm.Graded("p", "r", 1.0, "7")]


def test_score_objective_loss_falls(tiny, tmp_path):
    # graded toy reasonings: each problem's optimized (0.9), original (0.5), degraded (0.1)
    texts, statements = {}, {}  # (problem id, grade) -> reasoning; problem id -> statement
    for p in load_pairs(TOY_PAIRS):
        statements[p.problem_id] = p.prompt
        if p.pair_type == "opt_deg":
            texts[p.problem_id, 0.9], texts[p.problem_id, 0.1] = p.chosen, p.rejected
        elif p.pair_type == "ori_deg":
            texts[p.problem_id, 0.5] = p.chosen
    path = tmp_path / "grades.jsonl"
    path.write_text("".join(json.dumps({"prompt": statements[pid], "reasoning": text, "grade": g,
                                        "problem_id": pid}) + "\n"
                            for (pid, g), text in texts.items()))
    assert len(train_rm.load_grades(str(path))) == 72
    run_dir = tmp_path / "rm"
    proc = subprocess.run([sys.executable, "train_rm.py", "config/rm_cpu.py", "--objective=score",
                           f"--grades_file={path}", f"--init_from={tiny}", f"--out_dir={run_dir}",
                           "--epochs=3", "--eval_interval=6"], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "OMP_NUM_THREADS": "1"}, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = read(run_dir / "metrics.jsonl")
    evals = [r for r in rows if r["kind"] == "eval"]
    train = [r["loss"] for r in rows if r["kind"] == "train"]
    assert evals[0]["step"] == 0 and {"accuracy", "mae", "loss"} <= set(evals[0])
    assert evals[-1]["loss"] < 0.5 * evals[0]["loss"]
    assert sum(train[-3:]) < 0.5 * sum(train[:3])
    assert "graded reasonings: 72" in proc.stdout and " mae " in proc.stdout


def test_a_missing_model_dir_is_one_line(tmp_path):
    problems = tmp_path / "problems.jsonl"
    problems.write_text(json.dumps({"id": "a", "statement": "Add.", "tests": [
        {"kind": "stdio", "input": "1 2", "output": "3"}]}) + "\n")
    last = synth_fails_cleanly("reason", f"--problems={problems}", f"--out_dir={tmp_path / 'out'}",
                               f"--model={tmp_path / 'no-model'}")
    assert last.startswith("synth.py: error: ") and str(tmp_path / "no-model") in last, last


def test_memory_plan_prints_and_refuses(tmp_path):
    model = make_tiny_checkpoint(str(tmp_path / "gen"))
    run = lambda *flags: subprocess.run(
        [sys.executable, "synth.py", "reason", f"--model={model}", f"--out_dir={tmp_path / 'out'}",
         "--problems=tests/fixtures/toy_problems.jsonl", *flags],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    shown = run("--plan=True", "--gpu_gb=80.0")
    assert shown.returncode == 0 and "memory plan per rank: synth reason" in shown.stdout, shown.stderr
    refused = run("--gpu_gb=0.001")
    assert refused.returncode == 1 and "over the 0.001 GiB given" in refused.stderr
    assert not os.path.exists(tmp_path / "out" / "reasoning.jsonl")


def test_math_problems_go_through_sample_judge_benchmark_and_correlate(tmp_path):
    """The LCB-RB stages on problems with a final answer: the sample is judged by its answer,
    the judge sees the reasoning and the final answer (not code), pairs and the A.4 table
    follow. Scripted: k = 0 right and sound, 1 wrong and flawed, 2 right but flawed, 3 no box."""
    from data import Problem
    maths = [Problem(id=f"m{i}", statement=f"What is {i} + {i}?", tests=[], answer=str(2 * i))
             for i in (1, 2)]
    plan = {0: (True, "SOUND"), 1: (False, "FLAWED"), 2: (True, "FLAWED"), 3: (True, None)}
    seeds = {seed_hash(3, "samples", f"{p.id}/{k}"): (p, k) for p in maths for k in plan}

    def policy(prompt, seed):
        assert "Solve this math problem" in prompt and "\\boxed" in prompt
        p, k = seeds[seed]
        right, marker = plan[k]
        value = p.answer if right else p.answer + "1"
        if marker is None:
            return f"<think>x</think><answer>{value}</answer>"        # no box: the section is it
        return f"<think>{marker} reasoning</think>\n<answer>\\boxed{{{value}}}</answer>"

    def judge(prompt, seed):
        assert "math problem" in prompt and "## Final answer" in prompt and "## Code" not in prompt
        return ("No\nok" if "SOUND reasoning" in prompt else
                "Yes\nwrong step" if "FLAWED reasoning" in prompt else "None\nunrelated")

    run = synth.Run(str(tmp_path), complete=scripted(policy), batch_size=4, seed=3)
    samples = {s["id"]: s for s in synth.sample(run, maths, n_samples=4, sandbox_workers=1)}
    assert [samples[f"m2/{k}"]["passed"] for k in plan] == [True, False, True, True]
    assert samples["m2/3"]["status"] == "passed"       # an answer without a box still counts
    judge_run = synth.Run(str(tmp_path), complete=scripted(judge), batch_size=4, seed=3)
    verdicts = {j["id"]: j["verdict"] for j in synth.judge(judge_run, maths)}
    assert [verdicts[f"m1/{k}"] for k in plan] == ["No", "Yes", "Yes", "None"]
    pairs = synth.make_benchmark(judge_run, maths)
    assert len(pairs) == 2 and all(p.chosen == "SOUND reasoning" for p in pairs)
    out = synth.correlate(judge_run, maths)
    assert out["table"] == {"passed": {"flawless": 2, "flawed": 2}, "failed": {"flawless": 0, "flawed": 2}}


def test_an_empty_code_block_was_run_and_an_empty_final_answer_was_not():
    from data import Problem
    from prompts import parse_response
    code, math_problem = Problem("c", "s", [{"kind": "stdio", "input": "", "output": "1\n"}]), \
        Problem("m", "s", [], answer="1")
    empty_block = parse_response("<think>t</think><answer>```python\n```</answer>")
    assert empty_block.code == "" and synth.has_answer(code, empty_block)      # it ran, and failed
    assert not synth.has_answer(code, parse_response("<think>t</think><answer>x</answer>"))
    assert not synth.has_answer(math_problem, parse_response("<think>t</think>", math=True))
    assert synth.has_answer(math_problem, parse_response("\\boxed{2}", math=True))
