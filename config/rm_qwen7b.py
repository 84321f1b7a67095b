# The paper's reward model: Qwen2.5-Coder-7B base, batch 128, lr 1e-6, 2 epochs, a 9:1
# split by problem with early stopping on validation accuracy. For 8 GPUs:
#   torchrun --standalone --nproc_per_node=8 train_rm.py config/rm_qwen7b.py
# synth.py's pairs come split already: add --pairs_file=out/od/pairs_train.jsonl
# --val_file=out/od/pairs_val.jsonl (then val_fraction is not used).
init_from = "Qwen/Qwen2.5-Coder-7B"  # or a local copy of it
pairs_file = "data/rm_pairs.jsonl"  # opt_deg + ori_deg + opt_ori pairs, all three kinds
out_dir = "out/rm_qwen7b"
batch_size = 128
micro_batch_size = 2  # 128 / (8 GPUs * 2) = 8 accumulation steps
learning_rate = 1e-6
epochs = 2
# problem statement (~1k tokens for the longer contest problems) + reasoning (~2-3k)
max_length = 4096
val_fraction = 0.1
eval_interval = 50
patience = 3
dtype = "bfloat16"
activation_checkpointing = True  # 4 texts of 4k tokens per GPU do not fit otherwise
