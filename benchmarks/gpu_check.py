"""CUDA correctness and the NCCL path, for a machine with a GPU.

    python benchmarks/gpu_check.py          (writes benchmarks/results/gpu_check.json)

1. The whole-volume network on CUDA vs on the CPU (TF32 off, then on).
2. The partitioned network through NCCL (one rank per GPU; one GPU gives a 1-rank group, which
   still runs the NCCL all-reduces of the distributed instance norm), forward and backward
   against the whole-volume network on the same GPU.
3. The CPU (gloo) multi-rank check on this machine's cores for comparison.
4. Mirroring (engine/mirror.py) on CUDA: flipped kernels on the GPU against the mirrored views
   computed on the CPU by flipping the volume.
5. Training on CUDA: the unpartitioned trainer, and partitioned training through NCCL (one rank per
   GPU; with 4 GPUs or more, two data-parallel replicas of a grid over half of them); the
   partitioned validation Dice must equal the saved weights' whole-volume Dice on the CPU.
6. bf16 autocast (engine/precision.py) on CUDA: the whole network against fp32 on the same GPU, and
   the partitioned network through NCCL in bf16, forward and backward, against the whole one in bf16.
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


def bf16_on_cuda(grid) -> dict:
    from halo_seg.engine.mirror import mirrored_softmax
    torch.manual_seed(0)
    net = UNet3D(1, 3, base=8, depth=3).eval().cuda()
    x = torch.randn(1, 1, 96, 112, 96, device="cuda")
    with torch.inference_mode():
        p32 = mirrored_softmax(net, x, (), "fp32")
        p16 = mirrored_softmax(net, x, (), "bf16")
    part = compare_partitioned(grid, (37, 29, 33), config=dict(in_channels=1, out_channels=3, base=4, depth=2),
                               device="cuda", precision="bf16")
    return {"max_abs_prob_diff_vs_fp32": float((p16 - p32).abs().max()),
            "labels_identical_frac_vs_fp32": float((p16.argmax(1) == p32.argmax(1)).float().mean()),
            "nccl_partitioned_bf16": part}


def training_on_cuda() -> dict:
    import tempfile

    import numpy as np

    from halo_seg.engine import normalize
    from halo_seg.engine.runner import predict_whole
    from halo_seg.engine.weights import load_unet
    from halo_seg.metrics import dice
    from halo_seg.samples import make_phantom
    from halo_seg.train.partitioned_run import train_partitioned
    from halo_seg.train.unet_train import TrainConfig, train_unet
    ph = make_phantom((64, 64, 64), n_objects=4, seed=1, noise=0.05)
    img, lab = ph.image, (ph.labels > 0).astype(np.int64)
    tmp = Path(tempfile.mkdtemp())
    out = {}
    r = train_unet([img], [lab], TrainConfig(patch=(48, 48, 48), iterations=60, epoch=30, base=8, depth=3,
                                             device="cuda"), tmp / "u.safetensors", log=lambda *a: None)
    out["unpartitioned_best_dice"] = r["best_mean_dice"]
    n = torch.cuda.device_count()   # NCCL gives each rank a GPU of its own
    replicas = 2 if n >= 4 else 1
    grid = (n // replicas, 1, 1)
    cfg = dict(n_classes=2, patch=[64, 64, 64], iterations=60, epoch=30, lr=3e-3, base=8, depth=3, device="cuda",
               replicas=replicas)
    r = train_partitioned(img, lab, cfg, grid, tmp / "p.safetensors", log=lambda *a: None)
    net, meta = load_unet(tmp / "p.safetensors")
    spec = normalize.resolve(meta["normalization"], img)
    m, s = normalize.mean_std(normalize.moments(img, spec), spec)
    whole = dice(predict_whole(net, normalize.apply(img, m, s, spec), "cpu").argmax(0) == 1, lab == 1)
    out.update(grid=list(grid), replicas=replicas, partitioned_val_dice=meta["training"]["best_val_dice"][0], whole_cpu_dice=whole,
               partitioned_peak_mib=r["peak_mb"])
    return out


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
    res["training_cuda"] = training_on_cuda()
    res["bf16_cuda"] = bf16_on_cuda(grid)
    print(json.dumps(res, indent=1))
    out = Path(__file__).parent / "results" / "gpu_check.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
