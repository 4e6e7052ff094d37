"""napari under Xvfb: the plugin's sample data and reader appear in a real viewer."""
import numpy as np
import pytest

pytest.importorskip("napari")


def test_sample_data_open_in_viewer_and_render(make_napari_viewer, tmp_path):
    viewer = make_napari_viewer(show=True)  # a hidden canvas renders nothing
    viewer.open_sample("napari-halo-seg", "colin27")
    names = [l.name for l in viewer.layers]
    assert "colin27 T1" in names and "AAL subcortical (truth)" in names
    assert tuple(viewer.layers["colin27 T1"].scale) == (2.0, 2.0, 2.0)
    viewer.dims.set_point(0, 90.0)
    shot = viewer.screenshot(canvas_only=True, flash=False)
    assert shot.ndim == 3 and shot[..., :3].std() > 10, "the canvas rendered blank"


def test_reader_in_viewer(make_napari_viewer, tmp_path):
    np.save(tmp_path / "v.npy", np.random.default_rng(0).random((8, 9, 10)).astype(np.float32))
    viewer = make_napari_viewer()
    viewer.open(str(tmp_path / "v.npy"), plugin="napari-halo-seg")
    assert viewer.layers[0].data.shape == (8, 9, 10)
