"""The small comparison language of flavor extra specs and image version requirements.

A requirement is a string. Without a leading operator it must equal the value exactly. Operators:

- numeric: ``= 4`` (at least 4, as Nova reads it), ``== 4``, ``!= 4``, ``>= 4``, ``<= 4``
- string: ``s== x``, ``s!= x``, ``s< x``, ``s<= x``, ``s> x``, ``s>= x``
- ``<in> word`` (the value contains the word), ``<all-in> a b`` (contains every word)
- ``<or> a <or> b`` (equals one of them)

A value that is missing, or not a number where a number is compared, never matches.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

_NUMERIC: dict[str, Callable[[float, float], bool]] = {
    "=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
    ">=": operator.ge,
    "<=": operator.le,
}
_STRING: dict[str, Callable[[str, str], bool]] = {
    "s==": operator.eq,
    "s!=": operator.ne,
    "s<": operator.lt,
    "s<=": operator.le,
    "s>": operator.gt,
    "s>=": operator.ge,
}
_OPERATORS = frozenset(_NUMERIC) | frozenset(_STRING) | {"<in>", "<all-in>", "<or>"}


def _number(text: object) -> float | None:
    try:
        return float(str(text))
    except ValueError:
        return None


def matches(value: object, requirement: str) -> bool:
    """Whether a host's (or aggregate's) ``value`` satisfies ``requirement``."""
    requirement = str(requirement)
    words = requirement.split()
    op = words[0] if words else ""
    if op not in _OPERATORS:
        return value is not None and str(value) == requirement
    if value is None:
        return False
    text = str(value)
    operands = words[1:]
    if op == "<or>":
        # Alternatives sit at every other word: "<or> a <or> b <or> c".
        return text in operands[::2]
    if not operands:
        return False
    if op == "<in>":
        return operands[0] in text
    if op == "<all-in>":
        return all(word in text for word in operands)
    if op in _STRING:
        return _STRING[op](text, operands[0])
    left, right = _number(text), _number(operands[0])
    if left is None or right is None:
        return False
    return _NUMERIC[op](left, right)
