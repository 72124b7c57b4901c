"""The language side of captioning: tokenizers, the causal LM, and decoding (greedy and beam search).

- :class:`WordTokenizer`: a word-level vocabulary built from the training captions (lower-cased words
  and punctuation marks; ``<pad>``, ``<eos>``, ``<unk>`` first), for the small decoder trained from
  scratch; it lives in the transfer's ``meta`` (JSON), so a saved transfer needs no tokenizer file.
- :class:`HFTokenizer`: any transformers tokenizer (``AutoTokenizer``), for a pretrained causal LM.
- :func:`scratch_lm` / :func:`pretrained_lm`: a transformers ``GPT2LMHeadModel`` built from a small
  ``GPT2Config``, or any ``AutoModelForCausalLM`` by hub name or folder.
- :func:`greedy` and :func:`beam_search` decode from a prefix of input embeddings through a
  :class:`Stepper` (the LM with its key/value cache; tests plug in toy LMs), batched and deterministic.
  Finished beams stay in the beam with their score frozen; the answer is the beam with the highest
  ``log p / length ** length_penalty`` (length counts the tokens, ``<eos>`` included).
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Any, Protocol, Sequence

import torch
from torch import nn

from xmodal.errors import ConfigError

SPECIALS = ("<pad>", "<eos>", "<unk>")
WORD = re.compile(r"[\w']+|[^\w\s]")
PUNCT_BEFORE = re.compile(r" ([,.;:!?])")


def words(text: str) -> list[str]:
    """Lower-cased words and punctuation marks: "The red circle moves left, then" -> [..., "left", ",", "then"]."""
    return WORD.findall(str(text).lower())


class WordTokenizer:
    """Word-level tokens over a fixed vocabulary (``vocab``: the specials, then the words)."""

    pad_id, eos_id, unk_id = 0, 1, 2

    def __init__(self, vocab: Sequence[str]) -> None:
        if tuple(vocab[: len(SPECIALS)]) != SPECIALS:
            raise ConfigError(f"a word vocabulary starts with {list(SPECIALS)}, got {list(vocab[:3])}")
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}

    @classmethod
    def build(cls, captions: Sequence[str]) -> "WordTokenizer":
        """The specials, then every word of ``captions``, most frequent first (ties alphabetical)."""
        counts = Counter(w for c in captions for w in words(c))
        return cls([*SPECIALS, *sorted((w for w in counts if w not in SPECIALS), key=lambda w: (-counts[w], w))])

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    def encode(self, text: str) -> list[int]:
        """Token ids of ``text`` (no ``<eos>``); unknown words are ``<unk>``."""
        return [self.index.get(w, self.unk_id) for w in words(text)]

    def decode(self, ids: Sequence[int]) -> str:
        """The text up to the first ``<eos>``: words joined by spaces, no space before punctuation."""
        out = []
        for i in ids:
            i = int(i)
            if i == self.eos_id:
                break
            if i != self.pad_id:
                out.append(self.vocab[i] if 0 <= i < len(self.vocab) else SPECIALS[2])
        return PUNCT_BEFORE.sub(r"\1", " ".join(out))


class HFTokenizer:
    """A transformers tokenizer by hub name or folder; padding is its pad token, else its end token."""

    def __init__(self, name: str) -> None:
        from transformers import AutoTokenizer

        try:
            self.tokenizer = AutoTokenizer.from_pretrained(name)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"caption lm {name!r}: cannot load its tokenizer ({exc})") from None
        if self.tokenizer.eos_token_id is None:
            raise ConfigError(f"caption lm {name!r}: its tokenizer has no end-of-text token (eos_token)")
        self.eos_id = int(self.tokenizer.eos_token_id)
        pad = self.tokenizer.pad_token_id
        self.pad_id = self.eos_id if pad is None else int(pad)

    @property
    def vocab_size(self) -> int:
        return len(self.tokenizer)

    def encode(self, text: str) -> list[int]:
        return list(self.tokenizer(str(text), add_special_tokens=False)["input_ids"])

    def decode(self, ids: Sequence[int]) -> str:
        ids = [int(i) for i in ids]
        ids = ids[: ids.index(self.eos_id)] if self.eos_id in ids else ids
        return self.tokenizer.decode(ids, skip_special_tokens=True).strip()


def scratch_lm(vocab_size: int, positions: int, width: int, layers: int, heads: int, dropout: float) -> nn.Module:
    """A randomly initialised GPT-2-architecture causal LM (transformers ``GPT2LMHeadModel``)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    if width % heads:
        raise ConfigError(f"caption width {width} is not a multiple of heads {heads}")
    cfg = GPT2Config(vocab_size=vocab_size, n_positions=positions, n_embd=width, n_layer=layers, n_head=heads,
                     resid_pdrop=dropout, embd_pdrop=dropout, attn_pdrop=dropout, bos_token_id=WordTokenizer.eos_id,
                     eos_token_id=WordTokenizer.eos_id, pad_token_id=WordTokenizer.pad_id)
    return GPT2LMHeadModel(cfg)


def pretrained_lm(name: str) -> nn.Module:
    """Any transformers causal LM by hub name or folder (``AutoModelForCausalLM``)."""
    from transformers import AutoModelForCausalLM

    try:
        return AutoModelForCausalLM.from_pretrained(name)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"caption lm {name!r}: cannot load it as a causal LM ({exc})") from None


def embed_tokens(lm: nn.Module, ids: torch.Tensor) -> torch.Tensor:
    """The LM's input embeddings of token ids."""
    return lm.get_input_embeddings()(ids)


class Stepper(Protocol):
    """What the searches need of a language model over a batch of ``N`` running sequences."""

    def start(self, prefix: torch.Tensor) -> torch.Tensor: ...  # prefix [N, P, D] -> first-token log-probs [N, V]

    def step(self, tokens: torch.Tensor) -> torch.Tensor: ...  # last tokens [N] -> next log-probs [N, V]

    def reorder(self, index: torch.Tensor) -> None: ...  # keep (or repeat) the sequences ``index`` [N']


class LMStepper:
    """A transformers causal LM fed input embeddings, its key/value cache kept between steps."""

    def __init__(self, lm: nn.Module) -> None:
        self.lm, self.cache = lm, None

    def _run(self, embeds: torch.Tensor) -> torch.Tensor:
        out = self.lm(inputs_embeds=embeds, cache=self.cache, use_cache=True)
        self.cache = out.cache
        return out.logits[:, -1].float().log_softmax(-1)

    def start(self, prefix: torch.Tensor) -> torch.Tensor:
        self.cache = None
        return self._run(prefix)

    def step(self, tokens: torch.Tensor) -> torch.Tensor:
        return self._run(embed_tokens(self.lm, tokens)[:, None])

    def reorder(self, index: torch.Tensor) -> None:
        self.cache.reorder_cache(index)


def _pad_to(ids: torch.Tensor, steps: int, pad: int) -> torch.Tensor:
    return torch.cat([ids, ids.new_full((len(ids), steps - ids.shape[1]), pad)], 1)


def _no_pad(logp: torch.Tensor, eos: int, pad: int) -> torch.Tensor:
    """Log-probs with padding ruled out as a word (unless padding is the end token, as in GPT-2)."""
    return logp if pad == eos else logp.index_fill(-1, torch.tensor([pad], device=logp.device), float("-inf"))


@torch.no_grad()
def greedy(stepper: Stepper, prefix: torch.Tensor, steps: int, eos: int, pad: int) -> torch.Tensor:
    """``[B, steps]`` token ids: the most likely token at every step until ``eos`` (kept), then ``pad``."""
    logp = _no_pad(stepper.start(prefix), eos, pad)
    done = torch.zeros(len(prefix), dtype=torch.bool, device=logp.device)
    out = []
    for t in range(steps):
        tok = logp.argmax(-1).masked_fill(done, pad)
        out.append(tok)
        done = done | (tok == eos)
        if bool(done.all()) or t == steps - 1:
            break
        logp = _no_pad(stepper.step(tok), eos, pad)
    return _pad_to(torch.stack(out, 1), steps, pad)


@torch.no_grad()
def beam_search(stepper: Stepper, prefix: torch.Tensor, steps: int, eos: int, pad: int, beams: int,
                length_penalty: float = 1.0) -> torch.Tensor:
    """``[B, steps]`` token ids: the best of ``beams`` hypotheses per row (see the module's docstring)."""
    logp = _no_pad(stepper.start(prefix), eos, pad)
    b, v = logp.shape
    k = min(beams, v)
    score, tok = logp.topk(k, -1)  # [B, K]
    stepper.reorder(torch.arange(b, device=logp.device).repeat_interleave(k))
    seqs, score = tok.reshape(-1, 1), score.reshape(-1)
    done, length = seqs[:, 0] == eos, torch.ones(b * k, device=logp.device)
    frozen = torch.full((v,), float("-inf"), device=logp.device)
    frozen[pad] = 0.0  # a finished beam continues only with padding, its score unchanged
    rows = torch.arange(b, device=logp.device)[:, None] * k
    for _ in range(1, steps):
        if bool(done.all()):
            break
        logp = torch.where(done[:, None], frozen, _no_pad(stepper.step(seqs[:, -1]), eos, pad))
        best, idx = (score[:, None] + logp).view(b, k * v).topk(k, -1)
        src = (rows + idx // v).reshape(-1)
        tok = (idx % v).reshape(-1)
        seqs, score = torch.cat([seqs[src], tok[:, None]], 1), best.reshape(-1)
        length = length[src] + (~done[src]).float()
        done = done[src] | (tok == eos)
        stepper.reorder(src)
    pick = (score / length ** length_penalty).view(b, k).argmax(-1) + rows[:, 0]
    return _pad_to(seqs[pick], steps, pad)


def decode_batch(tokenizer: Any, ids: torch.Tensor) -> list[str]:
    """Texts of ``[N, L]`` token ids (each up to its first end token)."""
    return [tokenizer.decode(row.tolist()) for row in ids.cpu()]
