#!/usr/bin/env bash
# Builds nnfuse on a machine with a CUDA GPU, runs the cuda-marked tests and the three GPU
# benchmarks, and writes every log and result into one folder.
#
#     bash bench/run_gpu.sh OUTDIR [build] [test] [bench]      (all three when none is named)
#
# Each stage has its own time limit so that one hung kernel still leaves the other logs.
# NNFUSE_CUDA_ARCHITECTURES defaults to the GPU's own architecture here (one compile
# instead of the default list) and can be set from outside; NNFUSE_GPU_BENCHES picks
# benchmarks (default: activations softmax optim).
set -u -o pipefail
out=${1:?usage: bench/run_gpu.sh OUTDIR [build] [test] [bench]}
shift
stages=${*:-build test bench}
mkdir -p "$out"
export PYTHONUNBUFFERED=1

has_stage() { [[ " $stages " == *" $1 "* ]]; }

{
    nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm,clocks.max.mem --format=csv
    python3 -c "import sys, numpy, torch
print(sys.version.split()[0], 'numpy', numpy.__version__, 'torch', torch.__version__)"
    python3 -c "import cupy; print('cupy', cupy.__version__)" || true
    nvcc --version | tail -n 2
} >"$out/machine.txt" 2>&1
cat "$out/machine.txt"

if has_stage build; then
    cc=$(nvidia-smi --query-gpu=compute_cap --format=csv,noheader | head -n 1 | tr -d '.')
    export NNFUSE_CUDA_ARCHITECTURES=${NNFUSE_CUDA_ARCHITECTURES:-$cc}
    export CMAKE_BUILD_PARALLEL_LEVEL=${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc)}
    start=$SECONDS
    timeout 420 python3 -m pip install --no-build-isolation --no-deps -v . >"$out/build.log" 2>&1
    rc=$?
    echo "build: rc=$rc in $((SECONDS - start)) s for architectures $NNFUSE_CUDA_ARCHITECTURES"
    grep -i -E "warning|error" "$out/build.log" | grep -v -E "^\s*$|WARNING: Running pip as" | head -n 20
    [ $rc -eq 0 ] || exit $rc
fi

python3 -c "import nnfuse as nf
info = nf.build_info()
print('cuda_available', nf.cuda_available(), 'devices', info['cuda_devices'], 'architectures', info['cuda_architectures'])"

if has_stage test; then
    start=$SECONDS
    timeout 330 python3 -m pytest -m cuda -q -p no:cacheprovider --timeout=90 --tb=short \
        -o addopts="" -rfE --junitxml="$out/pytest-cuda.xml" tests >"$out/pytest-cuda.log" 2>&1
    echo "cuda tests: rc=$? in $((SECONDS - start)) s"
    grep -E "^(FAILED|ERROR)" "$out/pytest-cuda.log" | cut -c1-300 | head -n 40
    tail -n 1 "$out/pytest-cuda.log"
fi

if has_stage bench; then
    for name in ${NNFUSE_GPU_BENCHES:-activations softmax optim}; do
        start=$SECONDS
        timeout 120 python3 "bench/cuda_$name.py" --json "$out/$name-cuda.json" \
            --markdown "$out/$name-cuda.md" >"$out/bench-$name.log" 2>&1
        echo "bench $name: rc=$? in $((SECONDS - start)) s"
        tail -n 4 "$out/bench-$name.log"
    done
fi
