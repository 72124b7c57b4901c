"""The public facade: exported names never shadow a package, the timm-style ``list_*`` functions read
the registries, and the training entry points check names and options before they read any data."""

from __future__ import annotations

import importlib.util

import pytest

import xmodal
from xmodal.errors import ConfigError

LISTS = {"list_models": "BACKBONES", "list_strategies": "STRATEGIES", "list_encoders": "ENCODERS",
         "list_fusions": "FUSIONS", "list_losses": "LOSSES", "list_modalities": "MODALITIES"}


@pytest.mark.parametrize("name", sorted(xmodal._EXPORTS))
def test_no_exported_name_is_also_a_module(name):
    assert importlib.util.find_spec(f"xmodal.{name}") is None, f"xmodal.{name} is both an export and a module"


def test_the_verbs_stay_functions_after_their_packages_are_imported():
    import xmodal.alignment  # noqa: F401
    import xmodal.binding  # noqa: F401
    import xmodal.fusion  # noqa: F401
    import xmodal.strategies  # noqa: F401

    for verb in ("align", "bind", "transfer", "fuse"):
        fn = getattr(xmodal, verb)
        assert callable(fn) and not isinstance(fn, type(xmodal)), f"xmodal.{verb} is {fn!r}"


def test_list_functions_read_the_registries():
    from xmodal.engine.losses import LOSSES

    registries = {"BACKBONES": xmodal.BACKBONES, "STRATEGIES": xmodal.STRATEGIES, "ENCODERS": xmodal.ENCODERS,
                  "FUSIONS": xmodal.FUSIONS, "LOSSES": LOSSES, "MODALITIES": xmodal.MODALITIES}
    for fn, registry in LISTS.items():
        names = getattr(xmodal, fn)()
        assert names == sorted(names) and set(names) <= set(registries[registry].names()), fn
        if fn != "list_models":
            assert names == registries[registry].names()
    assert xmodal.list_models() == ["lit"]  # hf_clip loads by hub name or folder, bound from its folder
    assert xmodal.list_strategies("*probe*") == ["linear_probe"]
    assert xmodal.list_losses("sig*") == ["siglip"] and xmodal.list_fusions("nothing*") == []


def _missing_rows(n: int = 4) -> list[dict[str, str]]:
    return [{"path": f"missing{k}.mp4", "audio": f"missing{k}.wav", "image": f"missing{k}.png", "label": "ab"[k % 2],
             "caption": "a thing"} for k in range(n)]


def test_transfer_checks_options_before_decoding(tmp_path):
    cfg = xmodal.TransferConfig(strategy="lora", options={"rnak": 8})
    with pytest.raises(ConfigError, match=r"lora options: unknown key\(s\) \['rnak'\]; known: .*'rank'"):
        xmodal.transfer(object(), _missing_rows(), cfg, root=tmp_path, out=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_compare_checks_every_spec_before_any_work(tmp_path):
    cfg = xmodal.CompareConfig(out=str(tmp_path / "c"), strategies=("zero_shot", "adapter:temporl=false"))
    with pytest.raises(ConfigError, match=r"adapter options: unknown key\(s\) \['temporl'\]"):
        xmodal.compare(cfg, say=lambda _: None)
    assert not (tmp_path / "c").exists()


def test_bind_and_fuse_configs_are_checked_without_a_model():
    from xmodal.binding.train import check_config as check_bind
    from xmodal.fusion.train import check_config as check_fuse

    with pytest.raises(ConfigError, match=r"encoder hf_audio: unknown key\(s\) \['name'\]; known: \['name_or_path'"):
        check_bind(xmodal.BindConfig(encoder="hf_audio", encoder_config={"name": "x"}))
    with pytest.raises(ConfigError, match="unknown modality 'sonar'"):
        check_bind(xmodal.BindConfig(anchor="sonar"))
    with pytest.raises(ConfigError, match="unknown encoder 'cnn'; known: audio_cnn"):
        check_fuse(xmodal.FuseConfig(encoders={"audio": {"encoder": "cnn"}}))
    with pytest.raises(ConfigError, match=r"image spec: unknown key\(s\) \['sise'\]"):
        check_fuse(xmodal.FuseConfig(encoders={"image": {"spec": {"sise": 8}}}))
