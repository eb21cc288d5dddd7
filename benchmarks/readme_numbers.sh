#!/usr/bin/env bash
# Re-makes every measured number and figure in the README, in the order the README shows them, on
# the machine it runs on (the header says which commit, CPU and versions). About 70 minutes on 2 cores;
# two runs at a time where the runs are independent.
#   bash benchmarks/readme_numbers.sh 2>/dev/null | tee readme_numbers.log
# ROBUSTNESS_FROM=REV skips the hour of seed-robustness runs when benchmarks/same_training.sh REV
# shows training unchanged since REV, where they were measured (about 25 minutes then).
set -euo pipefail
cd "$(dirname "$0")/.."
reference=../shared/reference  # the speed yardsticks, where this checkout has them
echo "commit $(git rev-parse --short HEAD)$(git diff --quiet || echo ' (with uncommitted changes)'), $(date -u +%F)"
echo "$(nproc) cores: $(lscpu | sed -n 's/^Model name: *//p')"
python -c "import torch, lightning, gymnasium, numpy; print(f'torch {torch.__version__}, lightning {lightning.__version__}, gymnasium {gymnasium.__version__}, numpy {numpy.__version__}')"

if [ -n "${ROBUSTNESS_FROM:-}" ]; then  # ROBUSTNESS_FROM=REV: keep REV's seed-robustness tables if training is unchanged
    echo; echo "## Seed robustness: measured at $ROBUSTNESS_FROM; training there and here:"
    bash benchmarks/same_training.sh "$ROBUSTNESS_FROM"
else
    echo; echo "## Seed robustness: 20 seeds each config was not tuned on (100-119)"
    python benchmarks/robustness.py configs/cartpole_ppo.yaml configs/cartpole_a2c.yaml \
        configs/cartpole_reinforce_baseline.yaml configs/cartpole_reinforce.yaml --seeds 20 --jobs 2 | sed -n '/^seeds /,$p'
    echo; echo "## Harder envs: 5 seeds (100-104)"
    python benchmarks/robustness.py configs/acrobot_ppo.yaml configs/pendulum_ppo.yaml configs/lunarlander_ppo.yaml \
        configs/halfcheetah_ppo.yaml --seeds 5 --jobs 2 | sed -n '/^seeds /,$p'
fi

# the seed recipe's step count to solve varies ~5x between random streams: 10 seeds keep its median off one lucky or unlucky seed
echo; echo "## Time to solve against the plain-loop yardsticks (and SB3 with rl-zoo's CartPole PPO): CartPole PPO seeds 0-4, the seed recipe seeds 0-9"
if [ -d "$reference" ]; then
    python benchmarks/time_to_solve.py configs/cartpole_ppo.yaml --seeds 5 --reference "$reference/limit/ppo_fast.py \
        --n-envs 32 --n-steps 16 --epochs 10 --mb 512 --lr 3e-3 --act relu --shared --anneal-steps 2e5" \
        --reference "$reference/peers/sb3_run.py ppo" | grep -v '^Solved'
    python benchmarks/time_to_solve.py configs/cartpole_reinforce.yaml --seeds 10 \
        --reference "$reference/limit/reinforce_fast.py" | grep -v '^Solved'
else
    python benchmarks/time_to_solve.py configs/cartpole_ppo.yaml --seeds 5 | grep -v '^Solved'
fi

echo; echo "## Throughput"
python benchmarks/throughput.py
echo; echo "## CPU steps/s of the pixel configs (benchmarks/devices.py, CPU column; gpu.sh adds the GPU's)"
python benchmarks/devices.py --only training --seconds 20 2>&1 | grep '^|'
echo; echo "## Against Stable-Baselines3's PPO, same hyperparameters, 300k env steps each (needs the bench extra)"
python benchmarks/sb3_compare.py configs/lunarlander_ppo.yaml configs/halfcheetah_ppo.yaml --env-steps 300000 2>&1 | grep '^|'
echo; echo "## DDP"
python benchmarks/ddp_throughput.py
echo; echo "## Soak"
python benchmarks/soak.py

echo; echo "## Whole process (median of 3, offline W&B)"
python - <<'EOF'
import os, statistics, subprocess, sys, tempfile, time
root = os.path.abspath(".")
commands = {
    "python train.py --config configs/cartpole_ppo.yaml": [f"{root}/train.py", "--config",
                                                            f"{root}/configs/cartpole_ppo.yaml",
                                                            "--trainer.enable_progress_bar", "false"],
    "python train.py --help": [f"{root}/train.py", "--help"],
    'python -c "import torch, lightning, gymnasium"': ["-c", "import torch, lightning, gymnasium"],
}
for name, args in commands.items():
    times = []
    for _ in range(3):
        with tempfile.TemporaryDirectory() as folder:
            start = time.perf_counter()
            subprocess.run([sys.executable, *args], cwd=folder, check=True, capture_output=True,
                           env={**os.environ, "WANDB_MODE": "offline"})
            times.append(time.perf_counter() - start)
    print(f"{name}: {statistics.median(times):.1f} s (runs: {', '.join(f'{t:.1f}' for t in times)})")
EOF

echo; echo "## Figure docs/cartpole_curves.png"
bash benchmarks/make_figures.sh && echo "re-made docs/cartpole_curves.png"
