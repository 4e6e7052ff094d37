"""`demo` (the engine and a simulated interactive session on the sample) and `session`."""
from __future__ import annotations

import re
import tempfile
import time
from pathlib import Path

from .common import _choice_args, _print_memory, _progress


def cmd_demo(a) -> int:
    """Sample volume -> engine on 2 CPU ranks (checked against the whole-volume net) -> simulated
    interactive session, Dice printed at every step."""
    import numpy as np
    import zarr
    from ..engine.runner import segment
    from ..engine.weights import load_unet
    from ..interactive.baseline import fill_between_curve
    from ..metrics import dice
    from ..samples import load_colin27_sample
    s = load_colin27_sample()
    out = Path(a.out or tempfile.mkdtemp(prefix="halo-seg-demo-"))
    out.mkdir(parents=True, exist_ok=True)
    img_path = out / "colin27_2mm.npy"
    np.save(img_path, s.image)
    net, meta = load_unet(a.weights)
    classes = meta.get("classes") or [f"class_{i}" for i in range(net.config["out_channels"])]
    print(f"sample: Colin27 T1 2 mm {s.image.shape}; model {Path(meta['path']).name} classes {classes}")
    truth = s.brain.astype(np.uint8)
    truth[s.labels > 0] = 2
    results = {}
    for mode, grid in (("halo", "2,1,1"), ("whole", "1,1,1")):
        dst = out / f"labels_{mode}.zarr"
        t = time.perf_counter()
        res = segment(str(img_path), dst, weights=a.weights, grid=grid, mode=mode, save_probabilities=True,
                      progress=_progress if mode == "halo" else None)
        g = zarr.open_group(str(dst), mode="r")
        results[mode] = (g["labels"][...], g["probabilities"][...])
        print(f"automatic ({mode}, grid {grid}): {time.perf_counter() - t:.1f}s")
        _print_memory(res)
    lab, prob = results["halo"]
    diff = float(np.abs(prob - results["whole"][1]).max())
    same = bool((lab == results["whole"][0]).all())
    print(f"halo (2 ranks) vs whole volume: max |prob diff| = {diff:.2e}, labels identical: {same}")
    print("Dice of the default model over the whole sample (its card gives the held-out hemisphere):")
    for c in range(1, len(classes)):
        print(f"  Dice {classes[c]:>10s}: {dice(lab == c, truth == c):.3f}")
    from ..review import expected_errors, open_uncertainty, review_order
    per_z = expected_errors(open_uncertainty(out / "labels_halo.zarr"))[0]
    wrong = (lab != truth).sum((1, 2))
    print(f"slices to check first (halo-seg review {out / 'labels_halo.zarr'}): " + ", ".join(
        f"z={z} ({per_z[z]:.0f} voxels expected wrong, {wrong[z]} wrong)" for z in review_order(per_z, 3)))
    truth77 = s.labels == 77
    base = fill_between_curve(truth77, rounds=6)
    from ..interactive.model_io import default_memnet_installed
    if default_memnet_installed():
        from ..interactive.segmenter import InteractiveSegmenter
        from ..interactive.simulate import run_session
        print("simulated interactive session, thalamus_L (AAL 77, never trained on): a tight box on the largest")
        print("slice, then each round one box on the slice the network recommends, then propagation;")
        print("'fill between' is the baseline with exact masks on k evenly spaced slices:")
        seg = InteractiveSegmenter(s.image, spacing=s.spacing, device="cpu")
        for r, b in zip(run_session(seg, truth77, rounds=6), base):
            print(f"  round {r['round']}: Dice {r['dice']:.3f} (slice {r['slice']}, {r['seconds']:.2f}s)"
                  f"   fill between: {b:.3f}")
        _demo_edit(s, InteractiveSegmenter(s.image, spacing=s.spacing, device="cpu"))
    else:
        print("no interactive weights installed; baseline only ('fill between slices', exact masks on k slices):")
        for k, d in enumerate(base, 1):
            print(f"  round {k}: Dice {d:.3f}")
    print(f"outputs in {out}")
    return 0 if same and diff <= 1e-4 else 1


def _demo_edit(s, seg, lab: int = 37, rounds: int = 3):
    """Correcting an atlas label (the other hemisphere's, mirrored) slice by slice, with and without
    propagating the fixes."""
    from ..interactive.simulate import worst_slice
    from ..metrics import dice
    from ..samples import aal_twin, mirrored_twin
    twin = aal_twin(lab)
    truth, prior = s.labels == lab, mirrored_twin(s.labels, lab)
    print(f"correcting an atlas label, {s.names[lab]} (AAL {lab}): the {s.names[twin]} label mirrored left-right")
    print(f"(Dice {dice(prior, truth):.3f}); each round the slice with the most wrong voxels painted exactly, then")
    print("propagation (InteractiveSegmenter.start_from), against the painted slices alone:")
    seg.start_from(prior)
    pred, hand, done = prior, prior.copy(), []
    for r in range(1, rounds + 1):
        z = worst_slice(pred, truth, done)
        done.append(z)
        seg.set_slice_mask(z, truth[z])
        hand[z] = truth[z]
        pred = seg.propagate()
        changed = int((pred != prior).any((1, 2)).sum())
        print(f"  {r} slice{'s' if r > 1 else ''}: Dice {dice(pred, truth):.3f} ({changed} slices changed)"
              f"   painted slices only: {dice(hand, truth):.3f}")


def cmd_session(a) -> int:
    """A saved interactive session -> its object as a label volume on the scan (re-propagated with
    --weights, or with --propagate)."""
    import numpy as np
    from ..interactive.segmenter import InteractiveSegmenter
    from ..io import VolumeError, geometry, open_volume, write_labels
    from ..measure import volume_text
    if not 1 <= a.label <= 65535:
        raise VolumeError(f"--label must be 1 to 65535, got {a.label}")
    out = Path(a.output)
    if out.exists() and not a.overwrite:
        raise VolumeError(f"{out} exists; pass --overwrite to replace it")
    for what, p in (("the image", a.image), ("the session", a.session)):   # --overwrite is for an earlier output
        if out.resolve() == Path(p).resolve():
            raise VolumeError(f"the output {out} is {what}; write to a new path")
    timepoint, source = a.timepoint, a.image
    kept_at = re.search(r"\.t(\d{4})\.last\.npz$", Path(a.session).name)
    if timepoint is None and kept_at:   # napari keeps a time-lapse's session per time point, named so
        from ..io.axes import axis_names
        from ..io.volume import file_contents
        source = file_contents(a.image)   # opened once
        if "t" in axis_names(source.data.shape, source.meta.get("axes")):
            timepoint = int(kept_at.group(1))
            print(f"time point {timepoint} (the session's name says so)")
    vol = open_volume(source, channel=a.channel, timepoint=timepoint)
    dicom_out = out.name.lower().endswith(".dcm")   # beside the series, for a PACS or a planning system
    if dicom_out and vol.meta.get("format") != "dicom":
        raise VolumeError(f"{out.name}: a DICOM SEG or RT structure set references the DICOM series the object "
                          f"was drawn on, and {a.image} is none; write .nii.gz, .nrrd or .zarr")
    seg = InteractiveSegmenter.from_session(a.session, vol.data, spacing=vol.spacing, device=a.device,
                                            weights=a.weights)
    fresh = a.propagate or not seg.restored_propagation
    t0 = time.perf_counter()
    mask = seg.propagate() if fresh else seg.prediction
    how = f"propagated again in {time.perf_counter() - t0:.1f}s" if fresh else "as saved"
    unit = vol.meta.get("unit")
    labels = mask.astype(np.uint16 if a.label > 255 else np.uint8) * a.label
    if dicom_out:
        from ..io.dicom_seg import write_dicom_seg
        from ..io.rtstruct import wants_rtstruct, write_rtstruct
        (write_rtstruct if wants_rtstruct(out) else write_dicom_seg)(
            labels, vol.source, out, names={a.label: a.name} if a.name else None)
    else:
        write_labels(labels, out, spacing=vol.spacing, geometry=vol.meta.get(geometry.KEY), unit=unit,
                     names={a.label: a.name} if a.name else None)
    n = int(mask.sum())
    print(f"wrote {out}: label {a.label}, {n} voxels ({volume_text(n * float(np.prod(vol.spacing)), unit)}), "
          f"{len(seg.annotated_slices)} trusted slices across axis {seg.axis}, {how}")
    return 0


def add_session(sub) -> None:
    se = sub.add_parser("session", help="a saved interactive session (napari's Save session, or the copy kept "
                                         "after every propagation) as a label volume on its scan")
    se.add_argument("image", help="the image the session was made on")
    se.add_argument("session", help="the session file (.npz)")
    se.add_argument("output", help="output .nii.gz, .nii, .nrrd or .zarr (placed on the scan), .tif (for Fiji), or "
                                   "on a DICOM series .dcm (DICOM SEG) or .rtstruct.dcm (RT structure set)")
    se.add_argument("--label", type=int, default=1, help="the object's label value (default 1)")
    se.add_argument("--name", default=None, help="the object's name in a DICOM SEG, RT structure set, zarr or "
                                                 "NRRD (a 3D Slicer segment) (e.g. liver)")
    se.add_argument("--weights", default="default", help="interactive weights; other than the session's, the "
                                                         "object is propagated again with them")
    se.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    se.add_argument("--propagate", action="store_true", help="propagate again even with the session's weights")
    se.add_argument("--overwrite", action="store_true", help="replace an existing output")
    _choice_args(se, "of the image")
    se.set_defaults(fn=cmd_session)


def add_demo(sub) -> None:
    d = sub.add_parser("demo", help="run the engine and a simulated interactive session on the sample")
    d.add_argument("--weights", default="default")
    d.add_argument("--out", default=None)
    d.set_defaults(fn=cmd_demo)
