"""jsonb arguments as Python values: every way JSON can defeat Python's parser (nesting
past the recursion limit, an integer of thousands of digits) is a clear 22023."""

from __future__ import annotations

import json

from .errors import INVALID_PARAMETER_VALUE, PgmodelsError


def read_json(text: str, what: str, plural: bool = False, parse_constant=None):
    verb = "are" if plural else "is"
    try:
        return json.loads(text, parse_constant=parse_constant)
    except RecursionError:
        raise PgmodelsError(f"{what} {verb} nested too deeply", sqlstate=INVALID_PARAMETER_VALUE) from None
    except ValueError as e:  # an integer of thousands of digits, or not JSON at all
        raise PgmodelsError(f"{what} could not be read", detail=str(e)[:200] + ".",
                            sqlstate=INVALID_PARAMETER_VALUE) from None
