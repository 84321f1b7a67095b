"""
synth.py: rebuild the paper's reward-model data (the OD method) and an LCB-RB style
benchmark, on your own problems, with any Hugging Face causal LM.

One subcommand per stage; each reads the problem file (--problems, any format of
data.load_problems) and writes into --out_dir:

    reason     initial chain of thought y per problem              -> reasoning.jsonl
    rewrite    an optimized y+ and a degraded y- of every kept y    -> rewrites.jsonl
    pairs      opt_deg (y+ > y-), ori_deg (y > y-), opt_ori (y+ > y)
                                                   -> pairs_train.jsonl, pairs_val.jsonl
    sample     K samples per problem with the RL prompt, run on the tests -> samples.jsonl
    judge      Yes / No / None flaw verdict per sample (judge model) -> judgments.jsonl
    benchmark  chosen = passed + "No", rejected = failed + "Yes"    -> lcbrb.jsonl
    correlate  the paper's A.4 test: passed/failed x sound/flawed reasoning, Pearson's
               chi-square and its p-value                           -> correlation.json
    score      0..1 rubric grade per reasoning (the score baseline) -> scores.jsonl,
                                                   grades_train.jsonl, grades_val.jsonl

The pair files are train_rm.py pair files and the grade files are train_rm.py grade
files (objective "score"); lcbrb.jsonl is a pair file for --eval_only.

One CPU, plumbing only (a tiny random model writes noise, so little survives parsing;
out/smollm2-135m, if converted, writes words):
    python model.py out/tiny
    python synth.py reason --model=out/tiny --problems=tests/fixtures/toy_problems.jsonl \
        --out_dir=out/synth_try --limit=3 --max_new_tokens=64 --keep_truncated=True
8 GPUs (each rank holds the whole model, generates its share, rank 0 merges):
    torchrun --standalone --nproc_per_node=8 synth.py reason --model=/models/Qwen2.5-Coder-32B-Instruct \
        --problems=deepcoder_train.jsonl --out_dir=out/od
    torchrun ... synth.py rewrite (same flags);  python synth.py pairs (same flags)
    torchrun --standalone --nproc_per_node=8 train_rm.py config/rm_qwen7b.py \
        --pairs_file=out/od/pairs_train.jsonl --val_file=out/od/pairs_val.jsonl
LCB-RB on LiveCodeBench (paper: 50 samples at temperature 1.0, a stronger judge):
    torchrun ... synth.py sample --model=DIR --problems=lcb.jsonl --out_dir=out/lcbrb
    torchrun ... synth.py judge --model=DIR --judge_model=JUDGE_DIR (same flags)
    python synth.py benchmark --problems=lcb.jsonl --out_dir=out/lcbrb
    python synth.py correlate --problems=lcb.jsonl --out_dir=out/lcbrb   (Appendix A.4)
Score baseline:  synth.py score ... then  train_rm.py --objective=score
    --grades_file=out/od/grades_train.jsonl --val_file=out/od/grades_val.jsonl

Choices and why:
- Resumable: every model stage appends one JSON line per finished item (dropped items
  too, with the reason in `status`) to the rank's part file right after each batch, and
  skips ids already recorded, so a killed run loses at most the batch in flight; rank 0
  merges the part files into the stage file in work order. A part line cut short by
  the kill is left out (and said so) and that item is redone.
- Every item samples with its own seed, data.seed_hash(seed, stage, item id), through
  model.generate's per-row seeded sampling: the output does not depend on the batch it
  shares, the number of ranks, or a resume. Within a rank, prompts run longest first,
  so batches pad little and running out of memory shows at the start.
- Ranks coordinate only through files and CPU barriers (gloo, with a long timeout:
  ranks finish their shares at very different times); no GPU collective is needed.
- Temperature and length default per stage (STAGE_DEFAULTS): the judge and the grader
  decode greedily; the policy samples at temperature 1.0, as in the paper.
- Rewrite methods: one or more of the five per direction, a seeded random choice
  unless fixed by flag. The methods the explanation claims are found by keywords
  (CLAIM_PATTERNS): a record for auditing, not a filter.
- Dropped, counted and kept in the stage file: an initial reasoning that is empty or
  cut at max_new_tokens (an unfinished chain would enter the data as "original"); a
  rewrite that does not parse into its two labelled parts, has an empty part, or is
  identical to its source (whitespace aside).
- Bad input stops a stage with one line naming the file, exit status 1, before it writes
  anything: a problem file that gives no problem, an earlier stage's file with no record
  this stage can use (empty, all of other problems, or all dropped: the line says how
  many and why), a file that is not UTF-8 or not JSONL.
- Train/validation split by problem (data.split_by_problem over the problem file's ids):
  a problem lands on the same side in the pair files and the grade files, whatever
  records each holds.
- Each rank holds a whole copy of the model (HF generate, no tensor parallelism): a
  model must fit one GPU with its KV cache (32B in bf16 does on 80 GB with a small
  batch); generation is far slower than a serving engine would be.
"""

import glob
import json
import math
import os
import random
import re
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import timedelta
from typing import Callable

import torch.distributed as dist
from tqdm import tqdm

import plan as planning
import sandbox
from configurator import configure
from data import (BadRecord, LoadError, Pair, load_problems, read_rows, save_pairs, seed_hash,
                  split_by_problem)
from prompts import (DEGRADE_METHODS, OPTIMIZE_METHODS, degrade_prompt, initial_reasoning_prompt,
                     judge_prompt, optimize_prompt, parse_judge, parse_response, parse_rewrite,
                     parse_score, rl_prompt, run_responses, score_prompt)
from model import (apply_chat, barrier, device_gb, exit_on_setup_error, generate, in_turn,
                   init_distributed, load_policy, load_tokenizer)

# ---------------------------------------------------------------- config
model = ""  # generator for reason, rewrite, sample, score: a local HF directory (or hub id online)
judge_model = ""  # judge for `judge`; "" = model
problems = ""  # problem file, any format of data.load_problems
out_dir = "out/synth"
limit = -1  # only the first N problems of the file; -1: all
batch_size = 8  # prompts per generate call on each rank
max_new_tokens = -1  # -1: the stage's default (STAGE_DEFAULTS)
temperature = -1.0  # -1: the stage's default; 0: greedy
top_p = 1.0
seed = 1337
keep_truncated = False  # reason: keep initial reasonings cut at max_new_tokens
optimize_methods = ""  # rewrite: comma-separated names from prompts.OPTIMIZE_METHODS; "": random
degrade_methods = ""  # rewrite: comma-separated names from prompts.DEGRADE_METHODS; "": random
max_methods = 2  # rewrite: a random choice takes 1..max_methods methods
pair_types = "opt_deg,ori_deg,opt_ori"  # pairs: the kinds to write (paper: all three)
val_fraction = 0.1  # pairs, score: share of problems in the validation files (paper 9:1)
n_samples = 50  # sample: K per problem (paper: 50)
sandbox_workers = 0  # sample: sandbox servers per rank; 0: the CPUs shared among local ranks
answer_only = False  # sample, judge: code only from inside <answer> (prompts.parse_response;
# keep it the same in both stages, so the judge reads the code that was run)
skip_one_sided = False  # judge: leave unjudged the problems whose samples all pass or all fail
score_rewrites = False  # score: grade the kept rewrites too, not only the initial reasonings
plan = False  # print the GPU memory plan per rank (plan.py) and exit
gpu_gb = 0.0  # GPU memory per rank for the plan (GiB); 0 = the device's own (none on a CPU)
force_plan = False  # start even when the plan says the stage does not fit

STAGES = ("reason", "rewrite", "pairs", "sample", "judge", "benchmark", "correlate", "score")
STAGE_DEFAULTS = {  # stage: (temperature, max_new_tokens)
    "reason": (0.7, 2048), "rewrite": (0.7, 3072), "sample": (1.0, 4096),
    "judge": (0.0, 512), "score": (0.0, 512)}
PAIR_TYPES = ("opt_deg", "ori_deg", "opt_ori")

# ---------------------------------------------------------------- stage files


@dataclass
class Run:
    """What every stage needs besides its own settings. complete(prompts, seeds) returns
    one model.GenerationOutput per prompt (text, truncated, response_ids)."""
    out_dir: str
    complete: Callable = None
    generator: str = ""  # the model's name, recorded with every output
    batch_size: int = 8
    seed: int = 0
    rank: int = 0
    world_size: int = 1


def read_jsonl(path, torn_end_ok=False):
    """Records of a JSONL file, [] when it does not exist. A malformed line is a LoadError
    naming the file and line, except, with torn_end_ok, a last line cut short by a kill,
    which is left out with a note."""
    if not os.path.exists(path):
        return []
    rows = list(read_rows(path))
    records = []
    for n, (where, _, rec) in enumerate(rows, start=1):
        if isinstance(rec, BadRecord) and rec.key == "malformed JSON":
            if torn_end_ok and n == len(rows):
                print(f"synth: {path}, {where}: left out a partial record (a write cut off "
                      "by a kill); its item will be redone", file=sys.stderr)
                break
            raise LoadError(path, where, None, rec.reason)
        if isinstance(rec, BadRecord) or "id" not in rec:
            raise LoadError(path, where, "id", "not a record with an 'id' field")
        records.append(rec)
    return records


def write_jsonl(path, records):
    """Whole-file write through a temporary name, so a reader never sees half a file."""
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        for rec in records:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")
    os.replace(path + ".tmp", path)


def save_pairs_atomic(pairs, path):
    save_pairs(pairs, path + ".tmp")
    os.replace(path + ".tmp", path)


def _part_files(path):
    return sorted(glob.glob(path[:-len(".jsonl")] + ".part*.jsonl"))


def merge_parts(path, order):
    """Fold every rank's part file into the stage file `path`: one record per id (the
    first seen), ids of `order` in that order, then any others in the order found."""
    parts = _part_files(path)
    if not parts:
        return
    unique, duplicates = {}, 0
    for rec in read_jsonl(path) + [r for p in parts for r in read_jsonl(p, torn_end_ok=True)]:
        duplicates += rec["id"] in unique
        unique.setdefault(rec["id"], rec)
    if duplicates:  # a kill between writing the merged file and removing the parts
        print(f"synth: {path}: {duplicates} records found twice, first copies kept", file=sys.stderr)
    position = {item_id: k for k, item_id in enumerate(order)}
    write_jsonl(path, sorted(unique.values(), key=lambda r: position.get(r["id"], len(order))))
    for p in parts:
        os.remove(p)


def tally_text(counter):
    return ", ".join(f"{k} {n}" for k, n in counter.most_common()) or "nothing"


def run_stage(run, name, items, prompt_of, finish):
    """The resumable loop of every model stage; returns all records of <out_dir>/<name>.jsonl.

    items: (id, payload) in work order. Ids already in the stage file (or in a part file
    left by a killed run) are skipped; the rest are dealt to the ranks in turn. Each batch:
    prompt_of(payload) is the prompt (None: the item needs no generation), run.complete
    generates, finish(payloads, outputs) turns the batch into one record each (output None
    where there was no prompt), each with a `status` ("kept", a verdict, or why it was
    dropped); the records go to the rank's part file at once.
    """
    path = os.path.join(run.out_dir, f"{name}.jsonl")
    order = [item_id for item_id, _ in items]
    if len(set(order)) != len(order):
        raise ValueError(f"{name}: item ids are not unique (duplicate problem ids?)")
    if run.rank == 0:
        os.makedirs(run.out_dir, exist_ok=True)
        merge_parts(path, order)  # what a killed run left behind
    barrier()
    done = {r["id"] for r in read_jsonl(path)}
    todo = [item for item in items if item[0] not in done]
    mine = todo[run.rank::run.world_size]
    prompts = [prompt_of(payload) for _, payload in mine]
    longest_first = sorted(range(len(mine)), key=lambda k: -len(prompts[k] or ""))
    if run.rank == 0:
        print(f"{name}: {len(items)} items, {len(items) - len(todo)} already done, {len(todo)} to do"
              + (f" over {run.world_size} ranks" if run.world_size > 1 else ""), flush=True)
    part = os.path.join(run.out_dir, f"{name}.part{run.rank}.jsonl")
    tally = Counter()
    bar = tqdm(total=len(mine), desc=name, disable=run.rank != 0, dynamic_ncols=True)
    for start in range(0, len(mine), run.batch_size):
        batch = longest_first[start:start + run.batch_size]
        asked = [k for k in batch if prompts[k] is not None]
        seeds = {k: seed_hash(run.seed, name, mine[k][0]) for k in asked}
        outputs = {}
        if asked:
            if run.complete is None:
                raise ValueError(f"{name}: this stage needs a model (--model)")
            outputs = dict(zip(asked, run.complete([prompts[k] for k in asked],
                                                   [seeds[k] for k in asked])))
        records = finish([mine[k][1] for k in batch], [outputs.get(k) for k in batch])
        records = [{"id": mine[k][0], **rec, "seed": seeds.get(k)} for k, rec in zip(batch, records)]
        with open(part, "a", encoding="utf-8") as f:
            f.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        tally.update(r["status"] for r in records)
        bar.update(len(batch))
        bar.set_postfix_str(tally_text(tally), refresh=False)
    bar.close()
    barrier()
    if run.rank == 0:
        merge_parts(path, order)
    barrier()
    records = read_jsonl(path)
    if run.rank == 0:
        print(f"{name}: {path}: {len(records)} records: "
              f"{tally_text(Counter(r['status'] for r in records))}", flush=True)
    return records


def stage_records(out_dir, name, by_id, kept_only=True):
    """Records of an earlier stage for the problems in by_id (kept ones only, unless
    kept_only is False), with a count of what is left out and why; LoadError when
    none is left, since the stage would make nothing from it."""
    path = os.path.join(out_dir, f"{name}.jsonl")
    if not os.path.exists(path) and not _part_files(path):
        raise FileNotFoundError(f"{path} does not exist: run the stage that writes it first")
    if _part_files(path):
        raise LoadError(path, "file", None, "part files of an unfinished run lie beside it; "
                        "rerun the stage that writes it (it resumes) before using it")
    records, left_out = [], Counter()
    for rec in read_jsonl(path):
        if rec.get("problem_id") not in by_id:
            left_out["problem not in --problems/--limit"] += 1
        elif kept_only and rec["status"] != "kept":
            left_out[f"dropped ({rec['status']})"] += 1
        else:
            records.append(rec)
    if not records:
        raise LoadError(path, "file", None, "no record to use: " + (
            f"all {sum(left_out.values())} left out: {tally_text(left_out)}" if left_out
            else "the file holds none"))
    print(f"{path}: using {len(records)} records" +
          (f"; left out: {tally_text(left_out)}" if left_out else ""), flush=True)
    return records



# ---------------------------------------------------------------- reason


def reasoning_status(text, truncated, keep_truncated):
    if not text.strip():
        return "empty"
    return "truncated" if truncated and not keep_truncated else "kept"


def reason(run, problems, keep_truncated=False):
    """The initial chain of thought y of every problem."""
    def finish(payloads, outputs):
        return [{"problem_id": p.id, "status": reasoning_status(o.text, o.truncated, keep_truncated),
                 "reasoning": o.text.strip(), "truncated": o.truncated,
                 "tokens": len(o.response_ids), "generator": run.generator}
                for p, o in zip(payloads, outputs)]
    return run_stage(run, "reasoning", [(p.id, p) for p in problems], initial_reasoning_prompt, finish)

# ---------------------------------------------------------------- rewrite

# What an explanation says when it claims a method (lower case, searched anywhere).
CLAIM_PATTERNS = {
    "factual_error": r"factual|false (claim|statement)|(wrong|incorrect) (constraint|formula|complexity)",
    "irrelevant_path": r"irrelevant|misleading|unhelpful|distract",
    "incomplete": r"incomplete|unfinished|stops? (early|before|short)|cut (off|short)",
    "logical_gap": r"gap|jump|(removed|omitted|skipped|dropped) (a |the )?(key |crucial )?"
                   r"(intermediate )?step",
    "chaotic_order": r"chaotic|disorder|out of order|shuffl|scrambl|acausal|mixed up|reversed",
    "fact_check": r"factual|verif|fact.check|corrected",
    "focus": r"focus|redundan|unnecessary|streamlin",
    "complete": r"comprehensive|complet(e|ed|ing) the|conclusion",
    "bridge_gaps": r"bridg|gap|missing (intermediate )?step|intermediate step",
    "logical_flow": r"logical flow|reorder|\border\b|sequence",
}


def pick_methods(table, fixed, max_methods, rng):
    """Method names for one rewrite: the comma-separated names in `fixed`, or else a
    random 1..max_methods of the table's five (in table order)."""
    names = [name for name, _ in table]
    if fixed:
        chosen = [m.strip() for m in fixed.split(",") if m.strip()]
        unknown = [m for m in chosen if m not in names]
        if unknown or not chosen:
            raise ValueError(f"unknown methods {unknown or fixed!r}; choose from {', '.join(names)}")
        return chosen
    if not 1 <= max_methods <= len(names):
        raise ValueError(f"max_methods must be 1..{len(names)}, got {max_methods}")
    picked = set(rng.sample(names, rng.randint(1, max_methods)))
    return [n for n in names if n in picked]


def claimed_methods(explanation, table):
    """Names of the table's methods that the explanation mentions (CLAIM_PATTERNS)."""
    text = explanation.lower()
    return [name for name, _ in table if re.search(CLAIM_PATTERNS[name], text)]


def normalized(text):
    return " ".join(text.split())


def rewrite_status(parsed, source):
    """'kept', or why a parsed rewrite (prompts.ParsedRewrite) is dropped."""
    if not parsed.ok:
        return parsed.error
    if normalized(parsed.reasoning) == normalized(source):
        return "identical to the original"
    return "kept"


def rewrite(run, problems, optimize_methods="", degrade_methods="", max_methods=2):
    """One optimized and one degraded rewrite of every kept initial reasoning."""
    by_id = {p.id: p for p in problems}
    directions = (("optimize", OPTIMIZE_METHODS, optimize_methods, optimize_prompt),
                  ("degrade", DEGRADE_METHODS, degrade_methods, degrade_prompt))
    items = []
    for source in stage_records(run.out_dir, "reasoning", by_id):
        for direction, table, fixed, _ in directions:
            item_id = f"{source['problem_id']}/{direction}"
            rng = random.Random(seed_hash(run.seed, "methods", item_id))
            items.append((item_id, {"problem": by_id[source["problem_id"]], "source": source,
                                    "direction": direction,
                                    "methods": pick_methods(table, fixed, max_methods, rng)}))
    tables = {d: (table, make) for d, table, _, make in directions}

    def prompt_of(item):
        make = tables[item["direction"]][1]
        return make(item["problem"], item["source"]["reasoning"], item["methods"])

    def finish(payloads, outputs):
        records = []
        for item, out in zip(payloads, outputs):
            parsed = parse_rewrite(out.text)
            records.append({
                "problem_id": item["problem"].id, "direction": item["direction"],
                "source_id": item["source"]["id"],
                "status": rewrite_status(parsed, item["source"]["reasoning"]),
                "reasoning": parsed.reasoning, "explanation": parsed.explanation,
                "methods_asked": item["methods"],
                "methods_claimed": claimed_methods(parsed.explanation, tables[item["direction"]][0]),
                "raw": out.text, "truncated": out.truncated, "tokens": len(out.response_ids),
                "generator": run.generator})
        return records
    return run_stage(run, "rewrites", items, prompt_of, finish)

# ---------------------------------------------------------------- pairs


def _side(rec):
    """What a pair's meta says about one of its texts."""
    if rec.get("direction") is None:
        return {"kind": "original", "id": rec["id"]}
    return {"kind": {"optimize": "optimized", "degrade": "degraded"}[rec["direction"]],
            "id": rec["id"], "methods_asked": rec["methods_asked"],
            "methods_claimed": rec["methods_claimed"], "explanation": rec["explanation"]}


def build_pairs(problems, reasonings, rewrites, types=PAIR_TYPES):
    """Preference pairs of the OD method from kept reasoning and rewrite records:
    opt_deg (y+ > y-), ori_deg (y > y-), opt_ori (y+ > y). Returns (pairs, counts);
    counts say how many of each type were made and why others could not be."""
    unknown = [t for t in types if t not in PAIR_TYPES]
    if unknown or not types:
        raise ValueError(f"unknown pair types {unknown or types!r}; choose from {', '.join(PAIR_TYPES)}")
    original = {r["problem_id"]: r for r in reasonings}
    rewritten = {(r["problem_id"], r["direction"]): r for r in rewrites}
    roles = {"opt_deg": ("optimize", "degrade"), "ori_deg": (None, "degrade"),
             "opt_ori": ("optimize", None)}
    pairs, counts = [], Counter()
    for problem in problems:
        if problem.id not in original:
            counts["problems without a kept initial reasoning"] += 1
            continue
        texts = {None: original[problem.id],
                 "optimize": rewritten.get((problem.id, "optimize")),
                 "degrade": rewritten.get((problem.id, "degrade"))}
        for pair_type in types:
            chosen, rejected = (texts[role] for role in roles[pair_type])
            if chosen is None or rejected is None:
                missing = "optimized" if chosen is None else "degraded"
                counts[f"{pair_type} not made: no kept {missing} rewrite"] += 1
                continue
            counts[f"{pair_type} pairs"] += 1
            pairs.append(Pair(prompt=problem.statement, chosen=chosen["reasoning"],
                              rejected=rejected["reasoning"], pair_type=pair_type, source="synth",
                              problem_id=problem.id,
                              meta={"generator": original[problem.id]["generator"],
                                    "chosen": _side(chosen), "rejected": _side(rejected)}))
    return pairs, counts


def make_pairs(run, problems, types=PAIR_TYPES, val_fraction=0.1):
    """pairs_train.jsonl and pairs_val.jsonl (split by problem) from the earlier stages."""
    if run.rank != 0:
        return None
    by_id = {p.id: p for p in problems}
    pairs, counts = build_pairs(problems, stage_records(run.out_dir, "reasoning", by_id),
                                stage_records(run.out_dir, "rewrites", by_id), types)
    train, val = split_by_problem(pairs, val_fraction, run.seed,
                                  problems=[p.id for p in problems])
    for name, part in (("pairs_train", train), ("pairs_val", val)):
        save_pairs_atomic(part, os.path.join(run.out_dir, f"{name}.jsonl"))
    print(f"pairs: {tally_text(counts)}\npairs: {len(train)} in pairs_train.jsonl, {len(val)} in "
          f"pairs_val.jsonl ({len({p.problem_id for p in val})} validation problems)", flush=True)
    return pairs

# ---------------------------------------------------------------- sample


def sample(run, problems, n_samples=50, sandbox_workers=None, answer_only=False):
    """n_samples responses per problem to the RL prompt, each run on all of its tests."""
    def finish(payloads, outputs):
        parsed, results = run_responses([problem for problem, _ in payloads],
                                        [o.text for o in outputs], workers=sandbox_workers,
                                        answer_only=answer_only)
        return [{"problem_id": problem.id, "index": index,
                 "status": ("no code" if not has_answer(problem, pr) else
                            "passed" if result.all_passed else "failed"),
                 "passed": result.all_passed, "format_ok": pr.format_ok, "format_error": pr.error,
                 "statuses": result.statuses if has_answer(problem, pr) else [],
                 "first_error": result.first_error, "response": out.text,
                 "truncated": out.truncated, "tokens": len(out.response_ids),
                 "generator": run.generator}
                for (problem, index), out, pr, result in zip(payloads, outputs, parsed, results)]
    items = [(f"{p.id}/{k}", (p, k)) for p in problems for k in range(n_samples)]
    return run_stage(run, "samples", items, lambda payload: rl_prompt(payload[0]), finish)

# ---------------------------------------------------------------- judge


def one_sided_problems(samples):
    """Ids of problems whose samples all passed or all failed: they can make no pair."""
    outcomes = {}
    for s in samples:
        outcomes.setdefault(s["problem_id"], set()).add(s["passed"])
    return {pid for pid, seen in outcomes.items() if len(seen) == 1}


def answered(problem, parsed):
    """What the judge checks against the reasoning: the code, or a math problem's final
    answer (None or "" when the response has none)."""
    return parsed.final if problem.answer else parsed.code


def has_answer(problem, parsed):
    """Whether there was something to run or compare: code (an empty block counts, it ran),
    or a non-empty final answer (run_responses judges nothing else)."""
    return bool(parsed.final) if problem.answer else parsed.code is not None


def unjudged_reason(sample_record, problem, one_sided, answer_only=False):
    """Why a sample is not shown to the judge ("" when it is)."""
    parsed = parse_response(sample_record["response"], answer_only=answer_only,
                            math=bool(problem.answer))
    if not parsed.think:
        return "no reasoning"
    if not has_answer(problem, parsed):
        return "no final answer" if problem.answer else "no code"
    if sample_record["problem_id"] in one_sided:
        return "one-sided problem"
    return ""


def judge(run, problems, skip_one_sided=False, answer_only=False):
    """The judge's Yes / No / None verdict and justification for every sample."""
    by_id = {p.id: p for p in problems}
    samples = stage_records(run.out_dir, "samples", by_id, kept_only=False)
    one_sided = one_sided_problems(samples) if skip_one_sided else set()

    def prompt_of(s):
        problem = by_id[s["problem_id"]]
        if unjudged_reason(s, problem, one_sided, answer_only):
            return None
        parsed = parse_response(s["response"], answer_only=answer_only, math=bool(problem.answer))
        return judge_prompt(problem, parsed.think, answered(problem, parsed))

    def finish(payloads, outputs):
        records = []
        for s, out in zip(payloads, outputs):
            if out is None:
                why = unjudged_reason(s, by_id[s["problem_id"]], one_sided, answer_only)
                verdict, justification, status = "unjudged", why, f"unjudged ({why})"
            else:
                verdict, justification = parse_judge(out.text)
                status = verdict
            records.append({"problem_id": s["problem_id"], "status": status,
                            "verdict": verdict, "justification": justification,
                            "raw": out.text if out else "", "judge": run.generator})
        return records
    return run_stage(run, "judgments", [(s["id"], s) for s in samples], prompt_of, finish)

# ---------------------------------------------------------------- benchmark


def benchmark_pairs(samples, judgments, statements, seed, source="synth"):
    """LCB-RB pairs by the paper's rule (toy.py builds its toy LCB-RB with it too). chosen: a
    sample that passed every test and was judged sound ("No"); rejected: one that failed and
    was judged flawed ("Yes"); every other sample is left out, by reason. Each rejected sample
    of a problem is paired with one chosen sample of the same problem drawn at random (a
    generator seeded by seed and the problem id; the same chosen may serve several rejected
    ones); problems with only one kind are dropped. Pair texts are the samples' <think>
    reasoning. samples: sample records; judgments: {sample id: judgment record}; statements:
    {problem id: statement}; source: the pairs' source field. Returns (pairs, counts)."""
    counts, sides = Counter(), {}
    for s in samples:
        verdict = judgments[s["id"]]["verdict"] if s["id"] in judgments else "not judged yet"
        counts["samples"] += 1
        counts["passed" if s["passed"] else "failed"] += 1
        side = ("chosen" if s["passed"] and verdict == "No" else
                "rejected" if not s["passed"] and verdict == "Yes" else None)
        if side is None:
            counts[f"left out: {'passed' if s['passed'] else 'failed'}, judged {verdict}"] += 1
            continue
        counts[side] += 1
        sides.setdefault(s["problem_id"], {"chosen": [], "rejected": []})[side].append(s)
    pairs = []
    for problem_id, group in sides.items():
        if not group["chosen"] or not group["rejected"]:
            only = "chosen" if group["chosen"] else "rejected"
            counts[f"problems dropped: only {only} samples"] += 1
            continue
        counts["problems paired"] += 1
        rng = random.Random(seed_hash(seed, "benchmark", problem_id))
        for bad in group["rejected"]:
            good = rng.choice(group["chosen"])
            pairs.append(Pair(
                prompt=statements[problem_id], chosen=parse_response(good["response"]).think,
                rejected=parse_response(bad["response"]).think, pair_type="lcbrb", source=source,
                problem_id=problem_id,
                meta={"chosen_id": good["id"], "rejected_id": bad["id"],
                      "generator": good["generator"], "judge": judgments[good["id"]]["judge"],
                      "chosen_justification": judgments[good["id"]]["justification"],
                      "rejected_justification": judgments[bad["id"]]["justification"]}))
    counts["pairs"] = len(pairs)
    return pairs, counts


def make_benchmark(run, problems):
    """lcbrb.jsonl from the sample and judge stages."""
    if run.rank != 0:
        return None
    by_id = {p.id: p for p in problems}
    samples = stage_records(run.out_dir, "samples", by_id, kept_only=False)
    judgments = {j["id"]: j for j in
                 stage_records(run.out_dir, "judgments", by_id, kept_only=False)}
    pairs, counts = benchmark_pairs(samples, judgments, {p.id: p.statement for p in problems},
                                    run.seed)
    save_pairs_atomic(pairs, os.path.join(run.out_dir, "lcbrb.jsonl"))
    for key, n in counts.items():
        print(f"benchmark: {key}: {n}")
    print(f"benchmark: {len(pairs)} pairs -> {os.path.join(run.out_dir, 'lcbrb.jsonl')}", flush=True)
    return pairs

# ---------------------------------------------------------------- correlate (Appendix A.4)


def pearson_chi2_2x2(table):
    """Pearson's chi-square test of independence on a 2x2 table [[a, b], [c, d]], 1 degree
    of freedom, without a continuity correction:

        chi2 = sum over cells (O - E)^2 / E,  E = row total * column total / N
             = N (ad - bc)^2 / ((a+b)(c+d)(a+c)(b+d))
        p    = P(X > chi2) for X ~ chi-square(1) = erfc(sqrt(chi2 / 2))

    Returns (chi2, p); (nan, nan) when a row or column is empty (no test is possible).
    scipy.stats.chi2_contingency applies Yates' correction to 2x2 tables unless
    correction=False; the paper says "Pearson's chi-square", so this does not."""
    (a, b), (c, d) = table
    n, margins = a + b + c + d, (a + b) * (c + d) * (a + c) * (b + d)
    if margins == 0:
        return float("nan"), float("nan")
    chi2 = n * (a * d - b * c) ** 2 / margins
    return chi2, math.erfc(math.sqrt(chi2 / 2))


def correlation_table(samples, judgments):
    """The A.4 table from sample and judgment records: rows passed / failed (all tests),
    columns flawless ("No": sound reasoning the code follows) / flawed ("Yes"); samples
    judged None (code that does not follow its reasoning) or not judged are left out,
    counted by reason. Returns (table, left_out)."""
    table, left_out = [[0, 0], [0, 0]], Counter()
    for s in samples:
        verdict = judgments[s["id"]]["verdict"] if s["id"] in judgments else "not judged"
        if verdict not in ("No", "Yes"):
            left_out[f"judged {verdict}"] += 1
            continue
        table[0 if s["passed"] else 1][0 if verdict == "No" else 1] += 1
    return table, left_out


def correlate(run, problems):
    """correlation.json: the table, chi-square, p-value and the share of flawed reasoning
    among passed and failed samples (the paper: flawed reasoning goes with wrong code)."""
    if run.rank != 0:
        return None
    by_id = {p.id: p for p in problems}
    samples = stage_records(run.out_dir, "samples", by_id, kept_only=False)
    judgments = {j["id"]: j for j in stage_records(run.out_dir, "judgments", by_id, kept_only=False)}
    table, left_out = correlation_table(samples, judgments)
    chi2, p = pearson_chi2_2x2(table)
    share = lambda row: row[1] / sum(row) if sum(row) else float("nan")   # noqa: E731
    out = {"table": {"passed": {"flawless": table[0][0], "flawed": table[0][1]},
                     "failed": {"flawless": table[1][0], "flawed": table[1][1]}},
           "left_out": dict(left_out), "chi2": chi2, "p_value": p, "dof": 1,
           "flawed_share_passed": share(table[0]), "flawed_share_failed": share(table[1])}
    path = os.path.join(run.out_dir, "correlation.json")
    with open(path + ".tmp", "w") as f:
        json.dump(out, f, indent=1)
    os.replace(path + ".tmp", path)
    print(f"correlate: {'':8} flawless flawed\ncorrelate: {'passed':8} {table[0][0]:8} {table[0][1]:6}\n"
          f"correlate: {'failed':8} {table[1][0]:8} {table[1][1]:6}\ncorrelate: chi2 {chi2:.3f}, "
          f"p {p:.3g} (1 dof); left out: {tally_text(left_out) or 'none'} -> {path}", flush=True)
    return out

# ---------------------------------------------------------------- score


def score(run, problems, score_rewrites=False, val_fraction=0.1):
    """The score-based baseline's data: a 0..1 grade for every kept initial reasoning (and
    every kept rewrite with score_rewrites). Writes grades_train.jsonl / grades_val.jsonl,
    one JSON object a line: {"prompt": statement, "reasoning": text, "grade": float in
    [0, 1], "problem_id": str, "meta": {...}}, the input of train_rm.py --objective=score."""
    by_id = {p.id: p for p in problems}
    sources = stage_records(run.out_dir, "reasoning", by_id)
    if score_rewrites:
        sources += stage_records(run.out_dir, "rewrites", by_id)
    items = [(r["id"], r) for r in sources]

    def finish(payloads, outputs):
        records = []
        for source, out in zip(payloads, outputs):
            grade = parse_score(out.text)
            records.append({"problem_id": source["problem_id"],
                            "kind": source.get("direction", "original"),
                            "status": "kept" if grade is not None else "no grade on the first line",
                            "grade": grade, "prompt": by_id[source["problem_id"]].statement,
                            "reasoning": source["reasoning"], "raw": out.text,
                            "grader": run.generator})
        return records

    records = run_stage(run, "scores", items,
                        lambda r: score_prompt(by_id[r["problem_id"]], r["reasoning"]), finish)
    if run.rank != 0:
        return records
    graded = [{"prompt": r["prompt"], "reasoning": r["reasoning"], "grade": r["grade"],
               "problem_id": r["problem_id"],
               "meta": {"id": r["id"], "kind": r["kind"], "grader": r["grader"]}}
              for r in records if r["status"] == "kept" and r["problem_id"] in by_id]
    train, val = split_by_problem(graded, val_fraction, run.seed, lambda g: g["problem_id"],
                                  problems=list(by_id))
    for name, part in (("grades_train", train), ("grades_val", val)):
        with open(os.path.join(run.out_dir, f"{name}.jsonl.tmp"), "w", encoding="utf-8") as f:
            f.write("".join(json.dumps(g, ensure_ascii=False) + "\n" for g in part))
        os.replace(os.path.join(run.out_dir, f"{name}.jsonl.tmp"),
                   os.path.join(run.out_dir, f"{name}.jsonl"))
    print(f"score: {len(train)} grades in grades_train.jsonl, {len(val)} in grades_val.jsonl", flush=True)
    return records

# ---------------------------------------------------------------- generation


def hf_completer(path, device, temperature, top_p, max_new_tokens):
    """complete(prompts, seeds) for Run: the model at `path`, each prompt as one user turn
    of its chat template (raw text when it has none); temperature 0 decodes greedily."""
    tokenizer = load_tokenizer(path)
    net = in_turn(lambda: load_policy(path, device)).eval()   # host RAM: one copy at a time

    def complete(prompts, seeds):
        return generate(net, tokenizer, [apply_chat(tokenizer, p) for p in prompts], max_new_tokens,
                        temperature=temperature if temperature > 0 else 1.0, top_p=top_p,
                        do_sample=temperature > 0, device=device, seeds=seeds)
    return complete


def init_ranks():
    """(rank, world_size, device). Under torchrun the ranks meet only at CPU barriers, on
    gloo with a long timeout: one rank may finish its share hours before another."""
    if "RANK" in os.environ and not dist.is_initialized():
        dist.init_process_group("gloo", timeout=timedelta(days=7))
    rank, _, world_size, device = init_distributed()
    return rank, world_size, device

# ---------------------------------------------------------------- main
if __name__ == "__main__":
    exit_on_setup_error()  # bad paths (a model dir, a data file): one line naming them, exit 1
    if len(sys.argv) < 2 or sys.argv[1] not in STAGES:
        sys.exit(f"usage: python synth.py {{{','.join(STAGES)}}} [config.py] [--key=value ...]\n"
                 "see the docstring at the top of synth.py")
    stage = sys.argv[1]
    config = configure(globals(), sys.argv[2:])
    if not problems:
        sys.exit("synth.py: --problems=FILE is required")
    rank, world_size, device = init_ranks()
    try:
        problem_list = load_problems(problems, limit=limit if limit >= 0 else None,
                                     allow_empty=False)
    except (LoadError, OSError) as e:
        sys.exit(f"synth.py {stage}: error: {e}")
    run = Run(out_dir=out_dir, batch_size=batch_size, seed=seed, rank=rank, world_size=world_size,
              generator=(judge_model or model) if stage == "judge" else model)
    if stage in STAGE_DEFAULTS:
        if not run.generator:
            sys.exit(f"synth.py {stage}: --model=DIR is required")
        default_temperature, default_tokens = STAGE_DEFAULTS[stage]
        # the memory plan (the whole generator on each rank), before any weight is read
        memory = planning.synth_plan({**config, "max_new_tokens": default_tokens if max_new_tokens < 0
                                      else max_new_tokens}, planning.model_shape(run.generator),
                                     world_size, stage)
        planning.enforce(memory, gpu_gb or device_gb(device), plan, force_plan)
        run.complete = hf_completer(run.generator, device,
                                    default_temperature if temperature < 0 else temperature, top_p,
                                    default_tokens if max_new_tokens < 0 else max_new_tokens)
    try:  # the stages read their input files before they write
        if stage == "reason":
            reason(run, problem_list, keep_truncated)
        elif stage == "rewrite":
            rewrite(run, problem_list, optimize_methods, degrade_methods, max_methods)
        elif stage == "pairs":
            make_pairs(run, problem_list,
                       tuple(t.strip() for t in pair_types.split(",") if t.strip()), val_fraction)
        elif stage == "sample":
            sample(run, problem_list, n_samples, sandbox_workers or sandbox.default_workers(),
                   answer_only)
        elif stage == "judge":
            judge(run, problem_list, skip_one_sided, answer_only)
        elif stage == "benchmark":
            make_benchmark(run, problem_list)
        elif stage == "correlate":
            correlate(run, problem_list)
        else:
            score(run, problem_list, score_rewrites, val_fraction)
    except (LoadError, FileNotFoundError) as e:
        sys.exit(f"synth.py {stage}: error: {e}")
    if dist.is_initialized():
        dist.destroy_process_group()
