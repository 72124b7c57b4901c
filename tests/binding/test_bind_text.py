"""Binding audio to the text tower (CLAP-style): a trained text projection and temperature that save and
reload, captions repeated across rows as positives, and collapse diagnostics. The collapse case is few
clips per class with repeated captions ("the sound of dog" x4): few optimizer steps, where the old setup
(pairs-only positives, fixed temperature, no text head, no augmentation, BatchNorm's lagging running
statistics) maps every clip to nearly one point in evaluation mode and the new default does not."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import xmodal
from xmodal.alignment.train import AlignConfig
from xmodal.binding.train import BindConfig, bind
from xmodal.engine.diagnostics import COLLAPSE_COSINE, mean_pairwise_cosine
from xmodal.engine.fit import FitConfig
from xmodal.errors import ConfigError
from xmodal.modalities.audio import write_wav
from xmodal.tasks.embed import embed
from xmodal.tasks.prompts import PROMPTS

SPEC = {"sample_rate": 8000, "n_mels": 16, "n_fft": 128, "hop_length": 64, "max_seconds": 0.5}
SOUNDS = {"dog": 300.0, "bell": 900.0, "bird": 2500.0}
OLD = dict(anchor_head="frozen", learn_temperature=False, augment=False, caption_prompts=False, balance=False,
           precise_bn=False)  # the setup before text-anchored binding was made robust


@pytest.fixture(scope="module")
def sounds(tmp_path_factory):
    """Three classes of short tone bursts, four training and two test clips each, captioned 'the sound of <class>'."""
    root = tmp_path_factory.mktemp("sounds")
    rng = np.random.default_rng(0)
    rows = []
    for name, freq in SOUNDS.items():
        for k in range(6):
            t = np.arange(4000) / 8000
            start = rng.uniform(0, 0.25)
            burst = ((t > start) & (t < start + 0.2)) * 0.5 * np.sin(2 * np.pi * freq * (1 + 0.05 * rng.normal()) * t)
            write_wav(root / f"{name}{k}.wav", burst + 0.05 * rng.normal(size=t.size), 8000)
            rows.append({"audio": f"{name}{k}.wav", "text": f"the sound of {name}", "label": name,
                         "split": "test" if k >= 4 else "train"})
    return root, [r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "test"]


def _bind(model, rows, root, epochs=8, repeat_positives=True, out=None, **kw):
    fit = FitConfig(epochs=epochs, lr=3e-3, progress=False, verbose=False)
    cfg = BindConfig(encoder_config={"width": 8, "depth": 2}, spec=SPEC, anchor="text", columns=("audio", "text"),
                     align=AlignConfig(label_column="", repeat_positives=repeat_positives, batch_size=128, fit=fit), **kw)
    torch.manual_seed(0)
    return bind(model, rows, cfg, root=root, out=out)


def _scored(model, test, root):
    model.eval()
    vectors = embed(model, "audio", [r["audio"] for r in test], root=root, progress=False).vectors
    zs = xmodal.zeroshot(model, [r["audio"] for r in test], [r["label"] for r in test], modality="audio", root=root,
                         progress=False)
    return zs, mean_pairwise_cosine(vectors)


def test_text_bind_trains_a_text_head_and_a_temperature_that_reload(tiny_lit, sounds, tmp_path) -> None:
    root, train, test = sounds
    text_before = tiny_lit.encode("text", xmodal_text(tiny_lit, ["the sound of dog"]))
    res = _bind(tiny_lit, train, root, epochs=3, out=tmp_path / "run")
    model = res.model.eval()
    assert "text" in model.projections and model.config.projections == ["text"]
    assert model.projections["text"].linear.weight.abs().sum() > 0  # the text head trained ...
    assert torch.allclose(tiny_lit.encode("text", xmodal_text(tiny_lit, ["the sound of dog"])), text_before)  # ... not the base's
    assert model.logit_scale.item() != tiny_lit.logit_scale.item()
    # the locked trunk saw each caption, and each caption written into an audio prompt, once
    assert 3 < res.cached["text"] <= 3 * (1 + len(PROMPTS.get("audio")))
    record = res.history.epochs[-1]
    assert {"cos_audio", "rank_audio", "cos_text", "rank_text", "eval_cos_audio", "eval_rank_audio"} <= set(record)
    assert set(res.spread) == {"eval_cos_audio", "eval_rank_audio", "eval_cos_text", "eval_rank_text"}
    again = xmodal.load(tmp_path / "run" / "model").eval()
    batch = xmodal_text(model, ["the sound of bird", "a recording of dog"])
    assert torch.allclose(again.encode("text", batch), model.encode("text", batch), atol=1e-5)
    assert not torch.allclose(again.encode("text", batch), tiny_lit.encode("text", batch), atol=1e-3)
    assert again.logit_scale.item() == pytest.approx(model.logit_scale.item())
    assert (tmp_path / "run" / "features").is_dir()  # the log-mels decoded once, kept for the next epochs and runs


def test_anchor_heads_train_on_text_by_default_and_once(tiny_lit, sounds) -> None:
    from xmodal.backbones.bound import add_tower
    from xmodal.binding.train import anchor_projection

    root, train, _ = sounds
    assert anchor_projection(BindConfig(anchor="text"), tiny_lit) == "text"
    assert anchor_projection(BindConfig(anchor="image"), tiny_lit) is None  # an anchor of files stays as it is
    assert anchor_projection(BindConfig(anchor="image", anchor_head="train"), tiny_lit) == "image"
    assert anchor_projection(BindConfig(anchor="text", anchor_head="frozen"), tiny_lit) is None
    first = _bind(tiny_lit, train, root, epochs=1).model
    assert anchor_projection(BindConfig(anchor="text"), first) is None  # a later bind keeps the first one's head
    with pytest.raises(ConfigError, match="already has a projection"):
        add_tower(first, "series", torch.nn.Linear(2, 2), None, {}, project="text")
    with pytest.raises(ConfigError, match="anchor_head 'yes'"):
        _bind(first, train, root, epochs=1, anchor_head="yes")


def test_old_setup_collapses_where_the_new_default_does_not(sounds) -> None:
    root, train, test = sounds
    old = _bind(xmodal.load("lit"), train, root, repeat_positives=False, **OLD)
    old_zs, old_cos = _scored(old.model, test, root)
    assert old_cos > COLLAPSE_COSINE and len(set(old_zs.predictions)) == 1  # every test clip: one class
    assert len(old.warnings) == 1 and "audio embeddings collapsed in evaluation mode" in old.warnings[0]

    new = _bind(xmodal.load("lit"), train, root)
    new_zs, new_cos = _scored(new.model, test, root)
    assert new.warnings == [] and new_cos < COLLAPSE_COSINE
    assert len(set(new_zs.predictions)) >= 2 and new_zs.top1 > 0.5


def test_a_deliberately_collapsed_run_warns_in_one_line(sounds, capsys) -> None:
    root, train, _ = sounds
    same = [{**r, "audio": train[0]["audio"]} for r in train]  # every clip is the same file: nothing to tell apart
    res = _bind(xmodal.load("lit"), same, root, epochs=4)
    assert len(res.warnings) == 1 and res.warnings[0].startswith("audio embeddings collapsed")
    err = [line for line in capsys.readouterr().err.splitlines() if "collapsed" in line]
    assert len(err) == 1 and err[0] == f"warning: {res.warnings[0]}"


def xmodal_text(model, texts):
    from xmodal.modalities import MODALITIES

    return MODALITIES.get("text").collate(texts, model.spec("text"))
