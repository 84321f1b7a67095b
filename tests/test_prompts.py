"""Tests for prompts.py: the paper's prompts carry their instructions, and the response
parser (the format reward) accepts exactly the paper's layout."""
import os

import pytest

import data
import prompts
from data import Problem


# ---------------------------------------------------------------- prompts

STDIO = Problem("s", "Read two integers and print their sum.",
                [{"kind": "stdio", "input": "1 2\n", "output": "3\n"}])
CALL = Problem("c", "Return the k-th bit of n.", [{"kind": "call", "fn": "kthBit", "args": [5, 0],
               "expected": 1}], starter_code="class Solution:\n    def kthBit(self, n, k):\n",
               entry_point="kthBit")
REASONING = "Step 1: read a and b.\nStep 2: print a + b."


def test_rl_prompt():
    text = prompts.rl_prompt(STDIO)
    assert STDIO.statement in text and "standard input" in text
    for tag in ("<think>", "</think>", "<answer>", "</answer>", "```python"):
        assert tag in text
    text = prompts.rl_prompt(CALL)
    assert CALL.statement in text and CALL.starter_code.strip() in text
    assert "`kthBit`" in text and "class Solution" in text and "standard input or print" in text


def test_rl_prompt_is_byte_identical():
    """The toy world's warm start is trained on this exact text: any change to it, even
    a space, must be a decision, not an accident."""
    fmt = ("\n\n## Response format\nFirst think the problem through inside <think> </think>. "
           "Then, inside <answer> </answer>, give your final solution as a complete Python "
           "program in one ```python fenced block. Write nothing before <think> or after "
           "</answer>.")
    assert prompts.rl_prompt(STDIO) == (
        "Solve this programming problem in Python.\n\n## Problem\nRead two integers and "
        "print their sum.\n\n## How it is tested\nThe program reads its input from standard "
        "input and writes the answer to standard output, printing nothing else." + fmt)
    assert prompts.rl_prompt(CALL) == (
        "Solve this programming problem in Python.\n\n## Problem\nReturn the k-th bit of "
        "n.\n\nStarter code (keep its names and signature):\n```python\nclass Solution:\n"
        "    def kthBit(self, n, k):\n```\n\n## How it is tested\nThe tests call `kthBit` as "
        "a method of `class Solution` directly with their arguments and check the value it "
        "returns; do not read standard input or print the result." + fmt)


def test_humaneval_prompt_shows_code_once():
    p = data.load_humaneval(limit=1)[0]
    text = prompts.rl_prompt(p)
    assert text.count("def has_close_elements") == 1 and "`has_close_elements`" in text


# Each paper instruction of a prompt, by the key phrases of our wording (lower case): dropping
# an instruction from a prompt turns its case red.
INITIAL_INSTRUCTIONS = {
    "step by step, reasoning only": ["step by step", "reasoning only"],
    "no code": ["no code and no code blocks"],
    "no preamble": ["no introduction or preamble"],
    "restate input, output, constraints": ["restate", "input", "output", "every constraint"],
    "examples and edge cases": ["examples", "edge cases"],
    "sub-problems": ["sub-problems"],
    "efficient algorithm first": ["efficient algorithm first"],
    "brute force only as a last resort": ["brute force only as a last resort"],
    "justify by time and space complexity": ["justify", "time and space complexity"],
    "implementation trade-offs": ["implementation choices", "trade-offs"],
    "walk an example, narrating variables": ["by hand on one example", "values of the key "
                                             "variables at each step", "expected output"],
    "self-correct": ["mistake", "fix it"],
}
REWRITE_INSTRUCTIONS = {
    "factual accuracy": ["factual accuracy"],
    "logical rigor": ["logical rigor", "redundant", "missing link"],
    "logical coherence": ["logical coherence", "clear order"],
    "apply the chosen methods": ["apply every method below"],
    "rewritten reasoning, labelled": [prompts.REWRITE_LABEL.lower() + ":"],
    "explain where and how each method went": [prompts.EXPLAIN_LABEL.lower() + ":",
                                               "for each method, where", "and how"],
}
JUDGE_INSTRUCTIONS = {
    "a correct and robust way to solve the problem": ["correct and robust way to solve "
                                                      "the problem"],
    "does the code faithfully implement it": ["faithfully implement that plan"],
    "line 1 one word": ["line 1 is exactly one word"],
    "Yes: flawed and faithful": ["yes - the reasoning is flawed and the code faithfully"],
    "No: sound and faithful": ["no - the reasoning is sound and the code faithfully"],
    "None: code does not follow": ["none - the code does not implement the reasoning"],
    "line 2 justification": ["line 2 justifies"],
}
SCORE_INSTRUCTIONS = {
    "range 0.0 to 1.0": ["from 0.0 to 1.0"],
    "steps of 0.1": ["steps of 0.1"],
    "rubric of the five flaw kinds": ["factual errors", "misleading steps", "before its "
                                      "conclusion", "logical gaps", "reversed order"],
    "be strict": ["be strict"],
    "band 1.0": ["\n1.0: "],
    "band 0.7-0.9": ["\n0.7 to 0.9: "],
    "band 0.3-0.6": ["\n0.3 to 0.6: "],
    "band 0.0-0.2": ["\n0.0 to 0.2: "],
    "score only": ["grade alone", "no explanation"],
}


def _missing(text, phrases):
    return [phrase for phrase in phrases if phrase not in text.lower()]


def test_initial_reasoning_prompt_shows_the_problem():
    text = prompts.initial_reasoning_prompt(CALL)
    assert CALL.statement in text and CALL.starter_code.strip() in text


@pytest.mark.parametrize("instruction", INITIAL_INSTRUCTIONS)
def test_initial_reasoning_prompt_instructions(instruction):
    text = prompts.initial_reasoning_prompt(CALL)
    assert not _missing(text, INITIAL_INSTRUCTIONS[instruction])


@pytest.mark.parametrize("make", [prompts.degrade_prompt, prompts.optimize_prompt])
@pytest.mark.parametrize("instruction", REWRITE_INSTRUCTIONS)
def test_rewrite_prompt_instructions(make, instruction):
    text = make(STDIO, REASONING, ["focus" if make is prompts.optimize_prompt else "incomplete"])
    assert not _missing(text, REWRITE_INSTRUCTIONS[instruction])


def test_rewrite_prompts_say_which_way_and_stay_comparable():
    """Our additions: a degraded rewrite is plausible and silent about its flaws, an optimized
    one changes only what a method calls for, and neither has code."""
    degrade = prompts.degrade_prompt(STDIO, REASONING, ["incomplete"]).lower()
    optimize = prompts.optimize_prompt(STDIO, REASONING, ["focus"]).lower()
    assert not _missing(degrade, ["flawed version", "worse", "plausible",
                                  "do not mention the flaws", "without code"])
    assert not _missing(optimize, ["better version", "change only what a method calls for",
                                   "without code"])
    fact_check = prompts.optimize_prompt(STDIO, REASONING, ["fact_check"]).lower()
    assert "if none is wrong, change nothing" in fact_check   # paper: correct only an error


@pytest.mark.parametrize("make,table", [(prompts.degrade_prompt, prompts.DEGRADE_METHODS),
                                        (prompts.optimize_prompt, prompts.OPTIMIZE_METHODS)])
def test_rewrite_prompts_list_requested_methods(make, table):
    assert len(table) == 5
    keys = [k for k, _ in table]
    text = make(STDIO, REASONING, keys[1:4])
    assert STDIO.statement in text and REASONING in text
    assert prompts.REWRITE_LABEL + ":" in text and prompts.EXPLAIN_LABEL + ":" in text
    for key, description in table:
        assert (description in text) == (key in keys[1:4])
    for bad in ([], ["nope"]):
        with pytest.raises(ValueError, match="methods"):
            make(STDIO, REASONING, bad)


def test_judge_prompt_shows_its_inputs():
    text = prompts.judge_prompt(CALL, REASONING, "class Solution: pass")
    assert CALL.statement in text and REASONING in text and "class Solution: pass" in text
    assert "Yes -" in text and "No -" in text and "None -" in text


@pytest.mark.parametrize("instruction", JUDGE_INSTRUCTIONS)
def test_judge_prompt_instructions(instruction):
    text = prompts.judge_prompt(CALL, REASONING, "class Solution: pass")
    assert not _missing(text, JUDGE_INSTRUCTIONS[instruction])


@pytest.mark.parametrize("instruction", SCORE_INSTRUCTIONS)
def test_score_prompt_instructions(instruction):
    text = prompts.score_prompt(STDIO, REASONING)
    assert STDIO.statement in text and REASONING in text
    assert not _missing(text, SCORE_INSTRUCTIONS[instruction])


def test_score_prompt_bands_cover_the_grid_once():
    """The four bands cover 0.0..1.0 in steps of 0.1 with no grade in two bands or none."""
    covered = []
    for grade, _ in prompts.SCORE_BANDS:
        low, _, high = grade.partition(" to ")
        covered += [round(x / 10, 1) for x in range(round(float(low) * 10),
                                                    round(float(high or low) * 10) + 1)]
    assert sorted(covered) == [x / 10 for x in range(11)]


def test_score_prompt_reply_is_what_parse_score_reads():
    """The prompt's own example reply parses to its grade."""
    text = prompts.score_prompt(STDIO, REASONING)
    example = text.split("(for example ", 1)[1].split(")", 1)[0]
    assert prompts.parse_score(example) == float(example)


def test_reward_model_text():
    assert prompts.reward_model_text(" P \n", "\nR ") == "Problem:\nP\n\nReasoning:\nR"

# ---------------------------------------------------------------- parsing rewrites


def test_parse_rewrite_round_trip():
    reply = ("Rewritten reasoning:\nStep 1: read a.\nThe explanation of the input is simple.\n\n"
             "Explanation of changes:\n- focus: removed step 3.\n")
    r = prompts.parse_rewrite(reply)
    assert r.ok and r.error == ""
    assert r.reasoning == "Step 1: read a.\nThe explanation of the input is simple."
    assert r.explanation == "- focus: removed step 3."


@pytest.mark.parametrize("reply", [
    "**Rewritten Reasoning:**\n\nA\nB\n\n**Explanation of Changes:**\nE",
    "## REWRITTEN REASONING\nA\nB\n### explanation of changes\n\nE\n",
    "Here you go.\n\n**Rewritten reasoning**: A\nB\n\n\n> Explanation of changes: E",
])
def test_parse_rewrite_tolerates_decoration(reply):
    r = prompts.parse_rewrite(reply)
    assert (r.ok, r.reasoning, r.explanation) == (True, "A\nB", "E")


@pytest.mark.parametrize("reply,words", [
    ("A\nB", "Rewritten reasoning"), ("Rewritten reasoning:\nA", "Explanation of changes"),
    ("Explanation of changes:\nE\nRewritten reasoning:\nA", "Explanation of changes"),
    ("Rewritten reasoning:\n\nExplanation of changes:\nE", "empty"), (None, "not text")])
def test_parse_rewrite_failures(reply, words):
    r = prompts.parse_rewrite(reply)
    assert not r.ok and words in r.error

# ---------------------------------------------------------------- parsing responses

GOOD = "<think>\nadd them\n</think>\n<answer>\nHere:\n```python\nprint(1)\n```\n</answer>"


def test_parse_response_well_formed():
    r = prompts.parse_response("\n  " + GOOD + "\n\n")
    assert r.format_ok and r.error == ""
    assert (r.think, r.code) == ("add them", "print(1)\n")
    assert r.answer.startswith("Here:")
    two = GOOD.replace("</answer>", "```python\nprint(2)\n```\n</answer>")
    assert prompts.parse_response(two).code == "print(2)\n"  # the last block wins
    tight = "<think>x</think><answer>```python\nprint(3)\n```</answer>"
    assert prompts.parse_response(tight).format_ok


@pytest.mark.parametrize("text,error,code", [
    ("add them\n<answer>\n```python\nprint(1)\n```\n</answer>", "<think> appears 0", "print(1)\n"),
    (GOOD.replace("</think>", ""), "</think> appears 0", "print(1)\n"),  # unclosed
    (GOOD + "\n<answer>```python\nprint(2)\n```</answer>", "<answer> appears 2", "print(2)\n"),
    ("Sure!\n" + GOOD, "text outside", "print(1)\n"),
    (GOOD + " bye", "text outside", "print(1)\n"),
    ("<answer>```python\nx=1\n```</answer><think>t</think>", "out of order", "x=1\n"),
    ("<think>a<think>b</think></think><answer>```python\nx\n```</answer>", "appears 2", "x\n"),
    ("<think>t<answer>```python\nx\n```</answer></think>", "out of order", "x\n"),
    ("<think>\n \n</think><answer>```python\nx\n```</answer>", "empty <think>", "x\n"),
    ("<think>t</think><answer>print(1)</answer>", "no ```python", None),
    ("<think>```python\nx\n```</think><answer>```\ny\n```</answer>", "no ```python", "x\n"),
    ("<think>t</think><answer>```python\nnever closed</answer>", "no ```python", None),
    ("", "appears 0", None),
    (None, "not text", None),
])
def test_parse_response_broken(text, error, code):
    r = prompts.parse_response(text)
    assert not r.format_ok and error in r.error and r.code == code


@pytest.mark.parametrize("text", [
    GOOD, GOOD.replace("</answer>", "```python\nprint(2)\n```\n</answer>"),
    "<think>```python\nx\n```</think><answer>```python\ny\n```</answer>"])
def test_answer_only_changes_nothing_when_the_format_is_right(text):
    default, strict = prompts.parse_response(text), prompts.parse_response(text, answer_only=True)
    assert strict.format_ok and strict == default


OUTSIDE = "Sure.\n```python\nprint(0)\n```"
ANSWER = "<answer>\n```python\nprint(1)\n```\n</answer>"


@pytest.mark.parametrize("text,default,strict", [
    (OUTSIDE, "print(0)\n", None),                                  # code only outside tags
    ("<think>t</think>\n" + OUTSIDE, "print(0)\n", None),
    ("<think>```python\nx\n```</think><answer>```\ny\n```</answer>", "x\n", None),
    ("Sure.\n" + ANSWER, "print(1)\n", "print(1)\n"),                # code inside, text outside
    (ANSWER + "\n" + OUTSIDE, "print(0)\n", "print(1)\n"),           # both: outside is later
    (OUTSIDE + "\n" + ANSWER, "print(1)\n", "print(1)\n"),           # both: inside is later
    ("<answer>```python\na\n```\n```python\nb\n```</answer>\n" + OUTSIDE,  # several in one
     "print(0)\n", "b\n"),
    (ANSWER + "\n<answer>```python\nprint(2)\n```</answer>" + OUTSIDE,    # several sections
     "print(0)\n", "print(2)\n"),
    ("<think>t</think><answer>\n```python\nprint(1)\n```", "print(1)\n", None),  # unclosed
    ("<think>t</think><answer>```python\nx</answer>\n```", "x</answer>\n", None),  # straddles
    ("<think>t<answer>```python\nx\n```</answer></think>", "x\n", "x\n"),  # nested, still inside
])
def test_answer_only_reads_code_from_inside_answer(text, default, strict):
    r = prompts.parse_response(text)
    a = prompts.parse_response(text, answer_only=True)
    assert not r.format_ok and not a.format_ok and a.error == r.error   # Rf is the same
    assert (r.code, a.code) == (default, strict)


def test_run_responses_forwards_answer_only():
    """Code only outside <answer> runs (and passes) by default and is not run with
    answer_only; a well-formed response runs either way."""
    texts = [OUTSIDE.replace("print(0)", "print(3)"),
             GOOD.replace("print(1)", "print(sum(map(int, input().split())))")]
    parsed, results = prompts.run_responses([STDIO] * 2, texts, workers=1)
    assert [p.format_ok for p in parsed] == [False, True]
    assert [r.all_passed for r in results] == [True, True]
    parsed, results = prompts.run_responses([STDIO] * 2, texts, answer_only=True, workers=1)
    assert parsed[0].code is None and [r.all_passed for r in results] == [False, True]
    assert results[0].first_error == ("no code: no ```python block inside <answer> (format: "
                                      "<think> appears 0 times, expected once)")
    _, results = prompts.run_responses([STDIO], ["no code at all"], workers=1)
    assert results[0].first_error == "no code: <think> appears 0 times, expected once"

# ---------------------------------------------------------------- parsing judge and score


@pytest.mark.parametrize("text,verdict,why", [
    ("Yes\nThe loop bound is wrong.", "Yes", "The loop bound is wrong."),
    ("\n**No**\n\nSound and faithful.", "No", "Sound and faithful."),
    ("none.\nCode ignores the plan", "None", "Code ignores the plan"),
    ("Line 1: Yes\nwhy", "Yes", "why"),
    ("Yes", "Yes", ""),
])
def test_parse_judge_good(text, verdict, why):
    assert prompts.parse_judge(text) == (verdict, why)


@pytest.mark.parametrize("text", ["Maybe\nhmm", "Yes, mostly\nx", "", "The answer is No", None])
def test_parse_judge_bad(text):
    assert prompts.parse_judge(text)[0] == "invalid"


@pytest.mark.parametrize("text,value", [
    ("0.7\nclear", 0.7), ("**0.3**", 0.3), ("Score: 1.0\n", 1.0), ("0\nbad", 0.0),
    ("  .5", 0.5), ("1", 1.0), ("Grade: 0.9.", 0.9),
    ("1.5", None), ("-0.1", None), ("seven", None), ("", None), ("0.7 because", None),
    ("explain first\n0.7", None), (None, None)])
def test_parse_score(text, value):
    assert prompts.parse_score(text) == value


# ----------------------------------------------------------------------------- math problems
FIXTURE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures", "toy_problems.jsonl")
MATH = data.Problem(id="m1", statement="What is 1/2 + 1/4?", tests=[], answer=r"\frac{3}{4}")


def test_math_prompt_asks_for_a_boxed_answer_and_code_prompts_are_unchanged():
    text = prompts.rl_prompt(MATH)
    assert "What is 1/2 + 1/4?" in text and r"\boxed{...}" in text and "<think>" in text
    assert "Python" not in text and "How it is tested" not in text
    code = data.load_problems(FIXTURE)[0]
    assert prompts.rl_prompt(code) == prompts._code_rl_prompt(code)


@pytest.mark.parametrize("text, fmt, final, passed", [
    ("<think>Add the quarters.</think>\n<answer>\n\\boxed{0.75}\n</answer>", True, "0.75", True),
    ("<think>Add.</think><answer>3/4</answer>", True, "3/4", True),          # no box: the section
    ("<think>Add.</think><answer>\\boxed{3/5}</answer>", True, "3/5", False),
    ("<think>Add.</think><answer></answer>", False, "", False),             # nothing to judge
    ("<think></think><answer>\\boxed{3/4}</answer>", False, "3/4", True),   # Ro stands apart from Rf
    ("So it is \\boxed{3/4}.", False, "3/4", True),                          # broken format, boxed
    ("<think>a</think><answer>\\boxed{1}</answer> and \\boxed{3/4}", False, "3/4", True),
])
def test_math_responses_are_judged_by_their_final_answer(text, fmt, final, passed):
    [parsed], [result] = prompts.run_responses([MATH], [text], workers=1)
    assert (parsed.format_ok, parsed.final, parsed.code) == (fmt, final, None)
    assert result.all_passed is passed and result.pass_rate == float(passed)
    assert result.first_error == "" if passed else result.first_error


def test_math_answer_only_reads_closed_answer_sections():
    broken = "So it is \\boxed{3/4}."
    [parsed], [result] = prompts.run_responses([MATH], [broken], workers=1, answer_only=True)
    assert parsed.final == "" and not result.all_passed and result.first_error.startswith("no answer")
    mixed = "<answer>\\boxed{3/4}</answer> <think>late</think> \\boxed{9}"
    assert prompts.parse_response(mixed, math=True).final == "9"
    assert prompts.parse_response(mixed, math=True, answer_only=True).final == "3/4"


def test_a_batch_mixes_math_and_code_problems():
    code = data.load_problems(FIXTURE)[0]
    good = f"<think>ok</think>\n<answer>\n```python\n{code.solution}```\n</answer>"
    _, results = prompts.run_responses([code, MATH, code], [good, "<think>a</think><answer>\\boxed{3/4}</answer>",
                                                            "<think>a</think><answer>\\boxed{3/4}</answer>"], workers=1)
    assert [r.all_passed for r in results] == [True, True, False]
    assert results[2].first_error.startswith("no code")


def test_synth_prompts_speak_of_math_for_math_problems():
    reason = prompts.initial_reasoning_prompt(MATH)
    assert reason.startswith("Here is a math problem.") and "What is 1/2 + 1/4?" in reason
    for phrase in ("no introduction or preamble", "smaller parts", "last resort",
                   "Check the result", "say so, fix it", "final answer on a line of its own"):
        assert phrase in reason, phrase
    assert "complexity" not in reason and "code" not in reason
    judge = prompts.judge_prompt(MATH, "Quarters add.", "3/4")
    assert "math problem" in judge and "## Final answer\n3/4" in judge and "```python" not in judge
    assert "None - the final answer is not the one the reasoning arrives at" in judge
    assert "for this math problem" in prompts.score_prompt(MATH, "Quarters add.")
    code = data.load_problems(FIXTURE)[0]
    assert "programming problem" in prompts.score_prompt(code, "x")
    assert prompts.initial_reasoning_prompt(code).startswith("Here is a programming problem.")
