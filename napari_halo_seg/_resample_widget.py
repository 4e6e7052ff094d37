"""Dock widget: put a layer (or each time point of a time-lapse) on another image's voxel grid, so
that the two overlay and pair voxel by voxel: labels drawn at another resolution, a scan or a
segmentation stored in another orientation (one file LPS, the other RAS: napari places each along
its own axes, so they do not overlay), a segmentation cropped to its objects. The engine's `halo-seg resample --like` (io.resampled.onto_grid_of):
by world position where both files place their voxels, else the same extent resampled. Labels take
the nearest voxel's id; images are interpolated trilinearly (float32), 0 outside the layer.

Computed in a worker a slab at a time, with progress and Cancel, into a new layer that takes the
image's scale, translation and scan geometry (saved, it lies where the image lies); the layer
resampled is left as it is. A result larger than a quarter of the memory available is refused with
the command that writes it to disk instead."""
from __future__ import annotations

import os

import napari
import numpy as np
from qtpy.QtWidgets import QCheckBox, QComboBox

from halo_seg.io.dicom_seg import SERIES_KEY
from halo_seg.io.geometry import KEY as GEOMETRY
from halo_seg.io.geometry import grid_mismatch

from ._background import BackgroundWidget
from ._fields import form_of
from ._layers import _as_volume, fill_layer_box, follow_layers, layer_spacing
from ._measure import layer_names
from ._paintable import SHARE, room

LAYERS = (napari.layers.Image, napari.layers.Labels)
SLAB = 16   # slices of the new grid a task: progress and Cancel in steps a user sees


def _compute(lazy, labels: bool, name: str, cancel, progress):
    """In the worker: (the array, None), or (None, the exception). The new grid's slabs are computed
    as many at a time as there are cores (one at a time left all but one idle: 1.4 to 1.7x slower on
    two), Cancel and progress between such groups."""
    try:
        import dask
        out = np.empty(lazy.shape, lazy.dtype)
        bounds = np.cumsum((0,) + tuple(lazy.chunks[0]))
        slabs = list(zip(bounds[:-1], bounds[1:]))
        n = max(1, os.cpu_count() or 1)
        for i in range(0, len(slabs), n):
            if cancel():
                raise InterruptedError("nothing was added")
            group = slabs[i:i + n]
            for (z0, z1), got in zip(group, dask.compute(*(lazy[z0:z1] for z0, z1 in group), scheduler="threads")):
                out[z0:z1] = got
            progress(min(i + n, len(slabs)), len(slabs), "")
        if labels and out.dtype == bool:
            out = out.view(np.uint8)
        elif labels and not np.issubdtype(out.dtype, np.integer):   # an image layer taken as labels: whole ids only
            from halo_seg.io.labels import whole_labels
            out = np.asarray(whole_labels(out, repr(name)))
        return out, None
    except Exception as exc:  # shown to the user; the layers are untouched
        return None, exc


def _regridded(layer, like, labels: bool):
    """(``layer`` on ``like``'s voxel grid, lazily, and its number of time points or 0), or (None, 0)
    where it lies there already. A time-lapse (T, Z, Y, X) is put on the grid time point by time
    point (``like``'s, or, of a time-lapse, its time points' grid): (T, Z', Y', X'); ``like`` a
    time-lapse of another number of time points is refused (they are not one movie)."""
    import dask.array as da

    from halo_seg.io.resampled import onto_grid_of

    from ._timelapse import timelapse_data
    a, b = layer.name, like.name
    series, like_series = timelapse_data(layer), timelapse_data(like)
    if series is not None and like_series is not None and len(series) != len(like_series):
        raise ValueError(f"{a!r} has {len(series)} time points and {b!r} {len(like_series)}: a time-lapse goes on the "
                         "grid of a 3D image or of a time-lapse of as many time points")
    ref = _as_volume(like) if like_series is None else _as_volume(like, data=like_series[0])
    if series is None:
        vol = _as_volume(layer, lazy=True)
        if vol.shape == ref.shape and grid_mismatch(vol, ref) is None:
            return None, 0
        return onto_grid_of(vol, ref, labels, repr(a), repr(b), step=SLAB), 0
    vols = [_as_volume(layer, lazy=True, data=series[t]) for t in range(len(series))]
    if vols[0].shape == ref.shape and grid_mismatch(vols[0], ref) is None:
        return None, 0
    each = [onto_grid_of(v, ref, labels, f"{a!r} at time point {t}", repr(b), step=SLAB) for t, v in enumerate(vols)]
    return each[0]._replace(data=da.stack([g.data for g in each])), len(series)


class ResampleWidget(BackgroundWidget):
    def __init__(self, napari_viewer: napari.Viewer):
        super().__init__(napari_viewer, "Resample")
        self.source, self.target = QComboBox(), QComboBox()
        self.as_labels = QCheckBox("as labels: each voxel takes the nearest voxel's id")
        self.as_labels.setToolTip("on for a Labels layer; off interpolates the values trilinearly (an image)")
        self._labels_for = None   # the layer the labels box was last set for: a choice of the user's is kept
        self.source.currentTextChanged.connect(self._source_chosen)
        self._lay_out(form_of(("layer", self.source), ("onto the grid of", self.target), ("", self.as_labels)))
        self.status.setText("choose a layer and the image whose voxels it should take, then Resample: for layers "
                            "that do not overlay (another orientation or resolution, labels cropped to their objects)")
        follow_layers(self.viewer, self._refresh_layers)
        self._refresh_layers()

    def _refresh_layers(self, *_):
        fill_layer_box(self.source, self.viewer, LAYERS)
        fill_layer_box(self.target, self.viewer, LAYERS)
        self._source_chosen(self.source.currentText())

    def _source_chosen(self, name: str):
        if name and name != self._labels_for and name in self.viewer.layers:
            self._labels_for = name
            self.as_labels.setChecked(isinstance(self.viewer.layers[name], napari.layers.Labels))

    def run(self):
        chosen = self._chosen_pair(self.source, self.target,
                                   "choose the layer to resample and the image whose grid it should take",
                                   "the layer and the image are the same layer: choose another image")
        if chosen is None:
            return
        layer, like = chosen
        a, b = layer.name, like.name
        labels = self.as_labels.isChecked()
        from halo_seg.engine.memory import fmt_bytes
        from halo_seg.io.volume import VolumeError
        try:
            got, series = _regridded(layer, like, labels)
        except (ValueError, VolumeError) as exc:
            self.status.setText(str(exc))
            return
        if got is None:
            self.status.setText(f"{a} already lies on the grid of {b}: nothing to do")
            return
        need, avail = int(np.prod(got.data.shape)) * np.dtype(got.data.dtype).itemsize, room()
        if avail is not None and need > SHARE * avail:
            self.status.setText(f"{a} on the grid of {b} ({' x '.join(map(str, got.data.shape))} voxels) would take "
                                f"{fmt_bytes(need)}, more than a quarter of the memory available ({fmt_bytes(avail)}): "
                                "write it to disk with `halo-seg resample FILE OUT.zarr --like IMAGE_FILE"
                                f"{' --labels' if labels else ''}` and open that")
            return
        each = f" (its {series} time points each)" if series else ""
        self._start(f"resampling {a} onto the grid of {b}{each} ...", _compute, got.data, labels, a,
                    self._cancel.is_set, self.progress_callback,
                    on_done=lambda outcome: self._done(outcome, layer, like, got, labels))

    def _done(self, outcome, layer, like, got, labels: bool):
        data, exc = outcome
        if exc is not None:
            return self._failed(exc)
        # no "source": the engine would read the file's voxels, not these
        meta = {"spacing_known": layer_spacing(like) is not None, **({"unit": got.unit} if got.unit else {}),
                **({GEOMETRY: got.geometry} if got.geometry is not None else {})}
        if labels and (like.metadata or {}).get(SERIES_KEY):   # saved as a DICOM SEG on the image's series
            meta[SERIES_KEY] = like.metadata[SERIES_KEY]
        # a time-lapse's time axis keeps its own scale and place in time (nothing of a 3D layer)
        place = {"name": f"{layer.name} on {like.name}",
                 "scale": tuple(layer.scale[-data.ndim:-3]) + tuple(like.scale[-3:]),
                 "translate": tuple(layer.translate[-data.ndim:-3]) + tuple(like.translate[-3:]), "metadata": meta}
        if labels:
            kw = {}
            if isinstance(layer, napari.layers.Labels):   # the ids' names; sizes measured on the old grid would be stale
                names = layer_names(layer.features)
                kw = {"colormap": layer.colormap, "opacity": layer.opacity,
                      **({"features": {"index": list(names), "name": list(names.values())}} if names else {})}
            self.viewer.add_labels(data, **place, **kw)
        else:
            kw = ({"colormap": layer.colormap, "contrast_limits": layer.contrast_limits, "gamma": layer.gamma}
                  if isinstance(layer, napari.layers.Image) else {})
            self.viewer.add_image(data, **place, blending=layer.blending, **kw)
        how = (f"each voxel from its world position (0 outside {layer.name})" if got.placed
               else f"over {layer.name}'s extent")
        self._succeeded(f"added {place['name']!r}: {' x '.join(map(str, data.shape))} voxels on the grid of "
                        f"{like.name}, {how}, {'nearest voxel' if labels else 'trilinear'}")
