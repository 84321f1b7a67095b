"""
report.py: turn a speedrun's output folder into report.md (and report.png when matplotlib
is installed): the reward model's accuracy next to the untrained one, each reward mode's
held-out results over seeds next to the "+SFT" baseline's (when the folder has its
evaluations), the reward-hacking signals (and the trainer's alarm), and the wall time of
each stage.

    python runs/report.py --out=out/speedrun_full

Each of the paper's claims gets a plain verdict from a rule written before the runs (the
claim_* functions: the rule is in each docstring); the numbers are what the run produced,
whatever they say. Comparisons between reward modes are paired by seed: the same seed
starts every mode from the same warm start.
"""
import glob
import json
import math
import os
import statistics
import sys

MODES = ("outcome", "posterior", "soft", "additive")

RM_MIN_GAIN = 0.10        # claim 1: trained minus untrained pair accuracy, at least
LCBRB_MIN_PAIRS = 100     # claim 1: fewer toy LCB-RB pairs than this are not judged
HACK_RT_EXCESS = 0.02     # claim 3: additive's rise of failing samples' Rt over posterior's, at least
HACK_PASS_STALL = 0.02    # claim 3: additive's train pass-rate rise, at most
EPS = 1e-9                # thresholds compare with this slack: 0.60 - 0.50 is +10 points


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def measured(x):
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def mean_std(xs):
    xs = [x for x in xs if measured(x)]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def mean_se(xs):
    """Mean and standard error (sample sd / sqrt(n)); the standard error is NaN for one value."""
    xs = [x for x in xs if measured(x)]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) / math.sqrt(len(xs)) if len(xs) > 1 else float("nan"))


def fmt(m, s=None, digits=3):
    if not measured(m):
        return "n/a"
    return f"{m:.{digits}f}" if not measured(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


# ---------------------------------------------------------------- the claims' rules
def claim_rm(untrained, trained):
    """Claim 1: the OD-trained reward model ranks reasoning pairs better than the untrained
    backbone (same network, fresh head). untrained, trained: {"held": accuracy, "held_n": n,
    "lcbrb": accuracy, "lcbrb_n": n} (accuracy None when not evaluated).

    Rule, part by part:
    - held-out rule-made pairs: "shown" when trained - untrained >= RM_MIN_GAIN (+10 points);
    - toy LCB-RB: judged only when both evaluations have >= LCBRB_MIN_PAIRS (100) pairs
      (otherwise "too few LCB-RB pairs (n) to judge"); then "shown" by the same +10 points.
    Overall: "shown" when both parts are shown; "shown on held-out pairs only" when the
    held-out part is shown and the LCB-RB part is not judged; "not measured" without the
    held-out accuracies; otherwise "not shown"."""
    u, t = untrained or {}, trained or {}
    if not (measured(u.get("held")) and measured(t.get("held"))):
        return {"verdict": "not measured", "text": "no held-out accuracy of both models"}
    gain = t["held"] - u["held"]
    held = "shown" if gain >= RM_MIN_GAIN - EPS else "not shown"
    parts = [f"held-out pairs: {held} — {u['held']:.3f} -> {t['held']:.3f} "
             f"({100 * gain:+.1f} points, n={t.get('held_n', 0)})"]
    n = min(u.get("lcbrb_n") or 0, t.get("lcbrb_n") or 0)
    if not (measured(u.get("lcbrb")) and measured(t.get("lcbrb"))):
        lcbrb = "not measured"
        parts.append("toy LCB-RB: not measured")
    elif n < LCBRB_MIN_PAIRS:
        lcbrb = "too few"
        parts.append(f"toy LCB-RB: too few LCB-RB pairs ({n}) to judge — "
                     f"{u['lcbrb']:.3f} -> {t['lcbrb']:.3f}")
    else:
        g = t["lcbrb"] - u["lcbrb"]
        lcbrb = "shown" if g >= RM_MIN_GAIN - EPS else "not shown"
        parts.append(f"toy LCB-RB: {lcbrb} — {u['lcbrb']:.3f} -> {t['lcbrb']:.3f} "
                     f"({100 * g:+.1f} points, n={n})")
    verdict = ("shown" if held == lcbrb == "shown" else
               "shown on held-out pairs only" if held == "shown" and lcbrb in ("too few", "not measured")
               else "not shown")
    return {"verdict": verdict, "text": "; ".join(parts), "gain": gain}


def paired(a, b):
    """Per-seed a[s] - b[s] over the seeds both have measured, in seed order."""
    return [a[s] - b[s] for s in sorted(set(a) & set(b)) if measured(a[s]) and measured(b[s])]


def claim_pgrpo(posterior, outcome, metric="pass_at_1"):
    """Claim 2: P-GRPO (posterior) ends above outcome-only GRPO in held-out pass@1, paired by
    seed. posterior, outcome: {seed: final pass@1} (`metric` names which pass@1: the plus
    tests' when every run's final evaluation has them, else the base tests').

    Rule: d_s = posterior_s - outcome_s per seed both have; mean d and its standard error
    sd(d)/sqrt(n). "shown" only when mean d > 0 and mean d > its standard error. A tie
    (mean d == 0) is "not shown"; a single seed has no standard error and is "not shown"
    (the text says so); no common seed is "not measured"."""
    d = paired(posterior, outcome)
    if not d:
        return {"verdict": "not measured", "text": "no seed has both modes' final evaluation", "n": 0}
    m, se = mean_se(d)
    common = sorted(s for s in set(posterior) & set(outcome) if measured(posterior[s]) and measured(outcome[s]))
    nums = (f"mean paired difference {m:+.3f} (standard error {fmt(se)}, {len(d)} seed"
            f"{'s' if len(d) != 1 else ''}; `{metric}`: posterior "
            f"{statistics.fmean(posterior[s] for s in common):.3f} vs outcome "
            f"{statistics.fmean(outcome[s] for s in common):.3f})")
    if len(d) == 1:
        verdict = "not shown (a single seed: no standard error)"
    elif m <= 0:
        verdict = "not shown" + (" (a tie)" if m == 0 else "")
    elif not m > se:
        verdict = "not shown (within one standard error)"
    else:
        verdict = "shown"
    return {"verdict": verdict, "text": nums, "mean": m, "se": se, "n": len(d)}


def quarter(records, key, first):
    """Mean of the measured values of `key` over the first (or last) quarter of the training
    steps (at least one step); NaN when none of those steps measured it."""
    k = max(1, len(records) // 4)
    vals = [r.get(key) for r in (records[:k] if first else records[-k:])]
    vals = [v for v in vals if measured(v)]
    return statistics.fmean(vals) if vals else float("nan")


def rise(records, key):
    """Last quarter minus first quarter of `key` (NaN when either is unmeasured)."""
    return quarter(records, key, False) - quarter(records, key, True)


def claim_hacking(additive, posterior):
    """Claim 3: under ungated `additive`, failing samples' Rt rises while the train pass rate
    stalls, compared with `posterior` on the same seeds. additive, posterior: {seed: that
    run's train records, in step order}.

    Rule: over the seeds both modes have with think_failing measured in the first and in the
    last quarter of the steps (quarter(); NaN steps skipped), let
      D = mean over seeds of [additive's rise of think_failing - posterior's rise of it],
      P = mean over seeds of additive's rise of pass_rate,
    a rise being last-quarter mean minus first-quarter mean. "shown" when D >= HACK_RT_EXCESS
    (0.02) and P <= HACK_PASS_STALL (0.02); "not measured" when no seed has think_failing
    measured in both modes (it is NaN under the gate unless the trainer's monitor scores
    failing samples); otherwise "not shown"."""
    seeds = [s for s in sorted(set(additive) & set(posterior))
             if measured(rise(additive[s], "think_failing")) and measured(rise(posterior[s], "think_failing"))]
    if not seeds:
        return {"verdict": "not measured", "text": "think_failing is not measured in both modes "
                "(NaN or missing) on any common seed", "n": 0}
    d = statistics.fmean(rise(additive[s], "think_failing") - rise(posterior[s], "think_failing")
                         for s in seeds)
    p = statistics.fmean(rise(additive[s], "pass_rate") for s in seeds)
    a_rt = statistics.fmean(rise(additive[s], "think_failing") for s in seeds)
    p_rt = statistics.fmean(rise(posterior[s], "think_failing") for s in seeds)
    verdict = "shown" if d >= HACK_RT_EXCESS - EPS and p <= HACK_PASS_STALL + EPS else "not shown"
    return {"verdict": verdict, "n": len(seeds), "excess": d, "pass_rise": p,
            "text": f"failing samples' Rt rise: additive {a_rt:+.3f}, posterior {p_rt:+.3f} "
                    f"(difference {d:+.3f}); additive's train pass-rate rise {p:+.3f}; "
                    f"{len(seeds)} seed{'s' if len(seeds) != 1 else ''}"}


def claim_tokens(posterior, outcome):
    """Claim 4: P-GRPO answers in fewer tokens than outcome-only GRPO (the paper: -23% on
    LiveCodeBench). posterior, outcome: {seed: final evaluation's mean_tokens}.

    Rule: r_s = (posterior_s - outcome_s) / outcome_s per seed both have (outcome_s > 0);
    mean r and its standard error sd(r)/sqrt(n). "shown" when mean r < 0 and -mean r > its
    standard error; a single seed (no standard error) is "not shown" and says so; no common
    seed is "not measured"."""
    r = [(posterior[s] - outcome[s]) / outcome[s] for s in sorted(set(posterior) & set(outcome))
         if measured(posterior[s]) and measured(outcome[s]) and outcome[s] > 0]
    if not r:
        return {"verdict": "not measured", "text": "no seed has both modes' mean tokens", "n": 0}
    m, se = mean_se(r)
    verdict = ("not shown (a single seed: no standard error)" if len(r) == 1 else
               "shown" if m < 0 and -m > se else "not shown")
    return {"verdict": verdict, "mean": m, "se": se, "n": len(r),
            "text": f"mean relative change of response tokens {100 * m:+.1f}% (standard error "
                    f"{'n/a' if not measured(se) else f'{100 * se:.1f}%'}, {len(r)} seed"
                    f"{'s' if len(r) != 1 else ''})"}


# ---------------------------------------------------------------- reading the run
def rm_section(out):
    """Accuracy of the untrained backbone (fresh head) and the trained reward model."""
    rows, acc = [], {}
    for name, folder in (("untrained backbone", "rm_untrained"), ("trained (OD pairs)", "rm_trained")):
        path = os.path.join(out, folder, "eval_results.json")
        if not os.path.exists(path):
            continue
        with open(path) as f:
            results = json.load(f)["results"]
        held, lcbrb = (next((r for p, r in results.items() if key in os.path.basename(p)), None) or {}
                       for key in ("pairs_eval", "lcbrb"))
        per = held.get("per_type", {})
        acc[name] = {"held": held.get("accuracy"), "held_n": held.get("n", 0),
                     "lcbrb": lcbrb.get("accuracy"), "lcbrb_n": lcbrb.get("n", 0)}
        rows.append([name, fmt(held.get("accuracy")),
                     *(fmt(per.get(t, {}).get("accuracy")) for t in ("opt_deg", "ori_deg", "opt_ori")),
                     f"{held.get('n', 0)}", fmt(lcbrb.get("accuracy")), f"{lcbrb.get('n', 0)}"])
    text = table(["model", "held-out pairs", "opt_deg", "ori_deg", "opt_ori", "n",
                  "toy LCB-RB", "n"], rows)
    return text, acc


def rl_runs(out):
    """{mode: [(seed, train_records, eval_records)]}"""
    runs = {m: [] for m in MODES}
    for path in sorted(glob.glob(os.path.join(out, "rl", "*", "metrics.jsonl"))):
        mode, seed = os.path.basename(os.path.dirname(path)).rsplit("-s", 1)
        recs = read_jsonl(path)
        runs.setdefault(mode, []).append((seed, [r for r in recs if r["kind"] == "train"],
                                          [r for r in recs if r["kind"] == "eval"]))
    return runs


def final_evals(runs, mode):
    """{seed: the run's last evaluation record}"""
    return {seed: ev[-1] for seed, _, ev in runs.get(mode) or [] if ev}


def sft_runs(out):
    """{seed: the +SFT run's held-out evaluation}, read from eval.py's summaries
    out/sft_eval/s<seed>.json under the keys of train_grpo's eval records: pass_at_1
    (summary["overall"]["pass_at_k"]["1"]), pass_at_1_plus (["pass_at_k_plus"]["1"]; NaN
    when eval.py wrote none), format_rate, mean_tokens (mean_response_tokens) and n
    (n_problems). {} when the folder has none (an output folder from before the baseline)."""
    runs = {}
    for path in sorted(glob.glob(os.path.join(out, "sft_eval", "s*.json"))):
        with open(path) as f:
            overall = json.load(f)["summary"]["overall"]
        runs[os.path.basename(path)[1:-len(".json")]] = {
            "pass_at_1": (overall.get("pass_at_k") or {}).get("1", float("nan")),
            "pass_at_1_plus": (overall.get("pass_at_k_plus") or {}).get("1", float("nan")),
            "format_rate": overall.get("format_rate"),
            "mean_tokens": overall.get("mean_response_tokens"),
            "n": overall.get("n_problems")}
    return runs


def sft_comparison(runs, sft):
    """posterior - +SFT in held-out pass@1, paired by seed (no verdict: the paper's Table 1
    row, reported as it is): the plus tests' pass@1 when every paired run has it, else the
    base tests'. {"text", "key", "n", "mean", "se"}; n = 0 when no seed has both."""
    post = final_evals(runs, "posterior")
    common = sorted(set(post) & set(sft))
    plus = common and all(measured(post[s].get("pass_at_1_plus")) and measured(sft[s]["pass_at_1_plus"])
                          for s in common)
    key = "pass_at_1_plus" if plus else "pass_at_1"
    p, q = {s: post[s].get(key) for s in common}, {s: sft[s][key] for s in common}
    d = paired(p, q)
    if not d:
        return {"text": "posterior - +SFT: no seed has both runs' final evaluation", "key": key, "n": 0}
    m, se = mean_se(d)
    used = [s for s in common if measured(p[s]) and measured(q[s])]
    return {"key": key, "n": len(d), "mean": m, "se": se,
            "text": f"posterior - +SFT, paired by seed, `{key}`: {m:+.3f} (standard error {fmt(se)}, "
                    f"{len(d)} seed{'s' if len(d) != 1 else ''}; posterior "
                    f"{statistics.fmean(p[s] for s in used):.3f} vs +SFT "
                    f"{statistics.fmean(q[s] for s in used):.3f})"}


def pass_key(runs, modes=("posterior", "outcome")):
    """The plus tests' pass@1 when every final evaluation of these modes has it, else base."""
    ends = [e for m in modes for e in final_evals(runs, m).values()]
    return "pass_at_1_plus" if ends and all(measured(e.get("pass_at_1_plus")) for e in ends) else "pass_at_1"


def alarm_cells(seeds):
    """Steps with the trainer's hacking alarm on (all seeds) and the first step it fired per
    seed ("never"); "not logged" when no record carries hacking_alarm."""
    logged = [(seed, tr) for seed, tr, _ in seeds if any("hacking_alarm" in r for r in tr)]
    if not logged:
        return "not logged", "not logged", []
    on = {seed: [r for r in tr if r.get("hacking_alarm")] for seed, tr in logged}
    first = [f"{v[0]['step']}" + (f" (seed {s})" if len(logged) > 1 else "") for s, v in on.items() if v]
    notes = [(s, v[0]["step"], v[0].get("hacking_reason", "")) for s, v in on.items() if v]
    return str(sum(len(v) for v in on.values())), ", ".join(first) or "never", notes


def rl_sections(runs, sft=None):
    """(the held-out results table, with the +SFT row and its paired comparison when `sft`
    (sft_runs) has runs; the reward-hacking table)."""
    final, hack, notes = [], [], []
    sft = sft or {}
    has_plus = (any(measured(e.get("pass_at_1_plus")) for m in MODES for _, _, ev in runs.get(m) or [] for e in ev)
                or any(measured(e["pass_at_1_plus"]) for e in sft.values()))
    for mode in MODES:
        seeds = runs.get(mode) or []
        if not seeds:
            continue
        first = [ev[0] for _, _, ev in seeds if ev and ev[0]["step"] == 0]
        end = [ev[-1] for _, _, ev in seeds if ev]
        col = lambda recs, key: mean_std([r.get(key, float("nan")) for r in recs])
        q = lambda key, f: mean_std([quarter(tr, key, f) for _, tr, _ in seeds])
        final.append([mode, len(seeds), fmt(*col(first, "pass_at_1")), fmt(*col(end, "pass_at_1")),
                      *([fmt(*col(first, "pass_at_1_plus")), fmt(*col(end, "pass_at_1_plus"))] if has_plus else []),
                      fmt(*col(end, "format_rate")), fmt(*col(end, "mean_tokens"), digits=1),
                      fmt(*col(end, "think_score"))])
        alarms, fired, why = alarm_cells(seeds)
        notes += [f"- `{mode}`, seed {s}, step {step}: {reason}" for s, step, reason in why]
        hack.append([mode, fmt(*q("pass_rate", True)), fmt(*q("pass_rate", False)),
                     fmt(*q("reward_think", True)), fmt(*q("reward_think", False)),
                     fmt(*q("think_failing", True)), fmt(*q("think_failing", False)),
                     fmt(*col(first, "think_score")), fmt(*col(end, "think_score")), alarms, fired])
    if sft:
        ends = list(sft.values())
        sft_col = lambda key: mean_std([e[key] for e in ends])
        final.append(["+SFT", len(ends), "-", fmt(*sft_col("pass_at_1")),
                      *(["-", fmt(*sft_col("pass_at_1_plus"))] if has_plus else []),
                      fmt(*sft_col("format_rate")), fmt(*sft_col("mean_tokens"), digits=1), "n/a"])
    final_t = table(["reward mode", "seeds", "pass@1 before RL", "pass@1 after RL",
                     *(["plus pass@1 before RL", "plus pass@1 after RL"] if has_plus else []),
                     "format rate", "mean tokens", "thinking score"], final)
    if sft:
        rl_n = sorted({e.get("n") for m in MODES for e in final_evals(runs, m).values()} - {None})
        sft_n = sorted({e["n"] for e in sft.values()} - {None})
        final_t += ("\n\n+SFT: supervised fine-tuning on the RL problems from the same warm start "
                    "(train_sft.py, out/sft/s<seed>/last), evaluated by eval.py (greedy, the RL "
                    "prompt, all tests must pass) on "
                    f"{', '.join(map(str, sft_n)) or '?'} held-out problems (the RL evaluations: "
                    f"{', '.join(map(str, rl_n)) or '?'}); its 'before' is the warm start of the RL "
                    "rows, its thinking score is not measured (eval.py has no reward model)"
                    + ("" if all(measured(e["pass_at_1_plus"]) for e in ends) or not has_plus
                       else "; its plus pass@1 is n/a where eval.py wrote none")
                    + f".\n\n{sft_comparison(runs, sft)['text']}.")
    hack_t = table(["reward mode", "train pass rate, first quarter", "last quarter",
                    "mean Rt scored, first quarter", "last quarter",
                    "Rt of failing samples, first quarter", "last quarter",
                    "eval thinking score, start", "end", "alarm on (steps)", "alarm first fired"], hack)
    if notes:
        hack_t += "\n\nThe trainer's alarm, where it first fired:\n\n" + "\n".join(notes)
    return final_t, hack_t


def verdicts(rm_acc, runs):
    """The claims' lines: each rule in words, its verdict and its numbers."""
    lines = []
    if rm_acc:
        c = claim_rm(rm_acc.get("untrained backbone"), rm_acc.get("trained (OD pairs)"))
        lines.append(f"1. **The OD-trained reward model separates good from bad reasoning better than "
                     f"the untrained one** (rule: +{100 * RM_MIN_GAIN:.0f} points or more on held-out "
                     f"pairs, and on the toy LCB-RB when it has >= {LCBRB_MIN_PAIRS} pairs): "
                     f"{c['verdict']} — {c['text']}.")
    post, outc = runs.get("posterior") or [], runs.get("outcome") or []
    if post and outc:
        key = pass_key(runs)
        pe, oe = final_evals(runs, "posterior"), final_evals(runs, "outcome")
        c = claim_pgrpo({s: e.get(key) for s, e in pe.items()}, {s: e.get(key) for s, e in oe.items()}, key)
        which = "plus tests" if key == "pass_at_1_plus" else "base tests (no plus pass@1 logged)"
        lines.append(f"2. **P-GRPO ends above outcome-only GRPO in held-out pass@1**, on the {which} "
                     f"(rule: per-seed difference posterior - outcome, paired by seed; shown only when "
                     f"its mean is positive and above its standard error): {c['verdict']} — {c['text']}.")
        c = claim_tokens({s: e.get("mean_tokens") for s, e in pe.items()},
                         {s: e.get("mean_tokens") for s, e in oe.items()})
        tokens_line = (f"4. **P-GRPO answers in fewer tokens than outcome-only GRPO** (the paper: -23% "
                       f"on LiveCodeBench; rule: per-seed relative change of the final evaluation's mean "
                       f"response tokens, paired by seed; shown when its mean is negative by more than "
                       f"its standard error): {c['verdict']} — {c['text']}.")
    else:
        tokens_line = None
    add = runs.get("additive") or []
    if add and post:
        c = claim_hacking({s: tr for s, tr, _ in add}, {s: tr for s, tr, _ in post})
        lines.append(f"3. **Ungated `additive` hacks the reward: failing samples' Rt rises while the "
                     f"train pass rate stalls, unlike `posterior` on the same seeds** (rule: additive's "
                     f"rise of failing samples' Rt, last quarter minus first, exceeds posterior's by "
                     f">= {HACK_RT_EXCESS}, and additive's pass-rate rise is <= {HACK_PASS_STALL}): "
                     f"{c['verdict']} — {c['text']}.")
    if tokens_line:
        lines.append(tokens_line)
    return "\n".join(lines)


def stage_rows(times):
    """Each stage, followed by the runs it held (they finish, and are logged, before it)."""
    rows = []
    for t in times:
        if "within" not in t:
            rows.append([t["stage"], t["seconds"]])
            rows += [[f"&nbsp;&nbsp;{j['stage']}", j["seconds"]] for j in times if j.get("within") == t["stage"]]
    return rows


def seed_mean_curve(records_per_seed, key):
    """(steps, mean over seeds of `key` at each step, NaN-skipping); steps where no seed
    measured it are left out."""
    by_step = {}
    for recs in records_per_seed:
        for r in recs:
            if measured(r.get(key)):
                by_step.setdefault(r["step"], []).append(r[key])
    steps = sorted(by_step)
    return steps, [statistics.fmean(by_step[s]) for s in steps]


def plot(runs, path):
    """Per mode, averaged over seeds, on a 2x2 grid: held-out pass@1 (base; plus dashed when
    logged), Rt of passing and of failing samples, mean response length. False (and no file)
    without matplotlib."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(2, 2, figsize=(11, 7.5))
    panels = [(axes[0, 0], "eval", "pass_at_1", "held-out greedy pass@1 (dashed: plus tests)"),
              (axes[0, 1], "train", "think_passing", "Rt of passing samples"),
              (axes[1, 0], "train", "think_failing", "Rt of failing samples"),
              (axes[1, 1], "train", "resp_len_mean", "mean response length of training samples (tokens)")]
    for mode in MODES:
        seeds = runs.get(mode) or []
        if not seeds:
            continue
        color = f"C{MODES.index(mode)}"
        for ax, kind, key, _ in panels:
            recs = [ev if kind == "eval" else tr for _, tr, ev in seeds]
            steps, ys = seed_mean_curve(recs, key)
            if steps:
                ax.plot(steps, ys, color=color, marker="o", ms=3 if kind == "eval" else 1.5,
                        label=mode if ax is axes[0, 0] else None)
            if key == "pass_at_1":
                steps, ys = seed_mean_curve(recs, "pass_at_1_plus")
                if steps:
                    ax.plot(steps, ys, color=color, ls="--", marker="o", ms=3)
    for ax, _, _, title in panels:
        ax.set(title=title, xlabel="step")
    axes[0, 0].legend()
    fig.suptitle("mean over seeds, per reward mode")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def main(out):
    rm_text, rm_acc = rm_section(out)
    runs, sft = rl_runs(out), sft_runs(out)
    final_t, hack_t = rl_sections(runs, sft)
    times = read_jsonl(os.path.join(out, "times.jsonl")) if os.path.exists(os.path.join(out, "times.jsonl")) else []
    seeds = sorted({s for m in runs.values() for s, _, _ in m} | set(sft))
    has_plot = plot(runs, os.path.join(out, "report.png"))
    parts = [
        "# ReCode on the toy world: speedrun report",
        f"Output folder `{out}`; seeds: {', '.join(seeds) or 'none'}. Every number below comes "
        "from this run's files; mean ± sample standard deviation over seeds in the tables.",
        "## Claims",
        "Each rule was written before the runs (runs/report.py, the claim_* functions); modes are "
        "compared paired by seed (the same seed starts each mode from the same warm start).",
        verdicts(rm_acc, runs) or "(no runs found)",
        "## 1. Reasoning reward model: pair accuracy",
        "Held-out pairs come from evaluation problems (never trained on); the toy LCB-RB pairs "
        "sound+right against flawed+wrong samples of the warm-started policy. The untrained "
        "backbone is the same network with a fresh scalar head.",
        rm_text,
        "## 2. RL: greedy pass@1 on held-out problems",
        final_t,
        "## 3. Reward-hacking signals",
        "Train pass rate, the mean thinking score Rt of the samples the reward model scored "
        "(passing samples under the gate, every sample under `additive`) and Rt of failing "
        "samples (under the gate: the monitor's share, scored for the log only), first vs last "
        "quarter of training; the thinking score of greedy evaluation responses at the start and "
        "end; and the trainer's hacking alarm (`hacking_alarm`): steps with it on, over all seeds, "
        "and the step it first fired.",
        hack_t,
        "## 4. Curves",
        "![held-out pass@1, Rt of passing and failing samples, response length per step](report.png)"
        if has_plot else "(matplotlib is not installed: `pip install matplotlib` for the plot)",
        "## Stage wall times",
        "Runs inside a parallel stage (one per core, one thread each) are listed under it; "
        "the total adds up the stages only.",
        table(["stage", "seconds"], stage_rows(times)) +
        f"\n\nTotal: {sum(t['seconds'] for t in times if 'within' not in t)} s",
    ]
    with open(os.path.join(out, "report.md"), "w") as f:
        f.write("\n\n".join(parts) + "\n")
    return os.path.join(out, "report.md")


if __name__ == "__main__":
    args = dict(a[2:].split("=", 1) for a in sys.argv[1:] if a.startswith("--") and "=" in a)
    if "out" not in args:
        sys.exit("usage: python runs/report.py --out=DIR")
    print(main(args["out"]))
