"""Video captioning: the ``caption`` task (a clip -> a sentence), a prefix decoder after ClipCap.

ClipCap (Mokady et al., "ClipCap: CLIP Prefix for Image Captioning", 2021) maps a CLIP embedding
through a mapping network to a *prefix* of ``prefix_length`` input embeddings of a causal language
model and trains on teacher-forced cross-entropy of the caption tokens (and the end token) after the
prefix; the LM is fine-tuned ("MLP + GPT-2 tuning") or kept frozen ("transformer mapper"). Here the
mapping network reads the strategy's frame features ``[B, T, F]`` (clips sampled in ``num_frames``
equal segments, as captions tell the order of events) and its form follows the strategy's head: a
linear map of the normalised mean frame (``linear_probe``), ClipCap's MLP over the mean frame
(``head.kind=mean``), else every frame projected into the LM's input space with a learned position
(the prefix is the frame sequence, so the decoder's attention picks the frames each word needs, as
visual tokens are fed to an LM in LLaVA: Liu et al., NeurIPS 2023). ClipCap's transformer mapper
(``mapping=transformer``: ``prefix_length`` learned queries read the frames through a transformer) is
an option: on small data it generalised worse than the plain projection of the frames.
The LM (``tasks/decoder.py``) is any transformers causal LM by hub name or folder (``lm``,
e.g. ``gpt2``) or, by default and offline, a small GPT-2-architecture decoder trained from scratch over
a word vocabulary of the training captions. Decoding is greedy (``beams=1``) or beam search.

The zero-shot baseline (the ``zero_shot`` strategy: nothing trains) is nearest-neighbour caption
retrieval, not generation: each clip's mean frame embedding in the shared space picks the closest of
up to ``retrieval_pool`` distinct training captions (by the model's text embeddings) and answers it.

Metrics (MSR-VTT / MSVD protocol): BLEU-4, BLEU-1, ROUGE-L and CIDEr-D of the generated captions
against every caption of the same clip (``clip_column``); with ``keywords`` (e.g. colours and shapes),
``keywords_exact``: the fraction of rows whose caption names exactly the keywords a reference names,
and ``keywords_recall`` / ``keywords_precision``: the fractions naming every keyword of a reference /
none that a reference lacks; for a decoder, ``log_likelihood``: the mean per-token log-probability of the
references (teacher-forced). Manifest rows: ``path, caption``.
"""

from __future__ import annotations

import dataclasses
import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Sequence

import torch
from torch import nn

from xmodal.errors import ConfigError
from xmodal.tasks.base import TASKS, Groups, SharedSpace, column, same_text
from xmodal.tasks.decoder import (HFTokenizer, LMStepper, WordTokenizer, beam_search, decode_batch, embed_tokens,
                                  greedy, pretrained_lm, scratch_lm, words)
from xmodal.tasks.heads import HeadConfig, VideoHead

MAPPINGS = ("frames", "transformer", "mlp", "linear")


@dataclass
class CaptionConfig:
    caption_column: str = "caption"  # manifest column with each clip's caption
    clip_column: str = "path"  # rows with equal values here show one clip: each row's caption is scored against
    # all their captions (several references per clip, as MSR-VTT); "" = every row stands alone
    lm: str = ""  # causal LM: "" = a small GPT-2-architecture decoder trained from scratch over a word vocabulary
    # of the training captions (kept in the transfer's meta); else a transformers hub name or folder, e.g. "gpt2"
    train_lm: bool = False  # fine-tune the pretrained ``lm`` (ClipCap's "GPT-2 tuning") or keep it frozen; the
    # scratch decoder always trains
    mapping: str = ""  # mapping network: "frames" (each frame projected into the LM's input space, position-
    # tagged: the prefix is ``prefix_length`` learned embeddings, then the frames), "transformer" (ClipCap's mapper: learned queries and the frames
    # through a transformer; the queries' outputs are the prefix), "mlp" (ClipCap's MLP over the mean frame),
    # "linear" (one linear map of the normalised mean frame); "" = by the strategy's head kind: linear ->
    # "linear" (linear_probe), mean -> "mlp", any other -> "frames"
    prefix_length: int = 8  # prefix embeddings the mapping makes (for "frames": learned ones, before the frames)
    mapper_layers: int = 2  # transformer layers of the "transformer" mapping
    width: int = 64  # width of the mapping network and of the scratch decoder
    layers: int = 2  # scratch decoder layers
    heads: int = 2  # attention heads of the mapping network and of the scratch decoder
    dropout: float = 0.1  # dropout of the scratch decoder
    max_length: int = 40  # most caption tokens: longer training captions are cut (with a warning that counts
    # them), and generation stops after this many tokens and the end token
    beams: int = 3  # 1 = greedy decoding, > 1 = beam search with this many beams
    length_penalty: float = 1.0  # beam search ranks finished captions by log p / length ** length_penalty
    num_frames: int = 16  # frames per clip, the middle one of each of as many equal segments
    keywords: tuple[str, ...] = ()  # words checked caption by caption (keywords_exact / _recall / _precision),
    # e.g. the colours and shapes of a world; () = none
    retrieval_pool: int = 1000  # distinct training captions the zero-shot retrieval baseline chooses from


def check_config(cfg: CaptionConfig) -> None:
    if cfg.mapping and cfg.mapping not in MAPPINGS:
        raise ConfigError(f"caption mapping {cfg.mapping!r} is not '' or one of {list(MAPPINGS)}")
    for name in ("prefix_length", "max_length", "beams", "retrieval_pool", "num_frames"):
        if dataclasses.asdict(cfg)[name] < 1:
            raise ConfigError(f"caption {name} must be >= 1, got {dataclasses.asdict(cfg)[name]}")


@lru_cache(maxsize=4)
def _hf_tokenizer(name: str) -> HFTokenizer:
    return HFTokenizer(name)


def tokenizer_for(meta: dict[str, Any], cfg: CaptionConfig) -> Any:
    """The word tokenizer kept in ``meta`` (scratch decoder) or the tokenizer of ``cfg.lm``."""
    return _hf_tokenizer(cfg.lm) if cfg.lm else WordTokenizer(meta["vocab"])


def encode_captions(tokenizer: Any, captions: Sequence[str], max_length: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """``(tokens [N, max_length + 1], lengths [N], cut)``: each caption's ids cut to ``max_length``, then the end
    token, padded; ``lengths`` count the end token; ``cut`` is how many captions were longer."""
    ids = [tokenizer.encode(c) for c in captions]
    tokens = torch.full((len(ids), max_length + 1), tokenizer.pad_id, dtype=torch.long)
    lengths = torch.zeros(len(ids), dtype=torch.long)
    for i, row in enumerate(ids):
        row = [*row[:max_length], tokenizer.eos_id]
        tokens[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        lengths[i] = len(row)
    return tokens, lengths, sum(len(row) > max_length for row in ids)


def mapping_form(cfg: CaptionConfig, head_cfg: HeadConfig) -> str:
    """The mapping network's form: ``cfg.mapping``, else by the strategy's head kind."""
    return cfg.mapping or {"linear": "linear", "mean": "mlp"}.get(head_cfg.kind, "frames")


class PrefixMapper(nn.Module):
    """Frame features ``[B, T, in_dim]`` -> a prefix ``[B, P, out_dim]`` of LM input embeddings (``P`` =
    ``prefix_length`` + T for ``frames``, else ``prefix_length``)."""

    def __init__(self, in_dim: int, out_dim: int, cfg: CaptionConfig, form: str, max_frames: int) -> None:
        super().__init__()
        self.form, self.length, self.out_dim = form, cfg.prefix_length, out_dim
        p, w = cfg.prefix_length, cfg.width
        if form == "linear":
            self.net = nn.Sequential(nn.LayerNorm(in_dim, elementwise_affine=False), nn.Linear(in_dim, p * out_dim))
            return
        if form == "mlp":
            hidden = max(p * out_dim // 2, 1)
            self.net = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, hidden), nn.Tanh(), nn.Linear(hidden, p * out_dim))
            return
        self.frame = nn.Sequential(nn.LayerNorm(in_dim), nn.Linear(in_dim, w))
        self.pos = nn.Parameter(torch.randn(1, max_frames, w) * 0.02)
        self.out = nn.Sequential(nn.LayerNorm(w), nn.Linear(w, out_dim))
        self.queries = nn.Parameter(torch.randn(1, p, w) * 0.02)
        if form == "transformer":
            if w % cfg.heads or cfg.mapper_layers < 1:
                raise ConfigError(f"caption transformer mapping: width {w} must be a multiple of heads {cfg.heads} "
                                  f"and mapper_layers ({cfg.mapper_layers}) >= 1")
            layer = nn.TransformerEncoderLayer(w, cfg.heads, 2 * w, 0.0, activation="gelu", batch_first=True, norm_first=True)
            self.encoder = nn.TransformerEncoder(layer, cfg.mapper_layers, enable_nested_tensor=False)

    def forward(self, seq: torch.Tensor) -> torch.Tensor:
        if self.form in ("linear", "mlp"):
            return self.net(seq.mean(1)).view(len(seq), self.length, self.out_dim)
        if seq.shape[1] > self.pos.shape[1]:
            raise ConfigError(f"clip has {seq.shape[1]} frames; the caption head was built for {self.pos.shape[1]}")
        frames = self.frame(seq) + self.pos[:, : seq.shape[1]]
        x = torch.cat([self.queries.expand(len(seq), -1, -1), frames], 1)
        return self.out(x if self.form == "frames" else self.encoder(x)[:, : self.length])


class CaptionHead(VideoHead):
    """The prefix decoder: a mapping network into a causal LM (see the module's docstring)."""

    def __init__(self, seq_width: int, meta: dict[str, Any], cfg: CaptionConfig, form: str) -> None:
        super().__init__()
        self.cfg, self.tokenizer = cfg, tokenizer_for(meta, cfg)
        if cfg.lm:
            self.lm = pretrained_lm(cfg.lm)
            self.lm.requires_grad_(cfg.train_lm)
        else:
            prefix = cfg.prefix_length + (meta["num_frames"] if form == "frames" else 0)
            self.lm = scratch_lm(self.tokenizer.vocab_size, prefix + cfg.max_length + 1, cfg.width,
                                 cfg.layers, cfg.heads, cfg.dropout)
        dim = self.lm.get_input_embeddings().embedding_dim
        self.mapper = PrefixMapper(seq_width, dim, cfg, form, meta["num_frames"])

    def video(self, seq: torch.Tensor) -> torch.Tensor:
        """The prefix ``[B, P, D]`` (the LM's input embedding space)."""
        return self.mapper(seq)

    def token_nll(self, seq: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Teacher-forced negative log-likelihood ``[B, n]`` of each caption token and the end token after the
        prefix, and the mask ``[B, n]`` of the real (not padding) positions."""
        n = int(lengths.max())
        tokens = tokens[:, :n]
        prefix = self.video(seq)
        x = torch.cat([prefix, embed_tokens(self.lm, tokens[:, :-1])], 1)
        logits = self.lm(inputs_embeds=x, use_cache=False).logits[:, prefix.shape[1] - 1:]
        nll = nn.functional.cross_entropy(logits.float().transpose(1, 2), tokens, reduction="none")
        return nll, torch.arange(n, device=tokens.device)[None] < lengths[:, None]

    def loss(self, seq: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """The mean cross-entropy over every real token of the batch."""
        nll, mask = self.token_nll(seq, tokens, lengths)
        return nll[mask].mean()

    def log_likelihood(self, seq: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        """``[B]`` mean log-probability per token of each reference caption (end token included)."""
        nll, mask = self.token_nll(seq, tokens, lengths)
        return -(nll * mask).sum(1) / mask.sum(1)

    def generate(self, seq: torch.Tensor) -> torch.Tensor:
        """``[B, max_length + 1]`` token ids (the end token kept, then padding)."""
        tok, steps = self.tokenizer, self.cfg.max_length + 1
        prefix = self.video(seq)
        if self.cfg.beams == 1:
            return greedy(LMStepper(self.lm), prefix, steps, tok.eos_id, tok.pad_id)
        return beam_search(LMStepper(self.lm), prefix, steps, tok.eos_id, tok.pad_id, self.cfg.beams,
                           self.cfg.length_penalty)

    def outputs(self, seq: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """The generated ``tokens`` and the references' ``log_likelihood`` (see ``CaptionTask.predict``)."""
        return {"tokens": self.generate(seq), "log_likelihood": self.log_likelihood(seq, batch["tokens"], batch["lengths"])}


class RetrievalCaptioner(VideoHead):
    """Zero-shot baseline, nearest-neighbour caption retrieval: each clip answers the training caption
    (of ``meta["pool"]``) whose text embedding is closest to the clip's mean frame embedding in the
    shared space. Its output is that caption's token ids; nothing trains and nothing is generated."""

    def __init__(self, model: Any, meta: dict[str, Any], cfg: CaptionConfig) -> None:
        super().__init__()
        self.cfg, self.tokenizer = cfg, tokenizer_for(meta, cfg)
        self.register_buffer("texts", model.encode_texts(meta["pool"]).detach().float().cpu().clone())
        self.register_buffer("ids", encode_captions(self.tokenizer, meta["pool"], cfg.max_length)[0])
        self._model = [model]  # not a submodule: the transferred model owns this head

    def video(self, seq: torch.Tensor) -> torch.Tensor:
        """The clip embedding ``[B, D]``: the normalised mean of the frame embeddings."""
        frames = self._model[0].frames_in_space(seq)
        if frames is None:
            raise ConfigError("caption: the zero-shot retrieval baseline needs frame embeddings in the shared space")
        return nn.functional.normalize(frames.mean(1), dim=-1)

    def generate(self, seq: torch.Tensor) -> torch.Tensor:
        """``[B, max_length + 1]`` token ids of the nearest training caption."""
        return self.ids[(self.video(seq) @ self.texts.t()).argmax(1)]

    def outputs(self, seq: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"tokens": self.generate(seq)}


def keyword_metrics(texts: Sequence[str], references: Sequence[Sequence[str]], keywords: Sequence[str]) -> dict[str, float]:
    """Per row, the keywords a caption names against those each of its references names: ``keywords_exact``
    (the same set as a reference), ``keywords_recall`` (all of a reference's), ``keywords_precision``
    (none a reference lacks), as fractions of rows."""
    keys = {w.lower() for w in keywords}
    hits = {"exact": 0, "recall": 0, "precision": 0}
    for text, refs in zip(texts, references):
        named = keys & set(words(text))
        wanted = [keys & set(words(r)) for r in refs]
        hits["exact"] += any(named == w for w in wanted)
        hits["recall"] += any(w <= named for w in wanted)
        hits["precision"] += any(named <= w for w in wanted)
    return {f"keywords_{k}": v / max(len(texts), 1) for k, v in hits.items()}


class CaptionTask:
    """Registered as ``caption``."""

    config_cls = CaptionConfig
    paper = "ClipCap prefix captioning (Mokady et al., 2021); MSR-VTT metrics BLEU-4, ROUGE-L, CIDEr-D"
    columns = ("caption",)
    monitor = "val_CIDEr-D"  # (val_log_likelihood peaks early, while the decoder still ignores the video)
    report = ("CIDEr-D", "BLEU-4", "ROUGE-L", "keywords_exact")
    baselines = ()  # zero_shot is the training-free baseline (nearest-neighbour caption retrieval)

    def sampling(self, cfg: CaptionConfig, spec: Any) -> Any:
        """``num_frames`` equal segments, the middle frame of each (the order of events is kept)."""
        return dataclasses.replace(spec, num_frames=cfg.num_frames, sampling="segment", train=False)

    def meta(self, rows: Sequence[dict[str, Any]], cfg: CaptionConfig) -> dict[str, Any]:
        """The frames per clip, the word vocabulary (scratch decoder) and the retrieval baseline's pool."""
        check_config(cfg)
        captions = [str(c) for c in column(rows, cfg.caption_column, "train rows")]
        out: dict[str, Any] = {"num_frames": cfg.num_frames, "pool": list(dict.fromkeys(captions))[: cfg.retrieval_pool]}
        if not cfg.lm:
            out["vocab"] = WordTokenizer.build(captions).vocab
        return out

    def targets(self, rows: Sequence[dict[str, Any]], meta: dict[str, Any], cfg: CaptionConfig, where: str) -> dict[str, Any]:
        """Captions, their token ids ``[N, max_length + 1]`` and lengths, and each row's references."""
        captions = [str(c) for c in column(rows, cfg.caption_column, where)]
        tokens, lengths, cut = encode_captions(tokenizer_for(meta, cfg), captions, cfg.max_length)
        if cut:
            warnings.warn(f"{where}: {cut} of {len(captions)} captions have more than max_length={cfg.max_length} "
                          f"tokens; they are cut for training (metrics use them whole)", stacklevel=2)
        clips = [str(v) for v in column(rows, cfg.clip_column, where)] if cfg.clip_column else list(range(len(rows)))
        by_clip: dict[Any, list[str]] = {}
        for clip, caption in zip(clips, captions):
            by_clip.setdefault(clip, []).append(caption)
        return {"captions": captions, "references": [by_clip[c] for c in clips], "tokens": tokens, "lengths": lengths}

    def batch_groups(self, targets: dict[str, Any], cfg: Any) -> Groups | None:
        return None  # batches mix any rows

    def head(self, model: Any, meta: dict[str, Any], cfg: CaptionConfig, head_cfg: HeadConfig, trainable: bool) -> nn.Module:
        check_config(cfg)
        if not trainable:
            return RetrievalCaptioner(model, meta, cfg)
        return CaptionHead(model.seq_width, meta, cfg, mapping_form(cfg, head_cfg))

    def loss(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        return {"loss": model.head.loss(seq, batch["tokens"], batch["lengths"])}

    def predict(self, model: Any, seq: torch.Tensor, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """``tokens``: ``[B, max_length + 1]`` ids of each row's generated caption (long, padded), and for a
        decoder (not the retrieval baseline) ``log_likelihood``: ``[B]`` the reference's per-token log-prob."""
        return model.head.outputs(seq, batch)

    def metrics(self, model: Any, outputs: dict[str, torch.Tensor], batch: dict[str, Any]) -> dict[str, Any]:
        from xmodal.eval.caption_metrics import caption_metrics

        texts = decode_batch(model.head.tokenizer, outputs["tokens"])
        out: dict[str, Any] = dict(caption_metrics(texts, [list(r) for r in batch["references"]]))
        if "log_likelihood" in outputs:
            out["log_likelihood"] = float(outputs["log_likelihood"].mean())
        if model.task_config.keywords:
            out.update(keyword_metrics(texts, batch["references"], model.task_config.keywords))
        out["samples"] = [{"caption": t, "reference": r} for t, r in zip(texts[:8], batch["captions"][:8])]
        return out

    def space(self, model: Any) -> SharedSpace | str:
        """The retrieval baseline's clip embedding; a trained caption decoder has none."""
        if isinstance(model.head, RetrievalCaptioner):
            return SharedSpace(model.head.video, same_text)
        return "its caption head is a decoder that writes words, with no clip embedding that texts share"


TASKS.register("caption", CaptionTask())
