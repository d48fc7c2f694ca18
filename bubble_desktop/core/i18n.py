"""Translating core's messages without Qt: a gettext-like marker, a hook and template matching.

Core writes its user-facing texts in English, as plain strings or f-strings. The *template* of a
text is its source with each f-string field kept as ``{expression}`` (``f"broken {enc} text"`` ->
``"broken {enc} text"``); it is the stable id of the message. ``resources/i18n/update_translations.py``
collects every template from the source (with ``ast``: the arguments of ``UserFacingError``
subclasses, their ``default_hint``, and every ``N_(...)``) into the .ts file, where each gets its
Chinese with the fields written by position: ``{0}`` is the template's first field, ``{1}`` the next.

At run time the UI installs a translator with :func:`set_translator`. :func:`localize` finds the
template a finished text was made from (an exact match, else the most specific template whose
fields can be filled so that it reads the same) and formats the translation with the recovered
field values. ``UserFacingError`` localizes its message and hint when it is made, so every place
that shows one gets the user's language; texts that are stored or passed on as plain strings
(failed-file reasons, answer notices) are marked with :func:`N_` and localized where they are shown.
Without a translator (the CLI, the API, tests) everything stays English.
"""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Callable, Iterable

FIELD = re.compile(r"\{([^{}]+)\}")

_lock = threading.Lock()
_translate: Callable[[str], str] | None = None


def N_(text: str) -> str:  # noqa: N802 - the gettext name, so the marker reads as one
    """Mark ``text`` (a string or f-string) as user-facing; returns it unchanged."""
    return text


def set_translator(translate: Callable[[str], str] | None) -> None:
    """Install (or with ``None`` remove) the function that localizes finished texts."""
    global _translate
    with _lock:
        _translate = translate


def localize(text: str) -> str:
    """``text`` in the user's language, or unchanged when there is no translator or translation."""
    translate = _translate
    if translate is None or not text:
        return text
    try:
        return translate(text)
    except Exception:  # noqa: BLE001 - a translation bug must never hide the message itself
        return text


def _field(match: re.Match[str], values: list[str]) -> str:
    key = match.group(1)
    return values[int(key)] if key.isdigit() and int(key) < len(values) else match.group(0)


class Catalog:
    """Templates and their translations; turns a finished English text into the translated one."""

    def __init__(self, templates: Iterable[str], lookup: Callable[[str], str]) -> None:
        self._lookup = lookup
        self._exact: set[str] = set()
        patterns: list[tuple[int, str, re.Pattern[str], list[str]]] = []
        for template in dict.fromkeys(templates):
            fields = FIELD.findall(template)
            if not fields:
                self._exact.add(template)
                continue
            literal = FIELD.sub("", template)
            if len(literal.strip()) < 3:  # "{a}: {b}" would match nearly anything
                continue
            regex = "".join(
                re.escape(part) if i % 2 == 0 else "(.+?)" for i, part in enumerate(FIELD.split(template))
            )
            patterns.append((len(literal), template, re.compile(regex + r"\Z", re.DOTALL), fields))
        patterns.sort(key=lambda p: -p[0])  # the most specific template wins
        self._patterns = patterns

    def __call__(self, text: str, depth: int = 0) -> str:
        if text in self._exact:
            return self._lookup(text)
        for _, template, pattern, _fields in self._patterns:
            match = pattern.match(text)
            if match is None:
                continue
            translated = self._lookup(template)
            if translated == template:
                return text
            # a field can hold another of our texts ("Knowledge-base search failed ({message})")
            values = [self(v, depth + 1) if depth < 2 else v for v in match.groups()]
            return FIELD.sub(functools.partial(_field, values=values), translated)
        return text
