"""A user's steps in the interactive widget that several tests take (a helper module, not a test file)."""


def split_label(viewer, qtbot, w, layer, label: int) -> None:
    """Edit label ``label`` of ``layer``, then Commit as two, each waited for."""
    viewer.layers.selection.active = layer
    layer.selected_label = label
    for step in (w.edit_label, w.commit_as_two):
        step()
        assert w.worker is not None, w.status.text()
        qtbot.waitUntil(lambda: w.worker is None, timeout=120_000)
