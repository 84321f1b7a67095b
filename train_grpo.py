"""
P-GRPO: GRPO for code whose reward adds a reasoning reward model's score only when the
code passes every test (ReCode, arXiv 2508.05170, Eq. 1):

    R_i = Rf_i + Ro_i + Ro_i * Rt_i

Rf: 1 if the response is exactly <think>..</think><answer>```python ..```</answer>;
Ro: 1 if the extracted code passes ALL tests in the sandbox; Rt in [0, 1]: the reward
model's score of (problem, think text), mapped through a sigmoid.

With no arguments it runs P-GRPO on the toy world (toy.py), building the world and its
reward model on first use:
    python train_grpo.py
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
   shards is ~5x slower). Every sequence samples with its own seed (seed, step, index),
   so rollouts do not depend on the number of ranks, the batch they share, or a resume.
3. Rewards: Rf from the strict format parser; Ro from sandbox.run_batch (warm fork
   servers, in a thread, overlapping the old-log-prob forward); Rt from the reward model,
   run only on samples whose score can count (posterior gate: Ro = 1).
4. gated_reward per reward_mode: outcome (Rf + Ro, the GRPO baseline), posterior
   (Eq. 1), soft (Rf + Ro + pass_rate * Rt) and additive (Rf + Ro + Rt, ungated).
5. group_advantages over each group of group_size, gathered across ranks.
6. policy_loss: clipped ratio with clip-higher (eps_low 0.2, eps_high 0.28), VeRL's
   dual-clip (clip_ratio_c 3) and log-ratio clamp, and the token-level mean over all
   response tokens of the global batch (the normalizer counts tokens over micro-batches
   and ranks). No KL, no reference model unless kl_beta > 0.
7. Update: ppo_epochs passes over mini-batches; with one pass and one mini-batch the
   run is on-policy and the rollout log-probs are the detached current ones (no extra
   forward). AdamW, constant lr (paper 1e-6) after an optional warmup, grad clipping.
"""

import math
import os
import threading
import time
from contextlib import nullcontext

import torch
import torch.distributed as dist
from tqdm import tqdm
from transformers.utils import logging as hf_logging

import data
import prompts
import sandbox
import toy
from configurator import configure
from model import (SetupError, append_metrics, apply_chat, barrier, check_data_file, check_model_dir,
                   default_dtype, exit_on_setup_error, generate, init_distributed,
                   is_main, load_policy, load_reward_model, load_tokenizer, load_training_state,
                   make_tiny_checkpoint, print0, read_extra, recover_checkpoint, reward_scores,
                   save_checkpoint, token_logprobs, trim_metrics, unsharded_copy, wrap_fsdp)

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
prompts_per_step = 8  # paper: 32
group_size = 8
max_new_tokens = 192  # paper: 4096
max_prompt_tokens = 512
temperature = 1.0  # rollouts'; the loss's log-probs are taken at it too
top_p = 1.0
learning_rate = 5e-5  # paper: 1e-6 for a 7B model; a tiny model needs larger steps
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
micro_batch_size = 16  # sequences per forward per rank
max_steps = 60  # paper: 1600
eval_interval = 20  # steps between evaluations (and at the end); 0 = never
eval_max_new_tokens = 0  # 0 = max_new_tokens
eval_max_problems = 0  # evaluate on the first N held-out problems; 0 = all
ckpt_interval = 20  # steps between checkpoints (and at the end)
sandbox_workers = 0  # 0 = this machine's cores / ranks on it
test_timeout = 6.0  # seconds per test
rm_max_length = 4096
rm_batch_size = 8
seed = 1337
dtype = "auto"  # compute dtype: auto (bf16 on GPU, fp32 on CPU), float32 or bfloat16
log_file = "metrics.jsonl"

REWARD_MODES = ("outcome", "posterior", "soft", "additive")
LOSS_AGGS = ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm")


# ---------------------------------------------------------------- the method's equations
def think_reward(scores):
    """Rt = sigmoid(r): the reward model's raw Bradley-Terry score mapped into [0, 1]
    (the paper only says Rt is in [0, 1]; a sigmoid is the BT model's own probability)."""
    return torch.sigmoid(scores.float())


def gated_reward(fmt, outcome, think, pass_rate, mode, w_format=1.0, w_outcome=1.0, w_think=1.0):
    """The per-response reward, for each reward_mode (all arguments are float tensors):

        outcome:    R = wf*Rf + wo*Ro                     (GRPO baseline)
        posterior:  R = wf*Rf + wo*Ro + wt*Ro*Rt          (P-GRPO, Eq. 1)
        soft:       R = wf*Rf + wo*Ro + wt*P_o*Rt         (P_o: share of tests passed)
        additive:   R = wf*Rf + wo*Ro + wt*Rt             (ungated: invites reward hacking)

    Rt may be anything (NaN included) where its gate is 0: it is never looked at there."""
    base = w_format * fmt + w_outcome * outcome
    if mode == "outcome":
        return base
    gate = {"posterior": outcome, "soft": pass_rate, "additive": torch.ones_like(outcome)}[mode]
    return base + w_think * torch.where(gate > 0, gate * think, torch.zeros_like(think))


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


# ---------------------------------------------------------------- batches and rollouts
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


def sample_seed(seed, step, index):
    """The sampling seed of one sequence: a function of its place in the run only."""
    return (seed * 1_000_003 + step) * 10_000_019 + index


def score_responses(problems, texts, mode, rm, rm_tokenizer, device, workers):
    """Rf, Ro, pass rate and Rt for a list of (problem, response text).

    The sandbox runs in a thread (the caller may overlap work with it via the returned
    join function); Rt is computed only where its gate can be non-zero (mode "all":
    everywhere, for evaluation)."""
    parsed = [prompts.parse_response(t) for t in texts]
    jobs = [(p.code or "", prob.tests) for p, prob in zip(parsed, problems)]
    box = {}
    limits = sandbox.Limits(test_timeout=test_timeout)
    runner = threading.Thread(target=lambda: box.update(res=sandbox.run_batch(
        jobs, workers=workers, limits=limits, stop_on_failure=mode != "soft")))
    runner.start()

    def finish():
        runner.join()
        res = box["res"]
        fmt = torch.tensor([float(p.format_ok) for p in parsed])
        outcome = torch.tensor([float(r.all_passed and p.code is not None)
                                for r, p in zip(res, parsed)])
        pass_rate = torch.tensor([r.pass_rate if p.code is not None else 0.0
                                  for r, p in zip(res, parsed)])
        # in outcome mode Rt is not part of the reward; passing samples are still
        # scored when a reward model is loaded, to log the thinking score
        gate = {"outcome": outcome, "posterior": outcome, "soft": pass_rate,
                "additive": torch.ones_like(outcome), "all": torch.ones_like(outcome)}[mode]
        think = torch.full_like(outcome, float("nan"))   # no reward model: no Rt to log
        if rm is not None:
            think[gate > 0] = 0.0     # a passing response without reasoning gets the lowest Rt
        todo = [i for i in range(len(texts)) if gate[i] > 0 and parsed[i].think]
        t0 = time.time()
        if todo and rm is not None:
            with torch.no_grad():
                raw = reward_scores(rm, rm_tokenizer, [prompts.reward_model_text(problems[i].statement,
                                                                           parsed[i].think)
                                                    for i in todo],
                                    device, max_length=rm_max_length, batch_size=rm_batch_size)
            think[todo] = think_reward(raw).cpu()
        errors = sum("bad test" in r.first_error for r in res)   # the data's fault: logged
        return dict(fmt=fmt, outcome=outcome, pass_rate=pass_rate, think=think,
                    rm_time=time.time() - t0, bad_tests=errors)
    return finish


def pad_batch(rows, pad_id, device):
    """Left-pad token lists into (input_ids, attention_mask)."""
    width = max(map(len, rows))
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for i, row in enumerate(rows):
        ids[i, width - len(row):] = torch.tensor(row)
        mask[i, width - len(row):] = 1
    return ids.to(device), mask.to(device)


def response_logprobs(model, seqs, pad_id, device, with_entropy=False, temperature=1.0):
    """Log-probs (and entropies) of the response tokens of (prompt_ids, response_ids)
    pairs, as [B, R] right-aligned with a mask, R the longest response. temperature: the
    rollout's, so that they are those of the distribution the responses were sampled from."""
    ids, attn = pad_batch([p + r for p, r in seqs], pad_id, device)
    out = token_logprobs(model, ids, attn, return_entropy=with_entropy, temperature=temperature)
    lp, ent = out if with_entropy else (out, None)
    width = max(len(r) for _, r in seqs)
    resp_mask = torch.zeros((len(seqs), width), device=device)
    for i, (_, r) in enumerate(seqs):
        resp_mask[i, width - len(r):] = 1
    take = lambda x: x[:, -width:]
    return take(lp), (take(ent) if ent is not None else None), resp_mask


def all_sum(x):
    if dist.is_initialized():
        dist.all_reduce(x)
    return x


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
    workers = sandbox_workers or max(1, len(os.sched_getaffinity(0)) //
                                     int(os.environ.get("LOCAL_WORLD_SIZE", 1)))

    # every rank decides before any could create them; saving is collective, so all build
    build = [d for d in (init_from, rm_from)
             if tiny_init and d and d != "resume" and not os.path.exists(d)]
    barrier()
    for d in build:
        make_tiny_checkpoint(d)
    if is_main():  # the toy world and its reward model, built on first use
        toy.ensure_for([init_from, train_file, eval_file])
        if reward_mode != "outcome" or rm_from:
            toy.ensure_reward_model(rm_from)
    barrier()

    # ------------------------------------------------ inputs, checked before anything is written
    resume = init_from == "resume"
    if not resume:
        check_model_dir(init_from, "--init_from")
    if rm_from:
        check_model_dir(rm_from, "--rm_from")

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

    # ------------------------------------------------ data
    tokenizer = load_tokenizer(load_dir)
    prompt_text = lambda prob: apply_chat(tokenizer, prompts.rl_prompt(prob))
    keep = [p for p in problems if len(tokenizer(prompt_text(p), add_special_tokens=False)
                                          ["input_ids"]) <= max_prompt_tokens]
    print0(f"train problems: {len(problems)} loaded, {len(problems) - len(keep)} dropped "
           f"(prompt over {max_prompt_tokens} tokens)")
    problems = keep
    if not problems:
        raise SetupError(f"--train_file={train_file}: every prompt is over "
                         f"--max_prompt_tokens={max_prompt_tokens}")

    # ------------------------------------------------ models and optimizer
    policy = load_policy(load_dir, device, dtype=torch.float32)
    policy.train()
    mixed = compute_dtype != torch.float32
    if world_size > 1:
        policy = wrap_fsdp(policy, mixed_precision=mixed)
    autocast = (torch.autocast(device.type, dtype=compute_dtype)
                if mixed and world_size == 1 else nullcontext())
    rm = rm_tokenizer = None
    if rm_from:  # in outcome mode only to log thinking scores; its own tokenizer, as the
        # reward model may be of another family than the policy
        rm_tokenizer = load_tokenizer(rm_from)
        rm = load_reward_model(rm_from, device, dtype=compute_dtype, tokenizer=rm_tokenizer)
        rm.eval().requires_grad_(False)
    ref = None
    if kl_beta > 0:
        ref = load_policy(ref_dir, device, dtype=compute_dtype)
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
    gen_model = None  # the unsharded copy used for generation under FSDP

    def rollout(batch_problems, step, greedy, new_tokens):
        """Generate this rank's share of the global list (problem x sample); returns
        (problems, outputs) for the local share."""
        global gen_model
        g = 1 if greedy else group_size
        flat = [(i, p) for i, p in enumerate(batch_problems) for _ in range(g)]
        share = len(flat) // world_size if not greedy else math.ceil(len(flat) / world_size)
        lo = rank * share
        mine = flat[lo:lo + share]
        if world_size > 1:
            gen_model = unsharded_copy(policy, device, dtype=compute_dtype, into=gen_model)
            model_for_gen = gen_model
        else:
            model_for_gen = policy
        model_for_gen.eval()
        outs = generate(model_for_gen, tokenizer, [prompt_text(p) for _, p in mine], new_tokens,
                        temperature=temperature, top_p=top_p, do_sample=not greedy,
                        device=device, seeds=[sample_seed(seed, step, lo + k) for k in range(len(mine))])
        policy.train()
        return [p for _, p in mine], outs

    def evaluate(step):
        """Greedy pass@1, format rate and mean response tokens on the held-out problems."""
        probs, outs = rollout(eval_problems, step, True, eval_max_new_tokens or max_new_tokens)
        scored = score_responses(probs, [o.text for o in outs], "all", rm, rm_tokenizer,
                                 device, workers)()
        think = scored["think"]
        totals = torch.tensor([float(scored["outcome"].sum()), float(scored["fmt"].sum()),
                               float(sum(len(o.response_ids) for o in outs)), float(len(outs)),
                               float(torch.nan_to_num(think).sum()), float((~think.isnan()).sum())],
                              device=device)
        all_sum(totals)
        n = max(totals[3].item(), 1.0)
        return {"kind": "eval", "step": step, "pass_at_1": totals[0].item() / n,
                "format_rate": totals[1].item() / n, "mean_tokens": totals[2].item() / n,
                "think_score": totals[4].item() / totals[5].item() if totals[5] else float("nan"),
                "n": int(totals[3].item())}

    def checkpoint(step):
        save_checkpoint(os.path.join(out_dir, "last"), policy, tokenizer,
                        extra={"config": config, "step": step}, optimizer=optimizer)

    # ------------------------------------------------ training loop
    if eval_problems and eval_interval and start_step == 0:   # the starting point, for reference
        ev = evaluate(0)
        if is_main():
            append_metrics(metrics_path, ev)
            print0(f"eval step 0 | pass@1 {ev['pass_at_1']:.3f} | format {ev['format_rate']:.3f} | "
                   f"tokens {ev['mean_tokens']:.0f} | think {ev['think_score']:.3f}")
    t_start = time.time()
    bar = tqdm(total=max_steps, initial=start_step, disable=not is_main(), dynamic_ncols=True)
    for step in range(start_step, max_steps):
        t0 = time.time()
        lr = learning_rate * min(1.0, (step + 1) / warmup_steps) if warmup_steps else learning_rate
        for group in optimizer.param_groups:
            group["lr"] = lr
        batch = [problems[i] for i in step_problems(len(problems), step, prompts_per_step, seed)]

        # -------- rollout
        probs, outs = rollout(batch, step, False, max_new_tokens)
        t_gen = time.time()
        seqs = [(o.prompt_ids, o.response_ids) for o in outs]
        finish_scoring = score_responses(probs, [o.text for o in outs], reward_mode, rm,
                                         rm_tokenizer, device, workers)

        # -------- old log-probs (overlaps the sandbox); the on-policy case needs none
        on_policy = ppo_epochs == 1 and mini == n_seqs
        micro_slices = [(s, min(s + micro_batch_size, m0 + mini_local))
                        for m0 in range(0, per_rank, mini_local)
                        for s in range(m0, m0 + mini_local, micro_batch_size)]
        old_lp, ref_lp = {}, {}
        with torch.no_grad(), autocast:
            for s, e in micro_slices:
                if not on_policy:
                    old_lp[s] = response_logprobs(policy, seqs[s:e], tokenizer.pad_token_id, device,
                                                  temperature=temperature)[0]
                if ref is not None:
                    ref_lp[s] = response_logprobs(ref, seqs[s:e], tokenizer.pad_token_id, device,
                                                  temperature=temperature)[0]
        t_old = time.time()

        # -------- rewards and advantages
        scores = finish_scoring()
        t_reward = time.time()
        rewards = gated_reward(scores["fmt"], scores["outcome"], scores["think"],
                               scores["pass_rate"], reward_mode, w_format, w_outcome, w_think)
        adv = gather_group_advantages(rewards.to(device), group_size, std_normalize)
        truncated = torch.tensor([float(o.truncated) for o in outs], device=device)
        resp_len = torch.tensor([float(len(o.response_ids)) for o in outs], device=device)
        keep_seq = (1 - truncated) if mask_truncated else torch.ones_like(truncated)

        # -------- update
        sum_keys = ("loss", "clipped_low", "clipped_high", "clipped_dual", "approx_kl", "entropy",
                    "tokens")
        sums = {k: torch.zeros((), device=device) for k in sum_keys}
        grad_norms = []
        for epoch in range(ppo_epochs):
            for m0 in range(0, per_rank, mini_local):
                m1 = m0 + mini_local
                n_tok = all_sum((resp_len[m0:m1] * keep_seq[m0:m1]).sum().clone()).clamp(min=1)
                for s, e in [(s, e) for s, e in micro_slices if m0 <= s < m1]:
                    if world_size > 1:
                        policy.set_requires_gradient_sync(e >= m1)
                    with autocast:
                        lp, ent, mask = response_logprobs(policy, seqs[s:e], tokenizer.pad_token_id,
                                                          device, with_entropy=True,
                                                          temperature=temperature)
                    mask = mask * keep_seq[s:e, None]
                    old = lp.detach() if on_policy else old_lp[s]
                    loss, st = policy_loss(lp.float(), old.float(), adv[s:e], mask, eps_low,
                                           eps_high, loss_agg, n_tok, mini, max_new_tokens,
                                           ref_lp.get(s), kl_beta, clip_ratio_c)
                    # FSDP averages gradients over ranks; the loss is already a global mean
                    (loss * world_size).backward()
                    sums["loss"] += loss.detach() / (ppo_epochs * (per_rank // mini_local))
                    for k, v in st.items():
                        sums[k] += v
                    sums["entropy"] += (ent.detach() * mask).sum()
                    sums["tokens"] += mask.sum()
                gn = torch.nn.utils.clip_grad_norm_(policy.parameters(),
                                                    grad_clip if grad_clip > 0 else math.inf)
                grad_norms.append((gn.full_tensor() if hasattr(gn, "full_tensor") else gn).item())
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
        t_train = time.time()

        # -------- metrics (global)
        think = scores["think"]
        passed = scores["outcome"] > 0
        scored = ~torch.isnan(think)
        local = torch.tensor([
            float(rewards.sum()), float(scores["fmt"].sum()), float(scores["outcome"].sum()),
            float(torch.nan_to_num(think).sum()), float(scored.sum()),
            float(torch.nan_to_num(think)[passed].sum()), float((scored & passed).sum()),
            float(torch.nan_to_num(think)[~passed].sum()), float((scored & ~passed).sum()),
            float(resp_len.sum()), float(resp_len.max()), float(truncated.sum()),
            float(scores["bad_tests"]), float(len(outs))], device=device)
        sums_vec = dict(zip(sum_keys, all_sum(torch.stack([sums[k] for k in sum_keys])).tolist()))
        if dist.is_initialized():
            maxlen = local[10].clone()
            dist.all_reduce(maxlen, op=dist.ReduceOp.MAX)
            all_sum(local)
            local[10] = maxlen
        n = local[13].item()
        div = lambda a, b: a / b if b else float("nan")
        tok = max(sums_vec["tokens"], 1.0)
        record = {
            "kind": "train", "step": step + 1,
            "reward": local[0].item() / n, "reward_format": local[1].item() / n,
            "reward_outcome": local[2].item() / n, "reward_think": div(local[3].item(), local[4].item()),
            "rm_gate_share": local[4].item() / n, "pass_rate": local[2].item() / n,
            "format_rate": local[1].item() / n,
            "think_passing": div(local[5].item(), local[6].item()),
            "think_failing": div(local[7].item(), local[8].item()),
            "resp_len_mean": local[9].item() / n, "resp_len_max": int(local[10].item()),
            "truncated_share": local[11].item() / n, "bad_tests": int(local[12].item()),
            "loss": sums_vec["loss"],
            "clip_low": sums_vec["clipped_low"] / tok, "clip_high": sums_vec["clipped_high"] / tok,
            "clip_dual": sums_vec["clipped_dual"] / tok,
            "approx_kl": sums_vec["approx_kl"] / tok, "entropy": sums_vec["entropy"] / tok,
            "grad_norm": sum(grad_norms) / len(grad_norms), "lr": lr,
            "time_gen": t_gen - t0, "time_sandbox": t_reward - t_old - scores["rm_time"],
            "time_rm": scores["rm_time"], "time_old_logp": t_old - t_gen,
            "time_train": t_train - t_reward, "time_step": time.time() - t0,
            "tokens_per_s": local[9].item() / max(t_gen - t0, 1e-9), "elapsed": time.time() - t_start,
        }
        if is_main():
            append_metrics(metrics_path, record)
            bar.update(1)
            tqdm.write(f"step {step + 1} | R {record['reward']:.3f} | pass {record['pass_rate']:.3f} | "
                       f"fmt {record['format_rate']:.3f} | Rt+ {record['think_passing']:.3f} | "
                       f"len {record['resp_len_mean']:.0f} | kl {record['approx_kl']:.2e} | "
                       f"gn {record['grad_norm']:.3f} | {record['time_step']:.1f}s "
                       f"(gen {record['time_gen']:.1f} box {record['time_sandbox']:.1f} "
                       f"rm {record['time_rm']:.1f} train {record['time_train']:.1f})")
        done = step + 1
        if eval_problems and eval_interval and (done % eval_interval == 0 or done == max_steps):
            ev = evaluate(done)
            if is_main():
                append_metrics(metrics_path, ev)
                tqdm.write(f"eval step {done} | pass@1 {ev['pass_at_1']:.3f} | format "
                           f"{ev['format_rate']:.3f} | tokens {ev['mean_tokens']:.0f} | "
                           f"think {ev['think_score']:.3f}")
        if done % ckpt_interval == 0 or done == max_steps:
            checkpoint(done)
    bar.close()
    sandbox.shutdown()
    if dist.is_initialized():
        dist.destroy_process_group()
