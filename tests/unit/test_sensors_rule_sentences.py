"""The sensors pipeline's two rules are written once (`features.sensors.vectors.RULE`,
`features.sensors.window_math.EMISSION`) and quoted word for word wherever they are described:
a reader finds the same sentence in every README and docstring that states it."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from features.sensors.vectors import RULE
from features.sensors.window_math import EMISSION

ROOT = Path(__file__).resolve().parents[2]

QUOTING_RULE = ["README.md", "features/sensors/README.md", "streaming/README.md",
                "batch/README.md", "training/README.md", "streaming/processors/sensor_join.py",
                "training/sensors_baseline.py", "batch/sensors_backfill.py",
                "features/sensors/vectors.py"]
QUOTING_EMISSION = ["README.md", "features/sensors/README.md", "streaming/README.md",
                    "streaming/processors/sensor_windows.py"]


def words(text: str) -> str:
    return " ".join(text.split())


def text_of(path: str) -> str:
    source = (ROOT / path).read_text()
    if path.endswith(".py"):
        return words(ast.get_docstring(ast.parse(source)) or "")
    return words(source)


@pytest.mark.parametrize("path", QUOTING_RULE)
def test_the_vector_rule_is_quoted_word_for_word(path: str) -> None:
    assert words(RULE) in text_of(path)


@pytest.mark.parametrize("path", QUOTING_EMISSION)
def test_the_emission_rule_is_quoted_word_for_word(path: str) -> None:
    assert words(EMISSION) in text_of(path)
