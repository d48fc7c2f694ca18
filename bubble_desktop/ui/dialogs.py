"""Small modal questions: a message box with named choices and Cancel, answered with the chosen key."""

from __future__ import annotations

from collections.abc import Sequence

from PySide6.QtWidgets import QMessageBox, QWidget

Choice = tuple[str, str, QMessageBox.ButtonRole]  # key, button text, role


def ask(
    parent: QWidget,
    *,
    title: str,
    text: str,
    choices: Sequence[Choice],
    informative: str = "",
    icon: QMessageBox.Icon = QMessageBox.Icon.Question,
    name: str = "",
    default: str = "",
) -> str:
    """Show a modal box with ``choices`` and Cancel; the key of the button pressed, "" for Cancel or
    a closed box. ``name`` is its objectName (tests find the box by it); ``default`` a choice's key."""
    box = QMessageBox(parent)
    if name:
        box.setObjectName(name)
    box.setIcon(icon)
    box.setWindowTitle(title)
    box.setText(text)
    if informative:
        box.setInformativeText(informative)
        # a list or a paragraph reads better than a column of a few words each (Qt sizes the box
        # from the main text, which is often one short question)
        box.setStyleSheet("QLabel#qt_msgbox_informativelabel { min-width: 340px; }")
    buttons = {key: box.addButton(label, role) for key, label, role in choices}
    box.addButton(QMessageBox.StandardButton.Cancel)
    if default:
        box.setDefaultButton(buttons[default])
    box.exec()
    clicked = box.clickedButton()
    box.deleteLater()  # answered: not left behind as a hidden child of ``parent``
    return next((key for key, button in buttons.items() if button is clicked), "")
