# The outcome-only GRPO baseline on math (R = Rf + Ro), everything else as P-GRPO's.
exec(open("config/pgrpo_qwen_math7b.py").read())
reward_mode = "outcome"
rm_from = ""
out_dir = "out/grpo_qwen_math7b"
