import json
import os
import subprocess
import sys
import time

import pytest
import torch

import train_rm
from configurator import configure
from test_train_grpo import assert_setup_error, snapshot
from data import Pair, load_pairs, problem_of, split_by_problem
from model import warmup_lr
from train_rm import (bradley_terry_loss, epoch_batches, evaluate_pairs, improves,
                      pair_metrics, training_split)

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOY = os.path.join(REPO, "tests", "fixtures", "toy_pairs.jsonl")

# ---------------------------------------------------------------- loss and metrics


def test_bradley_terry_loss_by_hand():
    chosen, rejected = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0])
    # differences 1 and 0: -log sigmoid(1) = log(1 + e^-1) = 0.3132616875,
    # -log sigmoid(0) = log 2 = 0.6931471806; mean = 0.5032044340
    assert bradley_terry_loss(chosen, rejected).item() == pytest.approx(0.5032044340, abs=1e-6)
    # margin 0.5: differences 0.5 and -0.5: log(1 + e^-0.5) = 0.4740769842,
    # log(1 + e^0.5) = 0.9740769842; mean = 0.7240769842
    assert bradley_terry_loss(chosen, rejected, margin=0.5).item() == pytest.approx(
        0.7240769842, abs=1e-6)
    # centering 0.1: (2 + 1)^2 = 9 and (0 + 0)^2 = 0, mean 4.5, times 0.1 = 0.45;
    # 0.5032044340 + 0.45 = 0.9532044340
    assert bradley_terry_loss(chosen, rejected, center_coef=0.1).item() == pytest.approx(
        0.9532044340, abs=1e-6)


def test_bradley_terry_loss_is_stable_for_large_differences():
    loss = bradley_terry_loss(torch.tensor([0.0]), torch.tensor([200.0]))
    assert loss.item() == pytest.approx(200.0)  # -log sigmoid(-200) = 200 + log(1 + e^-200)


def test_bradley_terry_gradient_pushes_chosen_up_rejected_down():
    chosen = torch.tensor([2.0, 0.0], requires_grad=True)
    rejected = torch.tensor([1.0, 0.0], requires_grad=True)
    bradley_terry_loss(chosen, rejected).backward()
    # dL/dr_c,i = -sigmoid(-(r_c,i - r_r,i)) / N: -sigmoid(-1) / 2 = -0.1344707107,
    # -sigmoid(0) / 2 = -0.25; dL/dr_r is the negation
    assert chosen.grad.tolist() == pytest.approx([-0.1344707107, -0.25], abs=1e-6)
    assert rejected.grad.tolist() == pytest.approx([0.1344707107, 0.25], abs=1e-6)


def test_pair_metrics_counts_ties_as_wrong():
    m = pair_metrics(torch.tensor([2.0, 0.0, 1.0]), torch.tensor([1.0, 0.0, 3.0]))
    # only pair 0 wins (pair 1 is a tie); margins 1, 0, -2, mean -1/3
    assert m["accuracy"] == pytest.approx(1 / 3)
    assert m["mean_margin"] == pytest.approx(-1 / 3)


def test_improves_prefers_accuracy_then_loss():
    best = {"accuracy": 0.8, "loss": 0.5}
    assert improves(best, None)
    assert improves({"accuracy": 0.9, "loss": 0.7}, best)
    assert improves({"accuracy": 0.8, "loss": 0.4}, best)
    assert not improves({"accuracy": 0.8, "loss": 0.5}, best)
    assert not improves({"accuracy": 0.7, "loss": 0.1}, best)


def test_lr_warms_up_linearly_then_stays():
    assert [warmup_lr(s, 1e-6, 4) for s in range(6)] == pytest.approx(
        [2.5e-7, 5e-7, 7.5e-7, 1e-6, 1e-6, 1e-6])
    assert warmup_lr(0, 1e-6, 0) == 1e-6

# ---------------------------------------------------------------- splits and batches


def synthetic_pairs(n_problems=60):
    pairs = []
    for i in range(n_problems):
        for k in range(1 + i % 3):
            # every fifth problem has no id: the prompt identifies it
            pid = "" if i % 5 == 0 else f"p{i}"
            pairs.append(Pair(prompt=f"problem {i}", chosen=f"good {k}", rejected=f"bad {k}",
                              pair_type="opt_deg", problem_id=pid))
    return pairs


def test_split_by_problem_keeps_problems_apart():
    pairs = synthetic_pairs()
    train, val = split_by_problem(pairs, 0.1, seed=0)
    assert len(train) + len(val) == len(pairs)
    assert not {problem_of(p) for p in train} & {problem_of(p) for p in val}
    assert 0.08 <= len(val) / len(pairs) <= 0.13  # 10% of the problems, of 1-3 pairs each
    assert any(p.problem_id == "" for p in val + train)


def test_split_by_problem_falls_back_to_the_prompt():
    pairs = [Pair(prompt=f"problem {i % 20}", chosen="a", rejected="b", pair_type="t")
             for i in range(40)]
    train, val = split_by_problem(pairs, 0.1, seed=0)
    assert len(val) == 4 and len(train) == 36
    assert not {p.prompt for p in train} & {p.prompt for p in val}


def test_split_by_problem_is_seeded():
    pairs = synthetic_pairs()
    assert split_by_problem(pairs, 0.1, seed=1) == split_by_problem(pairs, 0.1, seed=1)
    assert split_by_problem(pairs, 0.1, seed=1)[1] != split_by_problem(pairs, 0.1, seed=2)[1]


def test_split_by_problem_leaves_training_data():
    pairs = synthetic_pairs(2)
    train, val = split_by_problem(pairs, 0.9, seed=0)
    assert train and val


def test_a_validation_file_of_its_own_is_not_split_again():
    pairs = synthetic_pairs()
    train, val = split_by_problem(pairs, 0.1, seed=0)        # as synth.py's pairs_train/_val
    assert training_split(train, val, 0.1, seed=0) == (train, val)
    assert training_split(pairs, None, 0.1, seed=0) == split_by_problem(pairs, 0.1, seed=0)
    with pytest.raises(ValueError, match="shares 1 problems"):
        training_split(train, val + [train[0]], 0.1, seed=0)


def test_epoch_batches_are_full_seeded_and_reshuffled():
    first = epoch_batches(10, 4, seed=3, epoch=0)
    assert [len(b) for b in first] == [4, 4]  # the incomplete third batch is dropped
    assert len(set(sum(first, []))) == 8
    assert first == epoch_batches(10, 4, seed=3, epoch=0)
    assert first != epoch_batches(10, 4, seed=3, epoch=1)


@pytest.mark.parametrize("name", ["rm_cpu.py", "rm_qwen7b.py"])
def test_config_files_set_known_settings(name):
    cfg = configure(dict(vars(train_rm)), [os.path.join(REPO, "config", name)])
    assert cfg["batch_size"] == (128 if name == "rm_qwen7b.py" else 8)


# ---------------------------------------------------------------- end to end (subprocesses)
# The runs below use config/rm_cpu.py (a tiny random qwen2 on the toy pairs) on CPU.
# val_fraction 0.125 gives 9 validation pairs (3 problems): on 2 ranks, shards of 5 and 4
# pairs in micro-batches of 4, so rank 1 runs its second forward on a filler pair.
# 63 training pairs make 7 steps of 8 pairs per epoch.
SHORT = ["config/rm_cpu.py", "--epochs=1", "--eval_interval=2", "--val_fraction=0.125"]


def run_train(args, nproc=1, timeout=180):
    launcher = [] if nproc == 1 else ["-m", "torch.distributed.run", "--standalone",
                                      f"--nproc_per_node={nproc}"]
    proc = subprocess.Popen([sys.executable, *launcher, "train_rm.py", *args], cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGTERM, not SIGKILL: torchrun passes it on to the ranks (a hung collective)
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"{stdout[-3000:]}\n{stderr[-5000:]}"
    return stdout


def read_metrics(out_dir):
    with open(os.path.join(out_dir, "metrics.jsonl")) as f:
        return [json.loads(line) for line in f]


def assert_same_trajectory(rows, expected, rel):
    assert [(r["kind"], r["step"]) for r in rows] == [(r["kind"], r["step"]) for r in expected]
    for row, want in zip(rows, expected):
        for key in ("loss", "accuracy", "mean_margin", "grad_norm"):
            if key in want:
                assert row[key] == pytest.approx(want[key], rel=rel, abs=1e-6), (row, want)


def read_extra(path):
    with open(os.path.join(path, "extra.json")) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    from model import make_tiny_checkpoint
    return make_tiny_checkpoint(str(tmp_path_factory.mktemp("tiny") / "base"))


@pytest.fixture(scope="module")
def reference(tiny, tmp_path_factory):
    """One uninterrupted single-process run that the other runs are compared with."""
    out = str(tmp_path_factory.mktemp("reference"))
    run_train(SHORT + [f"--init_from={tiny}", f"--out_dir={out}"])
    return out


def test_cpu_config_learns_the_toy_pairs(tmp_path):
    # the tiny model is built by the run itself (tiny_init in config/rm_cpu.py)
    out = str(tmp_path / "run")
    stdout = run_train(["config/rm_cpu.py", f"--init_from={tmp_path / 'base'}", f"--out_dir={out}"])
    evals = [r for r in read_metrics(out) if r["kind"] == "eval"]
    first, best = evals[0], max(evals, key=lambda r: r["accuracy"])
    assert first["step"] == 0 and first["accuracy"] < 0.75  # untrained: near chance
    assert best["accuracy"] >= 0.9
    assert evals[-1]["loss"] < 0.5 * first["loss"]
    assert set(first["per_type"]) == {"opt_deg", "ori_deg", "opt_ori"}
    saved = read_extra(os.path.join(out, "best"))
    assert saved["step"] == evals[-1]["best_step"]
    assert saved["validation"]["accuracy"] == pytest.approx(
        max(r["accuracy"] for r in evals if r["step"] <= saved["step"]))
    assert "done: best validation accuracy" in stdout
    with open(os.path.join(out, "FINISHED")) as f:   # the run says it is over, and where its best is
        assert json.load(f)["step"] == saved["step"]


def test_two_ranks_match_one_process(tiny, reference, tmp_path):
    # rank r takes pairs [4r, 4r + 4) of each global batch of 8 in one micro-batch, where
    # the single process accumulates two micro-batches: same loss and grad norm
    out = str(tmp_path / "ddp")
    run_train(SHORT + [f"--init_from={tiny}", f"--out_dir={out}"], nproc=2)
    assert_same_trajectory(read_metrics(out), read_metrics(reference), rel=1e-4)


def test_resume_continues_exactly(tiny, reference, tmp_path):
    out = str(tmp_path / "resumed")
    run_train(SHORT + [f"--init_from={tiny}", f"--out_dir={out}", "--max_steps=4"])
    assert read_extra(os.path.join(out, "last"))["state"]["step"] == 4
    # a run killed after its last checkpoint has logged steps the resumed run will redo
    with open(os.path.join(out, "metrics.jsonl"), "a") as f:
        f.write(json.dumps({"kind": "train", "step": 5, "loss": 99.0}) + "\n")
    stdout = run_train(SHORT + ["--init_from=resume", f"--out_dir={out}"])
    assert "at step 4" in stdout
    assert not os.path.exists(os.path.join(REPO, "resume"))  # not taken for a tiny_init path
    assert_same_trajectory(read_metrics(out), read_metrics(reference), rel=1e-6)
    assert read_extra(os.path.join(out, "last"))["state"] == \
        read_extra(os.path.join(reference, "last"))["state"]
    best, want = (read_extra(os.path.join(d, "best")) for d in (out, reference))
    assert best["step"] == want["step"]
    for key in ("accuracy", "loss", "mean_margin"):
        assert best["validation"][key] == pytest.approx(want["validation"][key], rel=1e-6)


def test_early_stopping_after_patience_evaluations(tiny, tmp_path):
    # lr 0 leaves the model as it is: validation never improves after step 0
    out = str(tmp_path / "stuck")
    stdout = run_train(SHORT + [f"--init_from={tiny}", f"--out_dir={out}", "--learning_rate=0.0",
                                "--patience=2"])
    rows = read_metrics(out)
    assert [r["step"] for r in rows if r["kind"] == "eval"] == [0, 2, 4]
    assert max(r["step"] for r in rows) == 4
    assert "early stop at step 4" in stdout
    assert read_extra(os.path.join(out, "best"))["step"] == 0


def test_a_validation_file_is_used_as_it_is(tiny, tmp_path):
    from data import save_pairs
    train, val = split_by_problem(load_pairs(TOY), 0.25, seed=5)
    paths = [str(tmp_path / name) for name in ("train.jsonl", "val.jsonl")]
    for part, path in zip((train, val), paths):
        save_pairs(part, path)
    stdout = run_train(SHORT + [f"--init_from={tiny}", f"--out_dir={tmp_path / 'run'}",
                                f"--pairs_file={paths[0]}", f"--val_file={paths[1]}"])
    assert f"pairs: 72 ({len(train)} train, {len(val)} validation from {paths[1]})" in stdout
    assert {r["n"] for r in read_metrics(str(tmp_path / "run")) if r["kind"] == "eval"} == {len(val)}


def test_eval_only_reports_per_pair_type(reference, tmp_path):
    # an LCB-RB-like JSON array with other field names, one label for all pairs
    pairs = load_pairs(TOY)
    foreign = str(tmp_path / "foreign.json")
    with open(foreign, "w") as f:
        json.dump([{"question": p.prompt, "chosen": p.chosen, "rejected": p.rejected,
                    "label": "bench"} for p in pairs[:10]], f)
    # RewardBench's rows (prompt, chosen, rejected, *_model, subset, id), code and math subsets
    rewardbench = str(tmp_path / "rewardbench.jsonl")
    with open(rewardbench, "w") as f:
        for i, p in enumerate(pairs[:30]):
            f.write(json.dumps({"prompt": p.prompt, "chosen": p.chosen, "chosen_model": "human",
                                "rejected": p.rejected, "rejected_model": "human", "id": i,
                                "subset": ("hep-python", "hep-go", "math-prm")[i % 3]}) + "\n")
    best = os.path.join(reference, "best")
    out = str(tmp_path / "eval")
    stdout = run_train([f"--init_from={best}", "--eval_only=True", f"--out_dir={out}",
                        f"--eval_files={TOY},{foreign},{rewardbench}"])
    with open(os.path.join(out, "eval_results.json")) as f:
        results = json.load(f)["results"]
    toy, bench, rb = results[TOY], results[foreign], results[rewardbench]
    sub = {k: v["accuracy"] for k, v in rb["per_type"].items()}
    assert rb["rewardbench"] == pytest.approx({
        "code": (sub["hep-python"] + sub["hep-go"]) / 2, "math": sub["math-prm"],
        "reasoning": ((sub["hep-python"] + sub["hep-go"]) / 2 + sub["math-prm"]) / 2})
    assert "RewardBench sections" in stdout and toy["rewardbench"] == {}
    assert toy["n"] == 72 and set(toy["per_type"]) == {"opt_deg", "ori_deg", "opt_ori"}
    assert sum(r["n"] for r in toy["per_type"].values()) == 72
    assert bench["n"] == 10 and list(bench["per_type"]) == ["bench"]
    for name in ("opt_deg", "ori_deg", "opt_ori", "bench"):
        assert f" {name} " in stdout
    # the same numbers in process, and the saved validation accuracy is reproduced
    from model import load_reward_model, load_tokenizer
    tokenizer = load_tokenizer(best)
    model = load_reward_model(best, "cpu", dtype=torch.float32, tokenizer=tokenizer)
    again = evaluate_pairs(model, tokenizer, pairs, "cpu", micro_batch_size=16)
    assert again["accuracy"] == pytest.approx(toy["accuracy"])
    for name, r in again["per_type"].items():
        assert r["accuracy"] == pytest.approx(toy["per_type"][name]["accuracy"])
        assert r["mean_margin"] == pytest.approx(toy["per_type"][name]["mean_margin"], abs=1e-5)
    val = split_by_problem(pairs, 0.125, seed=1337)[1]
    saved = read_extra(best)["validation"]
    assert evaluate_pairs(model, tokenizer, val, "cpu")["accuracy"] == pytest.approx(
        saved["accuracy"])


def test_killed_run_resumes_to_the_same_end(tiny, tmp_path):
    """A real SIGKILL mid-run (after the step-4 checkpoint), then --init_from=resume."""
    args = ["config/rm_cpu.py", "--epochs=3", "--eval_interval=4", "--val_fraction=0.125",
            f"--init_from={tiny}"]
    whole = str(tmp_path / "whole")
    run_train(args + [f"--out_dir={whole}"])
    cut = str(tmp_path / "cut")
    os.makedirs(cut)
    with open(os.path.join(cut, "FINISHED"), "w") as f:     # an earlier run's, in the same out_dir
        f.write("{}")
    proc = subprocess.Popen([sys.executable, "train_rm.py", *args, f"--out_dir={cut}"], cwd=REPO,
                            env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        try:
            if any(r["step"] >= 5 for r in read_metrics(cut)):
                break
        except (OSError, ValueError):         # not written yet, or a line being written
            pass
        time.sleep(0.01)
    proc.kill()
    assert proc.wait() == -9                                 # killed, not finished
    assert max(r["step"] for r in read_metrics(cut)) < max(r["step"] for r in read_metrics(whole))
    assert not os.path.exists(os.path.join(cut, "FINISHED"))  # a killed run is not finished
    stdout = run_train(args + ["--init_from=resume", f"--out_dir={cut}"])
    assert "at step 4" in stdout
    assert_same_trajectory(read_metrics(cut), read_metrics(whole), rel=1e-6)


def test_a_save_killed_between_its_renames_resumes_from_the_newer_checkpoint(reference, tiny,
                                                                             tmp_path):
    """A run dies inside its step-4 save of last/, after last/ went to last.old and
    before last.tmp took its place (RECODE_CKPT_CRASH_AFTER counts the save's steps).
    --init_from=resume must take the newer one, step 4, and end as the uninterrupted run."""
    evals = [r for r in read_metrics(reference) if r["kind"] == "eval"]
    saves_of_best = sum(r["best_step"] == r["step"] for r in evals if r["step"] <= 4)
    saves_before = saves_of_best + sum(r["step"] < 4 for r in evals)   # best/ first, then last/
    steps_per_save = 5       # files written, marked, old moved aside, new in place, old deleted
    out = str(tmp_path / "cut")
    args = SHORT + [f"--init_from={tiny}", f"--out_dir={out}"]
    crashed = subprocess.run([sys.executable, "train_rm.py", *args], cwd=REPO, text=True,
                             capture_output=True, timeout=180,
                             env={**os.environ, "OMP_NUM_THREADS": "1",
                                  "RECODE_CKPT_CRASH_AFTER": str(steps_per_save * saves_before + 3)})
    assert crashed.returncode != 0 and "SimulatedCrash" in crashed.stderr, crashed.stderr[-3000:]
    assert sorted(d for d in os.listdir(out) if d.startswith("last")) == ["last.old", "last.tmp"]
    stdout = run_train(SHORT + ["--init_from=resume", f"--out_dir={out}"])
    assert "at step 4" in stdout
    assert_same_trajectory(read_metrics(out), read_metrics(reference), rel=1e-6)
    assert sorted(d for d in os.listdir(out) if d.startswith(("last", "best"))) == ["best", "last"]


# ---------------------------------------------------------------- bad input


def test_defaults_without_the_toy_world_say_to_run_toy_py(tmp_path):
    """nanoGPT's prepare, then train: the defaults read data/toy/, which `python toy.py`
    makes; without it the run stops at once with one line naming that command, and
    writes nothing (out_dir is out/toy_rm under the empty working directory)."""
    done = subprocess.run([sys.executable, os.path.join(REPO, "train_rm.py")], cwd=tmp_path,
                          capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 1, done.stdout[-2000:] + done.stderr[-2000:]
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr[-3000:]
    assert done.stderr.startswith("train_rm.py: error: ") and "python toy.py" in done.stderr
    assert os.listdir(tmp_path) == []


# case: (flags, the message's start, a phrase of its end); "{x}" are paths made below
BAD_INPUTS = {
    "no base model dir": (["--init_from={missing}"], "--init_from={missing}", "no such directory"),
    "empty base model dir": (["--init_from={empty_dir}"], "--init_from={empty_dir}", "empty"),
    "resume without checkpoint": (["--init_from=resume"], "--init_from=resume",
                                  "no complete checkpoint at {out}/last"),
    "empty pairs file": (["--init_from={tiny}", "--pairs_file={empty_file}"],
                         "{empty_file}, file", "no pairs: the file holds no records"),
    "empty reward model dir, eval only": (["--init_from={empty_dir}", "--eval_only=True",
                                           f"--eval_files={TOY}"], "--init_from={empty_dir}", "empty"),
}


@pytest.mark.parametrize("case", BAD_INPUTS)
def test_bad_input_stops_with_one_line_and_touches_nothing(case, tiny, tmp_path):
    """Exit status 1 and one line naming the flag and path (not transformers' "Repo id
    must be in the form ..."); an earlier run's out_dir keeps everything, FINISHED too."""
    paths = dict(missing=str(tmp_path / "missing" / "base"), empty_dir=str(tmp_path / "empty"),
                 empty_file=str(tmp_path / "empty.jsonl"), out=str(tmp_path / "run"), tiny=tiny)
    os.makedirs(paths["empty_dir"])
    open(paths["empty_file"], "w").close()
    os.makedirs(os.path.join(paths["out"], "last.tmp"))          # an unfinished save
    for name, text in (("FINISHED", "{}"), ("metrics.jsonl", '{"kind": "train", "step": 1}\n')):
        with open(os.path.join(paths["out"], name), "w") as f:
            f.write(text)
    flags, start, phrase = BAD_INPUTS[case]
    before = snapshot(tmp_path)
    done = subprocess.run([sys.executable, "train_rm.py", *SHORT, "--tiny_init=False",
                           f"--out_dir={paths['out']}", *[f.format(**paths) for f in flags]],
                          cwd=REPO, capture_output=True, text=True, timeout=180,
                          env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert_setup_error(done, "train_rm.py", start.format(**paths), phrase.format(**paths))
    assert snapshot(tmp_path) == before


def test_memory_plan_prints_and_refuses(tmp_path):
    run = lambda *flags: subprocess.run(
        [sys.executable, os.path.join(REPO, "train_rm.py"), "config/rm_cpu.py",
         f"--init_from={tmp_path / 'base'}", f"--out_dir={tmp_path / 'out'}", *flags],
        cwd=REPO, capture_output=True, text=True, timeout=120)
    shown = run("--plan=True", "--gpu_gb=80.0")
    assert shown.returncode == 0 and "memory plan per rank: train_rm" in shown.stdout, shown.stderr
    refused = run("--gpu_gb=0.001")
    assert refused.returncode == 1 and "over the 0.001 GiB given" in refused.stderr
    assert not os.path.exists(tmp_path / "out")


def test_rewardbench_section_scores_by_hand():
    from train_rm import rewardbench_scores
    acc = lambda a, n=164: {"accuracy": a, "n": n}                          # noqa: E731
    per = {f"hep-{l}": acc(a) for l, a in zip(("cpp", "go", "java", "js", "python", "rust"),
                                              (0.5, 0.6, 0.7, 0.8, 0.9, 1.0))}
    per["math-prm"] = acc(0.25, 447)
    got = rewardbench_scores(per)
    # code: equal counts (164 each) -> the plain mean 0.75; math: 0.25; reasoning: 984 each
    assert got == pytest.approx({"code": 0.75, "math": 0.25, "reasoning": 0.5})
    assert rewardbench_scores({"hep-go": acc(0.5), "hep-rust": acc(1.0)}) == {"code": 0.75}
    assert rewardbench_scores({"opt_deg": acc(0.9)}) == {}
