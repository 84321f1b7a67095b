# The paper's evaluation: greedy pass@1 with the RL prompt and up to 4096 new tokens, for
# a Qwen2.5-Coder-7B-Instruct policy after P-GRPO, on 8 GPUs:
#   torchrun --standalone --nproc_per_node=8 eval.py config/eval_qwen7b.py --benchmark=humaneval
#   torchrun --standalone --nproc_per_node=8 eval.py config/eval_qwen7b.py --benchmark=data/lcb_test.jsonl
init_from = "out/pgrpo_qwen7b/last"
prompt_style = "rl"
answer_only = True  # the paper reads "the extracted answer": code only inside <answer>
max_new_tokens = 4096
batch_size = 32  # sequences per GPU per generate call
dtype = "bfloat16"
