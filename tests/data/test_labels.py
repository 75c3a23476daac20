import pytest

from rlar.data.labels import UNKNOWN, LabelSpace, canonical_level, detect_scale
from rlar.errors import ConfigError, DataError


@pytest.mark.parametrize(
    ("raw", "scale", "expected"),
    [("4A", "ddti", "4a"), (" 5 ", "ddti", "5"), ("3.0", "ddti", "3"), ("", "ddti", None), (None, "acr", None),
     ("TR3", "acr", "TR3"), ("tr5", "acr", "TR5"), ("4", "acr", "TR4"), (2, "acr", "TR2"), ("nan", "acr", None)],
)
def test_canonical_level(raw, scale, expected):
    assert canonical_level(raw, scale) == expected


@pytest.mark.parametrize(("raw", "scale"), [("4d", "ddti"), ("1", "ddti"), ("TR6", "acr"), ("4a", "acr")])
def test_off_scale_values_are_errors_not_coerced(raw, scale):
    with pytest.raises(DataError, match="not a TI-RADS level"):
        canonical_level(raw, scale)


def test_detect_scale():
    assert detect_scale(["2", "4a", "5"]) == "ddti"
    assert detect_scale(["TR1", "TR4"]) == "acr"
    assert detect_scale(["1", "3", ""]) == "acr"


def test_multiclass_and_binary_encoding():
    ddti = LabelSpace("ddti", "multiclass")
    assert ddti.class_names == ("2", "3", "4a", "4b", "4c", "5")
    assert [ddti.encode(v) for v in ("2", "4a", "5", None)] == [0, 2, 5, UNKNOWN]
    ddti_bin = LabelSpace("ddti", "binary")
    assert [ddti_bin.encode(v) for v in ("2", "3", "4a", "4c", "5", None)] == [0, 0, 1, 1, 1, UNKNOWN]
    acr_bin = LabelSpace("acr", "binary")
    assert [acr_bin.encode(v) for v in ("TR1", "TR3", "TR4", "TR5")] == [0, 0, 1, 1]
    assert LabelSpace("acr").num_classes == 5


def test_label_space_validation_names_the_key():
    with pytest.raises(ConfigError, match="'task'"):
        LabelSpace("acr", "ternary")
    with pytest.raises(ConfigError, match="'scale'"):
        LabelSpace("bethesda")
    with pytest.raises(DataError):
        LabelSpace("acr").encode("4a")
