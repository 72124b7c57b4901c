"""Prompt sets: a modality's own set is its zero-shot default (audio: how it sounds), else CLIP's photo prompts."""

import torch

from xmodal.tasks.prompts import PHOTO_TEMPLATES, PROMPTS, SOUND_TEMPLATES, prompts_for
from xmodal.tasks.zeroshot import DEFAULT_TEMPLATES, build_zero_shot_classifier


def test_each_modality_gets_its_own_prompts_or_the_photo_ones():
    assert prompts_for("audio") == SOUND_TEMPLATES and "the sound of {}" in SOUND_TEMPLATES and "{}" in SOUND_TEMPLATES
    assert prompts_for("image") == PHOTO_TEMPLATES == DEFAULT_TEMPLATES
    assert prompts_for("video") == PHOTO_TEMPLATES  # frames are pictures
    assert PROMPTS.get("plain") == ("{}",)
    for name in PROMPTS.names():
        assert PROMPTS.get(name) and all("{}" in t for t in PROMPTS.get(name)), name


def test_the_classifier_averages_every_prompt_of_a_set(tiny_lit):
    both = build_zero_shot_classifier(tiny_lit, ["dog"], ("the sound of {}", "a recording of {}"))
    one = build_zero_shot_classifier(tiny_lit, ["dog"], ("the sound of {}",))
    other = build_zero_shot_classifier(tiny_lit, ["dog"], ("a recording of {}",))
    assert torch.allclose(both, torch.nn.functional.normalize(one + other, dim=-1), atol=1e-4)
