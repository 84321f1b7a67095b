"""Tests for model.py on CPU in fp32 with tiny random models built in tmp dirs."""

import json
import os
import shutil
import subprocess
import sys

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

import model as M

torch.set_num_threads(1)
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TEXTS = ["def add(a, b):\n    return a + b", "ok", "Sort the list, then print its median."]


@pytest.fixture(scope="module")
def tokenizer():
    return M.make_tiny_tokenizer()


@pytest.fixture(scope="module")
def policy(tokenizer):
    # Untied output layer: a tied random model mostly repeats its input, which makes
    # greedy decoding too uniform to tell batched from single generation.
    return M.make_tiny_model(tokenizer, seed=1, tie_word_embeddings=False).eval()


def padded(tokenizer, texts, side="left"):
    batch = tokenizer.pad({"input_ids": tokenizer(texts, add_special_tokens=False)["input_ids"]},
                          padding_side=side, return_tensors="pt")
    return batch["input_ids"], batch["attention_mask"]


def weights_equal(a, b):
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def stepped_optimizer(model, tokenizer):
    """AdamW after one step on TEXTS: its moments depend on the model's weights."""
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    ids, mask = padded(tokenizer, TEXTS)
    (-M.token_logprobs(model, ids, mask).sum()).backward()
    optimizer.step()
    return optimizer


def moments_equal(a, b):
    sa, sb = a.state_dict()["state"], b.state_dict()["state"]
    return sa.keys() == sb.keys() and all(torch.equal(sa[i][k], sb[i][k]) for i in sa
                                          for k in ("step", "exp_avg", "exp_avg_sq"))


# ---------------------------------------------------------------- tokenizer and tiny models


def test_tiny_tokenizer_round_trips_and_reloads(tokenizer, tmp_path):
    text = "naïve café — 数据 🙂\n\tdef f():\r\n  return '<|x|>'\x00"
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text.encode("utf-8")) and max(ids) < 256
    assert tokenizer.decode(ids) == text
    assert tokenizer.decode(tokenizer("a<|eos|>")["input_ids"], skip_special_tokens=True) == "a"
    tokenizer.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(text, add_special_tokens=False)["input_ids"] == ids
    assert (reloaded.pad_token, reloaded.eos_token, reloaded.padding_side) == ("<|pad|>", "<|eos|>", "left")
    assert M.apply_chat(reloaded, "hi") == "<|bos|>user\nhi<|eos|>\n<|bos|>assistant\n"


def test_load_tokenizer_pads_left_with_eos_when_no_pad(tokenizer, tmp_path):
    no_pad = M.make_tiny_tokenizer()
    no_pad.pad_token = None
    no_pad.padding_side = "right"
    no_pad.save_pretrained(tmp_path)
    loaded = M.load_tokenizer(str(tmp_path))
    assert loaded.pad_token_id == loaded.eos_token_id == tokenizer.eos_token_id
    assert loaded.padding_side == "left"


def test_apply_chat_without_template_is_identity(tokenizer):
    plain = M.make_tiny_tokenizer()
    plain.chat_template = None
    assert M.apply_chat(plain, "just text") == "just text"


def test_tiny_model_is_seeded_and_leaves_global_rng_alone(tokenizer):
    torch.manual_seed(123)
    expected_next = torch.rand(3)
    torch.manual_seed(123)
    a = M.make_tiny_model(tokenizer, seed=5)
    assert torch.equal(torch.rand(3), expected_next)
    assert weights_equal(a, M.make_tiny_model(tokenizer, seed=5))
    assert not weights_equal(a, M.make_tiny_model(tokenizer, seed=6))
    llama = M.make_tiny_model(tokenizer, arch="llama")
    assert llama.config.model_type == "llama" and llama.config.pad_token_id == tokenizer.pad_token_id
    ids, mask = padded(tokenizer, TEXTS)
    assert torch.isfinite(M.token_logprobs(llama, ids, mask)).all()


# ---------------------------------------------------------------- reward model


def test_reward_model_from_causal_lm_saves_and_loads_with_plain_hf(tokenizer, tmp_path):
    base = M.make_tiny_checkpoint(str(tmp_path / "base"), pad_token_id=None)
    torch.manual_seed(7)
    rm = M.load_reward_model(base, "cpu")
    assert rm.config.pad_token_id == tokenizer.pad_token_id  # taken from the tokenizer
    torch.manual_seed(7)
    torch.rand(10)  # the head must not depend on RNG use after seeding
    assert torch.equal(M.load_reward_model(base, "cpu").score.weight, rm.score.weight)
    torch.manual_seed(8)
    assert not torch.equal(M.load_reward_model(base, "cpu").score.weight, rm.score.weight)

    M.save_checkpoint(str(tmp_path / "rm"), rm, tokenizer)
    plain = AutoModelForSequenceClassification.from_pretrained(str(tmp_path / "rm"), num_labels=1)
    with torch.no_grad():
        ours = M.reward_scores(rm, tokenizer, TEXTS, "cpu")
        theirs = M.reward_scores(plain, tokenizer, TEXTS, "cpu")
    assert ours.dtype == torch.float32 and ours.shape == (3,)
    assert torch.equal(ours, theirs)


def test_reward_scores_ignore_padding_side_and_batching(tokenizer, tmp_path):
    rm = M.load_reward_model(M.make_tiny_checkpoint(str(tmp_path / "base")), "cpu")
    side = M.make_tiny_tokenizer()
    with torch.no_grad():
        left = M.reward_scores(rm, side, TEXTS, "cpu")
        side.padding_side = "right"
        right = M.reward_scores(rm, side, TEXTS, "cpu")
        one_by_one = M.reward_scores(rm, side, TEXTS, "cpu", batch_size=1)
    torch.testing.assert_close(left, right, atol=1e-5, rtol=0)
    torch.testing.assert_close(left, one_by_one, atol=1e-5, rtol=0)
    assert len(set(left.tolist())) == 3

    scores = M.reward_scores(rm, tokenizer, TEXTS, "cpu")  # grad enabled: trainable
    (scores[0] - scores[1]).backward()
    assert rm.score.weight.grad is not None and rm.score.weight.grad.abs().sum() > 0


def test_reward_scores_truncate_to_max_length_and_count(tokenizer, tmp_path, capsys):
    rm = M.load_reward_model(M.make_tiny_checkpoint(str(tmp_path / "base")), "cpu")
    with torch.no_grad():
        cut = M.reward_scores(rm, tokenizer, ["abcdefgh", "abc"], "cpu", max_length=3)
        direct = M.reward_scores(rm, tokenizer, ["abc", "abc"], "cpu")
    torch.testing.assert_close(cut, direct, atol=1e-5, rtol=0)
    assert "truncated 1 of 2 texts to 3 tokens" in capsys.readouterr().out
    with pytest.raises(ValueError, match="text 1 is empty"):
        M.reward_scores(rm, tokenizer, ["a", ""], "cpu")


# ---------------------------------------------------------------- token log-probs


def test_position_ids_count_real_tokens_only():
    mask = torch.tensor([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1], [1, 1, 1, 0, 0]])
    expected = torch.tensor([[0, 0, 0, 1, 2], [0, 1, 2, 3, 4], [0, 1, 2, 2, 2]])
    assert torch.equal(M.position_ids_from_mask(mask), expected)


def test_token_logprobs_left_padded_batch_equals_single_forward(tokenizer, policy, monkeypatch):
    monkeypatch.setattr(M, "LOGPROB_CHUNK", 4)  # several fp32 blocks per row
    ids, mask = padded(tokenizer, TEXTS)
    with torch.no_grad():
        logprobs, entropy = M.token_logprobs(policy, ids, mask, return_entropy=True)
    assert logprobs.shape == entropy.shape == (3, ids.shape[1] - 1)
    for row, text in enumerate(TEXTS):
        single = torch.tensor([tokenizer(text, add_special_tokens=False)["input_ids"]])
        with torch.no_grad():
            log_softmax = torch.log_softmax(policy(input_ids=single).logits[0, :-1].float(), dim=-1)
        expected = log_softmax.gather(-1, single[0, 1:, None]).squeeze(-1)
        expected_entropy = -(log_softmax.exp() * log_softmax).sum(-1)
        n = single.shape[1] - 1
        torch.testing.assert_close(logprobs[row, -n:], expected, atol=1e-5, rtol=0)
        torch.testing.assert_close(entropy[row, -n:], expected_entropy, atol=1e-5, rtol=0)
        assert (logprobs[row, :-n] == 0).all() and (entropy[row, :-n] == 0).all()
    assert (entropy >= 0).all() and (logprobs <= 0).all()


def test_token_logprobs_at_a_temperature_are_the_sampled_distributions(tokenizer, policy):
    # the sampler draws from softmax(logits / T); the RL ratio must use the same
    ids, mask = padded(tokenizer, TEXTS)
    valid = (mask[:, :-1] * mask[:, 1:]).bool()
    with torch.no_grad():
        got = M.token_logprobs(policy, ids, mask, temperature=0.7)
        logits = policy(input_ids=ids, attention_mask=mask,
                        position_ids=M.position_ids_from_mask(mask)).logits[:, :-1].float()
        tempered = torch.log_softmax(logits / 0.7, dim=-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
        plain = M.token_logprobs(policy, ids, mask)
    torch.testing.assert_close(got[valid], tempered[valid], atol=1e-5, rtol=0)
    assert (got[valid] - plain[valid]).abs().max() > 1e-3


def test_token_logprobs_gradients_match_direct_computation(tokenizer, policy, monkeypatch):
    ids, mask = padded(tokenizer, TEXTS)
    valid = (mask[:, :-1] * mask[:, 1:]).bool()

    def gradients(loss_fn):
        policy.zero_grad()
        loss_fn().backward()
        return {n: p.grad.clone() for n, p in policy.named_parameters()}

    def direct():
        logits = policy(input_ids=ids, attention_mask=mask,
                        position_ids=M.position_ids_from_mask(mask)).logits[:, :-1].float()
        log_softmax = torch.log_softmax(logits, dim=-1)
        picked = log_softmax.gather(-1, ids[:, 1:, None]).squeeze(-1)
        entropy = -(log_softmax.exp() * log_softmax).sum(-1)
        return (picked[valid].sum() + 0.1 * entropy[valid].sum())

    def chunked():
        logprobs, entropy = M.token_logprobs(policy, ids, mask, return_entropy=True)
        return logprobs.sum() + 0.1 * entropy.sum()

    monkeypatch.setattr(M, "LOGPROB_CHUNK", 5)
    expected, got = gradients(direct), gradients(chunked)
    policy.zero_grad()
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], atol=1e-5, rtol=1e-4)


def test_token_logprobs_never_makes_the_whole_logits_tensor(tokenizer, policy, monkeypatch):
    """The output layer only ever sees `chunk` positions at once, in forward and in the
    recomputation of backward, and it is the model's own head again afterwards."""
    ids, mask = padded(tokenizer, TEXTS)
    head = policy.get_output_embeddings()
    seen = []
    hook = head.register_forward_hook(lambda m, inp, out: seen.append(out.shape))
    try:
        logprobs, entropy = M.token_logprobs(policy, ids, mask, return_entropy=True, chunk=7)
        (logprobs.sum() + entropy.sum()).backward()
    finally:
        hook.remove()
        policy.zero_grad()
    positions = ids.shape[0] * (ids.shape[1] - 1)
    assert all(s[0] <= 7 and s[-1] == policy.config.vocab_size for s in seen)
    assert len(seen) == 2 * -(-positions // 7)          # each chunk once, and once again in backward
    assert policy.get_output_embeddings() is head


# ---------------------------------------------------------------- generation


def test_greedy_batch_equals_each_prompt_alone(tokenizer, policy):
    prompts = [M.apply_chat(tokenizer, t) for t in TEXTS]
    batch = M.generate(policy, tokenizer, prompts, max_new_tokens=10, do_sample=False)
    for prompt, out in zip(prompts, batch):
        alone = M.generate(policy, tokenizer, [prompt], max_new_tokens=10, do_sample=False)[0]
        assert out == alone
        assert out.prompt_ids == tokenizer(prompt, add_special_tokens=False)["input_ids"]
        assert len(out.response_ids) == 10 and out.truncated  # a random model does not say eos
        assert out.text == tokenizer.decode(out.response_ids, skip_special_tokens=True)
    assert len({tuple(o.response_ids) for o in batch}) > 1


def test_generation_stops_at_eos(tokenizer, tmp_path):
    model = M.make_tiny_model(tokenizer, seed=1, tie_word_embeddings=False).eval()
    prompts = [M.apply_chat(tokenizer, t) for t in TEXTS]
    free = [o.response_ids for o in M.generate(model, tokenizer, prompts, max_new_tokens=10, do_sample=False)]
    # Declare as end-of-turn (as chat models do in generation_config) a token that the
    # first greedy reply makes early, for the first time, and the last reply never
    # makes: the first row must stop there while the last row keeps going.
    stop = next(token for i, token in enumerate(free[0]) if i > 0 and token not in free[0][:i] + free[-1])
    model.generation_config.eos_token_id = [tokenizer.eos_token_id, stop]
    stopped = M.generate(model, tokenizer, prompts, max_new_tokens=10, do_sample=False)
    for reply, out in zip(free, stopped):
        expected = reply[:reply.index(stop) + 1] if stop in reply else reply
        assert out.response_ids == expected and out.truncated == (stop not in reply)
    assert len(stopped[0].response_ids) < 10 and len(stopped[-1].response_ids) == 10


def test_sampling_is_seeded_and_respects_limits(tokenizer, policy):
    prompts = [M.apply_chat(tokenizer, t) for t in TEXTS]
    torch.manual_seed(0)
    first = M.generate(policy, tokenizer, prompts, max_new_tokens=8, temperature=0.7, top_p=0.9)
    torch.manual_seed(0)
    assert M.generate(policy, tokenizer, prompts, max_new_tokens=8, temperature=0.7, top_p=0.9) == first
    assert all(1 <= len(o.response_ids) <= 8 for o in first)
    assert M.generate(policy, tokenizer, [], max_new_tokens=8) == []


def test_seeded_rows_do_not_depend_on_their_batch(tokenizer, policy):
    prompts = [M.apply_chat(tokenizer, t) for t in TEXTS]
    together = M.generate(policy, tokenizer, prompts, max_new_tokens=12, seeds=[11, 12, 13])
    apart = M.generate(policy, tokenizer, [prompts[2], prompts[0]], max_new_tokens=12, seeds=[13, 11])
    assert apart == [together[2], together[0]]
    other = M.generate(policy, tokenizer, prompts[:1], max_new_tokens=12, seeds=[99])
    assert other[0].response_ids != together[0].response_ids
    with pytest.raises(ValueError):
        M.generate(policy, tokenizer, prompts, max_new_tokens=4, seeds=[1])


def test_seeded_sampler_follows_tempered_top_p_distribution():
    n = 6000
    probs = torch.tensor([0.5, 0.3, 0.15, 0.05])
    scores = probs.log().expand(n, 4).clone()
    def freq(temperature, top_p):
        pick = M.seeded_sampler(range(n), temperature, top_p, "cpu")(None, scores)
        assert torch.isfinite(pick).sum(1).eq(1).all()     # exactly one token left per row
        return torch.bincount(pick.argmax(1), minlength=4).float() / n
    assert torch.allclose(freq(1.0, 1.0), probs, atol=0.025)
    tempered = probs ** 2 / (probs ** 2).sum()                # temperature 0.5
    assert torch.allclose(freq(0.5, 1.0), tempered, atol=0.025)
    # top_p 0.8 keeps the smallest set reaching 0.8: tokens 0 and 1, renormalized
    assert torch.allclose(freq(1.0, 0.8), torch.tensor([0.625, 0.375, 0, 0]), atol=0.025)


# ---------------------------------------------------------------- checkpoints


def test_checkpoint_round_trip(tokenizer, policy, tmp_path):
    out = str(tmp_path / "ckpt")
    M.save_checkpoint(out, policy, tokenizer, extra={"step": 3, "lr": 1e-6})
    assert M.is_complete_checkpoint(out) and M.read_extra(out) == {"step": 3, "lr": 1e-6}
    reloaded = M.load_policy(out, "cpu")
    assert reloaded.dtype == torch.float32 and weights_equal(reloaded, policy)
    ids, mask = padded(tokenizer, TEXTS)
    with torch.no_grad():
        assert torch.equal(reloaded(input_ids=ids, attention_mask=mask).logits,
                           policy(input_ids=ids, attention_mask=mask).logits)
    assert M.load_tokenizer(out)(TEXTS[0])["input_ids"] == tokenizer(TEXTS[0])["input_ids"]
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temporary directories left


def test_directory_without_marker_is_not_a_checkpoint(tokenizer, policy, tmp_path):
    out = str(tmp_path / "ckpt")
    assert not M.is_complete_checkpoint(out)
    M.save_checkpoint(out, policy, tokenizer)
    os.remove(os.path.join(out, M.COMPLETE_MARKER))
    assert not M.is_complete_checkpoint(out)


def test_crash_during_save_keeps_previous_checkpoint(tokenizer, tmp_path, monkeypatch):
    out = str(tmp_path / "ckpt")
    old = M.make_tiny_model(tokenizer, seed=1)
    M.save_checkpoint(out, old, tokenizer, extra={"step": 1})
    new = M.make_tiny_model(tokenizer, seed=2)

    def crash(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(tokenizer, "save_pretrained", crash)  # after the weights were written
    with pytest.raises(OSError, match="disk full"):
        M.save_checkpoint(out, new, tokenizer, extra={"step": 2})
    monkeypatch.undo()
    assert sorted(os.listdir(tmp_path)) == ["ckpt", "ckpt.tmp"]
    assert os.path.exists(os.path.join(tmp_path, "ckpt.tmp", "model.safetensors"))
    assert not M.is_complete_checkpoint(os.path.join(tmp_path, "ckpt.tmp"))
    assert M.recover_checkpoint(out) and M.read_extra(out) == {"step": 1}
    assert weights_equal(M.load_policy(out, "cpu"), old)

    M.save_checkpoint(out, new, tokenizer, extra={"step": 2})
    assert M.read_extra(out) == {"step": 2} and weights_equal(M.load_policy(out, "cpu"), new)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # the unfinished temp dir was replaced


def test_training_state_restores_optimizer_and_rng(tokenizer, tmp_path):
    model = M.make_tiny_model(tokenizer)
    optimizer = stepped_optimizer(model, tokenizer)
    M.save_checkpoint(str(tmp_path / "ckpt"), model, tokenizer, extra={"step": 1}, optimizer=optimizer)
    expected_rand = torch.rand(4)

    fresh = torch.optim.AdamW(model.parameters(), lr=1e-3)
    assert M.load_training_state(str(tmp_path / "ckpt"), fresh) == {"step": 1}
    assert torch.equal(torch.rand(4), expected_rand)
    saved, restored = optimizer.state_dict()["state"], fresh.state_dict()["state"]
    assert saved.keys() == restored.keys()
    for index in saved:
        for key in ("step", "exp_avg", "exp_avg_sq"):
            assert torch.equal(saved[index][key], restored[index][key])

    state_path = os.path.join(tmp_path, "ckpt", "training_state.rank0.pt")
    state = torch.load(state_path, weights_only=False)
    state["world_size"] = 2
    torch.save(state, state_path)
    with pytest.raises(ValueError, match="world size 2"):
        M.load_training_state(str(tmp_path / "ckpt"), fresh)
    with pytest.raises(FileNotFoundError, match="no training state"):
        M.load_training_state(str(tmp_path), fresh)


def crash_after(monkeypatch, k):
    """Make the k-th checkpoint step from now raise SimulatedCrash (0: never)."""
    monkeypatch.setattr(M, "_steps_done", 0)
    monkeypatch.setattr(M, "CRASH_AFTER", k)


def test_a_save_killed_after_any_step_resumes_from_a_complete_checkpoint(tokenizer, tmp_path,
                                                                         monkeypatch):
    """Checkpoint 1 is in place and checkpoint 2 is being saved over it when the process
    dies after step k of the save; then the resume that recovers it may die after step j
    of its own renames. Every time, the next resume must load one whole checkpoint, 1 or
    2 (weights, extra and optimizer state of the same save) and leave no leftovers."""
    models = {s: M.make_tiny_model(tokenizer, seed=s) for s in (1, 2)}
    optimizers = {s: stepped_optimizer(models[s], tokenizer) for s in (1, 2)}

    def save(out, s):
        M.save_checkpoint(out, models[s], tokenizer, extra={"step": s}, optimizer=optimizers[s])

    def resumed_step(out):
        assert M.recover_checkpoint(out)
        step = M.read_extra(out)["step"]
        assert weights_equal(M.load_policy(out, "cpu"), models[step])
        fresh = torch.optim.AdamW(models[step].parameters(), lr=1e-3)
        assert M.load_training_state(out, fresh) == {"step": step}
        assert moments_equal(fresh, optimizers[step])
        assert os.listdir(os.path.dirname(out)) == ["last"]     # leftovers are gone
        return step

    crash_after(monkeypatch, 0)
    save(str(tmp_path / "count" / "last"), 1)
    first = M._steps_done
    save(str(tmp_path / "count" / "last"), 2)
    n_steps = M._steps_done - first
    assert n_steps == 5       # written, marked, old moved aside, new in place, old deleted
    for k in range(1, n_steps):
        root = tmp_path / f"kill{k}"
        out = str(root / "last")
        save(out, 1)
        crash_after(monkeypatch, k)
        with pytest.raises(M.SimulatedCrash):
            save(out, 2)
        crash_after(monkeypatch, 0)
        if k == 3:      # the state of issue 14: no last/, the old and the new beside it
            assert sorted(os.listdir(root)) == ["last.old", "last.tmp"]
        expected = 1 if k == 1 else 2     # the new one counts once it is marked complete
        for j in range(1, 10):
            trial = tmp_path / f"kill{k}-recovery{j}"
            shutil.copytree(root, trial)
            crash_after(monkeypatch, j)
            try:
                M.recover_checkpoint(str(trial / "last"))
                finished = True
            except M.SimulatedCrash:
                finished = False
            crash_after(monkeypatch, 0)
            assert resumed_step(str(trial / "last")) == expected, (k, j)
            if finished:
                break
        assert resumed_step(out) == expected, k


def test_recover_the_leftovers_of_the_earlier_naming(tokenizer, tmp_path):
    """Before issue 14 a save used <dir>.tmp-<pid> and <dir>.old-<pid>; a run killed
    between its two renames has no last/ and must still resume, from the newer one."""
    for step in (1, 2):
        M.save_checkpoint(str(tmp_path / f"s{step}"), M.make_tiny_model(tokenizer, seed=step),
                          tokenizer, extra={"step": step})
    os.rename(tmp_path / "s1", tmp_path / "last.old-4242")
    os.rename(tmp_path / "s2", tmp_path / "last.tmp-4242")
    os.makedirs(tmp_path / "last.tmp-17")                      # an unfinished one, older still
    assert M.recover_checkpoint(str(tmp_path / "last"))
    assert M.read_extra(str(tmp_path / "last")) == {"step": 2}
    assert os.listdir(tmp_path) == ["last"]


def test_recover_without_any_complete_checkpoint_touches_nothing(tokenizer, tmp_path):
    assert not M.recover_checkpoint(str(tmp_path / "last"))
    M.save_checkpoint(str(tmp_path / "last"), M.make_tiny_model(tokenizer), tokenizer)
    os.remove(tmp_path / "last" / M.COMPLETE_MARKER)          # torn: not loadable
    os.rename(tmp_path / "last", tmp_path / "last.tmp")
    before = sorted(os.listdir(tmp_path / "last.tmp"))
    assert not M.recover_checkpoint(str(tmp_path / "last"))
    assert os.listdir(tmp_path) == ["last.tmp"] and sorted(os.listdir(tmp_path / "last.tmp")) == before


def test_optimizer_state_of_another_save_is_refused(tokenizer, tmp_path):
    model = M.make_tiny_model(tokenizer)
    optimizer = stepped_optimizer(model, tokenizer)
    for step in (1, 2):
        M.save_checkpoint(str(tmp_path / f"s{step}"), model, tokenizer, extra={"step": step},
                          optimizer=optimizer)
    name = "training_state.rank0.pt"
    shutil.copy(tmp_path / "s1" / name, tmp_path / "s2" / name)   # step-1 moments, step-2 weights
    with pytest.raises(ValueError, match="optimizer state from save"):
        M.load_training_state(str(tmp_path / "s2"), torch.optim.AdamW(model.parameters()))


# ---------------------------------------------------------------- run logs


def write_lines(path, steps, tail=""):
    with open(path, "w") as f:
        f.writelines(json.dumps({"kind": "train", "step": s}) + "\n" for s in steps)
        f.write(tail)


def logged_steps(path):
    with open(path) as f:
        return [json.loads(line)["step"] for line in f]


def test_trim_metrics_keeps_earlier_steps_and_drops_a_torn_line(tmp_path):
    path = str(tmp_path / "metrics.jsonl")
    write_lines(path, [1, 2, 3, 4], tail='{"kind": "train", "st')     # killed mid-append
    M.trim_metrics(path, 3)
    assert logged_steps(path) == [1, 2, 3]
    M.trim_metrics(path, 0)                                           # a fresh run
    assert logged_steps(path) == []


def test_trim_metrics_killed_while_writing_keeps_the_old_file(tmp_path, monkeypatch):
    path = str(tmp_path / "metrics.jsonl")
    write_lines(path, [1, 2, 3, 4])
    real_open = open

    def open_then_die(file, mode="r", *args, **kwargs):
        f = real_open(file, mode, *args, **kwargs)        # "w" has truncated the file by now
        if "w" in mode:
            f.close()
            raise OSError("killed")
        return f

    monkeypatch.setattr(M, "open", open_then_die, raising=False)    # model.py's open only
    with pytest.raises(OSError, match="killed"):
        M.trim_metrics(path, 2)
    monkeypatch.undo()
    assert logged_steps(path) == [1, 2, 3, 4]

    def die(*args):
        raise OSError("killed before the rename")

    monkeypatch.setattr(M.os, "replace", die)        # the new file is whole, not yet in place
    with pytest.raises(OSError, match="before the rename"):
        M.trim_metrics(path, 2)
    monkeypatch.undo()
    assert logged_steps(path) == [1, 2, 3, 4]
    M.trim_metrics(path, 2)
    assert logged_steps(path) == [1, 2]
    assert sorted(os.listdir(tmp_path)) == ["metrics.jsonl"]


# ---------------------------------------------------------------- bad input


def test_model_dir_problems_are_setup_errors_naming_flag_and_path(tokenizer, tmp_path):
    def message(path, **kw):
        with pytest.raises(M.SetupError) as e:
            M.check_model_dir(path, "--init_from", **kw)
        assert f"--init_from={path}" in str(e.value)
        return str(e.value)

    assert "no such directory" in message(str(tmp_path / "missing" / "best"))
    os.makedirs(tmp_path / "empty")
    assert "empty" in message(str(tmp_path / "empty"))
    (tmp_path / "file").write_text("x")
    assert "a file" in message(str(tmp_path / "file"))
    ckpt = M.make_tiny_checkpoint(str(tmp_path / "ckpt"))
    M.check_model_dir(ckpt, "--init_from")
    os.remove(os.path.join(ckpt, "model.safetensors"))
    assert "no weights" in message(ckpt) and "tokenizer" not in message(ckpt)
    M.check_model_dir(ckpt, "--init_from", parts=("config", "tokenizer"))
    M.check_model_dir("Qwen/Qwen2.5-Coder-7B-Instruct", "--init_from")   # a Hub id: HF's to fetch
    # the loaders check too, so any caller gets the path instead of HF's "Repo id must be ..."
    with pytest.raises(M.SetupError, match="weights"):
        M.load_policy(ckpt, "cpu")
    with pytest.raises(M.SetupError, match="empty"):
        M.load_tokenizer(str(tmp_path / "empty"))
    with pytest.raises(M.SetupError, match="no such directory"):
        M.load_reward_model(str(tmp_path / "missing" / "best"), "cpu")


def test_setup_error_exits_with_one_line(tmp_path):
    script = tmp_path / "bad.py"
    script.write_text(f"import sys\nsys.path.insert(0, {REPO!r})\nimport model\n"
                      "model.exit_on_setup_error()\n"
                      "raise model.SetupError('--init_from=out/x: no such directory')\n")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == "bad.py: error: --init_from=out/x: no such directory"


# ---------------------------------------------------------------- FSDP2 (two CPU processes)


def test_fsdp_two_processes(tmp_path):
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               os.path.join(REPO, "tests", "dist_model_check.py"), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    if done.returncode != 0 and "DIST_STARTED" not in output:
        pytest.skip(f"torchrun could not start two gloo processes here:\n{output[-2000:]}")
    assert done.returncode == 0, output[-4000:]
    assert all(os.path.exists(tmp_path / f"dist_ok_{r}") for r in (0, 1)), output[-4000:]


def test_sharded_loading_keeps_one_copy_per_node(tmp_path):
    """model.load_sharded under two processes: rank 1 never holds the whole fp32 model,
    and the sharded model computes what the plain one does (tests/dist_load_check.py)."""
    tokenizer = M.make_tiny_tokenizer()
    big = M.make_tiny_model(tokenizer, n_layer=8, n_embd=768, n_head=12, intermediate_size=2048)
    big.save_pretrained(tmp_path / "policy")
    tokenizer.save_pretrained(tmp_path / "policy")
    del big
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
               os.path.join(REPO, "tests", "dist_load_check.py"), str(tmp_path)]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    assert "LOAD_OK rank 0" in output and "LOAD_OK rank 1" in output, output[-4000:]
