"""The base of every model config: a dataclass that turns into plain JSON (for the checkpoint cards) and back.

Base layer of the package: imports nothing else from minidiff.
"""

from __future__ import annotations

import dataclasses
from typing import Any, TypeVar

C = TypeVar("C", bound="Config")


def _default(f: dataclasses.Field) -> Any:
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None


@dataclasses.dataclass
class Config:
    """Subclass with @dataclass; tuples become JSON lists and come back as tuples, nested configs nest."""

    def to_dict(self) -> dict:
        out = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.to_dict() if isinstance(v, Config) else list(v) if isinstance(v, tuple) else v
        return out

    @classmethod
    def from_dict(cls: type[C], d: dict) -> C:
        if not isinstance(d, dict):
            raise TypeError(f"{cls.__name__}.from_dict needs a dict, got {type(d).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - set(fields))
        if unknown:
            raise TypeError(f"{cls.__name__} has no field(s) {unknown}; its fields are {sorted(fields)}")
        kwargs = {}
        for name, v in d.items():
            default = _default(fields[name])
            if isinstance(default, Config) and isinstance(v, dict):
                v = type(default).from_dict(v)
            elif isinstance(default, tuple) and isinstance(v, list):
                v = tuple(v)
            kwargs[name] = v
        return cls(**kwargs)
