# P-GRPO on math, the paper's Sec. 4: Qwen2.5-Math-7B (the base model) trained on
# DAPO-Math-17k for 900 steps, evaluated on MATH-500, Minerva Math and AIME 2024 (greedy).
# Everything the paper does not restate for math is taken from its code runs
# (config/pgrpo_qwen7b.py): 32 prompts a step, lr 1e-6, clip-higher, token-level loss, no KL.
#   torchrun --standalone --nproc_per_node=8 train_grpo.py config/pgrpo_qwen_math7b.py
# The reward model: train_rm.py on OD pairs that synth.py builds from math problems.
exec(open("config/pgrpo_qwen7b.py").read())
init_from = "Qwen/Qwen2.5-Math-7B"
rm_from = "out/rm_math7b/best"
train_file = "data/dapo_math_17k.parquet"  # data.load_problems reads it (format dapo_math);
# the Hub file holds each problem 100 times: deduplicate by id first (its loader says so)
eval_file = "data/math500_test.jsonl"  # also minerva_math_test.jsonl, aime2024.jsonl via eval.py
out_dir = "out/pgrpo_qwen_math7b"
# Qwen2.5-Math-7B's context is 4,096 positions (config.json max_position_embeddings), so
# prompt and response share it; the paper's "outputs capped at 4K" cannot hold here
max_prompt_tokens = 1024
max_new_tokens = 3072
max_steps = 900
