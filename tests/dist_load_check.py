"""
Low-memory sharded loading (model.load_sharded), run by tests/test_model.py under
`torchrun --standalone --nproc_per_node=2` (gloo on CPU), on a ~52M-parameter Qwen2
checkpoint (199 MB in fp32) the test writes first; both ranks load it sharded, and each measures its
peak resident memory (ru_maxrss) before and after. Rank 1 must stay well below one fp32
copy of the model (it holds its shard and one tensor at a time), rank 0 must show one
(so the measure sees a load). And model.in_turn runs its loads one rank at a time.
Then the sharded model must compute what the plain one does (log-probs; buffers outside
the state dict, generation config). Argument: a scratch directory. Prints LOAD_OK rank r.
"""

import os
import resource
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import model as M  # noqa: E402


def peak_mb():
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024   # KiB on Linux


def main(scratch):
    torch.set_num_threads(1)
    rank, _, world_size, device = M.init_distributed()
    path = os.path.join(scratch, "policy")            # written by the test before the launch
    config = M.AutoConfig.from_pretrained(path)
    with torch.device("meta"):                       # counted without allocating
        n_params = sum(p.numel() for p in M.AutoModelForCausalLM.from_config(config).parameters())
    full_mb = n_params * 4 / 2 ** 20
    before = peak_mb()
    sharded = M.load_sharded(lambda: M.load_policy(path, "cpu", dtype=torch.float32), device,
                             mixed_precision=False)
    grown = peak_mb() - before
    print(f"rank {rank}: fp32 copy {full_mb:.0f} MB, peak RSS grew {grown:.0f} MB while loading",
          flush=True)
    if rank == 0:
        assert grown > 0.8 * full_mb, (grown, full_mb)           # the measure sees a full copy
    else:   # its shard (half the model) and a little; loading as before it held 1.5 copies
        assert grown < (1 / world_size + 0.2) * full_mb, (grown, full_mb)

    plain = M.load_policy(path, "cpu", dtype=torch.float32)
    ids = torch.randint(5, 200, (2, 24), generator=torch.Generator().manual_seed(0))
    mask = torch.ones_like(ids)
    with torch.no_grad():
        diff = (M.token_logprobs(sharded, ids, mask) - M.token_logprobs(plain, ids, mask)).abs().max()
    assert diff < 1e-5, diff
    for (name, a), (_, b) in zip(sharded.named_buffers(), plain.named_buffers()):
        assert torch.equal(a, b), name
    assert sharded.generation_config.to_dict() == plain.generation_config.to_dict()
    # in_turn: the ranks of a node load one after another, never two at once
    spans = M.in_turn(lambda: (time.time(), time.sleep(0.3), time.time()))
    both = [None, None]
    torch.distributed.all_gather_object(both, (spans[0], spans[2]))
    (s0, e0), (s1, e1) = both
    assert e0 <= s1 or e1 <= s0, both
    print(f"LOAD_OK rank {rank}", flush=True)
    torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1])
    # Every check has passed and printed by now. Skip the interpreter's teardown: on a rare
    # run torch's gloo threads abort the process there ("terminate called without an active
    # exception", SIGABRT), after the process group is gone, which is not what this checks.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
