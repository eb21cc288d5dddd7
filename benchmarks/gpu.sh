#!/usr/bin/env bash
# Everything that needs a GPU, in one call of a few minutes: the GPU tests (16-mixed clipping the
# unscaled gradients among them), then benchmarks/devices.py (collection at 256-8192 CartPole
# envs, PPO end to end on CartPole with 1024 envs, HalfCheetah, MinAtar Breakout and Atari
# Breakout), each GPU number next to the CPU's measured in the same process. Output is also
# written to $OUT/gpu.log when $OUT is set.
#
# On a machine with torch and lightning but without this project's other packages and no network,
# first put wheels in .whl/ (gymnasium, farama-notifications, ale-py, MinAtar, mujoco, mujoco-core,
# mujoco-studio, glfw, pyopengl; see the README's GPU section); they are installed to /tmp/site.
set -uo pipefail
cd "$(dirname "$0")/.."
if [ -d .whl ]; then
    python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD" PYTHONUNBUFFERED=1 WANDB_MODE=offline
log="${OUT:-/tmp}/gpu.log"
{
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    lscpu | grep -E "^Model name|^CPU\(s\)"
    python3 -m pytest -q -p no:cacheprovider --tb=short tests/test_ddp.py tests/test_observations.py \
        tests/test_gradient_step.py tests/test_many_seeds.py -k "gpu" 2>&1 | tail -40
    python3 benchmarks/devices.py --seconds "${SECONDS_PER_CELL:-15}" 2>&1 | grep -v -E "Tip|available:|settotalmass|^$|Powered by|A.L.E"
} 2>&1 | tee "$log"
