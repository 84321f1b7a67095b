"""
Models for ReCode / P-GRPO: loading, scoring, log-probs, generation, sharding, checkpoints.

Plain functions over Hugging Face models (transformers 5.x, torch only):
- `init_distributed` reads the torchrun environment (NCCL on GPUs, gloo on CPU) and
  falls back to one process without a process group;
- the policy is an AutoModelForCausalLM; the reasoning reward model is an
  AutoModelForSequenceClassification with one label: a linear scalar head read at
  the last non-padding token (HF finds it with config.pad_token_id), so a reward
  model we save loads with plain `from_pretrained(dir, num_labels=1)`;
- `token_logprobs` (GRPO ratios) and `reward_scores` take position ids from the
  attention mask, so padding side and amount change nothing; token_logprobs applies the
  LM head a chunk of positions at a time and never makes the [B, T, V] logits;
- `generate` samples a left-padded batch with HF `generate`;
- `wrap_fsdp` shards with FSDP2 (`fully_shard` per decoder layer, then the root);
  `load_sharded` loads into the shards with one host copy per node (rank 0 reads, the
  others build on the meta device and receive by broadcast); `in_turn` loads a full
  model on one rank of the node at a time;
- checkpoints are HF directories written atomically, finished by a COMPLETE marker; a
  save killed at any point leaves a complete checkpoint that `recover_checkpoint` puts
  back in place;
- bad input a user can fix (a missing or empty model directory, an empty data file) is a
  `SetupError` naming the path or flag; the scripts print it as one line and exit 1; a
  missing default input names the command that makes it (MADE_BY: `python toy.py`, ...).

Training scripts import this; run directly it only writes a tiny random checkpoint
(byte-level tokenizer + 2-layer qwen2) for CPU experiments:

    python model.py out/tiny

On 8 GPUs the scripts run under `torchrun --standalone --nproc_per_node=8` and call
these helpers on every rank; GPUs compute in bf16 with SDPA attention, CPUs in fp32.
"""

import copy
import glob
import importlib
import json
import os
import random
import re
import shutil
import sys
import time
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from torch.distributed.checkpoint.state_dict import (StateDictOptions, get_model_state_dict,
                                                     set_model_state_dict)
from torch.distributed.device_mesh import init_device_mesh
from torch.distributed.fsdp import FSDPModule, MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor
from torch.utils.checkpoint import checkpoint
from tqdm import tqdm
from data import SetupError  # noqa: F401  (bad input; LoadError is one too)
from transformers import (AutoConfig, AutoModelForCausalLM, AutoModelForSequenceClassification,
                          AutoTokenizer, GenerationConfig, LogitsProcessorList,
                          PreTrainedTokenizerFast)

COMPLETE_MARKER = "COMPLETE"  # written last: a checkpoint directory without it is unfinished
EXTRA_FILE = "extra.json"
LOGPROB_CHUNK = 1024  # token positions whose logits token_logprobs makes at once
# what from_pretrained reads from a local directory (any one of each group will do)
MODEL_FILES = {"config": ("config.json",),
               "weights": ("model.safetensors", "model.safetensors.index.json",
                           "pytorch_model.bin", "pytorch_model.bin.index.json"),
               "tokenizer": ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")}
# Tests only: the CRASH_AFTER-th checkpoint step of this process raises SimulatedCrash, which
# leaves the disk as a kill at that point would (see _step). 0: never.
CRASH_AFTER = int(os.environ.get("RECODE_CKPT_CRASH_AFTER", "0"))
_steps_done = 0

# ---------------------------------------------------------------- distributed


def init_distributed():
    """Join the torchrun process group if there is one; return (rank, local_rank, world_size, device)."""
    on_gpu = torch.cuda.is_available()
    if "RANK" not in os.environ:
        return 0, 0, 1, torch.device("cuda" if on_gpu else "cpu")
    rank, local_rank = int(os.environ["RANK"]), int(os.environ["LOCAL_RANK"])
    world_size = int(os.environ["WORLD_SIZE"])
    device = torch.device("cuda", local_rank) if on_gpu else torch.device("cpu")
    if on_gpu:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if on_gpu else "gloo", device_id=device if on_gpu else None)
    return rank, local_rank, world_size, device


def is_main():
    return not dist.is_initialized() or dist.get_rank() == 0


def print0(*args):
    """Print on rank 0 only, above any tqdm progress bar, flushed at once."""
    if is_main():
        tqdm.write(" ".join(map(str, args)))
        sys.stdout.flush()


def barrier():
    if dist.is_initialized():
        dist.barrier()


def all_sum(x):
    """Sum a tensor over ranks in place (a no-op on one process); returns it."""
    if dist.is_initialized():
        dist.all_reduce(x)
    return x


def warmup_lr(step, learning_rate, warmup_steps):
    """The learning rate of a 0-based step: linear warmup over warmup_steps (0 = none),
    then constant, as the paper trains (constant 1e-6, no decay)."""
    if warmup_steps <= 0:
        return learning_rate
    return learning_rate * min(1.0, (step + 1) / warmup_steps)


def default_dtype(device):
    """bf16 where the GPU supports it (half the memory, fp32 range); fp32 everywhere else."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    return torch.float32


# ---------------------------------------------------------------- bad input


def device_gb(device):
    """The memory of a CUDA device in GiB; 0 (unknown) for anything else."""
    if torch.device(device).type != "cuda":
        return 0.0
    return torch.cuda.get_device_properties(device).total_memory / 2 ** 30


def exit_on_setup_error():
    """Make an uncaught SetupError print `<script>: error: <message>` on stderr, with no
    traceback (the message says what to fix; the stack would only bury it); the
    interpreter then exits with status 1. Other exceptions keep their traceback."""
    default = sys.excepthook

    def hook(kind, value, tb):
        if issubclass(kind, SetupError):
            print(f"{os.path.basename(sys.argv[0])}: error: {value}", file=sys.stderr, flush=True)
        else:
            default(kind, value, tb)
    sys.excepthook = hook


def _hub_id_form(name):
    """Whether a name that is not on disk could still be a Hugging Face Hub id
    ('name' or 'org/name'), which from_pretrained would try to download."""
    part = r"[A-Za-z0-9][\w.-]*"
    return re.fullmatch(f"{part}(/{part})?", name) is not None and ".." not in name


# The scripts' default inputs, and the command that makes each (nanoGPT's prepare, then
# train): a check below that fails on one of these paths says which command to run.
MADE_BY = {"data/toy": "python toy.py", "out/toy_rm": "python train_rm.py"}


def made_by_hint(path):
    """' (made by `python toy.py`: run it first)' for a path inside a MADE_BY dir, else ''."""
    norm = os.path.normpath(path) if path else ""
    for prefix, command in MADE_BY.items():
        if norm == prefix or norm.startswith(prefix + os.sep):
            return f" (made by `{command}`: run it first)"
    return ""


def check_model_dir(path, flag=None, parts=("config", "weights", "tokenizer")):
    """Raise SetupError, naming `flag=path` (or the path), unless `path` is a local directory
    holding the MODEL_FILES of each of `parts`, or is absent from disk and has the form
    of a Hub id (from_pretrained then tries the Hub; see _from_pretrained)."""
    try:
        _check_model_dir(path, flag, parts)
    except SetupError as e:
        raise SetupError(f"{e}{made_by_hint(path)}") from None


def _check_model_dir(path, flag, parts):
    where = f"{flag}={path}" if flag else path
    if not path:
        raise SetupError(f"{flag or 'model path'} is empty: give a model directory")
    if not os.path.exists(path):
        if _hub_id_form(path):
            return
        raise SetupError(f"{where}: no such directory")
    if not os.path.isdir(path):
        raise SetupError(f"{where}: a file, not a model directory")
    names = set(os.listdir(path))
    if not names:
        raise SetupError(f"{where}: the directory is empty, not a model directory")
    missing = [f"{part} ({' / '.join(MODEL_FILES[part])})" for part in parts
               if not names & set(MODEL_FILES[part])]
    if missing:
        raise SetupError(f"{where}: not a model directory: it has no {', no '.join(missing)}")


def _from_pretrained(load, path, parts):
    """load(path) once check_model_dir(path, parts) passed; a Hub id that cannot be
    loaded (no such repository, no network) is a SetupError naming it too."""
    check_model_dir(path, parts=parts)
    try:
        return load(path)
    except OSError as e:
        if os.path.exists(path):
            raise
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise SetupError(f"{path}: no such directory, and not loadable from the Hugging Face "
                         f"Hub ({first})") from e


def check_data_file(path, flag):
    """SetupError naming `flag=path` unless path is an existing file."""
    if not os.path.isfile(path):
        raise SetupError(f"{flag}={path}: " + ("a directory, not a data file" if os.path.isdir(path)
                                               else "no such file") + made_by_hint(path))


# ---------------------------------------------------------------- loaders


def load_tokenizer(path):
    """Tokenizer with a pad token (eos when the checkpoint has none) that pads on the left."""
    tokenizer = _from_pretrained(AutoTokenizer.from_pretrained, path, ("tokenizer",))
    if tokenizer.pad_token is None:
        if tokenizer.eos_token is None:
            raise ValueError(f"{path}: tokenizer has neither a pad nor an eos token")
        tokenizer.pad_token = tokenizer.eos_token
    tokenizer.padding_side = "left"
    return tokenizer


def load_policy(path, device, dtype=None):
    """Causal LM with SDPA attention, loaded on CPU then moved (a device_map needs accelerate)."""
    model = _from_pretrained(lambda p: AutoModelForCausalLM.from_pretrained(
        p, dtype=dtype or default_dtype(device), attn_implementation="sdpa"), path, ("config", "weights"))
    return model.to(device)


def load_reward_model(path, device, dtype=None, tokenizer=None):
    """Scalar-head reward model from a reward-model or a plain causal-LM checkpoint.

    From a causal LM the head `score` is new. HF would fill it from whatever state
    the global RNG is in; we draw it instead from a generator seeded with
    `torch.initial_seed()`, N(0, config.initializer_range), so the head depends
    only on torch's seed, not on device or on what consumed random numbers before.
    config.pad_token_id (needed to find the last real token) comes from
    `tokenizer`, or from the checkpoint's tokenizer, when the config lacks it.
    """
    model, info = _from_pretrained(lambda p: AutoModelForSequenceClassification.from_pretrained(
        p, num_labels=1, dtype=dtype or default_dtype(device), attn_implementation="sdpa",
        output_loading_info=True), path, ("config", "weights"))
    missing = sorted(info["missing_keys"])
    backbone_missing = [k for k in missing if k.startswith(model.base_model_prefix + ".")]
    if backbone_missing:
        raise ValueError(f"{path}: checkpoint lacks backbone weights, e.g. {backbone_missing[:3]}")
    if missing:
        generator = torch.Generator().manual_seed(torch.initial_seed())
        with torch.no_grad():
            for name in missing:
                param = model.get_parameter(name)
                if param.dim() > 1:
                    param.copy_(torch.randn(param.shape, generator=generator) * model.config.initializer_range)
                else:
                    param.zero_()
        print0(f"{path}: new reward head {missing} (seed {torch.initial_seed()})")
    if model.config.pad_token_id is None:
        model.config.pad_token_id = (tokenizer or load_tokenizer(path)).pad_token_id
    return model.to(device)


# ---------------------------------------------------------------- scoring and log-probs


def position_ids_from_mask(attention_mask):
    """Positions count real tokens only, so a left-padded row sees the same positions as unpadded."""
    return (attention_mask.long().cumsum(-1) - 1).clamp(min=0)


def reward_scores(model, tokenizer, texts, device, max_length=None, batch_size=None):
    """Raw reward-model scores (no sigmoid), float32 tensor [len(texts)].

    Texts are tokenized verbatim (no special tokens added: format them fully first).
    Texts longer than max_length are cut on tokenizer.truncation_side and counted.
    Under FSDP every rank must make the same number of batches (forwards are collective).
    """
    if not texts:
        return torch.zeros(0, device=device)
    ids = tokenizer(list(texts), add_special_tokens=False)["input_ids"]
    for i, row in enumerate(ids):
        if not row:
            raise ValueError(f"reward_scores: text {i} is empty")
    if max_length is not None:
        too_long = sum(len(row) > max_length for row in ids)
        if too_long:
            keep_end = tokenizer.truncation_side == "left"
            ids = [row[-max_length:] if keep_end else row[:max_length] for row in ids]
            print0(f"reward_scores: truncated {too_long} of {len(ids)} texts to {max_length} tokens")
    step = batch_size or len(ids)
    scores = []
    for start in range(0, len(ids), step):
        batch = tokenizer.pad({"input_ids": ids[start:start + step]}, return_tensors="pt")
        mask = batch["attention_mask"].to(device)
        out = model(input_ids=batch["input_ids"].to(device), attention_mask=mask,
                    position_ids=position_ids_from_mask(mask), use_cache=False)
        scores.append(out.logits[:, 0].float())
    return torch.cat(scores)


def _logprob_entropy(logits, targets, with_entropy, temperature=1.0):
    """fp32 log p(target) = logit[target] - logsumexp(logits); entropy = logsumexp - sum p * logit.
    The logits are divided by temperature first, as the sampler divides them."""
    logits = logits.float() / temperature
    norm = torch.logsumexp(logits, dim=-1)
    logprob = logits.gather(-1, targets.unsqueeze(-1)).squeeze(-1) - norm
    if not with_entropy:
        return logprob
    return torch.stack([logprob, norm - (torch.softmax(logits, dim=-1) * logits).sum(-1)], -1)


class _LogprobHead(torch.nn.Module):
    """Stands in for a causal LM's output layer during one forward of token_logprobs: from
    the final hidden states [B, T, H] it returns log p(next token) [B, T-1] (and the
    entropy, stacked on a last dim), applying the real head to `chunk` positions at a time.
    With grad, each chunk's logits are remade in backward (checkpoint) instead of kept. So
    no [B, T, V] logits tensor is ever made, and the model's forward (with FSDP's hooks
    around it, which gather the head's weight) runs as it is."""

    def __init__(self, head, targets, with_entropy, temperature, chunk):
        super().__init__()
        self.head = head
        self.targets, self.with_entropy = targets, with_entropy
        self.temperature, self.chunk = temperature, chunk

    def piece(self, hidden, targets):
        return _logprob_entropy(self.head(hidden), targets, self.with_entropy, self.temperature)

    def forward(self, hidden):
        b, t, width = hidden.shape
        flat, targets = hidden[:, :-1].reshape(-1, width), self.targets.reshape(-1)
        recompute = torch.is_grad_enabled() and hidden.requires_grad
        pieces = [checkpoint(self.piece, flat[s:s + self.chunk], targets[s:s + self.chunk],
                             use_reentrant=False) if recompute
                  else self.piece(flat[s:s + self.chunk], targets[s:s + self.chunk])
                  for s in range(0, flat.shape[0], self.chunk)]
        return torch.cat(pieces).view(b, t - 1, *pieces[0].shape[1:])


def token_logprobs(model, input_ids, attention_mask, return_entropy=False, temperature=1.0,
                   chunk=None):
    """Log-prob of each token given its prefix: [B, T-1], column t scores input_ids[:, t+1].

    Positions whose token or preceding token is padding are 0. With return_entropy,
    also the entropy of the predictive distribution at the same positions. temperature:
    that of the distribution the tokens were sampled from (logits / temperature), so that
    an RL ratio compares the policy that sampled with the one being trained.

    Memory: the model's output layer is swapped, for this forward only, for _LogprobHead,
    which makes the logits `chunk` (default LOGPROB_CHUNK) positions of the flattened
    batch at a time, in the compute dtype, then their fp32 log-softmax; with grad each
    chunk is recomputed in backward. The peak is one chunk's logits, never [B, T, V]
    (7.6 GB in bf16 for 4 x 6k tokens at Qwen2's vocab of 152k). Models that change the
    logits after the head (Gemma-2's soft-capping) are refused.
    """
    if input_ids.shape[1] < 2:
        raise ValueError("token_logprobs: sequences need at least 2 tokens")
    if getattr(model.config, "final_logit_softcapping", None):
        raise ValueError("token_logprobs: models that soft-cap their logits are not supported")
    head = model.get_output_embeddings()
    model.set_output_embeddings(_LogprobHead(head, input_ids[:, 1:], return_entropy, temperature,
                                             chunk or LOGPROB_CHUNK))
    try:
        out = model(input_ids=input_ids, attention_mask=attention_mask,
                    position_ids=position_ids_from_mask(attention_mask), use_cache=False).logits
    finally:
        model.set_output_embeddings(head)
    valid = (attention_mask[:, :-1] * attention_mask[:, 1:]).bool()
    if not return_entropy:
        return torch.where(valid, out, 0.0)
    return torch.where(valid, out[..., 0], 0.0), torch.where(valid, out[..., 1], 0.0)


# ---------------------------------------------------------------- generation


@dataclass
class GenerationOutput:
    prompt_ids: list[int]
    response_ids: list[int]  # ends with (and includes) eos when the model produced one
    text: str  # response decoded without special tokens
    truncated: bool  # max_new_tokens reached before eos


def apply_chat(tokenizer, user_text):
    """One user turn in the tokenizer's chat template, ready for the reply; raw text without one."""
    if not getattr(tokenizer, "chat_template", None):
        return user_text
    return tokenizer.apply_chat_template([{"role": "user", "content": user_text}],
                                         tokenize=False, add_generation_prompt=True)


def _eos_ids(model, tokenizer):
    """Chat models end a turn with a token other than the tokenizer's eos; generation_config lists it."""
    configured = model.generation_config.eos_token_id
    configured = configured if isinstance(configured, list) else [configured]
    return sorted({tokenizer.eos_token_id, *configured} - {None})


def seeded_sampler(seeds, temperature, top_p, device):
    """A logits processor that samples each row from its own random stream.

    Row i draws its t-th token with the t-th uniform vector of a generator seeded with
    seeds[i] (Gumbel-max over the tempered, top-p-filtered logits) and returns scores
    where only that token is finite, so greedy decoding then emits it. A row's sample
    thus depends on its seed and its own logits only: not on which other rows share the
    batch, how many ranks split the rollout, or whether the run was resumed."""
    gens = [torch.Generator(device=device).manual_seed(int(s)) for s in seeds]

    def pick(input_ids, scores):
        logits = scores.float() / temperature
        if top_p < 1.0:
            probs, order = torch.softmax(logits, dim=-1).sort(dim=-1, descending=True)
            outside = probs.cumsum(-1) - probs >= top_p      # the top token always stays
            logits = logits.masked_fill(outside.scatter(1, order, outside), float("-inf"))
        u = torch.stack([torch.rand(logits.shape[1], generator=g, device=device) for g in gens])
        choice = (logits - torch.log(-torch.log(u.clamp(1e-12, 1 - 1e-7)))).argmax(-1)
        return torch.full_like(scores, float("-inf")).scatter(1, choice[:, None], 0.0)
    return pick


def generate(model, tokenizer, prompts, max_new_tokens, temperature=1.0, top_p=1.0,
             do_sample=True, device=None, seeds=None):
    """Complete each prompt (used verbatim, no special tokens added) in one left-padded batch.

    Checkpoints may ship sampling defaults (top-k, repetition penalty); they are
    switched off so samples follow exactly the tempered, top-p distribution.
    seeds (one int per prompt, with do_sample): each row samples from its own stream,
    see seeded_sampler; without them HF samples from torch's global generator.
    On an FSDP model use `unsharded_copy` first: generating through shards is slow.
    """
    if not prompts:
        return []
    device = device or next(model.parameters()).device
    ids = tokenizer(list(prompts), add_special_tokens=False)["input_ids"]
    batch = tokenizer.pad({"input_ids": ids}, padding_side="left", return_tensors="pt")
    eos = _eos_ids(model, tokenizer)
    settings = dict(max_new_tokens=max_new_tokens, do_sample=do_sample, eos_token_id=eos,
                    pad_token_id=tokenizer.pad_token_id, repetition_penalty=1.0, no_repeat_ngram_size=0)
    processors = LogitsProcessorList()
    if do_sample and seeds is not None:
        if len(seeds) != len(prompts):
            raise ValueError(f"generate: {len(seeds)} seeds for {len(prompts)} prompts")
        settings["do_sample"] = False  # the processor has already sampled
        processors.append(seeded_sampler(seeds, temperature, top_p, device))
    elif do_sample:
        settings.update(temperature=temperature, top_p=top_p, top_k=0, typical_p=1.0)
    out = model.generate(input_ids=batch["input_ids"].to(device),
                         attention_mask=batch["attention_mask"].to(device),
                         generation_config=GenerationConfig(**settings), logits_processor=processors)
    new_tokens = out[:, batch["input_ids"].shape[1]:].tolist()
    results = []
    for prompt, tokens in zip(ids, new_tokens):
        end = next((i for i, token in enumerate(tokens) if token in eos), None)
        response = tokens if end is None else tokens[:end + 1]
        results.append(GenerationOutput(prompt_ids=prompt, response_ids=response,
                                        text=tokenizer.decode(response, skip_special_tokens=True),
                                        truncated=end is None))
    return results


# ---------------------------------------------------------------- tiny models for tests and CPU runs

TINY_CHAT_TEMPLATE = (
    "{% for message in messages %}<|bos|>{{ message['role'] }}\n{{ message['content'] }}<|eos|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|bos|>assistant\n{% endif %}")


def make_tiny_tokenizer():
    """Byte-level tokenizer: ids 0-255 are the bytes (no merges), then <|pad|>, <|bos|>, <|eos|>.

    Every string round-trips exactly; nothing is downloaded.
    """
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    core = Tokenizer(models.BPE(vocab={char: i for i, char in enumerate(alphabet)}, merges=[]))
    core.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    core.decoder = decoders.ByteLevel()
    core.add_special_tokens(["<|pad|>", "<|bos|>", "<|eos|>"])
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, pad_token="<|pad|>", bos_token="<|bos|>",
                                        eos_token="<|eos|>", padding_side="left")
    tokenizer.chat_template = TINY_CHAT_TEMPLATE
    return tokenizer


def make_tiny_model(tokenizer, arch="qwen2", n_layer=2, n_embd=64, n_head=4, seed=0, **overrides):
    """Random AutoModelForCausalLM of a real architecture (qwen2 or llama), fp32, on CPU.

    Like the small Qwen2.5 models it uses grouped-query attention (half as many
    key/value heads when n_head is even) and ties the output layer to the embedding.
    Torch's global RNG is left untouched.
    """
    settings = dict(vocab_size=len(tokenizer), hidden_size=n_embd, intermediate_size=2 * n_embd,
                    num_hidden_layers=n_layer, num_attention_heads=n_head,
                    num_key_value_heads=n_head // 2 if n_head % 2 == 0 else n_head,
                    max_position_embeddings=1024, bos_token_id=tokenizer.bos_token_id,
                    eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
                    tie_word_embeddings=True)
    config = AutoConfig.for_model(arch, **{**settings, **overrides})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return AutoModelForCausalLM.from_config(config, dtype=torch.float32, attn_implementation="sdpa")


def make_tiny_checkpoint(out_dir, **kw):
    """Tiny tokenizer + tiny model (make_tiny_model keywords) saved as a checkpoint in out_dir."""
    tokenizer = make_tiny_tokenizer()
    save_checkpoint(out_dir, make_tiny_model(tokenizer, **kw), tokenizer)
    return out_dir


# ---------------------------------------------------------------- FSDP2


def wrap_fsdp(model, mixed_precision, device_type=None):
    """Shard with FSDP2: each decoder layer is one all-gather unit, the root holds the rest.

    mixed_precision: compute in bf16 from fp32 sharded weights, reduce gradients in fp32.
    device_type: where the shards live (default: where the parameters are; fully_shard
    moves CPU parameters there and leaves meta ones for to_empty).
    Needs a process group; a single process has nothing to shard and gets the model back.
    """
    if not dist.is_initialized():
        return model
    layers = getattr(model.base_model, "layers", None)
    if not isinstance(layers, torch.nn.ModuleList):
        raise ValueError(f"wrap_fsdp: {type(model).__name__} has no base_model.layers to shard")
    mesh = init_device_mesh(device_type or next(model.parameters()).device.type,
                            (dist.get_world_size(),))
    policy = (MixedPrecisionPolicy(param_dtype=torch.bfloat16, reduce_dtype=torch.float32)
              if mixed_precision else MixedPrecisionPolicy())
    for layer in layers:
        fully_shard(layer, mesh=mesh, mp_policy=policy)
    fully_shard(model, mesh=mesh, mp_policy=policy)
    return model


def load_sharded(load, device, mixed_precision, checkpointing=False):
    """An FSDP2-sharded model without a full copy in every rank's host memory.

    Rank 0 runs load() (the model in fp32 on the CPU: one copy on the node, not one per
    rank); the others build the same class from rank 0's config on the meta device (no
    memory). All shard it (wrap_fsdp; with checkpointing, activation checkpointing is
    switched on first), the other ranks allocate their shards, and rank 0's weights are
    broadcast one tensor at a time into every rank's shard (torch's set_model_state_dict
    with broadcast_from_rank0): a rank's peak is its shards plus one full tensor. Buffers
    outside the state dict (rotary inv_freq) are broadcast too. Collective."""
    rank0 = dist.get_rank() == 0
    model = load() if rank0 else None
    blueprint = [(type(model), model.config, getattr(model, "generation_config", None))
                 if rank0 else None]
    dist.broadcast_object_list(blueprint, src=0, device=device if device.type != "cpu" else None)
    if not rank0:
        cls, config, generation_config = blueprint[0]
        with torch.device("meta"):
            model = cls._from_config(copy.deepcopy(config), dtype=torch.float32,
                                     attn_implementation="sdpa")
        if generation_config is not None:     # causal LMs have one, reward models none
            model.generation_config = generation_config
    if checkpointing:
        model.activation_checkpointing_enable({"use_reentrant": False})
    full = model.state_dict() if rank0 else {}
    model = wrap_fsdp(model, mixed_precision, device_type=device.type)
    if not rank0:
        model.to_empty(device=device)
    set_model_state_dict(model, full, options=StateDictOptions(full_state_dict=True,
                                                               broadcast_from_rank0=True))
    with torch.no_grad():
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)
    return model


def in_turn(fn):
    """fn() on the ranks of this node one after another (barriers between): a model that
    from_pretrained reads into host memory before it moves to its device is then in host
    RAM once at a time, not once per rank (8 x 15 GB for a bf16 7B). Collective."""
    if not dist.is_initialized():
        return fn()
    local_rank = int(os.environ.get("LOCAL_RANK", 0))
    out = None
    for turn in range(max(int(os.environ.get("LOCAL_WORLD_SIZE", 1)), 1)):
        if turn == local_rank:
            out = fn()
        dist.barrier()
    return out


def full_state_dict(model):
    """Unsharded state dict on CPU on rank 0, None on the other ranks (collective: all ranks call).

    Works for plain and FSDP2 models. For a model already on CPU the tensors may be
    the live parameters: read, do not modify.
    """
    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))
    if not is_main():
        return None
    # The gather copies tied weights once per name; alias them again like model.state_dict()
    # does, so save_pretrained stores one tensor (as for an unsharded model).
    first_name = {}
    for name, param in model.named_parameters(remove_duplicate=False):
        first = first_name.setdefault(id(param), name)
        if first != name and name in state:
            state[name] = state[first]
    return state


def unsharded_copy(model, device, dtype=None, into=None):
    """A plain (non-FSDP) model with the full weights on `device`, e.g. for fast generation.

    Collective under FSDP (every rank gets its own copy). Gathers one tensor at a time,
    so the peak is the copy plus one full parameter. Pass a previous copy as `into`
    to refresh its weights instead of building a new model. dtype defaults to
    default_dtype(device).
    """
    if into is None:
        plain_class = next(c for c in type(model).__mro__ if not issubclass(c, FSDPModule))
        with torch.device(device):
            # deepcopy: _from_config writes the dtype into the config it is given
            into = plain_class._from_config(copy.deepcopy(model.config),
                                            dtype=dtype or default_dtype(device), attn_implementation="sdpa")
        into.generation_config = copy.deepcopy(model.generation_config)
        into.eval().requires_grad_(False)
    target, done = into.state_dict(), set()
    with torch.no_grad():
        for name, value in model.state_dict().items():
            if id(value) in done:  # tied weights: one tensor under two names
                continue
            done.add(id(value))
            target[name].copy_(value.full_tensor() if isinstance(value, DTensor) else value)
    return into


# ---------------------------------------------------------------- checkpoints
# A save writes <path>.tmp, marks it COMPLETE, moves a previous <path> to <path>.old, renames
# <path>.tmp to <path> and deletes <path>.old. Killed anywhere in there, it leaves a complete
# checkpoint under one of the three names, newest first: a complete <path>.tmp (written after
# <path>), then <path>, then <path>.old. recover_checkpoint (on resume, and at the start of
# every save) puts that one at <path> and deletes the rest.


class SimulatedCrash(RuntimeError):
    """Raised by _step when CRASH_AFTER says so (tests)."""


def _step(name):
    """Marks the end of one step of a checkpoint save; the CRASH_AFTER-th step of this
    process raises SimulatedCrash there. Nothing catches it inside this module, so the
    disk is left as a kill at that point would leave it."""
    global _steps_done
    _steps_done += 1
    if _steps_done == CRASH_AFTER:
        raise SimulatedCrash(f"simulated crash after checkpoint step {_steps_done} ({name})")


def is_complete_checkpoint(path):
    return os.path.isfile(os.path.join(path, COMPLETE_MARKER))


def read_extra(path):
    """The `extra` dict saved with a checkpoint ({} when none was given)."""
    with open(os.path.join(path, EXTRA_FILE)) as f:
        return json.load(f)


def _fsync_tree(root):
    for folder, _, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                os.fsync(f.fileno())
        _fsync_dir(folder)


def _fsync_dir(path):
    fd = os.open(path, os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)


def _fsync_parent(path):
    _fsync_dir(os.path.dirname(os.path.abspath(path)))


def _remove(path):
    """Delete a checkpoint directory, its COMPLETE marker first (made durable), so that a
    kill halfway through the deletion leaves an unfinished directory, never one that
    says it is complete while files are missing."""
    if not os.path.lexists(path):
        return
    marker = os.path.join(path, COMPLETE_MARKER)
    if os.path.isfile(marker):
        os.remove(marker)
        _fsync_dir(path)
    shutil.rmtree(path)


def _marker_time(path):
    marker = os.path.join(path, COMPLETE_MARKER)
    return os.path.getmtime(marker) if os.path.isfile(marker) else 0.0


def _candidates(path):
    """path and what an interrupted save leaves beside it, newest first. <path>.tmp-<pid> and
    <path>.old-<pid> are the names an earlier version of save_checkpoint used; their age
    against <path> is unknown, so they count only when <path> is not complete."""
    def legacy(suffix):
        return sorted(glob.glob(glob.escape(path) + suffix), key=_marker_time, reverse=True)
    return [path + ".tmp", path, *legacy(".tmp-*"), path + ".old", *legacy(".old-*")]


def _install(src, dst):
    """Rename the complete checkpoint src to dst. A complete dst waits at dst.old until src
    is in place; an unfinished one is deleted."""
    old = dst + ".old"
    if old != src:
        _remove(old)
    if is_complete_checkpoint(dst):
        os.rename(dst, old)
    else:
        _remove(dst)
    _fsync_parent(dst)
    _step("previous checkpoint moved aside")
    os.rename(src, dst)
    _fsync_parent(dst)
    _step("new checkpoint in place")
    _remove(old)
    _step("previous checkpoint deleted")


def _recover(path):
    """Put the newest complete checkpoint among _candidates(path) at path and delete the
    others; returns whether path is then complete. With none complete nothing is touched.
    Rank 0 only: no collectives."""
    candidates = _candidates(path)
    complete = [c for c in candidates if is_complete_checkpoint(c)]
    if not complete:
        return False
    if complete[0] != path:
        _install(complete[0], path)
    for leftover in candidates:
        if leftover != path:
            _remove(leftover)
    return True


def checkpoint_left(path):
    """Whether a save left something to resume from at `path`: the checkpoint, or what a
    save killed midway leaves beside it (recover_checkpoint makes it whole)."""
    path = os.path.normpath(path)
    return any(os.path.exists(c) for c in _candidates(path))


def recover_checkpoint(path):
    """Whether a complete checkpoint can be loaded from `path`, after finishing what a save
    killed midway left behind (see the comment above). Collective: rank 0 renames, every
    rank answers."""
    path = os.path.normpath(path)
    if is_main():
        _recover(path)
    barrier()
    return is_complete_checkpoint(path)


def _shared_save_id():
    """A name for this save, the same on every rank: the optimizer state files and the
    COMPLETE marker carry it, so a resume can check that they come from one save."""
    save_id = [f"{time.time_ns()}-{os.getpid()}"]
    if dist.is_initialized():
        dist.broadcast_object_list(save_id, src=0)
    return save_id[0]


def save_checkpoint(out_dir, model, tokenizer, extra=None, optimizer=None):
    """Write an HF checkpoint (config, safetensors, tokenizer, extra.json) atomically.

    Collective: all ranks call it. Rank 0 writes into `<out_dir>.tmp`; with an optimizer
    every rank adds its training-state file there too, so the weights and the optimizer
    state a resume loads always come from the same save. After an fsync the COMPLETE
    marker is written last, then the directory is renamed into place, the previous
    checkpoint moved to `<out_dir>.old` only for that instant. A kill at any point
    leaves the old or the new checkpoint complete, which recover_checkpoint restores.
    """
    out_dir = os.path.normpath(out_dir)
    extra_text = json.dumps(extra or {}, indent=2)  # fail on unserializable extras before writing
    state = full_state_dict(model)
    save_id = _shared_save_id()
    tmp = out_dir + ".tmp"
    if is_main():
        _recover(out_dir)  # a save killed earlier: its checkpoint must not be lost under .tmp
        _remove(tmp)
        os.makedirs(tmp)
        model.save_pretrained(tmp, state_dict=state)
        tokenizer.save_pretrained(tmp)
        with open(os.path.join(tmp, EXTRA_FILE), "w") as f:
            f.write(extra_text)
    barrier()
    if optimizer is not None:
        save_training_state(tmp, optimizer, extra, save_id)
    barrier()
    if is_main():
        _fsync_tree(tmp)
        _step("files written")
        with open(os.path.join(tmp, COMPLETE_MARKER), "w") as f:
            f.write(f"{save_id}\n")
            f.flush()
            os.fsync(f.fileno())
        _fsync_dir(tmp)
        _step("marked complete")
        _install(tmp, out_dir)
    barrier()


def _training_state_path(out_dir):
    rank = dist.get_rank() if dist.is_initialized() else 0
    return os.path.join(out_dir, f"training_state.rank{rank}.pt")


def save_training_state(out_dir, optimizer, extra=None, save_id=None):
    """Each rank saves its own optimizer state and RNG states to out_dir/training_state.rank<r>.pt.

    Per-rank files: under FSDP2 the optimizer state is already sharded like the
    parameters (DTensors, which pickle), so nothing is gathered and resuming needs
    the same world size (checked on load). RNGs: python, numpy, torch CPU and CUDA.
    Each file is written to a temporary name, fsynced by the rank that wrote it, and
    renamed, so it is whole or absent. save_id: that of the checkpoint it belongs to.
    """
    state = {
        "optimizer": optimizer.state_dict(),
        "world_size": dist.get_world_size() if dist.is_initialized() else 1,
        "extra": extra or {},
        "save_id": save_id,
        "rng": {"python": random.getstate(), "numpy": np.random.get_state(),
                "torch": torch.get_rng_state(),
                "cuda": torch.cuda.get_rng_state() if torch.cuda.is_available() else None},
    }
    path = _training_state_path(out_dir)
    with open(path + ".tmp", "wb") as f:
        torch.save(state, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(path + ".tmp", path)


def load_training_state(out_dir, optimizer):
    """Restore what save_training_state wrote for this rank; returns its `extra` dict.
    A file whose save_id differs from the checkpoint's COMPLETE marker was not saved
    with these weights (copied in by hand?) and is refused."""
    path = _training_state_path(out_dir)
    if not os.path.isfile(path):
        raise FileNotFoundError(f"{path}: no training state for this rank")
    # Our own file, so full unpickling (numpy RNG state). No map_location: each rank's
    # tensors (DTensor shards included) return to the device of that rank that saved them.
    state = torch.load(path, weights_only=False)
    world_size = dist.get_world_size() if dist.is_initialized() else 1
    if state["world_size"] != world_size:
        raise ValueError(f"{path}: saved with world size {state['world_size']}, now {world_size}")
    marker = os.path.join(out_dir, COMPLETE_MARKER)
    if state.get("save_id") and os.path.isfile(marker):
        with open(marker) as f:
            weights_id = f.read().strip()
        if weights_id != state["save_id"]:
            raise ValueError(f"{path}: optimizer state from save {state['save_id']}, but the "
                             f"weights in {out_dir} from save {weights_id}")
    optimizer.load_state_dict(state["optimizer"])
    rng = state["rng"]
    random.setstate(rng["python"])
    np.random.set_state(rng["numpy"])
    torch.set_rng_state(rng["torch"])
    if rng["cuda"] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(rng["cuda"])
    return state["extra"]


# ---------------------------------------------------------------- run logs


def append_metrics(path, record):
    """One JSON line per step (and per evaluation) in the run's metrics file."""
    with open(path, "a") as f:
        f.write(json.dumps(record) + "\n")


def _write_atomic(path, text):
    """Replace the file at path by one holding `text`, written aside and renamed in, so a
    kill leaves the old file or the new one, never a truncated one."""
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_parent(path)


def trim_metrics(path, last_step):
    """Keep the lines of steps <= last_step, so a resumed run does not log twice the
    steps done after its checkpoint (a fresh run, last_step 0, starts from empty).
    A last line without its newline was cut by a kill mid-append and is dropped."""
    lines = []
    if os.path.exists(path) and last_step > 0:
        with open(path) as f:
            lines = [ln for ln in f if ln.endswith("\n") and json.loads(ln)["step"] <= last_step]
    _write_atomic(path, "".join(lines))


# ---------------------------------------------------------------- GGUF


def convert_gguf(gguf_path, out_dir):
    """Turn a llama.cpp GGUF file into a checkpoint directory (config, safetensors, tokenizer).

    transformers reads GGUF through `from_pretrained(folder, gguf_file=name)`, which needs
    the optional packages `gguf` and `accelerate` (requirements-optional.txt) and
    dequantizes every tensor to fp32 as it loads. The result is written once, atomically,
    by save_checkpoint; a later call finds the COMPLETE checkpoint and returns at once, so
    everything after the conversion loads a plain directory without those packages.
    A quantized file (Q4_1, say) gives the dequantized weights, not the original ones.
    Returns out_dir.
    """
    if is_complete_checkpoint(out_dir):
        return out_dir
    if not os.path.isfile(gguf_path):
        raise FileNotFoundError(f"{gguf_path}: no such GGUF file")
    missing = []
    for name in ("gguf", "accelerate"):
        try:
            importlib.import_module(name)
        except ImportError:
            missing.append(name)
    if missing:
        raise ImportError(f"convert_gguf needs the optional package(s) {', '.join(missing)}: "
                          "pip install gguf accelerate (see requirements-optional.txt)")
    folder, name = os.path.split(os.path.abspath(gguf_path))
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # The loaded model keeps its GGUF quantizer, and save_pretrained refuses any model that
    # has one. Its weights are plain fp32 tensors by now, so they move into a fresh model
    # built from the same config minus the quantization entry.
    config = copy.deepcopy(loaded.config)
    del config.quantization_config
    model = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    model.load_state_dict(loaded.state_dict())
    model.generation_config = copy.deepcopy(loaded.generation_config)
    save_checkpoint(out_dir, model, tokenizer, extra={"converted_from": os.path.abspath(gguf_path)})
    return out_dir


if __name__ == "__main__":
    target = sys.argv[1] if len(sys.argv) > 1 else "out/tiny"
    print(f"wrote {make_tiny_checkpoint(target)}")
