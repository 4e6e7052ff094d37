"""Shipped sample volumes and a procedural phantom, each with ground truth.

``colin27_2mm``: the Colin27 T1 MRI (MRIcron templates, BSD-3-Clause) at 2 mm with 12 AAL
subcortical structures and a brain mask, derived by :func:`make_colin27_sample` from
``../shared/data/colin27``. The phantom is generated on the fly and needs no file.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

# AAL indices of the subcortical structures kept in the sample (boundaries visible on T1)
SUBCORTICAL = {37: "Hippocampus_L", 38: "Hippocampus_R", 41: "Amygdala_L", 42: "Amygdala_R",
               71: "Caudate_L", 72: "Caudate_R", 73: "Putamen_L", 74: "Putamen_R",
               75: "Pallidum_L", 76: "Pallidum_R", 77: "Thalamus_L", 78: "Thalamus_R"}
# AAL regions for choosing settings of the interactive loop (benchmarks/quality_stop.py and
# interactive_variants.py) and for fitting its quality model (halo-seg train-quality): disjoint
# from each other and from the benchmark's SUBCORTICAL; the interactive network was trained on both
VALIDATION = {29: "Insula_L", 30: "Insula_R", 31: "Cingulum_Ant_L", 36: "Cingulum_Post_R", 39: "ParaHippocampal_L",
              40: "ParaHippocampal_R", 45: "Cuneus_L", 47: "Lingual_L", 55: "Fusiform_L", 56: "Fusiform_R",
              79: "Heschl_L", 80: "Heschl_R", 84: "Temporal_Pole_Sup_R", 99: "Cerebelum_6_L", 111: "Vermis_4_5",
              114: "Vermis_8"}
QUALITY_FIT = (1, 2, 3, 6, 13, 19, 22, 24, 46, 51, 57, 59, 61, 62, 63, 66, 70, 83, 86, 95, 96, 103, 105, 115)
assert not (set(VALIDATION) | set(QUALITY_FIT)) & set(SUBCORTICAL) and not set(VALIDATION) & set(QUALITY_FIT)



def aal_twin(label: int) -> int:
    """The same AAL region in the other hemisphere (AAL numbers left odd, right even; not the vermis)."""
    return label + 1 if label % 2 else label - 1


def mirrored_twin(labels: np.ndarray, label: int) -> np.ndarray:
    """The other hemisphere's region mirrored left-right onto a (z, y, x) AAL volume (x is left-right):
    what registering an atlas gives, a prior a little off almost everywhere."""
    return np.ascontiguousarray(np.flip(labels == aal_twin(label), axis=2))

@dataclass
class Sample:
    image: np.ndarray
    labels: np.ndarray
    spacing: tuple[float, float, float]
    names: dict[int, str] = field(default_factory=dict)
    brain: np.ndarray | None = None


def sample_dir() -> Path:
    return Path(str(resources.files("halo_seg.sample_data")))


def shared_data_dir() -> Path | None:
    """``../shared/data`` next to the checkout (or $HALO_SEG_SHARED_DATA), if present."""
    env = os.environ.get("HALO_SEG_SHARED_DATA")
    cands = [Path(env)] if env else []
    here = Path(__file__).resolve()
    cands += [p / "shared" / "data" for p in here.parents] + [Path.cwd().parent / "shared" / "data"]
    for c in cands:
        if (c / "colin27" / "ch2.nii.gz").exists():
            return c
    return None


def _read_nifti_zyx(path: Path) -> tuple[np.ndarray, tuple[float, float, float]]:
    import nibabel as nib
    img = nib.load(str(path))
    z = img.header.get_zooms()[:3]
    return np.asanyarray(img.dataobj).transpose(2, 1, 0), (float(z[2]), float(z[1]), float(z[0]))


def load_colin27_full(data_dir: Path | None = None) -> Sample:
    """The full 1 mm Colin27 volume with all 116 AAL labels (needs ../shared/data)."""
    data_dir = data_dir or shared_data_dir()
    if data_dir is None:
        raise FileNotFoundError("../shared/data/colin27 not found; set HALO_SEG_SHARED_DATA")
    d = Path(data_dir) / "colin27"
    img, sp = _read_nifti_zyx(d / "ch2.nii.gz")
    aal, _ = _read_nifti_zyx(d / "aal.nii.gz")
    bet, _ = _read_nifti_zyx(d / "ch2bet.nii.gz")
    names = {}
    for line in (d / "aal_labels.txt").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 2:
            names[int(parts[0])] = parts[1]
    return Sample(img, aal.astype(np.uint8), sp, names, bet > 0)


def downsample2(image: np.ndarray, labels: np.ndarray, keep: dict[int, str]):
    """2x block-mean for the image; per-label majority over the same 2x2x2 blocks for labels."""
    from skimage.transform import downscale_local_mean
    img = downscale_local_mean(image.astype(np.float32), (2, 2, 2))
    out = np.zeros(img.shape, np.uint8)
    best = np.full(img.shape, 0.5, np.float32)  # a label needs more than half the block
    for lab in keep:
        frac = downscale_local_mean((labels == lab).astype(np.float32), (2, 2, 2))
        win = frac > best
        out[win] = lab
        best[win] = frac[win]
    return img, out


def make_colin27_sample(out_dir: Path, data_dir: Path | None = None) -> list[Path]:
    """Derive the shipped 2 mm Colin27 sample from ../shared/data (run once by the maintainers),
    placed where the 1 mm scan lies: a 2 mm voxel is the block of 1 mm voxels (2i, 2i + 1), so its
    centre lies at 1 mm index 2i + 0.5 through the scan's own affine, in the scan's coded space. The
    labels and the brain mask are marked as labels (NIfTI intent), so a reader opens them as such."""
    import nibabel as nib

    from .io.geometry import LABEL_INTENT
    full = load_colin27_full(data_dir)
    img, lab = downsample2(full.image, full.labels, SUBCORTICAL)
    _, brain = downsample2(full.image, full.brain.astype(np.uint8), {1: "brain"})
    img = np.clip(np.round(img), 0, 255).astype(np.uint8)
    src = nib.load(str(Path(data_dir or shared_data_dir()) / "colin27" / "ch2.nii.gz"))
    block = np.array([[2.0, 0, 0, 0.5], [0, 2.0, 0, 0.5], [0, 0, 2.0, 0.5], [0, 0, 0, 1]])   # 2 mm voxel -> 1 mm index
    aff = src.affine @ block
    code = int(src.header["sform_code"]) or 2
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for name, arr, labels in (("colin27_2mm_t1", img, False), ("colin27_2mm_aal12", lab, True),
                              ("colin27_2mm_brain", brain, True)):
        p = out_dir / f"{name}.nii.gz"
        out = nib.Nifti1Image(arr.transpose(2, 1, 0), aff)
        out.set_sform(aff, code=code)
        out.set_qform(aff, code=code)
        out.header.set_xyzt_units("mm")
        if labels:
            out.header.set_intent(LABEL_INTENT)
        nib.save(out, str(p))
        paths.append(p)
    return paths


def load_colin27_sample() -> Sample:
    d = sample_dir()
    img, sp = _read_nifti_zyx(d / "colin27_2mm_t1.nii.gz")
    lab, _ = _read_nifti_zyx(d / "colin27_2mm_aal12.nii.gz")
    brain, _ = _read_nifti_zyx(d / "colin27_2mm_brain.nii.gz")
    return Sample(np.ascontiguousarray(img), np.ascontiguousarray(lab), sp, dict(SUBCORTICAL),
                  np.ascontiguousarray(brain > 0))


def make_phantom(shape=(64, 96, 96), n_objects: int = 6, seed: int = 0, noise: float = 0.08) -> Sample:
    """A textured 3D phantom: random ellipsoids and blobs on a smooth background, with labels.

    Objects get distinct mean intensities and a texture, the background a smooth bias field,
    and the whole volume Gaussian noise, so that segmenting it needs more than a threshold.
    """
    from scipy import ndimage as ndi
    rng = np.random.default_rng(seed)
    shape = tuple(int(s) for s in shape)
    if len(shape) != 3 or min(shape) < 8:
        raise ValueError(f"phantom shape must be 3 sizes >= 8, got {shape}")
    zz, yy, xx = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij")
    labels = np.zeros(shape, np.uint8)
    image = 0.3 + 0.1 * (zz * rng.uniform(-1, 1) + yy * rng.uniform(-1, 1) + xx * rng.uniform(-1, 1))
    for k in range(1, n_objects + 1):
        c = rng.uniform(-0.55, 0.55, 3)
        r = rng.uniform(0.12, 0.35, 3)
        rot = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        pts = np.stack([zz - c[0], yy - c[1], xx - c[2]], -1) @ rot
        wob = ndi.gaussian_filter(rng.normal(size=shape).astype(np.float32), 4) * 6
        inside = ((pts / r) ** 2).sum(-1) + wob < 1.0
        inside &= labels == 0
        labels[inside] = k
        tex = ndi.gaussian_filter(rng.normal(size=shape).astype(np.float32), 1.5) * 0.6
        image[inside] = rng.uniform(0.55, 1.0) + tex[inside] * 0.1
    image = ndi.gaussian_filter(image, 0.7) + rng.normal(0, noise, shape).astype(np.float32)
    return Sample(image.astype(np.float32), labels, (1.0, 1.0, 1.0),
                  {k: f"object_{k}" for k in range(1, n_objects + 1)})
