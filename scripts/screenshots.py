"""Make the README screenshots: napari with the Colin27 sample, the default model's labels from the
halo engine (2 ranks) and the automatic-segmentation dock widget; and the interactive widget after
a box on the left thalamus, propagation and one correction on the recommended slice; and the same
widget after "Learn from objects" on three committed objects, segmenting a fourth; and the left
caudate prompted with one box on a coronal slice and propagated across the coronal slices.
`colin27`, `coronal`, `train`, `finetune`, `review`, `compare`, `one_mm`, `edit`, `strokes` or `named` as the argument
makes only that one (edit: Edit label on a mirrored atlas's left hippocampus, two painted slices, one propagation;
finetune: the training widget fine-tuning the default model into three new classes; review: a
mirrored automatic run, its uncertainty over the labels on the first slice to review; compare: the default
model's labels against the sample's own, on deep grey matter's worst slice; one_mm: the 1 mm Colin27 scan
from ../shared/data opened from its NIfTI, segmented by the 2 mm default model at its own voxel size;
strokes: a stroke correcting the left putamen's box-segmented slice; named: objects named as they are committed;
channels: a network of two input channels segmenting a two-channel stack; timelapse: every time point
of a (T, Z, Y, X) TIFF segmented into one (T, Z, Y, X) Labels layer; tracking: the Objects widget
following procedural dividing cells over time, in 3D with their tracks; track_edit: the Edit tracks
widget taking a daughter's mother away; interactive_lineage: a cell followed by Next time point through her
division, tracked keeping those links; interactive_paths: the same cell's paths as the interactive widget drew
them while she was followed; interactive_all: a field of cells carried on with All to next time point;
interactive_new_cells: a cell that came into the field, marked after All to next time point;
interactive_left_out: a touching cell an object grew over, left out of it and written as its own object;
split_merged: three merged nuclei of one label taken apart by Commit as two, twice).

    xvfb-run -a .venv/bin/python scripts/screenshots.py [colin27|coronal|train|finetune|review|compare|one_mm|edit|strokes|named|channels|timelapse|tracking|track_edit|interactive_timelapse|interactive_division|interactive_lineage|interactive_paths|interactive_all|interactive_new_cells|interactive_left_out|split_merged]
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import napari
import numpy as np
from qtpy.QtWidgets import QApplication

from halo_seg.samples import load_colin27_sample
from napari_halo_seg._auto_widget import AutoSegmentWidget

OUT = Path(__file__).resolve().parent.parent / "docs" / "images"


def main():
    OUT.mkdir(parents=True, exist_ok=True)
    s = load_colin27_sample()
    colin27(s)
    interactive(s)


def colin27(s):
    """The automatic widget after the default model's run on 2 ranks, labels over the sample."""
    _automatic(lambda v: v.add_image(s.image, name="colin27 T1", scale=s.spacing, metadata={"unit": "mm"}),
               2.0 * 40, "napari_colin27.png")


def one_mm(_s):
    """The automatic widget on the 1 mm scan, read from its file: the network ran at 2 mm."""
    from halo_seg.samples import shared_data_dir
    _automatic(lambda v: v.open(str(shared_data_dir() / "colin27" / "ch2.nii.gz"), plugin="napari-halo-seg"),
               80.0, "napari_1mm.png")


def _automatic(add_image, z_world, name):
    """A viewer with the image ``add_image`` adds, segmented by the automatic widget, shot at ``z_world``."""
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 800)
    add_image(viewer)
    w = AutoSegmentWidget(viewer)
    viewer.window.add_dock_widget(w, name="Automatic segmentation")
    w.output.setText(str(Path(tempfile.mkdtemp()) / "labels.zarr"))
    w.run()
    _wait(w)
    viewer.layers[-1].opacity = 0.5
    viewer.dims.set_point(0, z_world)
    _shoot(viewer, w, name)


def _shoot(viewer, widget, name):
    for _ in range(5):
        QApplication.processEvents()
    img = viewer.screenshot(canvas_only=False, flash=False)
    import imageio.v3 as iio
    iio.imwrite(OUT / name, img)
    print("status:", widget.status.text())
    print("wrote", OUT / name, img.shape, "std", float(np.std(img)))
    viewer.close()


def _wait(w):
    while w.worker is not None:
        QApplication.processEvents()


def _interactive_viewer(s):
    from napari_halo_seg._interactive_widget import InteractiveWidget
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 850)
    viewer.add_image(s.image, name="colin27 T1", scale=s.spacing, metadata={"unit": "mm"})   # as the sample opens
    w = InteractiveWidget(viewer)
    viewer.window.add_dock_widget(w, name="Interactive segmentation")
    w.device.setCurrentText("cpu")
    w.ensure_prompt_layers()
    return viewer, w


def _box(viewer, truth, z):
    from halo_seg.interactive.roi import mask_bbox
    y0, x0, y1, x1 = mask_bbox(truth[z])
    viewer.layers["box"].add_rectangles(np.array([[z, y0, x0], [z, y0, x1], [z, y1, x1], [z, y1, x0]], float))


def _box_on_largest_slice(viewer, w, truth) -> int:
    z = int(truth.sum((1, 2)).argmax())
    w.goto_slice(z)
    _box(viewer, truth, z)
    w.propagate()
    _wait(w)
    return z


def _frame(viewer, s, truth, z):
    viewer.camera.zoom = 3.0
    viewer.camera.center = (0, *(np.argwhere(truth[z]).mean(0) * s.spacing[1:]))


def interactive(s):
    viewer, w = _interactive_viewer(s)
    truth = s.labels == 77
    z = _box_on_largest_slice(viewer, w, truth)
    r = w.recommended
    if r is not None and truth[r].any():
        w.goto_slice(r)
        _box(viewer, truth, r)
        w.propagate()
        _wait(w)
    w.goto_slice(z)
    _frame(viewer, s, truth, z)
    _shoot(viewer, w, "napari_interactive.png")
    learned(s)


def learned(s):
    viewer, w = _interactive_viewer(s)
    # three objects as if segmented and committed: both caudates and the left putamen
    viewer.layers["objects"].data = np.where(np.isin(s.labels, (71, 72, 73)), s.labels, 0).astype(np.uint16)
    w.learn_quality()
    _wait(w)
    status = w.status.text()
    truth = s.labels == 74
    z = _box_on_largest_slice(viewer, w, truth)
    w.status.setText(status + "; " + w.status.text())
    _frame(viewer, s, truth, z)
    _shoot(viewer, w, "napari_learned.png")
    coronal(s)


def coronal(s):
    """The left caudate in coronal slices (on the 1 mm benchmark one box gives 0.64 there against 0.38
    axially): the dims rolled so that napari shows (Z, X) slices across Y, one box, one propagation."""
    viewer, w = _interactive_viewer(s)
    truth = s.labels == 71
    viewer.dims.order = (1, 0, 2)
    viewer.camera.orientation2d = ("up", "right")       # superior at the top
    y = int(truth.sum((0, 2)).argmax())
    w.goto_slice(y)
    from halo_seg.interactive.roi import mask_bbox
    z0, x0, z1, x1 = mask_bbox(truth[:, y, :])
    viewer.layers["box"].add_rectangles(np.array([[z0, y, x0], [z0, y, x1], [z1, y, x1], [z1, y, x0]], float))
    w.propagate()
    _wait(w)
    from halo_seg.metrics import dice
    pred = np.asarray(viewer.layers["current object"].data) > 0
    print(f"caudate from one coronal box: Dice {dice(pred, truth):.3f}")
    viewer.camera.zoom = 3.0
    viewer.camera.center = (0, *(np.argwhere(truth[:, y, :]).mean(0) * np.asarray(s.spacing)[[0, 2]]))
    _shoot(viewer, w, "napari_coronal.png")


def train(s):
    """The training widget after a short run on the sample's subcortical structures (one class)."""
    _training(s, (s.labels > 0).astype(np.uint8), "deep grey matter", "random weights", 40, "napari_train.png")


def finetune(s):
    """The training widget fine-tuning the default model (brain, deep grey) into three new classes of
    the sample: striatum and pallidum, thalamus, hippocampus and amygdala (AAL), 300 iterations."""
    groups = np.zeros(s.labels.shape, np.uint8)
    for k, ids in ((1, (71, 72, 73, 74, 75, 76)), (2, (77, 78)), (3, (37, 38, 41, 42))):
        groups[np.isin(s.labels, ids)] = k
    _training(s, groups, "three structures", "default", 36, "napari_finetune.png")


def _training(s, labels, name, start_from, z, out):
    """The training widget after 300 iterations on ``labels`` from ``start_from``, the new model's
    labels shown alone on slice ``z``."""
    from napari_halo_seg._train_widget import TrainWidget
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 800)
    viewer.add_image(s.image, name="colin27 T1", scale=s.spacing, metadata={"unit": "mm"})
    viewer.add_labels(labels, name=name, scale=s.spacing, opacity=0.5)
    w = TrainWidget(viewer)
    viewer.window.add_dock_widget(w, name="Train a model")
    w.image.setCurrentText("colin27 T1")
    w.labels.setCurrentText(name)
    w.start_from.setCurrentText(start_from)
    w.iterations.setValue(300)
    w.run()
    _wait(w)
    viewer.layers[name].visible = False
    viewer.dims.set_point(0, 2.0 * z)
    _shoot(viewer, w, out)


def edit(s):
    """Edit label: the left hippocampus of a mirrored atlas (the right one's labels flipped left-right),
    corrected by two painted slices, each the slice with the most wrong voxels, and one propagation."""
    viewer, w = _interactive_viewer(s)
    lab = 37
    twin = np.flip(s.labels, axis=2)
    atlas = np.where(twin % 2 == 1, twin + 1, np.where(twin > 0, twin - 1, 0)).astype(np.uint8)
    layer = viewer.add_labels(atlas, name="atlas (mirrored)", scale=s.spacing, opacity=0.5)
    viewer.layers.move(viewer.layers.index(layer), 1)   # under the current object, over the image
    layer.selected_label = lab
    layer.show_selected_label = True
    viewer.layers.selection.active = layer
    w.edit_label()
    _wait(w)
    truth = s.labels == lab
    preview = viewer.layers["current object"]
    for _ in range(2):
        wrong = ((np.asarray(preview.data) > 0) ^ truth).sum((1, 2))
        wrong[w.seg.annotated_slices] = -1
        z = int(wrong.argmax())
        w.goto_slice(z)
        preview.data[z] = truth[z]
        w.accept_slice()
    w.propagate()
    _wait(w)
    from halo_seg.metrics import dice
    print(f"Dice: atlas {dice(atlas == lab, truth):.3f}, corrected {dice(np.asarray(preview.data) > 0, truth):.3f}")
    z = int(((np.asarray(preview.data) > 0) != (atlas == lab)).sum((1, 2)).argmax())
    w.goto_slice(z)
    _frame(viewer, s, truth, z)
    _shoot(viewer, w, "napari_edit.png")


def review(s):
    """The automatic widget after a mirrored run (8 views): the uncertainty shown over the labels, on
    the first of the slices to review."""
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 800)
    viewer.add_image(s.image, name="colin27 T1", scale=s.spacing, metadata={"unit": "mm"})
    w = AutoSegmentWidget(viewer)
    viewer.window.add_dock_widget(w, name="Automatic segmentation")
    w.mode.setCurrentText("whole")
    w.mirror.setCurrentIndex(w.mirror.findData("zyx"))
    w.output.setText(str(Path(tempfile.mkdtemp()) / "colin27_labels.zarr"))
    w.run()
    _wait(w)
    viewer.layers[-1].opacity = 0.35
    viewer.layers[-2].visible = True
    w.next_review_slice()
    _shoot(viewer, w, "napari_review.png")


def compare(s):
    """Compare labels: the default model's brain and deep grey matter against the sample's own."""
    from halo_seg.train.default_model import default_targets
    from napari_halo_seg._compare_widget import CompareWidget
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 800)
    viewer.add_image(s.image, name="colin27 T1", scale=s.spacing, metadata={"unit": "mm"})
    a = AutoSegmentWidget(viewer)
    a.mode.setCurrentText("whole")
    a.output.setText(str(Path(tempfile.mkdtemp()) / "colin27_labels.zarr"))
    a.run()
    _wait(a)
    viewer.layers.remove(viewer.layers[-2])   # the uncertainty: not needed here
    _, reference = default_targets()
    ref = viewer.add_labels(reference, name="reference (ch2bet, AAL)", scale=s.spacing, metadata={"unit": "mm"})
    ref.contour = 1   # the reference's outlines over the model's filled labels
    w = CompareWidget(viewer)
    viewer.window.add_dock_widget(w, name="Compare labels")
    w.labels.setCurrentText("colin27 T1 labels (whole)")
    w.reference.setCurrentText("reference (ch2bet, AAL)")
    w.run()
    _wait(w)
    viewer.layers["colin27 T1 labels (whole)"].opacity = 0.5
    w.grid.selectRow(1)
    w.show_worst_slice(1)
    _shoot(viewer, w, "napari_compare.png")


def strokes(s):
    """Strokes correcting a box-segmented slice: the left putamen's box mask, then a stroke along the
    middle of its largest error (as benchmarks/clicks.py's simulated user draws it), segmented again."""
    from halo_seg.interactive.simulate import corrective_scribble
    viewer, w = _interactive_viewer(s)
    truth = s.labels == 73
    z = int(truth.sum((1, 2)).argmax())
    w.goto_slice(z)
    _box(viewer, truth, z)
    w.segment_slice()
    _wait(w)
    first = np.asarray(viewer.layers["current object"].data[z]) > 0
    stroke, positive = corrective_scribble(first, truth[z])
    w.negative.setChecked(not positive)
    w.draw_strokes()
    viewer.layers["strokes"].data[z][stroke] = 1 if positive else 2   # as the brush paints it
    viewer.layers["strokes"].refresh()
    w.segment_slice()
    _wait(w)
    from halo_seg.metrics import dice
    second = np.asarray(viewer.layers["current object"].data[z]) > 0
    w.status.setText(w.status.text() + f" (slice Dice {dice(first, truth[z]):.2f} from the box, "
                     f"{dice(second, truth[z]):.2f} after one stroke)")
    viewer.layers["box"].visible = False
    _frame(viewer, s, truth, z)
    _shoot(viewer, w, "napari_strokes.png")


def named(s):
    """Objects named as they are committed: the left thalamus boxed, propagated and committed as
    "thalamus L", the right one propagated with its name typed; the cursor over the first shows its
    name and volume in napari's status bar."""
    viewer, w = _interactive_viewer(s)
    left = s.labels == 77
    z = _box_on_largest_slice(viewer, w, left)
    w.object_name.setText("thalamus L")
    w.commit()
    right = s.labels == 78
    _box_on_largest_slice(viewer, w, right)
    w.object_name.setText("thalamus R")
    w.goto_slice(z)
    both = left[z] | right[z]
    viewer.camera.zoom = 3.0
    viewer.camera.center = (0, *(np.argwhere(both).mean(0) * s.spacing[1:]))
    viewer.layers.selection.active = viewer.layers["objects"]
    inside = np.argwhere(np.asarray(viewer.layers["objects"].data[z]) == 1).mean(0).round()
    viewer.cursor.position = (z * s.spacing[0], *(inside * s.spacing[1:]))   # as if the mouse were there
    _shoot(viewer, w, "napari_named.png")


def channels(_s):
    """A network of two input channels (trained here, a minute on a CPU, on synthetic cases whose
    objects are where both channels are bright) segmenting a two-channel stack opened from its file:
    the reader makes a layer of each channel, the widget gives the network both."""
    import sys
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
    from test_channels import _and_case
    from halo_seg.train.unet_train import TrainConfig, train_unet
    tmp = Path(tempfile.mkdtemp())
    cases = [_and_case(k, (48, 48, 48)) for k in range(4)]
    train_unet([[a, b] for a, b, _ in cases], [lab for *_, lab in cases],
               TrainConfig(n_classes=2, patch=(32, 32, 32), iterations=200, base=8, depth=2, epoch=100, lr=1e-2,
                           channel_names=["A", "B"], class_names=["background", "both bright"]),
               tmp / "two.safetensors", log=print)
    a, b, _ = _and_case(7, (48, 96, 96))
    np.save(tmp / "stack.npy", np.stack([a, b]))   # (C, Z, Y, X)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 800)
    viewer.open(str(tmp / "stack.npy"), plugin="napari-halo-seg")
    w = AutoSegmentWidget(viewer)
    viewer.window.add_dock_widget(w, name="Automatic segmentation")
    w.weights.setCurrentText(str(tmp / "two.safetensors"))
    w.output.setText(str(tmp / "labels.zarr"))
    w.run()
    _wait(w)
    viewer.layers[-1].opacity = 0.6
    viewer.dims.set_point(0, 24)
    _shoot(viewer, w, "napari_channels.png")


def timelapse(s):
    """Every time point of a time-lapse segmented: the sample moved a voxel further along x (and its
    noise redrawn) at each of 5 time points, saved as a (T, Z, Y, X) TIFF, opened with the reader
    and segmented by the automatic widget (2 ranks, started once) into one (T, Z, Y, X) Labels layer."""
    import tifffile
    tmp = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    img = s.image.astype(np.float32)
    movie = np.stack([np.roll(img, 2 * t, axis=2) + rng.normal(0, 0.02 * float(img.std()), img.shape)
                      for t in range(5)]).astype(np.float32)
    tifffile.imwrite(tmp / "moving.tif", movie, imagej=True, metadata={"axes": "TZYX", "spacing": 2.0, "unit": "mm"},
                     resolution=(0.5, 0.5))
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 800)
    viewer.open(str(tmp / "moving.tif"), plugin="napari-halo-seg")
    w = AutoSegmentWidget(viewer)
    viewer.window.add_dock_widget(w, name="Automatic segmentation")
    w.grid.setText("2,1,1")
    w.output.setText(str(tmp / "labels.zarr"))
    w.run()
    _wait(w)
    viewer.layers[-1].opacity = 0.5
    viewer.dims.set_current_step(0, 4)
    viewer.dims.set_point(1, 2.0 * 40)
    _shoot(viewer, w, "napari_timelapse.png")


def _tracked_sample(dock_objects: bool):
    """napari with the dividing-cells sample, its threshold labels followed over time by the
    Objects widget (touching daughters split)."""
    from napari_halo_seg._objects_widget import ObjectsWidget
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 800)
    viewer.open_sample("napari-halo-seg", "dividing_cells")
    viewer.layers["dividing cells"].opacity = 0.4
    viewer.layers["dividing cells mask"].visible = False
    w = ObjectsWidget(viewer)
    if dock_objects:
        viewer.window.add_dock_widget(w, name="Objects and measurements")
    w.labels.setCurrentText("dividing cells mask")
    w.image.setCurrentText("dividing cells")
    w.split.setChecked(True)
    w.track.setChecked(True)
    w.run()
    _wait(w)
    return viewer, w


def _shoot_last_in_3d(viewer, w, name):
    viewer.dims.ndisplay = 3
    viewer.dims.set_current_step(0, 11)
    viewer.reset_view()
    viewer.camera.angles = (0, -35, 65)
    _shoot(viewer, w, name)


def tracking(_s):
    """The Objects widget following the cells of the dividing-cells sample (moving, three dividing)
    over its 12 time points: their labels a threshold of the movie (as a simple segmentation would
    give), touching daughters split, shown in 3D at the last time point with each cell's path."""
    viewer, w = _tracked_sample(dock_objects=True)
    _shoot_last_in_3d(viewer, w, "napari_tracking.png")


def track_edit(_s):
    """Edit tracks after the tracking above: a dividing cell's track picked, one daughter's mother
    taken away (a division the user judged invented), its path now apart from the mother's."""
    from napari_halo_seg._track_edit_widget import NO_MOTHER, TrackEditWidget
    viewer, _ = _tracked_sample(dock_objects=False)
    w = TrackEditWidget(viewer)
    viewer.window.add_dock_widget(w, name="Edit tracks")
    rows = w._rows
    daughter = min(k for k, (_, _, p) in rows.items() if p)
    w.track.setValue(rows[daughter][2])
    w.other.setValue(daughter)
    w.op.setCurrentText(NO_MOTHER)
    w.run()
    _wait(w)
    _shoot_last_in_3d(viewer, w, "napari_track_edit.png")


def _dividing_cells_widget():
    """The dividing-cells sample with the interactive widget on it: (viewer, widget, the mask)."""
    from napari_halo_seg._interactive_widget import InteractiveWidget
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 900)
    viewer.open_sample("napari-halo-seg", "dividing_cells")
    viewer.layers["dividing cells mask"].visible = False
    masks = np.asarray(viewer.layers["dividing cells mask"].data)
    w = InteractiveWidget(viewer)
    viewer.window.add_dock_widget(w, name="Interactive segmentation")
    w.image.setCurrentText("dividing cells")
    w.device.setCurrentText("cpu")
    w.ensure_prompt_layers()
    return viewer, w, masks


def _boxed(viewer, w, t: int, truth):
    """The cell ``truth`` boxed on its largest slice at time point ``t`` and propagated there."""
    from halo_seg.interactive.roi import mask_bbox
    z = int(truth.sum((1, 2)).argmax())
    viewer.dims.set_current_step(0, t)
    w.goto_slice(z)
    y0, x0, y1, x1 = mask_bbox(truth[z])
    viewer.layers["box"].add_rectangles(np.array([[t, z, y0, x0], [t, z, y0, x1], [t, z, y1, x1],
                                                  [t, z, y1, x0]], float))
    w.propagate()
    _wait(w)


def interactive_timelapse(_s):
    """The interactive widget on the dividing-cells time-lapse: a cell boxed at time point 3 and
    propagated through its z slices, then followed by Next time point twice (committed at 3 and 4,
    carried to 5 and propagated there), shown at time point 5."""
    from scipy import ndimage as ndi

    viewer, w, masks = _dividing_cells_widget()
    t = 3
    cells, _ = ndi.label(masks[t])   # the mask is a threshold: a cell is a connected part of it
    ids, sizes = np.unique(cells[cells > 0], return_counts=True)
    truth = cells == ids[np.argsort(sizes)[len(sizes) // 2]]   # one of middle size
    _boxed(viewer, w, t, truth)
    for _ in range(2):
        w.next_timepoint()
        _wait(w)
    viewer.layers["current object"].opacity = 0.45
    _shoot(viewer, w, "napari_interactive_timelapse.png")


def interactive_division(_s):
    """The interactive widget on the dividing-cells time-lapse at a division: a cell boxed at time
    point 6, carried by Next time point to 7, where it has divided (the status line says it looks like
    two cells), then Commit as two: the daughters as two objects, shown at time point 7."""
    from scipy import ndimage as ndi

    viewer, w, masks = _dividing_cells_widget()
    t = 6
    now, _ = ndi.label(masks[t])
    after, _ = ndi.label(masks[t + 1])
    mother = next(i for i in range(1, now.max() + 1)   # the cell whose part of the mask is two at t + 1
                  if len(np.unique(after[(now == i) & (after > 0)])) >= 2)
    truth = now == mother
    _boxed(viewer, w, t, truth)
    w.next_timepoint()
    _wait(w)
    print("carried:", w.status.text())
    w.commit_as_two()
    _wait(w)
    viewer.layers["objects"].opacity = 0.7
    _shoot(viewer, w, "napari_interactive_division.png")


def _followed_through_division():
    """A dividing cell of the dividing-cells time-lapse followed by Next time point from time point 4
    to 7, where it divided (Commit as two), one daughter followed on to 8 and committed: (viewer,
    interactive widget)."""
    from scipy import ndimage as ndi
    viewer, w, masks = _dividing_cells_widget()
    now, _ = ndi.label(masks[6])
    after, _ = ndi.label(masks[7])
    mother = next(i for i in range(1, now.max() + 1)
                  if len(np.unique(after[(now == i) & (after > 0)])) >= 2)
    before, _ = ndi.label(masks[4])   # the cell at 4 that overlaps her most at 6 (slow cells)
    ids, counts = np.unique(before[(now == mother) & (before > 0)], return_counts=True)
    _boxed(viewer, w, 4, before == ids[counts.argmax()])
    for _ in range(3):
        w.next_timepoint()
        _wait(w)
        print("carried:", w.status.text())
    w.commit_as_two()
    _wait(w)
    w.next_timepoint()
    _wait(w)
    w.commit()
    print("committed:", w.status.text())
    return viewer, w


def _close_on_division(viewer):
    """3D, at time point 7 (both daughters, the mother's path up to them), the camera close on them."""
    from scipy import ndimage as ndi
    viewer.layers["dividing cells"].opacity = 0.3
    viewer.dims.ndisplay = 3
    viewer.dims.set_current_step(0, 7)
    viewer.reset_view()
    viewer.camera.angles = (0, -35, 65)
    objects = viewer.layers["objects"]
    at = ndi.center_of_mass(np.asarray(objects.data[7]) > 0)
    viewer.camera.center = tuple(objects.data_to_world([7, *at])[1:])
    viewer.camera.zoom *= 3


def interactive_lineage(_s):
    """The cell followed through her division (_followed_through_division); then the Objects widget's
    tracking of the objects layer, keeping those links: the cell's track and her daughters' in 3D."""
    from napari_halo_seg._objects_widget import ObjectsWidget
    viewer, _ = _followed_through_division()
    viewer.window.remove_dock_widget("all")
    o = ObjectsWidget(viewer)
    viewer.window.add_dock_widget(o, name="Objects and measurements")
    o.labels.setCurrentText("objects")
    o.track.setChecked(True)
    o.run()
    _wait(o)
    for lay in viewer.layers:
        lay.visible = lay.name in ("dividing cells", "objects tracked", "objects tracks")
    viewer.layers["objects tracks"].tail_width = 4
    _close_on_division(viewer)
    _shoot(viewer, o, "napari_interactive_lineage.png")


def interactive_paths(_s):
    """The cell followed through her division (_followed_through_division) with the interactive
    widget alone: the objects paths layer it drew as the objects were committed, in 3D."""
    viewer, w = _followed_through_division()
    for lay in viewer.layers:
        lay.visible = lay.name in ("dividing cells", "objects", "objects paths")
    viewer.layers["objects paths"].tail_width = 4
    _close_on_division(viewer)
    _shoot(viewer, w, "napari_interactive_paths.png")


def _carried_on(viewer, w, t: int, labels, times: int, until: str | None = None):
    """``labels`` put in the objects layer at time point ``t`` (as an automatic result would give them),
    then All to next time point pressed ``times`` times, or until its status line says ``until``."""
    objects = viewer.layers["objects"]
    data = objects.data
    data[t] = labels
    objects.data = data
    viewer.dims.set_current_step(0, t)
    for _ in range(times):
        w.all_to_next_timepoint()
        _wait(w)
        print("carried:", w.status.text())
        if until is not None and until in w.status.text():
            break


def interactive_all(_s):
    """All to next time point on the dividing-cells time-lapse: the cells of time point 2 (the
    sample's mask, as an automatic result would give them) put in the objects layer, then carried on
    three times at once; shown at time point 5 with the paths the widget drew."""
    from scipy import ndimage as ndi
    viewer, w, masks = _dividing_cells_widget()
    _carried_on(viewer, w, 2, ndi.label(masks[2])[0], 3)
    viewer.layers["objects"].opacity = 0.6
    viewer.layers["objects paths"].tail_width = 3
    _shoot(viewer, w, "napari_interactive_all.png")


def interactive_new_cells(_s):
    """A field of procedural cells seen through a window they crawl in and out of (benchmarks/new_cells.py's,
    seed 914): the cells of time point 0 carried on with All to next time point until a cell comes in;
    shown there, marked in 'cells no object holds', on its slice."""
    from halo_seg.tracking.phantom import cell_timelapse
    from napari_halo_seg._interactive_widget import InteractiveWidget
    tl = cell_timelapse(shape=(32, 96, 160), cells=26, timepoints=16, radius=5.0, speed=2.5, divisions=4, seed=914)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 900)
    viewer.add_image(tl.image[..., :64], name="cells", scale=(1, 1, 1))
    w = InteractiveWidget(viewer)
    viewer.window.add_dock_widget(w, name="Interactive segmentation")
    w.image.setCurrentText("cells")
    w.device.setCurrentText("cpu")
    w.ensure_prompt_layers()
    _carried_on(viewer, w, 0, tl.ids[0][..., :64], 15, until="no object holds")
    marks = viewer.layers["cells no object holds"]
    viewer.dims.set_current_step(1, int(round(marks.data[0][1])))
    viewer.layers["objects"].opacity = 0.5
    _shoot(viewer, w, "napari_interactive_new_cells.png")


def _cells_widget(image):
    """napari with a procedural time-lapse ``image`` as "cells" and the interactive widget on it (CPU)."""
    from napari_halo_seg._interactive_widget import InteractiveWidget
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 900)
    viewer.add_image(image, name="cells")
    w = InteractiveWidget(viewer)
    viewer.window.add_dock_widget(w, name="Interactive segmentation")
    w.image.setCurrentText("cells")
    w.device.setCurrentText("cpu")
    w.ensure_prompt_layers()
    return viewer, w


def interactive_left_out(_s):
    """All to next time point on crowded procedural cells (benchmarks/carry_all.py's, seed 952, 14
    cells, 2.5 voxels a time point): the cells of time point 0 carried on until an object grew over a
    touching cell; shown there, on the slice of the cell left out of it, written as its own object."""
    from halo_seg.tracking.phantom import cell_timelapse
    tl = cell_timelapse(shape=(32, 96, 96), cells=14, timepoints=12, radius=5.0, speed=2.5, divisions=3, seed=952)
    viewer, w = _cells_widget(tl.image)
    _carried_on(viewer, w, 0, tl.ids[0], 11, until="grown over")
    objects = viewer.layers["objects"]
    t = int(viewer.dims.current_step[0])
    import re
    said = re.search(r"; objects? (\d+)[\d, ]* (is a cell|are cells) an object had grown over", w.status.text())
    k = int(said.group(1)) if said else int(objects.selected_label)
    at = np.argwhere(np.asarray(objects.data[t]) == k)
    if len(at):   # as a user finds it: its label selected and shown alone, the view on it
        viewer.dims.set_current_step(1, int(np.median(at[:, 0])))
        viewer.camera.center = (float(np.median(at[:, 1])), float(np.median(at[:, 2])))
        viewer.camera.zoom *= 2
    objects.opacity = 0.6
    objects.selected_label = k
    objects.show_selected_label = True
    viewer.layers.selection.active = objects
    _shoot(viewer, w, "napari_interactive_left_out.png")


def interactive_grown_over(_s):
    """Next time point following one of 30 crowded procedural cells (benchmarks/carry.py's crowded
    phantom, seed 954, cell 5): carried to time point 5 its object grew over a touching cell (the note
    says so); Next time point pressed again commits them apart, the followed cell's part and a new
    cell, shown on the slice between them."""
    from halo_seg.tracking.phantom import cell_timelapse
    tl = cell_timelapse(shape=(32, 96, 96), cells=30, timepoints=6, radius=5.0, speed=2.5, divisions=0, seed=954)
    viewer, w = _cells_widget(tl.image)
    _boxed(viewer, w, 0, tl.ids[0] == 5)
    for _ in range(6):   # to time point 5, then once more: committed there
        w.next_timepoint()
        _wait(w)
        print("carried:", w.status.text())
    objects = viewer.layers["objects"]
    at = np.asarray(objects.data[5])
    both = np.argwhere(at > 0)
    if len(both):
        viewer.dims.set_current_step(1, int(np.median(both[:, 0])))
        viewer.camera.center = (float(np.median(both[:, 1])), float(np.median(both[:, 2])))
    objects.opacity = 0.7
    viewer.layers.selection.active = objects
    _shoot(viewer, w, "napari_interactive_grown_over.png")


def split_merged(_s):
    """Edit label, then Commit as two, twice: three touching nuclei merged into one label of an
    automatic result come apart as three labels (the first cut at the lowest neck takes one off whole)."""
    from scipy import ndimage as ndi

    from napari_halo_seg._interactive_widget import InteractiveWidget
    shape = (24, 48, 80)
    zz, yy, xx = np.ogrid[:24, :48, :80]
    nuclei = [((zz - 12) ** 2 + (yy - 24) ** 2 + (xx - x) ** 2) <= 36 for x in (26, 36, 47)]
    merged = np.logical_or.reduce(nuclei)
    image = ndi.gaussian_filter(merged.astype(np.float32), 1) + np.random.default_rng(0).normal(0, 0.1, shape)
    viewer = napari.Viewer(show=True)
    viewer.window.resize(1300, 850)
    viewer.add_image(image.astype(np.float32), name="nuclei")
    layer = viewer.add_labels(merged.astype(np.uint16) * 5, name="automatic")
    w = InteractiveWidget(viewer)
    viewer.window.add_dock_widget(w, name="Interactive segmentation")
    w.image.setCurrentText("nuclei")
    w.device.setCurrentText("cpu")
    for _ in range(2):
        viewer.layers.selection.active = layer
        layer.selected_label = 5
        w.edit_label()
        _wait(w)
        w.commit_as_two()
        _wait(w)
        print("split:", w.status.text())
    viewer.layers.selection.active = layer
    viewer.dims.set_current_step(0, 12)
    viewer.camera.zoom = 8
    _shoot(viewer, w, "napari_split_merged.png")


if __name__ == "__main__":
    import sys
    os.environ.setdefault("HALO_SEG_USER_DIR", tempfile.mkdtemp())   # models and sessions not into the user's own
    if sys.argv[1:] in (["colin27"], ["coronal"], ["train"], ["finetune"], ["review"], ["compare"], ["one_mm"],
                        ["edit"], ["strokes"], ["named"], ["channels"], ["timelapse"], ["tracking"], ["track_edit"],
                        ["interactive_timelapse"], ["interactive_division"], ["interactive_lineage"],
                        ["interactive_paths"], ["interactive_all"], ["interactive_new_cells"], ["interactive_left_out"],
                        ["interactive_grown_over"], ["split_merged"]):
        globals()[sys.argv[1]](load_colin27_sample())
    else:
        main()
