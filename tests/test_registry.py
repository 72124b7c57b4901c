import pytest

from xmodal.errors import ConfigError, UnknownNameError
from xmodal.registry import Registry


def test_register_get_and_list():
    reg: Registry[int] = Registry("widget")
    reg.register("b", 2)

    @reg.register("a")
    def make_a():
        return 1

    assert reg.get("a") is make_a and reg.get("b") == 2
    assert reg.names() == ["a", "b"] and list(reg) == ["a", "b"] and len(reg) == 2 and "a" in reg


def test_duplicate_name_is_refused():
    reg: Registry[int] = Registry("widget")
    reg.register("a", 1)
    with pytest.raises(ValueError, match="already registered"):
        reg.register("a", 2)
    assert reg.get("a") == 1


def test_unknown_name_lists_known_names_and_is_a_config_error():
    reg: Registry[int] = Registry("widget")
    reg.register("alpha", 1)
    with pytest.raises(UnknownNameError) as info:
        reg.get("beta")
    assert isinstance(info.value, KeyError) and isinstance(info.value, ConfigError)
    assert str(info.value) == "unknown widget 'beta'; known: alpha"
