"""The method table: every method has one row, and every part reads it."""

import pytest

from engine.attacks import ATTACKS
from engine.config import METHODS as CONFIG_METHODS
from engine.config import preset
from engine.methods import METHODS, method


def test_every_method_has_an_attack_and_the_config_accepts_exactly_these() -> None:
    assert set(ATTACKS) == set(METHODS) == set(CONFIG_METHODS)


def test_passes_per_image_of_each_method() -> None:
    t, k, m = 8, 6, 4
    assert method("sep-fa-vr").passes_per_image(t, k, m) == t * (k + m)
    assert method("sep-fa").passes_per_image(t, k, m) == method("sep").passes_per_image(t, k, m) == t * k
    assert method("single-fa").passes_per_image(t, k, m) == t
    assert method("random").passes_per_image(t, k, m) == 0


def test_what_each_method_needs() -> None:
    assert not method("random").needs_surrogate and not method("random").needs_means
    assert method("sep").needs_surrogate and not method("sep").needs_means
    assert all(method(n).needs_means for n in ("sep-fa-vr", "sep-fa", "single-fa"))


def test_unknown_method_is_named() -> None:
    with pytest.raises(ValueError, match="unknown method 'pgd'"):
        method("pgd")
    with pytest.raises(ValueError, match="unknown method 'pgd'"):
        preset("fast", method="pgd")
