"""Tests for the toy world (toy.py) and the CPU speedrun (runs/)."""
import dataclasses
import json
import os
import random
import subprocess
import sys

import pytest

import prompts
import sandbox
import toy

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# the toy settings of `speedrun_cpu.sh --smoke`
SMOKE_TOY = ["--n_train=120", "--n_pair_problems=40", "--vocab_size=400", "--n_layer=1",
             "--n_embd=32", "--n_head=2", "--warm_epochs=1", "--warm_batch=8",
             "--lcbrb_problems=6", "--lcbrb_samples=2", "--max_new_tokens=48"]


@pytest.fixture(scope="module")
def tasks():
    return toy.all_tasks("train"), toy.all_tasks("eval")


def test_thousands_of_problems_and_a_disjoint_held_out_set(tasks):
    train, evals = tasks
    assert len(train) >= 2000 and len(evals) >= 200
    assert {t.family for t in train} == set(toy.FAMILIES) == {t.family for t in evals}
    ids = [t.problem.id for t in train + evals]
    assert len(set(ids)) == len(ids)
    statements = {t.problem.statement for t in train}
    assert not statements & {t.problem.statement for t in evals}
    assert {t.problem.difficulty for t in train} == {"easy", "medium", "hard"}
    kinds = {test["kind"] for t in train for test in t.problem.tests}
    assert kinds == {"call", "stdio"} and any("class Solution" in t.code for t in train)


def test_reference_solutions_pass_and_flawed_or_buggy_ones_fail(tasks):
    train, evals = tasks
    every = train + evals
    some = every[::4]            # the variants on a quarter of the problems: every family
    strong = [t for t in some if not t.weak]
    n, m, k = len(every), len(some), len(strong)
    res = sandbox.run_batch([(t.code, t.problem.plus_tests) for t in every] +
                            [(t.flawed_code, t.problem.plus_tests) for t in some] +
                            [(t.flawed_code, t.problem.tests) for t in strong] +
                            [(t.buggy_code, t.problem.tests) for t in some])
    assert all(r.all_passed for r in res[:n]), [r.first_error for r in res[:n] if not r.all_passed][:3]
    assert sum(r.all_passed for r in res[n:n + m]) == 0         # wrong constant: caught by plus tests
    assert sum(r.all_passed for r in res[n + m:n + m + k]) == 0  # and by complete base tests
    assert sum(r.all_passed for r in res[n + m + k:]) <= m // 100   # small bugs: caught by base tests


def test_a_lucky_program_passes_weak_base_tests_and_fails_plus_tests_in_the_sandbox(tasks):
    """The weak tests were chosen by running the programs in-process (toy.passes); the
    sandbox, which judges the rewards, must agree on every weak problem."""
    weak = [t for t in tasks[0] + tasks[1] if t.weak]
    assert len(weak) > 300
    w = len(weak)
    res = sandbox.run_batch([(t.flawed_code, t.problem.tests) for t in weak] +
                            [(t.flawed_code, t.problem.plus_tests) for t in weak] +
                            [(t.code, t.problem.tests) for t in weak] +
                            [(t.buggy_code, t.problem.tests) for t in weak])
    passed = [r.all_passed for r in res]
    assert passed[:w] == [True] * w, [t.problem.id for t, ok in zip(weak, passed) if not ok][:3]
    assert passed[w:2 * w] == [False] * w                    # lucky: the plus tests catch it
    assert passed[2 * w:3 * w] == [True] * w                 # the reference passes the base tests
    assert passed[3 * w:] == [False] * w                     # a weak test set still catches bugs
    # one known lucky program, spelled out: a clamp whose upper limit is one too high
    t = next(t for t in weak if t.family == "clamp")
    assert f"{int(t.const) + 1})" in t.flawed_code and all(max(test["args"][0], default=0) <= int(t.const)
                                                           for test in t.problem.tests)
    assert any(max(test["args"][0], default=0) > int(t.const) for test in t.problem.plus_tests)


def test_weak_share_is_the_setting_and_strong_problems_have_complete_tests(tasks, monkeypatch):
    every = tasks[0] + tasks[1]
    could = [t for t in every if t.can_be_weak]
    share = sum(t.weak for t in could) / len(could)
    assert abs(share - toy.weak_share) < 0.04 and toy.weak_share == 0.3, share
    for fam, (w, c, n) in toy.weak_counts(every).items():
        if fam in ("linear", "repeat_join", "shift_class"):   # the wrong constant never hides
            assert c == w == 0, fam
        else:
            assert c >= 0.9 * n and abs(w / c - toy.weak_share) < 0.12, (fam, w, c, n)
    for t in every:
        tests, plus = t.problem.tests, t.problem.plus_tests
        if not t.weak:
            assert tests == plus
            continue
        assert t.can_be_weak and 2 <= len(tests) < len(plus) and all(x in plus for x in tests)
        assert all(toy.passes(t.flawed_code, tests)) and not all(toy.passes(t.flawed_code, plus))
    # the share is the setting's: none, or every problem that can be weak
    monkeypatch.setattr(toy, "weak_share", 0.0)
    some = [toy.make_task(t.family, t.params) for t in could[:200]]
    assert not any(t.weak for t in some) and all(t.problem.tests == t.problem.plus_tests for t in some)
    monkeypatch.setattr(toy, "weak_share", 1.0)
    assert all(toy.make_task(t.family, t.params).weak for t in could[:200])


def test_passes_runs_call_class_and_stdio_programs_in_process(tasks):
    every = tasks[0] + tasks[1]
    for fam in toy.FAMILIES:
        t = next(t for t in every if t.family == fam)
        assert all(toy.passes(t.code, t.problem.plus_tests)), fam
        assert not all(toy.passes(t.flawed_code, t.problem.plus_tests)), fam
    assert toy.passes("raise SystemExit(1)\n", tasks[0][0].problem.tests[:1]) == [False]


def test_each_degradation_does_what_its_method_says(tasks):
    rng = random.Random(0)
    for t in tasks[0][:200]:
        ref = t.steps
        fact = toy.degrade(t, ref, "factual_error", rng)
        changed = [i for i in range(len(ref)) if fact[i] != ref[i]]
        assert changed == [t.key] and t.wrong in fact[t.key] and t.const not in fact[t.key].split(t.wrong)[0][-1:]
        extra = toy.degrade(t, ref, "irrelevant_path", rng)
        assert len(extra) == len(ref) + 1 and [s for s in extra if s not in ref][0] in toy.DISTRACTORS
        assert [s for s in extra if s in ref] == ref
        short = toy.degrade(t, ref, "incomplete", rng)
        assert short == ref[:len(short)] and len(short) < len(ref) and ref[-1] not in short
        gap = toy.degrade(t, ref, "logical_gap", rng)
        assert gap == ref[:t.key] + ref[t.key + 1:]
        mixed = toy.degrade(t, ref, "chaotic_order", rng)
        assert sorted(mixed) == sorted(ref) and mixed != ref
    with pytest.raises(ValueError):
        toy.degrade(tasks[0][0], tasks[0][0].steps, "typo", rng)


def three_kinds(task, pairs):
    """The paper's three pair kinds of one task, checked: opt > deg, ori > deg, opt > ori over
    three distinct texts, the optimized one the task's own steps. Returns (opt, ori, deg)."""
    assert [p.pair_type for p in pairs] == ["opt_deg", "ori_deg", "opt_ori"]
    opt, ori, deg = pairs[0].chosen, pairs[1].chosen, pairs[0].rejected
    assert opt == "\n".join(task.steps) and pairs[2].rejected == ori and pairs[1].rejected == deg
    assert len({opt, ori, deg}) == 3
    return opt, ori, deg


def test_pairs_of_three_kinds_with_methods(tasks):
    rng = random.Random(1)
    for t in tasks[0][:100]:
        pairs = toy.make_pairs(t, rng)
        opt, ori, deg = three_kinds(t, pairs)
        assert pairs[0].meta["degraded_by"][0] in ("factual_error", "incomplete", "logical_gap")
        assert toy.judge(t, deg, t.code) != "No"           # the degraded one is not sound
        assert toy.judge(t, opt, t.code) == "No"


def test_toy_judge_on_the_papers_scale(tasks):
    t = next(t for t in tasks[0] if t.family == "linear")
    sound, flawed = "\n".join(t.steps), "\n".join(t.flawed_steps)
    assert toy.judge(t, sound, t.code) == "No"              # sound, code follows
    assert toy.judge(t, flawed, t.flawed_code) == "Yes"     # flawed, code follows the flaw
    assert toy.judge(t, sound, t.flawed_code) == "None"     # code ignores the reasoning
    assert toy.judge(t, flawed, t.code) == "None"
    assert toy.judge(t, sound, None) == "None"
    assert toy.judge(t, "", t.code) == "None"
    # every task of every family: the key step is found whatever its constant (a count_char
    # letter may also stand in the words before it, as 'h' does in "the")
    every = tasks[0] + tasks[1]
    assert [toy.judge(t, "\n".join(t.flawed_steps), t.flawed_code) for t in every] == ["Yes"] * len(every)
    assert [toy.judge(t, "\n".join(t.steps), t.code) for t in every] == ["No"] * len(every)
    # and code that ignores the reasoning, even where the wrong constant stands elsewhere in
    # the right program (linear 10 * x + 11 with the wrong multiplier 11: 84 tasks)
    assert [toy.judge(t, "\n".join(t.flawed_steps), t.code) for t in every] == ["None"] * len(every)
    assert [toy.judge(t, "\n".join(t.steps), t.flawed_code) for t in every] == ["None"] * len(every)


def test_warm_start_corpus_holds_every_kind_in_its_share(tasks):
    train = tasks[0][:1000]
    kinds, missing = toy.warm_kinds(train)
    assert missing == 0 and set(toy.warm_mix) == {"right", "poor", "lucky", "flawed", "buggy"}
    assert abs(sum(toy.warm_mix.values()) - 1) < 1e-9
    for kind, share in toy.warm_mix.items():
        assert abs(kinds.count(kind) - share * len(train)) <= 1, kind      # exact, up to rounding
    assert all(t.weak for t, k in zip(train, kinds) if k == "lucky")
    assert not any(t.weak for t, k in zip(train, kinds) if k == "flawed")
    # each kind does what it says, judged in the sandbox on the base and the plus tests
    rng = random.Random(0)
    picked = [(t, k) for kind in toy.warm_mix for t, k in zip(train, kinds) if k == kind][::25]
    texts = [toy.warm_completion(t, k, rng) for t, k in picked]
    problems = [t.problem for t, _ in picked]
    parsed, base = prompts.run_responses(problems, texts)
    _, plus = prompts.run_responses([dataclasses.replace(p, tests=p.plus_tests) for p in problems], texts)
    expect = {"right": (True, True), "poor": (True, True), "lucky": (True, False),
              "flawed": (False, False), "buggy": (False, False)}
    assert {k for _, k in picked} == set(expect)
    for (t, k), p, b, q in zip(picked, parsed, base, plus):
        assert p.format_ok and (b.all_passed, q.all_passed) == expect[k], (t.problem.id, k)
        steps = p.think.split("\n")
        if k == "poor":         # the reference's steps, with one redundant step or out of order
            extra = [s for s in steps if s not in t.steps]
            assert steps != t.steps and set(t.steps) <= set(steps)
            assert (extra and extra[0] in toy.DISTRACTORS and len(extra) == 1 and
                    [s for s in steps if s in t.steps] == t.steps) or sorted(steps) == sorted(t.steps)
        else:
            assert steps == (t.flawed_steps if k in ("lucky", "flawed") else t.steps)
    # no weak problems: the lucky share goes to flawed-and-wrong, flawed reasoning keeps its share
    strong = [dataclasses.replace(t, weak=False) for t in train]
    kinds, missing = toy.warm_kinds(strong)
    assert missing == round(toy.warm_mix["lucky"] * len(train)) and "lucky" not in kinds
    assert abs(kinds.count("flawed") - (toy.warm_mix["flawed"] + toy.warm_mix["lucky"]) * len(train)) <= 1


def build_worlds(tmp_path, monkeypatch, setting, values):
    """toy.build_problems once per value of toy's `setting`, each in tmp_path/<i>; per
    world, the text of its pair, problem and warm-corpus files by name."""
    worlds = []
    for i, value in enumerate(values):
        monkeypatch.setattr(toy, setting, value)
        monkeypatch.setattr(toy, "data_dir", str(tmp_path / str(i)))
        os.makedirs(toy.data_dir)
        toy.build_problems()
        worlds.append({name: open(os.path.join(toy.data_dir, name)).read()
                       for name in ("pairs.jsonl", "pairs_eval.jsonl", "train.jsonl", "warm.jsonl")})
    return worlds


def test_reward_model_pairs_do_not_depend_on_weak_tests(tmp_path, monkeypatch):
    """The reward model learns from rule-made pairs only: a world with weak tests and one
    without give the same pair files byte for byte (and different problem files)."""
    monkeypatch.setattr(toy, "n_train", 300)
    monkeypatch.setattr(toy, "n_pair_problems", 100)
    none, some = build_worlds(tmp_path, monkeypatch, "weak_share", (0.0, 0.3))
    assert none["pairs.jsonl"] == some["pairs.jsonl"] and none["pairs.jsonl"]
    assert none["pairs_eval.jsonl"] == some["pairs_eval.jsonl"]
    assert none["train.jsonl"] != some["train.jsonl"]
    assert none["warm.jsonl"] != some["warm.jsonl"]


def test_toy_lcbrb_pairs_sound_and_right_with_flawed_and_wrong(tasks):
    from synth import benchmark_pairs
    weak = [t for t in tasks[1] if t.weak]
    evals = [t for t in tasks[1] if not t.weak][:5] + weak[:1]
    right = lambda t: toy.completion(t.steps, t.code)                 # passes, judged sound
    flawed = lambda t: toy.completion(t.flawed_steps, t.flawed_code)   # fails, judged flawed
    buggy = lambda t: toy.completion(t.steps, t.buggy_code)           # fails, not judged flawed
    # the last problem has weak tests: its flawed sample is a lucky pass, failed on plus tests
    two_sided = evals[:3] + evals[5:]
    sampled = [(t, make(t)) for t in two_sided for make in (right, flawed, buggy)]
    sampled += [(t, right(t)) for t in evals[3:5]]                     # one-sided problems
    samples, judgments = toy.lcbrb_records(sampled)
    verdicts = [(s["passed"], judgments[s["id"]]["verdict"]) for s in samples]
    assert verdicts[:2] == [(True, "No"), (False, "Yes")] and verdicts[2][0] is False
    assert [s["id"] for s in samples[:3]] == [f"{evals[0].problem.id}/{k}" for k in range(3)]
    lucky = samples[10]
    assert lucky["problem_id"] == evals[5].problem.id and lucky["passed_base"] and not lucky["passed"]
    assert [s["passed_base"] and not s["passed"] for s in samples].count(True) == 1
    statements = {t.problem.id: t.problem.statement for t in evals}
    pairs, counts = benchmark_pairs(samples, judgments, statements, 0, source="toy-lcbrb")
    think = lambda text: prompts.parse_response(text).think
    assert [(p.problem_id, p.chosen, p.rejected, p.source) for p in pairs] == \
        [(t.problem.id, think(right(t)), think(flawed(t)), "toy-lcbrb") for t in two_sided]
    assert counts["problems dropped: only chosen samples"] == 2


def test_minimal_speedrun_builds_everything_and_reports(tmp_path):
    """A few steps of every stage; also checks the tokenizer and the cache."""
    out = str(tmp_path / "run")
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    r = subprocess.run(["bash", os.path.join(REPO, "runs", "speedrun_cpu.sh"), "--smoke", "--out", out],
                       cwd=REPO, capture_output=True, text=True, timeout=600, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    report = open(os.path.join(out, "report.md")).read()
    for heading in ("## Claims", "## 1. Reasoning reward model", "## 2. RL", "## 3. Reward-hacking",
                    "## Stage wall times"):
        assert heading in report
    for mode in ("outcome", "posterior", "soft", "additive"):
        assert f"| {mode} |" in report
    assert "untrained backbone" in report and "trained (OD pairs)" in report
    stages = [json.loads(line)["stage"] for line in open(os.path.join(out, "times.jsonl"))]
    assert stages[0] == "toy_world" and stages[-1] == "report"
    for group in ("rm_and_lcbrb", "rm_eval", "rl", "sft_eval"):
        assert group in stages
    assert "&nbsp;&nbsp;rl_additive_s1 |" in report and "&nbsp;&nbsp;sft_s1 |" in report
    assert "| +SFT | 1 |" in report and "on 8 held-out problems (the RL evaluations: 8)" in report
    # the toy tokenizer round-trips its corpus, loads with AutoTokenizer, and a policy
    # checkpoint's copy (which loads by its model type) tokenizes exactly as the warm start did
    from transformers import AutoTokenizer
    tok = AutoTokenizer.from_pretrained(os.path.join(out, "toy", "tokenizer"))
    from_policy = AutoTokenizer.from_pretrained(os.path.join(out, "toy", "policy"))
    saved = toy.data_dir
    toy.data_dir = os.path.join(out, "toy")
    try:
        texts = list(toy.corpus_texts())
    finally:
        toy.data_dir = saved
    for text in texts[:300] + texts[-300:]:
        ids = tok(text, add_special_tokens=False)["input_ids"]
        assert tok.decode(ids) == text
        assert from_policy(text, add_special_tokens=False)["input_ids"] == ids
    # the warm start weighs what a reply copies from the prompt: constants and the called
    # name where the code defines it, not the same word in the reasoning nor the tags
    reply = ("<think>\nThe limit is 12.\n</think>\n<answer>\n```python\ndef limit(nums):\n"
             "    return [min(x, 12) for x in nums]\n```\n</answer>")
    ids, weights = toy.reply_weights(tok, reply, "limit")
    assert ids == tok(reply, add_special_tokens=False)["input_ids"] and len(weights) == len(ids)
    heavy = "".join(tok.decode([i]) for i, w in zip(ids, weights) if w == toy.copy_weight)
    assert heavy.replace(" ", "") == "12limit12", heavy
    ids, weights = toy.reply_weights(tok, reply.replace("limit(", "answer("), "answer")
    heavy = "".join(tok.decode([i]) for i, w in zip(ids, weights) if w == toy.copy_weight)
    assert heavy.replace(" ", "") == "12answer12", heavy   # not the tags' "answer"
    # a second build with the same recipe finds every stage fresh and rebuilds nothing
    again = subprocess.run([sys.executable, "toy.py", f"--data_dir={out}/toy", *SMOKE_TOY],
                           cwd=REPO, capture_output=True, text=True, timeout=120, env=env)
    assert again.returncode == 0 and "built" not in again.stdout, again.stdout + again.stderr
