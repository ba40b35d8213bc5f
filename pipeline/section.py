"""The base of every config section (its own module so that scorers/ and mixers/ can define sections that
``pipeline.config`` then imports, without a circular import)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)
