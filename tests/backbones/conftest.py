"""Tiny CLIP / MetaCLIP 2 / SigLIP folders, saved exactly like a transformers hub snapshot.

Each folder holds ``config.json``, ``model.safetensors``, a tokenizer and an image processor, so
``build(HFClipConfig(name_or_path=folder))`` takes the same code path as ``openai/clip-vit-base-patch32``.
Everything is built offline: CLIP and MetaCLIP 2 get a CLIPTokenizer on a hand-written BPE vocabulary;
SigLIP, Chinese-CLIP and AltCLIP a BertTokenizer on a hand-written WordPiece vocabulary.
"""

from __future__ import annotations

import math
import os
import string
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import pytest
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")

IMAGE_SIZE = 30  # pixels; patches of 10 -> 3x3 tokens
MAX_TOKENS = 16  # text max_position_embeddings
WIDTH = 32  # hidden size of both towers
LAYERS = 2
PROJECTION = 16  # CLIP shared-space size
CAPTIONS = ["a photo of a cat", "a dog", "a photo of a red dog on a mat"]
LOGITS = {  # logit_scale, logit_bias written into each tiny model (None: the model has no bias)
    "clip": (2.0, None),
    "metaclip_2": (1.5, None),
    "siglip": (math.log(10.0), -10.0),
    "chinese_clip": (2.5, None),
    "altclip": (3.0, None),
}


def _tower(**extra: Any) -> dict[str, Any]:
    return dict(hidden_size=WIDTH, num_hidden_layers=LAYERS, num_attention_heads=2, intermediate_size=37, **extra)


def _config(config_cls: type, text: dict[str, Any], vision: dict[str, Any], **extra: Any) -> Any:
    """A dual-encoder config from sub-config objects (dicts would first build noisy defaults)."""
    subs = config_cls.sub_configs
    return config_cls(text_config=subs["text_config"](**text), vision_config=subs["vision_config"](**vision), **extra)


def clip_tokenizer() -> Any:
    """A real CLIPTokenizer on a 26-letter byte-pair vocabulary (words spelt letter by letter)."""
    from transformers import CLIPTokenizer

    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for suffix in ("", "</w>"):
        for c in string.ascii_lowercase:
            vocab[c + suffix] = len(vocab)
    merges = [("c", "a"), ("ca", "t</w>"), ("d", "o"), ("do", "g</w>"), ("p", "h"), ("ph", "o"), ("pho", "t"), ("phot", "o</w>")]
    for pair in merges:
        vocab["".join(pair)] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=MAX_TOKENS)


def bert_tokenizer() -> Any:
    """A BertTokenizer on a tiny WordPiece vocabulary (stands in for SigLIP's SentencePiece one)."""
    from transformers import BertTokenizer

    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "a", "photo", "of", "cat", "dog", "red", "on", "mat", "##s"]
    return BertTokenizer(vocab={w: i for i, w in enumerate(words)}, model_max_length=MAX_TOKENS)


def _clip_like(kind: str, tok: Any) -> torch.nn.Module:
    """CLIP / MetaCLIP 2 (BPE tokenizer, EOS pooling) or Chinese-CLIP / AltCLIP (WordPiece, first token)."""
    import transformers as tf

    config_cls, model_cls = {
        "clip": (tf.CLIPConfig, tf.CLIPModel),
        "metaclip_2": (tf.MetaClip2Config, tf.MetaClip2Model),
        "chinese_clip": (tf.ChineseCLIPConfig, tf.ChineseCLIPModel),
        "altclip": (tf.AltCLIPConfig, tf.AltCLIPModel),
    }[kind]
    if kind in ("clip", "metaclip_2"):
        ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    else:  # BERT / XLM-R text encoders; RoBERTa positions start after the padding id
        ids = dict(pad_token_id=tok.pad_token_id, max_position_embeddings=MAX_TOKENS + 2)
    if kind == "altclip":
        ids["project_dim"] = WIDTH
    text = _tower(vocab_size=len(tok), **{"max_position_embeddings": MAX_TOKENS, **ids})
    vision = _tower(image_size=IMAGE_SIZE, patch_size=10)
    return model_cls(_config(config_cls, text, vision, projection_dim=PROJECTION))


def _siglip(tok: Any) -> torch.nn.Module:
    from transformers import SiglipConfig, SiglipModel

    text = _tower(vocab_size=len(tok), max_position_embeddings=MAX_TOKENS, pad_token_id=tok.pad_token_id,
                  bos_token_id=tok.cls_token_id, eos_token_id=tok.sep_token_id)
    vision = _tower(image_size=IMAGE_SIZE, patch_size=10)
    return SiglipModel(_config(SiglipConfig, text, vision))


def make_hf_folder(kind: str, out: Path, seed: int = 0) -> Path:
    """Save a tiny random ``kind`` dual encoder with tokenizer and image processor to ``out``."""
    from transformers import CLIPImageProcessorPil, SiglipImageProcessorPil

    torch.manual_seed(seed)
    tok = clip_tokenizer() if kind in ("clip", "metaclip_2") else bert_tokenizer()
    if kind == "siglip":
        model = _siglip(tok)
        processor = SiglipImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    else:
        model = _clip_like(kind, tok)
        processor = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE},
                                          crop_size={"height": IMAGE_SIZE, "width": IMAGE_SIZE})
    scale, bias = LOGITS[kind]
    with torch.no_grad():
        model.logit_scale.fill_(scale)
        if bias is not None:
            model.logit_bias.fill_(bias)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    processor.save_pretrained(out)
    return out


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny matmuls are fastest on one thread (two threads on a busy 2-core box: ~100x slower)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny() -> SimpleNamespace:
    """The sizes of the tiny models (tests compare shapes and values against them)."""
    return SimpleNamespace(image_size=IMAGE_SIZE, max_tokens=MAX_TOKENS, width=WIDTH, layers=LAYERS,
                           projection=PROJECTION, captions=list(CAPTIONS), logits=dict(LOGITS))


@pytest.fixture(scope="session")
def hf_folders(tmp_path_factory) -> dict[str, Path]:
    """kind -> folder of a tiny saved transformers model, for every kind in LOGITS."""
    return {kind: make_hf_folder(kind, tmp_path_factory.mktemp(f"tiny-{kind}")) for kind in LOGITS}


@pytest.fixture(params=sorted(LOGITS))
def hf_kind(request, hf_folders) -> tuple[str, Path]:
    """(kind, folder), parametrised over every tiny model."""
    return request.param, hf_folders[request.param]


@pytest.fixture
def pixels() -> torch.Tensor:
    """A batch of 3 random images ``[3, 3, 30, 30]``."""
    return torch.randn(3, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(1))


@pytest.fixture
def tokenize() -> Callable[[Any, list[str]], dict[str, torch.Tensor]]:
    """``tokenize(model, texts)``: a text batch made the way the model's TextSpec says."""

    def run(model: Any, texts: list[str]) -> dict[str, torch.Tensor]:
        spec = model.spec("text")
        enc = spec.tokenizer(texts, padding=spec.padding, truncation=True, max_length=spec.max_length, return_tensors="pt")
        return dict(enc)

    return run
