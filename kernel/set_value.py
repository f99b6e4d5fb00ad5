"""A ``--set`` VALUE, kept as text until the schema says what type it must be (then read as TOML, or as the
text itself), and what a value holding a NUL character is told."""

from __future__ import annotations

import tomllib
import types
import typing
from pathlib import Path
from typing import Any

import attrs

from heirloom.toml_bounds import TOO_LONG_INTEGER, check_nesting

HOLDS_NUL = "holds a NUL character (\\u0000)"


@attrs.frozen
class SetValue:
    """A ``--set`` value kept as text until the schema says what type it must be."""

    text: str

    def name(self) -> str:
        """The text as a name (a component's ``use``): stripped, and in TOML's quotes read as that TOML string,
        as a text setting is (``use="echo"`` was the type '"echo"', `` echo`` the type ' echo': checker h325 F2)."""
        try:
            value = SetValue(self.text.strip()).typed(str)
        except ValueError:  # in quotes but no TOML string: validation says so, naming the key
            return self.text.strip()
        return value if isinstance(value, str) else self.text.strip()

    def typed(self, tp: Any) -> Any:
        """The value for a field of type ``tp`` (text stays text, others parse as TOML); ValueError says why not."""
        text, args = self.text, typing.get_args(tp)
        unset = text.strip().lower() in ("none", "null")
        if typing.get_origin(tp) in (typing.Union, types.UnionType) and type(None) in args:
            if unset:
                return None
            others = [a for a in args if a is not type(None)]
            tp = others[0] if len(others) == 1 else Any
        elif unset and tp not in (str, Path, Any):  # README: --set key=null unsets an optional value
            raise ValueError(f"cannot be unset: it takes {tp.__name__ if isinstance(tp, type) else tp}")
        quoted = len(text) > 1 and text[0] == text[-1] and text[0] in "\"'"
        if tp in (str, Path) and not quoted:
            value = text  # one quoted as TOML writes it ("/srv/x") is read as TOML below: no quotes in a path
        elif tp is bool and text.strip() not in ("true", "false"):  # TOML's only two: yes, 1, TRUE were taken too
            raise ValueError(f"expected true or false (a TOML boolean), got {text.strip()!r}")
        else:
            check_nesting(text)  # as a file's: tomllib's recursion was a RecursionError's traceback
            try:
                value, *more = tomllib.loads(f"v = {text}").values()
            except tomllib.TOMLDecodeError:
                if quoted:  # it kept its quotes, silently: "ab\q" (a backslash TOML writes \\)
                    shown = text if text.isprintable() else ascii(text)
                    said = 'in "..." write \\\\ for a backslash and \\" for a quote, or write the text without quotes'
                    raise ValueError(f"{shown} is in quotes but no TOML string: {said}") from None
                value, more = text, []
            except ValueError:  # an integer Python cannot read: tomllib's words name no key
                raise ValueError(TOO_LONG_INTEGER) from None
            if more:  # '2\n[apis.x]\nuse = "echo"' set the table, unsaid
                raise ValueError(f"{text!a} is more than one TOML value: a line break before another key or table")
        if _holds_nul(value):  # "\u0000" in a quoted one or one in a list or table, or a NUL Kernel.resolve got
            raise ValueError(HOLDS_NUL)
        return value


def _holds_nul(value: Any) -> bool:
    """Whether a text, or a text, key or value inside a list or table, holds a NUL character."""
    inside = [*value, *value.values()] if isinstance(value, dict) else value if isinstance(value, list) else None
    return any(map(_holds_nul, inside)) if inside is not None else isinstance(value, str) and "\0" in value
