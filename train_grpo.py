"""
P-GRPO: GRPO for code whose reward adds a reasoning reward model's score only when the
code passes every test (ReCode, arXiv 2508.05170, Eq. 1):

    R_i = Rf_i + Ro_i + Ro_i * Rt_i

Rf: 1 if the response is exactly <think>..</think><answer>```python ..```</answer>;
Ro: 1 if the extracted code passes ALL tests in the sandbox; Rt in [0, 1]: the reward
model's score of (problem, think text), mapped through a sigmoid.

With no arguments it runs P-GRPO on the toy world, which toy.py prepares and whose reward
model train_rm.py trains (a missing input stops the run with the command that makes it):
    python toy.py && python train_rm.py && python train_grpo.py
    torchrun --standalone --nproc_per_node=2 train_grpo.py      (FSDP2 over gloo)
A tiny random model, a few steps in under a minute (checks the loop, learns nothing):
    python train_grpo.py config/grpo_cpu_tiny.py
8 GPUs, the paper's settings (Qwen2.5-Coder-7B-Instruct, 32 prompts a step, 4096 new
tokens; the paper gives no group size, 8 samples a prompt is our choice):
    torchrun --standalone --nproc_per_node=8 train_grpo.py config/pgrpo_qwen7b.py
Continue a killed run:  ... --init_from=resume
(a kill at any point, inside a checkpoint save too, leaves a complete checkpoint to resume
from; a missing model directory or an empty problem file stops the run with one line
naming it, before anything in out_dir is touched)

Each step, top to bottom:
1. Take the step's prompts_per_step problems (a seeded permutation per epoch, a pure
   function of the step, so resuming needs no data-loader state).
2. Rollout: group_size samples per problem. The global list of prompts_per_step *
   group_size sequences is split evenly over ranks. Under FSDP each rank generates with a
   full unsharded copy of the policy, gathered once per rollout (generating through the
   shards is ~5x slower). Every sequence samples with its own seed, data.seed_hash(seed,
   "rollout", step, index), so rollouts do not depend on the number of ranks, the batch
   they share, or a resume.
3. Rewards: prompts.run_responses parses each response (Rf, the strict format) and runs
   its code in the sandbox (Ro; warm fork servers, a future that overlaps the old-log-prob
   forward); Rt from the reward model, run only where gate() opens (posterior: Ro = 1)
   and, for the log only, on passing code and on a share of failing code (monitor_share)
   in every mode: hacking_alarm watches Rt of failing code against the pass rate.
4. gated_reward per reward_mode, R = Rf + Ro + g * Rt with gate g: outcome (g = 0, the
   GRPO baseline), posterior (g = Ro, Eq. 1), soft (g = pass rate), additive (g = 1).
5. group_advantages over each group of group_size, gathered across ranks.
6. policy_loss: clipped ratio with clip-higher (eps_low 0.2, eps_high 0.28), VeRL's
   dual-clip (clip_ratio_c 3) and log-ratio clamp, and the token-level mean over all
   response tokens of the global batch (the normalizer counts tokens over micro-batches
   and ranks). No KL, no reference model unless kl_beta > 0.
7. Update: ppo_epochs passes over mini-batches; with one pass and one mini-batch the
   run is on-policy and the rollout log-probs are the detached current ones (no extra
   forward). AdamW, constant lr (paper 1e-6) after an optional warmup, grad clipping.

Memory (what lets the paper's 7B run fit 8 x 80 GB): under FSDP rank 0 alone reads the
checkpoint and the others receive their shards (model.load_sharded); the reward model and
a reference load one rank at a time (model.in_turn), the reward model on the GPU or, with
rm_placement=cpu, in host RAM until it scores. A forward never makes [B, T, V] logits
(the LM head runs logprob_chunk positions at a time); activation_checkpointing recomputes
each decoder layer in backward; micro_batch_tokens packs sequences, longest first, up to
a padded-token budget (the gradient is the same for any packing: the loss's normalisers
are the mini-batch's); evaluation generates eval_batch_size prompts at a time.
"""

import dataclasses
import json
import math
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

import torch
import torch.distributed as dist
from tqdm import tqdm
from transformers.utils import logging as hf_logging

import data
import plan as planning
import prompts
import sandbox
from configurator import configure
from model import (SetupError, all_sum, append_metrics, apply_chat, barrier, check_data_file,
                   check_model_dir, default_dtype, device_gb, exit_on_setup_error, generate, init_distributed,
                   in_turn, is_main, load_policy, load_reward_model, load_sharded, load_tokenizer,
                   load_training_state,
                   make_tiny_checkpoint, print0, read_extra, recover_checkpoint, reward_scores,
                   save_checkpoint, token_logprobs, trim_metrics, unsharded_copy, warmup_lr)

# ---------------------------------------------------------------- config
# The defaults are the toy world on a CPU; config/pgrpo_qwen7b.py holds the paper's settings.
init_from = "data/toy/policy"  # policy (dir or hub id); "resume": out_dir/last
rm_from = "out/toy_rm/best"  # reasoning reward model dir; needed unless reward_mode == "outcome"
tiny_init = False  # build tiny random models at init_from / rm_from first if missing (CPU tests)
train_file = "data/toy/train.jsonl"  # any format data.load_problems reads
eval_file = "data/toy/eval.jsonl"  # held-out problems for greedy pass@1 ("" = no evaluation)
out_dir = "out/toy_pgrpo"
reward_mode = "posterior"  # outcome | posterior | soft | additive
w_format, w_outcome, w_think = 1.0, 1.0, 1.0  # weights of Rf, Ro and the Rt term
# > 0 adds the execution-feedback term w_exec * E (execution_reward; ours: the paper's ACL
# version names a "compiler-based reward" without a formula). Alone with reward_mode=outcome
# it is that baseline; with posterior it is "ReCode + Compiler". It runs every test.
w_exec = 0.0
prompts_per_step = 8  # paper: 32
group_size = 8
max_new_tokens = 192  # paper: 4096
max_prompt_tokens = 512
temperature = 1.0  # rollouts'; the loss's log-probs are taken at it too
top_p = 1.0
learning_rate = 1e-4  # paper: 1e-6 for a 7B model; the toy policy: chosen on outcome-only runs
warmup_steps = 0
weight_decay = 0.0
grad_clip = 1.0  # 0 disables clipping (the norm is still logged)
eps_low, eps_high = 0.2, 0.28
# dual-clip: for A < 0 the per-token loss is at most -A * clip_ratio_c (0 = off, else > 1).
# 3.0 is VeRL's default, which the paper trained with and does not say it changed; it only
# acts on tokens whose ratio passed 3, so on-policy runs (ratio 1) are the same either way.
clip_ratio_c = 3.0
loss_agg = "token_mean"  # token_mean | seq_mean_token_mean | seq_mean_token_sum_norm
std_normalize = True  # False: Dr. GRPO advantages (no division by the group std)
mask_truncated = False  # drop responses that hit max_new_tokens from the loss
kl_beta = 0.0  # > 0 loads a frozen reference policy and adds beta * KL (k3 estimator)
ppo_epochs = 1
mini_batch_size = 0  # sequences per optimizer step over all ranks; 0 = the whole rollout
micro_batch_size = 16  # sequences per forward per rank (with micro_batch_tokens: at most; 0 = any)
micro_batch_tokens = 0  # > 0: pack each forward up to this many padded tokens, longest first
activation_checkpointing = False  # recompute each decoder layer in backward (7B: needed to fit)
grad_sync_every_micro_batch = False  # FSDP: reduce-scatter each micro-batch; False holds the
# whole model's unsharded fp32 gradient between them (4 bytes x N on every rank: 28 GiB at 7B)
logprob_chunk = 1024  # token positions whose logits are made at once (model.token_logprobs)
max_steps = 60  # paper: 1600
eval_interval = 20  # steps between evaluations (and at the end); 0 = never
eval_max_new_tokens = 0  # 0 = max_new_tokens
eval_max_problems = 0  # evaluate on the first N held-out problems; 0 = all
eval_batch_size = 256  # prompts per generate call in evaluation (bounds its KV cache)
rollout_batch_size = 0  # sequences per generate call in a rollout; 0 = the rank's whole share
keep_rollout_copy = True  # FSDP: keep the unsharded bf16 copy for generation between steps
ckpt_interval = 20  # steps between checkpoints (and at the end)
sandbox_workers = 0  # 0 = this machine's cores / ranks on it
test_timeout = 6.0  # seconds per test
answer_only = False  # True: code only from inside <answer> (the paper's "extracted answer";
# False, ours: the last python block anywhere when the format is broken, so Ro = 1 with
# Rf = 0 can happen; prompts.parse_response)
rm_max_length = 4096
rm_batch_size = 8
rm_placement = "gpu"  # gpu: a copy on each rank's device; cpu: kept in host RAM, moved in to score
monitor_share = 0.125  # failing samples the reward model scores for the log only (every mode)
monitor_window = 10  # steps per window of the hacking alarm's rules (hacking_alarm)
seed = 1337
dtype = "auto"  # compute dtype: auto (bf16 on GPU, fp32 on CPU), float32 or bfloat16
log_file = "metrics.jsonl"
plan = False  # print the GPU memory plan per rank (plan.py) and exit
gpu_gb = 0.0  # GPU memory per rank for the plan (GiB); 0 = the device's own (none on a CPU)
force_plan = False  # start even when the plan says the run does not fit

LOSS_AGGS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")


# ---------------------------------------------------------------- the method's equations
def think_reward(scores):
    """Rt = sigmoid(r): the reward model's raw Bradley-Terry score mapped into [0, 1]
    (the paper only says Rt is in [0, 1]; a sigmoid is the BT model's own probability)."""
    return torch.sigmoid(scores.float())


# reward_mode -> the gate g of the thinking term, from (Ro, P_o): a new mode is one line here
GATES = {
    "outcome": lambda outcome, pass_rate: torch.zeros_like(outcome),  # GRPO: no Rt
    "posterior": lambda outcome, pass_rate: outcome,                   # P-GRPO, Eq. 1
    "soft": lambda outcome, pass_rate: pass_rate,                      # share of tests passed
    "additive": lambda outcome, pass_rate: torch.ones_like(outcome),   # ungated
}
REWARD_MODES = tuple(GATES)


def gate(mode, outcome, pass_rate):
    """g, how much of the reasoning score counts for each response (float tensors):

        outcome: g = 0     posterior: g = Ro     soft: g = P_o     additive: g = 1

    It decides the reward (gated_reward) and whom the reward model scores (g > 0)."""
    return GATES[mode](outcome, pass_rate)


def gated_reward(fmt, outcome, think, pass_rate, mode, w_format=1.0, w_outcome=1.0, w_think=1.0,
                 execution=None, w_exec=0.0):
    """The per-response reward, R = wf*Rf + wo*Ro + wt*g*Rt (+ we*E) with g = gate(mode, Ro, P_o):

        outcome:    R = wf*Rf + wo*Ro                     (GRPO baseline)
        posterior:  R = wf*Rf + wo*Ro + wt*Ro*Rt          (P-GRPO, Eq. 1)
        soft:       R = wf*Rf + wo*Ro + wt*P_o*Rt         (P_o: share of tests passed)
        additive:   R = wf*Rf + wo*Ro + wt*Rt             (ungated: invites reward hacking)

    and, when w_exec > 0, the execution-feedback term we*E (execution_reward), ungated.
    Rt may be anything (NaN included) where g = 0: it is never looked at there."""
    g = gate(mode, outcome, pass_rate)
    thinking = torch.where(g > 0, g * think, torch.zeros_like(think))
    reward = w_format * fmt + w_outcome * outcome + w_think * thinking
    return reward + w_exec * execution if w_exec else reward


def execution_reward(statuses):
    """E in [0, 1], a dense reward from running the program on every test's input (ours:
    the paper gives no formula):

        E = (1/3) [it compiles] + (1/3) [no test raised, timed out or hit a limit]
            + (1/3) (share of tests passed)

    statuses: the sandbox's status per test (None: no program, E = 0). A syntax error is
    "does not compile" and scores 0 (nothing ran); a wrong answer still runs cleanly. So a
    program that runs but answers wrong earns 2/3 against 1/3 for one that crashes, the
    gradient toward code that at least executes that such a reward is meant to give."""
    if not statuses or "syntax_error" in statuses:
        return 0.0
    clean = all(st in ("passed", "wrong_answer") for st in statuses)
    return (1 + clean + statuses.count("passed") / len(statuses)) / 3


def group_advantages(rewards, group_size, std_normalize=True, eps=1e-6):
    """A_i = (R_i - mean(R_group)) / (std(R_group) + eps) for consecutive groups.

    std is the sample standard deviation (Bessel's n - 1), as in VeRL's GRPO, which the
    paper trained with; eps = 1e-6 only guards the division. A singleton group gets 0.
    std_normalize=False gives Dr. GRPO's A_i = R_i - mean(R_group).

    Computed in float64 on the rewards minus the group's first one (A does not change
    when a group is shifted): a group of equal rewards then has R_i - R_1 = 0 exactly and
    A = 0 exactly. Without that, the float32 mean of eight copies of 2 + sigmoid(0.3)
    misses the value by a rounding error, which divided by std + eps = 1e-6 gave every
    member A = +0.19."""
    if rewards.numel() % group_size:
        raise ValueError(f"{rewards.numel()} rewards do not split into groups of {group_size}")
    groups = rewards.double().view(-1, group_size)
    groups = groups - groups[:, :1]
    centered = groups - groups.mean(dim=1, keepdim=True)
    if std_normalize and group_size > 1:
        centered = centered / (groups.std(dim=1, keepdim=True) + eps)
    return centered.float().view(-1)


def gather_group_advantages(local_rewards, group_size, std_normalize=True, eps=1e-6):
    """group_advantages when the global batch is split over ranks (a group may straddle
    two): gather every rank's rewards (equal shares), compute, keep this rank's slice.
    The gather moves the rewards unchanged, so equal rewards stay equal and get A = 0."""
    if not dist.is_initialized():
        return group_advantages(local_rewards, group_size, std_normalize, eps)
    parts = [torch.empty_like(local_rewards) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, local_rewards)
    adv = group_advantages(torch.cat(parts), group_size, std_normalize, eps)
    n = local_rewards.numel()
    return adv[dist.get_rank() * n:(dist.get_rank() + 1) * n]


MAX_LOG_RATIO = 20.0  # |log ratio| cap before exp, as VeRL: exp(20) is finite even in bf16


def clipped_ratio_loss(log_ratio, adv, eps_low, eps_high, clip_ratio_c=0.0):
    """The per-token clipped surrogate with clip-higher and, for A < 0, dual-clip:

        r = exp(clamp(log_ratio, -20, 20))
        l = max(-A * r, -A * clip(r, 1 - eps_low, 1 + eps_high))
        l = min(l, -A * c)        only where A < 0, and only with c = clip_ratio_c > 0

    The clamp keeps r finite (a masked token's inf would make 0 * inf = NaN in the sum);
    a token past it carries no gradient, like a clipped one. Dual-clip bounds what one
    token with a negative advantage and a runaway ratio can add to the loss.
    Returns (l, r)."""
    ratio = torch.exp(log_ratio.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO))
    loss = torch.maximum(-adv * ratio, -adv * ratio.clamp(1 - eps_low, 1 + eps_high))
    if clip_ratio_c > 0:
        loss = torch.where(adv < 0, torch.minimum(loss, -adv * clip_ratio_c), loss)
    return loss, ratio


def k3_kl(ref_logp, logp, max_kl=10.0):
    """Per-token KL(policy || reference), Schulman's k3 estimator as VeRL's low_var_kl:

        d = clamp(ref_logp - logp, -20, 20);   k3 = min(exp(d) - d - 1, 10)"""
    diff = (ref_logp - logp).clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
    return (torch.exp(diff) - diff - 1).clamp(max=max_kl)


def policy_loss(logp, old_logp, advantages, mask, eps_low, eps_high, loss_agg, n_tokens,
                n_seqs, max_len, ref_logp=None, kl_beta=0.0, clip_ratio_c=0.0):
    """Clipped policy-gradient loss with clip-higher, summed over this micro-batch and
    divided by normalizers of the whole (global) mini-batch:

        l_t = clipped_ratio_loss(logp_t - old_logp_t, A)  [+ kl_beta * k3_kl(ref_t, logp_t)]
        token_mean:               sum_{seqs, t} l_t / n_tokens           (paper)
        seq_mean_token_mean:      sum_seqs (mean_t l_t) / n_seqs
        seq_mean_token_sum_norm:  sum_seqs (sum_t l_t) / (n_seqs * max_len)   (Dr. GRPO)

    logp, old_logp, mask: [B, T] over response positions; advantages: [B].
    Returns (loss, stats) with stats summed over tokens (for exact global averages):
    clipped_low (ratio < 1 - eps_low with A < 0), clipped_high (ratio > 1 + eps_high with
    A > 0), clipped_dual (ratio > clip_ratio_c with A < 0), approx_kl (the k3 estimate to
    old_logp, from the clamped log-ratio).

    Where this differs from VeRL (which the paper used) or TRL:
    - seq_mean_token_sum_norm divides by n_seqs * max_len, as Dr. GRPO and TRL's
      loss_type="dr_grpo"; VeRL's "seq-mean-token-sum-norm" divides by max_len only (no
      division by the number of sequences), so its loss is n_seqs times ours.
    - seq_mean_token_mean: a sequence with no token left in the mask (mask_truncated)
      adds 0 but still counts in n_seqs, as TRL's clamp(min=1); VeRL divides its 0 by 0
      and the loss becomes NaN.
    - the log-ratio is clamped to +-20 before exp, as VeRL; TRL does not clamp.
    - dual-clip (clip_ratio_c): VeRL applies it always (default 3, must be > 1); TRL has
      none (its optional `delta` caps the ratio itself for either sign); here 0 turns it
      off. train_grpo's default is VeRL's 3.
    - KL (kl_beta > 0, off in the paper): k3 with VeRL's low_var_kl clamps (log-ratio
      +-20, value <= 10); TRL's k3 is unclamped. Its normalizer is the loss's own.
    """
    mask = mask.float()
    log_ratio = logp - old_logp
    adv = advantages.float().unsqueeze(1)
    per_token, ratio = clipped_ratio_loss(log_ratio, adv, eps_low, eps_high, clip_ratio_c)
    if kl_beta > 0:
        per_token = per_token + kl_beta * k3_kl(ref_logp, logp)
    if loss_agg == "token_mean":
        loss = (per_token * mask).sum() / n_tokens
    elif loss_agg == "seq_mean_token_mean":
        loss = ((per_token * mask).sum(1) / mask.sum(1).clamp(min=1)).sum() / n_seqs
    elif loss_agg == "seq_mean_token_sum_norm":
        loss = (per_token * mask).sum() / (n_seqs * max_len)
    else:
        raise ValueError(f"loss_agg must be one of {LOSS_AGGS}, not {loss_agg!r}")
    with torch.no_grad():
        kept = log_ratio.clamp(-MAX_LOG_RATIO, MAX_LOG_RATIO)
        stats = {
            "clipped_low": ((ratio < 1 - eps_low) & (adv < 0)).float().mul(mask).sum(),
            "clipped_high": ((ratio > 1 + eps_high) & (adv > 0)).float().mul(mask).sum(),
            "clipped_dual": ((ratio > clip_ratio_c) & (adv < 0) & (clip_ratio_c > 0)).float()
                            .mul(mask).sum(),
            "approx_kl": (torch.exp(-kept) + kept - 1).mul(mask).sum(),
        }
    return loss, stats


# ---------------------------------------------------------------- batches, rollouts, rewards
# These functions read the settings above, and what main derives from them (workers,
# limits, compute_dtype), as module globals, as nanoGPT's get_batch does; what is built at
# run time (models, tokenizers, device, rank) is passed in.
def step_problems(n_problems, step, prompts_per_step, seed):
    """Indices of the step's problems: consecutive slices of a seeded permutation per
    epoch, so any step's batch is known without replaying the ones before it."""
    out = []
    pos = step * prompts_per_step
    while len(out) < prompts_per_step:
        epoch, offset = divmod(pos, n_problems)
        perm = torch.randperm(n_problems, generator=torch.Generator().manual_seed(seed + epoch))
        take = min(prompts_per_step - len(out), n_problems - offset)
        out += perm[offset:offset + take].tolist()
        pos += take
    return out


def prompt_text(tokenizer, problem):
    return apply_chat(tokenizer, prompts.rl_prompt(problem))


def generation_model(policy, previous, device):
    """What rollouts generate with: the policy itself on one process; under FSDP a full
    unsharded copy in the compute dtype, refreshed in place (generating through the shards
    is ~5x slower). Collective: every rank calls it."""
    if not dist.is_initialized() or dist.get_world_size() == 1:
        return policy
    return unsharded_copy(policy, device, dtype=compute_dtype, into=previous)


def rollout(model, tokenizer, problems, samples, step, new_tokens, greedy, device, rank,
            world_size, batch_size=0):
    """This rank's share of the global list (each problem `samples` times) and its
    generations, batch_size prompts per generate call (0: all at once). Sequence k of the
    list samples with seed_hash(seed, "rollout", step, k), so a rollout does not depend on
    the number of ranks, the batch or a resume. Greedy (evaluation) lists need not split
    evenly: the last rank may get fewer."""
    flat = [p for p in problems for _ in range(samples)]
    share = math.ceil(len(flat) / world_size) if greedy else len(flat) // world_size
    lo = rank * share
    mine = flat[lo:lo + share]
    texts = [prompt_text(tokenizer, p) for p in mine]
    seeds = [data.seed_hash(seed, "rollout", step, lo + k) for k in range(len(mine))]
    training = model.training
    model.eval()
    outs, size = [], batch_size or max(len(mine), 1)
    for s in range(0, len(mine), size):
        outs += generate(model, tokenizer, texts[s:s + size], new_tokens, temperature=temperature,
                         top_p=top_p, do_sample=not greedy, device=device, seeds=seeds[s:s + size])
    model.train(training)
    return mine, outs


def reward_terms(parsed, results):
    """Rf (format), Ro (all tests pass) and the pass rate of each response as float
    tensors, from prompts.run_responses; bad_tests counts failures that are the data's
    fault (a malformed test record), logged apart."""
    return dict(fmt=torch.tensor([float(p.format_ok) for p in parsed]),
                outcome=torch.tensor([float(r.all_passed) for r in results]),
                execution=torch.tensor([execution_reward(r.statuses if p.code is not None else None)
                                        for p, r in zip(parsed, results)]),
                pass_rate=torch.tensor([r.pass_rate for r in results]),
                bad_tests=sum("bad test" in r.first_error for r in results))


@torch.no_grad()
def think_scores(rm, rm_tokenizer, problems, parsed, score, device):
    """Rt of each response where `score` (a bool tensor) is set, NaN elsewhere (such an Rt
    is never read: its gate is 0). A scored response with no reasoning gets Rt = 0, the
    lowest (nothing to score, and Rt must be finite where it counts). No reward model: all
    NaN, so nothing is logged as a score."""
    think = torch.full((len(parsed),), float("nan"))
    if rm is None:
        return think
    think[score] = 0.0
    todo = [i for i in range(len(parsed)) if score[i] and parsed[i].think]
    if todo:
        texts = [prompts.reward_model_text(problems[i].statement, parsed[i].think) for i in todo]
        if rm_placement == "cpu":      # in for scoring only: the update then has the memory
            rm.to(device)
        raw = reward_scores(rm, rm_tokenizer, texts, device, max_length=rm_max_length,
                            batch_size=rm_batch_size)
        think[todo] = think_reward(raw).cpu()
        if rm_placement == "cpu":
            rm.to("cpu")
    return think


def pad_batch(rows, pad_id, device):
    """Left-pad token lists into (input_ids, attention_mask)."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def response_logprobs(model, seqs, pad_id, device, with_entropy=False):
    """Log-probs (and entropies) of the response tokens of (prompt_ids, response_ids)
    pairs, as [B, R] right-aligned with a mask, R the longest response. They are taken at
    the rollout's temperature: those of the distribution the responses were sampled from."""
    ids, attn = pad_batch([p + r for p, r in seqs], pad_id, device)
    out = token_logprobs(model, ids, attn, return_entropy=with_entropy, temperature=temperature,
                         chunk=logprob_chunk)
    lp, ent = out if with_entropy else (out, None)
    width = max(len(r) for _, r in seqs)
    resp_mask = torch.zeros((len(seqs), width), device=device)
    for i, (_, r) in enumerate(seqs):
        resp_mask[i, width - len(r):] = 1
    take = lambda x: x[:, -width:]
    return take(lp), (take(ent) if ent is not None else None), resp_mask


def micro_batches(lengths, max_tokens, max_seqs):
    """One rank's micro-batches over one mini-batch: lists of indices into `lengths` (the
    sequences' tokens, prompt + response).

    max_tokens = 0: consecutive runs of max_seqs sequences, in sampling order.
    max_tokens > 0: longest first, packed while the padded size (rows x the longest row)
    stays within max_tokens and the rows within max_seqs (0: no cap); a sequence over the
    budget goes alone. policy_loss sums over tokens and divides by normalisers of the
    whole mini-batch, so the gradient does not depend on the grouping."""
    if max_tokens <= 0:
        return [list(range(s, min(s + max_seqs, len(lengths)))) for s in range(0, len(lengths), max_seqs)]
    batches = []
    for i in sorted(range(len(lengths)), key=lambda i: -lengths[i]):
        b = batches[-1] if batches else None
        if b and (len(b) + 1) * lengths[b[0]] <= max_tokens and (max_seqs <= 0 or len(b) < max_seqs):
            b.append(i)
        else:
            batches.append([i])
    return batches


def same_count_everywhere(batches, device):
    """Under FSDP every rank must run as many forwards as the others (each gathers every
    layer): split this rank's largest micro-batch until it has the most any rank has."""
    target = torch.tensor(len(batches), device=device)
    if dist.is_initialized():
        dist.all_reduce(target, op=dist.ReduceOp.MAX)
    while len(batches) < int(target):
        big = max(range(len(batches)), key=lambda j: len(batches[j]))
        half = len(batches[big]) // 2
        batches[big:big + 1] = [batches[big][:half], batches[big][half:]]
    return batches


@torch.no_grad()
def frozen_logprobs(model, seqs, minis, pad_id, device, autocast):
    """{micro-batch: log-probs} under a model that does not change during the update: the
    rollout policy (off-policy updates) or the reference."""
    with autocast:
        return {tuple(mb): response_logprobs(model, [seqs[i] for i in mb], pad_id, device)[0]
                for mbs in minis for mb in mbs}


def global_metrics(sums, device, maxes=None):
    """Named scalars summed over ranks in one all_reduce, plus `maxes` reduced by max:
    {name: float}. Every rank must pass the same names."""
    out = dict(zip(sums, all_sum(torch.tensor([float(v) for v in sums.values()],
                                              dtype=torch.float64, device=device)).tolist()))
    for name, value in (maxes or {}).items():
        t = torch.tensor(float(value), dtype=torch.float64, device=device)
        if dist.is_initialized():
            dist.all_reduce(t, op=dist.ReduceOp.MAX)
        out[name] = t.item()
    return out


def nan_mean(total, count):
    return total / count if count else float("nan")


def nan_sd(total, total_sq, count):
    """Sample standard deviation from a sum and a sum of squares (NaN below 2 values)."""
    if count < 2:
        return float("nan")
    return math.sqrt(max(total_sq - total * total / count, 0.0) / (count - 1))


def evaluate(model, tokenizer, problems, step, rm, rm_tokenizer, device, rank, world_size):
    """Greedy pass@1 on the tests the reward sees and on the plus tests (a problem's
    complete tests where it has them, as EvalPlus's HE / HE+), format rate, mean response
    tokens and mean Rt (every response scored) on the held-out problems."""
    probs, outs = rollout(model, tokenizer, problems, 1, step, eval_max_new_tokens or max_new_tokens,
                          True, device, rank, world_size, eval_batch_size)
    texts = [o.text for o in outs]
    parsed, results = prompts.run_responses(probs, texts, workers=workers, limits=limits,
                                            answer_only=answer_only)
    extra = [i for i, p in enumerate(probs) if p.plus_tests]    # the rest: plus = base tests
    plus = list(results)
    for i, r in zip(extra, prompts.run_responses(
            [dataclasses.replace(probs[i], tests=probs[i].plus_tests) for i in extra],
            [texts[i] for i in extra], workers=workers, limits=limits,
            answer_only=answer_only)[1]):
        plus[i] = r
    terms = reward_terms(parsed, results)
    think = think_scores(rm, rm_tokenizer, probs, parsed, torch.ones(len(outs), dtype=torch.bool),
                         device)
    m = global_metrics({"passed": terms["outcome"].sum(), "fmt": terms["fmt"].sum(),
                        "passed_plus": sum(r.all_passed for r in plus),
                        "tokens": sum(len(o.response_ids) for o in outs), "n": len(outs),
                        "think": torch.nan_to_num(think).sum(), "scored": (~think.isnan()).sum()},
                       device)
    n = max(m["n"], 1.0)
    return {"kind": "eval", "step": step, "pass_at_1": m["passed"] / n,
            "pass_at_1_plus": m["passed_plus"] / n, "format_rate": m["fmt"] / n,
            "mean_tokens": m["tokens"] / n, "think_score": nan_mean(m["think"], m["scored"]),
            "n": int(m["n"])}


def rollout_sums(terms, think, think_seen, rewards, resp_len, truncated):
    """This rank's sums for the step's log (global_metrics adds them over ranks). Rt of the
    reward (think: NaN where the gate left it unscored) and Rt as the monitor sees it
    (think_seen: the same plus the watched failing samples), split by passing code."""
    passed, has_rt, seen = terms["outcome"] > 0, ~think.isnan(), ~think_seen.isnan()
    rt, rt_seen = torch.nan_to_num(think), torch.nan_to_num(think_seen)
    return {"reward": rewards.sum(), "fmt": terms["fmt"].sum(), "passed": passed.sum(),
            "execution": terms["execution"].sum(),
            "rt": rt.sum(), "n_rt": has_rt.sum(),
            "rt_pass": rt_seen[passed].sum(), "n_rt_pass": (seen & passed).sum(),
            "rt_pass_sq": (rt_seen[passed] ** 2).sum(),
            "rt_fail": rt_seen[~passed].sum(), "n_rt_fail": (seen & ~passed).sum(),
            "rt_fail_sq": (rt_seen[~passed] ** 2).sum(),
            "resp_len": resp_len.sum(), "truncated": truncated.sum(),
            "bad_tests": terms["bad_tests"], "n": len(rewards)}


def train_record(step, m, lr, grad_norms, times):
    """The step's JSON line from the global sums m: means per response, per scored
    response (Rt) and per response token (clipping, KL, entropy)."""
    n, tok = m["n"], max(m["tokens"], 1.0)
    return {
        "kind": "train", "step": step, "reward": m["reward"] / n,
        "reward_format": m["fmt"] / n, "reward_outcome": m["passed"] / n,
        "reward_execution": m["execution"] / n,
        "reward_think": nan_mean(m["rt"], m["n_rt"]), "rm_gate_share": m["n_rt"] / n,
        "pass_rate": m["passed"] / n, "format_rate": m["fmt"] / n,
        "think_passing": nan_mean(m["rt_pass"], m["n_rt_pass"]),
        "think_failing": nan_mean(m["rt_fail"], m["n_rt_fail"]),
        # how many samples those two means have, and their spread: the alarm's noise
        "think_passing_n": int(m["n_rt_pass"]), "think_failing_n": int(m["n_rt_fail"]),
        "think_passing_sd": nan_sd(m["rt_pass"], m["rt_pass_sq"], m["n_rt_pass"]),
        "think_failing_sd": nan_sd(m["rt_fail"], m["rt_fail_sq"], m["n_rt_fail"]),
        "resp_len_mean": m["resp_len"] / n, "resp_len_max": int(m["resp_len_max"]),
        "truncated_share": m["truncated"] / n, "bad_tests": int(m["bad_tests"]),
        "loss": m["loss"], "clip_low": m["clipped_low"] / tok, "clip_high": m["clipped_high"] / tok,
        "clip_dual": m["clipped_dual"] / tok, "approx_kl": m["approx_kl"] / tok,
        "entropy": m["entropy"] / tok, "grad_norm": sum(grad_norms) / len(grad_norms), "lr": lr,
        "pad_share": 1 - m["real"] / max(m["padded"], 1.0),   # of the update's forward tokens
        **{f"time_{k}": v for k, v in times.items() if k != "elapsed"},
        "tokens_per_s": m["resp_len"] / max(times["gen"], 1e-9), "elapsed": times["elapsed"],
    }


HACK_RT_RISE = 0.05    # failing samples' Rt up by this much from one window to the next ...
HACK_PASS_STALL = 0.02  # ... while the pass rate rose by at most this much
HACK_GAP_RATIO = 0.5    # the passing-minus-failing Rt gap fell to half of the run's first
HACK_MIN_GAP = 0.05     # (only when the first window had a gap of at least this much)
HACK_Z = 3.0            # and either change is at least 3 standard errors of itself


def watched(outcome, scored, step, first_index, share):
    """The failing samples the monitor scores for the log: those the gate left unscored,
    each picked with probability `share` by data.seed_hash(seed, "monitor", step, index)
    (index: its place in the step's global list), so the pick depends on nothing else."""
    pick = torch.tensor([data.seed_hash(seed, "monitor", step, first_index + k) / 2 ** 48 < share
                         for k in range(len(outcome))])
    return pick & (outcome == 0) & ~scored


def window_stats(records, key):
    """(mean, standard error) of `key` over a window of step records, or None when fewer
    than half its steps measured it. With `key`_n and `key`_sd in the records (Rt: a few
    samples a step) the mean pools the samples and the error is that of the pooled mean;
    without them (the pass rate, over the whole rollout) each step is one value, error 0."""
    rows = [r for r in records if r.get(key) is not None and not math.isnan(r[key])]
    if len(rows) * 2 < len(records):
        return None
    if not all(r.get(f"{key}_n") for r in rows):
        return sum(r[key] for r in rows) / len(rows), 0.0
    n = sum(r[f"{key}_n"] for r in rows)
    mean = sum(r[f"{key}_n"] * r[key] for r in rows) / n
    sq = sum(r[f"{key}_n"] * (r[key] ** 2 + (r[f"{key}_sd"] if r[f"{key}_n"] > 1 else 0.0) ** 2)
             for r in rows)
    return mean, math.sqrt(max(sq / n - mean ** 2, 0.0) / n)


def _gap_stats(records):
    passing, failing = window_stats(records, "think_passing"), window_stats(records, "think_failing")
    if passing is None or failing is None:
        return None
    return passing[0] - failing[0], math.hypot(passing[1], failing[1])


def hacking_alarm(history, window):
    """Whether the log shows reward hacking, and why; history: the run's train records.

    Two rules over windows of `window` steps (a window counts when at least half its
    steps have the values measured; before two full windows there is no alarm):
    - "Rt of failing code climbs while the pass rate stalls": think_failing's mean over the
      last window exceeds the window before by >= HACK_RT_RISE (0.05) and by >= HACK_Z (3)
      standard errors of the rise, while pass_rate's mean rose by <= HACK_PASS_STALL
      (0.02). The reward model is learning to like what fails: the ungated additive
      reward pays the policy for exactly that.
    - "the passing-failing Rt gap closes": think_passing - think_failing averaged over the
      last window is at most HACK_GAP_RATIO (1/2) of the same over the run's first window,
      which was >= HACK_MIN_GAP (0.05), and the fall is >= HACK_Z standard errors: the
      reasoning score no longer tells right code from wrong (the paper's Fig. 4d, watched
      while it happens).
    The standard errors come from the samples behind each mean (window_stats): the monitor
    scores about monitor_share x (failing samples) a step, a handful on a small run, so a
    window mean moves by a few hundredths from noise alone. Measured on the toy world
    before the error test: a 0.05 rise alone fired in healthy outcome and posterior runs.
    think_failing is measured in every mode because the monitor scores a share of failing
    samples for the log only (monitor_share)."""
    if window <= 0 or len(history) < 2 * window:
        return False, ""
    last, before = history[-window:], history[-2 * window:-window]
    reasons = []
    rt_now, rt_before = window_stats(last, "think_failing"), window_stats(before, "think_failing")
    pass_now, pass_before = window_stats(last, "pass_rate"), window_stats(before, "pass_rate")
    if None not in (rt_now, rt_before, pass_now, pass_before):
        rise, noise = rt_now[0] - rt_before[0], math.hypot(rt_now[1], rt_before[1])
        if rise >= max(HACK_RT_RISE, HACK_Z * noise) and \
                pass_now[0] - pass_before[0] <= HACK_PASS_STALL:
            reasons.append(f"Rt of failing code {rt_before[0]:.3f} -> {rt_now[0]:.3f} "
                           f"(+-{noise:.3f}) while the pass rate went {pass_before[0]:.3f} -> "
                           f"{pass_now[0]:.3f}")
    both = [r for r in history if not any(r.get(k) is None or math.isnan(r[k])
                                          for k in ("think_passing", "think_failing"))]
    gap_first = _gap_stats(both[:window]) if len(both) >= 2 * window else None
    gap_now = _gap_stats(both[-window:]) if gap_first is not None else None
    if gap_first is not None and gap_now is not None and gap_first[0] >= HACK_MIN_GAP and \
            gap_now[0] <= HACK_GAP_RATIO * gap_first[0] and \
            gap_first[0] - gap_now[0] >= HACK_Z * math.hypot(gap_first[1], gap_now[1]):
        reasons.append(f"passing-failing Rt gap {gap_first[0]:.3f} -> {gap_now[0]:.3f}")
    return bool(reasons), "; ".join(reasons)


def note_hacking(history, record):
    """Add the step's record to the history and its verdict to the record (hacking_alarm,
    hacking_reason); one line on stderr when the alarm goes on."""
    was_on = bool(history and history[-1].get("hacking_alarm"))
    history.append(record)
    alarm, reason = hacking_alarm(history, monitor_window)
    record.update(hacking_alarm=int(alarm), hacking_reason=reason)
    if alarm and not was_on and is_main():
        print(f"hacking_alarm at step {record['step']}: {reason}", file=sys.stderr, flush=True)


def read_train_records(path):
    """The train records already in the metrics file (a resumed run's past)."""
    if not os.path.exists(path):
        return []
    with open(path) as f:
        return [r for r in map(json.loads, f) if r.get("kind") == "train"]


def log_train(path, record, bar):
    if is_main():
        append_metrics(path, record)
        bar.update(1)
        tqdm.write(f"step {record['step']} | R {record['reward']:.3f} | pass {record['pass_rate']:.3f} | "
                   f"fmt {record['format_rate']:.3f} | Rt+ {record['think_passing']:.3f} | "
                   f"len {record['resp_len_mean']:.0f} | kl {record['approx_kl']:.2e} | "
                   f"gn {record['grad_norm']:.3f} | {record['time_step']:.1f}s "
                   f"(gen {record['time_gen']:.1f} box {record['time_sandbox']:.1f} "
                   f"rm {record['time_rm']:.1f} train {record['time_train']:.1f})")


def log_eval(path, ev):
    if is_main():
        append_metrics(path, ev)
        tqdm.write(f"eval step {ev['step']} | pass@1 {ev['pass_at_1']:.3f} (plus "
                   f"{ev['pass_at_1_plus']:.3f}) | format "
                   f"{ev['format_rate']:.3f} | tokens {ev['mean_tokens']:.0f} | "
                   f"think {ev['think_score']:.3f}")


# ---------------------------------------------------------------- main
if __name__ == "__main__":
    config = configure(globals())
    exit_on_setup_error()  # bad paths and flags: one line naming them, exit status 1
    if reward_mode not in REWARD_MODES or loss_agg not in LOSS_AGGS:
        raise SetupError(f"--reward_mode must be one of {REWARD_MODES} and --loss_agg one of "
                         f"{LOSS_AGGS}, not {reward_mode!r} and {loss_agg!r}")
    if reward_mode != "outcome" and not rm_from:
        raise SetupError(f"--reward_mode={reward_mode} needs a reward model: set --rm_from=DIR")
    if 0 < clip_ratio_c <= 1:
        raise SetupError(f"--clip_ratio_c={clip_ratio_c}: must be 0 (off) or above 1")
    if rm_placement not in ("gpu", "cpu"):
        raise SetupError(f"--rm_placement must be gpu or cpu, not {rm_placement!r}")
    if micro_batch_size <= 0 and micro_batch_tokens <= 0:
        raise SetupError("--micro_batch_size must be > 0 unless --micro_batch_tokens is set")
    rank, local_rank, world_size, device = init_distributed()
    compute_dtype = default_dtype(device) if dtype == "auto" else getattr(torch, dtype)
    hf_logging.disable_progress_bar()
    torch.manual_seed(seed)
    n_seqs = prompts_per_step * group_size
    mini = mini_batch_size or n_seqs
    if n_seqs % world_size or n_seqs % mini or mini % world_size:
        raise SetupError(f"--prompts_per_step * --group_size ({n_seqs}) must split evenly over "
                         f"{world_size} ranks and into mini-batches of {mini} (--mini_batch_size)")
    per_rank, mini_local = n_seqs // world_size, mini // world_size
    workers = sandbox_workers or sandbox.default_workers()
    limits = sandbox.Limits(test_timeout=test_timeout)

    # every rank decides before any could create them; saving is collective, so all build
    build = [d for d in (init_from, rm_from)
             if tiny_init and d and d != "resume" and not os.path.exists(d)]
    barrier()
    for d in build:
        make_tiny_checkpoint(d)

    # ------------------------------------------------ inputs, checked before anything is written
    resume = init_from == "resume"
    if not resume:
        check_model_dir(init_from, "--init_from")
    if rm_from:
        check_model_dir(rm_from, "--rm_from")
        rm_run = os.path.dirname(os.path.normpath(rm_from))   # a train_rm.py out_dir?
        if os.path.isdir(os.path.join(rm_run, "last")) and \
                not os.path.exists(os.path.join(rm_run, "FINISHED")):
            print0(f"warning: --rm_from={rm_from}: the train_rm.py run in {rm_run} has not "
                   f"finished (no FINISHED file): this is its best so far; resume it with "
                   f"--out_dir={rm_run} --init_from=resume")

    def load_problem_file(path, flag, limit=None):
        check_data_file(path, flag)      # an empty or all-bad file is a LoadError too
        return data.load_problems(path, limit=limit, allow_empty=False)

    problems = load_problem_file(train_file, "--train_file")
    eval_problems = (load_problem_file(eval_file, "--eval_file", eval_max_problems or None)
                     if eval_file else [])
    load_dir = os.path.join(out_dir, "last") if resume else init_from
    if resume and not recover_checkpoint(load_dir):
        raise SetupError(f"--init_from=resume: no complete checkpoint at {load_dir} "
                         f"(--out_dir={out_dir}; nor an interrupted save's {load_dir}.tmp or .old)")
    ref_dir = ""  # the frozen reference policy of kl_beta > 0: the run's starting point
    if kl_beta > 0:
        ref_dir = read_extra(load_dir)["config"]["init_from"] if resume else init_from
        check_model_dir(ref_dir, "the reference policy (the run's --init_from, for --kl_beta)")

    # ------------------------------------------------ the memory plan, before any weight is read
    memory = planning.grpo_plan(config, planning.model_shape(load_dir),
                                planning.model_shape(rm_from) if rm_from else None, world_size)
    planning.enforce(memory, gpu_gb or device_gb(device), plan, force_plan, print0)

    # ------------------------------------------------ data
    tokenizer = load_tokenizer(load_dir)
    keep = [p for p in problems if len(tokenizer(prompt_text(tokenizer, p), add_special_tokens=False)
                                          ["input_ids"]) <= max_prompt_tokens]
    print0(f"train problems: {len(problems)} loaded, {len(problems) - len(keep)} dropped "
           f"(prompt over {max_prompt_tokens} tokens)")
    problems = keep
    if not problems:
        raise SetupError(f"--train_file={train_file}: every prompt is over "
                         f"--max_prompt_tokens={max_prompt_tokens}")

    # ------------------------------------------------ models and optimizer
    mixed = compute_dtype != torch.float32
    if world_size > 1:   # rank 0 reads the checkpoint, the others get their shards by broadcast
        policy = load_sharded(lambda: load_policy(load_dir, "cpu", dtype=torch.float32), device,
                              mixed, checkpointing=activation_checkpointing)
    else:
        policy = load_policy(load_dir, device, dtype=torch.float32)
        if activation_checkpointing:
            policy.activation_checkpointing_enable({"use_reentrant": False})
    policy.train()
    autocast = (torch.autocast(device.type, dtype=compute_dtype)
                if mixed and world_size == 1 else nullcontext())
    rm = rm_tokenizer = None
    if rm_from:  # in outcome mode only to log thinking scores; its own tokenizer, as the
        # reward model may be of another family than the policy
        rm_tokenizer = load_tokenizer(rm_from)
        rm = in_turn(lambda: load_reward_model(    # in host RAM one rank at a time
            rm_from, device if rm_placement == "gpu" else torch.device("cpu"), dtype=compute_dtype,
            tokenizer=rm_tokenizer))
        rm.eval().requires_grad_(False)
    ref = None
    if kl_beta > 0:
        ref = in_turn(lambda: load_policy(ref_dir, device, dtype=compute_dtype))
        ref.eval().requires_grad_(False)
    optimizer = torch.optim.AdamW(policy.parameters(), lr=learning_rate, weight_decay=weight_decay)
    start_step = 0
    if resume:
        start_step = load_training_state(load_dir, optimizer)["step"]
        print0(f"resumed from {load_dir} at step {start_step}")
    metrics_path = os.path.join(out_dir, log_file)
    if is_main():
        os.makedirs(out_dir, exist_ok=True)
        trim_metrics(metrics_path, start_step)
    pad_id = tokenizer.pad_token_id
    on_policy = ppo_epochs == 1 and mini == n_seqs   # then old log-probs = detached current ones
    sandbox_thread = ThreadPoolExecutor(max_workers=1)   # Ro runs while the old log-probs do
    gen_model = None
    history = read_train_records(metrics_path)    # the alarm's memory (a resumed run's too)

    # ------------------------------------------------ training loop
    if eval_problems and eval_interval and start_step == 0:   # the starting point, for reference
        gen_model = generation_model(policy, gen_model, device)
        log_eval(metrics_path, evaluate(gen_model, tokenizer, eval_problems, 0, rm, rm_tokenizer,
                                        device, rank, world_size))
        gen_model = gen_model if keep_rollout_copy else None
    t_start = time.time()
    bar = tqdm(total=max_steps, initial=start_step, disable=not is_main(), dynamic_ncols=True)
    for step in range(start_step, max_steps):
        t0 = time.time()
        lr = warmup_lr(step, learning_rate, warmup_steps)
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = [problems[i] for i in step_problems(len(problems), step, prompts_per_step, seed)]

        # -------- rollout: group_size samples of each problem; this rank's share
        gen_model = generation_model(policy, gen_model, device)
        probs, outs = rollout(gen_model, tokenizer, batch, group_size, step, max_new_tokens, False,
                              device, rank, world_size, rollout_batch_size)
        gen_model = gen_model if keep_rollout_copy else None
        seqs = [(o.prompt_ids, o.response_ids) for o in outs]
        resp_len = torch.tensor([float(len(o.response_ids)) for o in outs], device=device)
        truncated = torch.tensor([float(o.truncated) for o in outs], device=device)
        lengths = [len(p) + len(r) for p, r in seqs]
        minis = [same_count_everywhere([[m0 + i for i in mb] for mb in micro_batches(
                     lengths[m0:m0 + mini_local], micro_batch_tokens, micro_batch_size)], device)
                 for m0 in range(0, per_rank, mini_local)]     # index lists, per mini-batch
        t_gen = time.time()

        # -------- rewards: the sandbox (Rf, Ro) runs while the frozen log-probs are taken
        judged = sandbox_thread.submit(prompts.run_responses, probs, [o.text for o in outs],
                                       workers=workers, limits=limits, answer_only=answer_only,
                                       stop_on_failure=reward_mode != "soft" and not w_exec)  # exact P_o
        old_lp = {} if on_policy else frozen_logprobs(policy, seqs, minis, pad_id, device, autocast)
        ref_lp = {} if ref is None else frozen_logprobs(ref, seqs, minis, pad_id, device, autocast)
        t_old = time.time()
        parsed, results = judged.result()
        t_box = time.time()
        terms = reward_terms(parsed, results)
        # the reward model scores where its gate is open, and passing code in every mode (logged)
        scored = (gate(reward_mode, terms["outcome"], terms["pass_rate"]) > 0) | (terms["outcome"] > 0)
        # and, for the hacking monitor, a share of the failing samples (the log only)
        watch = watched(terms["outcome"], scored, step, rank * len(outs), monitor_share)
        think_seen = think_scores(rm, rm_tokenizer, probs, parsed, scored | watch, device)
        think = torch.where(scored, think_seen, torch.full_like(think_seen, float("nan")))
        t_rm = time.time()
        rewards = gated_reward(terms["fmt"], terms["outcome"], think, terms["pass_rate"],
                               reward_mode, w_format, w_outcome, w_think, terms["execution"], w_exec)

        # -------- advantages, over each group (gathered across ranks)
        adv = gather_group_advantages(rewards.to(device), group_size, std_normalize)

        # -------- update: ppo_epochs passes over mini-batches, micro-batches accumulating
        keep_seq = (1 - truncated) if mask_truncated else torch.ones_like(truncated)
        sums = {k: torch.zeros((), device=device)
                for k in ("loss", "clipped_low", "clipped_high", "clipped_dual", "approx_kl",
                          "entropy", "tokens", "padded", "real")}
        grad_norms = []
        for epoch in range(ppo_epochs):
            for mbs in minis:
                rows = torch.tensor([i for mb in mbs for i in mb], device=device)
                n_tok = all_sum((resp_len[rows] * keep_seq[rows]).sum()).clamp(min=1)
                for j, mb in enumerate(mbs):
                    if world_size > 1:
                        policy.set_requires_gradient_sync(grad_sync_every_micro_batch
                                                          or j == len(mbs) - 1)
                    with autocast:
                        lp, ent, mask = response_logprobs(policy, [seqs[i] for i in mb], pad_id,
                                                          device, with_entropy=True)
                    at = torch.tensor(mb, device=device)
                    mask = mask * keep_seq[at, None]
                    old = lp.detach() if on_policy else old_lp[tuple(mb)]
                    loss, st = policy_loss(lp.float(), old.float(), adv[at], mask, eps_low,
                                           eps_high, loss_agg, n_tok, mini, max_new_tokens,
                                           ref_lp.get(tuple(mb)), kl_beta, clip_ratio_c)
                    # FSDP averages gradients over ranks; the loss is already a global mean
                    (loss * world_size).backward()
                    sums["loss"] += loss.detach() / (ppo_epochs * len(minis))
                    for k, v in st.items():
                        sums[k] += v
                    sums["entropy"] += (ent.detach() * mask).sum()
                    sums["tokens"] += mask.sum()
                    sums["padded"] += len(mb) * max(lengths[i] for i in mb)   # the forward's size
                    sums["real"] += sum(lengths[i] for i in mb)
                gn = torch.nn.utils.clip_grad_norm_(policy.parameters(),
                                                    grad_clip if grad_clip > 0 else math.inf)
                grad_norms.append((gn.full_tensor() if hasattr(gn, "full_tensor") else gn).item())
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        t_train = time.time()

        # -------- log: named sums over ranks, one JSON line
        m = global_metrics({**sums, **rollout_sums(terms, think, think_seen, rewards, resp_len,
                                                   truncated)},
                           device, maxes={"resp_len_max": resp_len.max()})
        times = {"gen": t_gen - t0, "old_logp": t_old - t_gen, "sandbox": t_box - t_old,
                 "rm": t_rm - t_box, "train": t_train - t_rm, "step": time.time() - t0,
                 "elapsed": time.time() - t_start}
        record = train_record(step + 1, m, lr, grad_norms, times)
        note_hacking(history, record)
        log_train(metrics_path, record, bar)
        done = step + 1
        if eval_problems and eval_interval and (done % eval_interval == 0 or done == max_steps):
            gen_model = generation_model(policy, gen_model, device)
            log_eval(metrics_path, evaluate(gen_model, tokenizer, eval_problems, done, rm,
                                            rm_tokenizer, device, rank, world_size))
            gen_model = gen_model if keep_rollout_copy else None
        if done % ckpt_interval == 0 or done == max_steps:
            save_checkpoint(os.path.join(out_dir, "last"), policy, tokenizer,
                            extra={"config": config, "step": done}, optimizer=optimizer)
    bar.close()
    sandbox_thread.shutdown()
    sandbox.shutdown()
    if dist.is_initialized():
        dist.destroy_process_group()
