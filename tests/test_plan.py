"""plan.py: parameter counts, hand-worked terms, and the refusal."""

import json

import pytest

import plan
from data import SetupError

TINY = dict(hidden_size=64, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
            head_dim=16, intermediate_size=160, vocab_size=1000, tie_word_embeddings=False)

GRPO = dict(prompts_per_step=4, group_size=4, max_prompt_tokens=100, max_new_tokens=156,
            micro_batch_size=2, micro_batch_tokens=0, activation_checkpointing=False,
            logprob_chunk=64, dtype="bfloat16", kl_beta=0.0, rm_from="rm", rm_placement="gpu",
            rm_batch_size=2, rm_max_length=128, eval_batch_size=4, eval_max_new_tokens=0,
            eval_file="e", eval_interval=10, ppo_epochs=1, mini_batch_size=0)


def terms(p, phase=None):
    return {t.name: t.bytes for t in (p.static if phase is None else p.phases[phase])}


@pytest.mark.parametrize("tied", [True, False])
def test_param_count_equals_a_real_qwen2(tmp_path, tied):
    from transformers import Qwen2Config, Qwen2ForCausalLM
    config = Qwen2Config(hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                         num_key_value_heads=2, intermediate_size=96, vocab_size=300,
                         tie_word_embeddings=tied)
    model = Qwen2ForCausalLM(config)
    config.save_pretrained(tmp_path)   # config.json only: model_shape reads no weights
    shape = plan.model_shape(str(tmp_path))
    assert shape["head_dim"] == 16 and shape["tie_word_embeddings"] == tied
    assert plan.param_count(shape) == sum(p.numel() for p in model.parameters())


def test_param_count_of_qwen25_7b_is_the_published_7_6b():
    n = plan.param_count(plan.QWEN25_7B)
    assert abs(n / 7.61e9 - 1) < 0.01
    # the reward model: the same backbone, a scalar head instead of the V x H lm_head
    assert plan.param_count(plan.QWEN25_7B, head="score") == n - 152064 * 3584 + 3584


def test_model_shape_defaults_and_missing_config(tmp_path):
    (tmp_path / "config.json").write_text(json.dumps(dict(
        hidden_size=64, num_hidden_layers=2, num_attention_heads=4, intermediate_size=96,
        vocab_size=300)))
    shape = plan.model_shape(str(tmp_path))
    assert shape["num_key_value_heads"] == 4 and shape["head_dim"] == 16
    assert shape["tie_word_embeddings"] is False
    with pytest.raises(SetupError, match="no config.json"):
        plan.model_shape(str(tmp_path / "nothing"))


def test_kv_cache_and_optimizer_by_hand():
    p = plan.grpo_plan(GRPO, TINY, TINY, world_size=2)
    n = plan.param_count(TINY)
    static = terms(p)
    assert static["AdamW exp_avg + exp_avg_sq, fp32"] == 8 * n // 2
    assert static["policy params, fp32"] == 4 * n // 2
    # 16 sequences over 2 ranks: 8 each, (100 + 156) tokens, 2 layers, K and V, 2 kv heads of 16, bf16;
    # plus one layer's copy while the cache grows
    per_layer = 8 * 256 * 2 * 2 * 16 * 2
    assert terms(p, "rollout")["KV cache (8 of 8 rollouts per generate)"] == 2 * per_layer + per_layer
    # the grads exist only during the update
    assert "grads, fp32 shard" not in static and terms(p, "update")["grads, fp32 shard"] == 4 * n // 2


def test_one_process_generates_in_fp32_and_has_no_rollout_copy():
    p = plan.grpo_plan(GRPO, TINY, TINY, world_size=1)
    assert not any("rollout copy" in name for name in terms(p))
    assert terms(p, "rollout")["KV cache (16 of 16 rollouts per generate)"] == 3 * 16 * 256 * 2 * 2 * 16 * 4


def test_no_sync_accumulation_is_counted_unsharded():
    n = plan.param_count(TINY)
    several = terms(plan.grpo_plan(GRPO, TINY, TINY, 2), "update")   # 8 rows / 2 = 4 micro-batches
    assert several["unsharded grad accumulation, fp32"] == 4 * n
    one = terms(plan.grpo_plan({**GRPO, "micro_batch_size": 8}, TINY, TINY, 2), "update")
    synced = terms(plan.grpo_plan({**GRPO, "grad_sync_every_micro_batch": True}, TINY, TINY, 2), "update")
    assert "unsharded grad accumulation, fp32" not in one and "unsharded grad accumulation, fp32" not in synced


def activations(cfg):
    return terms(plan.grpo_plan(cfg, TINY, TINY, 2), "update")["activations saved by forward"]


def test_checkpointing_and_a_smaller_token_budget_lower_the_activations():
    full = activations(GRPO)
    assert activations({**GRPO, "activation_checkpointing": True}) < full / 4
    assert activations({**GRPO, "micro_batch_tokens": 256}) < full   # one row of 256 instead of two


def test_layer_activation_bytes_by_hand():
    # H = 64, Q = 64, K = 32 (not repeated), I = 160, 4 heads, bf16:
    # norms 2 x (256 + 256) + 2 x (64 + 64) + 2 x 2 x 64 + 16 + 8 x 160
    assert plan.layer_saved_bytes(TINY, 2, gqa_repeated=False) == 1024 + 256 + 256 + 16 + 1280
    # checkpointing keeps each layer's input: L x bH per token, plus what is outside the layers
    outside = plan.model_saved_bytes(TINY, 2) * 256 + 256 * 256
    assert plan.activation_bytes(TINY, 1, 256, 2, True) == 2 * 2 * 64 * 256 + outside


def test_rm_placement_cpu_moves_the_reward_model_into_scoring():
    gpu = plan.grpo_plan(GRPO, TINY, TINY, 2)
    cpu = plan.grpo_plan({**GRPO, "rm_placement": "cpu"}, TINY, TINY, 2)
    rm_bytes = 2 * plan.param_count(TINY, head="score")
    assert terms(gpu)["reward model, bf16"] == rm_bytes and "reward model, bf16" not in terms(cpu)
    assert terms(cpu, "scoring")["reward model, bf16"] == rm_bytes
    assert cpu.phase_bytes("update") == gpu.phase_bytes("update") - rm_bytes


def test_refusal_raises_with_the_table_and_force_does_not():
    p = plan.grpo_plan(GRPO, TINY, TINY, 2)
    small = plan.gib(p.peak_bytes()) / 2
    with pytest.raises(SetupError) as err:
        plan.check_plan(p, small)
    assert "--force_plan=True" in str(err.value) and "DOES NOT FIT" in str(err.value)
    assert "KV cache" in str(err.value)            # the table travels with the error
    assert "DOES NOT FIT" in plan.check_plan(p, small, force=True)
    assert "fits" in plan.check_plan(p, plan.gib(p.peak_bytes()) + 1)
    for unknown in (0, -1):                         # no GPU size: never refused
        assert "GPU" not in plan.check_plan(p, unknown)


def test_peak_is_the_largest_phase_with_overheads():
    p = plan.grpo_plan(GRPO, TINY, TINY, 2)
    top = max(p.phase_bytes(k) for k in p.phases)
    assert p.peak_bytes() == pytest.approx(top * (1 + plan.FRAGMENTATION) + plan.CUDA_OVERHEAD_GIB * plan.GIB)


def test_rm_and_synth_plans():
    rm = plan.rm_plan(dict(batch_size=8, micro_batch_size=2, max_length=128, dtype="bfloat16",
                           activation_checkpointing=True), TINY, 2)
    assert "update" in rm.phases and not any("logits" in t.note for t in rm.phases["update"])
    synth = plan.synth_plan(dict(batch_size=4, max_new_tokens=-1), TINY, 8, stage="judge")
    kv = terms(synth, "generate")["KV cache"]
    assert kv == 3 * 4 * (plan.SYNTH_PROMPT_TOKENS + 512) * 2 * 2 * 16 * 2


def test_paper_settings_read_without_importing_the_trainer():
    cfg = plan.paper_grpo_settings()
    assert cfg["prompts_per_step"] == 32 and cfg["max_new_tokens"] == 4096
    assert cfg["eps_low"] == 0.2 and cfg["eps_high"] == 0.28   # a tuple assignment
    paper = plan.grpo_plan(cfg, plan.QWEN25_7B, plan.QWEN25_7B, 8)
    assert plan.fits(paper, 80) and not plan.fits(paper, 40)
    before = plan.grpo_plan(plan.paper_grpo_settings(**plan.BEFORE_ISSUE_16), plan.QWEN25_7B,
                            plan.QWEN25_7B, 8)
    assert not plan.fits(before, 80)
    # the README's 8 x 40 GB settings fit 40 GiB
    forty = next(extra for title, W, gpu, extra in plan.SCENARIOS if gpu == 40)
    assert plan.fits(plan.grpo_plan(plan.paper_grpo_settings(**forty), plan.QWEN25_7B,
                                    plan.QWEN25_7B, 8), 40)
