"""Policy-gradient reinforcement learning as PyTorch Lightning modules."""

from pg_lightning.callbacks import StopWhenSolved
from pg_lightning.data import Batch, Collector, EpisodeDataset, RolloutDataset
from pg_lightning.modules import A2C, PPO, PolicyGradient, Reinforce
from pg_lightning.policies import ActorCritic

__all__ = [
    "A2C",
    "PPO",
    "ActorCritic",
    "Batch",
    "Collector",
    "EpisodeDataset",
    "PolicyGradient",
    "Reinforce",
    "RolloutDataset",
    "StopWhenSolved",
]
__version__ = "0.1.0"
