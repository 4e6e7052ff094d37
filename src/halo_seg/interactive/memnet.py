"""The interactive network: a 2D prompt segmenter, a key/value memory reader and a quality head.

One network serves the three roles of DESIGN.md section 2 because they share almost everything:

* **prompt segmenter** - query image + guidance maps, empty memory;
* **memory propagation** - query image, memory of (image, mask) entries, no guidance;
* **correction** - both: the user's box or clicks on a slice plus the memory of its neighbours.

All inputs are square crops of ``size`` x ``size`` around the object (the region of interest),
so small and large objects look alike. The memory read is Mem3D/STM's: keys from the image
alone, values from (image, mask), affinity = q.k / sqrt(C), softmax over every memory position
plus one learned "nothing matches" position, so an empty memory is just that position.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

GUIDANCE_CHANNELS = 3  # positive heat map, negative heat map, box


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False),
                         nn.GroupNorm(4, cout), nn.ReLU(inplace=True))


def _block(cin: int, cout: int, stride: int = 1, convs: int = 2) -> nn.Sequential:
    return nn.Sequential(_conv(cin, cout, stride), *[_conv(cout, cout) for _ in range(convs - 1)])


class _Pyramid(nn.Module):
    """Three-level encoder: full, 1/2 and 1/4 resolution (one conv at full resolution: CPU time)."""

    def __init__(self, cin: int, widths: tuple[int, int, int]):
        super().__init__()
        self.l1 = _block(cin, widths[0], convs=1)
        self.l2 = _block(widths[0], widths[1], 2)
        self.l4 = _block(widths[1], widths[2], 2)

    def forward(self, x):
        f1 = self.l1(x)
        f2 = self.l2(f1)
        return f1, f2, self.l4(f2)


class _MaskEncoder(nn.Module):
    """(image, mask) -> 1/4-resolution features; light, because the image features are reused."""

    def __init__(self, width: int, out: int):
        super().__init__()
        self.net = nn.Sequential(_conv(2, width, 2), _conv(width, 2 * width, 2))
        self.out = 2 * width

    def forward(self, x):
        return self.net(x)


class MemSegNet(nn.Module):
    def __init__(self, size: int = 64, width: int = 12, key_dim: int = 32, prev_input: bool = False):
        super().__init__()
        w = (width, 2 * width, 4 * width)
        self.config = {"size": size, "width": width, "key_dim": key_dim, **({"prev_input": True} if prev_input else {})}
        # the nearest memory slice's mask as a decoder input (where the object was): a location prior
        # the attention read lacks; networks without it keep their config and weights
        self.prev_input = prev_input
        self.size = size
        self.image_enc = _Pyramid(1, w)
        self.guide_enc = _Pyramid(GUIDANCE_CHANNELS, w)
        self.value_enc = _MaskEncoder(w[0], w[2])
        self.key_proj = nn.Conv2d(w[2], key_dim, 1)
        self.value_fuse = nn.Sequential(_conv(self.value_enc.out + w[2], w[2]), nn.Conv2d(w[2], w[2], 3, padding=1))
        self.null_key = nn.Parameter(torch.zeros(key_dim))
        self.null_value = nn.Parameter(torch.zeros(w[2]))
        self.dec4 = _block(3 * w[2] + 1 + int(prev_input), w[2])
        self.dec2 = _block(w[2] + 2 * w[1], w[1])
        self.dec1 = _block(w[1] + 2 * w[0], w[0], convs=1)
        self.logit = nn.Conv2d(w[0], 1, 1)
        # quality head: features pooled inside and outside the mask + 5 uncertainty statistics
        self.quality = nn.Sequential(nn.Linear(2 * w[0] + 5, 32), nn.ReLU(inplace=True), nn.Linear(32, 1))

    # -- pieces, exposed so that propagation can cache them ------------------------------------
    def encode_image(self, image):
        """(N, 1, S, S) -> (features, key); features = (f1, f2, f4)."""
        f = self.image_enc(image)
        return f, self.key_proj(f[2])

    def encode_value(self, image, mask, f4):
        """Memory value of an (image, mask) entry; f4 is the entry's image features at 1/4."""
        v = self.value_enc(torch.cat([image, mask], 1))
        return self.value_fuse(torch.cat([v, f4], 1))

    def read(self, qkey, mkeys, mvalues, mvalid):
        """Attention read. qkey (B,C,h,w); mkeys (B,T,C,h,w); mvalues (B,T,V,h,w); mvalid (B,T) bool."""
        b, c, h, w = qkey.shape
        t = mkeys.shape[1]
        q = qkey.flatten(2)                                           # B C HW
        k = mkeys.permute(0, 2, 1, 3, 4).reshape(b, c, t * h * w)      # B C THW
        v = mvalues.permute(0, 2, 1, 3, 4).reshape(b, mvalues.shape[2], t * h * w)
        k = torch.cat([k, self.null_key.view(1, c, 1).expand(b, c, 1)], 2)
        v = torch.cat([v, self.null_value.view(1, -1, 1).expand(b, -1, 1)], 2)
        valid = torch.cat([mvalid.repeat_interleave(h * w, 1), mvalid.new_ones(b, 1)], 1)  # B THW+1
        aff = torch.einsum("bcq,bcm->bqm", q, k) / math.sqrt(c)
        aff = aff.masked_fill(~valid[:, None, :], float("-inf")).softmax(-1)
        readout = torch.einsum("bvm,bqm->bvq", v, aff).view(b, -1, h, w)
        if t:   # how sharply the memory matched; the "nothing matches" position does not count
            confidence = aff[..., :-1].max(-1).values.view(b, 1, h, w)
        else:
            confidence = aff.new_zeros(b, 1, h, w)
        return readout, confidence

    def decode(self, feats, readout, guidance, has_memory, prev=None):
        """``prev``: (B, 1, S, S) mask of the nearest memory slice (zeros: none), used with prev_input."""
        f1, f2, f4 = feats
        g1, g2, g4 = self.guide_enc(guidance)
        flag = has_memory.view(-1, 1, 1, 1).to(f4.dtype).expand(-1, 1, *f4.shape[-2:])
        parts = [f4, readout, g4, flag]
        if self.prev_input:
            parts.append(f4.new_zeros(f4.shape[0], 1, *f4.shape[-2:]) if prev is None else
                         F.adaptive_avg_pool2d(prev.to(f4.dtype), f4.shape[-2:]))
        x = self.dec4(torch.cat(parts, 1))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.dec2(torch.cat([x, f2, g2], 1))
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = self.dec1(torch.cat([x, f1, g1], 1))
        return self.logit(x), x

    def predict_quality(self, logits, feats, confidence, memory_area):
        p = torch.sigmoid(logits)
        ent = -(p * torch.log(p + 1e-6) + (1 - p) * torch.log(1 - p + 1e-6)).mean((1, 2, 3))
        area = p.mean((1, 2, 3))
        inside = (feats * p).sum((2, 3)) / (p.sum((2, 3)) + 1.0)
        outside = (feats * (1 - p)).sum((2, 3)) / ((1 - p).sum((2, 3)) + 1.0)
        uncertain = ((p > 0.2) & (p < 0.8)).float().mean((1, 2, 3))
        stats = torch.stack([ent, area, uncertain, confidence.mean((1, 2, 3)), area - memory_area], 1)
        return torch.sigmoid(self.quality(torch.cat([inside, outside, stats], 1))).squeeze(1)

    # -- the whole step ------------------------------------------------------------------------
    def forward(self, query, guidance, mem_images, mem_masks, mem_valid, prev=None):
        """query (B,1,S,S); guidance (B,3,S,S); mem_* (B,T,1,S,S), mem_valid (B,T) bool; prev
        (B,1,S,S) the nearest memory slice's mask (prev_input networks only).

        Returns mask logits (B,1,S,S) and predicted Dice (B,).
        """
        b, t = mem_valid.shape
        feats, qkey = self.encode_image(query)
        if t:
            mi = mem_images.flatten(0, 1)
            mf, mkey = self.encode_image(mi)
            mval = self.encode_value(mi, mem_masks.flatten(0, 1), mf[2])
            mkeys = mkey.view(b, t, *mkey.shape[1:])
            mvals = mval.view(b, t, *mval.shape[1:])
            marea = (mem_masks.mean((2, 3, 4)) * mem_valid).sum(1) / mem_valid.sum(1).clamp(min=1)
        else:
            h = qkey.shape[-1]
            mkeys = qkey.new_zeros(b, 0, qkey.shape[1], h, h)
            mvals = qkey.new_zeros(b, 0, self.null_value.numel(), h, h)
            marea = qkey.new_zeros(b)
        readout, conf = self.read(qkey, mkeys, mvals, mem_valid)
        logits, dfeat = self.decode(feats, readout, guidance, mem_valid.any(1), prev)
        return logits, self.predict_quality(logits, dfeat, conf, marea)


def with_prev_input(net: MemSegNet) -> MemSegNet:
    """A copy of ``net`` that also takes the nearest memory slice's mask, its weights for that input
    zero: it computes exactly what ``net`` does until training teaches it to use the input."""
    if net.prev_input:
        return net
    cfg = {k: v for k, v in net.config.items()}
    out = MemSegNet(**cfg, prev_input=True).to(next(net.parameters()).device)
    state = net.state_dict()
    w = state["dec4.0.0.weight"]
    state["dec4.0.0.weight"] = torch.cat([w, w.new_zeros(w.shape[0], 1, *w.shape[2:])], 1)
    out.load_state_dict(state)
    return out.train(net.training)
