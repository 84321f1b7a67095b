"""Tests for prompts.py: the paper's prompts carry their instructions, and the response
parser (the format reward) accepts exactly the paper's layout."""
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


def test_humaneval_prompt_shows_code_once():
    p = data.load_humaneval(limit=1)[0]
    text = prompts.rl_prompt(p)
    assert text.count("def has_close_elements") == 1 and "`has_close_elements`" in text


def test_initial_reasoning_prompt():
    text = prompts.initial_reasoning_prompt(CALL)
    assert CALL.statement in text and "no code" in text
    for word in ("constraint", "edge cases", "complexity", "example", "mistake"):
        assert word in text


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


def test_judge_score_and_reward_model_text():
    text = prompts.judge_prompt(CALL, REASONING, "class Solution: pass")
    assert CALL.statement in text and REASONING in text and "class Solution: pass" in text
    assert "Yes -" in text and "No -" in text and "None -" in text
    text = prompts.score_prompt(STDIO, REASONING)
    assert STDIO.statement in text and REASONING in text and "0.1" in text
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
