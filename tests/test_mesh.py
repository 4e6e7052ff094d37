"""Surface meshes of labels: closed, of the object's volume, placed in the scan's world coordinates."""
import nibabel as nib
import numpy as np
import pytest

trimesh = pytest.importorskip("trimesh")

from halo_seg.cli import main  # noqa: E402
from halo_seg.io import VolumeError  # noqa: E402
from halo_seg.io.mesh import object_mesh, write_meshes  # noqa: E402

# an oblique, mirrored (LPS-like) scan affine with 0.8 x 0.8 x 2 mm voxels
AFFINE = np.array([[-0.8, 0.0, 0.0, 100.0], [0.0, -0.78, 0.35, 120.0], [0.0, 0.18, 1.95, -60.0], [0, 0, 0, 1]])


def _ball(shape=(30, 64, 60), centre=(14, 30, 28), radius_mm=9.0, spacing=(2.0, 0.8, 0.8)):
    zz, yy, xx = np.indices(shape)
    d2 = sum(((g - c) * s) ** 2 for g, c, s in zip((zz, yy, xx), centre, spacing))
    return d2 <= radius_mm ** 2


def test_a_ball_mesh_is_closed_of_its_volume_and_where_the_scan_puts_it():
    ball = _ball()
    mesh = object_mesh(ball, affine=AFFINE)
    assert mesh.is_watertight and mesh.is_winding_consistent and mesh.volume > 0   # outward normals
    voxel_mm3 = abs(np.linalg.det(AFFINE[:3, :3]))
    true = 4 / 3 * np.pi * 9.0 ** 3
    assert mesh.volume == pytest.approx(true, rel=0.05)
    assert mesh.volume == pytest.approx(ball.sum() * voxel_mm3, rel=0.08)
    centre = AFFINE @ np.array([28, 30, 14, 1.0])       # voxel (x, y, z) of the ball's centre
    np.testing.assert_allclose(mesh.center_mass, centre[:3], atol=0.2)
    smooth = object_mesh(ball, affine=AFFINE, smooth=20)
    assert smooth.volume == pytest.approx(mesh.volume, rel=0.03)   # Taubin smoothing does not shrink it
    # a crop's mesh, given where the crop lies, is the same surface
    crop = ball[4:25, 10:52, 8:50]
    np.testing.assert_allclose(object_mesh(crop, (4, 10, 8), affine=AFFINE).bounds, mesh.bounds, atol=1e-6)


def test_export_writes_a_mesh_per_label_on_the_scan(tmp_path, capsys):
    lab = _ball().astype(np.uint8) * 3
    lab[_ball(centre=(10, 12, 12), radius_mm=5.0)] = 7
    img = nib.Nifti1Image(lab.transpose(2, 1, 0), AFFINE)
    nib.save(img, tmp_path / "lab.nii.gz")
    assert main(["export", str(tmp_path / "lab.nii.gz"), str(tmp_path / "obj.stl")]) == 0
    assert "2 surface meshes in the scan's world millimetres" in capsys.readouterr().out
    m3 = trimesh.load(tmp_path / "obj_3.stl")
    m7 = trimesh.load(tmp_path / "obj_7.stl")
    assert m3.is_watertight and m7.is_watertight
    np.testing.assert_allclose(m3.center_mass, (AFFINE @ np.array([28, 30, 14, 1.0]))[:3], atol=0.5)
    assert m7.volume == pytest.approx(4 / 3 * np.pi * 5.0 ** 3, rel=0.1)
    assert main(["export", str(tmp_path / "lab.nii.gz"), str(tmp_path / "one.ply"), "--label", "7",
                 "--smooth", "10"]) == 0
    assert trimesh.load(tmp_path / "one.ply").volume == pytest.approx(m7.volume, rel=0.05)
    assert main(["export", str(tmp_path / "lab.nii.gz"), str(tmp_path / "none.stl"), "--label", "5"]) == 2
    assert "label 5 is not in the volume" in capsys.readouterr().err


def test_mesh_refusals(tmp_path):
    with pytest.raises(VolumeError, match="empty"):
        write_meshes(np.zeros((4, 5, 6), np.uint8), tmp_path / "e.stl")
    with pytest.raises(VolumeError, match="not labels"):
        write_meshes(np.zeros((4, 5, 6), np.float32), tmp_path / "f.stl")
    with pytest.raises(VolumeError, match="mesh is written as"):
        write_meshes(np.ones((4, 5, 6), np.uint8), tmp_path / "f.vtk")
    with pytest.raises(VolumeError, match="smoothing iterations must be a whole number >= 0, got -5"):
        write_meshes(np.ones((4, 5, 6), np.uint8), tmp_path / "s.stl", smooth=-5)
    assert not (tmp_path / "s.stl").exists()
