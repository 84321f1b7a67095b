r"""mathcheck.py: the final answer of a math response, and whether it equals the reference
answer (the outcome Ro of a math problem: data.Problem.answer non-empty, no tests).

    from mathcheck import extract_answer, equivalent, check
    equivalent(extract_answer(response), problem.answer)     # -> bool
    check(r"\frac12", "0.5")                                  # -> (True, "mathcheck")

Stdlib only. A small checker (this file) decides the common cases. When the optional package
math_verify (Hugging Face's math-verify) is importable, a pair the small checker cannot decide
goes to it; `check` says which one decided: "mathcheck", "math_verify", or "undecided" (False:
neither could say, e.g. `q - p` against `p - q` without math_verify).

Conventions:
- extract_answer: the content of the last \boxed{...} or \fbox{...} (braces balanced, \{ and \}
  skipped); a last box never closed (a response cut short) counts as no box. Else the text of
  the last <answer>...</answer>. Else "". Every other answer form is not extracted (GSM8K's
  "#### 18", DAPO's "Answer: 34" line).
- normalize strips: $ and \( \) \[ \] delimiters, \boxed, \text{} \mathrm{} \textbf{} \mbox{},
  \left \right, spacing (\! \, \; \quad ~), \displaystyle, \$, degrees (^\circ), \%, a
  "name =" prefix, a final period, thousands separators (only "1,000"-shaped: digits in groups
  of three, no spaces), one pair of parentheses around a single item ("(073)"), and unit words
  after a number ("5 cm", "12 dollars", "5\text{ inches}": words separated from the number by a
  space; so "2 x" reads as 2, while "2x" stays 2x). \dfrac and \tfrac are \frac.
- Numbers: a rational value (integers, decimals, a/b, \frac, 3e8, 3\times10^{8}) becomes "p" or
  "p/q" and compares exactly: 0.5 == \frac{1}{2}, but 0.333 != \frac13. A value with \sqrt or
  \pi is evaluated as a float and compared to 1e-9 relative (2\sqrt{3} == \sqrt{12}).
- Collections: "(1,2)" and "[1,2)" keep their order and bracket types (tuples and intervals);
  bare "1, -2" and "\{1,2\}" are sets (order free). A collection never equals a number.
- Anything else compares as its normalized text, spaces removed as in LaTeX math (p-q ==
  p - q, 1 000 == 1000), case kept. Two numbers side by side are not a product (2 3 != 6).

Where this differs from math-verify and from the usual evaluation code of MATH-500, Minerva
and AIME (Qwen2.5-Math's `math_equal`; the paper does not name its grader): both parse into
sympy and compare symbolically (q-p == -p+q, equations, matrices); this file does no algebra.
Both round or tolerate decimals (math-verify: 6 places, 0.333333 == 1/3; math_equal: 1e-4
relative), and both accept a percentage as its fraction (0.5 == 50\%); here decimals are
exact and 50\% is 50. math-verify 0.9.0, called as here, also lets a tuple equal a set
((1,2) == 1,2) and 52_8 equal 52, but not "12 dollars" 12 or \textbf{(073)} 73. Its timeouts
use signal.alarm, which works only in the main thread: elsewhere it is not called and its
pairs stay "undecided".
"""

import ast
import math
import re
import threading
from fractions import Fraction

MATH_VERIFY_TIMEOUT = 5  # seconds, for each of math_verify's parse and verify calls
_BOX = re.compile(r"\\(?:boxed|fbox)\s*\{")
_TEXT_COMMANDS = ("boxed", "fbox", "text", "textbf", "textit", "mathrm", "mathbf", "mbox")
_UNIT = re.compile(r"^(.*?\S)\s+([A-Za-z][A-Za-z\s./^{}\-\d]*)$")
_NAME_PREFIX = re.compile(r"^\\?[A-Za-z]{1,8}(?:_\{?\w+\}?)?\s*(?:=|\\approx)\s*(?=\S)")
_THOUSANDS = re.compile(r"[+-]?\d{1,3}(?:,\d{3})+(?:\.\d+)?")
_NUMBER = re.compile(r"(?:\d+\.?\d*|\.\d+)(?:[eE]([+-]?\d+))?")
_COMMAND = re.compile(r"\\(frac|sqrt|pi|cdot|times)(?![A-Za-z])")
_LONGEST = 300  # characters: longer text is never read as arithmetic or a number with a unit
MAX_ANSWER = 1000  # characters: longer answers (no final answer is) compare as text only


def _group(s, i, pair="{}"):
    r"""(content, index after it) of the bracket group opening at s[i] == pair[0]; None if it
    never closes. Escaped characters (\{ \}) do not count."""
    depth, j = 0, i
    while j < len(s):
        if s[j] == "\\":
            j += 2
            continue
        depth += (s[j] == pair[0]) - (s[j] == pair[1])
        if depth == 0:
            return s[i + 1:j], j + 1
        j += 1
    return None


def extract_answer(text):
    """The final answer of a response (module docstring): last box, else last <answer>, else ""."""
    boxes = list(_BOX.finditer(text))
    if boxes and (found := _group(text, boxes[-1].end() - 1)):
        return found[0].strip()
    answers = re.findall(r"<answer>(.*?)</answer>", text, re.S)
    return answers[-1].strip() if answers else ""


def _unwrap_commands(s):
    r"""\text{X}, \boxed{X}, ... -> " X " (spaces keep a unit apart from its number)."""
    while m := re.search(r"\\(%s)\s*\{" % "|".join(_TEXT_COMMANDS), s):
        found = _group(s, m.end() - 1)
        if found is None:
            return s
        s = s[:m.start()] + " " + found[0] + " " + s[found[1]:]
    return s


def _strip_latex(s):
    r"""Delimiters, spacing commands, \left/\right, \$, degrees and percent signs removed."""
    s = re.sub(r"\\[()\[\]]|\$|\\displaystyle|\\left|\\right|\\!", "", s.replace("\\$", ""))
    s = re.sub(r"\\[,;: ]|\\q?quad|~", " ", s)
    s = re.sub(r"\^\s*\{?\\circ\}?|\\circ|°|\\degree|\\%|%", "", s)
    s = re.sub(r"\\[dt]frac", r"\\frac", s)
    s = re.sub(r"\\frac\s*(\d)\s*(\d)", r"\\frac{\1}{\2}", s)
    return re.sub(r"\\sqrt\s*(\w)", r"\\sqrt{\1}", s)


def _strip_prefix(s):
    r""""x = 5", "t_{s} = ...", "d \approx 3" -> the right-hand side."""
    return _NAME_PREFIX.sub("", s, count=1)


def _strip_units(s):
    r""""5 cm" -> "5": words after a number (rational or with \sqrt, \pi), split off by a space."""
    m = _UNIT.match(s) if len(s) <= _LONGEST else None
    return m.group(1) if m and _real(_drop_thousands(m.group(1))) is not None else s


def _drop_thousands(s):
    """"1,000" -> "1000"; only digits in groups of three after the first comma, no spaces."""
    return s.replace(",", "") if _THOUSANDS.fullmatch(s) else s


def _strip_parens(s):
    """"(073)" -> "073": one pair of parentheses around the whole, with no top-level comma
    ("(1)(2)" and "(1,2)" stay)."""
    found = _group(s, 0, "()") if s.startswith("(") else None
    if found and found[1] == len(s) and len(_split_top(found[0], ",")) == 1:
        return found[0].strip()
    return s


def _strip(ans):
    """The answer with every wrapper of the module docstring removed (spaces inside kept)."""
    s = _strip_latex(_unwrap_commands(str(ans)))
    s = _strip_prefix(" ".join(s.split())).rstrip(".").strip()
    return _drop_thousands(_strip_parens(_strip_units(s)))


def _split_top(s, sep):
    """s split at `sep` where no bracket is open."""
    parts, depth, start = [], 0, 0
    for i, c in enumerate(s):
        depth += (c in "([{") - (c in ")]}")
        if c == sep and depth == 0:
            parts.append(s[start:i])
            start = i + 1
    return parts + [s[start:]]


def _collection(s):
    r"""(kind, parts) of a tuple, interval or set; (None, None) for a single item. kind is the
    bracket pair ("()", "[)", ...) of an ordered one, "set" for \{...\} or bare commas."""
    if s.startswith("\\{") and s.endswith("\\}"):
        return "set", [p.strip() for p in _split_top(s[2:-2], ",")]
    if s[:1] in "([" and s[-1:] in ")]" and len(parts := _split_top(s[1:-1], ",")) > 1:
        return s[0] + s[-1], [p.strip() for p in parts]
    if len(parts := _split_top(s, ",")) > 1:
        return "set", [p.strip() for p in parts]
    return None, None


class _NotExact(Exception):
    r"""The value needs floats: \sqrt of a non-square, \pi, a fractional power."""


def _to_python(s):
    r"""LaTeX arithmetic -> a Python expression ("2\sqrt{3}" -> "2*sqrt((3))"); ValueError on
    anything else (letters, unknown commands, two numbers in a row). A product without a sign
    gets its "*"."""
    out, i, last = [], 0, None  # last: "number", "operand" (ends one), or None

    def emit(token, kind, starts_operand=True):
        nonlocal last
        if last == "number" and kind == "number":
            raise ValueError("two numbers in a row")  # "1 000" is not 1 * 000
        if last and starts_operand:
            out.append("*")
        out.append(token)
        last = kind

    def arg(j):  # the {group} or the one character after \frac, \sqrt, ^
        while j < len(s) and s[j] == " ":
            j += 1
        if s.startswith("{", j) and (found := _group(s, j)):
            return "(" + _to_python(found[0]) + ")", found[1]
        if j < len(s) and s[j].isalnum():
            return "(" + _to_python(s[j]) + ")", j + 1
        raise ValueError("missing or unclosed argument")

    while i < len(s):
        if s[i].isspace():
            i += 1
        elif m := _NUMBER.match(s, i):
            if m.group(1) and abs(int(m.group(1))) > 10_000:
                raise OverflowError("exponent too large")  # Fraction("1e999999999") would hang
            emit(re.sub(r"^0+(?=\d)", "", m.group()), "number")  # "025": Python has no octal
            i = m.end()
        elif m := _COMMAND.match(s, i):
            name, i = m.group(1), m.end()
            if name in ("cdot", "times"):
                emit("*", None, starts_operand=False)
            elif name == "pi":
                emit("pi", "operand")
            elif name == "frac":
                a, i = arg(i)
                b, i = arg(i)
                emit(f"({a}/{b})", "operand")
            elif s.startswith("[", i) and (found := _group(s, i, "[]")):
                a, i = arg(found[1])
                emit(f"({a}**(1/({_to_python(found[0])})))", "operand")
            else:
                a, i = arg(i)
                emit(f"sqrt({a})", "operand")
        elif s[i] == "^":
            a, i = arg(i + 1)
            emit("**" + a, "operand", starts_operand=False)
        elif s[i] in "({" and (found := _group(s, i, "()" if s[i] == "(" else "{}")):
            emit("(" + _to_python(found[0]) + ")", "operand")
            i = found[1]
        elif s[i] in "+-*/":
            emit(s[i], None, starts_operand=False)
            i += 1
        else:
            raise ValueError(f"not arithmetic: {s[i]!r}")
    return "".join(out)


def _sqrt(x, exact):
    r"""The square root: exact for a rational square (\sqrt{4} = 2), else _NotExact or a float."""
    if x < 0:
        raise ValueError("square root of a negative number")
    if exact:
        n, d = math.isqrt(x.numerator), math.isqrt(x.denominator)
        if n * n != x.numerator or d * d != x.denominator:
            raise _NotExact
        return Fraction(n, d)
    return math.sqrt(x)


def _power(x, y, exact):
    """x ** y, refusing results too large to be an answer (OverflowError)."""
    if exact and y.denominator != 1:
        raise _NotExact
    size = abs(y) * (x.numerator.bit_length() + x.denominator.bit_length()) if exact else abs(y)
    if abs(y) > 10_000 or size > 100_000:
        raise OverflowError("power too large")
    value = x ** (int(y) if exact else y)
    if isinstance(value, complex):
        raise ValueError("complex power")
    return value


_OPERATORS = {ast.Add: lambda x, y: x + y, ast.Sub: lambda x, y: x - y,
              ast.Mult: lambda x, y: x * y, ast.Div: lambda x, y: x / y}


def _evaluate(s, exact):
    """The value of LaTeX arithmetic: a Fraction (exact; _NotExact when it needs floats) or a
    float. Literals are read from their text, so 0.1 is exactly 1/10."""
    if len(s) > _LONGEST:
        raise ValueError("too long to be an answer's arithmetic")
    expr = _to_python(s)

    def value(node):
        if isinstance(node, ast.Constant) and type(node.value) in (int, float):
            text = ast.get_source_segment(expr, node)
            return Fraction(text) if exact else float(text)
        if isinstance(node, ast.Name) and node.id == "pi":
            if exact:
                raise _NotExact
            return math.pi
        if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.UAdd, ast.USub)):
            return -value(node.operand) if isinstance(node.op, ast.USub) else value(node.operand)
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "sqrt":
            return _sqrt(value(node.args[0]), exact)
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Pow):
            return _power(value(node.left), value(node.right), exact)
        if isinstance(node, ast.BinOp) and type(node.op) in _OPERATORS:
            return _OPERATORS[type(node.op)](value(node.left), value(node.right))
        raise ValueError("not arithmetic")

    return value(ast.parse(expr, mode="eval").body)


_NOT_A_NUMBER = (_NotExact, ValueError, SyntaxError, ArithmeticError, RecursionError)


def _rational(s):
    """The exact value of `s` when it is a rational number, else None."""
    try:
        return _evaluate(s, exact=True)
    except _NOT_A_NUMBER:
        return None


def _real(s):
    r"""The float value of `s` when it is arithmetic (with \sqrt, \pi), else None."""
    try:
        value = _evaluate(s, exact=False)
    except _NOT_A_NUMBER:
        return None
    return value if math.isfinite(value) else None


def normalize(ans):
    """Canonical text of an answer (module docstring): wrappers stripped, a rational number as
    "p" or "p/q", the parts of a collection normalized (a set's sorted), no spaces. Text
    longer than MAX_ANSWER only loses its spaces."""
    if len(ans) > MAX_ANSWER:
        return "".join(ans.split())
    s = _strip(ans)
    kind, parts = _collection(s)
    if kind == "set":
        return "{" + ",".join(sorted(normalize(p) for p in parts)) + "}"
    if kind:
        return kind[0] + ",".join(normalize(p) for p in parts) + kind[1]
    value = _rational(s)
    return str(value) if value is not None else "".join(s.split())


def _same_parts(kind, pred_parts, ref_parts):
    """Collections of one kind: in order for tuples and intervals, as sets for sets (at most
    20 parts are paired one by one; larger sets must match part for part after normalize)."""
    if len(pred_parts) != len(ref_parts):
        return False
    if kind != "set":
        verdicts = [_decide(_strip(p), _strip(r)) for p, r in zip(pred_parts, ref_parts)]
        return False if False in verdicts else (True if all(verdicts) else None)
    if sorted(map(normalize, pred_parts)) == sorted(map(normalize, ref_parts)):
        return True
    if len(pred_parts) > 20:
        return None  # pairing parts one by one costs len**2 comparisons
    left, undecided = [_strip(r) for r in ref_parts], False
    for p in pred_parts:
        verdicts = [_decide(_strip(p), r) for r in left]
        if True in verdicts:
            left.pop(verdicts.index(True))
        elif None in verdicts:
            undecided = True
        else:
            return False
    return None if undecided else True


def _decide(pred, ref):
    """True or False when the small checker can tell, None when it cannot (both _strip-ped)."""
    if "".join(pred.split()) == "".join(ref.split()):
        return True
    (pred_kind, pred_parts), (ref_kind, ref_parts) = _collection(pred), _collection(ref)
    if pred_kind and ref_kind:
        return _same_parts(pred_kind, pred_parts, ref_parts) if pred_kind == ref_kind else False
    if pred_kind or ref_kind:  # a collection against one item: never equal to a number
        return False if _real(ref if pred_kind else pred) is not None else None
    x, y = _rational(pred), _rational(ref)
    if x is not None and y is not None:
        return x == y
    x, y = _real(pred), _real(ref)
    if x is not None and y is not None:
        return math.isclose(x, y, rel_tol=1e-9, abs_tol=1e-12)
    return None


def _math_verify(pred, ref):
    """math_verify's verdict, with its own timeouts; None when it is not installed, this is
    not the main thread (its timeouts need signal.alarm), or it fails or parses nothing."""
    try:
        from math_verify import parse, verify
    except ImportError:
        return None
    if threading.current_thread() is not threading.main_thread():
        return None
    try:
        gold = parse("$" + ref.replace("$", "") + "$", parsing_timeout=MATH_VERIFY_TIMEOUT)
        answer = parse("$" + pred.replace("$", "") + "$", parsing_timeout=MATH_VERIFY_TIMEOUT)
        if not gold or not answer:
            return None
        return bool(verify(gold, answer, timeout_seconds=MATH_VERIFY_TIMEOUT))
    except Exception:  # a bug or timeout inside math_verify must not stop a training step
        return None


def check(pred, ref):
    """(equal, how): how is "mathcheck" (the small checker decided), "math_verify", or
    "undecided" (equal is False: neither could tell). An empty answer never equals; one longer
    than MAX_ANSWER equals only the same text (spaces aside)."""
    if max(len(pred), len(ref)) > MAX_ANSWER:
        return "".join(pred.split()) == "".join(ref.split()) != "", "mathcheck"
    p, r = _strip(pred), _strip(ref)
    if not p or not r:
        return False, "mathcheck"
    verdict = _decide(p, r)
    if verdict is not None:
        return verdict, "mathcheck"
    verdict = _math_verify(pred, ref)
    return (verdict, "math_verify") if verdict is not None else (False, "undecided")


def equivalent(pred, ref):
    """Whether the answer `pred` equals the reference answer `ref` (check's verdict)."""
    return check(pred, ref)[0]
