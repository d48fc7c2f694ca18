"""Languages: install the app's and Qt's own translators for English or Simplified Chinese.

The language comes from Settings → Appearance → Language: "system" follows the OS locale (any
Chinese locale gets Simplified Chinese, everything else English). A change in the settings applies
when the app is next started (widgets take their texts when they are built); ``install_translator``
may still be called again at run time and then affects every widget created afterwards.

Our strings: ``resources/i18n/bubble_zh_CN.qm`` (built from the .ts by
``resources/i18n/update_translations.py``). Qt's standard dialogs and buttons: ``qtbase_zh_CN.qm``
from PySide6's own translations folder (bundled by PyInstaller's PySide6 hook). Core's messages:
their templates (``ui/core_strings.py``, generated) in context "core", matched by ``core.i18n``.
"""

from __future__ import annotations

import logging
from pathlib import Path

from PySide6.QtCore import (
    QCoreApplication,
    QLibraryInfo,
    QLocale,
    QTranslator,
)

from bubble_desktop.core.i18n import Catalog, set_translator
from bubble_desktop.ui.resources import resource_path


def QT_TRANSLATE_NOOP(context: str, source_text: str) -> str:  # noqa: N802 - Qt's marker, by name
    """Qt's QT_TRANSLATE_NOOP, typed (PySide6's stub says it returns ``object``): marks a text for
    pyside6-lupdate, which finds the calls by their name, and returns it unchanged."""
    return source_text


log = logging.getLogger(__name__)

SUPPORTED = ("en", "zh_CN")
# Qt 6's QFileDialog asks for "&Look in:" and "Files of &type:"; PySide6's qtbase_zh_CN.qm only has
# the older "Look in:" / "Files of type:", so those two labels stayed English. Our .qm carries them
# (Qt asks the translators installed later first, and qtbase_zh_CN.qm is installed after ours).
QT_GAPS = (
    QT_TRANSLATE_NOOP("QFileDialog", "&Look in:"),
    QT_TRANSLATE_NOOP("QFileDialog", "Files of &type:"),
    QT_TRANSLATE_NOOP("QAbstractFileIconProvider", "Drive"),
    QT_TRANSLATE_NOOP("QAbstractFileIconProvider", "Unknown"),
)
# ... and the file dialog's Type column ("Folder"): Qt asks with a disambiguation, which lupdate cannot
# read from Python, so update_translations.py adds those (zh_CN.py QT_DISAMBIGUATED) to the .ts itself.
_TRANSLATOR_NAME = "bubble-translator"


def resolve_language(setting: str, system_locale: QLocale | None = None) -> str:
    """``en`` or ``zh_CN`` for a Settings language value (system/zh_CN/en)."""
    if setting in SUPPORTED:
        return setting
    locale = system_locale or QLocale.system()
    if locale.language() == QLocale.Language.Chinese:
        return "zh_CN"
    for name in locale.uiLanguages():  # e.g. LANGUAGE=zh_CN:en on Linux
        if name.lower().startswith("zh"):
            return "zh_CN"
        if name.lower().startswith("en"):
            break
    return "en"


def interface_locale(language: str, system_locale: QLocale | None = None) -> QLocale:
    """The locale numbers and dates are written in: the interface language's. English keeps the
    system's English variant (en_GB dates stay British); the C/POSIX locale (C.UTF-8 on servers and
    containers) is no language at all and wrote dates as "2 12 2026 06:14": it gets en_US."""
    if language == "zh_CN":
        return QLocale(QLocale.Language.Chinese, QLocale.Country.China)
    system = system_locale or QLocale.system()
    if system.language() == QLocale.Language.English:
        return system
    return QLocale(QLocale.Language.English, QLocale.Country.UnitedStates)


def _qt_translations_dirs() -> list[Path]:
    dirs = [Path(QLibraryInfo.path(QLibraryInfo.LibraryPath.TranslationsPath))]
    try:
        import PySide6

        dirs.append(Path(PySide6.__file__).parent / "Qt" / "translations")
    except (ImportError, TypeError):  # pragma: no cover - PySide6 is always there
        pass
    return dirs


def _core_catalog() -> Catalog:
    from bubble_desktop.ui.core_strings import STRINGS

    return Catalog([str(s) for s in STRINGS], _translate_core)  # generated with Qt's untyped marker


def _translate_core(template: str) -> str:
    return QCoreApplication.translate("core", template)


def install_translator(app: QCoreApplication, language: str = "system") -> str:
    """Install translators for ``language`` (replacing earlier ones); returns the language used."""
    resolved = resolve_language(language)
    for old in app.findChildren(QTranslator, _TRANSLATOR_NAME):
        QCoreApplication.removeTranslator(old)
        old.deleteLater()
    set_translator(None)
    QLocale.setDefault(interface_locale(resolved))
    if resolved == "en":
        return resolved
    loaded = False
    own = QTranslator(app)
    own.setObjectName(_TRANSLATOR_NAME)
    qm = resource_path("i18n", f"bubble_{resolved}.qm")
    if own.load(str(qm)):
        QCoreApplication.installTranslator(own)
        loaded = True
        set_translator(_core_catalog())
    else:
        log.warning("translation %s not found; the interface stays in English", qm)
        own.deleteLater()
    for stem in (f"qtbase_{resolved}", f"qt_{resolved}"):
        qt = QTranslator(app)
        qt.setObjectName(_TRANSLATOR_NAME)
        if any(qt.load(stem, str(d)) for d in _qt_translations_dirs()):
            QCoreApplication.installTranslator(qt)
            break
        qt.deleteLater()
    return resolved if loaded else "en"
