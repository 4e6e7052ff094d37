"""3D convolutions go through oneDNN on a CPU whatever the shape (engine/conv.py)."""
import pytest
import torch
import torch.nn.functional as F

from halo_seg.engine.conv import _X86, backward_order, conv3d
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


@pytest.mark.parametrize("cin,shape,stride,pad", [(8, (8, 64, 64), 1, 1), (1, (16, 40, 40), 1, (0, 1, 1)),
                                                  (16, (4, 32, 48), 1, (1, 0, 1)), (8, (8, 64, 32), 2, 0),
                                                  (8, (32, 32, 32), 1, 1)])
def test_backward_on_thin_inputs_matches_a_float64_reference(cin, shape, stride, pad):
    """The backward pass runs with the spatial axes permuted (thinnest last, where PyTorch picks
    oneDNN); the gradients come back in the caller's order and layout."""
    torch.manual_seed(0)
    k = 2 if stride == 2 else 3
    x = torch.randn(1, cin, *shape, requires_grad=True)
    w = torch.randn(8, cin, k, k, k, requires_grad=True)
    b = torch.randn(8, requires_grad=True)
    y = conv3d(x, w, b, stride, pad)
    g = torch.randn_like(y)
    y.backward(g)
    ref = [t.detach().double().requires_grad_() for t in (x, w, b)]
    F.conv3d(*ref, stride, pad).backward(g.double())
    for ours, theirs in zip((x, w, b), ref):
        assert ours.grad.is_contiguous() and ours.grad.shape == ours.shape
        scale = theirs.grad.abs().max().item()
        torch.testing.assert_close(ours.grad.double(), theirs.grad, rtol=0, atol=1e-5 * scale)


def test_backward_order_puts_the_thinnest_axis_last_where_that_reaches_onednn():
    assert backward_order((1, 8, 8, 64, 64)) == [1, 2, 0]        # 8 x 8 x 64 <= 20480: im2col as given
    assert backward_order((1, 8, 64, 8, 64)) == [0, 2, 1]
    assert backward_order((1, 8, 64, 64, 8)) is None             # oneDNN already
    assert backward_order((1, 8, 32, 32, 32)) is None
    assert backward_order((1, 1, 16, 256, 256)) == [1, 2, 0]  # the first convolution of a slab
    assert backward_order((1, 1, 32, 32, 32)) is None            # no order reaches it: left as it is
    assert backward_order((2, 8, 8, 64, 64)) is None             # a batch of two goes to oneDNN
    assert backward_order((1, 8, 8, 64, 64), onednn=False) is None


def test_a_thin_training_step_matches_pytorchs_own_choice():
    """The U-Net's step on a thin patch, against the same step with every convolution left to PyTorch."""
    import os
    torch.manual_seed(0)
    net = UNet3D(base=8, depth=3)
    x = torch.randn(1, 1, 8, 64, 64)
    grads = []
    for env in (None, "1"):
        if env:
            os.environ["HALO_SEG_PYTORCH_CONV"] = env
        try:
            net.zero_grad()
            net(x).square().mean().backward()
            grads.append({n: p.grad.clone() for n, p in net.named_parameters()})
        finally:
            os.environ.pop("HALO_SEG_PYTORCH_CONV", None)
    for n in grads[0]:
        scale = grads[1][n].abs().max().item()
        torch.testing.assert_close(grads[0][n], grads[1][n], rtol=0, atol=1e-4 * scale)
