"""Every vector file: scripted conversations through the translation core, frame by frame."""

from __future__ import annotations

from typing import Any

import pytest

from tests.translators.conversation import VECTORS, load_vectors, run_conversation

CASES = [
    pytest.param(vector, id=f"{path.stem}: {vector['name']}")
    for path in sorted(VECTORS.glob("*.jsonl"))
    for vector in load_vectors(path.name)
]


@pytest.mark.parametrize("vector", CASES)
def test_vector(vector: dict[str, Any]) -> None:
    run_conversation(vector)
