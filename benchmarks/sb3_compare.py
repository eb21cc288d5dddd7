"""Wall-clock time of Stable-Baselines3's PPO and this project's for the same env steps, with the
same hyperparameters, one after the other in one process (``pip install -e ".[bench]"``).

For each config, SB3's PPO gets the config's hyperparameters: envs, rollout length, minibatch
size, epochs, lr (linearly annealed with ``anneal_lr``), γ, GAE λ, clip range, entropy and value
coefficients, gradient clipping, advantage normalisation, separate actor and critic MLPs of the
same sizes and activation, the initial log-std, and ``VecNormalize`` for observation and reward
normalisation. Envs as rl-zoo makes them: ``DummyVecEnv`` of ``Monitor(gym.make(id))`` (no
rendering). Differences left: SB3 initialises orthogonally, and its returns are its own runs'
(a different random stream). Prints seconds, the ratio (ours / SB3) and the mean return of the
last 100 training episodes of each. One torch thread.

    python benchmarks/sb3_compare.py configs/lunarlander_ppo.yaml configs/halfcheetah_ppo.yaml --env-steps 1000000
"""

from __future__ import annotations

import argparse
import time

import gymnasium as gym
import lightning as L
import numpy as np
import torch
import yaml

from pg_lightning.registry import model_from_config


def sb3_ppo(init: dict, env_steps: int, seed: int) -> tuple[float, float]:
    """Seconds to train SB3's PPO for ``env_steps`` with the config's hyperparameters, and its last-100 return."""
    from stable_baselines3 import PPO as SB3PPO
    from stable_baselines3.common.monitor import Monitor
    from stable_baselines3.common.vec_env import DummyVecEnv, VecNormalize

    start = time.perf_counter()
    env_id, kwargs = init["env_id"], init.get("env_kwargs") or {}
    env = DummyVecEnv([lambda: Monitor(gym.make(env_id, **kwargs)) for _ in range(init.get("num_envs", 1))])
    normalize_obs, normalize_reward = init.get("normalize_observations", False), init.get("normalize_rewards", False)
    if normalize_obs or normalize_reward:
        env = VecNormalize(env, norm_obs=normalize_obs, norm_reward=normalize_reward, clip_obs=10.0,
                           clip_reward=10.0, gamma=init["gamma"])
    lr = init["lr"]
    sizes = list(init["hidden_sizes"])
    model = SB3PPO(
        "MlpPolicy", env, seed=seed, device="cpu", verbose=0,
        n_steps=init["n_steps"], batch_size=init["minibatch_size"], n_epochs=init["update_epochs"],
        learning_rate=(lambda remaining: remaining * lr) if init.get("anneal_lr") else lr,
        gamma=init["gamma"], gae_lambda=init["gae_lambda"], clip_range=init["clip_range"],
        ent_coef=init.get("entropy_coef", 0.0), vf_coef=init.get("value_coef", 0.5),
        max_grad_norm=init.get("max_grad_norm") or float("inf"), normalize_advantage=init.get("normalize_advantages", True),
        policy_kwargs=dict(net_arch=dict(pi=sizes, vf=sizes), log_std_init=init.get("log_std_init", 0.0),
                           activation_fn={"tanh": torch.nn.Tanh, "relu": torch.nn.ReLU}[init.get("activation", "tanh")]),
    )
    model.learn(total_timesteps=env_steps)
    seconds = time.perf_counter() - start
    returns = [info["r"] for info in model.ep_info_buffer]
    return seconds, float(np.mean(returns[-100:])) if returns else float("nan")


def ours(config: str, env_steps: int, seed: int) -> tuple[float, float]:
    """Seconds to train the config for ``env_steps`` with ``Trainer.fit`` (no stopping when solved), and its last-100 return."""
    start = time.perf_counter()
    model = model_from_config(config, max_env_steps=env_steps, seed=seed)
    L.Trainer(max_epochs=-1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
              enable_model_summary=False).fit(model)
    return time.perf_counter() - start, float(model.return_last100)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("configs", nargs="+")
    parser.add_argument("--env-steps", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print("| config | env steps | SB3 s | pg_lightning s | ratio (ours / SB3) | SB3 last-100 return | our last-100 return |")
    print("|---|---|---|---|---|---|---|")
    for config in args.configs:
        with open(config) as f:
            init = yaml.safe_load(f)["model"]["init_args"]
        sb3_s, sb3_return = sb3_ppo(init, args.env_steps, args.seed)
        our_s, our_return = ours(config, args.env_steps, args.seed)
        print(f"| `{config}` | {args.env_steps:,} | {sb3_s:.1f} | {our_s:.1f} | {our_s / sb3_s:.2f} | "
              f"{sb3_return:.1f} | {our_return:.1f} |", flush=True)


if __name__ == "__main__":
    main()
