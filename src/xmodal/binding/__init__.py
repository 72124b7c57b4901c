"""Binding new modalities (audio, sensor streams) into a model's shared space against a frozen tower.

``bind(model, rows, BindConfig(...))`` trains a new encoder (``xmodal.encoders.ENCODERS``:
``audio_cnn``, ``audio_transformer``, ``series_cnn``, ``hf_audio``) contrastively against the frozen
anchor tower (features cached once), as in ImageBind (Girdhar et al., CVPR 2023): afterwards the new
modality is zero-shot classifiable from text prompts and retrievable from/to every other modality,
although no new-modality/text pairs were used.
"""

from xmodal.binding.train import BindConfig, bind

__all__ = ["BindConfig", "bind"]
