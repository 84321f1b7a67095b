"""
Checks plan.py's activation and logits formulas against memory measured on the CPU.

    python runs/memory_check.py            # 20 cases, about 2.5 minutes on 2 cores

For two small Qwen2 shapes (random init, SDPA attention, untied 32k vocabulary so the
logits matter), two widths (micro-batches of 2 rows x 512 and 2 x 2048 tokens, the second
row left-padded by an eighth, so HF passes a padding mask as in training), with and
without activation checkpointing (HF activation_checkpointing_enable, use_reentrant=False),
and two heads: model.token_logprobs as it is in this checkout (its LM head runs `chunk`
positions at a time, recomputed in backward; with the entropy, as train_grpo calls it;
chunks of 1024, and of 128 with checkpointing, where one layer's recompute is then the
backward's peak) and a plain full-logits log_softmax loss. One forward and one backward each, fp32 (the plan's dtype
bytes b = 4; on the GPU b = 2 and the same formulas scale).

Measured: every tensor storage allocated while the forward and the backward run, tracked
by a TorchDispatchMode (each op's new output storages are counted, and uncounted by a
weakref finalizer when freed). Parameters exist before and are not counted; their grads
are allocated (zeroed) beforehand, so a backward's weight gradient counts only as the
transient it is before being added in. Two numbers per case:
  saved = live bytes when the forward returns (what it left for backward, its output too)
          vs plan.activation_bytes (+ the full logits' saved tensors for the plain loss);
  peak  = the highest live bytes over forward + backward
          vs saved + the backward's working set: max(layer, plan.head_backward_bytes), as
          plan.activation_terms counts it.
"""

import os
import sys
import time
import weakref

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import plan  # noqa: E402
from model import token_logprobs  # noqa: E402
from transformers import Qwen2Config, Qwen2ForCausalLM  # noqa: E402

SHAPES = [dict(hidden_size=256, num_hidden_layers=4, num_attention_heads=4, num_key_value_heads=2,
               intermediate_size=1024, vocab_size=32000),
          dict(hidden_size=512, num_hidden_layers=8, num_attention_heads=8, num_key_value_heads=2,
               intermediate_size=1536, vocab_size=32000)]
WIDTHS = [512, 2048]
ROWS = 2
CHUNK = 1024  # token_logprobs' chunk, as train_grpo's logprob_chunk default
SMALL_CHUNK = 128


class LiveBytes(TorchDispatchMode):
    """Live bytes of the storages that ops allocate while the mode is on, and their peak."""

    def __init__(self):
        super().__init__()
        self.live, self.now, self.peak = set(), 0, 0

    def _free(self, key, nbytes):
        self.live.discard(key)
        self.now -= nbytes

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        inputs = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                  if isinstance(t, torch.Tensor)}
        out = func(*args, **(kwargs or {}))
        for t in tree_flatten(out)[0]:
            if not isinstance(t, torch.Tensor):
                continue
            storage = t.untyped_storage()
            key = storage.data_ptr()
            if key in inputs or key in self.live or storage.nbytes() == 0:
                continue  # a view, an in-place result, or a storage counted already
            self.live.add(key)
            self.now += storage.nbytes()
            self.peak = max(self.peak, self.now)
            weakref.finalize(storage, self._free, key, storage.nbytes())
        return out


def build(shape):
    config = Qwen2Config(**shape, max_position_embeddings=4096, tie_word_embeddings=False)
    torch.manual_seed(0)
    return Qwen2ForCausalLM._from_config(config, dtype=torch.float32, attn_implementation="sdpa")


def batch(width, vocab):
    ids = torch.randint(0, vocab, (ROWS, width))
    mask = torch.ones(ROWS, width, dtype=torch.long)
    mask[1, : width // 8] = 0  # left padding: HF then passes a mask (K/V heads repeated)
    return ids, mask


def full_logits_loss(model, ids, mask):
    """A plain loss over the [B, T, V] logits: -mean log p(next token)."""
    logits = model(input_ids=ids, attention_mask=mask, use_cache=False).logits
    logp = logits[:, :-1].float().log_softmax(-1).gather(-1, ids[:, 1:, None]).squeeze(-1)
    return logp


def chunked_loss(chunk):
    def loss(model, ids, mask):
        lp, ent = token_logprobs(model, ids, mask, return_entropy=True, chunk=chunk)
        return lp  # the entropy is only logged (detached), as in train_grpo
    return loss


def measure(model, ids, mask, head):
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    tracker = LiveBytes()
    with tracker:
        lp = head(model, ids, mask)
        saved = tracker.now
        (-(lp * mask[:, 1:]).sum() / mask.sum()).backward()
        del lp
    return saved, tracker.peak


def planned(s, width, checkpointing, head, chunk):
    """(saved, peak) as plan.py counts them, b = 4 (fp32)."""
    b, tokens, V, H = 4, ROWS * width, s["vocab_size"], s["hidden_size"]
    saved = plan.activation_bytes(s, ROWS, width, b, checkpointing)
    layer_ws = (plan.layer_recompute_bytes(s, ROWS, width, b) if checkpointing
                else plan.layer_backward_bytes(s, b) * tokens)
    if head == "full":  # one head "chunk": the whole logits, then the weight-grad on top
        saved += plan.full_logits_bytes(s, tokens, b, backward=False) - b * H * tokens  # no flat copy
        head_ws = (plan.full_logits_bytes(s, tokens, b) - plan.full_logits_bytes(s, tokens, b, backward=False)
                   + V * H * b)
    else:
        head_ws = plan.head_backward_bytes(s, min(chunk, tokens), b, -(-tokens // chunk), grad_b=b)
    return saved, saved + max(layer_ws, head_ws)


def main():
    torch.set_num_threads(2)
    print("measured: live bytes of storages allocated during forward + backward (TorchDispatchMode"
          " hook, weakref finalizers), fp32 on CPU; MiB = 2**20 bytes")
    print(f"{'shape':<14} {'tokens':>10} {'ckpt':>5} {'head':>9} | {'saved plan':>10} {'meas':>8} "
          f"{'ratio':>6} | {'peak plan':>10} {'meas':>8} {'ratio':>6}")
    t0, worst = time.time(), 0.0
    for raw in SHAPES:
        s = plan.shape_from_config(raw)
        model = build(raw)
        for width in WIDTHS:
            ids, mask = batch(width, raw["vocab_size"])
            for checkpointing in (False, True):
                if checkpointing:
                    model.activation_checkpointing_enable({"use_reentrant": False})
                else:
                    model.activation_checkpointing_disable()
                model.train()
                heads = [(f"chunk{CHUNK}", chunked_loss(CHUNK), CHUNK), ("full", full_logits_loss, 0)]
                if checkpointing:  # a small chunk: the layer's recompute is the backward's peak
                    heads.insert(1, (f"chunk{SMALL_CHUNK}", chunked_loss(SMALL_CHUNK), SMALL_CHUNK))
                for name, head, chunk in heads:
                    saved, peak = measure(model, ids, mask, head)
                    p_saved, p_peak = planned(s, width, checkpointing, name if name == "full" else "chunked", chunk)
                    worst = max(worst, abs(p_saved / saved - 1), abs(p_peak / peak - 1))
                    print(f"{raw['hidden_size']}/{raw['num_hidden_layers']}L/{raw['intermediate_size']:<5} "
                          f"{f'{ROWS}x{width}':>10} {'yes' if checkpointing else 'no':>5} {name:>9} | "
                          f"{p_saved / 2**20:>10.1f} {saved / 2**20:>8.1f} {p_saved / saved:>6.2f} | "
                          f"{p_peak / 2**20:>10.1f} {peak / 2**20:>8.1f} {p_peak / peak:>6.2f}")
        model.activation_checkpointing_disable()
    print(f"worst |planned / measured - 1| = {worst:.0%}; {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()
