import dataclasses
import json
import math
import os
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

import data
import model as M
import prompts
import train_sft
from train_sft import batch_tensors, reference_examples, reference_response, sft_loss

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURE = os.path.join(REPO, "tests", "fixtures", "toy_problems.jsonl")


@pytest.fixture(scope="module")
def problems():
    return data.load_problems(FIXTURE, allow_empty=False)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    path = M.make_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny") / "policy"))
    return path, M.load_tokenizer(path), M.load_policy(path, "cpu", dtype=torch.float32)

# ---------------------------------------------------------------- the loss


def test_sft_loss_by_hand():
    # one row of 3 positions over a vocabulary of 2; position 0 is a prompt token (mask 0)
    logits = torch.tensor([[[0.0, 5.0], [0.0, 0.0], [math.log(3.0), 0.0]]])
    targets = torch.tensor([[0, 0, 1]])
    mask = torch.tensor([[0.0, 1.0, 1.0]])
    logprobs = torch.log_softmax(logits, -1).gather(-1, targets[..., None])[..., 0]
    # position 1: softmax(0, 0) = (1/2, 1/2), -log 1/2 = 0.6931471806
    # position 2: softmax(ln 3, 0) = (3/4, 1/4), -log 1/4 = 1.3862943611
    # token mean over the 2 response tokens: (0.6931471806 + 1.3862943611) / 2 = 1.0397207709
    assert sft_loss(logprobs, mask, 2).item() == pytest.approx(1.0397207709, abs=1e-6)
    # the same as torch's cross-entropy on the response positions
    keep = mask.bool()
    assert sft_loss(logprobs, mask, 2).item() == pytest.approx(
        F.cross_entropy(logits[keep], targets[keep]).item(), abs=1e-6)
    # N counts the global batch: with 2 more response tokens elsewhere, the sum / 4
    assert sft_loss(logprobs, mask, 4).item() == pytest.approx(2.0794415417 / 4, abs=1e-6)


def test_prompt_tokens_are_masked(tiny):
    _, tok, policy = tiny
    rows = [([5, 6, 7, 8], [9, 10, 2]), ([11, 12], [13, 14, 15, 16, 2])]
    ids, attn, mask = batch_tensors(rows, tok.pad_token_id, "cpu")
    # the mask marks exactly the response tokens as targets (column t scores token t+1)
    assert ids[:, 1:][mask.bool()].tolist() == [9, 10, 2, 13, 14, 15, 16, 2]
    logprobs = M.token_logprobs(policy, ids, attn).detach().requires_grad_(True)
    loss = sft_loss(logprobs, mask, mask.sum())
    # changing what the prompt positions predict changes nothing, and gets no gradient
    changed = torch.where(mask.bool(), logprobs, logprobs - 3.0 + torch.randn_like(logprobs))
    assert sft_loss(changed, mask, mask.sum()).item() == pytest.approx(loss.item(), abs=1e-6)
    loss.backward()
    assert (logprobs.grad[~mask.bool()] == 0).all() and (logprobs.grad[mask.bool()] != 0).all()
    # the chunked training path equals cross-entropy of the full logits on response tokens
    with torch.no_grad():
        logits = policy(input_ids=ids, attention_mask=attn,
                        position_ids=M.position_ids_from_mask(attn)).logits[:, :-1]
    want = F.cross_entropy(logits[mask.bool()], ids[:, 1:][mask.bool()])
    assert train_sft.micro_loss(policy, rows, tok.pad_token_id, "cpu", mask.sum()).item() == \
        pytest.approx(want.item(), abs=1e-5)

# ---------------------------------------------------------------- data


def test_reference_examples_pass_and_bad_ones_are_counted(problems):
    no_solution = dataclasses.replace(problems[0], id="nosol", solution="")
    wrong = dataclasses.replace(problems[0], id="wrong", solution="def add(a, b):\n    return a - b\n")
    math_problem = data.Problem(id="m", statement="What is 6 * 7?", tests=[], answer="42",
                                solution="6 * 7 = 42.")
    examples, counts = reference_examples(problems + [no_solution, wrong, math_problem], "NOTE")
    assert counts == {"no_solution": 1, "sampled": len(problems) + 2, "passed": len(problems) + 1}
    assert [e["problem_id"] for e in examples] == [p.id for p in problems] + ["m"]
    assert examples[0]["response"] == (f"<think>\nNOTE\n</think>\n<answer>\n```python\n"
                                       f"{problems[0].solution}```\n</answer>")
    assert examples[0]["prompt"] == prompts.rl_prompt(problems[0])
    assert reference_response(math_problem, "NOTE") == \
        "<think>\n6 * 7 = 42.\n</think>\n<answer>\n\\boxed{42}\n</answer>"
    parsed, results = prompts.run_responses(problems, [e["response"] for e in examples[:-1]])
    assert all(p.format_ok and p.think == "NOTE" for p in parsed)
    assert all(r.all_passed for r in results)


def test_rejection_keeps_exactly_the_passing_samples(problems, tiny, monkeypatch):
    _, tok, _ = tiny
    add, double = problems[0], problems[1]          # a call problem, a stdin problem
    good = lambda code, think="ok": f"<think>{think}</think><answer>```python\n{code}```</answer>"
    script = {  # (problem id, sample k) -> (response, truncated)
        (add.id, 0): ("no tags at all", False),
        (add.id, 1): (good("def add(a, b):\n    return a + b\n"), False),
        (add.id, 2): (good("def add(a, b):\n    return a + b\n"), False),      # a duplicate
        (add.id, 3): (good("def add(a, b):\n    return b + a\n", "b"), False),
        (double.id, 0): (good("print(3 * int(input()))\n"), False),           # fails
        (double.id, 1): (good("print(2 * int(input()))\n"), True),            # truncated
        (double.id, 2): ("```python\nprint(2 * int(input()))\n```", False),  # Ro 1, Rf 0
        (double.id, 3): (good("print(int(input()) * 2)\n"), False),
    }
    by_seed = {data.seed_hash(train_sft.seed, "sft", pid, k): v for (pid, k), v in script.items()}

    def scripted(model, tokenizer, texts, max_new_tokens, temperature, top_p, device, seeds):
        return [M.GenerationOutput([], [], *by_seed[s]) for s in seeds]
    monkeypatch.setattr(train_sft, "generate", scripted)
    examples, counts = train_sft.rejection_examples(torch.nn.Linear(1, 1), tok, [add, double],
                                                    samples=4, keep=2, device="cpu")
    assert [(e["problem_id"], e["response"]) for e in examples] == [
        (add.id, script[add.id, 1][0]), (add.id, script[add.id, 3][0]),
        (double.id, script[double.id, 3][0])]
    assert counts == {"no_solution": 0, "sampled": 8, "passed": 4}

# ---------------------------------------------------------------- end to end (subprocesses)


def run(*flags, cwd=REPO):
    return subprocess.run([sys.executable, os.path.join(REPO, "train_sft.py"), *flags], cwd=cwd,
                          capture_output=True, text=True, timeout=240,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})


def short(tiny_dir, out, steps):
    return [f"--init_from={tiny_dir}", f"--train_file={FIXTURE}", f"--out_dir={out}",
            "--batch_size=3", "--micro_batch_size=2", "--val_fraction=0.25", "--epochs=2",
            "--learning_rate=3e-3", f"--max_steps={steps}", "--eval_interval=2",
            "--dtype=float32", "--sandbox_workers=1"]


def records(out):
    with open(os.path.join(out, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def test_end_to_end_learns_checkpoints_and_resumes(tiny, tmp_path):
    tiny_dir = tiny[0]
    full, part = str(tmp_path / "full"), str(tmp_path / "part")
    done = run(*short(tiny_dir, full, 4))
    assert done.returncode == 0, done.stderr[-3000:]
    assert '"problems": 8' in done.stdout and '"kept": 8' in done.stdout
    recs = records(full)
    assert recs[0] == {"kind": "data", "step": 0, "source": "reference", "problems": 8,
                       "no_solution": 0, "sampled": 8, "passed": 8, "kept": 8, "pass_rate": 1.0,
                       "too_long": 0, "train": 6, "val": 2}
    train = [r for r in recs if r["kind"] == "train"]
    evals = [r for r in recs if r["kind"] == "eval"]
    assert [r["step"] for r in train] == [1, 2, 3, 4] and [r["step"] for r in evals] == [0, 2, 4]
    assert train[-1]["loss"] < train[0]["loss"] - 0.2 and evals[-1]["val_loss"] < evals[0]["val_loss"]
    assert all({"loss", "tokens", "lr", "grad_norm", "elapsed"} <= set(r) for r in train)
    for name in ("last", "best"):
        assert M.is_complete_checkpoint(os.path.join(full, name))
    assert M.read_extra(os.path.join(full, "last"))["config"]["max_steps"] == 4
    assert len(open(os.path.join(full, "sft_data.jsonl")).readlines()) == 8

    # 2 steps, then resume to 4: the same losses as the straight run
    assert run(*short(tiny_dir, part, 2)).returncode == 0
    resumed = run(*short("resume", part, 4))
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resumed from" in resumed.stdout and "at step 2" in resumed.stdout
    again = [r for r in records(part) if r["kind"] == "train"]
    assert [r["step"] for r in again] == [1, 2, 3, 4]
    assert [r["loss"] for r in again] == pytest.approx([r["loss"] for r in train], abs=1e-5)


def test_bad_inputs_stop_with_one_line(tiny, tmp_path):
    for flag, phrase in ((f"--train_file={tmp_path}/missing.jsonl", "no such file"),
                         (f"--sft_data={tmp_path}/missing.jsonl", "no such file")):
        done = run(f"--init_from={tiny[0]}", f"--out_dir={tmp_path}/out", flag, cwd=tmp_path)
        assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr[-2000:]
        last = done.stderr.strip().splitlines()[-1]
        assert last.startswith("train_sft.py: error: --") and phrase in last, last
    assert not os.path.exists(tmp_path / "out")
