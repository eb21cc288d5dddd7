"""The arguments every algorithm shares: their documentation and their checks.

Each algorithm declares them in its own signature (with its own defaults, so ``X()``, the CLI's
``--model X`` and ``--model.help X`` agree); their help text and range checks live here once.
"""

from __future__ import annotations

from lightning.fabric.utilities.data import AttributeDict

from pg_lightning.errors import require

SHARED_ARGS = """
        env_id: a registered gymnasium id, e.g. ``"CartPole-v1"``, or gymnasium's import form
            ``"my_pkg.envs:Maze-v0"`` (imports ``my_pkg.envs``, which registers the env).
        env_kwargs: keyword arguments for ``gymnasium.make`` / ``make_vec``.
        wrappers: gymnasium wrappers applied in order to every training and evaluation env,
            before vectorisation: class paths or ``{class_path, init_args}`` entries.
        num_envs: parallel envs per process.
        vectorization: ``auto`` (the env's own vectorised version if any, else sync), ``vector_entry_point``, ``sync`` or ``async``.
        hidden_sizes: widths of the hidden layers (an empty list: heads on the encoder's features).
        network: your own encoder instead of the default (Nature CNN for images, flatten
            otherwise): a class path or ``{class_path, init_args}`` of an ``nn.Module`` that maps
            the preprocessed observation batch to ``[batch, features]``; the MLP and the heads follow.
        activation: ``relu``, ``tanh``, ``elu`` or ``silu`` (ReLU is ~25x cheaper than tanh on a CPU).
        critic: ``none``, ``separate`` (own MLP) or ``shared`` (a value output on the actor's trunk).
        lr: Adam learning rate.
        anneal_lr: decay the learning rate linearly to 0 over ``max_env_steps`` (an LR scheduler).
        gamma: discount factor in [0, 1].
        entropy_coef: weight of the entropy bonus.
        value_coef: weight of the value loss.
        max_grad_norm: clip the global gradient norm to this; ``None`` disables clipping.
        normalize_observations: running mean/std normalisation of observations (saved, exported).
        normalize_rewards: scale rewards by the running std of the discounted return.
        log_std_init: initial log standard deviation of Gaussian (Box) policies.
        seed: seeds the network, every env (``seed + rank * num_envs + i``) and action sampling.
        max_env_steps: env-step budget over all processes; ``None`` for no budget.
        eval_every: evaluate every this many updates during ``fit``; 0 leaves the cadence to the
            Trainer's ``check_val_every_n_epoch`` / ``val_check_interval`` if set, else no
            evaluation during ``fit``.
        eval_episodes: deterministic-policy episodes per evaluation, in a separately seeded env.
        record_video: record the first evaluation episode as an mp4 (and log it to W&B).
        max_skipped_updates: updates with a non-finite loss or gradient are skipped (no parameter
            changes) with a warning; this many in a row stop training with an error.
        num_seeds: independent agents trained side by side in this process, seeded ``seed``,
            ``seed + 1``, ...: each its own weights, optimizer state, envs, statistics and stop
            (solved or at its ``max_env_steps``); the run ends when every seed has stopped.
"""


def shared_args_documented(cls: type) -> type:
    """Append the arguments every algorithm shares to ``cls``'s docstring (its Args section)."""
    cls.__doc__ = cls.__doc__.rstrip() + "\n" + SHARED_ARGS.strip("\n")
    return cls


def check_shared_arguments(hp: AttributeDict) -> None:
    """A ConfigError naming the first shared argument out of range."""
    require(isinstance(hp.env_id, str) and bool(hp.env_id), f"env_id must be a gymnasium id, got {hp.env_id!r}")
    require(hp.num_envs >= 1, f"num_envs must be >= 1, got {hp.num_envs}")
    require(all(int(h) > 0 for h in hp.hidden_sizes),
            f"hidden_sizes must be positive integers, got {list(hp.hidden_sizes)}")
    require(hp.lr > 0, f"lr must be > 0, got {hp.lr}")
    require(0.0 <= hp.gamma <= 1.0, f"gamma must be in [0, 1], got {hp.gamma}")
    require(hp.entropy_coef >= 0, f"entropy_coef must be >= 0, got {hp.entropy_coef}")
    require(hp.value_coef >= 0, f"value_coef must be >= 0, got {hp.value_coef}")
    require(hp.max_grad_norm is None or hp.max_grad_norm > 0, f"max_grad_norm must be > 0 or None, got {hp.max_grad_norm}")
    require(hp.max_env_steps is None or hp.max_env_steps > 0, f"max_env_steps must be > 0 or None, got {hp.max_env_steps}")
    require(not hp.anneal_lr or hp.max_env_steps is not None, "anneal_lr needs max_env_steps (the schedule's length)")
    require(hp.max_skipped_updates >= 1, f"max_skipped_updates must be >= 1, got {hp.max_skipped_updates}")
    require(hp.num_seeds >= 1, f"num_seeds must be >= 1, got {hp.num_seeds}")
    require(hp.eval_every >= 0, f"eval_every must be >= 0, got {hp.eval_every}")
    require(hp.eval_episodes >= 1, f"eval_episodes must be >= 1, got {hp.eval_episodes}")
    require(hp.vectorization in ("auto", "vector_entry_point", "sync", "async"),
            f"vectorization must be auto, vector_entry_point, sync or async, got {hp.vectorization!r}")
