"""What an alignment batch holds: classes for balancing, positives from labels and repeated items,
captions written into prompts, and mixed targets."""

from __future__ import annotations

import torch

from xmodal.alignment.batches import classes, mix, prompter, targets
from xmodal.alignment.train import AlignConfig
from xmodal.modalities.audio_augment import AudioAugmentConfig

ROWS = [{"audio": f"{i}.wav", "text": t, "label": lab}
        for i, (t, lab) in enumerate([("dog", "d"), ("dog", "d"), ("cat", "c"), ("a cat", "c")])]


def test_classes_come_from_labels_else_repeated_items() -> None:
    assert classes(ROWS, "label", ("audio", "text")) == ["d", "d", "c", "c"]
    assert classes(ROWS, "", ("audio", "text")) == ["dog", "dog", "cat", "a cat"]
    assert classes([{"audio": "1", "image": "1.png"}, {"audio": "2", "image": "2.png"}], "", ("audio", "image")) is None


def test_repeated_captions_are_positives_with_or_without_labels() -> None:
    batch = {"index": torch.tensor([0, 1, 2, 3]), "labels": ["d", "d", "c", "c"]}
    cpu = torch.device("cpu")
    by_item = targets(batch, ROWS, AlignConfig(label_column="", columns=("audio", "text")), cpu)
    assert by_item.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]]
    by_label = targets(batch, ROWS, AlignConfig(label_column="label", columns=("audio", "text")), cpu)
    assert by_label.tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    pairs_only = targets(batch, ROWS, AlignConfig(label_column="", repeat_positives=False, columns=("audio", "text")), cpu)
    assert torch.equal(pairs_only, torch.eye(4))


def test_captions_are_written_into_random_prompts() -> None:
    assert prompter(AlignConfig()) is None
    to_prompt = prompter(AlignConfig(caption_prompts="audio"))
    torch.manual_seed(0)
    seen = {to_prompt("dog") for _ in range(40)}
    assert len(seen) > 3 and all("dog" in s for s in seen) and "dog" in seen


def test_mixup_mixes_the_targets_of_the_mixed_side() -> None:
    x = torch.randn(4, 16, 8) - 3
    batch = {"audio": {"input_features": x}, "index": torch.arange(4)}
    pos = torch.eye(4)
    torch.manual_seed(0)
    augs = {"audio": AudioAugmentConfig(mixup=1.0)}
    mixed, soft = mix(batch, augs, ["audio"], "audio", pos)
    assert not torch.equal(mixed["audio"]["input_features"], x)
    assert torch.allclose(soft.sum(1), torch.ones(4)) and not torch.equal(soft, pos) and soft.diagonal().min() >= 0.5
    same, hard = mix(batch, {"audio": AudioAugmentConfig(mixup=0.0)}, ["audio"], "audio", pos)
    assert same is batch and hard is pos
