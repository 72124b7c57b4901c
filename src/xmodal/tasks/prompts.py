"""Prompt sets for zero-shot classification: the ``PROMPTS`` registry, one set of templates per name.

As CLIP does for images (Radford et al., 2021), a class is scored by the mean embedding of its name
written into every template of a set ("a photo of a {}.", ...). A set registered under a modality's
name is that modality's default (:func:`prompts_for`): audio is described by how it sounds ("the
sound of {}", "a recording of {}"), as in CLAP (Elizalde et al., ICASSP 2023). ``plain`` is the class
name alone.
"""

from __future__ import annotations

from xmodal.registry import Registry

PROMPTS: Registry[tuple[str, ...]] = Registry("prompt set")

PHOTO_TEMPLATES: tuple[str, ...] = (
    "a {}.",
    "a photo of a {}.",
    "a picture of a {}.",
    "an image of a {}.",
    "there is a {}.",
)
SOUND_TEMPLATES: tuple[str, ...] = (
    "{}",
    "the sound of {}",
    "a recording of {}",
    "the sound of a {}",
    "a sound of {}",
    "an audio recording of {}",
    "this is the sound of {}",
    "a clip of {}",
)

PROMPTS.register("image", PHOTO_TEMPLATES)
PROMPTS.register("audio", SOUND_TEMPLATES)
PROMPTS.register("plain", ("{}",))


def prompts_for(modality: str) -> tuple[str, ...]:
    """The prompt set registered under ``modality``'s name, else the photo prompts (CLIP's)."""
    return PROMPTS.get(modality) if modality in PROMPTS else PHOTO_TEMPLATES
