import numpy as np
import pytest
import torch


@pytest.fixture
def boxed_session(tmp_path):
    """A function: an interactive session on an opened volume, one box on ``truth``'s largest
    slice, propagated and saved; returns the segmenter and the session file."""
    def make(vol, truth):
        from halo_seg import InteractiveSegmenter
        from halo_seg.interactive.roi import mask_bbox
        seg = InteractiveSegmenter(np.asarray(vol.data), spacing=vol.spacing, device="cpu")
        z = int(truth.sum((1, 2)).argmax())
        seg.add_box(z, *mask_bbox(truth[z]))
        seg.propagate()
        return seg, seg.save_session(tmp_path / "s.npz")
    return make


@pytest.fixture(autouse=True)
def _user_dir(tmp_path, monkeypatch):
    """Learned quality models and kept sessions go to a scratch directory, never the user's."""
    monkeypatch.setenv("HALO_SEG_USER_DIR", str(tmp_path / "user"))
    return tmp_path / "user"


@pytest.fixture(scope="session")
def tiny_weights(tmp_path_factory):
    """A small random-init 3D U-Net saved as safetensors (exactness needs no training)."""
    from halo_seg.engine.unet import UNet3D
    from halo_seg.engine.weights import save_unet
    torch.manual_seed(0)
    net = UNet3D(1, 3, base=4, depth=2)
    p = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_unet(net, p, classes=["bg", "a", "b"])
    return p


@pytest.fixture(scope="session")
def phantom_npy(tmp_path_factory):
    from halo_seg.samples import make_phantom
    ph = make_phantom((27, 34, 30), n_objects=4, seed=3)
    p = tmp_path_factory.mktemp("vol") / "phantom.npy"
    np.save(p, ph.image)
    return p


@pytest.fixture(scope="session")
def phantom():
    """(image, mask) of the largest object of a procedural phantom the interactive network never
    saw in training (training phantoms use seeds >= 1000)."""
    from halo_seg.samples import make_phantom
    ph = make_phantom((40, 96, 96), n_objects=4, seed=7, noise=0.08)
    k = int(np.argmax([(ph.labels == i).sum() for i in range(1, 5)])) + 1
    return ph.image, ph.labels == k


@pytest.fixture(scope="session")
def whole_dice():
    """``whole_dice(weights, image, labels)`` -> (Dice of class 1 of the saved weights run on the whole
    volume, normalised as their metadata says, and that metadata): an independent check of the Dice
    a trainer reported."""
    def score(weights, img, lab):
        from halo_seg.engine import normalize
        from halo_seg.engine.runner import predict_whole
        from halo_seg.engine.weights import load_unet
        from halo_seg.metrics import dice
        net, meta = load_unet(weights)
        spec = normalize.resolve(meta["normalization"], img)
        m, s = normalize.mean_std(normalize.moments(img, spec), spec)
        return dice(predict_whole(net, normalize.apply(img, m, s, spec), "cpu").argmax(0) == 1, lab == 1), meta
    return score


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory):
    """An untrained interactive network's weights (seeded): quick, for validation and state handling."""
    from halo_seg.interactive.memnet import MemSegNet
    from halo_seg.interactive.model_io import save_memnet
    torch.manual_seed(0)
    return save_memnet(MemSegNet(), tmp_path_factory.mktemp("w") / "random.safetensors")
