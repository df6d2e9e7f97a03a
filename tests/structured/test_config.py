"""The structured params section: defaults validate, every bad value is one line naming the key."""
from __future__ import annotations

import pytest

from compress.config import ConfigError, validate_params
from compress.structured.monarch import MonarchShape, sqrt_shape


def test_defaults():
    m = validate_params({}).structured
    assert (m.model, m.layers, m.nblocks, m.rank, m.quant_bits) == ("mlp1024", "hidden", "sqrt", 1, 8)


@pytest.mark.parametrize("section, key", [
    ({"nblocks": "foo"}, "structured.nblocks = 'foo'"),
    ({"nblocks": 0}, "structured.nblocks = 0"),
    ({"nblocks": True}, "structured.nblocks = True"),
    ({"layers": []}, "structured.layers = []"),
    ({"layers": ["net.1", "net.1"]}, "structured.layers = ['net.1', 'net.1']"),
    ({"rank": 0}, "structured.rank = 0"),
    ({"quant_bits": 9}, "structured.quant_bits = 9"),
    ({"model": "vgg"}, "structured.model = 'vgg'"),
    ({"finetune": {"epochs": 0}}, "structured.finetune.epochs = 0"),
    ({"blocks": 4}, "unknown key 'structured.blocks'"),
    ({"structure": "lowrank"}, "structured.structure = 'lowrank' is invalid: unknown structure 'lowrank'; allowed: monarch"),
])
def test_bad_values_are_one_line(section, key):
    with pytest.raises(ConfigError) as e:
        validate_params({"structured": section})
    msg = str(e.value)
    assert key in msg and "\n" not in msg, msg


def test_sqrt_block_counts():
    assert sqrt_shape(784, 1024) == MonarchShape(784, 1024, 28, 32)  # perfect squares: m = sqrt(n)
    assert sqrt_shape(300, 100) == MonarchShape(300, 100, 15, 10)  # 300: divisor nearest 17.3 is 15
    assert sqrt_shape(400, 120) == MonarchShape(400, 120, 20, 10)  # LeNet-5 fc1
    assert sqrt_shape(13, 13) == MonarchShape(13, 13, 1, 1)  # a prime: one block (a rank-1 matrix)
