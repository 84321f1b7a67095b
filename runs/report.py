"""
report.py: turn a speedrun's output folder into report.md (and report.png when matplotlib
is installed): the reward model's accuracy next to the untrained one, each reward mode's
held-out results over seeds, the reward-hacking signals, and the wall time of each stage.

    python runs/report.py --out=out/speedrun_full

Each of the paper's three claims gets a plain verdict from a stated rule; the numbers are
what the run produced, whatever they say.
"""
import glob
import json
import math
import os
import statistics
import sys

MODES = ("outcome", "posterior", "soft", "additive")


def read_jsonl(path):
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def mean_std(xs):
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return float("nan"), float("nan")
    return statistics.fmean(xs), (statistics.stdev(xs) if len(xs) > 1 else 0.0)


def fmt(m, s=None, digits=3):
    if m is None or math.isnan(m):
        return "n/a"
    return f"{m:.{digits}f}" if s is None or math.isnan(s) else f"{m:.{digits}f} ± {s:.{digits}f}"


def table(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(str, r)) + " |" for r in rows]
    return "\n".join(lines)


def rm_section(out):
    """Accuracy of the untrained backbone (fresh head) and the trained reward model."""
    rows, acc = [], {}
    for name, folder in (("untrained backbone", "rm_untrained"), ("trained (OD pairs)", "rm_trained")):
        path = os.path.join(out, folder, "eval_results.json")
        if not os.path.exists(path):
            continue
        results = json.load(open(path))["results"]
        held, lcbrb = (next((r for p, r in results.items() if key in os.path.basename(p)), None)
                       for key in ("pairs_eval", "lcbrb"))
        per = (held or {}).get("per_type", {})
        acc[name] = (held or {}).get("accuracy"), (lcbrb or {}).get("accuracy")
        rows.append([name, fmt((held or {}).get("accuracy", float("nan"))),
                     *(fmt(per.get(t, {}).get("accuracy", float("nan"))) for t in ("opt_deg", "ori_deg", "opt_ori")),
                     f"{(held or {}).get('n', 0)}",
                     fmt((lcbrb or {}).get("accuracy", float("nan"))), f"{(lcbrb or {}).get('n', 0)}"])
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


def window(records, key, first):
    """Mean of `key` over the first (or last) quarter of the training steps (at least 1)."""
    vals = [r[key] for r in records if r.get(key) is not None and not math.isnan(r[key])]
    if not vals:
        return float("nan")
    k = max(1, len(vals) // 4)
    return statistics.fmean(vals[:k] if first else vals[-k:])


def rl_sections(runs):
    final, hack, summary = [], [], {}
    for mode in MODES:
        seeds = runs.get(mode) or []
        if not seeds:
            continue
        start = [ev[0]["pass_at_1"] for _, _, ev in seeds if ev and ev[0]["step"] == 0]
        end = [ev[-1] for _, _, ev in seeds if ev]
        summary[mode] = {
            "pass_at_1": mean_std([e["pass_at_1"] for e in end]),
            "start": mean_std(start),
            "think_end": mean_std([e.get("think_score", float("nan")) for e in end]),
            "think_start": mean_std([ev[0].get("think_score", float("nan")) for _, _, ev in seeds
                                     if ev and ev[0]["step"] == 0]),
            "pass_first": mean_std([window(tr, "pass_rate", True) for _, tr, _ in seeds]),
            "pass_last": mean_std([window(tr, "pass_rate", False) for _, tr, _ in seeds]),
            "rt_first": mean_std([window(tr, "reward_think", True) for _, tr, _ in seeds]),
            "rt_last": mean_std([window(tr, "reward_think", False) for _, tr, _ in seeds]),
        }
        s = summary[mode]
        final.append([mode, len(seeds), fmt(*s["start"]), fmt(*s["pass_at_1"]),
                      fmt(*mean_std([e["format_rate"] for e in end])),
                      fmt(*mean_std([e["mean_tokens"] for e in end]), digits=1),
                      fmt(*s["think_end"])])
        hack.append([mode, fmt(*s["pass_first"]), fmt(*s["pass_last"]), fmt(*s["rt_first"]),
                     fmt(*s["rt_last"]), fmt(*s["think_start"]), fmt(*s["think_end"])])
    final_t = table(["reward mode", "seeds", "pass@1 before RL", "pass@1 after RL",
                     "format rate", "mean tokens", "thinking score"], final)
    hack_t = table(["reward mode", "train pass rate, first quarter", "last quarter",
                    "mean Rt scored, first quarter", "last quarter", "eval thinking score, start",
                    "end"], hack)
    return final_t, hack_t, summary


def verdicts(rm_acc, summary):
    lines = []
    u, t = rm_acc.get("untrained backbone"), rm_acc.get("trained (OD pairs)")
    if u and t and u[0] is not None and t[0] is not None:
        better = t[0] - u[0]
        lines.append(f"1. **The OD-trained reward model separates good from bad reasoning far better "
                     f"than the untrained one** (rule: +10 points or more on held-out pairs): "
                     f"{'shown' if better >= 0.10 else 'not shown'} — held-out accuracy "
                     f"{u[0]:.3f} -> {t[0]:.3f}; toy LCB-RB {fmt(u[1] if u[1] is not None else float('nan'))} "
                     f"-> {fmt(t[1] if t[1] is not None else float('nan'))}.")
    if "posterior" in summary and "outcome" in summary:
        p, o = summary["posterior"]["pass_at_1"], summary["outcome"]["pass_at_1"]
        verdict = ("inconclusive (neither passes anything)" if max(p[0], o[0]) == 0 else
                   "shown" if p[0] >= o[0] else "not shown")
        lines.append(f"2. **P-GRPO ends at or above outcome-only GRPO in held-out pass@1** (rule: "
                     f"mean over seeds, posterior >= outcome): {verdict} "
                     f"— posterior {fmt(*p)} vs outcome {fmt(*o)}"
                     f"{' (within one standard deviation)' if abs(p[0] - o[0]) <= max(p[1], o[1]) else ''}.")
    if "additive" in summary:
        a = summary["additive"]
        climbs = a["rt_last"][0] > a["rt_first"][0]
        stalls = a["pass_last"][0] <= a["pass_first"][0] + 0.02
        verdict = ("inconclusive (no thinking score was logged)" if math.isnan(a["rt_first"][0])
                   else "shown" if climbs and stalls else "not shown")
        lines.append(f"3. **Ungated `additive` hacks the reward: the thinking score climbs while the "
                     f"pass rate stalls or falls** (rule: mean Rt of the last quarter above the "
                     f"first, and train pass rate up by at most 0.02): "
                     f"{verdict} — Rt {fmt(*a['rt_first'])} -> "
                     f"{fmt(*a['rt_last'])}, pass rate {fmt(*a['pass_first'])} -> {fmt(*a['pass_last'])}.")
    return "\n".join(lines)


def stage_rows(times):
    """Each stage, followed by the runs it held (they finish, and are logged, before it)."""
    rows = []
    for t in times:
        if "within" not in t:
            rows.append([t["stage"], t["seconds"]])
            rows += [[f"&nbsp;&nbsp;{j['stage']}", j["seconds"]] for j in times if j.get("within") == t["stage"]]
    return rows


def plot(runs, path):
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for mode in MODES:
        for i, (seed, tr, _) in enumerate(runs.get(mode) or []):
            steps = [r["step"] for r in tr]
            kw = dict(color=f"C{MODES.index(mode)}", alpha=0.8, label=mode if i == 0 else None)
            axes[0].plot(steps, [r["pass_rate"] for r in tr], **kw)
            axes[1].plot(steps, [r["reward_think"] for r in tr], **kw)
    axes[0].set(title="train pass rate", xlabel="step")
    axes[1].set(title="mean thinking score Rt (scored samples)", xlabel="step")
    axes[0].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return True


def main(out):
    rm_text, rm_acc = rm_section(out)
    runs = rl_runs(out)
    final_t, hack_t, summary = rl_sections(runs)
    times = read_jsonl(os.path.join(out, "times.jsonl")) if os.path.exists(os.path.join(out, "times.jsonl")) else []
    seeds = sorted({s for m in runs.values() for s, _, _ in m})
    has_plot = plot(runs, os.path.join(out, "report.png"))
    parts = [
        "# ReCode on the toy world: speedrun report",
        f"Output folder `{out}`; seeds: {', '.join(seeds) or 'none'}. Every number below comes "
        "from this run's files; mean ± sample standard deviation over seeds.",
        "## Claims", verdicts(rm_acc, summary) or "(no runs found)",
        "## 1. Reasoning reward model: pair accuracy",
        "Held-out pairs come from evaluation problems (never trained on); the toy LCB-RB pairs "
        "sound+right against flawed+wrong samples of the warm-started policy. The untrained "
        "backbone is the same network with a fresh scalar head.",
        rm_text,
        "## 2. RL: greedy pass@1 on held-out problems",
        final_t,
        "## 3. Reward-hacking signals",
        "Train pass rate and the mean thinking score Rt of the samples the reward model scored "
        "(passing samples under the gate, every sample under `additive`), first vs last quarter "
        "of training; and the thinking score of greedy evaluation responses at the start and end.",
        hack_t,
        "## 4. Curves",
        "![pass rate and thinking score per step](report.png)" if has_plot else
        "(matplotlib is not installed: `pip install matplotlib` for the plot)",
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
