"""
FSDP2 checks for model.py, run by tests/test_model.py under
`torchrun --standalone --nproc_per_node=2` (gloo on CPU). Each rank builds the same
tiny model twice, shards one copy and compares it with the plain one: full state
dict, forward log-probs, gradients, the unsharded copy (weights and generation),
a checkpoint that reloads, optimizer state that resumes, and a bf16 forward. Argument: a scratch directory.
Prints DIST_STARTED once the process group is up and DIST_OK at the end.
"""

import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import model as M  # noqa: E402


def check(condition, what):
    if not condition:
        raise AssertionError(f"rank {torch.distributed.get_rank()}: {what}")


def max_diff(a, b):
    return (a - b).abs().max().item()


def sharded_tiny(tokenizer):
    model = M.make_tiny_model(tokenizer, seed=0)
    return M.wrap_fsdp(model, mixed_precision=False)


def main(scratch):
    torch.set_num_threads(1)
    rank, _, world_size, device = M.init_distributed()
    print(f"DIST_STARTED rank {rank}", flush=True)
    check(world_size == 2 and torch.distributed.is_initialized(), "expected a 2-process group")

    tokenizer = M.make_tiny_tokenizer()
    plain = M.make_tiny_model(tokenizer, seed=0)
    sharded = sharded_tiny(tokenizer)
    check(any(isinstance(p, torch.distributed.tensor.DTensor) for p in sharded.parameters()), "not sharded")

    full = M.full_state_dict(sharded)
    if rank == 0:
        reference = plain.state_dict()
        check(full.keys() == reference.keys(), "full state dict keys differ")
        check(all(torch.equal(full[k], reference[k]) for k in reference), "full state dict values differ")
        check(full["lm_head.weight"] is full["model.embed_tokens.weight"], "tied weights not one tensor")
    else:
        check(full is None, "full state dict should exist on rank 0 only")

    texts = [M.apply_chat(tokenizer, t) for t in ["sum two numbers", "hi", "sort a list, then print it"]]
    batch = tokenizer(texts, add_special_tokens=False, padding=True, return_tensors="pt")
    ids, mask = batch["input_ids"], batch["attention_mask"]
    with torch.no_grad():
        initial = M.token_logprobs(plain, ids, mask)
        check(max_diff(M.token_logprobs(sharded, ids, mask), initial) < 1e-5,
              "FSDP forward differs from the plain forward")

    # Same data on both ranks, so FSDP's averaged gradient equals the plain one.
    for m in (plain, sharded):
        (-M.token_logprobs(m, ids, mask).sum()).backward()
    plain_grads = dict(plain.named_parameters())
    for name, param in sharded.named_parameters():
        check(max_diff(param.grad.full_tensor(), plain_grads[name].grad) < 1e-5, f"gradient of {name} differs")
    optimizer = torch.optim.AdamW(sharded.parameters(), lr=1e-2)
    optimizer.step()

    copy = M.unsharded_copy(sharded, device)
    check(not isinstance(copy, torch.distributed.fsdp.FSDPModule), "unsharded copy is still FSDP")
    stepped = M.full_state_dict(sharded)
    if rank == 0:
        check(all(torch.equal(copy.state_dict()[k], v) for k, v in stepped.items()), "unsharded copy differs")
    greedy = [o.response_ids for o in M.generate(copy, tokenizer, texts, 6, do_sample=False)]
    check(greedy == [o.response_ids for o in M.generate(sharded, tokenizer, texts, 6, do_sample=False)],
          "generation through the unsharded copy differs from generation through the shards")

    ckpt = os.path.join(scratch, "ckpt")
    M.save_checkpoint(ckpt, sharded, tokenizer, extra={"step": 1}, optimizer=optimizer)
    check(M.is_complete_checkpoint(ckpt) and M.read_extra(ckpt) == {"step": 1}, "checkpoint incomplete")
    reloaded = M.load_policy(ckpt, device)
    for name, value in copy.state_dict().items():
        check(torch.equal(reloaded.state_dict()[name], value), f"reloaded {name} differs")

    resumed = sharded_tiny(tokenizer)
    resumed_optimizer = torch.optim.AdamW(resumed.parameters(), lr=1e-2)
    check(M.load_training_state(ckpt, resumed_optimizer) == {"step": 1}, "training extra lost")
    saved_state = optimizer.state_dict()["state"]
    for index, moments in resumed_optimizer.state_dict()["state"].items():
        for key in ("exp_avg", "exp_avg_sq"):
            check(torch.equal(moments[key].to_local(), saved_state[index][key].to_local()),
                  f"optimizer {key} of parameter {index} not restored")

    mixed = M.wrap_fsdp(M.make_tiny_model(tokenizer, seed=0), mixed_precision=True)
    with torch.no_grad():
        diff = max_diff(M.token_logprobs(mixed, ids, mask), initial)
    check(0 < diff < 0.1, f"bf16 mixed-precision forward differs from fp32 by {diff}: not bf16, or broken")
    print(f"DIST_OK rank {rank}", flush=True)
    open(os.path.join(scratch, f"dist_ok_{rank}"), "w").close()  # ranks' stdout lines interleave
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    # Every check has passed and printed by now. Skip the interpreter's teardown: on a rare
    # run torch's gloo threads abort the process there ("terminate called without an active
    # exception", SIGABRT), after the process group is gone, which is not what this checks.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
