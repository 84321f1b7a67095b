"""
prompts.py: the paper's prompts and the parser of the policy's responses (the format
reward Rf's definition), in one file, so that the paper's appendix and its one
judgement of format live together.

    from prompts import rl_prompt, parse_response
    text = rl_prompt(problem)                # a data.Problem
    parsed = parse_response(model_output)    # .format_ok (Rf), .think, .code, .error

The prompts carry every instruction the paper gives for them (its appendix, as summarised
in PAPER.md and issue 19), in the project's own words; what the paper does not say and we
add is marked "ours" here and in each prompt's docstring.

- rl_prompt. Paper: reason inside <think> </think>; the final Python code in a ```python
  block inside <answer> </answer>. Ours: the "How it is tested" section (stdin/stdout or a
  called function), "a complete program in one block", nothing before <think> or after
  </answer>.
- initial_reasoning_prompt. Paper: a step-by-step chain of thought only, no code; no
  preamble; restate input, output and constraints; learn from the examples and edge cases;
  split into sub-problems; efficient algorithms first, brute force only as a last resort,
  the choice justified by time and space complexity; implementation trade-offs; walk one
  example through, narrating the variables' states; say and fix mistakes found.
- degrade_prompt / optimize_prompt. Paper: the three quality dimensions (factual accuracy,
  logical rigor, logical coherence); the five ways to degrade and the five to optimize
  (fact correction only where an error exists); apply the chosen one or more; two labelled
  parts, the rewritten reasoning then where and how each method was applied. Ours: the
  caller chooses the methods; no code in the rewrite; keep the style and roughly the
  length; a degraded rewrite looks plausible and never names its flaws; an optimized one
  changes only what a method calls for.
- judge_prompt (LCB-RB). Paper: decide whether the reasoning's plan is a correct and robust
  way to solve the problem and whether the code faithfully implements it; line 1 Yes / No
  / None, line 2 the justification. Ours: the five flaw kinds listed as examples of flaws.
- score_prompt (the score-based baseline). Paper: grade 0.0..1.0 in steps of 0.1 by the
  five flaw kinds; be strict; the bands 1.0 / 0.7-0.9 / 0.3-0.6 / 0.0-0.2; reply with the
  score only. Ours: the words describing each band.

reward_model_text is what the reward model reads. run_responses is the one "parse, run,
judge" path: Rf from the parser, Ro from the sandbox. parse_response(answer_only=True)
takes the code only from inside <answer> (the paper's "extracted answer"); the default
(False) takes the last ```python block anywhere when the format is broken (ours), so that
Ro can be 1 while Rf is 0.
"""
import re
from dataclasses import dataclass

import mathcheck
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
    """The policy's prompt: math_rl_prompt for a problem with a final answer, else code's."""
    if problem.answer:                 # a math problem (data.Problem.answer): its own prompt
        return math_rl_prompt(problem)
    return _code_rl_prompt(problem)


def math_rl_prompt(problem):
    """The policy's prompt for a problem with a final answer (the paper's Sec. 4): the same
    two sections as for code, the final answer boxed inside <answer>. The box is ours: it is
    what mathcheck.extract_answer reads first, as the MATH / Minerva graders do."""
    return (f"Solve this math problem.\n\n## Problem\n{problem.statement.strip()}\n\n"
            "## Response format\nFirst think the problem through inside <think> </think>. "
            "Then, inside <answer> </answer>, give only the final answer, written as "
            "\\boxed{...}. Write nothing before <think> or after </answer>.")


def _code_rl_prompt(problem):
    """The policy's prompt: reasoning in <think>, final code in <answer> (the paper's two
    instructions). Ours: the "How it is tested" section, so that a program is not judged
    on an I/O convention it was never told; "a complete Python program in one block"; and
    "nothing before <think> or after </answer>", which the strict format reward (Rf)
    demands. The text must stay byte-identical: the toy world's warm start is trained on
    it."""
    return (f"Solve this programming problem in Python.\n\n## Problem\n{_problem_text(problem)}\n\n"
            f"## How it is tested\n{_io_text(problem)}\n\n## Response format\n"
            "First think the problem through inside <think> </think>. Then, inside "
            "<answer> </answer>, give your final solution as a complete Python program in one "
            "```python fenced block. Write nothing before <think> or after </answer>.")


def initial_reasoning_prompt(problem):
    """Asks the generator for the initial chain of thought y (no code). Every instruction
    is the paper's; the wording, the order and the small examples in brackets are ours."""
    if problem.answer:
        return _math_reasoning_prompt(problem)
    return (f"Here is a programming problem.\n\n## Problem\n{_problem_text(problem)}\n\n"
            "Write out, step by step, how to solve it. Give the reasoning only: no code and "
            "no code blocks. Begin with the first step itself, with no introduction or "
            "preamble. Your reasoning should:\n"
            "1. Restate what the input is, what output is wanted, and every constraint.\n"
            "2. Study the examples and think about edge cases, saying what each one shows.\n"
            "3. Split the problem into smaller sub-problems and say how their answers "
            "combine.\n"
            "4. Look for an efficient algorithm first; use brute force only as a last "
            "resort, when nothing faster fits. Justify the choice by its time and space "
            "complexity against the constraints.\n"
            "5. Weigh the implementation choices (data structures, how to iterate, what to "
            "store) and their trade-offs.\n"
            "6. Run the chosen method by hand on one example, stating the values of the key "
            "variables at each step, and compare the result with the expected output.\n"
            "7. Whenever a check reveals a mistake, say so, fix it, and go on from the fix.")


def _math_reasoning_prompt(problem):
    """The initial chain of thought for a math problem (Sec. 4 takes the OD method to math
    without giving its prompts): the code prompt's instructions carried over where they
    apply (restate, split, prefer a direct method, justify it, check by hand, fix mistakes,
    no preamble), the code-only ones (complexity, data structures) replaced by checking the
    result; it ends on the final answer, which the code version leaves to the code. Ours."""
    return (f"Here is a math problem.\n\n## Problem\n{problem.statement.strip()}\n\n"
            "Write out, step by step, how to solve it. Begin with the first step itself, with "
            "no introduction or preamble. Your reasoning should:\n"
            "1. Restate what is given, what is asked, and every condition.\n"
            "2. Split the problem into smaller parts and say how their results combine.\n"
            "3. Choose a method (a formula, a direct computation, a case analysis) and say "
            "why it fits; try exhaustive listing only as a last resort.\n"
            "4. Carry out each computation explicitly, stating every intermediate value.\n"
            "5. Check the result (substitute it back, try a special case, or estimate it).\n"
            "6. Whenever a check reveals a mistake, say so, fix it, and go on from the fix.\n"
            "7. End with the final answer on a line of its own.")


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
_DIMENSIONS = ("Good reasoning is judged on three dimensions: factual accuracy (every claim "
               "about the problem, a formula or a complexity is true); logical rigor (no "
               "redundant or misleading steps, and no missing link between steps); logical "
               "coherence (the steps connect in a clear order, each cause before its effect).")


def _rewrite_prompt(problem, reasoning, methods, table, task):
    """The shared body of the two rewrites: the paper's quality dimensions, the chosen
    methods, and its two labelled parts (parse_rewrite reads them)."""
    known = dict(table)
    if not methods or any(m not in known for m in methods):
        raise ValueError(f"methods must be a non-empty list of {list(known)}, got {methods!r}")
    listed = "\n".join(f"- {known[m]}" for m in methods)
    return (f"{task}\n\n{_DIMENSIONS}\n\n## Problem\n{_problem_text(problem)}\n\n"
            f"## Original reasoning\n{reasoning.strip()}\n\n## Methods to apply\n"
            f"Apply every method below.\n{listed}\n\n## Output format\n"
            "Answer in exactly two parts, each starting with its label on a line of its own:\n"
            f"{REWRITE_LABEL}:\n<the complete rewritten reasoning, without code>\n"
            f"{EXPLAIN_LABEL}:\n<for each method, where in the reasoning you applied it "
            "and how>")


def degrade_prompt(problem, reasoning, methods):
    """y-: worse along the dimensions by the chosen methods (paper). Ours: plausible, in the
    original's style and length, with no word about its flaws, so that a reward model must
    read the reasoning to tell y- from y rather than spot a confession or a length."""
    return _rewrite_prompt(problem, reasoning, methods, DEGRADE_METHODS,
                           "Rewrite the reasoning below into a flawed version of itself, "
                           "making it worse on the dimensions below by the methods listed. "
                           "Keep its style and roughly its length, make it look plausible, "
                           "and do not mention the flaws inside it.")


def optimize_prompt(problem, reasoning, methods):
    """y+: better along the dimensions by the chosen methods (paper). Ours: change only what
    a method calls for, so that y+ and y differ by the methods and nothing else."""
    return _rewrite_prompt(problem, reasoning, methods, OPTIMIZE_METHODS,
                           "Rewrite the reasoning below into a better version of itself, "
                           "making it better on the dimensions below by the methods listed. "
                           "Change only what a method calls for; keep everything that is "
                           "already right.")


_FLAW_KINDS = ("factual errors (wrong constraints, formulas or complexity); irrelevant or "
               "misleading steps; reasoning that stops before its conclusion; logical gaps "
               "where a needed step is missing; steps in a confused or reversed order")


def judge_prompt(problem, reasoning, code):
    """LCB-RB labelling (paper): is the reasoning's plan a correct and robust way to solve
    the problem, and does the code faithfully implement it? Line 1 is the verdict (see
    parse_judge), line 2 the justification. Ours: the flaw kinds as examples. For a math
    problem `code` is the final answer, and the question is whether it follows from the
    reasoning (ours: the paper builds no math benchmark)."""
    if problem.answer:
        return (f"Review a solution to a math problem: its reasoning and its final answer.\n\n"
                f"## Problem\n{problem.statement.strip()}\n\n## Reasoning\n{reasoning.strip()}"
                f"\n\n## Final answer\n{code.strip()}\n\n"
                "Decide two things. First: is the reasoning a correct and rigorous way to solve "
                "the problem? If not, the reasoning is flawed; typical flaws are "
                f"{_FLAW_KINDS}. Second: is the final answer the one the reasoning arrives at?"
                "\n\nReply with two lines. Line 1 is exactly one word:\n"
                "Yes - the reasoning is flawed and the final answer is the one it arrives at;\n"
                "No - the reasoning is sound and the final answer is the one it arrives at;\n"
                "None - the final answer is not the one the reasoning arrives at.\n"
                "Line 2 justifies your answer briefly.")
    return (f"Review a solution to a programming problem: its reasoning and its code.\n\n"
            f"## Problem\n{_problem_text(problem)}\n\n## Reasoning\n{reasoning.strip()}\n\n"
            f"## Code\n```python\n{code.strip()}\n```\n\n"
            "Decide two things. First: is the plan in the reasoning a correct and robust "
            "way to solve the problem, one that gives the right output on every valid input, "
            "edge cases included? If not, the reasoning is flawed; typical flaws are "
            f"{_FLAW_KINDS}. Second: does the code faithfully implement that plan?\n\n"
            "Reply with two lines. Line 1 is exactly one word:\n"
            "Yes - the reasoning is flawed and the code faithfully implements that reasoning;\n"
            "No - the reasoning is sound and the code faithfully implements it;\n"
            "None - the code does not implement the reasoning it comes with.\n"
            "Line 2 justifies your answer briefly.")


SCORE_BANDS = (("1.0", "no flaw of any of these kinds"),
               ("0.7 to 0.9", "minor flaws that leave the approach right"),
               ("0.3 to 0.6", "real flaws that would make the code wrong or too slow "
                "unless fixed"),
               ("0.0 to 0.2", "the approach is wrong, or the reasoning is of no use"))


def score_prompt(problem, reasoning):
    """The score-based baseline (paper): a strict 0.0..1.0 grade in steps of 0.1 by the
    five flaw kinds, anchored by four bands, the score alone in reply (parse_score reads
    the first line). Ours: the words that describe each band."""
    bands = "\n".join(f"{grade}: {meaning}" for grade, meaning in SCORE_BANDS)
    kind = "math" if problem.answer else "programming"
    return (f"Grade the reasoning below for this {kind} problem.\n\n## Problem\n"
            f"{_problem_text(problem)}\n\n## Reasoning\n{reasoning.strip()}\n\n"
            f"Look for these kinds of flaw: {_FLAW_KINDS}. Be strict: a high grade has to be "
            "earned, and every flaw found lowers it. Grade from 0.0 to 1.0 in steps of 0.1, "
            f"using these bands:\n{bands}\n"
            "Reply with the grade alone (for example 0.6): no words, no explanation.")


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
    final: str | None = None  # a math response's final answer (mathcheck.extract_answer)


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


def _format_error(body, answer, math=False):
    for tag in ("<think>", "</think>", "<answer>", "</answer>"):
        if body.count(tag) != 1:
            return f"{tag} appears {body.count(tag)} times, expected once"
    if not _LAYOUT.fullmatch(body):
        return "text outside <think>...</think><answer>...</answer>, or tags out of order"
    if not _between(body, "<think>", "</think>").strip():
        return "empty <think>"
    if math:
        return "" if mathcheck.extract_answer(f"<answer>{answer}</answer>") else "empty <answer>"
    if not _PY_BLOCK.search(answer):
        return "no ```python block inside <answer>"
    return ""


def _answer_blocks(body):
    """The ```python blocks that lie wholly inside a closed <answer>...</answer> section,
    in order (a section runs from an <answer> to the next </answer>)."""
    sections = re.findall(r"<answer>(.*?)</answer>", body, re.S)
    return [block for section in sections for block in _PY_BLOCK.findall(section)]


def parse_response(text, *, answer_only=False, math=False):
    """Split a policy response. format_ok needs exactly <think>X</think> then
    <answer>Y</answer> (whitespace around and between allowed), each tag once, a
    non-empty X (an empty think would let the policy skip reasoning and still get
    the format reward) and a ```python block in Y. think/answer are best effort.

    code, when format_ok, is the last ```python block of the answer, in either setting.
    When the format is broken it depends on answer_only:
    - False (default, ours): the last ```python block of the whole text, so the outcome
      reward stands apart from the format reward (Ro = 1 with Rf = 0 is possible);
    - True (the paper's "extracted answer"): the last ```python block inside any closed
      <answer>...</answer> section; none there (no section, an unclosed one, or no block
      inside) means no code, and run_responses then does not run it.

    math=True (a problem with a final answer): format_ok asks for a non-empty final answer
    in Y instead of a python block, code is None, and `final` is the answer read the same
    way: from Y when the format is right; when it is broken, the last \\boxed{} or
    <answer> section of the whole text, or with answer_only of the closed <answer>
    sections only ("" when there is none)."""
    if not isinstance(text, str):
        return ParsedResponse(False, "", "", None, "response is not text", "" if math else None)
    body = text.strip()
    think, answer = _between(body, "<think>", "</think>"), _between(body, "<answer>", "</answer>")
    error = _format_error(body, answer, math)
    if math:
        if not error:
            where = f"<answer>{answer}</answer>"
        elif answer_only:   # the closed sections only
            where = "".join(f"<answer>{a}</answer>" for a in re.findall(r"<answer>(.*?)</answer>", body, re.S))
        else:
            where = body
        return ParsedResponse(not error, think.strip(), answer.strip(), None, error,
                              mathcheck.extract_answer(where))
    if not error:
        blocks = _PY_BLOCK.findall(answer)
    else:
        blocks = _answer_blocks(body) if answer_only else _PY_BLOCK.findall(body)
    return ParsedResponse(not error, think.strip(), answer.strip(),
                          blocks[-1] if blocks else None, error)


def _no_code(parsed, answer_only):
    """first_error for a response that was not run, in the "no code: <why>" convention."""
    if answer_only:
        return f"no code: no ```python block inside <answer> (format: {parsed.error})"
    return f"no code: {parsed.error or 'no ```python block'}"


def run_responses(problems, texts, *, answer_only=False, **run_kw):
    """The one "parse, run, judge" path: parse each response (Rf is parsed.format_ok) and
    run its code on its problem's tests in the sandbox (Ro is result.all_passed).
    answer_only goes to parse_response (where the code is read from); run_kw go to
    sandbox.run_batch (workers, limits, stop_on_failure). A response with no code is not
    run; its result fails with first_error "no code: <why>".
    A math problem (problem.answer set) is not run: its response's final answer is
    compared with the reference (judge_answer), the same result fields filled in.
    Returns (parsed, results), one each per response."""
    parsed = [parse_response(t, answer_only=answer_only, math=bool(prob.answer))
              for t, prob in zip(texts, problems)]
    results = sandbox.run_batch([(None if prob.answer else p.code, prob.tests)
                                 for p, prob in zip(parsed, problems)], **run_kw)
    results = [judge_answer(p, prob.answer) if prob.answer else
               r if p.code is not None else r._replace(first_error=_no_code(p, answer_only))
               for p, prob, r in zip(parsed, problems, results)]
    return parsed, results


def judge_answer(parsed, reference):
    """Ro of a math response as a sandbox.ProgramResult: one "test", the final answer
    equivalent to the reference (mathcheck.check; which checker decided is in the error)."""
    if not parsed.final:
        return sandbox.ProgramResult(False, 0.0, ["not_run"],
                                     f"no answer: {parsed.error or 'empty final answer'}", 0.0, [])
    same, how = mathcheck.check(parsed.final, reference)
    return sandbox.ProgramResult(same, float(same), ["passed" if same else "wrong_answer"],
                                 "" if same else f"test 0: wrong_answer: {parsed.final[:80]!r} is not "
                                 f"{reference[:80]!r} ({how})", 0.0, [])


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
    "Grade:" before it), else None. score_prompt asks for the grade alone; lines after it
    are tolerated (a grader that explains anyway still gave its grade first), a grade
    after words is not. Off-grid values such as 0.75 are kept."""
    head, _ = _first_line(text)
    m = re.fullmatch(r"(?:(?:score|grade)\s*:?\s*)?(\d+(?:\.\d+)?|\.\d+)", head, re.I)
    value = float(m.group(1)) if m else None
    return value if value is not None and 0.0 <= value <= 1.0 else None
