"""
prompts.py: the paper's prompts and the parser of the policy's responses (the format
reward Rf's definition), in one file, so that the paper's appendix and its one
judgement of format live together.

    from prompts import rl_prompt, parse_response
    text = rl_prompt(problem)                # a data.Problem
    parsed = parse_response(model_output)    # .format_ok (Rf), .think, .code, .error

The prompts carry every instruction of the paper's, in the project's own words: the RL
prompt (reason in <think>, code in a python block inside <answer>; "How it is tested" is
ours), the initial-reasoning prompt, the rewrite prompts with the five ways to degrade
and the five to optimize, the judge prompt of LCB-RB and the score prompt of the
score-based baseline. reward_model_text is what the reward model reads. run_responses is
the one "parse, run, judge" path: Rf from the parser, Ro from the sandbox.
"""
import re
from dataclasses import dataclass

import sandbox


# ---------------------------------------------------------------- prompts


def _problem_text(problem):
    """The problem as shown to a model; HumanEval's statement is its starter code,
    so it is shown once, as code."""
    starter = problem.starter_code.strip()
    if starter and starter == problem.statement.strip():
        return f"Complete this Python code:\n```python\n{starter}\n```"
    text = problem.statement.strip()
    if starter:
        text += f"\n\nStarter code (keep its names and signature):\n```python\n{starter}\n```"
    return text


def _io_text(problem):
    if any(t.get("kind") == "stdio" for t in problem.tests) or not (
            problem.entry_point or problem.starter_code):
        return ("The program reads its input from standard input and writes the answer to "
                "standard output, printing nothing else.")
    name = f"`{problem.entry_point}`" if problem.entry_point else "the function in the starter code"
    where = " as a method of `class Solution`" if "class Solution" in problem.starter_code else ""
    return (f"The tests call {name}{where} directly with their arguments and check the value "
            "it returns; do not read standard input or print the result.")


def rl_prompt(problem):
    """The policy's prompt: reasoning in <think>, final code in <answer>."""
    return (f"Solve this programming problem in Python.\n\n## Problem\n{_problem_text(problem)}\n\n"
            f"## How it is tested\n{_io_text(problem)}\n\n## Response format\n"
            "First think the problem through inside <think> </think>. Then, inside "
            "<answer> </answer>, give your final solution as a complete Python program in one "
            "```python fenced block. Write nothing before <think> or after </answer>.")


def initial_reasoning_prompt(problem):
    """Asks the generator for the initial chain of thought y (no code)."""
    return (f"Here is a programming problem.\n\n## Problem\n{_problem_text(problem)}\n\n"
            "Write out, step by step, how to solve it. Give the reasoning only: no code and "
            "no code blocks. Your reasoning should:\n"
            "1. Restate what the input is, what output is wanted, and every constraint.\n"
            "2. Study the examples and think about edge cases, saying what each one shows.\n"
            "3. Look for an efficient algorithm before settling for a slow one, and justify "
            "the choice by its time and space complexity against the constraints.\n"
            "4. Run the chosen method by hand on one example and compare with the expected "
            "output.\n"
            "5. Whenever a check reveals a mistake, say so, fix it, and go on from the fix.")


DEGRADE_METHODS = [
    ("factual_error", "Factual error: state something false, such as a wrong constraint, "
     "an incorrect formula, or a wrong time or space complexity."),
    ("irrelevant_path", "Irrelevant or misleading path: add steps that are true but do "
     "not help, or that steer toward an unhelpful approach."),
    ("incomplete", "Incomplete reasoning: stop before the reasoning reaches its conclusion."),
    ("logical_gap", "Logical gap: remove a key intermediate step, so that a later claim "
     "no longer follows from what comes before it."),
    ("chaotic_order", "Chaotic order: mix up the steps so that effects come before their "
     "causes and neighbouring steps no longer connect."),
]
OPTIMIZE_METHODS = [
    ("fact_check", "Factual verification: check each claim (constraints, formulas, "
     "complexity) and correct the wrong ones; if none is wrong, change nothing here."),
    ("focus", "Focused logic: remove steps that are redundant or do not serve the solution."),
    ("complete", "Comprehensive reasoning: if the reasoning stops early, carry it to a "
     "full conclusion."),
    ("bridge_gaps", "Bridging gaps: add the missing intermediate steps so that each claim "
     "follows from the ones before it."),
    ("logical_flow", "Logical flow: reorder the steps into a clear sequence in which "
     "every cause comes before its effect."),
]
REWRITE_LABEL, EXPLAIN_LABEL = "Rewritten reasoning", "Explanation of changes"


def _rewrite_prompt(problem, reasoning, methods, table, task):
    known = dict(table)
    if not methods or any(m not in known for m in methods):
        raise ValueError(f"methods must be a non-empty list of {list(known)}, got {methods!r}")
    listed = "\n".join(f"- {known[m]}" for m in methods)
    return (f"{task}\n\n## Problem\n{_problem_text(problem)}\n\n## Original reasoning\n"
            f"{reasoning.strip()}\n\n## Methods to apply\n{listed}\n\n## Output format\n"
            "Answer in exactly two parts, each starting with its label on a line of its own:\n"
            f"{REWRITE_LABEL}:\n<the complete rewritten reasoning, without code>\n"
            f"{EXPLAIN_LABEL}:\n<for each method, where in the reasoning you applied it "
            "and how>")


def degrade_prompt(problem, reasoning, methods):
    return _rewrite_prompt(problem, reasoning, methods, DEGRADE_METHODS,
                           "Rewrite the reasoning below into a flawed version of itself, "
                           "using the methods listed. Keep its style and roughly its length, "
                           "make it look plausible, and do not mention the flaws inside it.")


def optimize_prompt(problem, reasoning, methods):
    return _rewrite_prompt(problem, reasoning, methods, OPTIMIZE_METHODS,
                           "Rewrite the reasoning below into a better version of itself, "
                           "using the methods listed. Change only what a method calls for; "
                           "keep everything that is already right.")


_FLAW_KINDS = ("factual errors (wrong constraints, formulas or complexity); irrelevant or "
               "misleading steps; reasoning that stops before its conclusion; logical gaps "
               "where a needed step is missing; steps in a confused or reversed order")


def judge_prompt(problem, reasoning, code):
    """LCB-RB labelling: is the reasoning flawed, and does the code follow it?"""
    return (f"Review a solution to a programming problem: its reasoning and its code.\n\n"
            f"## Problem\n{_problem_text(problem)}\n\n## Reasoning\n{reasoning.strip()}\n\n"
            f"## Code\n```python\n{code.strip()}\n```\n\n"
            f"Flaws in reasoning are: {_FLAW_KINDS}.\n\n"
            "Reply with two lines. Line 1 is exactly one word:\n"
            "Yes - the reasoning has a flaw and the code faithfully implements that reasoning;\n"
            "No - the reasoning is sound and the code faithfully implements it;\n"
            "None - the code does not implement the reasoning it comes with.\n"
            "Line 2 justifies your answer briefly.")


def score_prompt(problem, reasoning):
    """The score-based baseline: a 0.0..1.0 grade by the five flaw kinds."""
    return (f"Grade the reasoning below for this programming problem.\n\n## Problem\n"
            f"{_problem_text(problem)}\n\n## Reasoning\n{reasoning.strip()}\n\n"
            f"Look for these kinds of flaw: {_FLAW_KINDS}. Give 1.0 to reasoning with none "
            "of them, lower the grade for each flaw by how much it harms the solution, and "
            "give 0.0 to reasoning that is wrong or useless throughout. Use steps of 0.1.\n"
            "Write the grade alone on the first line (for example 0.6), then explain briefly.")


def reward_model_text(statement, reasoning):
    """What the reasoning reward model scores, in training and in RL alike."""
    return f"Problem:\n{statement.strip()}\n\nReasoning:\n{reasoning.strip()}"

# ---------------------------------------------------------------- parsing


@dataclass
class ParsedResponse:
    format_ok: bool
    think: str
    answer: str
    code: str | None
    error: str  # "" when format_ok


@dataclass
class ParsedRewrite:
    ok: bool
    reasoning: str
    explanation: str
    error: str


_PY_BLOCK = re.compile(r"```python[ \t]*\r?\n(.*?)```", re.S)
_LAYOUT = re.compile(r"<think>(.*)</think>\s*<answer>(.*)</answer>", re.S)


def _between(text, start, end):
    i = text.find(start)
    j = text.find(end, i + len(start)) if i >= 0 else -1
    return text[i + len(start):j] if j >= 0 else ""


def _format_error(body, answer):
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        if body.count(tag) != 1:
            return f"{tag} appears {body.count(tag)} times, expected once"
    if not _LAYOUT.fullmatch(body):
        return "text outside <think>...</think><answer>...</answer>, or tags out of order"
    if not _between(body, "<think>", "</think>").strip():
        return "empty <think>"
    if not _PY_BLOCK.search(answer):
        return "no ```python block inside <answer>"
    return ""


def parse_response(text):
    """Split a policy response. format_ok needs exactly <think>X</think> then
    <answer>Y</answer> (whitespace around and between allowed), each tag once, a
    non-empty X (an empty think would let the policy skip reasoning and still get
    the format reward) and a ```python block in Y. code is the last ```python block
    of the answer, or of the whole text when the format is broken (so the outcome
    reward stands apart from the format reward); think/answer are best effort."""
    if not isinstance(text, str):
        return ParsedResponse(False, "", "", None, "response is not text")
    body = text.strip()
    think, answer = _between(body, "<think>", "</think>"), _between(body, "<answer>", "</answer>")
    error = _format_error(body, answer)
    blocks = _PY_BLOCK.findall(body if error else answer)
    return ParsedResponse(not error, think.strip(), answer.strip(),
                          blocks[-1] if blocks else None, error)


def run_responses(problems, texts, **run_kw):
    """The one "parse, run, judge" path: parse each response (Rf is parsed.format_ok) and
    run its code on its problem's tests in the sandbox (Ro is result.all_passed).
    run_kw go to sandbox.run_batch (workers, limits, stop_on_failure). A response with no
    ```python block is not run; its result fails with first_error "no code: <why>".
    Returns (parsed, results), one each per response."""
    parsed = [parse_response(t) for t in texts]
    results = sandbox.run_batch([(p.code, prob.tests) for p, prob in zip(parsed, problems)],
                                **run_kw)
    results = [r if p.code is not None else
               r._replace(first_error=f"no code: {p.error or 'no ```python block'}")
               for p, r in zip(parsed, results)]
    return parsed, results


def _label_re(label):
    # at a line start, markdown (#, *, _, >) allowed around it; then a colon or line end
    return re.compile(r"^[ \t>#*_]*" + re.escape(label) + r"[ \t*_]*(?::[ \t*_]*|$)",
                      re.I | re.M)


def parse_rewrite(text):
    """Read the two labelled parts written for degrade_prompt/optimize_prompt."""
    if not isinstance(text, str):
        return ParsedRewrite(False, "", "", "response is not text")
    start = _label_re(REWRITE_LABEL).search(text)
    if not start:
        return ParsedRewrite(False, "", "", f"no '{REWRITE_LABEL}' label")
    end = _label_re(EXPLAIN_LABEL).search(text, start.end())
    if not end:
        return ParsedRewrite(False, "", "", f"no '{EXPLAIN_LABEL}' label after the reasoning")
    reasoning, explanation = text[start.end():end.start()].strip(), text[end.end():].strip()
    if not reasoning or not explanation:
        return ParsedRewrite(False, reasoning, explanation, "empty reasoning or explanation")
    return ParsedRewrite(True, reasoning, explanation, "")


def _first_line(text):
    """First non-blank line without markdown decoration or a final period, and the rest."""
    lines = text.strip().split("\n", 1) if isinstance(text, str) else [""]
    head = re.sub(r"[*_`#>]", "", lines[0]).strip().rstrip(".").strip()
    return head, (lines[1].strip() if len(lines) > 1 else "")


def parse_judge(text):
    """-> (verdict, justification); verdict "Yes", "No", "None" or "invalid" (then
    the justification is the whole text, for inspection)."""
    head, rest = _first_line(text)
    head = re.sub(r"^(?:line\s*1|verdict|answer)\s*:\s*", "", head, flags=re.I)
    verdict = {"yes": "Yes", "no": "No", "none": "None"}.get(head.lower(), "invalid")
    if verdict == "invalid":
        return verdict, text.strip() if isinstance(text, str) else ""
    return verdict, rest


def parse_score(text):
    """The grade on the first line as a float in [0, 1] (an optional "Score:" or
    "Grade:" before it), else None. Off-grid values such as 0.75 are kept."""
    head, _ = _first_line(text)
    m = re.fullmatch(r"(?:(?:score|grade)\s*:?\s*)?(\d+(?:\.\d+)?|\.\d+)", head, re.I)
    value = float(m.group(1)) if m else None
    return value if value is not None and 0.0 <= value <= 1.0 else None
