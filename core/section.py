"""The base of every config section (its own module so that scorers/ and mixers/ can define sections that
``winnow.pipeline.config`` then imports, without a circular import)."""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict


def _one_or_many(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


#: a list of strings that also accepts a single string (``input: data/*.parquet`` or a list of patterns)
StrList = Annotated[list[str], BeforeValidator(_one_or_many)]


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable once validated."""

    model_config = ConfigDict(extra="forbid", frozen=True)
