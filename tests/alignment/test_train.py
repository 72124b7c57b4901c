import torch

from xmodal.alignment.train import AlignConfig, align, frozen_part
from xmodal.data.manifest import read_manifest
from xmodal.engine.fit import FitConfig
from xmodal.tasks.zeroshot import zeroshot


def _rows(manifest):
    rows = read_manifest(manifest)
    return [r for r in rows if r["split"] == "train"], [r for r in rows if r["split"] == "val"]


def test_lit_alignment_learns_colours_and_caches_the_locked_text_tower(tiny_lit, colour_manifest, tmp_path):
    train, val = _rows(colour_manifest)
    root = colour_manifest.parent
    text_before = {k: v.clone() for k, v in tiny_lit.towers["text"].encoder.state_dict().items()}
    cfg = AlignConfig(batch_size=6, fit=FitConfig(epochs=12, lr=1e-2, monitor="val_top1", progress=False))
    result = align(tiny_lit, train, cfg, val_rows=val, root=root, out=tmp_path / "run")
    # the locked text trunk went through the cache once per distinct caption, never again
    assert frozen_part(tiny_lit.towers["text"]) == "all"
    assert result.cached["text"] == len({r["caption"] for r in train + val})
    for k, v in tiny_lit.towers["text"].encoder.state_dict().items():
        assert torch.equal(v, text_before[k]), k
    first, last = result.history.epochs[0], result.history.epochs[-1]
    assert last["loss"] < first["loss"]
    zs = zeroshot(tiny_lit, [r["path"] for r in val], [r["label"] for r in val], templates=("a {} square",),
                  root=root, progress=False)
    assert zs.top1 == 1.0
    assert (tmp_path / "run" / "model" / "xmodal.json").is_file()
    assert len((tmp_path / "run" / "log.jsonl").read_text().splitlines()) == 12


def test_siglip_alignment_runs_and_trains_bias(tiny_lit, colour_manifest):
    train, _ = _rows(colour_manifest)
    cfg = AlignConfig(loss="siglip", batch_size=6, init_logit_scale=2.3, init_logit_bias=-10.0,
                      fit=FitConfig(epochs=3, lr=1e-2, progress=False))
    result = align(tiny_lit, train, cfg, root=colour_manifest.parent)
    assert result.history.epochs[-1]["loss"] < result.history.epochs[0]["loss"]
    assert tiny_lit.logit_bias.item() != -10.0


def test_unlocked_text_tower_is_not_cached(tiny_text_dir, colour_manifest):
    import xmodal

    model = xmodal.load("lit", text_model=str(tiny_text_dir), lock="none", vision={"width": 8, "depth": 2, "image_size": 16})
    train, _ = _rows(colour_manifest)
    before = model.towers["text"].encoder.embeddings.word_embeddings.weight.clone()
    result = align(model, train, AlignConfig(batch_size=6, fit=FitConfig(epochs=1, lr=1e-2, progress=False)),
                   root=colour_manifest.parent)
    assert result.cached == {}
    assert not torch.equal(before, model.towers["text"].encoder.embeddings.word_embeddings.weight)
