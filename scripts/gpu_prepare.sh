#!/usr/bin/env bash
# Before a device-tool session (a lent GPU): put what that machine lacks into the ignored folders the
# run tool carries. Its image has Python 3.12 with PyTorch, numpy, scipy, scikit-image, safetensors,
# tifffile and tqdm, but not zarr, dask, nibabel (nor indexed_gzip) or pydicom, and it reaches no package registry; and
# ../shared/data does not travel with the working tree.
#
#     bash scripts/gpu_prepare.sh        # then run(carry=[".whl", ".devcarry"], command="bash scripts/gpu_plan.sh ...")
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
rm -rf .whl .devcarry
mkdir -p .whl .devcarry
# the versions the tests pass with here; --no-deps: the rest is in the device image already
"$PY" -m pip download --quiet --only-binary=:all: --no-deps --python-version "${PYVER:-3.12}" --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
    --platform any -d .whl \
    zarr==3.1.6 numcodecs==0.16.6 donfig==0.8.1.post1 google-crc32c==1.9.0 dask==2026.8.0 partd==1.4.2 \
    locket==1.0.0 nibabel==5.4.2 indexed_gzip==1.10.3 pydicom==3.0.2 importlib_metadata==8.7.0 zipp
DATA=${HALO_SEG_SHARED_DATA:-../shared/data}
cp -r "$DATA" .devcarry/data
du -sh .whl .devcarry
