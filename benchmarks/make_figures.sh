#!/usr/bin/env bash
# Re-makes the README's figure docs/cartpole_curves.png: the seed recipe, A2C and PPO on CartPole-v1,
# seeds 0-2, each run until solved or 400k env steps, CSV logs read back by pg_lightning.plot.
# A few minutes on one CPU core:   bash benchmarks/make_figures.sh
set -euo pipefail
cd "$(dirname "$0")/.."
logs=$(mktemp -d)
trap 'rm -rf "$logs"' EXIT
for config in cartpole_reinforce cartpole_a2c cartpole_ppo; do
    python -m pg_lightning.seeds "configs/$config.yaml" --seeds 0 1 2 --csv "$logs" -- \
        --model.max_env_steps 400000 --trainer.enable_progress_bar false --trainer.log_every_n_steps 1 \
        --trainer.enable_checkpointing false
done
python -m pg_lightning.plot "$logs/cartpole_reinforce" "$logs/cartpole_a2c" "$logs/cartpole_ppo" \
    --label "REINFORCE (seed recipe)" --label "A2C" --label "PPO" --output docs/cartpole_curves.png
