"""Python names from SQL names: valid, readable and stable."""

from __future__ import annotations

import keyword
import re
from collections.abc import Iterable

_WORD = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|\d+")


def identifier(name: str) -> str:
    """Return `name` made a valid public Python identifier, as close to it as possible.

    Valid names are kept as they are (`p_amount`, `authorID`); other characters become `_`;
    keywords (`class`) and soft keywords (`match`, `type`) get a trailing `_`; a leading digit or
    underscore moves behind the name so the result never starts with `_` (generated code keeps
    `_`-names for itself, and NamedTuple fields cannot start with one).
    """
    out = re.sub(r"\W", "_", name, flags=re.ASCII)
    stripped = out.lstrip("_")
    if not stripped:
        return "column"
    if stripped != out or stripped[0].isdigit():
        stripped = ("v" + stripped if stripped[0].isdigit() else stripped) + "_"
    if keyword.iskeyword(stripped) or keyword.issoftkeyword(stripped):
        stripped += "_"
    return stripped


def snake(name: str) -> str:
    """Return `name` (`GetAuthor`, `getAuthorByID`, `list-users`) in snake_case."""
    words = [w.lower() for part in re.split(r"[^A-Za-z0-9]+", name) for w in _WORD.findall(part)]
    return identifier("_".join(words) or name)


def camel(name: str) -> str:
    """Return `name` (`author_books`, `GetAuthor`) in CamelCase."""
    words = [w for part in re.split(r"[^A-Za-z0-9]+", name) for w in _WORD.findall(part)]
    out = "".join(w[:1].upper() + w[1:] for w in words)
    if not out:
        return "Type"
    return "T" + out if out[0].isdigit() else out


def singular(name: str) -> str:
    """Return a simple English singular of a table name (`authors` → `author`)."""
    lower = name.lower()
    if lower.endswith("ies") and len(name) > 3:
        return name[:-3] + ("Y" if name[-3].isupper() else "y")
    if lower.endswith(("sses", "shes", "ches", "xes")):
        return name[:-2]
    if lower.endswith("s") and not lower.endswith(("ss", "us", "is")) and len(name) > 1:
        return name[:-1]
    return name


def constant(name: str) -> str:
    """Return `name` as an UPPER_SNAKE module constant."""
    return snake(name).rstrip("_").upper() or "QUERY"


def enum_member(label: str) -> str:
    """Return the Enum member name of an enum label (`in progress` → `IN_PROGRESS`)."""
    words = re.findall(r"[A-Za-z0-9]+", label)
    out = "_".join(w.upper() for w in words)
    if not out:
        return "EMPTY"
    return "V" + out if out[0].isdigit() else out


def unique(names: Iterable[str], taken: Iterable[str] = ()) -> list[str]:
    """Return `names` with repeats (and names in `taken`) made distinct by `_2`, `_3`, …"""
    seen = set(taken)
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in seen:
            n += 1
            candidate = f"{name.rstrip('_')}_{n}"
        seen.add(candidate)
        out.append(candidate)
    return out
