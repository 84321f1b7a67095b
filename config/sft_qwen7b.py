# The "+SFT" baseline of Table 1 with the RL run's settings (config/pgrpo_qwen7b.py): the same
# problems, lr 1e-6, 32 examples a step. DeepCoder's problems have tests and rarely a
# solution, so the targets are the policy's own passing samples (rejection sampling).
#   torchrun --standalone --nproc_per_node=8 train_sft.py config/sft_qwen7b.py
init_from = "Qwen/Qwen2.5-Coder-7B-Instruct"
train_file = "data/deepcoder_train.jsonl"
out_dir = "out/sft_qwen7b"
sft_source = "rejection"
samples_per_problem = 4
keep_per_problem = 1
max_new_tokens = 4096
max_length = 6144
learning_rate = 1e-6
batch_size = 32
micro_batch_size = 1
epochs = 2  # about the RL run's 1,600 steps x 32 prompts over DeepCoder's 24k problems
eval_interval = 50
activation_checkpointing = True
grad_sync_every_micro_batch = True
answer_only = True
dtype = "bfloat16"
