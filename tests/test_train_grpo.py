"""Tests for train_grpo.py: the equations against hand-worked numbers, then the whole loop
(one process, two processes, kill and resume, bad problems) on a tiny policy."""
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from safetensors.torch import load_file

import data
import prompts
import sandbox
import model as M
from train_grpo import (gate, gated_reward, group_advantages, micro_batches, policy_loss,
                        reward_terms, same_count_everywhere, step_problems, think_reward,
                        think_scores)

torch.set_num_threads(1)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "toy_problems.jsonl")
T = torch.tensor


# ----------------------------------------------------------------------------- gated_reward
def test_gated_reward_every_mode():
    #              Rf   Ro   P_o  Rt
    cases = T([[1.0, 1.0, 1.0, 0.8],     # right and well written
               [1.0, 0.0, 0.5, 0.95],    # wrong code, glowing reasoning: the gate's case
               [0.0, 0.0, 0.0, 0.9],     # broken format
               [0.0, 1.0, 1.0, 0.1]])    # passes without the format
    f, o, p, t = cases.T
    assert torch.allclose(gated_reward(f, o, t, p, "outcome"), T([2.0, 1.0, 0.0, 1.0]))
    assert torch.allclose(gated_reward(f, o, t, p, "posterior"), T([2.8, 1.0, 0.0, 1.1]))
    assert torch.allclose(gated_reward(f, o, t, p, "soft"), T([2.8, 1.475, 0.0, 1.1]))
    assert torch.allclose(gated_reward(f, o, t, p, "additive"), T([2.8, 1.95, 0.9, 1.1]))
    # weights: 0.5*Rf + 2*Ro + 3*Ro*Rt
    assert torch.allclose(gated_reward(f, o, t, p, "posterior", 0.5, 2.0, 3.0),
                          T([0.5 + 2 + 2.4, 0.5, 0.0, 2 + 0.3]))
    # Rt is never read where the gate is shut (the trainer leaves it NaN there)
    nan_t = T([0.8, float("nan"), float("nan"), 0.1])
    assert torch.allclose(gated_reward(f, o, nan_t, p, "posterior"), T([2.8, 1.0, 0.0, 1.1]))
    assert torch.allclose(think_reward(T([0.0, math.log(3)])), T([0.5, 0.75]))


def test_gate_is_the_one_place_a_mode_is_defined(monkeypatch):
    import train_grpo
    o, p = T([1.0, 0.0, 0.0]), T([1.0, 0.5, 0.0])
    assert gate("outcome", o, p).tolist() == [0.0, 0.0, 0.0]
    assert gate("posterior", o, p).tolist() == [1.0, 0.0, 0.0]
    assert gate("soft", o, p).tolist() == [1.0, 0.5, 0.0]
    assert gate("additive", o, p).tolist() == [1.0, 1.0, 1.0]
    # a new mode is one entry: the reward follows it (whom to score follows gate() too)
    monkeypatch.setitem(train_grpo.GATES, "half", lambda outcome, pass_rate: 0.5 * pass_rate)
    r = gated_reward(T([1.0, 1.0, 1.0]), o, T([0.8, 0.4, float("nan")]), p, "half")
    assert torch.allclose(r, T([1 + 1 + 0.4, 1 + 0.1, 1.0]))


# ----------------------------------------------------------------------------- group_advantages
def test_group_advantages_by_hand():
    # all equal: no signal, and no NaN
    assert torch.equal(group_advantages(T([1.0, 1.0, 1.0, 1.0]), 4), torch.zeros(4))
    # one different: mean 0.25, sample std sqrt((0.75^2 + 3 * 0.25^2) / 3) = 0.5
    adv = group_advantages(T([1.0, 0.0, 0.0, 0.0]), 4)
    assert torch.allclose(adv, T([1.5, -0.5, -0.5, -0.5]), atol=1e-5)
    # two groups are independent; the second is [2, 0]: mean 1, sample std sqrt(2)
    adv = group_advantages(T([1.0, 0.0, 0.0, 0.0, 2.0, 0.0, 0.0, 0.0]), 2)
    assert torch.allclose(adv, T([0.7071, -0.7071, 0, 0, 0.7071, -0.7071, 0, 0]), atol=1e-4)
    # singleton groups carry no signal
    assert torch.equal(group_advantages(T([3.0, -1.0]), 1), torch.zeros(2))
    # Dr. GRPO: centred only
    assert torch.allclose(group_advantages(T([1.0, 0.0, 0.0, 0.0]), 4, std_normalize=False),
                          T([0.75, -0.25, -0.25, -0.25]))
    with pytest.raises(ValueError):
        group_advantages(T([1.0, 2.0, 3.0]), 2)


def test_equal_rewards_get_exactly_zero_advantage():
    """Eight passing samples with the same Rt (R = 2 + sigmoid(0.3)) got A = +0.19 each:
    the float32 mean of equal values is not always that value, and the rounding error,
    divided by std + 1e-6, is not small. Equal rewards must give A = 0 exactly."""
    issue = torch.full((8,), 2.0) + torch.sigmoid(T(0.3))
    assert issue.view(1, 8).mean(1).item() != issue[0].item()    # the trap is real
    assert torch.equal(group_advantages(issue, 8), torch.zeros(8))
    gen = torch.Generator().manual_seed(0)
    values = torch.cat([2 + torch.sigmoid(torch.linspace(-3, 3, 61)),        # P-GRPO rewards
                        torch.rand(40, generator=gen, dtype=torch.float64) * 3])
    for dtype in (torch.float32, torch.float64):
        for n in range(2, 33):
            rewards = values.to(dtype).repeat_interleave(n)      # one equal group per value
            for std_normalize in (True, False):
                adv = group_advantages(rewards, n, std_normalize)
                assert torch.equal(adv, torch.zeros_like(adv)), (dtype, n, std_normalize)


def test_group_advantages_are_the_exact_values_rounded_once():
    """With several different rewards per group each A_i is the equation computed exactly
    (statistics works in fractions) and rounded to float32 once."""
    import statistics
    gen = torch.Generator().manual_seed(1)
    for n in range(2, 33):
        rewards = 2 + torch.sigmoid(torch.randn(4 * n, generator=gen))
        rewards[::3] = rewards[0]                                 # some ties, too
        adv = group_advantages(rewards, n)
        for g in range(4):
            group = rewards[g * n:(g + 1) * n].tolist()
            mean, std = statistics.mean(group), statistics.stdev(group)
            want = torch.tensor([(r - mean) / (std + 1e-6) for r in group], dtype=torch.float64)
            assert torch.equal(adv[g * n:(g + 1) * n], want.float()), (n, g)


def test_group_advantages_non_degenerate_group_by_hand():
    # R = [2 + s, 2 + s, 2 + s, 1], s = sigmoid(0.3). With d = (1 + s) / 4:
    # mean = (7 + 3s) / 4, so R - mean = [d, d, d, -3d]; the sample variance is
    # (3d^2 + 9d^2) / 3 = 4d^2, std = 2d, and A = [1/2, 1/2, 1/2, -3/2] * 2d / (2d + 1e-6).
    s = torch.sigmoid(T(0.3)).item()
    rewards = T([2 + s, 2 + s, 2 + s, 1.0])
    d = (1 + s) / 4
    want = T([0.5, 0.5, 0.5, -1.5]) * (2 * d / (2 * d + 1e-6))
    adv = group_advantages(rewards, 4)
    assert torch.allclose(adv, want, rtol=1e-6, atol=0)
    assert adv[0] == adv[1] == adv[2]


def test_group_advantages_across_two_ranks(tmp_path):
    """A group straddling two gloo ranks gets the statistics of the whole group."""
    script = tmp_path / "adv.py"
    script.write_text(f"""
import sys, torch, torch.distributed as dist
sys.path.insert(0, {REPO!r})
from train_grpo import gather_group_advantages, group_advantages
dist.init_process_group("gloo")
r = dist.get_rank()
rewards = torch.tensor([1.0, 0.0, 0.0, 3.0, 2.0, 2.0])      # groups of 4 and 2 across ranks
mine = rewards[r * 3:(r + 1) * 3]
got = gather_group_advantages(mine, 3)
want = group_advantages(rewards, 3)[r * 3:(r + 1) * 3]
assert torch.allclose(got, want), (got, want)
got = gather_group_advantages(rewards[r * 3:(r + 1) * 3], 2)   # a group split 1 + 1
assert torch.allclose(got, group_advantages(rewards, 2)[r * 3:(r + 1) * 3])
# equal rewards, three groups of 8 over two ranks (the middle one split 4 + 4): A = 0
# exactly on both ranks, not the +0.19 of a float32 mean
equal = torch.full((24,), 2.0) + torch.sigmoid(torch.tensor(0.3))
got = gather_group_advantages(equal[r * 12:(r + 1) * 12], 8)
assert torch.equal(got, torch.zeros(12)), got
open({str(tmp_path)!r} + f"/ok{{r}}", "w").close()   # a file each: stdout lines interleave
dist.destroy_process_group()
""")
    torchrun(2, [str(script)], timeout=120)
    assert (tmp_path / "ok0").exists() and (tmp_path / "ok1").exists()


# ----------------------------------------------------------------------------- policy_loss
def test_policy_loss_clipping_by_hand():
    # One sequence, four tokens; log-ratios chosen to land inside/outside both bounds.
    ratios = T([[1.1, 1.5, 0.7, 0.9]])
    old = torch.zeros(1, 4)
    logp = ratios.log()
    mask = torch.ones(1, 4)
    # A = +1: l_t = max(-r, -clip(r, 0.8, 1.28)) = [-1.1, -1.28, -0.7, -0.9]
    # (a low ratio with a positive advantage is not clipped: the max keeps -0.7)
    loss, st = policy_loss(logp, old, T([1.0]), mask, 0.2, 0.28, "token_mean", 4, 1, 4)
    assert torch.isclose(loss, T(-(1.1 + 1.28 + 0.7 + 0.9) / 4))
    assert st["clipped_high"] == 1 and st["clipped_low"] == 0      # 1.5 > 1.28 with A > 0
    # A = -1: l_t = max(r, clip(r)) = [1.1, 1.5, 0.8, 0.9]
    loss, st = policy_loss(logp, old, T([-1.0]), mask, 0.2, 0.28, "token_mean", 4, 1, 4)
    assert torch.isclose(loss, T((1.1 + 1.5 + 0.8 + 0.9) / 4))
    assert st["clipped_low"] == 1 and st["clipped_high"] == 0       # 0.7 < 0.8 with A < 0
    # ratio 1 (on-policy): the loss is -A per token
    loss, _ = policy_loss(old, old, T([2.0]), mask, 0.2, 0.28, "token_mean", 4, 1, 4)
    assert torch.isclose(loss, T(-2.0))


def test_policy_loss_aggregations_by_hand():
    # Two sequences of 3 and 1 valid tokens, ratio 1 everywhere, A = [1, -3].
    # Per-token losses: seq 0: [-1, -1, -1], seq 1: [3] (padding masked).
    zeros = torch.zeros(2, 3)
    mask = T([[1.0, 1.0, 1.0], [0.0, 0.0, 1.0]])
    adv = T([1.0, -3.0])
    agg = lambda mode, **kw: policy_loss(zeros, zeros, adv, mask, 0.2, 0.28, mode, **kw)[0]
    # token_mean over the global batch, whose normalizer may exceed this micro-batch's 4
    assert torch.isclose(agg("token_mean", n_tokens=4, n_seqs=2, max_len=3), T(0.0))
    assert torch.isclose(agg("token_mean", n_tokens=8, n_seqs=4, max_len=3), T(0.0))
    # seq_mean_token_mean: (mean(-1,-1,-1) + mean(3)) / 2 = 1
    assert torch.isclose(agg("seq_mean_token_mean", n_tokens=4, n_seqs=2, max_len=3), T(1.0))
    # seq_mean_token_sum_norm: (-3 + 3) / (2 * 3) = 0; with A = [1, -1]: (-3 + 1) / 6
    assert torch.isclose(agg("seq_mean_token_sum_norm", n_tokens=4, n_seqs=2, max_len=3), T(0.0))
    loss = policy_loss(zeros, zeros, T([1.0, -1.0]), mask, 0.2, 0.28, "seq_mean_token_sum_norm",
                       4, 2, 3)[0]
    assert torch.isclose(loss, T(-2 / 6))
    # and token_mean with A = [1, -1]: (-3 + 1) / 4
    loss = policy_loss(zeros, zeros, T([1.0, -1.0]), mask, 0.2, 0.28, "token_mean", 4, 2, 3)[0]
    assert torch.isclose(loss, T(-0.5))
    with pytest.raises(ValueError):
        agg("sum", n_tokens=4, n_seqs=2, max_len=3)


def test_policy_loss_kl_term_by_hand():
    # k3(ref, logp) = exp(ref - logp) - (ref - logp) - 1; with ref - logp = 1: e - 2
    logp, ref = torch.zeros(1, 2), torch.ones(1, 2)
    loss, _ = policy_loss(logp, logp, T([0.0]), torch.ones(1, 2), 0.2, 0.28, "token_mean",
                          2, 1, 2, ref_logp=ref, kl_beta=0.5)
    assert torch.isclose(loss, T(0.5 * (math.e - 2)))


def test_policy_loss_dual_clip_by_hand():
    # One sequence, four tokens with ratios 0.5, 2, 4, 10; eps 0.2 / 0.28, c = 3.
    ratios = T([[0.5, 2.0, 4.0, 10.0]])
    logp = ratios.log().requires_grad_()
    old, mask = torch.zeros(1, 4), torch.ones(1, 4)
    loss_of = lambda adv, c: policy_loss(logp, old, T([adv]), mask, 0.2, 0.28, "token_mean",
                                         4, 1, 4, clip_ratio_c=c)
    # A = -1: max(r, clip(r, 0.8, 1.28)) = [0.8, 2, 4, 10]; dual-clip caps each at
    # -A * c = 3: [0.8, 2, 3, 3], mean 8.8 / 4 = 2.2 (without it 16.8 / 4 = 4.2)
    loss, st = loss_of(-1.0, 3.0)
    assert torch.isclose(loss, T(2.2)) and st["clipped_dual"] == 2
    assert torch.isclose(loss_of(-1.0, 0.0)[0], T(4.2))
    # only token 2 moves the loss: d(r / 4) / d logp = r / 4 = 0.5; tokens 1 (clipped at
    # 0.8), 3 and 4 (capped at 3) carry no gradient
    (grad,) = torch.autograd.grad(loss, logp)
    assert torch.allclose(grad, T([[0.0, 0.5, 0.0, 0.0]]))
    # A = -2: [1.6, 4, 8, 20] capped at 6: [1.6, 4, 6, 6], mean 17.6 / 4 = 4.4
    assert torch.isclose(loss_of(-2.0, 3.0)[0], T(4.4))
    # A = +1: no dual-clip; max(-r, -clip(r)) = [-0.5, -1.28, -1.28, -1.28], mean -1.085
    loss, st = loss_of(1.0, 3.0)
    assert torch.isclose(loss, T(-1.085)) and st["clipped_dual"] == 0
    assert torch.isclose(loss_of(1.0, 0.0)[0], T(-1.085))


def test_policy_loss_clamps_the_log_ratio():
    """A log-ratio of 100 overflows exp in float32 (past 88.7): unclamped, the token's
    loss is inf, and a masked one turns the sum into NaN (0 * inf). Clamped at 20 as in
    VeRL, both stay finite."""
    old = torch.zeros(1, 3)
    logp = T([[100.0, 0.0, -100.0]]).requires_grad_()
    # A = -1, no dual-clip: the tokens give exp(20), 1 and 0.8 (clip(e^-20) = 0.8)
    loss, st = policy_loss(logp, old, T([-1.0]), torch.ones(1, 3), 0.2, 0.28, "token_mean",
                           3, 1, 3)
    assert torch.isclose(loss, T((math.exp(20) + 1 + 0.8) / 3))
    (grad,) = torch.autograd.grad(loss, logp)
    assert torch.isfinite(grad).all() and grad[0, 0] == 0          # past the clamp: no gradient
    assert all(torch.isfinite(v) for v in st.values())
    # the runaway token masked out: the loss is that of the middle token alone
    loss, st = policy_loss(logp, old, T([-1.0]), T([[0.0, 1.0, 0.0]]), 0.2, 0.28,
                           "token_mean", 1, 1, 3)
    assert torch.isclose(loss, T(1.0)) and all(torch.isfinite(v) for v in st.values())


def test_policy_loss_kl_term_is_clamped_like_verl():
    # ref - logp = 30 and 100: the log-ratio is clamped to 20 and k3 = e^20 - 21 to 10.
    # At 100, exp overflows float32: unclamped, the forward is still capped at 10, but the
    # backward multiplies the cap's zero gradient by exp(100) = inf and gives NaN.
    logp = torch.zeros(1, 2, requires_grad=True)
    ref = T([[30.0, 100.0]])
    loss, _ = policy_loss(logp, logp.detach(), T([0.0]), torch.ones(1, 2), 0.2, 0.28,
                          "token_mean", 2, 1, 2, ref_logp=ref, kl_beta=0.5)
    assert torch.isclose(loss, T(0.5 * 10))
    (grad,) = torch.autograd.grad(loss, logp)
    assert torch.equal(grad, torch.zeros(1, 2))


def test_policy_loss_gradient_matches_finite_differences():
    torch.manual_seed(0)
    old = torch.randn(2, 5, dtype=torch.float64) * 0.3
    x = (old + torch.randn(2, 5, dtype=torch.float64) * 0.4).requires_grad_()
    mask = T([[1, 1, 1, 1, 1], [0, 0, 1, 1, 1]], dtype=torch.float64)
    adv = T([0.7, -1.3], dtype=torch.float64)
    for mode in ("token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"):
        f = lambda lp: policy_loss(lp, old, adv, mask, 0.2, 0.28, mode, 8, 2, 5)[0]
        (grad,) = torch.autograd.grad(f(x), x)
        h = 1e-6
        for i in range(2):
            for j in range(5):
                e = torch.zeros_like(x)
                e[i, j] = h
                fd = (f(x.detach() + e) - f(x.detach() - e)) / (2 * h)
                assert abs(fd.item() - grad[i, j].item()) < 1e-6, (mode, i, j)
    # clipped tokens carry no gradient: with A > 0 and ratio above 1 + eps_high
    lp = T([[0.5]], dtype=torch.float64, requires_grad=True)
    policy_loss(lp, torch.zeros(1, 1, dtype=torch.float64), T([1.0]), torch.ones(1, 1),
                0.2, 0.28, "token_mean", 1, 1, 1)[0].backward()
    assert lp.grad.item() == 0.0


def test_execution_reward_by_hand():
    from train_grpo import execution_reward
    assert execution_reward(["passed"] * 4) == 1.0                           # (1 + 1 + 1) / 3
    assert execution_reward(["passed", "wrong_answer", "wrong_answer", "passed"]) == pytest.approx(
        (1 + 1 + 0.5) / 3)                                                   # runs clean, half right
    assert execution_reward(["passed", "runtime_error", "timeout", "wrong_answer"]) == \
        pytest.approx((1 + 0 + 0.25) / 3)                                    # compiles, errors
    assert execution_reward(["syntax_error"] * 3) == 0.0 and execution_reward(None) == 0.0
    # in the reward: R = Rf + Ro + we * E, whatever the mode; w_exec = 0 leaves it out
    fmt, out, pr = torch.tensor([1.0, 1.0]), torch.tensor([1.0, 0.0]), torch.tensor([1.0, 0.5])
    think, E = torch.tensor([0.5, 0.9]), torch.tensor([1.0, 2.5 / 3])
    assert gated_reward(fmt, out, think, pr, "outcome", execution=E, w_exec=0.6).tolist() == \
        pytest.approx([2.6, 1.5])
    assert gated_reward(fmt, out, think, pr, "posterior", execution=E, w_exec=0.6).tolist() == \
        pytest.approx([3.1, 1.5])
    assert gated_reward(fmt, out, think, pr, "outcome", execution=E).tolist() == [2.0, 1.0]


def test_passing_code_without_reasoning_gets_rt_zero_not_nan(monkeypatch):
    """A response can pass the tests with no <think> at all: its gate is open, there is
    nothing for the reward model to score, and the reward must stay finite."""
    import train_grpo
    monkeypatch.setattr(train_grpo, "reward_scores",    # a reward model that scores 2.0
                        lambda rm, tok, texts, *a, **k: torch.full((len(texts),), 2.0))
    problem = data.load_problems(FIXTURE)[0]                       # add(a, b)
    texts = ["```python\ndef add(a, b):\n    return a + b\n```",  # passes, no tags
             GOOD.replace("a + b", "a * b")]                          # formatted, fails
    parsed, results = prompts.run_responses([problem] * 2, texts, workers=1)
    s = reward_terms(parsed, results)
    assert s["outcome"].tolist() == [1.0, 0.0] and s["fmt"].tolist() == [0.0, 1.0]
    # E: every test ran (stop_on_failure=False, as train_grpo asks when w_exec > 0)
    _, every = prompts.run_responses([problem] * 2, texts, workers=1, stop_on_failure=False)
    e = reward_terms(parsed, every)["execution"]
    assert e[0] == 1.0 and e[1] == pytest.approx((2 + every[1].pass_rate) / 3) and e[1] < 1
    for mode in ("posterior", "soft", "additive"):
        scored = gate(mode, s["outcome"], s["pass_rate"]) > 0
        think = think_scores("rm", None, [problem] * 2, parsed, scored, "cpu")
        assert think[0] == 0.0
        assert think[1].isnan() == (mode != "additive")    # scored where its gate is open
        r = gated_reward(s["fmt"], s["outcome"], think, s["pass_rate"], mode)
        assert torch.isfinite(r).all() and r[0] == 1.0
    # outcome mode may run with no reward model: no Rt at all, rather than a logged 0
    think = think_scores(None, None, [problem] * 2, parsed, s["outcome"] > 0, "cpu")
    assert think.isnan().all()
    assert torch.isfinite(gated_reward(s["fmt"], s["outcome"], think, s["pass_rate"],
                                       "outcome")).all()


def test_reward_model_on_cpu_moves_in_only_to_score(monkeypatch):
    """rm_placement=cpu: the reward model is on the device while it scores, and only then."""
    import train_grpo
    moves = []

    class FakeRM:
        def to(self, where):
            moves.append(str(where))
            return self
    monkeypatch.setattr(train_grpo, "reward_scores",
                        lambda rm, tok, texts, device, **k: moves.append("score") or torch.ones(len(texts)))
    monkeypatch.setattr(train_grpo, "rm_placement", "cpu")
    problem = data.load_problems(FIXTURE)[0]
    parsed = [prompts.parse_response(GOOD)] * 2
    think = think_scores(FakeRM(), None, [problem] * 2, parsed, torch.tensor([True, False]), "cuda:3")
    assert moves == ["cuda:3", "score", "cpu"] and think[0] == torch.sigmoid(torch.tensor(1.0))
    moves.clear()
    think_scores(FakeRM(), None, [problem] * 2, parsed, torch.tensor([False, False]), "cuda:3")
    assert moves == []                                    # nothing to score: it stays put
    monkeypatch.setattr(train_grpo, "rm_placement", "gpu")
    think_scores(FakeRM(), None, [problem] * 2, parsed, torch.tensor([True, True]), "cuda:3")
    assert moves == ["score"]


def test_step_problems_cover_each_epoch_once():
    seen = [i for s in range(4) for i in step_problems(10, s, 5, seed=3)]
    assert sorted(seen[:10]) == list(range(10)) and sorted(seen[10:]) == list(range(10))
    assert seen[:10] != seen[10:]                     # a new order each epoch
    assert step_problems(10, 3, 5, seed=3) == step_problems(10, 3, 5, seed=3)
    # a batch that straddles two epochs finishes the first before starting the next
    seen = step_problems(7, 0, 5, seed=0) + step_problems(7, 1, 5, seed=0)
    assert sorted(seen[:7]) == list(range(7)) and len(set(seen[7:])) == 3


# ----------------------------------------------------------------------------- the hacking monitor
def trace(rt_fail, passed, rt_pass=0.8):
    return [{"think_failing": f, "pass_rate": p, "think_passing": rt_pass}
            for f, p in zip(rt_fail, passed)]


def test_hacking_alarm_on_scripted_traces():
    from train_grpo import hacking_alarm
    w = 5
    # healthy: the pass rate climbs, failing code's Rt stays low and apart from passing code's
    healthy = trace([0.30, 0.31, 0.29, 0.30, 0.32] * 4, [0.1 + 0.01 * i for i in range(20)])
    assert all(hacking_alarm(healthy[:n], w) == (False, "") for n in range(1, 21))
    # hacking: failing code's Rt climbs 0.30 -> 0.45 while the pass rate sits at 0.2
    hacking = trace([0.30] * 10 + [0.45] * 5, [0.2] * 15)
    on, why = hacking_alarm(hacking, w)
    assert on and "Rt of failing code 0.300 -> 0.450" in why
    assert not hacking_alarm(hacking[:10], w)[0]            # before the climb
    # a climb that comes with a rising pass rate is learning, not hacking
    learning = trace([0.30] * 10 + [0.45] * 5, [0.2] * 10 + [0.3] * 5)
    assert hacking_alarm(learning, w) == (False, "")
    # the gap closes: passing 0.8, failing 0.3 at first, then 0.65 (gap 0.5 -> 0.15)
    closing = trace([0.3] * 10 + [0.6, 0.62, 0.64, 0.65, 0.65, 0.65, 0.65, 0.65, 0.65, 0.65],
                    [0.1 + 0.02 * i for i in range(20)])
    on, why = hacking_alarm(closing, w)
    assert on and "gap 0.500 -> 0.150" in why and "Rt of failing code" not in why
    # unmeasured Rt (NaN) never raises it; too short a history neither
    nan = trace([float("nan")] * 20, [0.2] * 20)
    assert hacking_alarm(nan, w) == (False, "") and hacking_alarm(hacking, 8) == (False, "")


def test_hacking_alarm_weighs_a_rise_against_its_noise():
    """The same 0.30 -> 0.38 rise of failing code's Rt (pass rate flat): 7 watched samples a
    step with spread 0.25 is noise (pooled error of each window mean 0.25/sqrt(35) = 0.042,
    of the rise 0.060, 3 of them 0.179 > 0.08); 100 a step is not (3 errors: 0.047)."""
    from train_grpo import hacking_alarm, window_stats
    w = 5

    def noisy(n, sd):
        return [dict(r, think_failing_n=n, think_failing_sd=sd, think_passing_n=n, think_passing_sd=sd)
                for r in trace([0.30] * 5 + [0.38] * 5, [0.2] * 10)]
    assert hacking_alarm(noisy(7, 0.25), w) == (False, "")
    on, why = hacking_alarm(noisy(100, 0.25), w)
    assert on and "0.300 -> 0.380 (+-0.016)" in why
    # pooled by sample counts: 0.2 over 1 sample and 0.5 over 3 -> 0.425; spreads within and between
    mean, se = window_stats([{"x": 0.2, "x_n": 1, "x_sd": 0.0}, {"x": 0.5, "x_n": 3, "x_sd": 0.1}], "x")
    var = (0.2 ** 2 + 3 * (0.5 ** 2 + 0.1 ** 2)) / 4 - 0.425 ** 2
    assert mean == pytest.approx(0.425) and se == pytest.approx(math.sqrt(var / 4))
    # the gap rule is held to the same test: a gap 0.5 -> 0.2 measured on 2 samples a step
    closing = [dict(r, think_failing_n=2, think_failing_sd=0.4, think_passing_n=2,
                    think_passing_sd=0.4) for r in trace([0.3] * 5 + [0.6] * 5, [0.1 + 0.03 * i for i in range(10)])]
    assert hacking_alarm(closing, w) == (False, "")
    assert hacking_alarm([dict(r, think_failing_n=200, think_passing_n=200) for r in closing], w)[0]


def test_monitor_watches_only_unscored_failing_samples():
    from train_grpo import watched
    outcome = torch.tensor([1.0, 0.0, 0.0, 0.0, 1.0, 0.0])
    scored = torch.tensor([True, True, False, False, True, False])   # e.g. soft: P_o > 0
    assert watched(outcome, scored, 3, 0, 1.0).tolist() == [False, False, True, True, False, True]
    assert not watched(outcome, scored, 3, 0, 0.0).any()
    picks = [watched(torch.zeros(64), torch.zeros(64, dtype=torch.bool), s, 0, 0.25).sum().item()
             for s in range(20)]
    assert 8 <= sum(picks) / len(picks) <= 24                         # about a quarter
    assert watched(torch.zeros(64), torch.zeros(64, dtype=torch.bool), 7, 64, 0.25).tolist() == \
        watched(torch.zeros(64), torch.zeros(64, dtype=torch.bool), 7, 64, 0.25).tolist()


def test_monitor_logs_failing_rt_and_never_touches_the_reward(warm_policy, tmp_path):
    """posterior: with every failing sample watched, Rt of failing code is measured; the
    rewards, losses and the update are those of a run that watches none."""
    runs = {}
    for share in (0.0, 1.0):
        out = str(tmp_path / f"share{share}")
        torchrun(1, grpo_args(warm_policy, out, str(tmp_path / "rm"), max_steps=1,
                              monitor_share=share))
        runs[share] = metrics(out)[0]
    quiet, watching = runs[0.0], runs[1.0]
    assert math.isnan(quiet["think_failing"]) and 0 < watching["think_failing"] < 1
    for k in ("reward", "reward_think", "rm_gate_share", "loss", "grad_norm", "think_passing"):
        assert quiet[k] == pytest.approx(watching[k], rel=1e-6, nan_ok=True), k
    assert watching["hacking_alarm"] == 0 and watching["hacking_reason"] == ""


def test_evaluation_reports_plus_tests_apart(monkeypatch):
    """Held-out pass@1 on the reward's tests and on the complete plus tests (scripted
    responses): a lucky program passes the first and fails the second."""
    import train_grpo
    problem = data.load_problems(FIXTURE)[0]                               # add(a, b)
    lucky = dataclasses.replace(problem, plus_tests=problem.tests + [
        {"kind": "call", "fn": "add", "args": [0, 0], "expected": 0}])
    answer = GOOD.replace("return a + b", "return a + b if a else 1")     # wrong at a = 0
    outs = [M.GenerationOutput(text=answer, prompt_ids=[1], response_ids=[2, 3], truncated=False)] * 2
    monkeypatch.setattr(train_grpo, "rollout", lambda *a, **k: ([lucky, problem], outs))
    monkeypatch.setattr(train_grpo, "workers", 1, raising=False)
    monkeypatch.setattr(train_grpo, "limits", sandbox.Limits(), raising=False)
    ev = train_grpo.evaluate(None, None, [lucky, problem], 0, None, None, "cpu", 0, 1)
    assert ev["pass_at_1"] == 1.0 and ev["pass_at_1_plus"] == 0.5 and ev["n"] == 2
    # code outside <answer> (format broken) is run by default, not with answer_only
    stray = [M.GenerationOutput(text="```python\ndef add(a, b):\n    return a + b\n```",
                                prompt_ids=[1], response_ids=[2], truncated=False)] * 2
    monkeypatch.setattr(train_grpo, "rollout", lambda *a, **k: ([problem, problem], stray))
    ev = train_grpo.evaluate(None, None, [problem] * 2, 0, None, None, "cpu", 0, 1)
    assert ev["pass_at_1"] == 1.0 and ev["format_rate"] == 0.0
    monkeypatch.setattr(train_grpo, "answer_only", True)
    ev = train_grpo.evaluate(None, None, [problem] * 2, 0, None, None, "cpu", 0, 1)
    assert ev["pass_at_1"] == 0.0 and ev["pass_at_1_plus"] == 0.0


# ----------------------------------------------------------------------------- micro-batches
def test_micro_batches_by_count_and_by_tokens():
    lengths = [5, 9, 3, 9, 7, 2]
    assert micro_batches(lengths, 0, 4) == [[0, 1, 2, 3], [4, 5]]        # as sampled
    # longest first; rows x longest <= 20; rows <= 3
    assert micro_batches(lengths, 20, 3) == [[1, 3], [4, 0], [2, 5]]
    assert micro_batches(lengths, 20, 0) == [[1, 3], [4, 0], [2, 5]]
    assert micro_batches(lengths, 100, 3) == [[1, 3, 4], [0, 2, 5]]
    assert micro_batches(lengths, 4, 0) == [[1], [3], [4], [0], [2], [5]]  # over budget: alone
    assert same_count_everywhere([[1, 3, 4], [0, 2]], "cpu") == [[1, 3, 4], [0, 2]]


def test_gradient_does_not_depend_on_packing_order_or_checkpointing():
    """One mini-batch's accumulated gradient, as the update computes it, for any token
    budget, any order of the sequences, and with activation checkpointing."""
    import train_grpo
    tok = M.make_tiny_tokenizer()
    lens = [(3, 9), (5, 2), (2, 14), (6, 6), (4, 11)]
    gen = torch.Generator().manual_seed(0)
    seqs = [(torch.randint(5, 200, (p,), generator=gen).tolist(),
             torch.randint(5, 200, (r,), generator=gen).tolist()) for p, r in lens]
    adv = torch.tensor([0.9, -1.2, 0.4, -0.3, 1.1])
    n_tok = sum(r for _, r in lens)

    def grads(budget, max_seqs, order, checkpointing=False):
        policy = M.make_tiny_model(tok, seed=0, n_layer=2, n_embd=64)
        policy.train()
        if checkpointing:
            policy.activation_checkpointing_enable({"use_reentrant": False})
        calls, mlp = [], policy.model.layers[0].mlp     # counts the first layer's runs
        forward = mlp.forward
        mlp.forward = lambda *a, **k: calls.append(1) or forward(*a, **k)
        s, a = [seqs[i] for i in order], adv[order]
        batches = micro_batches([len(p) + len(r) for p, r in s], budget, max_seqs)
        for mb in batches:
            lp, _, mask = train_grpo.response_logprobs(policy, [s[i] for i in mb], tok.pad_token_id,
                                                       "cpu", with_entropy=True)
            loss, _ = policy_loss(lp, lp.detach() - 0.05, a[mb], mask, 0.2, 0.28, "token_mean",
                                  n_tok, len(s), 14)
            loss.backward()
        assert len(calls) == len(batches) * (2 if checkpointing else 1)   # recomputed in backward
        return {n: p.grad for n, p in policy.named_parameters()}

    plain = grads(0, 5, [0, 1, 2, 3, 4])
    for budget, max_seqs, order, ckpt in [(0, 2, [0, 1, 2, 3, 4], False), (30, 0, [0, 1, 2, 3, 4], False),
                                          (1, 0, [4, 2, 0, 3, 1], False), (40, 2, [3, 1, 4, 0, 2], True)]:
        got = grads(budget, max_seqs, torch.tensor(order), ckpt)
        for name in plain:
            torch.testing.assert_close(got[name], plain[name], atol=1e-6, rtol=1e-5, msg=name)


# ----------------------------------------------------------------------------- the loop
GOOD = "<think>Add the two numbers.</think>\n<answer>\n```python\ndef add(a, b):\n    return a + b\n```\n</answer>"
BAD = GOOD.replace("a + b", "a - b")


@pytest.fixture(scope="module")
def warm_policy(tmp_path_factory):
    """A tiny policy taught, by a short supervised run, to answer every fixture prompt
    with the same reply whose operator is '+' or '-' at even odds: rollouts then mix
    right and wrong code for `add`, so rewards vary inside groups."""
    out = str(tmp_path_factory.mktemp("policy") / "warm")
    tok = M.make_tiny_tokenizer()
    policy = M.make_tiny_model(tok, seed=0, n_layer=2, n_embd=64)
    problems = data.load_problems(FIXTURE)[:3]
    rows, masks = [], []
    for p in problems:
        prompt = tok(M.apply_chat(tok, prompts.rl_prompt(p)), add_special_tokens=False)["input_ids"]
        for reply in (GOOD, BAD):
            resp = tok(reply, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
            rows.append(prompt + resp)
            masks.append([0] * len(prompt) + [1] * len(resp))
    width = max(map(len, rows))
    ids = torch.tensor([[tok.pad_token_id] * (width - len(r)) + r for r in rows])
    attn = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    target = torch.tensor([[0] * (width - len(m)) + m for m in masks])[:, 1:].bool()
    labels = torch.where(target, ids[:, 1:], -100)
    opt = torch.optim.AdamW(policy.parameters(), lr=3e-3)
    for _ in range(100):
        logits = policy(input_ids=ids, attention_mask=attn,
                        position_ids=M.position_ids_from_mask(attn)).logits[:, :-1]
        loss = torch.nn.functional.cross_entropy(logits.transpose(1, 2), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert loss.item() < 0.1, loss.item()      # both replies learned, up to the one coin flip
    M.save_checkpoint(out, policy, tok)
    return out


def torchrun(nproc, args, timeout=300, env=None):
    env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    cmd = ([sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]) + args
    r = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-5000:]
    return r.stdout + r.stderr


def grpo_args(policy, out_dir, rm_dir, **over):
    settings = dict(init_from=policy, rm_from=rm_dir, tiny_init=True, train_file=FIXTURE,
                    eval_file="", out_dir=out_dir, reward_mode="posterior", prompts_per_step=4,
                    group_size=4, max_new_tokens=112, max_prompt_tokens=1024, learning_rate=1e-3,
                    micro_batch_size=4, max_steps=2, ckpt_interval=100, sandbox_workers=2,
                    dtype="float32", seed=6)   # its rollouts mix formats and outcomes (see below)
    settings.update(over)
    return [os.path.join(REPO, "train_grpo.py")] + [f"--{k}={v}" for k, v in settings.items()]


def metrics(out_dir, kind="train"):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [r for r in map(json.loads, f) if r["kind"] == kind]


METRICS = ("reward", "reward_format", "reward_outcome", "reward_execution", "reward_think", "rm_gate_share",
           "pass_rate", "format_rate", "think_passing", "think_failing", "resp_len_mean",
           "resp_len_max", "truncated_share", "loss", "clip_low", "clip_high", "clip_dual",
           "approx_kl", "entropy", "grad_norm", "lr", "time_gen", "time_sandbox", "time_rm",
           "time_train", "tokens_per_s", "bad_tests", "pad_share")


def test_one_step_learns_and_logs_everything(warm_policy, tmp_path):
    out = str(tmp_path / "run")
    torchrun(1, grpo_args(warm_policy, out, str(tmp_path / "rm"), max_steps=1, ckpt_interval=1,
                          eval_file=FIXTURE, eval_interval=1, eval_max_new_tokens=112,
                          monitor_share=0.0))   # no failing sample watched: Rt of failing is NaN
    (rec,) = metrics(out)
    assert set(METRICS) <= rec.keys()
    # a mix to learn from (this step's format rate over seeds 1-6: 0.19 to 0.31)
    assert rec["format_rate"] > 0.2 and 0 < rec["pass_rate"] < 1
    assert 0 < rec["rm_gate_share"] <= rec["pass_rate"] + 1e-9           # RM only on passing code
    assert 0 < rec["think_passing"] < 1 and math.isnan(rec["think_failing"])
    assert rec["grad_norm"] > 0 and rec["entropy"] > 0 and 0 <= rec["pad_share"] < 1
    evals = metrics(out, "eval")
    assert [e["step"] for e in evals] == [0, 1]          # the starting point, then after the step
    for ev in evals:
        assert ev["n"] == 8 and 0 <= ev["pass_at_1"] <= 1 and 0 < ev["think_score"] < 1
        assert ev["pass_at_1_plus"] == ev["pass_at_1"]   # no plus tests: the same tests
    before = load_file(os.path.join(warm_policy, "model.safetensors"))
    after = load_file(os.path.join(out, "last", "model.safetensors"))
    changed = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(changed) == len(before)                                   # every tensor moved
    assert M.is_complete_checkpoint(os.path.join(out, "last"))
    assert M.read_extra(os.path.join(out, "last"))["config"]["reward_mode"] == "posterior"


@pytest.mark.parametrize("two_rank_settings", [
    {},
    # packed by tokens (ranks then split micro-batches to run as many forwards) and
    # recomputing every layer in backward: the same gradients
    {"micro_batch_tokens": 300, "micro_batch_size": 0, "activation_checkpointing": True,
     # and the settings for small GPUs: reduce-scatter each micro-batch, no kept rollout
     # copy, rollouts in generate calls of 3
     "grad_sync_every_micro_batch": True, "keep_rollout_copy": False, "rollout_batch_size": 3}])
def test_two_ranks_equal_one_rank(warm_policy, tmp_path, two_rank_settings):
    one, two = str(tmp_path / "one"), str(tmp_path / "two")
    rm = str(tmp_path / "rm")
    torchrun(1, grpo_args(warm_policy, one, rm))
    torchrun(2, grpo_args(warm_policy, two, rm, sandbox_workers=1, **two_rank_settings))
    a, b = metrics(one), metrics(two)
    assert len(a) == len(b) == 2
    for ra, rb in zip(a, b):
        for k in ("reward", "pass_rate", "format_rate", "resp_len_mean", "think_passing"):
            assert ra[k] == pytest.approx(rb[k], abs=1e-6, nan_ok=True), k
        for k in ("loss", "grad_norm", "entropy"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-4, abs=1e-6), k


def test_kill_and_resume_reproduces_the_run(warm_policy, tmp_path):
    rm = str(tmp_path / "rm")
    full, cut = str(tmp_path / "full"), str(tmp_path / "cut")
    torchrun(1, grpo_args(warm_policy, full, rm, max_steps=4, ckpt_interval=2))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable] + grpo_args(warm_policy, cut, rm, max_steps=4,
                                                         ckpt_interval=2),
                            cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    path = os.path.join(cut, "metrics.jsonl")
    deadline = time.time() + 240
    while time.time() < deadline and proc.poll() is None:
        if os.path.exists(path) and len(open(path).readlines()) >= 3:
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)                   # mid-run, after the step-2 checkpoint
    proc.wait()
    assert len(metrics(cut)) == 3
    # and as if that save had been killed between its renames: only last.tmp is complete
    os.rename(os.path.join(cut, "last"), os.path.join(cut, "last.tmp"))
    log = torchrun(1, grpo_args(warm_policy, cut, rm, max_steps=4, ckpt_interval=2,
                                init_from="resume"))
    assert "at step 2" in log
    assert not os.path.exists(os.path.join(REPO, "resume"))     # "resume" is no tiny_init path
    assert not [d for d in os.listdir(cut) if d.startswith("last.")]    # leftovers cleaned
    a, b = metrics(full), metrics(cut)
    assert [r["step"] for r in b] == [1, 2, 3, 4]
    for ra, rb in zip(a, b):
        for k in ("reward", "pass_rate", "loss", "grad_norm", "entropy", "resp_len_mean"):
            assert ra[k] == pytest.approx(rb[k], rel=1e-6, abs=1e-9), (ra["step"], k)


def test_bad_problems_are_counted_not_fatal(warm_policy, tmp_path):
    problems = data.load_problems(FIXTURE)[:3]
    problems[1].tests = [{"kind": "assert", "script": "assert add(1, 2) == 3 +", "entry_point": None}]
    problems[2].tests = [{"kind": "assert", "script": "raise RuntimeError('broken harness')",
                          "entry_point": None}]
    path = str(tmp_path / "bad.jsonl")
    data.save_problems(problems, path)
    with open(path, "a") as f:
        f.write('{"id": "no_tests", "statement": "x", "tests": []}\n')
    out = str(tmp_path / "run")
    log = torchrun(1, grpo_args(warm_policy, out, str(tmp_path / "rm"), train_file=path,
                                prompts_per_step=3, max_steps=1))
    assert "skipped" in log and "no_tests" not in [p.id for p in data.load_problems(path)]
    (rec,) = metrics(out)
    assert rec["bad_tests"] > 0 and rec["reward"] >= 0


def test_off_policy_epochs_minibatches_and_kl(warm_policy, tmp_path):
    """Two passes over two mini-batches whose size is no multiple of the micro-batch,
    with a KL penalty to a frozen reference: the second pass is off-policy. A dual-clip
    bound just above 1 makes some off-policy tokens with A < 0 hit it."""
    out = str(tmp_path / "run")
    torchrun(1, grpo_args(warm_policy, out, str(tmp_path / "rm"), max_steps=1, ppo_epochs=2,
                          mini_batch_size=8, micro_batch_size=3, kl_beta=0.1,
                          loss_agg="seq_mean_token_mean", reward_mode="soft", clip_ratio_c=1.001))
    (rec,) = metrics(out)
    assert 0 < rec["clip_dual"] < 1
    assert rec["approx_kl"] > 0 and math.isfinite(rec["loss"]) and rec["grad_norm"] > 0
    assert 0 <= rec["clip_low"] <= 1 and 0 <= rec["clip_high"] <= 1
    assert rec["rm_gate_share"] >= rec["pass_rate"]          # soft: every sample with P_o > 0


# ----------------------------------------------------------------------------- bad input
def snapshot(root):
    """Every directory and file under root, with the files' bytes."""
    found = {}
    for folder, dirs, files in os.walk(root):
        for name in dirs:
            found[os.path.relpath(os.path.join(folder, name), root)] = None
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                found[os.path.relpath(os.path.join(folder, name), root)] = f.read()
    return found


@pytest.fixture(scope="module")
def tiny_policy(tmp_path_factory):
    return M.make_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny") / "policy"))


# case: (settings, the message's start, a phrase of its end); "{x}" are paths made below
BAD_INPUTS = {
    "no policy dir": (dict(init_from="{missing}"), "--init_from={missing}", "no such directory"),
    "empty policy dir": (dict(init_from="{empty_dir}"), "--init_from={empty_dir}", "empty"),
    "no reward model dir": (dict(rm_from="{missing}"), "--rm_from={missing}", "no such directory"),
    "empty reward model dir": (dict(rm_from="{empty_dir}"), "--rm_from={empty_dir}", "empty"),
    "resume without checkpoint": (dict(init_from="resume"), "--init_from=resume",
                                  "no complete checkpoint at {out}/last"),
    "empty problem file": (dict(train_file="{empty_file}"), "{empty_file}, file",
                           "no problems: the file holds no records"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_stops_with_one_line_and_touches_nothing(case, tiny_policy, tmp_path):
    """A missing or empty model directory, nothing to resume, or an empty problem file:
    exit status 1, one line naming the flag and path (no traceback from transformers),
    and an earlier run's files in out_dir (metrics, an unfinished save) left as they were."""
    paths = dict(missing=str(tmp_path / "missing" / "model"), empty_dir=str(tmp_path / "empty"),
                 empty_file=str(tmp_path / "empty.jsonl"), out=str(tmp_path / "run"))
    os.makedirs(paths["empty_dir"])
    open(paths["empty_file"], "w").close()
    os.makedirs(os.path.join(paths["out"], "last.tmp"))
    with open(os.path.join(paths["out"], "metrics.jsonl"), "w") as f:
        f.write(json.dumps({"kind": "train", "step": 1}) + "\n")
    settings, start, phrase = BAD_INPUTS[case]
    settings = {k: v.format(**paths) for k, v in settings.items()}
    before = snapshot(tmp_path)
    args = grpo_args(tiny_policy, paths["out"], tiny_policy, **{"tiny_init": False, **settings})
    done = subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert_setup_error(done, "train_grpo.py", start.format(**paths), phrase.format(**paths))
    assert snapshot(tmp_path) == before


def assert_setup_error(done, script, start, phrase):
    """A bad input stopped `script` with exit status 1 and a last stderr line
    '<script>: error: <start>...<phrase>...', no traceback."""
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{script}: error: {start}"), last
    assert phrase in last, last


def test_missing_default_inputs_name_the_command_that_makes_them(tmp_path):
    """Trainers never build the toy world or train a reward model themselves: a missing
    default input stops the run with one line naming the command that makes it."""
    script = os.path.join(REPO, "train_grpo.py")
    run = lambda: subprocess.run([sys.executable, script], cwd=tmp_path, capture_output=True,
                                 text=True, timeout=120)
    r = run()                                                   # nothing prepared yet
    assert r.returncode == 1 and "python toy.py" in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "--init_from=data/toy/policy" in r.stderr
    M.make_tiny_checkpoint(str(tmp_path / "data" / "toy" / "policy"))   # the world, not the RM
    r = run()
    assert r.returncode == 1 and "--rm_from=out/toy_rm/best" in r.stderr, r.stderr
    assert "python train_rm.py" in r.stderr and len(r.stderr.strip().splitlines()) == 1
    assert not os.path.exists(tmp_path / "out" / "toy_pgrpo")
    assert not any("import toy" in line for line in open(script))


def test_memory_plan_prints_refuses_and_can_be_forced(tiny_policy, tmp_path):
    """--plan prints the per-rank plan and exits; a plan over --gpu_gb stops the run before
    any weight is read or anything written; --force_plan starts it anyway."""
    out = str(tmp_path / "run")
    args = lambda **kw: grpo_args(tiny_policy, out, str(tmp_path / "rm"), max_steps=1,
                                  reward_mode="outcome", rm_from="", **kw)
    shown = torchrun(1, args(plan=True, gpu_gb=80.0))
    assert "memory plan per rank" in shown and "fits" in shown and "update" in shown
    assert not os.path.exists(out)
    r = subprocess.run([sys.executable] + args(gpu_gb=0.001), cwd=REPO, capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 1 and "over the 0.001 GiB given" in r.stderr, r.stderr
    assert "memory plan per rank" in r.stderr and "--force_plan=True" in r.stderr
    assert not os.path.exists(out)
    torchrun(1, args(gpu_gb=0.001, force_plan=True))
    assert len(metrics(out)) == 1


def test_math_problems_get_their_outcome_from_the_final_answer(monkeypatch):
    """Math problems (answer, no tests) through the trainer's reward terms and evaluation:
    Ro from the boxed answer, no execution term, pass@1 on the answer."""
    import train_grpo
    maths = [data.Problem(id="m", statement="What is 6 times 7?", tests=[], answer="42")] * 3
    texts = ["<think>6 sevens.</think><answer>\\boxed{42}</answer>",
             "<think>6 sevens.</think><answer>\\boxed{43}</answer>", "It is \\boxed{42}."]
    parsed, results = prompts.run_responses(maths, texts, workers=1)
    s = reward_terms(parsed, results)
    assert s["outcome"].tolist() == [1.0, 0.0, 1.0] and s["fmt"].tolist() == [1.0, 1.0, 0.0]
    assert s["execution"].tolist() == [0.0, 0.0, 0.0]
    assert gated_reward(s["fmt"], s["outcome"], torch.tensor([0.5, 0.9, 0.5]), s["pass_rate"],
                        "posterior").tolist() == [2.5, 1.0, 1.5]
    outs = [M.GenerationOutput(text=t, prompt_ids=[1], response_ids=[2], truncated=False) for t in texts]
    monkeypatch.setattr(train_grpo, "rollout", lambda *a, **k: (maths, outs))
    monkeypatch.setattr(train_grpo, "workers", 1, raising=False)
    monkeypatch.setattr(train_grpo, "limits", sandbox.Limits(), raising=False)
    ev = train_grpo.evaluate(None, None, maths, 0, None, None, "cpu", 0, 1)
    assert ev["pass_at_1"] == pytest.approx(2 / 3) and ev["pass_at_1_plus"] == pytest.approx(2 / 3)
