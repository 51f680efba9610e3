"""The params reference, generated from the schema's help texts: `python -m demo2reward.reference > docs/params.md`.

tests/test_docs.py fails when the committed docs/params.md is stale.
"""

from __future__ import annotations

import json
import types
import typing

from pydantic import BaseModel
from pydantic_core import PydanticUndefined

from demo2reward.core.params import Params

HEADER = """# Params reference

Generated from the schema in `src/demo2reward/core/params.py` by `python -m demo2reward.reference > docs/params.md`
(a test fails when this file is stale). Each section of `params.yaml` belongs to the stage of the same name.
The defaults below are the schema's; `params.yaml` holds the values of the default run. Every `dvc repro` first runs
`check_params`, which refuses an unknown key, a misspelt section or a bad value with one line naming the key.
"""


def _type(annotation) -> str:
    origin = typing.get_origin(annotation)
    if origin is typing.Literal:
        return " \\| ".join(str(a) for a in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_type(a) for a in typing.get_args(annotation))
    if annotation is type(None):
        return "null"
    if origin in (list, tuple):
        return "list"
    return getattr(annotation, "__name__", str(annotation))


def _default(field) -> str:
    value = field.default_factory() if field.default is PydanticUndefined and field.default_factory else field.default
    if value is PydanticUndefined:
        return "required"
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    elif isinstance(value, list):
        value = [v.model_dump(mode="json") if isinstance(v, BaseModel) else v for v in value]
    return "`" + json.dumps(value) + "`"


def _rows(model: type[BaseModel], prefix: str = "") -> list[tuple[str, str, str, str]]:
    rows = []
    for name, field in model.model_fields.items():
        key = f"{prefix}{name}"
        annotation = field.annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            rows.append((key, "section", "", (field.description or annotation.__doc__ or "").strip().split("\n")[0]))
            rows += _rows(annotation, f"{key}.")
        else:
            rows.append((key, _type(annotation), _default(field), (field.description or "").replace("|", "\\|")))
    return rows


def params_reference() -> str:
    lines = [HEADER, "| key | type | default | meaning |", "|---|---|---|---|"]
    lines += [f"| `{k}` | {t} | {d} | {m} |" for k, t, d, m in _rows(Params)]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(params_reference(), end="")
