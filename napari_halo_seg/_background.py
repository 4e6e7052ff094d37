"""What the automatic and objects widgets share: their heavy work runs in a napari worker thread,
with a Run and a Cancel button, a progress bar fed from the worker through Qt's queue, and a status
line where results and errors are reported (the user's layers are untouched by an error)."""
from __future__ import annotations

import threading

from qtpy.QtCore import QObject, Signal
from qtpy.QtWidgets import QHBoxLayout, QLabel, QProgressBar, QPushButton, QVBoxLayout, QWidget



class _Bridge(QObject):
    progressed = Signal(int, int, str)   # done, total, message: from the worker thread to the GUI


class BackgroundWidget(QWidget):
    def __init__(self, napari_viewer, run_text: str):
        super().__init__()
        self.viewer = napari_viewer
        self.worker = None
        self._cancel = threading.Event()
        self._bridge = _Bridge()
        self._bridge.progressed.connect(self._on_progress)
        self.run_btn = QPushButton(run_text)
        self.run_btn.clicked.connect(self.run)
        self.cancel_btn = QPushButton("Cancel")
        self.cancel_btn.setEnabled(False)
        self.cancel_btn.clicked.connect(self.cancel)
        self.progress = QProgressBar()
        self.status = QLabel("")
        self.status.setWordWrap(True)

    def _lay_out(self, form, *more_buttons):
        buttons = QHBoxLayout()
        for b in (self.run_btn, self.cancel_btn) + more_buttons:
            buttons.addWidget(b)
        lay = QVBoxLayout(self)
        lay.addLayout(form)
        lay.addLayout(buttons)
        lay.addWidget(self.progress)
        lay.addWidget(self.status)
        lay.addStretch()

    def run(self):
        raise NotImplementedError

    def _chosen_pair(self, first, second, missing: str, same: str):
        """The layers chosen in the combo boxes ``first`` and ``second``, or None with the status line
        saying why not: busy, a choice ``missing``, or the ``same`` layer twice."""
        if self.worker is not None:
            self.status.setText("busy: wait or press Cancel")
            return None
        a, b = first.currentText(), second.currentText()
        if not a or not b or a == b:
            self.status.setText(missing if not a or not b else same)
            return None
        return self.viewer.layers[a], self.viewer.layers[b]

    def _on_progress(self, done, total, msg=""):
        self.progress.setMaximum(total)
        self.progress.setValue(done)
        if msg:
            self.status.setText(msg)

    def progress_callback(self, done, total, msg: str = ""):
        """For the worker: reports progress through Qt's queue (never touches widgets itself)."""
        self._bridge.progressed.emit(int(done), int(total), str(msg))

    def cancel(self):
        self._cancel.set()
        self.status.setText("cancelling ...")

    def _start(self, message: str, fn, *args, on_done, **kwargs):
        """Run fn(*args, **kwargs) in a worker; it returns (value, exception) and on_done gets that pair."""
        from napari.qt.threading import create_worker
        self._cancel.clear()
        self.run_btn.setEnabled(False)
        self.cancel_btn.setEnabled(True)
        self.progress.setMaximum(0)   # busy until the first report
        self.status.setText(message)
        self.worker = create_worker(fn, *args, **kwargs)
        self.worker.returned.connect(on_done)
        self.worker.errored.connect(self._failed)
        self.worker.finished.connect(self._finished)
        self.worker.start()

    def _failed(self, exc, cancelled_types=(InterruptedError,)):
        self.progress.setMaximum(1)
        self.progress.setValue(0)
        self.status.setText(("cancelled" if isinstance(exc, cancelled_types) else "failed") + f": {exc}")

    def _succeeded(self, text: str):
        self.progress.setMaximum(1)
        self.progress.setValue(1)
        self.status.setText(text)

    def _finished(self):
        self.run_btn.setEnabled(True)
        self.cancel_btn.setEnabled(False)
        self.worker = None
