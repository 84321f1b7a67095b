# P-GRPO with the paper's RL settings (ReCode, arXiv 2508.05170): Qwen2.5-Coder-7B-Instruct,
# 32 prompts per step, 4096 new tokens, constant lr 1e-6, clip-higher 0.2 / 0.28,
# token-level loss, no KL, 1600 steps; the paper used 8x A800 80GB. It does not give its
# group size or sampling temperature: 8 samples a prompt at temperature 1.0 are ours.
#   torchrun --standalone --nproc_per_node=8 train_grpo.py config/pgrpo_qwen7b.py
# (set train_file / eval_file / rm_from below or by flag to your files)
init_from = "Qwen/Qwen2.5-Coder-7B-Instruct"
rm_from = "out/rm_qwen7b/best"
train_file = "data/deepcoder_train.jsonl"  # e.g. DeepCoder-Preview-Dataset rows as JSONL
eval_file = "data/lcb_eval.jsonl"  # e.g. LiveCodeBench code_generation_lite records
out_dir = "out/pgrpo_qwen7b"
reward_mode = "posterior"
prompts_per_step = 32
group_size = 8  # not in the paper
max_new_tokens = 4096
max_prompt_tokens = 2048
temperature = 1.0  # not in the paper
learning_rate = 1e-6
eps_low, eps_high = 0.2, 0.28
clip_ratio_c = 3.0  # dual-clip, VeRL's default (the paper trained with VeRL and names no other)
loss_agg = "token_mean"
kl_beta = 0.0
ppo_epochs = 1
rm_max_length = 4096
rm_batch_size = 8
# Memory (python plan.py; train_grpo.py ... --plan=True): what makes this fit 8 x 80 GB.
activation_checkpointing = True  # a 6k-token sequence would otherwise keep ~39 GiB of activations
micro_batch_tokens = 8192  # padded tokens per forward, packed longest first
micro_batch_size = 0  # no cap on sequences per forward beyond the token budget
grad_sync_every_micro_batch = True  # else the unsharded fp32 gradient: 28 GiB per rank
logprob_chunk = 1024  # positions of [., V=152k] logits made at once
eval_batch_size = 32  # prompts per generate call in evaluation
rm_placement = "gpu"  # "cpu" frees 13 GiB per rank between scorings (host RAM: 8 x 13 GiB)
max_steps = 1600
answer_only = True  # the paper reads "the extracted answer": code only inside <answer>
eval_interval = 50
ckpt_interval = 100
dtype = "bfloat16"
