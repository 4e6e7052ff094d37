"""Form fields the dock widgets share."""
from __future__ import annotations

from qtpy.QtWidgets import QComboBox, QFormLayout


def device_choices() -> list[str]:
    """cpu, and cuda only where there is a GPU to run on."""
    import torch
    return ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def form_of(*rows) -> QFormLayout:
    """A form of (label, widget or layout) rows."""
    form = QFormLayout()
    for label, field in rows:
        form.addRow(label, field)
    return form


ENSEMBLE_SEP = " + "


class SavedFilesBox(QComboBox):
    """An editable choice of ``first`` (the built-in entry) and ``extras``, the files matching ``pattern`` in
    ``folder()`` (newest first by their timestamped names; shown by name, used by path), or any path
    typed. The folder is read again each time the list opens, so a file saved a minute ago is there."""

    def __init__(self, first: str, folder, pattern: str, extras=()):
        super().__init__()
        self.first, self.folder, self.pattern, self.extras = first, folder, pattern, tuple(extras)
        self.setEditable(True)
        self.refresh()
        self.select(first)

    def refresh(self):
        text = self.currentText()
        self.blockSignals(True)
        self.clear()
        self.addItem(self.first)
        for extra in self.extras:   # built-in entries after the first
            self.addItem(extra)
        saved = self.folder()
        for path in sorted(saved.glob(self.pattern), reverse=True) if saved.is_dir() else []:
            self.addItem(path.name, str(path))
        self.select(text)
        self.blockSignals(False)

    def select(self, text: str):
        """Make ``text`` the choice: its entry when listed (an editable box's setCurrentText would only
        set the text, leaving the index where it was), else the typed text."""
        i = self.findText(text)
        if i >= 0:
            self.setCurrentIndex(i)
        else:
            self.setEditText(text)

    def showPopup(self):
        self.refresh()
        super().showPopup()

    def choice(self) -> str:
        """A listed file's path, what was typed, or ``first`` when nothing is."""
        return self._resolve(self.currentText().strip())

    def _resolve(self, text: str) -> str:
        i = self.findText(text)
        return (self.itemData(i) or text) if i >= 0 else (text or self.first)

    def choices(self) -> list[str]:
        """Several files joined by " + " (an ensemble), each resolved as ``choice`` does."""
        return [self._resolve(part.strip()) for part in self.currentText().split(ENSEMBLE_SEP)]
