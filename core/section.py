"""The base of every config section (its own module so that scorers/ and mixers/ can define sections that
``winnow.pipeline.config`` then imports, without a circular import)."""

from __future__ import annotations

import inspect
import re
import types
import typing
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, ValidationInfo, field_validator


def _one_or_many(v: Any) -> Any:
    return [v] if isinstance(v, str) else v


#: a list of strings that also accepts a single string (``input: data/*.parquet`` or a list of patterns)
StrList = Annotated[list[str], BeforeValidator(_one_or_many)]


_ARG = re.compile(r"^ {4}(\w+): (.*)$")


def docstring_args(doc: str | None) -> dict[str, str]:
    """``{name: text}`` from the ``Args:`` block of a Google-style docstring (continuation lines joined)."""
    out: dict[str, str] = {}
    lines = inspect.cleandoc(doc or "").splitlines()
    if "Args:" not in lines:
        return out
    name = None
    for line in lines[lines.index("Args:") + 1 :]:
        if line and not line.startswith("    "):
            break  # the next block
        m = _ARG.match(line)
        if m:
            name = m.group(1)
            out[name] = m.group(2).strip()
        elif name and line.strip():
            out[name] += " " + line.strip()
    return out


def _is_int_annotation(annotation: Any) -> bool:
    """``int``, ``int | None`` or ``Optional[int]`` (not ``bool``, not unions with other types)."""
    if annotation is int:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        return args == [int]
    return False


class Section(BaseModel):
    """Base of every config section: unknown keys are errors, values are immutable once validated.

    A field's help text is written once, in the section's ``Args:`` docstring block, and becomes the field's
    ``description`` (what ``winnow config --schema`` prints); a ``Field(description=...)`` given explicitly wins.
    ``tests/pipeline/test_config.py`` checks that every field has one.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _no_bool_for_int(cls, v: Any, info: ValidationInfo) -> Any:
        # pydantic reads ``k: true`` as 1 for an ``int`` field; a boolean is never meant as a count or a seed
        if isinstance(v, bool) and info.field_name is not None:
            field = cls.model_fields.get(info.field_name)
            if field is not None and _is_int_annotation(field.annotation):
                raise ValueError("expected an integer, got a boolean")
        return v

    @classmethod
    def __pydantic_init_subclass__(cls, **kwargs: Any) -> None:
        super().__pydantic_init_subclass__(**kwargs)
        docs = docstring_args(cls.__doc__)
        changed = False
        for name, info in cls.model_fields.items():
            if not info.description and name in docs:
                info.description = docs[name]
                changed = True
        if changed:
            cls.model_rebuild(force=True, raise_errors=False)
