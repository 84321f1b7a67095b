r"""
The "+SFT" baseline of the paper's Table 1: plain supervised fine-tuning of the policy on the
RL problems, on (prompt -> passing response) pairs, with the RL run's settings.

One CPU, the toy world (toy.py prepares data/toy/; the SFT policy lands in out/toy_sft/best):
    python toy.py && python train_sft.py
    python train_sft.py --sft_source=rejection          # the init policy's own passing samples
A tiny random model on the fixture problems, in seconds (checks the loop, learns little):
    python train_sft.py --init_from=out/tiny_policy --tiny_init=True --out_dir=out/sft_tiny \
        --train_file=tests/fixtures/toy_problems.jsonl --batch_size=3 --micro_batch_size=2 \
        --val_fraction=0.25 --epochs=2 --learning_rate=1e-3 --max_steps=4 --eval_interval=2 \
        --dtype=float32
8 GPUs, the RL run's settings (FSDP2: rank 0 reads the checkpoint, the ranks get shards):
    torchrun --standalone --nproc_per_node=8 train_sft.py --init_from=Qwen/Qwen2.5-Coder-7B-Instruct \
        --train_file=DATA --out_dir=out/sft_qwen7b --sft_source=rejection --learning_rate=1e-6 \
        --batch_size=32 --micro_batch_size=1 --max_new_tokens=4096 --max_length=6144 \
        --activation_checkpointing=True --grad_sync_every_micro_batch=True --answer_only=True
Continue a killed run: the same command (same number of ranks) plus --init_from=resume; it
trains on the out_dir/sft_data.jsonl the first run wrote.

Choices and why:
- The paper says only "supervised fine-tuning on the RL data, same data and hyperparameters";
  the targets are ours to choose, hence sft_source. "reference": each problem's reference
  program (Problem.solution; problems without one are skipped, counted): cheap, exact, the
  toy world's default (all its problems have one). "rejection": samples_per_problem samples
  of the init policy on the RL prompt, each seeded by data.seed_hash(seed, "sft", problem id,
  k) (so the data does not depend on ranks or batching), keeping at most keep_per_problem
  distinct passing ones per problem. RL data such as DeepCoder's has tests and rarely a
  solution, so this is how a 7B row can be built.
- Either way a target is kept only when prompts.run_responses, the RL reward's own
  parse-run-judge path, finds its format right (Rf = 1) and all tests passed (Ro = 1): a
  reference program failing its own tests is bad data. The kept set goes to
  out_dir/sft_data.jsonl (prompt: the RL prompt's text, before the chat template; response;
  problem_id), which --sft_data=FILE reads instead of building; the counts (problems,
  sampled, passed, kept, pass_rate) go to stdout and to the log's first line.
- The think of a reference response: the problem files carry a program, not its reasoning,
  so <think> holds the fixed reference_think note (an empty think fails the format, and
  made-up reasoning would be unchecked data). The model thus learns to skip reasoning, which
  is what fine-tuning on bare solutions teaches. A math problem's think is its worked
  solution when it has one, its answer \boxed{answer}. Rejection keeps the policy's reasoning.
- Loss (sft_loss): cross-entropy on response tokens only, the prompt (exactly the RL
  prompt in the chat template) masked out, averaged over all response tokens of the global
  batch: a token mean, like the RL loss's token_mean, so a response weighs by its length.
  TRL's SFTTrainer by default averages over each micro-batch's tokens, which with
  accumulation weighs a short micro-batch's tokens more. The target ends with the
  tokenizer's eos (the chat's end of turn), as toy.py's warm start does.
- Examples over max_length tokens are dropped, not cut (a cut response would teach never
  to finish). The 9:1 split is by problem (data.split_by_problem); the lowest validation
  loss picks out_dir/best; out_dir/last is written at every validation.
- AdamW, constant lr after an optional warmup, grad clipping, fp32 weights (bf16 compute on
  a GPU); batch_size examples per step over all ranks, micro_batch_size per forward with
  gradient accumulation; the batch order is a pure function of (seed, epoch), so a resume
  continues exactly. No memory plan (plan.py): at micro_batch_size 1 a step needs less than
  an RL step with the same max_length.
"""

import json
import math
import os
import random
import time

import torch
import torch.distributed as dist
from tqdm import tqdm
from transformers.utils import logging as hf_logging

import data
import prompts
import sandbox
from configurator import configure
from model import (SetupError, all_sum, append_metrics, apply_chat, barrier, check_data_file,
                   check_model_dir, default_dtype, exit_on_setup_error, generate, init_distributed,
                   is_main, load_policy, load_sharded, load_tokenizer, load_training_state,
                   make_tiny_checkpoint, print0, recover_checkpoint, save_checkpoint,
                   token_logprobs, trim_metrics, unsharded_copy, warmup_lr)

# ---------------------------------------------------------------- config
init_from = "data/toy/policy"  # policy (dir or hub id); "resume": out_dir/last
tiny_init = False  # build a tiny random model at init_from first if it does not exist (tests)
train_file = "data/toy/train.jsonl"  # the RL problems, any format data.load_problems reads
out_dir = "out/toy_sft"
sft_source = "reference"  # reference | rejection (module docstring)
sft_data = ""  # an sft_data.jsonl (prompt, response, problem_id) to train on instead of building
reference_think = "A reference solution, given without its reasoning."
samples_per_problem = 4  # rejection: samples of each problem
keep_per_problem = 1  # rejection: distinct passing samples kept per problem, at most
max_new_tokens = 192  # rejection: paper's RL runs 4096
temperature, top_p = 1.0, 1.0  # rejection: sampling, as the RL rollouts
gen_batch_size = 64  # rejection: prompts per generate call
answer_only = False  # as train_grpo: True reads code only from inside <answer>
sandbox_workers = 0  # 0 = this machine's cores
test_timeout = 6.0
max_length = 1024  # prompt + response tokens; longer examples are dropped
batch_size = 32  # examples per optimizer step over all ranks (paper's RL: 32 prompts)
micro_batch_size = 8  # examples per forward per rank
learning_rate = 1e-4  # paper's RL: 1e-6 at 7B; the tiny toy policy needs larger steps
warmup_steps = 0
weight_decay = 0.0
grad_clip = 1.0  # 0 disables clipping (the norm is still logged)
epochs = 1
max_steps = -1  # stop after this many steps; -1: all epochs
val_fraction = 0.1  # share of the problems held out for validation loss and best/
eval_interval = 20  # steps between validations and checkpoints (and at the end)
seed = 1337
dtype = "auto"  # compute dtype: auto (bf16 on GPU, fp32 on CPU), float32 or bfloat16
activation_checkpointing = False
logprob_chunk = 1024  # positions whose logits are made at once (model.token_logprobs)
grad_sync_every_micro_batch = False  # FSDP: reduce-scatter each micro-batch
log_file = "metrics.jsonl"

SOURCES = ("reference", "rejection")


# ---------------------------------------------------------------- the loss
def sft_loss(logprobs, mask, n_tokens):
    """Token-mean cross-entropy on response tokens:

        L = -1/N sum_{b,t} m_{b,t} log p(y_{b,t} | y_{b,<t}),   N = sum of m over the global batch

    logprobs [B, T]: log p of each target token (log_softmax(logits)[target], model.token_logprobs);
    mask [B, T]: 1 on response tokens, 0 on prompt tokens and padding; n_tokens: N, counted
    over every micro-batch and rank of the step, so that summed micro-batch losses are the
    global token mean."""
    return -(logprobs.float() * mask).sum() / n_tokens


def batch_tensors(rows, pad_id, device):
    """(input_ids, attention_mask, mask) of (prompt_ids, response_ids) rows, left-padded;
    mask [B, T-1] marks the columns of token_logprobs that score a response token."""
    width = max(len(p) + len(r) for p, r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), width), dtype=torch.long)
    mask = torch.zeros((len(rows), width - 1))
    for i, (p, r) in enumerate(rows):
        ids[i, width - len(p) - len(r):] = torch.tensor(p + r)
        attn[i, width - len(p) - len(r):] = 1
        mask[i, width - 1 - len(r):] = 1
    return ids.to(device), attn.to(device), mask.to(device)


def micro_loss(model, rows, pad_id, device, n_tokens):
    """sft_loss of one micro-batch of token rows."""
    ids, attn, mask = batch_tensors(rows, pad_id, device)
    return sft_loss(token_logprobs(model, ids, attn, chunk=logprob_chunk), mask, n_tokens)


# ---------------------------------------------------------------- data
def reference_response(problem, think):
    """A problem's reference in the RL format (a math problem: its worked solution, if any, as
    the think and its boxed answer; code: the fixed note and the reference program)."""
    if problem.answer:
        return (f"<think>\n{problem.solution.strip() or think}\n</think>\n"
                f"<answer>\n\\boxed{{{problem.answer}}}\n</answer>")
    code = problem.solution.rstrip("\n") + "\n"
    return f"<think>\n{think}\n</think>\n<answer>\n```python\n{code}```\n</answer>"


def share(items, rank, world_size):
    """(offset, this rank's contiguous share of items); the last ranks may get fewer."""
    size = math.ceil(len(items) / world_size)
    return rank * size, items[rank * size:(rank + 1) * size]


def gathered(part):
    """The ranks' lists concatenated in rank order, on every rank (part itself on one process)."""
    if not dist.is_initialized():
        return part
    parts = [None] * dist.get_world_size()
    dist.all_gather_object(parts, part)
    return [x for p in parts for x in p]


def passing(problems, texts):
    """Whether each response has the right format (Rf) and passes all its problem's tests (Ro)."""
    if not texts:
        return []
    parsed, results = prompts.run_responses(
        problems, texts, answer_only=answer_only, workers=sandbox_workers or None,
        limits=sandbox.Limits(test_timeout=test_timeout))
    return [p.format_ok and r.all_passed for p, r in zip(parsed, results)]


def example(problem, response):
    """A training example; prompt is the RL prompt's text, put in the chat template when tokenized."""
    return {"prompt": prompts.rl_prompt(problem), "response": response, "problem_id": problem.id}


def reference_examples(problems, think, rank=0, world_size=1):
    """(examples, counts): the reference response of every problem with one that passes
    (each rank judges a share)."""
    have = [p for p in problems if p.solution.strip() or p.answer]
    texts = [reference_response(p, think) for p in have]
    lo, mine = share(have, rank, world_size)
    ok = gathered(passing(mine, texts[lo:lo + len(mine)]))
    return ([example(p, t) for p, t, good in zip(have, texts, ok) if good],
            {"no_solution": len(problems) - len(have), "sampled": len(have), "passed": sum(ok)})


@torch.no_grad()
def rejection_examples(model, tokenizer, problems, samples, keep, device, rank=0, world_size=1):
    """(examples, counts): `samples` seeded samples of each problem (each rank generates and
    judges a share) and, of each problem, the first `keep` distinct passing untruncated ones
    (counts["passed"]: all passing untruncated samples, duplicates included)."""
    flat = [(p, k) for p in problems for k in range(samples)]
    lo, mine = share(flat, rank, world_size)
    texts = [apply_chat(tokenizer, prompts.rl_prompt(p)) for p, _ in mine]
    seeds = [data.seed_hash(seed, "sft", p.id, k) for p, k in mine]
    training, outs = model.training, []
    model.eval()
    for s in range(0, len(mine), gen_batch_size):
        outs += generate(model, tokenizer, texts[s:s + gen_batch_size], max_new_tokens, temperature,
                         top_p, device=device, seeds=seeds[s:s + gen_batch_size])
    model.train(training)
    ok = passing([p for p, _ in mine], [o.text for o in outs])
    found = gathered([(lo + i, o.text) for i, (o, good) in enumerate(zip(outs, ok))
                      if good and not o.truncated])
    kept = {}
    for index, text in found:
        problem = flat[index][0]
        have = kept.setdefault(problem.id, [])
        if len(have) < keep and text not in [e["response"] for e in have]:
            have.append(example(problem, text))
    examples = [e for pid in dict.fromkeys(p.id for p in problems) for e in kept.get(pid, [])]
    return examples, {"no_solution": 0, "sampled": len(flat), "passed": len(found)}


def load_examples(path):
    """The rows of an sft_data.jsonl file; a bad row is a LoadError naming file, line and field."""
    rows = []
    for where, _, rec in data.read_rows(path):
        if isinstance(rec, data.BadRecord):
            raise data.LoadError(path, where, None, rec.reason)
        for key in ("prompt", "response", "problem_id"):
            if not isinstance(rec.get(key), str) or not rec[key].strip():
                raise data.LoadError(path, where, key, "expected non-empty text")
        rows.append({k: rec[k] for k in ("prompt", "response", "problem_id")})
    if not rows:
        raise data.LoadError(path, "file", None, "the file holds no examples")
    return rows


def tokenize(tokenizer, examples):
    """(prompt_ids, response_ids + [eos]) of each example, the prompt in the chat template."""
    prompt_ids = tokenizer([apply_chat(tokenizer, e["prompt"]) for e in examples],
                           add_special_tokens=False)["input_ids"]
    response_ids = tokenizer([e["response"] for e in examples], add_special_tokens=False)["input_ids"]
    return [(p, r + [tokenizer.eos_token_id]) for p, r in zip(prompt_ids, response_ids)]


def epoch_batches(n, size, epoch):
    """Global batches of one epoch: a shuffle seeded by (seed, epoch), cut into full batches."""
    order = list(range(n))
    random.Random(f"{seed}:sft:{epoch}").shuffle(order)
    return [order[i:i + size] for i in range(0, n - size + 1, size)]


@torch.no_grad()
def validate(model, rows, pad_id, device, rank, world_size, autocast):
    """Token-mean loss over all validation rows; every rank runs as many forwards (FSDP's
    are collective), a rank short of rows runs a weightless one."""
    size = math.ceil(len(rows) / world_size)
    _, mine = share(rows, rank, world_size)
    sums = torch.zeros(2, device=device)  # summed nll, tokens
    model.eval()
    for s in range(0, size, micro_batch_size):
        micro = mine[s:s + micro_batch_size]
        with autocast:
            nll = micro_loss(model, micro or rows[:1], pad_id, device, 1.0)
        sums[0] += nll.float() if micro else 0.0
        sums[1] += sum(len(r) for _, r in micro)
    model.train()
    all_sum(sums)
    return {"val_loss": (sums[0] / sums[1]).item(), "val_tokens": int(sums[1])}


# ---------------------------------------------------------------- main
if __name__ == "__main__":
    config = configure(globals())
    exit_on_setup_error()  # bad paths and flags: one line naming them, exit status 1
    if sft_source not in SOURCES:
        raise SetupError(f"--sft_source must be one of {SOURCES}, not {sft_source!r}")
    rank, local_rank, world_size, device = init_distributed()
    torch.manual_seed(seed)
    compute_dtype = default_dtype(device) if dtype == "auto" else getattr(torch, dtype)
    hf_logging.disable_progress_bar()
    build_tiny = tiny_init and init_from != "resume" and not os.path.exists(init_from)
    barrier()
    if build_tiny:
        make_tiny_checkpoint(init_from)
    barrier()

    # ------------------------------------------------ inputs, checked before out_dir is written
    resume = init_from == "resume"
    data_path = os.path.join(out_dir, "sft_data.jsonl") if resume else sft_data
    load_dir = os.path.join(out_dir, "last") if resume else init_from
    if resume and not recover_checkpoint(load_dir):
        raise SetupError(f"--init_from=resume: no complete checkpoint at {load_dir} "
                         f"(--out_dir={out_dir})")
    check_model_dir(load_dir, "--init_from")
    if data_path:
        check_data_file(data_path, "--sft_data")
        examples, counts = load_examples(data_path), None
    else:
        check_data_file(train_file, "--train_file")
        problems = data.load_problems(train_file, allow_empty=False)
    tokenizer = load_tokenizer(load_dir)
    mixed = compute_dtype != torch.float32
    if world_size > 1:  # rank 0 reads the checkpoint, the others get their shards by broadcast
        model = load_sharded(lambda: load_policy(load_dir, torch.device("cpu"), dtype=torch.float32),
                             device, mixed, checkpointing=activation_checkpointing)
    else:
        model = load_policy(load_dir, device, dtype=torch.float32)
        if activation_checkpointing:
            model.activation_checkpointing_enable({"use_reentrant": False})
    model.train()
    autocast = torch.autocast(device.type, dtype=compute_dtype, enabled=mixed and world_size == 1)

    # ------------------------------------------------ the examples: read, or built and written
    if not data_path:
        if sft_source == "reference":
            examples, counts = reference_examples(problems, reference_think, rank, world_size)
        else:
            gen = model if world_size == 1 else unsharded_copy(model, device, dtype=compute_dtype)
            examples, counts = rejection_examples(gen, tokenizer, problems, samples_per_problem,
                                                  keep_per_problem, device, rank, world_size)
            del gen  # under FSDP the full copy; its memory goes back before training
            if device.type == "cuda":
                torch.cuda.empty_cache()
        counts = {"problems": len(problems), **counts, "kept": len(examples),
                  "pass_rate": counts["passed"] / max(counts["sampled"], 1)}
        if not examples:
            raise SetupError(f"--train_file={train_file}: no {sft_source} response passed "
                             f"({counts}); nothing to train on")
    kept = examples  # what out_dir/sft_data.jsonl holds, so a resume trains on the same data
    rows = tokenize(tokenizer, examples)
    fits = [i for i, (p, r) in enumerate(rows) if len(p) + len(r) <= max_length]
    examples, rows, too_long = [examples[i] for i in fits], [rows[i] for i in fits], len(rows) - len(fits)
    split = data.split_by_problem(list(range(len(rows))), val_fraction, seed,
                                  key=lambda i: examples[i]["problem_id"])
    train_rows, val_rows = ([rows[i] for i in side] for side in split)
    if not val_rows or len(train_rows) < batch_size or batch_size % world_size:
        raise SetupError(f"{len(train_rows)} training and {len(val_rows)} validation examples: "
                         f"--batch_size={batch_size} must divide by {world_size} ranks and not "
                         f"exceed the training examples, --val_fraction={val_fraction} must hold "
                         f"one problem out")
    steps_per_epoch = len(train_rows) // batch_size
    total_steps = min(epochs * steps_per_epoch, max_steps) if max_steps > 0 else epochs * steps_per_epoch
    per_rank = batch_size // world_size
    print0(f"data: {json.dumps(counts) if counts else data_path}; {too_long} over --max_length="
           f"{max_length} dropped; {len(train_rows)} train, {len(val_rows)} validation examples; "
           f"{total_steps} steps of {batch_size}")

    # ------------------------------------------------ optimizer, state, logs
    optimizer = torch.optim.AdamW(model.parameters(), lr=learning_rate, weight_decay=weight_decay)
    state = {"step": 0, "best": None}
    if resume:
        state = load_training_state(load_dir, optimizer)["state"]
        print0(f"resumed from {load_dir} at step {state['step']}")
    start_step = state["step"]
    metrics_path = os.path.join(out_dir, log_file)
    if is_main():
        os.makedirs(out_dir, exist_ok=True)
        trim_metrics(metrics_path, start_step)
        if not resume:
            with open(os.path.join(out_dir, "sft_data.jsonl"), "w", encoding="utf-8") as f:
                f.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in kept)
            append_metrics(metrics_path, {"kind": "data", "step": 0, "source": data_path or sft_source,
                                          **(counts or {}), "too_long": too_long,
                                          "train": len(train_rows), "val": len(val_rows)})
    pad_id = tokenizer.pad_token_id

    # ------------------------------------------------ training loop
    t0 = time.time()
    bar = tqdm(total=total_steps, initial=start_step, disable=not is_main(), dynamic_ncols=True)
    for step in range(start_step, total_steps + 1):
        if (step % eval_interval == 0 or step == total_steps) and not (resume and step == start_step):
            val = validate(model, val_rows, pad_id, device, rank, world_size, autocast)
            improved = state["best"] is None or val["val_loss"] < state["best"]["val_loss"]
            if improved:
                state["best"] = {"step": step, "val_loss": val["val_loss"]}
                save_checkpoint(os.path.join(out_dir, "best"), model, tokenizer,
                                extra={"config": config, "step": step, "validation": val})
            if is_main():
                append_metrics(metrics_path, {"kind": "eval", "step": step, **val,
                                              "best_step": state["best"]["step"],
                                              "elapsed": time.time() - t0})
            print0(f"eval step {step}: val loss {val['val_loss']:.4f}{' (best)' if improved else ''}")
            state["step"] = step
            save_checkpoint(os.path.join(out_dir, "last"), model, tokenizer,
                            extra={"config": config, "state": state}, optimizer=optimizer)
        if step == total_steps:
            break
        batch = epoch_batches(len(train_rows), batch_size, step // steps_per_epoch)[step % steps_per_epoch]
        mine = [train_rows[i] for i in batch[rank * per_rank:(rank + 1) * per_rank]]
        lr = warmup_lr(step, learning_rate, warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        n_tokens = all_sum(torch.tensor(float(sum(len(r) for _, r in mine)), device=device))
        loss_sum = torch.zeros((), device=device)
        for s in range(0, per_rank, micro_batch_size):
            if world_size > 1:  # reduce gradients after the last micro-batch only (by default)
                model.set_requires_gradient_sync(grad_sync_every_micro_batch
                                                 or s + micro_batch_size >= per_rank)
            with autocast:
                loss = micro_loss(model, mine[s:s + micro_batch_size], pad_id, device, n_tokens)
            (loss * world_size).backward()  # FSDP averages over ranks; the loss is a global mean
            loss_sum += loss.detach()
        grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(),
                                                   grad_clip if grad_clip > 0 else math.inf)
        grad_norm = grad_norm.full_tensor() if hasattr(grad_norm, "full_tensor") else grad_norm
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        record = {"kind": "train", "step": step + 1, "epoch": (step + 1) / steps_per_epoch,
                  "loss": all_sum(loss_sum).item(), "tokens": int(n_tokens), "lr": lr,
                  "grad_norm": grad_norm.item(), "elapsed": time.time() - t0}
        if is_main():
            append_metrics(metrics_path, record)
            bar.update(1)
            print0(f"step {step + 1}/{total_steps} | loss {record['loss']:.4f} | tok "
                     f"{record['tokens']} | lr {lr:.2e} | gnorm {record['grad_norm']:.3f}")
    bar.close()
    print0(f"done: best validation loss {state['best']['val_loss']:.4f} at step "
           f"{state['best']['step']} -> {os.path.join(out_dir, 'best')}")
    sandbox.shutdown()
    if dist.is_initialized():
        dist.destroy_process_group()
