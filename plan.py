"""
plan.py: a GPU memory plan per rank for train_grpo.py, train_rm.py and synth.py, from the
model's config.json and the run's settings, so that a run that cannot fit is refused in
its first seconds instead of running out of memory an hour in.

    python plan.py                      # the paper's run on 8 x 80 GB, and what fits 8 x 40 / 1 x 80
    python plan.py --gpu_gb=40          # the same scenarios judged against another GPU size

The trainers call it (`--plan=True --gpu_gb=80` prints the plan and exits; a normal start
refuses a plan over the GPU unless `--force_plan=True`):

    shape = model_shape(init_from)               # config.json only, no weights
    plan = grpo_plan(config, shape, model_shape(rm_from), world_size)
    check_plan(plan, gpu_gb, force_plan)         # raises data.SetupError with the table

Stdlib only (transformers is imported only to read the config of a hub id that is not a
local directory). Sizes are in GiB (2**30 bytes): an "80 GB" A100/H100 holds 80 GiB.

Symbols: N parameters of the policy (param_count), N_rm of the reward model, W ranks
(world_size), L layers, H hidden size, Q = heads x head_dim, K = kv_heads x head_dim, I the
MLP's intermediate size, V the vocabulary, b the compute dtype's bytes (2 for bf16; "auto"
means bf16, the GPU default), T = max_prompt_tokens + max_new_tokens (a rollout sequence),
S = prompts_per_step x group_size / W (this rank's rollout share).

Assumptions (each term is one function below, its formula in its docstring):
- The policy under FSDP2 (W > 1): fp32 master weights 4N/W, AdamW's two fp32 states 8N/W,
  fp32 grads 4N/W, all sharded. The optimizer states are resident from the first step on;
  the grads only during the update (zero_grad(set_to_none=True) frees them after it).
  Compute is bf16 (MixedPrecisionPolicy): one decoder layer is gathered at a time plus
  the next one prefetched; the root (embeddings, final norm, lm_head) stays gathered
  from forward to the end of backward (FSDP2 does not reshard the root after forward);
  the lm_head's unsharded bf16 grad accumulates over the logits chunks until the root's
  reduce-scatter at the end of backward; one layer's grads are in flight (bf16, and its
  fp32 reduce-scatter input).
- Gradient accumulation without sync (train_*: set_requires_gradient_sync(False) on all
  but the last micro-batch of a mini-batch): FSDP2 then keeps EVERY parameter's unsharded
  gradient, upcast to the reduce dtype fp32, until the last micro-batch: 4N bytes per
  rank, not 4N/W (torch/distributed/fsdp/_fully_shard/_fsdp_param.py,
  to_accumulated_grad_if_needed). For a 7.6B model that is 30.5 GB, the largest single
  term of the update. Syncing every micro-batch (`grad_sync_every_micro_batch=True`, on
  in config/pgrpo_qwen7b.py) costs one reduce-scatter per micro-batch instead and removes
  the term.
- One process (W = 1): the whole fp32 model, grads and AdamW on the GPU (16N), bf16 by
  autocast, which keeps a bf16 cast of every weight while forward and backward use them
  (bN); rollouts generate with the fp32 policy itself (no autocast there): fp32 KV cache.
- Rollouts (W > 1) generate with a full unsharded bf16 copy of the policy (bN), kept
  across steps and refreshed in place one tensor at a time (plus one full fp32 tensor, the
  largest being the V x H embedding). The rank's S sequences go through ONE generate call:
  its KV cache is S x T x L x 2 x K x b, plus one layer's copy while DynamicCache's
  torch.cat grows it. Prefill runs S x max_prompt_tokens tokens through one layer at a
  time with no grad; sampling keeps a few fp32 [S, V] tensors.
- Evaluation generates eval_batch_size prompts at a time (at most: a rank's share may be
  smaller) with up to max_prompt_tokens + eval_max_new_tokens tokens each.
- The reward model (an N_rm-parameter backbone with a scalar head) is a full bf16 copy per
  rank: resident with rm_placement="gpu", moved in for scoring only with "cpu". Scoring is
  no_grad over rm_batch_size texts of rm_max_length tokens.
- kl_beta > 0 adds a frozen bf16 reference (bN, no_grad: no saved activations).
- Activations of the update: a micro-batch of `rows` sequences padded to `width` tokens
  (micro_batch_tokens = 0: micro_batch_size rows of T; > 0: the packer's worst case, as
  many full-length rows as fit, at least one). Qwen2 with SDPA attention; HF repeats the
  K/V heads to Q size whenever a padding mask is passed (packed micro-batches always pad),
  and SDPA saves its own float copy of the [rows, 1, width, width] mask in every layer.
  Counted per token and layer in layer_saved_bytes (checked against measured peaks on
  CPU by runs/memory_check.py). With activation checkpointing (HF, per decoder layer)
  each layer keeps only its input (bH per token) and one layer at a time is recomputed.
- The log-probs never make [rows, width, V] logits: the LM head runs logprob_chunk
  positions at a time, recomputed in backward (model.token_logprobs), so the head's peak
  is one chunk's logits in b plus fp32 working copies (logits_chunk_bytes).
- The backward's working set is the larger of the head's (one chunk + the lm_head's
  weight-grad, or three copies of that grad while autograd sums the chunks' grads) and one
  layer's (its recomputed activations + its gradient buffers): they happen at different
  moments. (The lm_head's accumulated grad in "grads in flight" is then counted twice at
  the head's moment: b x V x H, 1 GiB for the 7B, on the safe side.)
- The phases do not overlap; each phase's peak = static + its own terms; the plan's peak =
  max over phases x (1 + FRAGMENTATION) + CUDA_OVERHEAD_GIB.
- Not counted: small tensors (ids, masks of [rows, width], per-token losses, metrics),
  the CPU side (host RAM: the reward model with rm_placement=cpu, the sandbox), and
  torch.compile (not used).
"""

import ast
import json
import math
import os
import sys
from dataclasses import dataclass, field

GIB = 2 ** 30
# CUDA context (~0.5 GiB with lazy module loading), NCCL's communicators and buffers for
# 8 ranks (~0.5-1 GiB), cuBLAS/cuDNN workspaces (~0.1-0.3 GiB): 2 GiB, the upper end, since
# a plan is for refusing runs and the context is not visible to torch's allocator.
CUDA_OVERHEAD_GIB = 2.0
# PyTorch's caching allocator holds freed blocks that later requests of other sizes cannot
# reuse. Rollouts change every tensor's shape every step (prompt lengths, a growing KV
# cache), so we take 10%, the upper end of the 5-10% usually seen for such workloads
# (expandable_segments=True in PYTORCH_CUDA_ALLOC_CONF brings it down; we do not assume it).
FRAGMENTATION = 0.10
SYNTH_PROMPT_TOKENS = 4096  # synth.py's prompt budget when cfg has no max_prompt_tokens

# Qwen2.5-7B / Qwen2.5-Coder-7B(-Instruct) as published in their config.json: 7.62B parameters
QWEN25_7B = dict(hidden_size=3584, num_hidden_layers=28, num_attention_heads=28,
                 num_key_value_heads=4, head_dim=128, intermediate_size=18944,
                 vocab_size=152064, tie_word_embeddings=False)


@dataclass
class Term:
    name: str
    bytes: int
    note: str = ""

    def __post_init__(self):
        self.bytes = int(round(self.bytes))


@dataclass
class Plan:
    """What one rank holds: `static` all the time, each phase's terms on top of it."""
    title: str
    static: list
    phases: dict = field(default_factory=dict)

    def phase_bytes(self, phase):
        return sum(t.bytes for t in self.static) + sum(t.bytes for t in self.phases[phase])

    def peak_phase(self):
        return max(self.phases, key=self.phase_bytes)

    def tensor_peak(self):
        return self.phase_bytes(self.peak_phase())

    def peak_bytes(self):
        """max over phases of (static + phase) x (1 + FRAGMENTATION) + CUDA_OVERHEAD_GIB."""
        return self.tensor_peak() * (1 + FRAGMENTATION) + CUDA_OVERHEAD_GIB * GIB


# ---------------------------------------------------------------- the model's shape

def model_shape(path):
    """The shape fields of a checkpoint's config.json, without loading any weight: path is a
    model directory, a config.json, or a hub id (then transformers reads its config only)."""
    file = path if path.endswith(".json") else os.path.join(path, "config.json")
    if os.path.isfile(file):
        with open(file) as f:
            config = json.load(f)
    else:
        try:  # a hub id: transformers fetches (or finds cached) its config.json, not the weights
            from transformers import AutoConfig
            config = AutoConfig.from_pretrained(path).to_dict()
        except Exception as e:
            from data import SetupError  # lazily: plan.py stays importable without the project
            raise SetupError(f"{path}: no config.json, so no memory plan can be made "
                             f"({type(e).__name__})") from None
    config = config.get("text_config", config)  # multimodal wrappers keep the LM's shape inside
    return shape_from_config(config)


def shape_from_config(config):
    """The fields param_count and the activation formulas need, with HF's defaults."""
    hidden, heads = config["hidden_size"], config["num_attention_heads"]
    return dict(hidden_size=hidden, num_hidden_layers=config["num_hidden_layers"],
                num_attention_heads=heads,
                num_key_value_heads=config.get("num_key_value_heads") or heads,
                head_dim=config.get("head_dim") or hidden // heads,
                intermediate_size=config["intermediate_size"], vocab_size=config["vocab_size"],
                tie_word_embeddings=bool(config.get("tie_word_embeddings", False)))


def layer_param_count(s):
    """One Qwen2 decoder layer: q (H x Q + Q), k and v (H x K + K each: Qwen2 has q/k/v
    biases), o (Q x H, no bias), MLP gate/up/down (3 x H x I), two RMSNorm weights (2H)."""
    H, I = s["hidden_size"], s["intermediate_size"]
    Q, K = s["num_attention_heads"] * s["head_dim"], s["num_key_value_heads"] * s["head_dim"]
    return (H * Q + Q) + 2 * (H * K + K) + Q * H + 3 * H * I + 2 * H


def root_param_count(s, head="lm"):
    """What FSDP's root unit holds: embeddings V x H, the final norm H, and the head: the
    lm_head V x H unless tied to the embeddings ("lm"), or a reward model's scalar head H
    ("score"), or none."""
    V, H = s["vocab_size"], s["hidden_size"]
    heads = {"lm": 0 if s["tie_word_embeddings"] else V * H, "score": H, "none": 0}
    return V * H + H + heads[head]


def param_count(s, head="lm"):
    """N = L x layer_param_count + root_param_count (head: "lm", "score" or "none")."""
    return s["num_hidden_layers"] * layer_param_count(s) + root_param_count(s, head)


def dtype_bytes(dtype):
    """b: bytes of the compute dtype; "auto" is bf16, what the trainers pick on a GPU."""
    return {"auto": 2, "bfloat16": 2, "float16": 2, "float32": 4}[dtype]


# ---------------------------------------------------------------- activations (per token)

def layer_saved_bytes(s, b, gqa_repeated=True):
    """Bytes one Qwen2 decoder layer keeps for backward per token (SDPA attention, no
    checkpointing), compute dtype of b bytes:

        2 x (4H + 2bH)  each RMSNorm: the fp32 upcast of its input (pow and mul save it;
                        in fp32 it is the input itself), the normalised value cast back
                        (weight * x saves it) and the output (the next linears save it)
        b x (Q + 2Kv)   q and k after rotary and v, saved by SDPA; Kv = Q when HF repeats
                        the K/V heads (it does whenever a padding mask is passed), else K
        2bQ             SDPA's output (its backward reads it) and HF's transposed
                        contiguous copy (o_proj's input)
        4 x heads       SDPA's fp32 log-sum-exp
        4bI             MLP: gate output (SiLU's input), SiLU output and up output (the
                        product's inputs), the product (down_proj's input)

    Not counted, because no backward keeps them: q/k before rotary, the rotary
    temporaries, o_proj's and down_proj's outputs, the residual sums. The attention mask
    SDPA keeps per layer is quadratic in the width: layer_mask_bytes."""
    H, I, heads = s["hidden_size"], s["intermediate_size"], s["num_attention_heads"]
    Q, K = heads * s["head_dim"], s["num_key_value_heads"] * s["head_dim"]
    kv = Q if gqa_repeated else K
    return 2 * (4 * H + 2 * b * H) + b * (Q + 2 * kv) + 2 * b * Q + 4 * heads + 4 * b * I


def layer_mask_bytes(rows, width, b):
    """SDPA turns HF's boolean [rows, 1, width, width] padding mask into an additive mask of
    the compute dtype and keeps it for backward: rows x width^2 x b per layer."""
    return rows * width * width * b


def model_saved_bytes(s, b):
    """Per token, outside the decoder layers: the final norm's fp32 upcast and normalised
    value (4H + bH), the head's flattened copy of the hidden states (bH: token_logprobs'
    chunks keep it; a reward model's score layer keeps its input instead) and the rotary
    cos and sin (2 x head_dim x b). HF's boolean mask (rows x width^2 bytes) is added by
    the caller."""
    H = s["hidden_size"]
    return 4 * H + 2 * b * H + 2 * s["head_dim"] * b


def layer_backward_bytes(s, b):
    """Gradient buffers alive together in one layer's backward, per token: the MLP's (the
    grad of the product, then of the SiLU output and of the up output, 3bI) and the
    residual stream's in and out (2bH)."""
    return 3 * b * s["intermediate_size"] + 2 * b * s["hidden_size"]


def nograd_layer_bytes(s, b):
    """Per token, the peak of one layer's forward with no grad (prefill, scoring): the
    residual in and out and the norm's output (3bH), and in the MLP the SiLU output, the up
    output and their product alive together (3bI). The attention's q/k/v/output (at most
    5bQ) are freed before the MLP starts and are smaller."""
    return 3 * b * s["intermediate_size"] + 3 * b * s["hidden_size"]


def activation_bytes(s, rows, width, b, checkpointing, head="lm"):
    """What the forward of a micro-batch of rows x width tokens leaves saved for backward:

        checkpointing:  L x bH x tokens (each layer's input)
        without:        L x (layer_saved_bytes x tokens + layer_mask_bytes)
        both:           + model_saved_bytes x tokens + rows x width^2 (HF's bool mask)

    head="score" (a reward model) keeps the same per-token terms (its score layer keeps
    its input as the LM head's chunks do)."""
    tokens, L = rows * width, s["num_hidden_layers"]
    per_layer = (b * s["hidden_size"] * tokens if checkpointing
                 else layer_saved_bytes(s, b) * tokens + layer_mask_bytes(rows, width, b))
    return L * per_layer + model_saved_bytes(s, b) * tokens + rows * width * width


def layer_recompute_bytes(s, rows, width, b):
    """Backward with checkpointing, one layer at a time: the layer's saved activations made
    again (layer_saved_bytes x tokens + its mask) plus its gradient buffers
    (layer_backward_bytes x tokens). Without checkpointing only the buffers are new."""
    tokens = rows * width
    return (layer_saved_bytes(s, b) + layer_backward_bytes(s, b)) * tokens + layer_mask_bytes(rows, width, b)


def logits_chunk_bytes(s, chunk, b, with_grad=True, entropy=True):
    """One chunk of `chunk` positions in token_logprobs' head ([chunk, V] tensors).
    With grad (the recompute and backward of the update), fp32 copies alive together at
    the backward's peak: the tempered logits (logsumexp keeps them), the softmax (with
    the entropy) and three gradient buffers, plus the gradient cast back to b (b < 4):

        chunk x V x (4 x (1 + entropy + 3) + b x [b < 4])     (bf16, entropy: 22 B/logit)

    The head's output in b and its fp32 upcast are not kept (nothing's backward needs
    them). With no grad (old or reference log-probs) the forward's moment: the output in
    b, the upcast, the tempered copy and logsumexp's temporary (and the softmax):

        chunk x V x (b + 4 x ([b < 4] + 2 + entropy))

    (1024 x 152064 x 22 B = 3.2 GiB: this is why logprob_chunk matters at Qwen's vocab.)"""
    if with_grad:
        return chunk * s["vocab_size"] * (4 * (1 + bool(entropy) + 3) + b * (b < 4))
    return chunk * s["vocab_size"] * (b + 4 * ((b < 4) + 2 + bool(entropy)))


def full_logits_bytes(s, tokens, b, backward=True):
    """The [tokens, V] logits of a plain loss (log_softmax over the whole batch, the caller
    dropping the logits), for comparison (memory_check): log_softmax's fp32 output is kept
    for backward (the logits and their upcast are not); backward adds two fp32 gradients
    (of the log-probs and of the logits): tokens x V x 4 x (1 + 2 x backward). A caller
    that keeps HF's `.logits` keeps tokens x V x b more."""
    return tokens * s["vocab_size"] * 4 * (1 + 2 * bool(backward))


def kv_cache_bytes(s, sequences, tokens, b):
    """HF's KV cache for `sequences` rows of `tokens` positions: rows x tokens x L x 2 (K
    and V) x kv_heads x head_dim x b, plus one layer's copy while DynamicCache's torch.cat
    grows it (x (1 + 1/L))."""
    L = s["num_hidden_layers"]
    per_layer = sequences * tokens * 2 * s["num_key_value_heads"] * s["head_dim"] * b
    return L * per_layer + per_layer


def prefill_bytes(s, sequences, prompt_tokens, b):
    """A generate call's prefill: one layer's no-grad peak over the sequences x prompt
    tokens (nograd_layer_bytes), HF's bool padding mask and SDPA's additive copy of it
    (rows x prompt^2 x (1 + b)), and the sampler's fp32 [rows, V] logits, tempered copy,
    probabilities and sorted copy (4 x 4V per row)."""
    return (nograd_layer_bytes(s, b) * sequences * prompt_tokens
            + sequences * prompt_tokens * prompt_tokens * (1 + b) + sequences * 16 * s["vocab_size"])


def scoring_bytes(s, rows, width, b):
    """A no-grad reward-model forward of rows x width tokens: the embeddings' output and one
    layer's peak (nograd_layer_bytes, the residual included), the masks (rows x width^2 x
    (1 + b)); the scalar head's [rows, width, 1] output is negligible."""
    return nograd_layer_bytes(s, b) * rows * width + rows * width * width * (1 + b)


# ---------------------------------------------------------------- micro-batches

def micro_batch_shape(cfg, width, per_rank):
    """(tokens, n_micro): the update's largest micro-batch in padded tokens and the number
    of micro-batches per mini-batch, worst case. micro_batch_tokens = 0: micro_batch_size
    rows of `width`. > 0: the packer keeps rows x longest <= budget (a longer sequence goes
    alone), so tokens = max(budget, width), capped by micro_batch_size rows when > 0 and by
    the rank's mini-batch. The activation formulas then take rows = tokens / width: per-token
    terms are exact, and the masks' rows x longest^2 <= tokens x width bounds any packing.
    n_micro counts full-width sequences (the most micro-batches)."""
    mbs, budget = cfg.get("micro_batch_size", 0), cfg.get("micro_batch_tokens", 0)
    if budget > 0:
        tokens, rows_full = max(budget, width), max(budget // width, 1)
        if mbs > 0:
            tokens, rows_full = min(tokens, mbs * width), min(rows_full, mbs)
    else:
        tokens, rows_full = mbs * width, mbs
    return min(tokens, per_rank * width), math.ceil(per_rank / max(min(rows_full, per_rank), 1))


# ---------------------------------------------------------------- terms shared by the trainers

def gib(x):
    return x / GIB


def _n(x):
    return f"{x / 1e9:.2f}B" if x >= 1e8 else f"{x / 1e6:.1f}M"


def sharded_training_terms(N, W, what):
    """fp32 master weights 4N/W and AdamW's exp_avg + exp_avg_sq 8N/W (resident)."""
    where = f"/ {W} ranks" if W > 1 else "(one process: whole)"
    return [Term(f"{what} params, fp32", 4 * N // W, f"4 B x {_n(N)} {where}"),
            Term("AdamW exp_avg + exp_avg_sq, fp32", 8 * N // W, f"8 B x {_n(N)} {where}")]


def head_backward_bytes(s, chunk, b, n_chunks, grad_b, entropy=True):
    """The LM head's backward peak: one chunk's working set (logits_chunk_bytes) plus the
    head's weight-grad V x H x g (g = grad_b, the bytes of that grad: b under FSDP's bf16
    compute, 4 when autocast casts it back to the fp32 weight), or, with more than one
    chunk, the moment autograd sums the chunks' grads of the one weight: its buffer, the
    new grad and their sum, 3 x V x H x g (measured: runs/memory_check.py):

        max(logits_chunk_bytes + V H g, 3 V H g x [n_chunks > 1])"""
    VH = s["vocab_size"] * s["hidden_size"]
    return max(logits_chunk_bytes(s, chunk, b, True, entropy) + VH * grad_b,
               3 * VH * grad_b if n_chunks > 1 else 0)


def update_weight_terms(s, N, W, b, n_micro, head, sync_every):
    """The update's parameter-side terms:
    grads 4N/W (fp32, sharded; freed after the step);
    W > 1: no-sync accumulation 4N when n_micro > 1 and not sync_every (FSDP2 keeps every
      unsharded grad in fp32 between micro-batches); gathered bf16 weights: the root
      (b x root params, from forward to the end of backward) + 2 layers (b x 2 x layer,
      current + prefetched); grads in flight: the lm_head's unsharded grad b x V x H (when
      it has one; held from the head's backward to the root's reduce-scatter at the end)
      + one layer's (b + 4) x layer (bf16 grads, fp32 reduce-scatter input);
    W = 1: autocast's bf16 casts of all weights (bN, when b < 4).
    The head's weight-grad while the head runs backward is in head_backward_bytes."""
    lm_grad = s["vocab_size"] * s["hidden_size"] * b if head == "lm" else 0
    terms = [Term("grads, fp32" + (" shard" if W > 1 else ""), 4 * N // W,
                  f"4 B x {_n(N)}" + (f" / {W}" if W > 1 else "") + "; freed after optimizer.step")]
    if W == 1:
        if b < 4:
            terms.append(Term("autocast bf16 weight casts", b * N, f"{b} B x {_n(N)}: cached for forward, kept by backward"))
        return terms
    if n_micro > 1 and not sync_every:
        terms.append(Term("unsharded grad accumulation, fp32", 4 * N,
                          f"4 B x {_n(N)}: set_requires_gradient_sync(False) over {n_micro} micro-batches"))
    layer, root = layer_param_count(s), root_param_count(s, head)
    terms.append(Term("FSDP gathered bf16 params", b * (root + 2 * layer),
                      f"root {_n(root)} (forward->backward) + 2 layers of {_n(layer)}"))
    terms.append(Term("FSDP unsharded grads in flight", lm_grad + (b + 4) * layer,
                      ("lm_head V x H grad + " if lm_grad else "") + "one layer bf16 + fp32 reduce-scatter"))
    return terms


def activation_terms(s, rows, width, b, checkpointing, chunk, head="lm", entropy=True, grad_b=2):
    """The update's activation terms: what the forward saves, and the backward's working
    set, max(head: head_backward_bytes; layer: layer_recompute_bytes with checkpointing,
    else its gradient buffers)."""
    tokens = rows * width
    saved = activation_bytes(s, rows, width, b, checkpointing, head)
    layer_ws = (layer_recompute_bytes(s, rows, width, b) if checkpointing
                else layer_backward_bytes(s, b) * tokens)
    head_ws = (head_backward_bytes(s, min(chunk, tokens), b, math.ceil(tokens / chunk), grad_b, entropy)
               if head == "lm" else 0)
    how = ("checkpointing: L x bH per token" if checkpointing
           else f"no checkpointing: {layer_saved_bytes(s, b) / 1024:.0f} KiB/token/layer + masks")
    return [Term("activations saved by forward", saved, f"{tokens:.0f} tokens, {how}"),
            Term("backward working set", max(layer_ws, head_ws),
                 f"max(layer {gib(layer_ws):.2f}, head {gib(head_ws):.2f} GiB: logits chunk of "
                 f"{min(chunk, tokens):.0f} pos + weight-grad)" if head == "lm" else "one layer's recompute + grads")]


# ---------------------------------------------------------------- the plans

def grpo_plan(cfg, shape, rm_shape=None, world_size=1):
    """Per-rank plan of train_grpo.py; cfg is its settings dict, shape the policy's,
    rm_shape the reward model's (None: no reward model, as with rm_from="")."""
    s, W, b = shape, world_size, dtype_bytes(cfg.get("dtype", "auto"))
    N, L = param_count(s), s["num_hidden_layers"]
    Lp, Ln = cfg["max_prompt_tokens"], cfg["max_new_tokens"]
    width = Lp + Ln
    n_seqs = cfg["prompts_per_step"] * cfg["group_size"]
    share = n_seqs // W
    mini_local = (cfg.get("mini_batch_size", 0) or n_seqs) // W
    tokens, n_micro = micro_batch_shape(cfg, width, mini_local)
    rows = tokens / width
    chunk = cfg.get("logprob_chunk", 1024)
    ckpt = cfg.get("activation_checkpointing", False)

    static = sharded_training_terms(N, W, "policy")
    kv_b = b if W > 1 else 4  # one process generates with the fp32 policy itself
    if W > 1 and cfg.get("keep_rollout_copy", True):
        static.append(Term("rollout copy of the policy, bf16", b * N, f"{b} B x {_n(N)}, kept across steps"))
    N_rm = param_count(rm_shape, head="score") if rm_shape and cfg.get("rm_from", "x") else 0
    rm_term = Term("reward model, bf16", b * N_rm, f"{b} B x {_n(N_rm)}")
    if N_rm and cfg.get("rm_placement", "gpu") == "gpu":
        static.append(Term(rm_term.name, rm_term.bytes, rm_term.note + ", resident (rm_placement=gpu)"))
    if cfg.get("kl_beta", 0) > 0:
        static.append(Term("frozen reference, bf16", b * N, f"{b} B x {_n(N)} (kl_beta > 0)"))

    keep_copy = cfg.get("keep_rollout_copy", True)
    copy_term = Term("rollout copy of the policy, bf16", b * N, f"{b} B x {_n(N)}, made for generation")

    def generation(rows_, new_tokens, what):
        """The KV cache at its full length, plus what prefill needs beyond the part of the
        cache that exists then: max(0, prefill - (KV(full) - KV(prompt)))."""
        full = kv_cache_bytes(s, rows_, Lp + new_tokens, kv_b)
        extra = max(0, prefill_bytes(s, rows_, Lp, kv_b) - (full - kv_cache_bytes(s, rows_, Lp, kv_b)))
        return ([] if keep_copy or W == 1 else [copy_term]) + [
            Term(f"KV cache ({what})", full,
                 f"{rows_} seq x {Lp + new_tokens} tok x {L} layers x 2 x "
                 f"{s['num_key_value_heads']} x {s['head_dim']} x {kv_b} B"),
            Term("prefill beyond its KV + sampling", extra,
                 f"one layer's no-grad peak over {rows_} x {Lp} prompt tokens")]

    gen_rows = min(cfg.get("rollout_batch_size", 0) or share, share)
    phases = {}
    if W > 1:  # unsharded_copy(into=...) gathers one tensor at a time, before generation starts
        phases["copy refresh"] = ([] if keep_copy else [copy_term]) + [Term(
            "one full fp32 tensor", s["vocab_size"] * s["hidden_size"] * 4, "the V x H embedding")]
    phases["rollout"] = generation(gen_rows, Ln, f"{gen_rows} of {share} rollouts per generate")
    eval_new = cfg.get("eval_max_new_tokens", 0) or Ln
    if cfg.get("eval_file", "x") and cfg.get("eval_interval", 1):
        phases["eval"] = generation(cfg.get("eval_batch_size", 256), eval_new,
                                    f"eval_batch_size {cfg.get('eval_batch_size', 256)}")
    if N_rm:
        rr, rw = cfg.get("rm_batch_size", 8), cfg.get("rm_max_length", 4096)
        phases["scoring"] = ([rm_term] if cfg.get("rm_placement", "gpu") == "cpu" else []) + [
            Term("reward-model forward (no grad)", scoring_bytes(rm_shape, rr, rw, b),
                 f"rm_batch_size {rr} x rm_max_length {rw}")]
    on_policy = cfg.get("ppo_epochs", 1) == 1 and mini_local * W == n_seqs
    if not on_policy or cfg.get("kl_beta", 0) > 0:
        gathered = b * (root_param_count(s) + 2 * layer_param_count(s)) if W > 1 else 0
        phases["old/ref log-probs"] = [
            Term("no-grad forward", scoring_bytes(s, rows, width, b)
                 + logits_chunk_bytes(s, min(chunk, tokens), b, with_grad=False, entropy=False)
                 + gathered, f"{tokens} tokens, one logits chunk, gathered layers")]
    phases["update"] = (update_weight_terms(s, N, W, b, n_micro, "lm",
                                            cfg.get("grad_sync_every_micro_batch", False))
                        + activation_terms(s, rows, width, b, ckpt, chunk, grad_b=b if W > 1 else 4))
    return Plan(f"train_grpo: {W} rank(s), policy {_n(N)} params, micro-batch {tokens} padded tokens "
                f"(longest {width}; {n_micro} per mini-batch), dtype {cfg.get('dtype', 'auto')}", static, phases)


def rm_plan(cfg, shape, world_size=1):
    """Per-rank plan of train_rm.py: FSDP2 fp32 + AdamW like the policy; a micro-batch of
    micro_batch_size pairs is 2 x micro_batch_size texts of max_length tokens through one
    forward; a scalar head, so no vocabulary logits. Validation is a no-grad forward of the
    same size (eval_only: the whole bf16 model per rank, no optimizer)."""
    s, W, b = shape, world_size, dtype_bytes(cfg.get("dtype", "auto"))
    N = param_count(s, head="score")
    rows, width = 2 * cfg["micro_batch_size"], cfg["max_length"]
    if cfg.get("eval_only", False):
        return Plan(f"train_rm --eval_only: {W} rank(s), {_n(N)} params", [
            Term("reward model, bf16", b * N, f"{b} B x {_n(N)}")],
            {"validation": [Term("forward (no grad)", scoring_bytes(s, rows, width, b),
                                 f"{rows} texts x {width} tokens")]})
    per_rank = cfg["batch_size"] // W
    n_micro = math.ceil(per_rank / cfg["micro_batch_size"])
    static = sharded_training_terms(N, W, "reward model")
    gathered = b * (root_param_count(s, "score") + 2 * layer_param_count(s)) if W > 1 else 0
    phases = {
        "update": (update_weight_terms(s, N, W, b, n_micro, "score",
                                       cfg.get("grad_sync_every_micro_batch", False))
                   + activation_terms(s, rows, width, b, cfg.get("activation_checkpointing", False),
                                      0, head="score")),
        "validation": [Term("forward (no grad)", scoring_bytes(s, rows, width, b) + gathered,
                            f"{rows} texts x {width} tokens" + (", gathered layers" if W > 1 else ""))]}
    return Plan(f"train_rm: {W} rank(s), {_n(N)} params, micro-batch {rows} texts x {width} tokens "
                f"({n_micro} per step), dtype {cfg.get('dtype', 'auto')}", static, phases)


def synth_plan(cfg, shape, world_size=1, stage="reason"):
    """Per-rank plan of synth.py: each rank holds the whole generator in bf16 and generates
    batch_size prompts at a time, each of up to max_prompt_tokens (cfg, else
    SYNTH_PROMPT_TOKENS) + max_new_tokens (-1: the stage's default)."""
    s, b = shape, dtype_bytes(cfg.get("dtype", "auto"))
    N = param_count(s)
    rows, Lp = cfg["batch_size"], cfg.get("max_prompt_tokens", SYNTH_PROMPT_TOKENS)
    Ln = (cfg["max_new_tokens"] if cfg.get("max_new_tokens", -1) > 0 else   # synth's own default
          literal_settings(os.path.join(HERE, "synth.py"))["STAGE_DEFAULTS"][stage][1])
    return Plan(f"synth {stage}: each of {world_size} rank(s) holds the whole {_n(N)} model",
                [Term("generator, bf16", b * N, f"{b} B x {_n(N)}")],
                {"generate": [Term("KV cache", kv_cache_bytes(s, rows, Lp + Ln, b),
                                   f"{rows} x ({Lp} prompt + {Ln} new) tokens"),
                              Term("prefill + sampling", prefill_bytes(s, rows, Lp, b),
                                   f"{rows} x {Lp} prompt tokens")]})


# ---------------------------------------------------------------- the table and the check

def format_plan(plan, gpu_gb=0):
    """The plan as a text table: each term in GiB with its note, each phase's total, the
    peak with its overheads, and the margin against a gpu_gb GiB GPU (<= 0: unknown)."""
    rows = [f"memory plan per rank: {plan.title}", f"  {'term':<42} {'GiB':>7}  note"]
    line = lambda name, x, note="": rows.append(f"  {name:<42} {gib(x):>7.2f}  {note}".rstrip())
    rows.append("  static (resident all the time)")
    for t in plan.static:
        line("  " + t.name, t.bytes, t.note)
    line("= static", sum(t.bytes for t in plan.static))
    for phase, terms in plan.phases.items():
        rows.append(f"  {phase} (+ static)")
        for t in terms:
            line("  " + t.name, t.bytes, t.note)
        line(f"= {phase}", plan.phase_bytes(phase))
    peak, phase = plan.peak_bytes(), plan.peak_phase()
    line(f"peak: {phase} x {1 + FRAGMENTATION:.2f} + {CUDA_OVERHEAD_GIB:g} GiB", peak,
         f"fragmentation {FRAGMENTATION:.0%}; CUDA context, NCCL, cuBLAS {CUDA_OVERHEAD_GIB:g} GiB")
    if gpu_gb > 0:
        margin = gpu_gb - gib(peak)
        rows.append(f"  GPU {gpu_gb:g} GiB: " + (f"fits, {margin:.1f} GiB to spare" if margin >= 0
                                                  else f"DOES NOT FIT, over by {-margin:.1f} GiB"))
    return "\n".join(rows)


def fits(plan, gpu_gb):
    """True when the GPU size is unknown (<= 0) or the peak is within it."""
    return gpu_gb <= 0 or plan.peak_bytes() <= gpu_gb * GIB


def check_plan(plan, gpu_gb, force=False):
    """The table; raises data.SetupError with it when the peak is over a known GPU size
    (gpu_gb > 0) and force is False."""
    table = format_plan(plan, gpu_gb)
    if not force and not fits(plan, gpu_gb):
        from data import SetupError  # lazily: plan.py stays importable without the project
        raise SetupError(f"this run needs {gib(plan.peak_bytes()):.1f} GiB per GPU, over the "
                         f"{gpu_gb:g} GiB given (--gpu_gb); change the settings below or pass "
                         f"--force_plan=True to start anyway\n{table}")
    return table


def enforce(plan, gpu_gb, show_only, force, say=print):
    """What a script does with its plan before reading any weight: with --plan
    (show_only) say the table and exit; else check_plan (refuse unless force)."""
    if show_only:
        say(format_plan(plan, gpu_gb))
        raise SystemExit(0)
    check_plan(plan, gpu_gb, force)


# ---------------------------------------------------------------- the paper's run

def literal_settings(path, into=None):
    """The literal module-level assignments of a script or config file, read with ast (the
    script is not imported: no torch, no side effects). Later files override earlier ones."""
    out = dict(into or {})
    with open(path) as f:
        tree = ast.parse(f.read())
    for node in tree.body:
        if not isinstance(node, ast.Assign):
            continue
        for target in node.targets:
            try:
                value = ast.literal_eval(node.value)
            except ValueError:
                continue
            if isinstance(target, ast.Name):
                out[target.id] = value
            elif isinstance(target, ast.Tuple) and isinstance(value, tuple):
                out.update({t.id: v for t, v in zip(target.elts, value) if isinstance(t, ast.Name)})
    return out


HERE = os.path.dirname(os.path.abspath(__file__))
BEFORE_ISSUE_16 = dict(  # the paper config as it stood before the memory work, for comparison
    activation_checkpointing=False, micro_batch_tokens=0, micro_batch_size=4,
    grad_sync_every_micro_batch=False, eval_batch_size=256, rm_placement="gpu")
SCENARIOS = [  # (title, world_size, gpu_gb, settings over config/pgrpo_qwen7b.py)
    ("8 x 80 GB, config/pgrpo_qwen7b.py", 8, 80, {}),
    ("8 x 80 GB, the reward model in host RAM between scorings", 8, 80, {"rm_placement": "cpu"}),
    ("8 x 80 GB, the paper config before issue 16's memory settings", 8, 80, BEFORE_ISSUE_16),
    ("8 x 40 GB", 8, 40,
     {"micro_batch_tokens": 6144, "logprob_chunk": 512, "eval_batch_size": 16,
      "rm_placement": "cpu", "keep_rollout_copy": False, "rollout_batch_size": 16}),
    ("1 x 80 GB (one process, no FSDP), smallest settings", 1, 80,
     {"micro_batch_tokens": 6144, "logprob_chunk": 512, "prompts_per_step": 4,
      "eval_batch_size": 8, "rm_placement": "cpu"}),
]


def paper_grpo_settings(**overrides):
    """train_grpo.py's defaults, config/pgrpo_qwen7b.py over them, then overrides."""
    cfg = literal_settings(os.path.join(HERE, "train_grpo.py"))
    cfg = literal_settings(os.path.join(HERE, "config", "pgrpo_qwen7b.py"), cfg)
    return {**cfg, **overrides}


def paper_rm_settings(**overrides):
    cfg = literal_settings(os.path.join(HERE, "train_rm.py"))
    cfg = literal_settings(os.path.join(HERE, "config", "rm_qwen7b.py"), cfg)
    return {**cfg, **overrides}


def main(argv):
    gpu = None
    for arg in argv:
        if arg.startswith("--gpu_gb="):
            gpu = float(arg.split("=", 1)[1])
        else:
            sys.exit(f"usage: python plan.py [--gpu_gb=GiB]   (unknown argument {arg!r})")
    for title, W, gpu_gb, extra in SCENARIOS:
        plan = grpo_plan(paper_grpo_settings(**extra), QWEN25_7B, QWEN25_7B, W)
        print(f"### {title}: {', '.join(f'{k}={v}' for k, v in extra.items()) or 'no changes'}")
        print(format_plan(plan, gpu or gpu_gb) + "\n")
    print("### train_rm.py config/rm_qwen7b.py")
    print(format_plan(rm_plan(paper_rm_settings(), QWEN25_7B, 8), gpu or 80) + "\n")
    N = param_count(QWEN25_7B)
    print(f"1 x 80 GB: fp32 weights + grads + AdamW alone are 16 B x {_n(N)} = {gib(16 * N):.0f} GiB; "
          f"full fine-tuning of a 7B needs an 8-bit optimizer, CPU offload of the optimizer "
          f"state, or bf16 weights with Kahan/stochastic rounding (none implemented here).")


if __name__ == "__main__":
    main(sys.argv[1:])
