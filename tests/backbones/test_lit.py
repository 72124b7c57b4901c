import pytest
import torch

import xmodal
from xmodal.backbones.base import XModel
from xmodal.errors import ConfigError
from xmodal.modalities import MODALITIES


def _batch(model, n=2):
    spec = model.spec("text")
    text = MODALITIES.get("text").collate(["a red square", "a blue circle"][:n], spec)
    pixels = torch.randn(n, 3, 16, 16)
    return {"pixel_values": pixels}, text


def test_towers_map_into_one_normalised_space(tiny_lit):
    image, text = _batch(tiny_lit)
    a, b = tiny_lit.encode("image", image), tiny_lit.encode("text", text)
    assert a.shape == b.shape == (2, 32)
    assert torch.allclose(a.norm(dim=-1), torch.ones(2), atol=1e-5)
    assert torch.allclose(b.norm(dim=-1), torch.ones(2), atol=1e-5)


def test_text_trunk_is_locked_and_vision_trains(tiny_lit):
    text = tiny_lit.towers["text"]
    assert not any(p.requires_grad for p in text.encoder.parameters())
    assert all(p.requires_grad for p in tiny_lit.towers["image"].parameters())


def test_video_is_frame_average(tiny_lit):
    tiny_lit.eval()
    frames = torch.randn(2, 3, 3, 16, 16)
    video = tiny_lit.encode("video", {"pixel_values": frames})
    per_frame = torch.stack([tiny_lit.encode("image", {"pixel_values": frames[:, t]}) for t in range(3)], 1)
    assert torch.allclose(video, torch.nn.functional.normalize(per_frame.mean(1), dim=-1), atol=1e-5)


@pytest.mark.parametrize("arch, stem", [("convnet", "patch"), ("vit", "patch"), ("vit", "conv")])
def test_save_load_round_trip(tiny_text_dir, tmp_path, arch, stem):
    torch.manual_seed(0)
    model = xmodal.load("lit", text_model=str(tiny_text_dir), vision={"arch": arch, "width": 8, "depth": 2, "image_size": 16,
                                                                      "patch_size": 4, "heads": 2, "stem": stem})
    model.eval()
    image, text = _batch(model)
    model.save_pretrained(tmp_path / "ckpt")
    loaded = xmodal.load(tmp_path / "ckpt").eval()
    assert isinstance(loaded, XModel) and loaded.config == model.config
    assert torch.allclose(model.encode("image", image), loaded.encode("image", image), atol=1e-6)
    text2 = MODALITIES.get("text").collate(["a red square", "a blue circle"], loaded.spec("text"))
    assert torch.equal(text["input_ids"], text2["input_ids"])
    assert torch.allclose(model.encode("text", text), loaded.encode("text", text2), atol=1e-6)


def test_packaged_minilm_is_the_default_text_tower():
    model = xmodal.load("lit")
    assert model.towers["text"].encoder.config.hidden_size == 384 and model.embed_dim == 384


def test_bad_settings_are_config_errors(tiny_text_dir):
    with pytest.raises(ConfigError, match="lock"):
        xmodal.load("lit", text_model=str(tiny_text_dir), lock="both")
    with pytest.raises(ConfigError, match="arch"):
        xmodal.load("lit", text_model=str(tiny_text_dir), vision={"arch": "resnet9000"})
    with pytest.raises(ConfigError, match="unknown key"):
        xmodal.load("lit", text_model=str(tiny_text_dir), colour="red")
    with pytest.raises(ConfigError, match="stem"):
        xmodal.load("lit", text_model=str(tiny_text_dir), vision={"arch": "vit", "stem": "hexagonal"})
    with pytest.raises(ConfigError, match="power-of-two"):
        xmodal.load("lit", text_model=str(tiny_text_dir), vision={"arch": "vit", "stem": "conv", "patch_size": 6,
                                                                  "image_size": 24})
    with pytest.raises(ConfigError, match="cannot load"):
        xmodal.load("lit", text_model="/nonexistent/text-model")


def test_conv_stem_gives_the_patch_grid_and_trains_with_the_vit(tiny_text_dir):
    from xmodal.encoders.vision import VisionConfig, build_vision

    vit = build_vision(VisionConfig(arch="vit", width=16, depth=1, heads=2, image_size=32, patch_size=8, stem="conv"))
    convs = [m for m in vit.patch if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride for c in convs] == [(2, 2)] * 3 + [(1, 1)]  # log2(8) stride-2 layers, then the 1x1 projection
    tokens = vit.forward_features(torch.randn(2, 3, 32, 32))[-1]
    assert tokens.shape == (2, 1 + 16, 16)  # the class token and a 4x4 grid, as the patchify stem gives
    vit(torch.randn(2, 3, 32, 32)).sum().backward()
    assert all(p.grad is not None for p in vit.patch.parameters())
