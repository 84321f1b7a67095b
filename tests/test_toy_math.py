"""Tests for the toy math world (toy.py with task="math") and the code world it must leave
as it was."""
import dataclasses
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections import Counter

import pytest

import data
import prompts
import toy

# SMOKE_TOY: the toy settings of `speedrun_cpu.sh --smoke`
from test_toy import REPO, SMOKE_TOY, build_worlds, three_kinds


@pytest.fixture(scope="module")
def tasks():
    """(train, eval) tasks of the math world; toy.task is "math" only while they are made."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(toy, "task", "math")
        return toy.all_tasks("train"), toy.all_tasks("eval")


def math_completion(steps, answer):
    return toy.completion(steps, answer, math=True)


def test_math_world_families_and_a_disjoint_held_out_split(tasks):
    train, evals = tasks
    assert len(train) >= 3000 and len(evals) >= 300
    assert {t.family for t in train} == set(toy.MATH_FAMILIES) == {t.family for t in evals}
    assert not set(toy.MATH_FAMILIES) & set(toy.FAMILIES)     # make_task tells them apart
    ids = [t.problem.id for t in train + evals]
    assert len(set(ids)) == len(ids)
    assert not {t.problem.statement for t in train} & {t.problem.statement for t in evals}
    assert all(toy.held_out(t.family, t.params) for t in evals)
    assert not any(toy.held_out(t.family, t.params) for t in train)
    share = len(evals) / len(train + evals)
    assert 0.08 < share < 0.12, share                           # a tenth, by hash
    for t in train + evals:                                     # math problems: an answer, no tests
        p = t.problem
        assert t.math and p.answer and p.tests == [] and p.plus_tests == [] and not p.entry_point
        assert p.source == "toy_math" and not t.weak and not t.can_be_weak
        assert t.steps[t.key].count(t.const) == 1 and t.const != t.wrong
    answers = [t.problem.answer for t in train]
    assert any(a.lstrip("-").isdigit() for a in answers)            # integers
    assert any("\\frac{" in a for a in answers)                     # fractions
    assert any("." in a for a in answers)                           # decimals (money)
    assert {t.problem.difficulty for t in train} == {"easy", "medium", "hard"}
    # the problem files round-trip as math problems
    assert data.Problem(**json.loads(json.dumps(dataclasses.asdict(train[0].problem)))) == train[0].problem


def test_reference_answers_pass_and_flawed_and_slip_answers_fail_when_judged(tasks):
    """Judged as the reward judges them (prompts.run_responses): every task of both splits."""
    every = tasks[0] + tasks[1]
    problems = [t.problem for t in every] * 3
    texts = ([math_completion(t.steps, t.code) for t in every] +
             [math_completion(t.flawed_steps, t.flawed_code) for t in every] +
             [math_completion(t.steps, t.buggy_code) for t in every])
    parsed, results = prompts.run_responses(problems, texts, workers=1)
    n = len(every)
    assert all(p.format_ok for p in parsed)
    assert [p.final for p in parsed[:n]] == [t.problem.answer for t in every]
    assert all(r.all_passed for r in results[:n]), \
        [r.first_error for r in results[:n] if not r.all_passed][:3]
    assert not any(r.all_passed for r in results[n:]), \
        [t.problem.id for t, r in zip(every * 2, results[n:]) if r.all_passed][:3]
    # the three answers differ, and the flawed one is what the wrong constant leads to
    assert all(len({t.code, t.flawed_code, t.buggy_code}) == 3 for t in every)
    assert all(toy.right_answer(t, t.code) and not toy.right_answer(t, t.buggy_code) for t in every)
    # a few spelled out: the family's typical flaw and the slip of one in the last step
    s = toy.make_task("series", (6, 2, 9))          # 6, 8, ..., 22: 9 * 28 / 2
    assert (s.code, s.const, s.wrong, s.flawed_code) == ("126", "22", "24", "135")
    assert s.buggy_code in ("125", "127") and s.steps[-1] == "So the sum is 9 * 28 / 2."
    e = toy.make_task("equation", (4, 6, -7))       # 4x = -13, the sign error gives 4x = -1
    assert (e.code, e.flawed_code) == ("-\\frac{13}{4}", "-\\frac{1}{4}")
    assert e.buggy_code in ("-\\frac{7}{2}", "-3")
    d = toy.make_task("discount", ("lamp", 64, 30))  # pays 70%, the flaw pays 30%
    assert (d.code, d.flawed_code, d.const, d.wrong) == ("44.8", "19.2", "70", "30")
    m = toy.make_task("multiples", (3, 4, 2, 2))     # 12, 15, 18 in 12..20; the flaw drops 12
    assert (m.code, m.flawed_code) == ("3", "2")
    assert m.problem.statement.endswith("from 12 to 20, both ends included?")


def test_toy_judge_reads_math_answers(tasks):
    every = tasks[0] + tasks[1]
    text = lambda steps: "\n".join(steps)                       # noqa: E731
    assert [toy.judge(t, text(t.steps), t.code) for t in every] == ["No"] * len(every)
    assert [toy.judge(t, text(t.flawed_steps), t.flawed_code) for t in every] == ["Yes"] * len(every)
    assert [toy.judge(t, text(t.steps), t.buggy_code) for t in every] == ["None"] * len(every)  # a slip
    assert [toy.judge(t, text(t.flawed_steps), t.code) for t in every] == ["None"] * len(every)
    t = every[0]
    assert toy.judge(t, text(t.steps), None) == "None" and toy.judge(t, "", t.code) == "None"
    # an equivalent way of writing the answer follows the reasoning too
    e = toy.make_task("equation", (4, 6, -7))
    assert toy.judge(e, text(e.steps), "-13/4") == "No"


def test_pairs_of_three_kinds_are_rule_made_from_the_reasoning_only(tasks):
    rng = random.Random(1)
    methods = Counter()
    for t in tasks[0][:300]:
        pairs = toy.make_pairs(t, rng)
        opt, ori, deg = three_kinds(t, pairs)
        assert all(p.source == "toy_math" and p.problem_id == t.problem.id and
                   p.prompt == t.problem.statement for p in pairs)
        serious = pairs[0].meta["degraded_by"][0]
        assert serious in ("factual_error", "incomplete", "logical_gap")
        methods.update(pairs[0].meta["degraded_by"])
        assert toy.judge(t, deg, t.code) != "No" and toy.judge(t, opt, t.code) == "No"
        extra = [s for s in ori.split("\n") if s not in t.steps]
        assert all(s in toy.MATH_DISTRACTORS for s in extra)            # math's own distractors
    assert set(methods) == {m for m, _ in prompts.DEGRADE_METHODS}      # all five degradations
    # rule-made: the pairs read no answer and no kind; blank every answer and they are the same
    blind = [dataclasses.replace(t, code="?", flawed_code="?", buggy_code="?",
                                 problem=dataclasses.replace(t.problem, answer="0"))
             for t in tasks[0][:100]]
    seen = [p for t in tasks[0][:100] for p in toy.make_pairs(t, random.Random(7))]
    assert seen == [dataclasses.replace(p, source="toy_math")
                    for t in blind for p in toy.make_pairs(t, random.Random(7))]


def test_warm_start_corpus_holds_every_math_kind_in_its_share(tasks):
    train = tasks[0][:1000]
    kinds, missing = toy.warm_kinds(train)
    assert set(toy.math_mix) == {"right", "poor", "flawed", "slip"} and missing == 0
    assert abs(sum(toy.math_mix.values()) - 1) < 1e-9
    passing = toy.math_mix["right"] + toy.math_mix["poor"]
    assert passing == pytest.approx(sum(toy.warm_mix[k] for k in ("right", "poor", "lucky")))
    assert set(kinds) == set(toy.math_mix)
    for kind, share in toy.math_mix.items():
        assert abs(kinds.count(kind) - share * len(train)) <= 1, kind      # exact, up to rounding
    # each kind does what it says, judged as the reward judges it
    rng = random.Random(0)
    picked = [(t, k) for kind in toy.math_mix for t, k in zip(train, kinds) if k == kind][::20]
    texts = [toy.warm_completion(t, k, rng) for t, k in picked]
    parsed, results = prompts.run_responses([t.problem for t, _ in picked], texts, workers=1)
    expect = {"right": True, "poor": True, "flawed": False, "slip": False}
    assert {k for _, k in picked} == set(expect)
    for (t, k), p, r in zip(picked, parsed, results):
        assert p.format_ok and r.all_passed == expect[k], (t.problem.id, k)
        steps = p.think.split("\n")
        assert p.final == {"right": t.code, "poor": t.code, "flawed": t.flawed_code, "slip": t.buggy_code}[k]
        if k == "poor":         # the reference's steps, with one redundant step or out of order
            extra = [s for s in steps if s not in t.steps]
            assert steps != t.steps and set(t.steps) <= set(steps)
            assert (extra and extra[0] in toy.MATH_DISTRACTORS and len(extra) == 1) or \
                sorted(steps) == sorted(t.steps)
        else:
            assert steps == (t.flawed_steps if k == "flawed" else t.steps)


def test_math_build_writes_problems_pairs_and_warm_corpus(tmp_path, monkeypatch):
    """build_problems in the math world: math problem files, pairs that do not depend on the
    warm-start shares (they never read kinds), a warm corpus in math_mix's shares."""
    monkeypatch.setattr(toy, "task", "math")
    monkeypatch.setattr(toy, "n_train", 200)
    monkeypatch.setattr(toy, "n_pair_problems", 50)
    files = build_worlds(tmp_path, monkeypatch, "math_mix",
                         (toy.math_mix, dict(right=0.25, poor=0.25, flawed=0.25, slip=0.25)))
    for name in ("pairs.jsonl", "pairs_eval.jsonl", "train.jsonl"):
        assert files[0][name] == files[1][name], name
    assert files[0]["warm.jsonl"] != files[1]["warm.jsonl"]
    train = data.load_problems(str(tmp_path / "0" / "train.jsonl"))
    assert len(train) == 200 and all(p.answer and not p.tests for p in train)
    pairs = data.load_pairs(str(tmp_path / "0" / "pairs.jsonl"))
    assert Counter(p.pair_type for p in pairs) == {"opt_deg": 50, "ori_deg": 50, "opt_ori": 50}
    warm = [json.loads(line) for line in open(tmp_path / "1" / "warm.jsonl")]
    assert Counter(w["kind"] for w in warm) == {"right": 50, "poor": 50, "flawed": 50, "slip": 50}


def test_recipes_keep_the_code_world_as_it_was(monkeypatch, tmp_path):
    """The code world's recipe has no task key (existing data/toy builds stay fresh); the math
    world's names its task and its own shares, so the two never share a stamp."""
    monkeypatch.setattr(toy, "task", "code")
    code = {s: toy.recipe(s) for s in toy.STAGES}
    assert code["problems"] == dict(seed=0, n_train=3000, n_pair_problems=800, weak_share=0.3,
                                    warm_mix=toy.warm_mix, version=6)
    assert all("task" not in r and "math_mix" not in r for r in code.values())
    monkeypatch.setattr(toy, "task", "math")
    maths = {s: toy.recipe(s) for s in toy.STAGES}
    assert all(r["task"] == "math" and r["math_mix"] == toy.math_mix and "warm_mix" not in r
               for r in maths.values())
    assert maths["lcbrb"].keys() - maths["problems"].keys() == code["lcbrb"].keys() - code["problems"].keys()
    monkeypatch.setattr(toy, "task", "chemistry")        # refused before anything is written
    monkeypatch.setattr(toy, "data_dir", str(tmp_path / "world"))
    with pytest.raises(ValueError, match="task must be one of"):
        toy.ensure("problems")
    assert not os.path.exists(toy.data_dir)


# sha256 of the files of a code world's problem stage (n_train 300, n_pair_problems 100,
# every other setting its default), computed before the math world was added to toy.py. A
# deliberate change of the code world (its recipe's version bumped) updates them.
CODE_WORLD_SHA256 = {
    "eval.jsonl": "b3744b963771e7429bca48a0fc0cdce40c17b2e971c879768f406e1aef5875cd",
    "pairs.jsonl": "34d5418feaba751c18f70e366cf228df03ba8dc46010d34dc2addd76171da88d",
    "pairs_eval.jsonl": "3187316ce49d24b88068fd5dfbfd237930cc4afa7c8b6d9fa7cb995a919517a1",
    "train.jsonl": "080205306c499a0ebe4304a6870a6ba5fc5ccfe937d9ed2c0d38fe6c197ac2b0",
    "warm.jsonl": "351f3da8eb62863b31d9c24b0b4664c5e6c4a493ae9240929dee6a6013e33f99",
}


def test_a_code_world_build_is_byte_identical_to_before_the_math_world(tmp_path, monkeypatch):
    monkeypatch.setattr(toy, "n_train", 300)
    monkeypatch.setattr(toy, "n_pair_problems", 100)
    monkeypatch.setattr(toy, "data_dir", str(tmp_path))
    toy.build_problems()
    got = {name: hashlib.sha256(open(tmp_path / name, "rb").read()).hexdigest()
           for name in CODE_WORLD_SHA256}
    assert got == CODE_WORLD_SHA256


def test_toy_lcbrb_records_of_math_samples(tasks):
    from synth import benchmark_pairs
    evals = tasks[1][:4]
    right = lambda t: math_completion(t.steps, t.code)                 # noqa: E731
    flawed = lambda t: math_completion(t.flawed_steps, t.flawed_code)  # noqa: E731
    slip = lambda t: math_completion(t.steps, t.buggy_code)            # noqa: E731
    sampled = [(t, make(t)) for t in evals[:3] for make in (right, flawed, slip)]
    sampled += [(evals[3], right(evals[3])), (evals[3], "<think>\nno idea\n</think>\n<answer>\n</answer>")]
    samples, judgments = toy.lcbrb_records(sampled)
    verdicts = [(s["passed"], judgments[s["id"]]["verdict"]) for s in samples]
    assert verdicts == [(True, "No"), (False, "Yes"), (False, "None")] * 3 + [(True, "No"), (False, "None")]
    assert all(s["passed"] == s["passed_base"] for s in samples)        # no weak tests in math
    pairs, counts = benchmark_pairs(samples, judgments, {t.problem.id: t.problem.statement for t in evals},
                                    0, source="toy-lcbrb")
    think = lambda text: prompts.parse_response(text, math=True).think  # noqa: E731
    assert [(p.problem_id, p.chosen, p.rejected) for p in pairs] == \
        [(t.problem.id, think(right(t)), think(flawed(t))) for t in evals[:3]]
    assert counts["problems dropped: only chosen samples"] == 1


def _run(args, timeout=300):
    """A script of the repository as the speedrun runs one: one thread, output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    t0 = time.time()
    r = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                       timeout=timeout, env=env)
    assert r.returncode == 0, " ".join(args) + "\n" + r.stdout[-3000:] + r.stderr[-3000:]
    return r, time.time() - t0


def test_math_world_end_to_end_reward_model_pgrpo_and_eval(tmp_path):
    """A tiny math world, then the three scripts on it with `speedrun_cpu.sh --smoke`'s
    settings: train_rm.py on its pairs, train_grpo.py (posterior gating, the trained reward
    model) on its problems, eval.py on its held-out problems."""
    world, times = str(tmp_path / "toy_math"), {}
    r, times["toy"] = _run(["toy.py", "--task=math", f"--data_dir={world}", "--threads=1", *SMOKE_TOY])
    for name in ("train.jsonl", "eval.jsonl", "pairs.jsonl", "pairs_eval.jsonl", "warm.jsonl",
                 "lcbrb.jsonl", "policy/config.json", "tokenizer/tokenizer.json"):
        assert os.path.exists(os.path.join(world, name)), name
    assert "slip 24 (0.200)" in r.stdout and "weak" not in r.stdout
    # the warm start weighs the digits of a math reply, and nothing else (it names no function)
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(os.path.join(world, "tokenizer"))
    reply = "<think>\nThe last term is 22.\n</think>\n<answer>\n\\boxed{126}\n</answer>"
    ids, weights = toy.reply_weights(tok, reply)
    assert len(ids) == len(weights)
    heavy = "".join(tok.decode([i]) for i, w in zip(ids, weights) if w == toy.copy_weight)
    assert heavy.replace(" ", "") == "22126", heavy
    # the reward model on the math world's rule-made pairs
    rm = str(tmp_path / "rm")
    _, times["train_rm"] = _run([
        "train_rm.py", f"--init_from={world}/policy", f"--pairs_file={world}/pairs.jsonl",
        f"--out_dir={rm}", "--epochs=1", "--batch_size=8", "--micro_batch_size=8",
        "--eval_interval=4", "--max_steps=4", "--max_length=256"])
    assert os.path.exists(os.path.join(rm, "best", "config.json"))
    assert any(json.loads(line)["kind"] == "eval" for line in open(os.path.join(rm, "metrics.jsonl")))
    # P-GRPO on the math problems, the reward model scoring the reasoning of right answers
    rl = str(tmp_path / "rl")
    _, times["train_grpo"] = _run([
        "train_grpo.py", "--reward_mode=posterior", f"--init_from={world}/policy", f"--rm_from={rm}/best",
        f"--train_file={world}/train.jsonl", f"--eval_file={world}/eval.jsonl", f"--out_dir={rl}",
        "--max_steps=2", "--eval_interval=2", "--prompts_per_step=2", "--group_size=2",
        "--max_new_tokens=48", "--micro_batch_size=4", "--ckpt_interval=2", "--eval_max_problems=8",
        "--sandbox_workers=1"])
    records = [json.loads(line) for line in open(os.path.join(rl, "metrics.jsonl"))]
    assert [r["step"] for r in records if r["kind"] == "train"] == [1, 2]
    assert any(r["kind"] == "eval" for r in records)
    # eval.py on a few held-out math problems, from the RL run's last checkpoint
    ev = str(tmp_path / "eval")
    _, times["eval"] = _run(["eval.py", f"--init_from={rl}/last", f"--benchmark={world}/eval.jsonl",
                             "--limit=4", "--max_new_tokens=48", "--batch_size=4", f"--out_dir={ev}",
                             "--run_name=math", "--threads=1", "--sandbox_workers=1"])
    summary = json.load(open(os.path.join(ev, "math.json")))["summary"]
    assert summary["overall"]["n_problems"] == 4 and os.path.exists(os.path.join(ev, "math.md"))
    print("math world end to end, seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in times.items()))
