"""Refresh the translations: settings strings -> lupdate -> fill Chinese -> lrelease.

    .venv/bin/python resources/i18n/update_translations.py          # update .ts and .qm
    .venv/bin/python resources/i18n/update_translations.py --check  # exit 1 if anything is untranslated

1. Writes ``bubble_desktop/ui/settings_strings.py``: every settings title and description (from
   ``core.settings.field_info``) as ``QT_TRANSLATE_NOOP("settings", ...)`` so lupdate sees them.
   Writes ``bubble_desktop/ui/core_strings.py``: every message template of ``bubble_desktop/core``
   (see ``core/i18n.py``; collected by :func:`core_templates`) as ``QT_TRANSLATE_NOOP("core", ...)``.
2. Runs ``pyside6-lupdate`` over ``bubble_desktop/ui`` and ``bubble_desktop/app.py`` into
   ``bubble_zh_CN.ts`` (obsolete entries dropped, no line numbers: stable diffs).
3. Fills each entry from ``zh_CN.py`` (our Chinese, reviewed by hand) and marks it finished.
4. Runs ``pyside6-lrelease`` to build ``bubble_zh_CN.qm``, which the app loads.
"""

from __future__ import annotations

import argparse
import ast
import importlib.util
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
TS = HERE / "bubble_zh_CN.ts"
QM = HERE / "bubble_zh_CN.qm"
SETTINGS_STRINGS = ROOT / "bubble_desktop" / "ui" / "settings_strings.py"
CORE_STRINGS = ROOT / "bubble_desktop" / "ui" / "core_strings.py"
CORE = ROOT / "bubble_desktop" / "core"
PROGRESS_CALLS = {"progress", "_progress", "report"}


def _tool(name: str) -> str:
    local = Path(sys.executable).parent / name
    found = str(local) if local.exists() else shutil.which(name)
    if not found:
        raise SystemExit(f"{name} not found (pip install PySide6-Essentials)")
    return found


def _ruff_format(text: str, path: Path) -> str:
    """``text`` in the house format (CI runs ruff format --check); as is where ruff is not installed."""
    done = subprocess.run(
        [sys.executable, "-m", "ruff", "format", "--stdin-filename", str(path), "-"],
        input=text,
        capture_output=True,
        text=True,
        encoding="utf-8",
        check=False,
    )
    return done.stdout if done.returncode == 0 and done.stdout else text


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _templates(node: ast.AST, top: bool = True) -> list[str]:
    """The templates an expression can produce: f-string fields become ``{expression}``."""
    if isinstance(node, ast.Constant) and isinstance(node.value, str):
        return [node.value]
    if isinstance(node, ast.JoinedStr):
        text = ""
        for part in node.values:
            if isinstance(part, ast.Constant):
                text += str(part.value)
            elif isinstance(part, ast.FormattedValue):
                text += "{" + ast.unparse(part.value) + "}"
        return [text]
    if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Add):
        return [a + b for a in _templates(node.left, False) for b in _templates(node.right, False)]
    if isinstance(node, ast.IfExp):
        return _templates(node.body, top) + _templates(node.orelse, top)
    if isinstance(node, ast.BoolOp):  # "' '.join(errors) or 'No source to try.'"
        return [t for value in node.values for t in _templates(value, top)]
    if isinstance(node, ast.Call) and _name(node.func) == "N_" and node.args:
        return _templates(node.args[0], top)
    return [] if top else ["{" + ast.unparse(node) + "}"]


def core_templates() -> list[str]:
    """Every user-facing template of ``bubble_desktop/core``, in source order, read with ``ast``:
    the message and hint given to a ``UserFacingError`` subclass, its ``default_hint``, the text of
    a progress callback (``progress(0.1, "Loading the tokenizer")``), and the argument of every
    ``N_(...)``. Templates without a letter outside their fields are left out."""
    trees = {path: ast.parse(path.read_text(encoding="utf-8")) for path in sorted(CORE.rglob("*.py"))}
    errors = {"UserFacingError"}
    while True:  # subclasses, wherever in core they are defined
        found = {
            cls.name
            for tree in trees.values()
            for cls in ast.walk(tree)
            if isinstance(cls, ast.ClassDef) and any(_name(b) in errors for b in cls.bases)
        }
        if found <= errors:
            break
        errors |= found
    out: list[str] = []
    for tree in trees.values():
        for node in ast.walk(tree):
            exprs: list[ast.AST] = []
            if isinstance(node, ast.Call) and _name(node.func) in errors:
                exprs = list(node.args[:2]) + [k.value for k in node.keywords if k.arg in ("message", "hint")]
            elif isinstance(node, ast.Call) and _name(node.func) == "N_":
                exprs = node.args[:1]
            elif isinstance(node, ast.Call) and _name(node.func) in PROGRESS_CALLS and node.args:
                exprs = node.args[-1:]  # progress(fraction, "what is being done"), shown while loading
            elif isinstance(node, ast.ClassDef) and node.name in errors:
                exprs = [
                    a.value
                    for a in node.body
                    if isinstance(a, ast.Assign) and any(_name(t) == "default_hint" for t in a.targets)
                ]
            for expr in exprs:
                for text in _templates(expr):
                    literal = re.sub(r"\{[^{}]+\}", "", text)
                    if re.search(r"[A-Za-z]{2}", literal) and text not in out:
                        out.append(text)
    return out


def core_strings_source() -> str:
    """The text of core_strings.py for the current core sources."""
    lines = [
        '"""GENERATED by resources/i18n/update_translations.py — do not edit.',
        "",
        "Every message template of bubble_desktop/core (see core/i18n.py), so pyside6-lupdate puts them in",
        'the .ts file; ui/i18n.py matches finished texts against them and translates in context "core".',
        '"""',
        "",
        "from PySide6.QtCore import QT_TRANSLATE_NOOP",
        "",
        "STRINGS = (",
        *(f'    QT_TRANSLATE_NOOP("core", {text!r}),' for text in core_templates()),
        ")",
    ]
    return _ruff_format("\n".join(lines) + "\n", CORE_STRINGS)


def settings_strings_source() -> str:
    """The text of settings_strings.py for the current settings models."""
    sys.path.insert(0, str(ROOT))
    from bubble_desktop.core.settings import SECTIONS, field_info

    lines = [
        '"""GENERATED by resources/i18n/update_translations.py — do not edit.',
        "",
        "Titles and descriptions of every settings field, so pyside6-lupdate puts them in the .ts file;",
        'the settings dialog translates them at display time with QCoreApplication.translate("settings", …).',
        '"""',
        "",
        "from PySide6.QtCore import QT_TRANSLATE_NOOP",
        "",
        "STRINGS = (",
    ]
    seen: set[str] = set()
    for section, model in SECTIONS.items():
        lines.append(f"    # {section}")
        for info in field_info(model):
            for text in (info["title"], info["description"]):
                if text and text not in seen:
                    seen.add(text)
                    lines.append(f'    QT_TRANSLATE_NOOP("settings", {text!r}),')
    lines.append(")")
    return _ruff_format("\n".join(lines) + "\n", SETTINGS_STRINGS)


def sources() -> list[str]:
    ui = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "bubble_desktop" / "ui").rglob("*.py"))
    return [*ui, "bubble_desktop/app.py"]


def load_dictionary() -> tuple[dict[str, str], dict[tuple[str, str], str]]:
    spec = importlib.util.spec_from_file_location("zh_CN", HERE / "zh_CN.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    by_context = dict(getattr(module, "CONTEXT_TRANSLATIONS", {}))
    by_context.update({("core", k): v for k, v in getattr(module, "CORE_TRANSLATIONS", {}).items()})
    return dict(module.TRANSLATIONS), by_context


def tr_owners() -> dict[str, str]:
    """Source text -> the context Qt will look it up in, for texts lupdate may lose the context of.

    Two patterns, read with ``ast``: ``tr("...")`` through a local helper ``def tr(text): return
    QCoreApplication.translate("Ctx", text)`` (context "Ctx"), then ``self.tr("...")`` inside a class
    (context = class name). The first owner found wins.
    """

    def is_str(node: ast.AST) -> bool:
        return isinstance(node, ast.Constant) and isinstance(node.value, str)

    helper_owned: dict[str, str] = {}
    class_owned: dict[str, str] = {}
    for rel in sources():
        tree = ast.parse((ROOT / rel).read_text(encoding="utf-8"))
        for scope in ast.walk(tree):
            if not isinstance(scope, (ast.FunctionDef, ast.Module)):
                continue
            context = None
            for inner in scope.body:
                if isinstance(inner, ast.FunctionDef) and inner.name == "tr":
                    for call in ast.walk(inner):
                        if (
                            isinstance(call, ast.Call)
                            and isinstance(call.func, ast.Attribute)
                            and call.func.attr == "translate"
                            and call.args
                            and is_str(call.args[0])
                        ):
                            context = call.args[0].value
            if context:
                for call in ast.walk(scope):
                    if (
                        isinstance(call, ast.Call)
                        and isinstance(call.func, ast.Name)
                        and call.func.id == "tr"
                        and call.args
                        and is_str(call.args[0])
                    ):
                        helper_owned.setdefault(call.args[0].value, context)
        for cls in (n for n in ast.walk(tree) if isinstance(n, ast.ClassDef)):
            for call in ast.walk(cls):
                if (
                    isinstance(call, ast.Call)
                    and isinstance(call.func, ast.Attribute)
                    and call.func.attr == "tr"
                    and call.args
                    and is_str(call.args[0])
                ):
                    class_owned.setdefault(call.args[0].value, cls.name)
    return {**class_owned, **helper_owned}


def repair_contexts(root: ET.Element) -> None:
    """Give messages that lupdate left without a context (it loses track after a class nested in
    a function) the class their ``self.tr`` call is in, which is what Qt looks up at run time."""
    contexts = {c.findtext("name") or "": c for c in root.iter("context")}
    orphans = contexts.get("")
    if orphans is None:
        return
    owners = tr_owners()
    for message in list(orphans.iter("message")):
        owner = owners.get(message.findtext("source") or "")
        if not owner:
            continue
        if owner not in contexts:
            contexts[owner] = ET.SubElement(root, "context")
            ET.SubElement(contexts[owner], "name").text = owner
        orphans.remove(message)
        source = message.findtext("source")
        if not any(m.findtext("source") == source for m in contexts[owner].iter("message")):
            contexts[owner].append(message)
    if not orphans.findall("message"):
        root.remove(orphans)


def add_disambiguated(root: ET.Element) -> None:
    """Add zh_CN.QT_DISAMBIGUATED (Qt's texts looked up with a disambiguation) to the .ts."""
    spec = importlib.util.spec_from_file_location("zh_CN", HERE / "zh_CN.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    contexts = {c.findtext("name") or "": c for c in root.iter("context")}
    for (name, source, comment), text in getattr(module, "QT_DISAMBIGUATED", {}).items():
        if name not in contexts:
            contexts[name] = ET.SubElement(root, "context")
            ET.SubElement(contexts[name], "name").text = name
        message = ET.SubElement(contexts[name], "message")
        ET.SubElement(message, "source").text = source
        ET.SubElement(message, "comment").text = comment
        ET.SubElement(message, "translation").text = text


def fill(ts_path: Path) -> list[tuple[str, str]]:
    """Put our Chinese into every message; returns (context, source) pairs we have no text for."""
    plain, by_context = load_dictionary()
    tree = ET.parse(ts_path)
    repair_contexts(tree.getroot())
    add_disambiguated(tree.getroot())
    missing = []
    for context in tree.getroot().iter("context"):
        name = context.findtext("name") or ""
        for message in context.iter("message"):
            source = message.findtext("source") or ""
            text = by_context.get((name, source), plain.get(source))
            translation = message.find("translation")
            if translation is None:
                translation = ET.SubElement(message, "translation")
            if text is None:
                has_text = (translation.text or "").strip() or any(
                    (f.text or "").strip() for f in translation
                )
                if not has_text or translation.get("type") in ("unfinished", "vanished", "obsolete"):
                    missing.append((name, source))
                continue
            translation.attrib.pop("type", None)
            for child in list(translation):
                translation.remove(child)
            if message.get("numerus") == "yes":
                translation.text = None
                form = ET.SubElement(translation, "numerusform")
                form.text = text
            else:
                translation.text = text
    ET.indent(tree, space="    ")
    body = ET.tostring(tree.getroot(), encoding="unicode")
    ts_path.write_text(
        '<?xml version="1.0" encoding="utf-8"?>\n<!DOCTYPE TS>\n' + body + "\n", encoding="utf-8"
    )
    return missing


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail when an entry has no translation")
    args = parser.parse_args(argv)
    SETTINGS_STRINGS.write_text(settings_strings_source(), encoding="utf-8")
    CORE_STRINGS.write_text(core_strings_source(), encoding="utf-8")
    subprocess.run(
        [
            _tool("pyside6-lupdate"),
            *sources(),
            "-no-obsolete",
            "-locations",
            "none",
            "-source-language",
            "en",
            "-target-language",
            "zh_CN",
            "-ts",
            str(TS),
        ],
        cwd=ROOT,
        check=True,
    )
    missing = fill(TS)
    subprocess.run([_tool("pyside6-lrelease"), str(TS), "-qm", str(QM)], cwd=ROOT, check=True)
    for context, source in missing:
        print(f"untranslated [{context}] {source!r}")
    print(f"{len(missing)} untranslated entries")
    return 1 if (missing and args.check) else 0


if __name__ == "__main__":
    sys.exit(main())
