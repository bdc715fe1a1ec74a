"""Query parameters read strictly: each given at most once and well formed, or a 400 that names it.

DRF falls back to a default on a malformed value; a public API should say what it did not understand
instead. Every error has the shape of the filters' errors: {"<parameter>": "<what is wrong>"}.
"""
import re

from rest_framework.exceptions import ValidationError

# Django's SlugField (ASCII); an empty value means "no filter", as an HTML form sends it.
SLUG_CHARACTERS = "[-a-zA-Z0-9_]"
SLUG_OR_EMPTY = f"^{SLUG_CHARACTERS}*$"   # the same rule, as the schema's pattern
# Past 18 digits a limit is clamped and an offset is past any table's end: the exact value cannot matter,
# and int() would refuse one of over 4300 digits.
LONGEST_EXACT_NUMBER = 18


def query_param(request, name: str) -> str | None:
    """The parameter's value, None when it is absent; given twice, it is a 400 (which one was meant?)."""
    values = request.query_params.getlist(name)
    if len(values) > 1:
        raise ValidationError({name: f"give {name} once, not {len(values)} times"})
    return values[0] if values else None


def integer(request, name: str, *, minimum: int = 0) -> int | None:
    """An integer written in ASCII digits, at least `minimum`; None when absent."""
    value = query_param(request, name)
    if value is None:
        return None
    number = None
    if value.isascii() and value.isdigit():
        digits = value.lstrip("0") or "0"
        number = int(digits) if len(digits) <= LONGEST_EXACT_NUMBER else 10 ** LONGEST_EXACT_NUMBER
    if number is None or number < minimum:
        raise ValidationError({name: f"{name} must be an integer of at least {minimum}, not {value!r}"})
    return number


def choice(request, name: str, choices) -> str:
    """One of `choices`, or "" when absent or empty (no filter)."""
    value = query_param(request, name) or ""
    if value and value not in choices:
        raise ValidationError({name: f"unknown {name} {value!r}; expected one of {list(choices)}"})
    return value


def slug(request, name: str) -> str:
    """A slug (letters, digits, - and _), or "" when absent or empty (no filter)."""
    value = query_param(request, name) or ""
    if not re.fullmatch(f"{SLUG_CHARACTERS}*", value):
        raise ValidationError({name: f"{name} must be a slug (letters, digits, - and _), not {value!r}"})
    return value
