#!/usr/bin/env bash
# On the device-tool machine (after scripts/gpu_prepare.sh here; carry .whl and .devcarry):
#
#     bash scripts/gpu_plan.sh smoke train      # about 9 minutes: run it with timeout_s 600
#     bash scripts/gpu_plan.sh smoke check precision memory
#
# Steps (what each writes under $OUT comes back):
#   smoke      the package imports and segments the sample on the GPU in fp32 and bf16 (seconds)
#   train      the #4 plan: fine-tune the interactive network for 8 minutes (memseg_gpu.safetensors); its
#              data set-up (supervoxels of the CT, uncached on a fresh machine) takes about 40 s more
#   check      benchmarks/gpu_check.py: CUDA against CPU, NCCL halo exchange, mirroring, training, bf16
#   precision  benchmarks/precision.py --device cuda (bf16 against fp32)
#   memory     benchmarks/train_memory.py --device cuda (the training memory estimate on a GPU)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_out}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 HALO_SEG_SHARED_DATA="$PWD/.devcarry/data"
PY=${PY:-python3}
if [ ! -d .deps/halo_seg ]; then
    "$PY" -m pip install --quiet --no-index --no-deps --target .deps .whl/*.whl || exit 1
    "$PY" -m pip install --quiet --no-index --no-deps --no-build-isolation --target .deps . || exit 1
fi
export PYTHONPATH="$PWD/.deps${PYTHONPATH:+:$PYTHONPATH}"
status=0
for step in "$@"; do
    echo "== $step ($(date +%T))"
    case $step in
        smoke)
            "$PY" - <<'PY' 2>&1 | tee "$OUT/smoke.log" || status=1 ;;
import time, torch, zarr, numpy as np
from halo_seg.engine.runner import segment
from halo_seg.samples import load_colin27_sample
print(torch.__version__, torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
img = load_colin27_sample().image
labels = {}
for prec in ("fp32", "bf16"):
    t0 = time.perf_counter()
    r = segment(img, f"/tmp/smoke_{prec}.zarr", mode="whole", device="auto", precision=prec)
    labels[prec] = np.asarray(zarr.open_group(r.output, mode="r")["labels"])
    print(prec, f"{time.perf_counter() - t0:.2f} s", r.ranks[0].get("cuda_peak_mb"))
print("labels differing", int((labels["fp32"] != labels["bf16"]).sum()))
PY
        train)
            timeout 575 "$PY" -m halo_seg.cli train-interactive --init default --prev-input --invert 0.3 \
                --thick 0.3 --batch 48 --workers "${WORKERS:-14}" --device "${DEVICE:-cuda}" --minutes "${MINUTES:-8}" \
                --out "$OUT/memseg_gpu.safetensors" 2>&1 | tee "$OUT/train.log" || status=1 ;;
        check)
            timeout 300 "$PY" benchmarks/gpu_check.py 2>&1 | tee "$OUT/gpu_check.log" || status=1
            cp benchmarks/results/gpu_check.json "$OUT/" 2>/dev/null ;;
        precision)
            timeout 240 "$PY" benchmarks/precision.py --device cuda --repeats 2 --out "$OUT/precision_cuda.json" \
                2>&1 | tee "$OUT/precision.log" || status=1 ;;
        memory)
            timeout 240 "$PY" benchmarks/train_memory.py --device cuda --out "$OUT/train_memory_cuda.json" \
                2>&1 | tee "$OUT/train_memory.log" || status=1 ;;
        *)
            echo "unknown step $step"; status=2 ;;
    esac
done
exit $status
