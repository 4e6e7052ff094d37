"""3D convolutions go through oneDNN on a CPU whatever the shape (engine/conv.py)."""
import pytest
import torch
import torch.nn.functional as F

from halo_seg.engine.conv import _X86, conv3d
from halo_seg.engine.unet import UNet3D

pytestmark = pytest.mark.skipif(not (torch.backends.mkldnn.is_available() and _X86),
                                reason="oneDNN is called directly on x86-64 CPUs only")


def _kernels(fn) -> set:
    with torch.profiler.profile() as prof:
        fn()
    return {e.name for e in prof.events()}


@pytest.mark.parametrize("cin,shape,stride,pad", [(1, (16, 40, 40), 1, 1), (8, (8, 64, 64), 1, 1),
                                                  (8, (10, 66, 66), 1, 0), (8, (8, 32, 32), 2, 0)])
def test_conv3d_equals_pytorchs_on_shapes_pytorch_sends_to_im2col(cin, shape, stride, pad):
    torch.manual_seed(0)
    x, w, b = torch.randn(1, cin, *shape), torch.randn(8, cin, 3 - (stride == 2), 3 - (stride == 2),
                                                       3 - (stride == 2)), torch.randn(8)
    assert "aten::slow_conv3d" in _kernels(lambda: F.conv3d(x, w, b, stride, pad))   # the case at issue
    ours = conv3d(x, w, b, stride, pad)
    assert "aten::slow_conv3d" not in _kernels(lambda: conv3d(x, w, b, stride, pad))
    torch.testing.assert_close(ours, F.conv3d(x, w, b, stride, pad), rtol=1e-4, atol=1e-4)


def test_a_thin_block_runs_every_convolution_through_onednn():
    net = UNet3D(base=8, depth=3).eval()
    x = torch.randn(1, 1, 8, 64, 64)
    with torch.no_grad():
        names = _kernels(lambda: net(x))
    assert "aten::mkldnn_convolution" in names and "aten::slow_conv3d" not in names


def test_gradients_flow_and_other_cases_are_left_to_pytorch():
    torch.manual_seed(0)
    x = torch.randn(1, 2, 8, 16, 16, requires_grad=True)
    w = torch.randn(4, 2, 3, 3, 3, requires_grad=True)
    conv3d(x, w, None, 1, 1).square().sum().backward()
    gx, gw = x.grad.clone(), w.grad.clone()
    x.grad = w.grad = None
    F.conv3d(x, w, None, 1, 1).square().sum().backward()
    torch.testing.assert_close(gx, x.grad, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(gw, w.grad, rtol=1e-4, atol=1e-4)
    with torch.no_grad():
        with torch.backends.mkldnn.flags(enabled=False):
            assert "aten::mkldnn_convolution" not in _kernels(lambda: conv3d(x, w, None, 1, 1))
        with torch.autocast("cpu", dtype=torch.bfloat16):
            assert conv3d(x, w, None, 1, 1).dtype == torch.bfloat16   # autocast still applies
        assert conv3d(x.double(), w.double(), None, 1, 1).dtype == torch.float64
