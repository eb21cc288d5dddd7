"""The LightningModules: ``PolicyGradient`` (the run they share) and one algorithm per file."""

from pg_lightning.modules.a2c import A2C
from pg_lightning.modules.base import PolicyGradient
from pg_lightning.modules.ppo import PPO
from pg_lightning.modules.reinforce import Reinforce

__all__ = ["A2C", "PPO", "PolicyGradient", "Reinforce"]
