"""
Trains a Bradley-Terry reward model on reasoning preference pairs, and evaluates reward
models on pair files (pair accuracy overall and per pair type).

One CPU, the toy world: toy.py prepares data/toy/ (nanoGPT's prepare, then train) and
the defaults train its reward model into out/toy_rm/best, which train_grpo.py reads:
    python toy.py && python train_rm.py
A tiny random model (built by the run at init_from) on the toy pairs in tests/fixtures,
well under a minute:
    python train_rm.py config/rm_cpu.py
8 GPUs (the paper's setting, Qwen2.5-Coder-7B base):
    torchrun --standalone --nproc_per_node=8 train_rm.py config/rm_qwen7b.py
Continue an interrupted run: the same command (same number of ranks: the optimizer
state is saved per rank) plus
    --init_from=resume
(a kill at any point, inside a checkpoint save too, leaves a complete checkpoint to resume
from; a missing model directory or an empty pairs file stops the run with one line naming
it, and the command that makes it when it is a default input, before anything in out_dir
is touched)
Evaluate any sequence-classification reward model (ours or another) on pair files; under
torchrun each rank holds the whole model and scores a share of the pairs:
    python train_rm.py --eval_only=True --init_from=out/rm/best --eval_files=a.jsonl,b.json

Choices and why:
- Loss: Bradley-Terry, -log sigmoid(r(x, chosen) - r(x, rejected)), as in the paper, with
  an optional margin and an optional reward-centering term (both off by default).
- The chosen and the rejected texts of a micro-batch go through ONE forward as 2B
  sequences; the scores are split back. One pass is cheaper than two, and under FSDP it
  halves the weight all-gathers.
- The 9:1 train/validation split is by problem (data.split_by_problem): pairs of one
  problem share the statement and much of the reasoning, so splitting by pair would leak
  near-copies into validation. synth.py writes its pairs already split
  (pairs_train/pairs_val.jsonl): pass both, with --val_file, so that the data is split
  once, as in the paper; with pairs_file alone, val_fraction of its problems are held out
  here.
- Effective batch (paper: 128 pairs) = micro_batch_size * accumulation steps * world size.
  Each rank takes a contiguous share of every global batch, whose order comes from the
  seed alone, so the run is the same for any number of ranks. The loss is scaled so the
  gradient is the mean over the global batch; only the last incomplete batch of an epoch
  is dropped (logged), which keeps every rank's share equal.
- AdamW, constant lr (paper: 1e-6) after an optional linear warmup, gradient clipping.
  Weights are kept in fp32: at lr 1e-6 an update is far below bf16's resolution, so
  bf16 is only the compute dtype (FSDP mixed precision, or autocast on one device).
- Validation every eval_interval steps (and at step 0, as the baseline): accuracy (ties
  count as wrong) and mean margin. The best checkpoint (higher accuracy, ties broken by
  lower loss) goes to out_dir/best; training stops early after `patience` evaluations
  without improvement (paper: early stopping on the validation set). out_dir/last holds
  the latest weights plus optimizer, RNG and counters, written at every evaluation (a
  killed run loses at most eval_interval steps), and --init_from=resume continues from
  it exactly: same batches, same metrics, the steps logged after it are dropped.
- objective="score" trains the same scalar head on graded reasonings instead of pairs
  (the paper's score-based baseline; grade files come from `synth.py score`, format in
  load_grades): regression of sigmoid(r) onto the 0..1 grade (grade_loss), so the score
  lives on the scale P-GRPO's thinking reward Rt = sigmoid(r) reads it on. Validation
  accuracy is then the share of validation item pairs with different grades that the
  model orders like the grades. The two objectives differ only in their entries of
  OBJECTIVES; the rest (split, batches, checkpoints, early stopping, resume, --eval_only
  on pair files) is shared:
      python train_rm.py --objective=score --grades_file=out/od/grades_train.jsonl \
          --val_file=out/od/grades_val.jsonl
"""

import json
import math
import os
import random
import time
from dataclasses import dataclass, field
from typing import Callable, NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from tqdm import tqdm
from transformers.utils import logging as hf_logging

import plan as planning
from configurator import configure
from data import BadRecord, LoadError, load_pairs, problem_of, read_rows, split_by_problem
from prompts import reward_model_text
from model import (SetupError, all_sum, append_metrics, barrier, check_data_file, check_model_dir,
                   default_dtype, device_gb, exit_on_setup_error, in_turn, init_distributed, is_main,
                   load_reward_model, load_sharded, load_tokenizer, load_training_state,
                   make_tiny_checkpoint, print0, recover_checkpoint, reward_scores,
                   save_checkpoint, trim_metrics, warmup_lr)

# ---------------------------------------------------------------- config
# The defaults train the toy world's reward model on a CPU, from what `python toy.py`
# prepared in data/toy/; config/rm_qwen7b.py holds the paper's settings.
init_from = "data/toy/policy"  # base model (dir or hub id); "resume": out_dir/last
tiny_init = False  # build a tiny random model at init_from first if it does not exist
objective = "bt"  # OBJECTIVES: "bt" Bradley-Terry on pairs_file, "score" grades on grades_file
pairs_file = "data/toy/pairs.jsonl"  # comma-separated pair files (see data.load_pairs)
grades_file = ""  # comma-separated grade files for objective="score" (see load_grades)
out_dir = "out/toy_rm"
batch_size = 32  # pairs per optimizer step, over all ranks (paper: 128)
micro_batch_size = 8  # pairs per forward per rank (the forward holds twice as many texts)
learning_rate = 1e-4  # paper: 1e-6 for a 7B model; a tiny model needs larger steps
warmup_steps = 0
weight_decay = 0.0
grad_clip = 1.0  # max global grad norm; 0 disables clipping (the norm is still logged)
epochs = 2
max_steps = -1  # stop after this many optimizer steps; -1: run all epochs
max_length = 512  # tokens per text (problem + reasoning); longer ones are truncated
margin = 0.0  # BT margin m: -log sigmoid(r_c - r_r - m)
center_coef = 0.0  # weight of the reward-centering term mean((r_c + r_r)^2)
val_fraction = 0.1  # share of the problems held out for validation (when val_file is empty)
val_file = ""  # validation pairs (or grades) of their own, e.g. synth.py's pairs_val.jsonl
seed = 1337
eval_interval = 20  # optimizer steps between validations (and checkpoints)
patience = 3  # validations without improvement before stopping; 0: never stop early
eval_only = False
eval_files = ""  # comma-separated pair files for --eval_only
dtype = "auto"  # compute dtype: auto (bf16 on GPU, fp32 on CPU), float32 or bfloat16
activation_checkpointing = False  # recompute activations in backward to fit long texts
compile = False
log_file = "metrics.jsonl"  # one JSON line per step and per validation, in out_dir
grad_sync_every_micro_batch = False  # FSDP: reduce-scatter each micro-batch; False holds the
# whole model's unsharded fp32 gradient between them (4 bytes x N on every rank: 26 GiB at 7B)
plan = False  # print the GPU memory plan per rank (plan.py) and exit
gpu_gb = 0.0  # GPU memory per rank for the plan (GiB); 0 = the device's own (none on a CPU)
force_plan = False  # start even when the plan says the run does not fit

FINISHED = "FINISHED"  # written into out_dir when training ends (best/ is then final)

# ---------------------------------------------------------------- loss and metrics


def bradley_terry_loss(chosen, rejected, margin=0.0, center_coef=0.0):
    """
    Bradley-Terry loss over N pairs of scalar rewards r_c (chosen) and r_r (rejected):

        L = 1/N sum_i -log sigmoid(r_c,i - r_r,i - m)  +  c * 1/N sum_i (r_c,i + r_r,i)^2

    m (margin) asks the chosen score to win by at least m; c (center_coef) pulls the
    pair's mean reward towards 0 so scores stay on a fixed scale (the BT term only sees
    differences). logsigmoid keeps large differences finite.
    """
    diff = chosen - rejected - margin
    return -F.logsigmoid(diff).mean() + center_coef * (chosen + rejected).pow(2).mean()


def pair_metrics(chosen, rejected):
    """accuracy: share of pairs with r_c > r_r (a tie counts as wrong, since the model
    did not prefer the chosen text); mean_margin: mean of r_c - r_r."""
    return {"accuracy": (chosen > rejected).float().mean().item(),
            "mean_margin": (chosen - rejected).float().mean().item()}


def grade_loss(scores, grades):
    """
    Regression of the scalar score r_i onto the grade g_i in [0, 1] (score baseline):

        L = 1/N sum_i (sigmoid(r_i) - g_i)^2

    sigmoid(r) is the thinking reward P-GRPO derives from any reward model's score, so
    the grades are fitted on the scale they will be used on.
    """
    return (torch.sigmoid(scores.float()) - grades).pow(2).mean()


def grade_metrics(scores, grades):
    """accuracy: share of item pairs with different grades that the scores order the same
    way (a tie in score counts as wrong; 0 when all grades are equal); mae: mean
    |sigmoid(r) - g|."""
    higher = grades[:, None] > grades[None, :]
    agree = (scores[:, None] > scores[None, :]) & higher
    return {"accuracy": (agree.sum() / higher.sum()).item() if higher.any() else 0.0,
            "mae": (torch.sigmoid(scores.float()) - grades).abs().mean().item()}


def improves(val, best):
    """Whether validation result `val` beats `best` (None before the first evaluation):
    higher accuracy, or equal accuracy and lower loss (on a small validation set
    accuracy saturates while the margins still improve)."""
    return best is None or (val["accuracy"], -val["loss"]) > (best["accuracy"], -best["loss"])


# ---------------------------------------------------------------- data


@dataclass
class Graded:
    prompt: str  # the problem statement
    reasoning: str
    grade: float  # in [0, 1]
    problem_id: str = ""
    meta: dict = field(default_factory=dict)


def load_files(paths, load, flag):
    """All records of the comma-separated files in `paths`, in order; load(path) reads one
    file. A missing file is a SetupError naming it and `flag`, one that gives no record a
    LoadError naming it: an empty file means a wrong path or a failed step before."""
    items = []
    for path in [p.strip() for p in paths.split(",") if p.strip()]:
        check_data_file(path, flag)
        items += load(path)                 # a LoadError when it gives no record
    return items


def load_pair_files(paths, flag="--pairs_file", allow_empty=False):
    """All pairs of the comma-separated files in `paths`, in order."""
    return load_files(paths, lambda path: load_pairs(path, allow_empty=allow_empty), flag)


def load_grades(path):
    """Graded reasonings from a JSONL file, one object a line (written by `synth.py score`):
    {"prompt": str, "reasoning": str, "grade": number in [0, 1], "problem_id": str
    (optional, the split key), "meta": object (optional)}. Any bad line is an error naming
    the file, line and field: a grade file has no records to skip."""
    records = []
    for where, _, rec in read_rows(path):
        if isinstance(rec, BadRecord):
            raise LoadError(path, where, None, rec.reason)
        for key in ("prompt", "reasoning"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise LoadError(path, where, key, "expected non-empty text")
        grade = rec.get("grade")
        if isinstance(grade, bool) or not isinstance(grade, (int, float)) or not 0 <= grade <= 1:
            raise LoadError(path, where, "grade", f"expected a number in [0, 1], got {grade!r}")
        records.append(Graded(rec["prompt"], rec["reasoning"], float(grade),
                              str(rec.get("problem_id") or ""), rec.get("meta") or {}))
    if not records:
        raise LoadError(path, "file", None, "the file holds no records")
    return records


def load_grade_files(paths, flag="--grades_file"):
    return load_files(paths, load_grades, flag)


def training_split(items, val_items, val_fraction, seed):
    """(train, validation). With a validation set of its own (val_items: synth.py already
    split its data 9:1 by problem into *_train and *_val files), all of items trains, and no
    problem may be on both sides; without one (None), split_by_problem(items)."""
    if val_items is None:
        return split_by_problem(items, val_fraction, seed)
    shared = set(map(problem_of, items)) & set(map(problem_of, val_items))
    if shared:
        raise ValueError(f"the validation file shares {len(shared)} problems with the training "
                         f"data (e.g. {sorted(shared)[0]!r}): validation would not be held out")
    return items, val_items


def epoch_batches(n, batch_size, seed, epoch):
    """Global batches (lists of indices) of one epoch: a shuffle seeded by (seed, epoch),
    identical on every rank, cut into full batches."""
    order = list(range(n))
    random.Random(f"{seed}:{epoch}").shuffle(order)
    return [order[i:i + batch_size] for i in range(0, n - batch_size + 1, batch_size)]


def pair_texts(pairs):
    """The texts the reward model scores: all chosen first, then all rejected."""
    return ([reward_model_text(p.prompt, p.chosen) for p in pairs]
            + [reward_model_text(p.prompt, p.rejected) for p in pairs])


def item_texts(items):
    """The texts of pairs (pair_texts) or of graded reasonings (one each)."""
    if items and isinstance(items[0], Graded):
        return [reward_model_text(g.prompt, g.reasoning) for g in items]
    return pair_texts(items)


def token_counts(tokenizer, texts, max_length):
    """(tokens the model sees, number of texts cut at max_length)."""
    lengths = [len(ids) for ids in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    return sum(min(n, max_length) for n in lengths), sum(n > max_length for n in lengths)


# ---------------------------------------------------------------- scoring and evaluation


def score_items(model, tokenizer, items, device, max_length=None):
    """Scores [rows, len(items)] from one forward: for pairs row 0 is chosen and row 1
    rejected (2B texts), for graded reasonings one row."""
    scores = reward_scores(model, tokenizer, item_texts(items), device, max_length=max_length)
    return scores.view(-1, len(items))


@torch.no_grad()
def sharded_scores(model, tokenizer, items, device, micro_batch_size, max_length, rank,
                   world_size):
    """score_items of all items [rows, N], each rank scoring a contiguous share; every
    rank returns the whole result."""
    if not items:
        return torch.zeros(2, 0, device=device)
    was_training = model.training
    model.eval()
    share = math.ceil(len(items) / world_size)
    mine = list(range(rank * share, min(len(items), (rank + 1) * share)))
    scores = torch.zeros(1 if isinstance(items[0], Graded) else 2, len(items), device=device)
    # Under FSDP every forward gathers weights collectively, so all ranks run the same
    # number of forwards: a rank whose shard has run out scores item 0 and drops it.
    for start in range(0, share, micro_batch_size):
        idx = mine[start:start + micro_batch_size]
        micro = score_items(model, tokenizer, [items[i] for i in idx or [0]], device, max_length)
        scores[:, idx] = micro[:, :len(idx)].float()
    all_sum(scores)
    model.train(was_training)
    return scores


def evaluate_pairs(model, tokenizer, pairs, device, micro_batch_size=8, max_length=None,
                   rank=0, world_size=1, margin=0.0, center_coef=0.0):
    """Pair accuracy, mean margin and BT loss of a reward model on `pairs`, overall and
    per pair_type: {"n", "accuracy", "mean_margin", "loss", "per_type": {type: {...}}}.
    The pairs are sharded across ranks; every rank returns the same result."""
    scores = sharded_scores(model, tokenizer, pairs, device, micro_batch_size, max_length,
                            rank, world_size)

    def summary(mask):
        c, r = scores[0][mask], scores[1][mask]
        loss = bradley_terry_loss(c, r, margin, center_coef).item()
        return {"n": int(mask.sum()), **pair_metrics(c, r), "loss": loss}

    types = [p.pair_type for p in pairs]
    result = summary(torch.ones(len(pairs), dtype=torch.bool, device=device))
    result["per_type"] = {t: summary(torch.tensor([x == t for x in types], device=device))
                          for t in sorted(set(types))}
    return result


def evaluate_grades(model, tokenizer, items, device, micro_batch_size=8, max_length=None,
                    rank=0, world_size=1):
    """Grade loss, ordering accuracy and mae (grade_metrics) of a reward model on graded
    reasonings: {"n", "accuracy", "mae", "loss"}; sharded like evaluate_pairs."""
    scores = sharded_scores(model, tokenizer, items, device, micro_batch_size, max_length,
                            rank, world_size)[0]
    grades = torch.tensor([g.grade for g in items], device=device)
    return {"n": len(items), **grade_metrics(scores, grades), "loss": grade_loss(scores, grades).item()}


# RewardBench's example counts for the subsets the paper reports (rewardbench/constants.py):
# six code subsets of 164 pairs; math-prm holds 447 but counts as 984, "to be equal to code"
REWARDBENCH_SECTIONS = {"code": {f"hep-{lang}": 164 for lang in
                                 ("cpp", "go", "java", "js", "python", "rust")},
                        "math": {"math-prm": 984}}


def rewardbench_scores(per_type):
    """RewardBench's section scores from per-subset accuracies (evaluate_pairs' per_type):

        section = sum_s accuracy_s * count_s / sum_s count_s     over its subsets present

    with its example counts (REWARDBENCH_SECTIONS). The paper's "RewardBench code" is the
    hep-* section and "RewardBench math" is math-prm; RewardBench's own Reasoning section
    weighs them by the same counts (984 each), so it is their mean. Sections with no subset
    present are left out; {} when the file is not RewardBench."""
    out = {}
    for section, counts in REWARDBENCH_SECTIONS.items():
        present = {s: c for s, c in counts.items() if s in per_type and per_type[s]["n"]}
        if present:
            out[section] = sum(per_type[s]["accuracy"] * c for s, c in present.items()) / \
                sum(present.values())
    if len(out) == len(REWARDBENCH_SECTIONS):
        out["reasoning"] = sum(out[k] * sum(c.values()) for k, c in REWARDBENCH_SECTIONS.items()) / \
            sum(sum(c.values()) for c in REWARDBENCH_SECTIONS.values())
    return out


def format_table(results):
    """A text table of {file: evaluate_pairs result}, one row per file and pair type."""
    lines = [f"{'file':<40} {'pair_type':<16} {'n':>6} {'accuracy':>9} {'margin':>9}"]
    for path, res in results.items():
        for name, r in [("ALL", res)] + sorted(res["per_type"].items()):
            lines.append(f"{path[-40:]:<40} {name:<16} {r['n']:>6} {r['accuracy']:>9.4f} "
                         f"{r['mean_margin']:>9.4f}")
    return "\n".join(lines)


# ---------------------------------------------------------------- objectives


class Objective(NamedTuple):
    """What one --objective trains on, and how the scores of a batch of its items
    (score_items rows, [rows, N]) become a loss and metrics. Training is otherwise shared."""
    files: str  # the setting (and flag) that names its training files
    load: Callable  # load(paths, flag): the items of comma-separated files
    unit: str  # what the items are called in messages
    rows: int  # score rows: chosen and rejected texts, or one text per item
    spread: tuple  # (name in log lines, metrics key): the figure shown after accuracy
    loss: Callable  # loss(scores, items): the training loss, a scalar tensor
    metrics: Callable  # metrics(scores, items): {"accuracy", spread key}
    evaluate: Callable  # evaluate(model, tokenizer, items, device, micro_batch_size,
    #                              max_length, rank, world_size): metrics and "loss"


def grades_of(items, device):
    """The grades of graded reasonings, a tensor on `device`."""
    return torch.tensor([g.grade for g in items], device=device)


# margin and center_coef are read when a loss is computed, after configure() set them
OBJECTIVES = {
    "bt": Objective(  # Bradley-Terry on preference pairs, as in the paper
        "pairs_file", load_pair_files, "pairs", 2, ("margin", "mean_margin"),
        loss=lambda scores, items: bradley_terry_loss(scores[0], scores[1], margin, center_coef),
        metrics=lambda scores, items: pair_metrics(scores[0], scores[1]),
        evaluate=lambda *args: evaluate_pairs(*args, margin, center_coef)),
    "score": Objective(  # regression onto graded reasonings, the score-based baseline
        "grades_file", load_grade_files, "graded reasonings", 1, ("mae", "mae"),
        loss=lambda scores, items: grade_loss(scores[0], grades_of(items, scores.device)),
        metrics=lambda scores, items: grade_metrics(scores[0], grades_of(items, scores.device)),
        evaluate=evaluate_grades),
}


# ---------------------------------------------------------------- main
if __name__ == "__main__":
    config = configure(globals())
    exit_on_setup_error()  # bad paths and flags: one line naming them, exit status 1
    rank, local_rank, world_size, device = init_distributed()
    torch.manual_seed(seed)  # the score head of a causal-LM checkpoint starts from it
    compute_dtype = default_dtype(device) if dtype == "auto" else getattr(torch, dtype)
    hf_logging.disable_progress_bar()  # a bar per checkpoint save would break the step lines
    # every rank decides before any could create it; saving is collective, so all build it
    build_tiny = tiny_init and init_from != "resume" and not os.path.exists(init_from)
    barrier()
    if build_tiny:
        make_tiny_checkpoint(init_from)
    barrier()
    # out_dir is written only once every input has been checked and loaded (below), so a
    # bad path or flag leaves an earlier run's files there as they were
    resume = init_from == "resume" and not eval_only
    if not resume:
        check_model_dir(init_from, "--init_from")

    if eval_only:
        if not eval_files.strip():
            raise SetupError("--eval_only=True needs --eval_files=FILE[,FILE...]")
        # A benchmark may hold no pair (a tiny toy LCB-RB where no problem has both kinds):
        # it is reported with n = 0, not refused. Training files must hold pairs.
        eval_sets = {path: load_pair_files(path, "--eval_files", allow_empty=True)
                     for path in [p.strip() for p in eval_files.split(",") if p.strip()]}
        for path in [path for path, pairs in eval_sets.items() if not pairs]:
            print0(f"note: {path} holds no pairs; its row has n = 0")
        tokenizer = load_tokenizer(init_from)
        model = in_turn(lambda: load_reward_model(init_from, device, dtype=compute_dtype,
                                                  tokenizer=tokenizer))
        results = {}
        for path, pairs in eval_sets.items():
            results[path] = evaluate_pairs(model, tokenizer, pairs, device,
                                           micro_batch_size, max_length, rank, world_size)
            results[path]["rewardbench"] = rewardbench_scores(results[path]["per_type"])
        print0(format_table(results))
        for path, res in results.items():
            if res["rewardbench"]:
                print0(f"{path}: RewardBench sections (its example-count weights): " +
                       ", ".join(f"{k} {v:.4f}" for k, v in res["rewardbench"].items()))
        if is_main():
            os.makedirs(out_dir, exist_ok=True)
            with open(os.path.join(out_dir, "eval_results.json"), "w") as f:
                json.dump({"init_from": init_from, "results": results}, f, indent=1)
    else:
        # ------------------------------------------------ data
        if objective not in OBJECTIVES:
            raise SetupError(f"--objective must be {' or '.join(map(repr, OBJECTIVES))}, "
                             f"not {objective!r}")
        spec = OBJECTIVES[objective]  # its items: pairs, or graded reasonings
        unit, (spread_name, spread_key) = spec.unit, spec.spread
        items = spec.load(config[spec.files], f"--{spec.files}")
        train_items, val_items = training_split(items, spec.load(val_file, "--val_file")
                                                if val_file else None, val_fraction, seed)
        if not val_items:
            raise SetupError(f"the validation split is empty ({len(items)} {unit}, "
                             f"--val_fraction={val_fraction}); early stopping and best/ need it")
        if batch_size % world_size or len(train_items) < batch_size:
            raise SetupError(f"--batch_size={batch_size} must divide by world size {world_size} "
                             f"and not exceed the {len(train_items)} training {unit}")
        steps_per_epoch = len(train_items) // batch_size
        total_steps = epochs * steps_per_epoch
        total_steps = min(total_steps, max_steps) if max_steps > 0 else total_steps
        per_rank = batch_size // world_size
        print0(f"{unit}: {len(train_items) + len(val_items)} ({len(train_items)} train, "
               f"{len(val_items)} validation{' from ' + val_file if val_file else ''}); "
               f"{steps_per_epoch} steps per epoch, {len(train_items) % batch_size} {unit} of "
               f"an incomplete batch dropped per epoch; {total_steps} steps; "
               f"{math.ceil(per_rank / micro_batch_size)} micro-batches per step per rank")

        # ------------------------------------------------ model and optimizer
        load_dir = os.path.join(out_dir, "last") if resume else init_from
        if resume:
            if not recover_checkpoint(load_dir):
                raise SetupError(f"--init_from=resume: no complete checkpoint at {load_dir} "
                                 f"(--out_dir={out_dir}; nor an interrupted save's "
                                 f"{load_dir}.tmp or .old)")
            recover_checkpoint(os.path.join(out_dir, "best"))  # it may have been mid-save too
        # the memory plan of training (the one phase that can run out), before any weight
        memory = planning.rm_plan(config, planning.model_shape(load_dir), world_size)
        planning.enforce(memory, gpu_gb or device_gb(device), plan, force_plan, print0)
        tokenizer = load_tokenizer(load_dir)
        mixed = compute_dtype != torch.float32
        if world_size > 1:   # rank 0 reads the checkpoint, the others get shards by broadcast
            model = load_sharded(lambda: load_reward_model(load_dir, torch.device("cpu"),
                                                           dtype=torch.float32, tokenizer=tokenizer),
                                 device, mixed, checkpointing=activation_checkpointing)
        else:
            model = load_reward_model(load_dir, device, dtype=torch.float32, tokenizer=tokenizer)
            if activation_checkpointing:
                model.activation_checkpointing_enable({"use_reentrant": False})
        model.train()
        if compile:
            model.compile()  # in place: parameter names, hence checkpoints, stay the same
        autocast = torch.autocast(device.type, dtype=compute_dtype,
                                  enabled=mixed and world_size == 1)  # FSDP casts by itself
        optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate,
                                      weight_decay=weight_decay)
        state = {"step": 0, "best": None, "bad_evals": 0}
        if resume:
            state = load_training_state(load_dir, optimizer)["state"]
            print0(f"resumed from {load_dir} at step {state['step']}")
        start_step = state["step"]
        metrics_path = os.path.join(out_dir, log_file)
        if is_main():
            os.makedirs(out_dir, exist_ok=True)
            if os.path.exists(os.path.join(out_dir, FINISHED)):
                os.remove(os.path.join(out_dir, FINISHED))   # this run is not finished yet
            trim_metrics(metrics_path, start_step)

        # ------------------------------------------------ training loop
        t0 = time.time()
        bar = tqdm(total=total_steps, initial=start_step, disable=not is_main(), dynamic_ncols=True)
        batches_epoch, batches = None, None
        for step in range(start_step, total_steps + 1):
            epoch = step / steps_per_epoch
            # a resumed run starts where its checkpoint's evaluation was already done
            evaluate_now = step % eval_interval == 0 or step == total_steps
            if evaluate_now and not (resume and step == start_step):
                val = spec.evaluate(model, tokenizer, val_items, device, micro_batch_size,
                                    max_length, rank, world_size)
                improved = improves(val, state["best"])
                state["bad_evals"] = 0 if improved else state["bad_evals"] + 1
                if improved:
                    state["best"] = {"step": step, "accuracy": val["accuracy"], "loss": val["loss"]}
                    save_checkpoint(os.path.join(out_dir, "best"), model, tokenizer,
                                    extra={"config": config, "step": step, "validation": val})
                if is_main():
                    append_metrics(metrics_path, {"kind": "eval", "step": step, "epoch": epoch,
                                                  **val, "best_step": state["best"]["step"],
                                                  "time": time.time() - t0})
                print0(f"eval step {step}: val accuracy {val['accuracy']:.4f} {spread_name} "
                         f"{val[spread_key]:.4f} loss {val['loss']:.4f}"
                         f"{' (best)' if improved else ''}")
                state["step"] = step
                save_checkpoint(os.path.join(out_dir, "last"), model, tokenizer,
                                extra={"config": config, "state": state}, optimizer=optimizer)
                if patience > 0 and state["bad_evals"] >= patience:
                    print0(f"early stop at step {step}: no improvement in {patience} evaluations")
                    break
            if step == total_steps:
                break

            # one optimizer step on global batch `step`
            if batches_epoch != int(epoch):
                batches_epoch = int(epoch)
                batches = epoch_batches(len(train_items), batch_size, seed, batches_epoch)
            batch = batches[step % steps_per_epoch]
            mine = batch[rank * per_rank:(rank + 1) * per_rank]
            lr = warmup_lr(step, learning_rate, warmup_steps)
            for group in optimizer.param_groups:
                group["lr"] = lr
            scores = torch.zeros(spec.rows, batch_size, device=device)
            counts = torch.zeros(2, device=device)  # tokens, truncated texts
            for start in range(0, per_rank, micro_batch_size):
                micro = [train_items[i] for i in mine[start:start + micro_batch_size]]
                if world_size > 1:  # reduce gradients once per step, after the last micro-batch
                    model.set_requires_gradient_sync(grad_sync_every_micro_batch or
                                                     start + micro_batch_size >= per_rank)
                with autocast:
                    micro_scores = score_items(model, tokenizer, micro, device, max_length)
                loss = spec.loss(micro_scores, micro)
                (loss * len(micro) / per_rank).backward()
                at = rank * per_rank + start
                scores[:, at:at + len(micro)] = micro_scores.detach().float()
                counts += torch.tensor(token_counts(tokenizer, item_texts(micro), max_length),
                                       dtype=counts.dtype, device=device)
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                       grad_clip if grad_clip > 0 else math.inf)
            grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

            all_sum(scores)
            all_sum(counts)
            batch_items = [train_items[i] for i in batch]
            record = {"kind": "train", "step": step + 1, "epoch": (step + 1) / steps_per_epoch,
                      "loss": spec.loss(scores, batch_items).item(),
                      **spec.metrics(scores, batch_items), "lr": lr,
                      "grad_norm": grad_norm.item(), "tokens": int(counts[0]),
                      "truncated": int(counts[1]), "time": time.time() - t0}
            if is_main():
                append_metrics(metrics_path, record)
                bar.update(1)
                print0(f"step {step + 1}/{total_steps} | loss {record['loss']:.4f} | acc "
                         f"{record['accuracy']:.3f} | {spread_name} {record[spread_key]:.3f} | lr "
                         f"{lr:.2e} | gnorm {record['grad_norm']:.3f} | tok {record['tokens']}")
        bar.close()
        best = state["best"]
        if is_main():  # best/ is final (train_grpo.py warns about a run without it)
            with open(os.path.join(out_dir, FINISHED), "w") as f:
                json.dump(best, f)
        print0(f"done: best validation accuracy {best['accuracy']:.4f} at step {best['step']} "
               f"-> {os.path.join(out_dir, 'best')}")
    if dist.is_initialized():
        dist.destroy_process_group()
