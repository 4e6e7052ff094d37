"""CUDA correctness and the NCCL path, for a machine with a GPU.

    python benchmarks/gpu_check.py          (writes benchmarks/results/gpu_check.json)

1. The whole-volume network on CUDA vs on the CPU (TF32 off, then on).
2. The partitioned network through NCCL (one rank per GPU; one GPU gives a 1-rank group, which
   still runs the NCCL all-reduces of the distributed instance norm), forward and backward
   against the whole-volume network on the same GPU.
3. The CPU (gloo) multi-rank check on this machine's cores for comparison.
4. Mirroring (engine/mirror.py) on CUDA: flipped kernels on the GPU against the mirrored views
   computed on the CPU by flipping the volume.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from halo_seg.engine.unet import UNet3D
from halo_seg.engine.verify import compare_partitioned


def whole_cuda_vs_cpu(tf32: bool) -> dict:
    torch.backends.cudnn.allow_tf32 = tf32
    torch.backends.cuda.matmul.allow_tf32 = tf32
    torch.manual_seed(0)
    net = UNet3D(1, 3, base=8, depth=3).eval()
    x = torch.randn(1, 1, 96, 112, 96)
    with torch.inference_mode():
        ref = net(x)
        out = net.cuda()(x.cuda()).cpu()
    return {"tf32": tf32, "max_abs_logit_diff": float((out - ref).abs().max()),
            "logit_scale": float(ref.abs().max()), "labels_identical_frac": float((out.argmax(1) == ref.argmax(1)).float().mean())}


def mirrored_cuda_vs_flipped_cpu() -> dict:
    from halo_seg.engine.mirror import flip_sets, mirrored_softmax
    torch.manual_seed(0)
    net = UNet3D(1, 3, base=8, depth=3).eval()
    x = torch.randn(1, 1, 64, 80, 48)
    with torch.inference_mode():
        views = [torch.flip(torch.softmax(net(torch.flip(x, [2 + a for a in s])), 1), [2 + a for a in s])
                 for s in flip_sets("zyx")]
        ref = torch.stack(views).mean(0)
        out = mirrored_softmax(net.cuda(), x.cuda(), "zyx").cpu()
    return {"views": len(views), "max_abs_prob_diff": float((out - ref).abs().max()),
            "labels_identical_frac": float((out.argmax(1) == ref.argmax(1)).float().mean())}


def main():
    if not torch.cuda.is_available():
        sys.exit("no CUDA device: this check needs a GPU")
    res = {"gpu": torch.cuda.get_device_name(), "gpus": torch.cuda.device_count(), "torch": torch.__version__}
    res["cuda_vs_cpu"] = [whole_cuda_vs_cpu(False), whole_cuda_vs_cpu(True)]
    torch.backends.cudnn.allow_tf32 = False
    n = torch.cuda.device_count()
    grid = (n, 1, 1)
    res["nccl_partitioned"] = compare_partitioned(grid, (37, 29, 33), config=dict(in_channels=1, out_channels=3,
                                                                                   base=4, depth=2), device="cuda")
    res["gloo_partitioned_cpu"] = compare_partitioned((2, 2, 1), (37, 29, 33), config=dict(
        in_channels=1, out_channels=3, base=4, depth=2))
    res["mirror_cuda_vs_cpu"] = mirrored_cuda_vs_flipped_cpu()
    print(json.dumps(res, indent=1))
    out = Path(__file__).parent / "results" / "gpu_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
