"""Tests for runs/report.py: the claims' rules on hand-made numbers, and the report of a tiny
fake speedrun folder (metrics.jsonl per mode and seed, eval_results.json, times.jsonl)."""
import importlib.util
import json
import math
import os
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_spec = importlib.util.spec_from_file_location("report", os.path.join(REPO, "runs", "report.py"))
report = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(report)
NAN = float("nan")


# ---------------------------------------------------------------- claim 1
def rm(held, lcbrb, lcbrb_n, held_n=600):
    return {"held": held, "held_n": held_n, "lcbrb": lcbrb, "lcbrb_n": lcbrb_n}


def test_claim_rm_needs_ten_points_on_held_out_pairs():
    assert report.claim_rm(rm(0.50, 0.50, 200), rm(0.60, 0.65, 200))["verdict"] == "shown"
    assert report.claim_rm(rm(0.50, 0.50, 200), rm(0.59, 0.65, 200))["verdict"] == "not shown"
    # held-out shown, LCB-RB judged and not shown: the claim is not shown
    assert report.claim_rm(rm(0.50, 0.50, 200), rm(0.90, 0.55, 200))["verdict"] == "not shown"
    assert report.claim_rm(None, rm(0.9, 0.5, 200))["verdict"] == "not measured"


def test_claim_rm_lcbrb_part_needs_100_pairs():
    c = report.claim_rm(rm(0.50, 0.50, 99), rm(0.90, 0.90, 99))
    assert c["verdict"] == "shown on held-out pairs only"
    assert "too few LCB-RB pairs (99) to judge" in c["text"]
    c = report.claim_rm(rm(0.50, 0.50, 100), rm(0.90, 0.90, 100))
    assert c["verdict"] == "shown" and "too few" not in c["text"]


# ---------------------------------------------------------------- claim 2
def test_claim_pgrpo_tie_is_not_shown():
    c = report.claim_pgrpo({"1": 0.172, "2": 0.30}, {"1": 0.172, "2": 0.30})
    assert c["verdict"] == "not shown (a tie)" and c["mean"] == 0


def test_claim_pgrpo_single_seed_is_not_shown_and_says_why():
    c = report.claim_pgrpo({"1": 0.9}, {"1": 0.1})
    assert c["verdict"] == "not shown (a single seed: no standard error)"
    assert c["n"] == 1 and math.isnan(c["se"])


def test_claim_pgrpo_paired_mean_above_its_standard_error():
    # d = +0.05, +0.03, +0.04: mean 0.04, se 0.01/sqrt(3) -> shown
    c = report.claim_pgrpo({"1": 0.45, "2": 0.43, "3": 0.44}, {"1": 0.40, "2": 0.40, "3": 0.40})
    assert c["verdict"] == "shown"
    assert c["mean"] == pytest.approx(0.04) and c["se"] == pytest.approx(0.01 / math.sqrt(3))
    # positive mean within its standard error: d = +0.10, -0.08 -> mean 0.01, se 0.09
    c = report.claim_pgrpo({"1": 0.50, "2": 0.32}, {"1": 0.40, "2": 0.40})
    assert c["verdict"] == "not shown (within one standard error)"
    # negative mean
    assert report.claim_pgrpo({"1": 0.3, "2": 0.3}, {"1": 0.4, "2": 0.5})["verdict"] == "not shown"


def test_claim_pgrpo_pairs_by_seed_not_by_mean():
    # the means differ by +0.1 whichever way, but only seeds in both modes are paired:
    # seed 3 (posterior only) is left out, leaving one seed
    c = report.claim_pgrpo({"1": 0.5, "3": 0.9}, {"1": 0.4, "2": 0.1})
    assert c["n"] == 1 and c["verdict"].startswith("not shown (a single seed")
    # paired differences with low spread are shown even when the seeds spread widely
    c = report.claim_pgrpo({"1": 0.11, "2": 0.51, "3": 0.91}, {"1": 0.10, "2": 0.50, "3": 0.90})
    assert c["verdict"] == "shown"


# ---------------------------------------------------------------- claim 3
def trace(think_failing, pass_rate):
    return [{"kind": "train", "step": i + 1, "think_failing": tf, "pass_rate": pr}
            for i, (tf, pr) in enumerate(zip(think_failing, pass_rate))]


def test_claim_hacking_rule():
    flat = [0.2] * 8
    hacked = trace([0.5, 0.5, 0.55, 0.6, 0.6, 0.65, 0.7, 0.7], flat)        # Rt rise +0.2
    calm = trace([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.51, 0.51], flat)          # rise +0.01
    assert report.claim_hacking({"1": hacked}, {"1": calm})["verdict"] == "shown"
    c = report.claim_hacking({"1": hacked}, {"1": calm})
    assert c["excess"] == pytest.approx(0.19) and c["pass_rise"] == pytest.approx(0.0)
    # the same Rt rise in posterior: no excess
    assert report.claim_hacking({"1": hacked}, {"1": hacked})["verdict"] == "not shown"
    # the pass rate rose too: not a stall
    rising = trace([0.5, 0.5, 0.55, 0.6, 0.6, 0.65, 0.7, 0.7], [0.1, 0.1, 0.2, 0.2, 0.2, 0.3, 0.4, 0.4])
    assert report.claim_hacking({"1": rising}, {"1": calm})["verdict"] == "not shown"


def test_claim_hacking_nan_is_not_measured():
    hacked = trace([0.5, 0.5, 0.55, 0.6, 0.6, 0.65, 0.7, 0.7], [0.2] * 8)
    gated = trace([NAN] * 8, [0.2] * 8)                      # today's posterior: never scored
    c = report.claim_hacking({"1": hacked}, {"1": gated})
    assert c["verdict"] == "not measured" and "not measured" in c["text"]
    no_key = [{"kind": "train", "step": i, "pass_rate": 0.2} for i in range(8)]
    assert report.claim_hacking({"1": hacked}, {"1": no_key})["verdict"] == "not measured"
    assert report.claim_hacking({"1": hacked}, {"2": hacked})["verdict"] == "not measured"  # no common seed


def test_quarter_is_by_steps_and_skips_nan():
    recs = trace([NAN, 0.4, 0.6, 0.6, 0.6, 0.6, 0.8, NAN], [0] * 8)
    assert report.quarter(recs, "think_failing", True) == pytest.approx(0.4)
    assert report.quarter(recs, "think_failing", False) == pytest.approx(0.8)
    assert math.isnan(report.quarter(trace([NAN, NAN, 1, 1], [0] * 4), "think_failing", True))


# ---------------------------------------------------------------- claim 4
def test_claim_tokens_sign_and_standard_error():
    # -20% and -30%: mean -25%, se 5% -> shown
    c = report.claim_tokens({"1": 80.0, "2": 70.0}, {"1": 100.0, "2": 100.0})
    assert c["verdict"] == "shown" and c["mean"] == pytest.approx(-0.25)
    # longer responses under P-GRPO: not shown
    assert report.claim_tokens({"1": 120.0, "2": 130.0}, {"1": 100.0, "2": 100.0})["verdict"] == "not shown"
    # negative but within one standard error: -10%, +5%
    assert report.claim_tokens({"1": 90.0, "2": 105.0}, {"1": 100.0, "2": 100.0})["verdict"] == "not shown"
    assert report.claim_tokens({"1": 50.0}, {"1": 100.0})["verdict"].startswith("not shown (a single seed")


# ---------------------------------------------------------------- the report of a fake run
def write_run(out, mode, seed, pass_end, tokens_end, think_failing, alarm_at=None, plus=False):
    d = out / "rl" / f"{mode}-s{seed}"
    d.mkdir(parents=True)
    recs = [{"kind": "eval", "step": 0, "pass_at_1": 0.4, "format_rate": 0.9, "mean_tokens": 100.0,
             "think_score": 0.6, "n": 64, **({"pass_at_1_plus": 0.3} if plus else {})}]
    for step in range(1, 9):
        rec = {"kind": "train", "step": step, "reward": 1.0, "pass_rate": 0.2, "format_rate": 0.9,
               "reward_think": 0.7, "think_passing": 0.8, "think_failing": think_failing(step),
               "resp_len_mean": 100.0 - step}
        if alarm_at is not None:
            rec.update(hacking_alarm=int(step >= alarm_at),
                       hacking_reason="Rt of failing code climbs" if step >= alarm_at else "")
        recs.append(rec)
    recs.append({"kind": "eval", "step": 8, "pass_at_1": pass_end, "format_rate": 0.9,
                 "mean_tokens": tokens_end, "think_score": 0.62, "n": 64,
                 **({"pass_at_1_plus": pass_end - 0.1} if plus else {})})
    with open(d / "metrics.jsonl", "w") as f:
        f.write("\n".join(json.dumps(r) for r in recs) + "\n")  # NaN as json.dumps writes it


def write_rm(out, folder, held, lcbrb, lcbrb_n):
    (out / folder).mkdir(parents=True)
    per = {t: {"n": 200, "accuracy": held} for t in ("opt_deg", "ori_deg", "opt_ori")}
    results = {"data/toy/pairs_eval.jsonl": {"n": 600, "accuracy": held, "per_type": per},
               "data/toy/lcbrb.jsonl": {"n": lcbrb_n, "accuracy": lcbrb, "per_type": {}}}
    (out / folder / "eval_results.json").write_text(json.dumps({"init_from": "x", "results": results}))


def fake_out(tmp_path, plus=False, posterior_nan=False):
    out = tmp_path / "run"
    write_rm(out, "rm_untrained", 0.52, 0.55, 40)
    write_rm(out, "rm_trained", 0.91, 0.60, 40)
    for seed, dp in (("1", 0.05), ("2", 0.03), ("3", 0.04)):
        write_run(out, "outcome", seed, 0.40, 100.0, lambda s: NAN, plus=plus)
        write_run(out, "posterior", seed, 0.40 + dp, 80.0, (lambda s: NAN) if posterior_nan else (lambda s: 0.5),
                  alarm_at=None, plus=plus)
        write_run(out, "soft", seed, 0.40, 95.0, lambda s: 0.5, plus=plus)
        write_run(out, "additive", seed, 0.41, 110.0, lambda s: 0.4 + 0.05 * s,
                  alarm_at=6 if seed != "3" else 99, plus=plus)
    times = [{"stage": "toy_world", "seconds": 10}, {"stage": "rl_outcome_s1", "seconds": 5, "within": "rl"},
             {"stage": "rl", "seconds": 6}, {"stage": "report", "seconds": 1}]
    (out / "times.jsonl").write_text("\n".join(json.dumps(t) for t in times) + "\n")
    return out


def claim_line(text, n):
    return next(line for line in text.splitlines() if line.startswith(f"{n}. "))


def test_main_writes_the_verdicts(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "plot", lambda runs, path: False)   # the plot has its own test
    out = fake_out(tmp_path)
    text = open(report.main(str(out))).read()
    for heading in ("## Claims", "## 1. Reasoning reward model", "## 2. RL", "## 3. Reward-hacking",
                    "## 4. Curves", "## Stage wall times"):
        assert heading in text
    for mode in report.MODES:
        assert f"| {mode} |" in text
    assert "untrained backbone" in text and "trained (OD pairs)" in text
    assert "| &nbsp;&nbsp;rl_outcome_s1 | 5 |" in text and "Total: 17 s" in text
    c1, c2, c3, c4 = (claim_line(text, n) for n in (1, 2, 3, 4))
    assert "shown on held-out pairs only" in c1 and "too few LCB-RB pairs (40) to judge" in c1
    assert "): shown —" in c2 and "base tests" in c2 and "`pass_at_1`" in c2 and "+0.040" in c2
    # additive's failing Rt climbs 0.45 -> 0.80 against posterior's flat 0.5, pass rate flat
    assert "): shown —" in c3
    assert "): shown —" in c4 and "-20.0%" in c4
    # the alarm: seeds 1 and 2 fire at step 6 (3 steps each), seed 3 never; posterior not logged
    assert "| 6 | 6 (seed 1), 6 (seed 2) |" in claim_row(text, "additive", 2)
    assert claim_row(text, "posterior", 2).endswith("| not logged | not logged |")
    assert "`additive`, seed 1, step 6: Rt of failing code climbs" in text


def claim_row(text, mode, nth):
    """The nth table row of this mode (1: the RL table, 2: the hacking table)."""
    return [line for line in text.splitlines() if line.startswith(f"| {mode} |")][nth - 1]


def test_main_uses_plus_pass_at_1_and_reports_nan_as_not_measured(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "plot", lambda runs, path: False)
    out = fake_out(tmp_path, plus=True, posterior_nan=True)
    text = open(report.main(str(out))).read()
    assert "plus tests" in claim_line(text, 2) and "`pass_at_1_plus`" in claim_line(text, 2)
    assert "plus pass@1 after RL" in text
    assert "): not measured —" in claim_line(text, 3)


def test_plot_without_matplotlib_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)   # import matplotlib raises ImportError
    out = fake_out(tmp_path)
    assert report.plot(report.rl_runs(str(out)), str(tmp_path / "p.png")) is False
    assert not (tmp_path / "p.png").exists()
    assert "matplotlib is not installed" in open(report.main(str(out))).read()


def test_plot_draws_the_curves(tmp_path):
    pytest.importorskip("matplotlib")   # only where the speedrun installed it
    out = fake_out(tmp_path, plus=True)
    assert report.plot(report.rl_runs(str(out)), str(tmp_path / "p.png"))
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_seed_mean_curve_averages_over_seeds_skipping_nan():
    a = [{"step": 1, "x": 1.0}, {"step": 2, "x": NAN}]
    b = [{"step": 1, "x": 3.0}, {"step": 2, "x": 4.0}, {"step": 3, "x": NAN}]
    assert report.seed_mean_curve([a, b], "x") == ([1, 2], [2.0, 4.0])


# ---------------------------------------------------------------- the +SFT baseline's row
def write_sft_eval(out, seed, pass1, plus1=None, fmt_rate=0.95, tokens=90.0, n=64):
    """An eval.py <run>.json as the speedrun's sft_eval stage writes it (run_name s<seed>)."""
    overall = {"n_problems": n, "pass_at_k": {"1": pass1}, "format_rate": fmt_rate,
               "mean_response_tokens": tokens, "truncated_share": 0.0}
    if plus1 is not None:
        overall["pass_at_k_plus"] = {"1": plus1}
    summary = {"model": f"out/sft/s{seed}/last", "benchmark": "toy", "settings": {}, "overall": overall,
               "by_difficulty": {}}
    (out / "sft_eval").mkdir(parents=True, exist_ok=True)
    (out / "sft_eval" / f"s{seed}.json").write_text(json.dumps({"summary": summary, "records": []}))
    (out / "sft_eval" / f"s{seed}.jsonl").write_text('{"kind": "settings"}\n')  # not a summary


def test_sft_row_and_paired_comparison(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "plot", lambda runs, path: False)
    out = fake_out(tmp_path, plus=True)      # posterior ends at 0.45, 0.43, 0.44 (plus: - 0.1)
    for seed, p, q, f, t in (("1", 0.40, 0.32, 0.90, 80.0), ("2", 0.42, 0.30, 0.96, 90.0),
                             ("3", 0.44, 0.34, 0.96, 100.0)):
        write_sft_eval(out, seed, p, q, f, t)
    text = open(report.main(str(out))).read()
    # mean ± sd over seeds: pass@1 0.42 ± 0.02, plus 0.32 ± 0.02, format 0.94 ± 0.035, tokens 90 ± 10
    assert "| +SFT | 3 | - | 0.420 ± 0.020 | - | 0.320 ± 0.020 | 0.940 ± 0.035 | 90.0 ± 10.0 | n/a |" in text
    # the row sits in the held-out table, after the reward modes, and not in the hacking table
    rows = [line for line in text.splitlines() if line.startswith("| ")]
    assert rows.index(next(r for r in rows if r.startswith("| +SFT |"))) == \
        rows.index(claim_row(text, "additive", 1)) + 1
    assert sum(line.startswith("| +SFT |") for line in text.splitlines()) == 1
    # posterior - +SFT on plus, paired: (0.35-0.32, 0.33-0.30, 0.34-0.34) = +0.03, +0.03, 0: mean +0.02
    c = report.sft_comparison(report.rl_runs(str(out)), report.sft_runs(str(out)))
    assert c["key"] == "pass_at_1_plus" and c["n"] == 3
    assert c["mean"] == pytest.approx(0.02) and c["se"] == pytest.approx(0.01)
    assert "posterior - +SFT, paired by seed, `pass_at_1_plus`: +0.020 (standard error 0.010, 3 seeds; " \
           "posterior 0.340 vs +SFT 0.320)" in text
    assert "on 64 held-out problems (the RL evaluations: 64)" in text


def test_sft_without_plus_shows_n_a_and_pairs_on_base_tests(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "plot", lambda runs, path: False)
    out = fake_out(tmp_path, plus=True)
    write_sft_eval(out, "1", 0.40)                  # an eval.py without pass_at_k_plus
    write_sft_eval(out, "2", 0.41, n=226)
    text = open(report.main(str(out))).read()
    row = next(line for line in text.splitlines() if line.startswith("| +SFT |"))
    assert row.startswith("| +SFT | 2 | - | 0.405 ± 0.007 | - | n/a |")
    # base pass@1 paired over the seeds both have: 0.45 - 0.40, 0.43 - 0.41
    assert "posterior - +SFT, paired by seed, `pass_at_1`: +0.035 (standard error 0.015, 2 seeds;" in text
    assert "on 64, 226 held-out problems (the RL evaluations: 64)" in text
    assert "its plus pass@1 is n/a where eval.py wrote none" in text


def test_no_sft_runs_leave_the_report_as_it_was(tmp_path, monkeypatch):
    monkeypatch.setattr(report, "plot", lambda runs, path: False)
    out = fake_out(tmp_path)
    assert report.sft_runs(str(out)) == {}
    before = report.rl_sections(report.rl_runs(str(out)))
    text = open(report.main(str(out))).read()
    assert "+SFT" not in text and before[0] in text and before[1] in text
    # an empty sft_eval folder (the stage killed before any summary) is no run either
    (out / "sft_eval").mkdir()
    assert open(report.main(str(out))).read() == text
    # +SFT runs without a posterior run: the row, and a comparison that says so
    write_sft_eval(out, "1", 0.40)
    runs = {m: v for m, v in report.rl_runs(str(out)).items() if m != "posterior"}
    final_t, _ = report.rl_sections(runs, report.sft_runs(str(out)))
    assert "| +SFT | 1 | - | 0.400 ± 0.000 | 0.950 ± 0.000 | 90.0 ± 0.0 | n/a |" in final_t  # as a mode of one seed
    assert "posterior - +SFT: no seed has both runs' final evaluation" in final_t
