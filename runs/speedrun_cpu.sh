#!/usr/bin/env bash
# The whole ReCode pipeline on the toy world, on a CPU, from a fresh clone, no network:
#   1. build the toy world (problems, rule-made preference pairs, tokenizer),
#   2. warm-start a tiny Qwen2 policy on an imperfect supervised corpus, build the toy LCB-RB,
#   3. train the reasoning reward model (train_rm.py) and measure it next to the untrained one,
#   4. run train_grpo.py from the same policy with reward_mode outcome, posterior, soft and
#      additive (same seeds, same budget), each evaluated greedily on held-out problems, and
#      beside them the paper's "+SFT" baseline (train_sft.py from the same policy on the same
#      RL problems), evaluated by eval.py on the same held-out problems,
#   5. write report.md (tables, the claims' verdicts, and a plot: the speedrun installs matplotlib
#      into .venv when a package index answers, and reports without the plot when none does).
#
#   bash runs/speedrun_cpu.sh                    # the full run, one seed (about 23 min on 2 cores
#                                                #   from a fresh clone: world 6, reward model 2, RL and
#                                                #   +SFT 15; estimated: 19 measured before +SFT)
#   bash runs/speedrun_cpu.sh --quick            # a smaller run (about 5 min on 2 cores, fresh clone)
#   bash runs/speedrun_cpu.sh --seeds "1 2 3"    # several seeds, mean and spread (about 43 min after
#                                                #   the world, whose build takes 6 more: 37 measured
#                                                #   before +SFT, whose runs take 3-5 min; runs/RESULTS.md)
#   bash runs/speedrun_cpu.sh --smoke --out DIR  # a few steps of each stage (the test suite's; ~45 s)
#   bash runs/speedrun_cpu.sh --jobs 8           # runs at a time in the parallel stages (default: cores)
#
# On 2 cores a step of these tiny models gains little from a second thread, so the stages
# that hold independent runs (toy LCB-RB next to reward-model training, the two reward-model
# evaluations, the RL runs of every mode and seed) run them side by side, one thread each.
set -euo pipefail
cd "$(dirname "$0")/.."

preset=full
seeds="1"
out=""
cores=$(env -u OMP_NUM_THREADS -u OMP_THREAD_LIMIT nproc)  # nproc alone obeys OMP_NUM_THREADS
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) preset=quick ;;
        --smoke) preset=smoke ;;
        --seeds) seeds="$2"; shift ;;
        --out) out="$2"; shift ;;
        --jobs) cores="$2"; shift ;;
        *) echo "unknown argument $1" >&2; exit 2 ;;
    esac
    shift
done

# Settings per preset: the toy world (toy.py), the reward model (train_rm.py), RL (train_grpo.py),
# the +SFT baseline (train_sft.py).
#
# +SFT's targets are rejection samples: the warm start's own responses on the RL prompt (at
# the RL rollouts' temperature and max_new_tokens), kept when the RL reward's parse-run-judge
# path finds the format right and every test passing. That is the fair "+SFT on the same
# data": the same problems, the same tests as the only signal, reasoning the policy wrote
# itself, and about RL's budget: 2 x 2,180 = 4,360 samples against RL's 60 steps x 8 prompts
# x 8 = 3,840, then one epoch over the ~1,000 kept (about 30 steps of 32). The other source,
# the problems' reference programs, comes with a fixed note in place of reasoning: it teaches
# the policy to skip reasoning (held-out pass@1 0.633 -> 0.195, against 0.699 for rejection;
# runs/RESULTS.md), and RL never sees those programs.
case "$preset" in
    full)
        data_dir=data/toy; toy_args=()
        rm_args=()
        rl_args=(--max_steps=60 --eval_interval=20)
        sft_args=(--sft_source=rejection --samples_per_problem=2) ;;
    quick)  # a shorter warm start (a weaker policy) in a world of its own, a shorter everything
        data_dir=data/toy_quick; toy_args=(--warm_epochs=3 --lcbrb_problems=60)
        rm_args=(--epochs=1 --max_steps=30)
        rl_args=(--max_steps=6 --eval_interval=3 --prompts_per_step=6 --eval_max_problems=64)
        # one sample a problem, the least there is (still more than this RL's 288): the weak
        # policy passes about 2%, some 37 targets, 4 steps of 8
        sft_args=(--sft_source=rejection --samples_per_problem=1 --batch_size=8) ;;
    smoke)
        data_dir="${out:-out/speedrun_smoke}/toy"
        toy_args=(--n_train=120 --n_pair_problems=40 --vocab_size=400 --n_layer=1 --n_embd=32
                  --n_head=2 --warm_epochs=1 --warm_batch=8 --lcbrb_problems=6 --lcbrb_samples=2
                  --max_new_tokens=48)
        rm_args=(--epochs=1 --batch_size=8 --micro_batch_size=8 --eval_interval=4 --max_steps=4
                 --max_length=256)
        rl_args=(--max_steps=2 --eval_interval=2 --prompts_per_step=2 --group_size=2
                 --max_new_tokens=48 --micro_batch_size=4 --ckpt_interval=2
                 --eval_max_problems=8)
        # reference targets: this policy passes no sample, so rejection would have no data
        sft_args=(--sft_source=reference --batch_size=8 --micro_batch_size=8 --max_steps=2
                  --eval_interval=2) ;;
esac
# eval.py on the +SFT runs measures what train_grpo's held-out evaluation does: the RL prompt,
# greedy, all tests must pass, the same problems (eval_max_problems is --limit: the file's
# first N in both), the same max_new_tokens (train_grpo: eval_max_new_tokens, else
# max_new_tokens, 192 by default) and one generate call over all of them, as train_grpo's
# eval_batch_size (256) makes: the same padding, hence the same greedy tokens (on the warm
# start: pass@1, plus pass@1 and mean tokens equal train_grpo's step-0 evaluation; eval.py's
# default batch of 8 gave the same responses there, in 39 s against 11).
rl_tokens=192 rl_eval_tokens=0 rl_eval_problems=0
for arg in "${rl_args[@]}"; do
    case "$arg" in
        --max_new_tokens=*) rl_tokens=${arg#*=} ;;
        --eval_max_new_tokens=*) rl_eval_tokens=${arg#*=} ;;
        --eval_max_problems=*) rl_eval_problems=${arg#*=} ;;
    esac
done
[ "$rl_eval_tokens" -gt 0 ] || rl_eval_tokens=$rl_tokens
sft_eval_args=(--benchmark=toy --toy_file=$data_dir/eval.jsonl --limit=$rl_eval_problems
               --max_new_tokens=$rl_eval_tokens --batch_size=256 --temperature=0.0 --threads=1)
out="${out:-out/speedrun_$preset}"
mkdir -p "$out/logs"

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --disable-pip-version-check -r requirements.txt
# matplotlib draws the report's curves; only the speedrun installs it (the tests, which run
# --smoke, never need it), and without a package index the report goes on without the plot
if [ "$preset" != smoke ] && ! .venv/bin/python -c "import matplotlib" 2>/dev/null; then
    .venv/bin/python -m pip install -q --disable-pip-version-check --retries 1 --timeout 30 matplotlib \
        > "$out/logs/pip_matplotlib.log" 2>&1 ||
        echo "matplotlib could not be installed (no network?): report.md will have no plot ($out/logs/pip_matplotlib.log)" >&2
fi
py=.venv/bin/python
times="$out/times.jsonl"
: > "$times"
trap 'kill $(jobs -p) 2>/dev/null || true' EXIT   # a failed stage takes its siblings with it

stage() {  # stage NAME COMMAND...: run it with every core, log its wall time
    local name=$1 t0=$SECONDS
    shift
    echo "== $name: $*"
    "$@"
    echo "{\"stage\": \"$name\", \"seconds\": $((SECONDS - t0))}" >> "$times"
}

job() {  # job NAME COMMAND...: one single-threaded run of a parallel stage, output in logs/NAME.log
    local name=$1 t0=$SECONDS
    shift
    echo "   $name: $* (log: $out/logs/$name.log)"
    if ! OMP_NUM_THREADS=1 "$@" > "$out/logs/$name.log" 2>&1; then
        echo "$name failed; the end of $out/logs/$name.log:" >&2
        tail -n 30 "$out/logs/$name.log" >&2
        return 1
    fi
    echo "{\"stage\": \"$name\", \"seconds\": $((SECONDS - t0)), \"within\": \"$group\"}" >> "$times"
}

parallel() {  # parallel NAME: run the job lines queued in $queue, one per core, then log the wall time
    local t0=$SECONDS running=0
    group=$1
    echo "== $group: ${#queue[@]} runs, $cores at a time"
    for line in "${queue[@]}"; do
        eval "job $line" &
        running=$((running + 1))
        if [ "$running" -ge "$cores" ]; then
            wait -n
            running=$((running - 1))
        fi
    done
    while [ "$running" -gt 0 ]; do
        wait -n
        running=$((running - 1))
    done
    echo "{\"stage\": \"$group\", \"seconds\": $((SECONDS - t0))}" >> "$times"
    queue=()
}

# 1-2. the toy world and the warm-started policy (one process, every core)
stage toy_world $py toy.py --data_dir="$data_dir" --stage=warmstart --threads="$cores" "${toy_args[@]}"

# 3. the toy LCB-RB (samples the policy) next to reward-model training, then both evaluations
pairs="$data_dir/pairs.jsonl"
held_out="$data_dir/pairs_eval.jsonl,$data_dir/lcbrb.jsonl"
queue=("toy_lcbrb $py toy.py --data_dir=$data_dir ${toy_args[*]}"
       "reward_model $py train_rm.py --init_from=$data_dir/policy --pairs_file=$pairs --out_dir=$out/rm ${rm_args[*]}")
parallel rm_and_lcbrb
queue=("rm_eval_untrained $py train_rm.py --eval_only=True --init_from=$data_dir/policy --eval_files=$held_out --out_dir=$out/rm_untrained"
       "rm_eval_trained $py train_rm.py --eval_only=True --init_from=$out/rm/best --eval_files=$held_out --out_dir=$out/rm_trained")
parallel rm_eval

# 4-5. RL from the same policy in each reward mode (same seeds, same budget), evaluated on the
# way, and beside them the +SFT baseline from the same policy on the same problems (queued
# first, the longest run of a quick one: its rl stage took 122 s so, about 150 with +SFT
# last), then the +SFT runs' evaluation on the held-out problems
for seed in $seeds; do
    queue+=("sft_s$seed $py train_sft.py --seed=$seed --init_from=$data_dir/policy \
        --train_file=$data_dir/train.jsonl --out_dir=$out/sft/s$seed ${sft_args[*]}")
    for mode in outcome posterior soft additive; do
        queue+=("rl_${mode}_s$seed $py train_grpo.py --reward_mode=$mode --seed=$seed \
            --init_from=$data_dir/policy --rm_from=$out/rm/best --train_file=$data_dir/train.jsonl \
            --eval_file=$data_dir/eval.jsonl --out_dir=$out/rl/$mode-s$seed ${rl_args[*]}")
    done
done
parallel rl
for seed in $seeds; do   # last/, not best/: best is picked by validation loss (runs/RESULTS.md)
    queue+=("sft_eval_s$seed $py eval.py --init_from=$out/sft/s$seed/last ${sft_eval_args[*]} \
        --out_dir=$out/sft_eval --run_name=s$seed")
done
parallel sft_eval

# 6. the report
stage report $py runs/report.py --out="$out"
echo "report: $out/report.md"
