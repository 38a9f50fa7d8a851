"""IO Intelligence (io.net): the default upstream.

Facts from its public docs (see DESIGN.md, "Facts about the API"): chat takes
`max_completion_tokens` (`max_tokens` is deprecated); errors are vLLM's and
OpenAI's shapes without a code iorag needs (the status says it); no health
endpoint and no tenant header are documented. The model tables are in
`catalog.py`, where they have always been.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Provider

if TYPE_CHECKING:
    from ...catalog import ModelInfo


def _models() -> tuple["ModelInfo", ...]:
    from ...catalog import ionet_models

    return ionet_models()


IONET = Provider(
    name="ionet",
    title="IO Intelligence",
    default_base_url="https://api.intelligence.io.solutions/api/v1",
    hosts=("api.intelligence.io.solutions",),
    completion_tokens_param="max_completion_tokens",
    models=_models,
)

__all__ = ["IONET"]
