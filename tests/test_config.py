from dataclasses import dataclass, field

import pytest

from xmodal.config import apply_overrides, from_dict, load_yaml, to_dict
from xmodal.errors import ConfigError


@dataclass
class Inner:
    rate: float = 0.1  # a float
    name: str = "x"  # a string


@dataclass
class Outer:
    steps: int = 3  # an int
    sizes: tuple[int, ...] = (1, 2)  # a tuple
    inner: Inner = field(default_factory=Inner)  # a nested config
    maybe: float | None = None  # optional


def test_round_trip_through_dict():
    cfg = Outer(steps=5, sizes=(4,), inner=Inner(rate=2.0, name="y"), maybe=1.5)
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_coercions_and_strictness():
    cfg = from_dict(Outer, {"sizes": [7, 8], "inner": {"rate": 3}})
    assert cfg.sizes == (7, 8) and cfg.inner.rate == 3.0 and isinstance(cfg.inner.rate, float)
    with pytest.raises(ConfigError, match=r"Outer: unknown key\(s\) \['stepz'\]"):
        from_dict(Outer, {"stepz": 1})
    with pytest.raises(ConfigError, match=r"Outer.inner.name: expected str"):
        from_dict(Outer, {"inner": {"name": 5}})
    with pytest.raises(ConfigError, match="expected int"):
        from_dict(Outer, {"steps": "many"})


def test_dotted_overrides():
    data = apply_overrides(to_dict(Outer()), ["inner.rate=0.5", "sizes=[3, 4]", "steps=9"])
    assert from_dict(Outer, data) == Outer(steps=9, sizes=(3, 4), inner=Inner(rate=0.5))
    with pytest.raises(ConfigError, match="key=value"):
        apply_overrides({}, ["oops"])
    with pytest.raises(ConfigError, match="not a section"):
        apply_overrides({"steps": 1}, ["steps.x=2"])


def test_yaml_errors_name_the_file(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_yaml(tmp_path / "none.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml: not valid YAML"):
        load_yaml(bad)
    (tmp_path / "list.yaml").write_text("- 1\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_yaml(tmp_path / "list.yaml")
    (tmp_path / "ok.yaml").write_text("steps: 2\n")
    assert load_yaml(tmp_path / "ok.yaml") == {"steps": 2}


@pytest.mark.parametrize("values, field_name", [({"width": 10**7}, "width"), ({"depth": -1}, "depth"),
                                                ({"image_size": 0}, "image_size"), ({"heads": 0}, "heads"),
                                                ({"dropout": 1.5}, "dropout")])
def test_absurd_model_sizes_are_refused_when_the_config_is_made(values, field_name):
    from xmodal.encoders.vision import VisionConfig

    with pytest.raises(ConfigError, match=rf"VisionConfig.{field_name}=.* is outside"):
        from_dict(VisionConfig, values)
    with pytest.raises(ConfigError, match="VisionConfig"):
        from_dict(VisionConfig, {"arch": "vit", "width": 10, "heads": 4})
    assert from_dict(VisionConfig, {"width": 8, "depth": 2}).width == 8


def test_absurd_lit_sizes_are_refused_before_any_tower_is_built():
    from xmodal.backbones.lit import LiTConfig

    with pytest.raises(ConfigError, match="LiTConfig.num_frames=0"):
        from_dict(LiTConfig, {"num_frames": 0})
    with pytest.raises(ConfigError, match="LiTConfig.embed_dim=-3"):
        from_dict(LiTConfig, {"embed_dim": -3})
