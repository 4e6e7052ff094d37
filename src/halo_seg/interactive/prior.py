"""Correcting an existing segmentation of the object (an automatic result, an object committed
earlier, another tool's mask) instead of starting from nothing.

The existing mask is the session's prior. A corrected slice replaces it there, and the propagation
from the corrections replaces it on the slices next to them, outward from each corrected slice,
until the propagation agrees with the prior again (slice Dice >= ``PRIOR_AGREE``): past that point
the prior was right, and it stands. Slices the propagation did not reach, or reached with a predicted
Dice below ``PRIOR_MIN_QUALITY``, keep the prior too, so a correction never replaces what it cannot
see or is unsure of. Where the prior is good, a correction thus stays local
like a painted fix; where it is wrong over several slices, the correction carries through them.
"""
from __future__ import annotations


from ..metrics import dice

# Slice Dice between the propagation and the prior at which a correction stops replacing the prior
# (1.0 would replace every slice the propagation reached, i.e. drop the prior there), and the
# predicted Dice below which a propagated slice does not replace it (None: any may). Chosen on the
# validation regions with two kinds of prior (benchmarks/prior_edit.py; mean Dice over rounds 1 to 6
# and both kinds: 0.859 against 0.838 for the best agreement alone, 0.811 painting by hand)
PRIOR_AGREE = 0.8
PRIOR_MIN_QUALITY = 0.7


def with_slices(prior, annotated: dict):
    """A copy of the prior (Z, Y, X; a numpy array or a SliceMasks) with the annotated slices
    (z -> mask) in place."""
    out = prior.copy()
    for z, m in annotated.items():
        out[z] = m
    return out


def keep_prior(prior, propagated, reached, annotated: dict, agree: float = PRIOR_AGREE) -> tuple:
    """The prior (Z, Y, X) bool (a numpy array or a SliceMasks, as ``propagated``) with the annotated
    slices (z -> mask) in place and, outward from each of them, the propagated slices up to the first
    one the propagation did not reach, another annotated slice, or one whose propagated mask agrees
    with the prior (slice Dice >= ``agree``). Returns the mask and the slices taken from the propagation."""
    out = with_slices(prior, annotated)
    reached = set(int(z) for z in reached)
    taken = set()
    for a in annotated:
        for d in (1, -1):
            z = a + d
            while 0 <= z < len(prior) and z not in annotated and z in reached and z not in taken:
                if dice(propagated[z], prior[z]) >= agree:
                    break
                out[z] = propagated[z]
                taken.add(z)
                z += d
    return out, taken
