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


_SIMPLE = {"int": (int,), "float": (int, float), "bool": (bool,), "str": (str,)}


def _check_field(cls: type, name: str, value: Any, annotation: Any) -> None:
    """A TypeError naming the field when a JSON value has the wrong type for its annotation (e.g. "128" for an int):
    otherwise the model would fail later, deep inside torch."""
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", str(annotation))
    parts = [p.strip() for p in text.split("|")]
    if value is None:
        if "None" not in parts:
            raise TypeError(f"{cls.__name__}.{name} must not be null")
        return
    base = [p for p in parts if p != "None"]
    if len(base) != 1:
        return
    base = base[0]
    head = base.split("[", 1)[0]
    if head in _SIMPLE:
        ok = isinstance(value, _SIMPLE[head]) and (head == "bool" or not isinstance(value, bool))
        want = {"int": "an integer", "float": "a number", "bool": "true or false", "str": "a string"}[head]
    elif head in ("tuple", "list"):
        ok, want = isinstance(value, (list, tuple)), "a list"
        inner = base[len(head) + 1:-1].split(",")[0].strip() if "[" in base else ""
        if ok and inner in _SIMPLE:
            ok = all(isinstance(v, _SIMPLE[inner]) and not isinstance(v, bool) for v in value)
            want = f"a list of {inner}s"
    else:
        return
    if not ok:
        raise TypeError(f"{cls.__name__}.{name} must be {want} ({base}), got {type(value).__name__} {value!r:.60}")


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
            else:
                _check_field(cls, name, v, fields[name].type)
                if isinstance(default, tuple) and isinstance(v, list):
                    v = tuple(v)
            kwargs[name] = v
        return cls(**kwargs)
