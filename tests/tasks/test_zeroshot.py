import pytest
import torch

from xmodal.data.manifest import read_manifest
from xmodal.errors import DataError
from xmodal.tasks.zeroshot import build_zero_shot_classifier, score, zeroshot


def test_classifier_is_one_normalised_row_per_class(tiny_lit):
    clf = build_zero_shot_classifier(tiny_lit, ["red", "green", "blue"], ("a {}.", "a {} thing."))
    assert clf.shape == (3, tiny_lit.embed_dim)
    assert torch.allclose(clf.norm(dim=-1), torch.ones(3), atol=1e-5)
    with pytest.raises(ValueError, match="no '\\{\\}'"):
        build_zero_shot_classifier(tiny_lit, ["red"], ("a photo",))


def test_score_counts_topk_per_class_and_confusion():
    clf = torch.eye(3)
    emb = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0.6, 0.4, 0], [0, 0, 1]])
    res = score(emb, clf, ["a", "b", "b", "c"], ["a", "b", "c"])
    assert res.top1 == 0.75 and res.top5 == 1.0
    assert res.per_class == {"a": 1.0, "b": 0.5, "c": 1.0}
    assert res.confusion.tolist() == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]
    assert res.predictions == ["a", "b", "a", "c"]


def test_unknown_class_name_names_the_item(tiny_lit, colour_manifest):
    rows = read_manifest(colour_manifest)
    with pytest.raises(DataError, match="unknown class name 'red'"):
        zeroshot(tiny_lit, [rows[0]["path"]], ["red"], classnames=["green", "blue"], root=colour_manifest.parent)


def test_a_missing_label_names_the_item(tiny_lit):
    with pytest.raises(DataError, match=r"^b.png: no class label \(got None\)$"):
        zeroshot(tiny_lit, ["a.png", "b.png"], ["red", None])


def test_corrupt_file_raises_or_is_counted(tiny_lit, colour_manifest, tmp_path):
    rows = read_manifest(colour_manifest)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"not a png at all")
    items = [str(colour_manifest.parent / rows[0]["path"]), str(bad)]
    with pytest.raises(DataError, match="broken.png"):
        zeroshot(tiny_lit, items, ["red", "red"], ["red", "blue"], progress=False)
    res = zeroshot(tiny_lit, items, ["red", "red"], ["red", "blue"], on_error="skip", progress=False)
    assert len(res.targets) == 1 and len(res.skipped) == 1 and "broken.png" in res.skipped[0][0]


def test_zeroshot_at_bf16_keeps_the_fp32_classifier_and_predictions_close(tiny_lit, colour_manifest):
    """``precision`` reaches both sides: bf16 class prompts stay within cosine 0.999 of fp32, the
    classifier comes back fp32 and the scored items are the same."""
    names = ["red", "green", "blue"]
    c32 = build_zero_shot_classifier(tiny_lit, names, ("a {} square",))
    c16 = build_zero_shot_classifier(tiny_lit, names, ("a {} square",), precision="bf16")
    assert c16.dtype == torch.float32 and not torch.equal(c16, c32)
    assert (c16 * c32).sum(-1).min() >= 0.999
    rows = read_manifest(colour_manifest)
    args = ([r["path"] for r in rows], [r["label"] for r in rows], names, ("a {} square",))
    r32 = zeroshot(tiny_lit, *args, root=colour_manifest.parent, progress=False)
    r16 = zeroshot(tiny_lit, *args, root=colour_manifest.parent, progress=False, precision="bf16")
    assert len(r16.targets) == len(r32.targets) == len(rows)
    assert abs(r16.top1 - r32.top1) <= 2 / len(rows)  # a tiny random model: at most a borderline item or two flips
