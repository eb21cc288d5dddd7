"""The policy network: observations → encoder → MLP → distribution head, with an optional critic.

``ActorCritic`` is the torch network the loss trains; its heads (``distributions``) turn its output
into actions. Collection with an MLP over flat observations on the CPU does not call torch per env
step: ``ActorCritic.sampler()`` freezes the current actor into numpy arrays (``numpy_actor``).
Log-probabilities for the loss are recomputed in torch, in one batched forward per update.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from pg_lightning import observations
from pg_lightning.distributions import CategoricalHead, make_head
from pg_lightning.errors import ConfigError
from pg_lightning.networks import Encoder, user_network
from pg_lightning.normalization import RunningMeanStd
from pg_lightning.numpy_actor import Layer, Sampler, numpy_mlp, one_env_categorical
from pg_lightning.observations import check_space, event_ndim, is_image, leaf_spaces, preprocess_leaf

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}
CRITICS = ("none", "separate", "shared")


def mlp(in_dim: int, hidden_sizes: Sequence[int], activation: str) -> nn.Sequential:
    """Linear → activation layers; the output layer is added by the caller."""
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(in_dim, size), ACTIVATIONS[activation]()]
        in_dim = size
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Actor (and optional critic): encoder → MLP → heads, over optionally normalised observations.

    The encoder turns preprocessed observations (see ``observations``) into one feature vector:
    by default the Nature CNN for image entries and a flatten for the rest, concatenated; with
    ``network`` (a ``class_path`` and ``init_args``) the user's module instead, which receives the
    preprocessed batch ``[B, ...]`` (a dict of them for Dict / Tuple spaces) and returns
    ``[B, features]``. The MLP of ``hidden_sizes`` follows (empty: heads on the features).
    ``critic``: ``"none"`` (policy only, the seed), ``"separate"`` (its own encoder and MLP) or
    ``"shared"`` (a value output on the actor's features). Defaults build the seed's network:
    obs → Linear(128) → ReLU → Linear(n_actions) → logits.
    """

    def __init__(
        self,
        observation_space: gym.Space,
        action_space: gym.Space,
        hidden_sizes: Sequence[int] = (128,),
        activation: str = "relu",
        critic: str = "none",
        normalize_observations: bool = False,
        log_std_init: float = 0.0,
        network: str | dict[str, Any] | None = None,
    ):
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(f"activation must be one of {sorted(ACTIVATIONS)}, got {activation!r}")
        if critic not in CRITICS:
            raise ConfigError(f"critic must be one of {CRITICS}, got {critic!r}")
        check_space(observation_space)
        self.observation_space, self.spaces = observation_space, leaf_spaces(observation_space)
        flat_box = isinstance(self.spaces, gym.spaces.Box) and not is_image(self.spaces)
        if normalize_observations and not (flat_box and np.issubdtype(self.spaces.dtype, np.floating)):
            raise ConfigError(f"normalize_observations needs a float Box observation space, got {observation_space}")
        self.head = make_head(action_space, log_std_init)
        self.obs_rms = RunningMeanStd(observation_space.shape) if normalize_observations else None

        def make_encoder() -> nn.Module:
            return Encoder(observation_space) if network is None else user_network(network, observation_space)

        self.encoder = make_encoder()
        in_dim = self._encoded_dim()
        self.trunk = mlp(in_dim, hidden_sizes, activation)
        out_dim = hidden_sizes[-1] if hidden_sizes else in_dim
        self.actor_out = nn.Linear(out_dim, self.head.param_dim)
        separate = critic == "separate"
        self.critic_encoder = make_encoder() if separate else None
        self.critic_trunk = mlp(in_dim, hidden_sizes, activation) if separate else None
        self.value_out = nn.Linear(out_dim, 1) if critic != "none" else None
        self.activation = activation
        # collection runs this network in numpy (no torch call per env step) when it is the MLP over flat observations
        self.numpy_actor_ok = network is None and flat_box

    @property
    def has_critic(self) -> bool:
        return self.value_out is not None

    def _encoded_dim(self) -> int:
        with torch.no_grad():
            x, _ = self._inputs(observations.apply(torch.as_tensor, observations.sample(self.observation_space, 2)))
            try:
                features = self.encoder(x)
            except Exception as err:
                reason = " ".join(str(err).split())
                raise ConfigError(f"the network failed on a batch of 2 observations of the env's space: "
                                  f"{type(err).__name__}: {reason}") from None
        if features.dim() != 2 or features.shape[0] != 2:
            raise ConfigError(f"the network must map a batch of observations to [batch, features], "
                              f"got shape {tuple(features.shape)} for a batch of 2")
        return features.shape[1]

    def _inputs(self, obs: Tensor | dict[str, Tensor], normalized: bool = False) -> tuple[Tensor | dict[str, Tensor], torch.Size]:
        """Preprocessed observations with their batch dimensions flattened into one, and those dimensions."""
        dtype = self._dtype
        spaces = self.spaces
        if isinstance(spaces, dict):
            key = next(iter(spaces))
            lead = obs[key].shape[: obs[key].dim() - event_ndim(spaces[key])]
            return {k: preprocess_leaf(s, obs[k].reshape(-1, *s.shape), dtype) for k, s in spaces.items()}, lead
        lead = obs.shape[: obs.dim() - event_ndim(spaces)]
        x = obs.reshape(-1, *spaces.shape)
        return preprocess_leaf(spaces, x if normalized else self.normalize(x), dtype), lead

    @property
    def _dtype(self) -> torch.dtype:
        return self.actor_out.weight.dtype if hasattr(self, "actor_out") else torch.float32

    def normalize(self, obs: Tensor | dict[str, Tensor]) -> Tensor | dict[str, Tensor]:
        """``obs`` through the running observation statistics (unchanged without
        ``normalize_observations``), for ``evaluate(..., normalized=True)``: PPO normalises a
        rollout once, not once per minibatch."""
        return obs if self.obs_rms is None else self.obs_rms.normalize(obs.to(self._dtype))

    def _actor_params(self, x: Tensor | dict[str, Tensor], lead: torch.Size) -> Tensor:
        params = self.actor_out(self.trunk(self.encoder(x)))
        return params.reshape(*lead, params.shape[-1])

    def forward(self, obs: Tensor | dict[str, Tensor]) -> Tensor:
        """The deterministic action (argmax, shifted by a discrete space's ``start`` / Gaussian mean):
        evaluation and exported policies."""
        return self.head.mode(self._actor_params(*self._inputs(obs)))

    def sampler(self) -> Sampler:
        """The current actor, frozen, as ``(observations, rng) -> sampled actions`` on numpy arrays.

        An MLP over flat observations runs in numpy on copies of the weights on the CPU; any other
        network (a CNN, Dict observations, a user network) or an accelerator runs the torch
        forward under inference mode, and only the distribution parameters come back.
        """
        draw = self.head.numpy_sampler()
        if self._runs_in_numpy():
            forward = self._numpy_actor()

            def params(obs: np.ndarray) -> np.ndarray:
                return forward(obs.reshape(obs.shape[0], -1).astype(np.float32, copy=False))
        else:
            params = self._torch_actor()

        def sample(obs: Any, rng: np.random.Generator) -> np.ndarray:
            return draw(params(obs), rng)

        return sample

    def one_env_sampler(self, rng: np.random.Generator) -> tuple[Callable[[Any], Any], Callable[[], None]]:
        """``(sample, close)``: the current actor for one env's own observations, one step at a
        time, and what to call when the steps are done. The actions and the random stream are
        ``sampler()``'s on batches of one (tested); a categorical MLP on the CPU costs one numpy
        call per layer and a Python comparison per step (``numpy_actor.one_env_categorical``)."""
        head = self.head
        if self._runs_in_numpy() and isinstance(head, CategoricalHead) and not head.multi:
            return one_env_categorical(self._numpy_actor(), rng, head.param_dim, head.start[0])
        batched = self.sampler()

        def sample(obs: Any) -> Any:
            return batched(observations.batch_of_one(obs), rng)[0]

        return sample, _nothing

    def _runs_in_numpy(self) -> bool:
        return self.numpy_actor_ok and self.actor_out.weight.device.type == "cpu"

    def _numpy_actor(self) -> Callable[[np.ndarray], np.ndarray]:
        """The actor's MLP in numpy on copies of the weights (the policy is on the CPU: see
        ``sampler``): float32 ``[..., inputs]`` → ``[..., params]``."""
        layers = [_frozen(m) for m in self.trunk if isinstance(m, nn.Linear)]
        rms = self.obs_rms
        if rms is None:
            return numpy_mlp(layers, _frozen(self.actor_out), self.activation)
        mean = rms.mean.detach().numpy().copy().reshape(-1)
        inv_std = (1.0 / torch.sqrt(rms.var + rms.eps)).detach().numpy().copy().reshape(-1)
        return numpy_mlp(layers, _frozen(self.actor_out), self.activation, mean, inv_std, rms.clip)

    def _torch_actor(self) -> Callable[[np.ndarray], np.ndarray]:
        device = self.actor_out.weight.device

        @torch.inference_mode()
        def params(obs: np.ndarray | dict[str, np.ndarray]) -> np.ndarray:
            x = observations.apply(lambda a: torch.as_tensor(a, device=device), obs)
            return self._actor_params(*self._inputs(x)).float().cpu().numpy()

        return params

    def _value_from(self, x: Tensor | dict[str, Tensor], features: Tensor | None, lead: torch.Size) -> Tensor:
        if self.critic_trunk is not None:
            features = self.critic_trunk(self.critic_encoder(x))
        return self.value_out(features).reshape(lead)

    def evaluate(self, obs: Tensor | dict[str, Tensor], actions: Tensor,
                 normalized: bool = False) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(log π(a|s), entropy, V(s) or None)`` in one batched forward; ``normalized``: ``obs``
        came from ``normalize``."""
        x, lead = self._inputs(obs, normalized)
        features = self.trunk(self.encoder(x))
        params = self.actor_out(features).reshape(*lead, -1)
        values = self._value_from(x, features, lead) if self.has_critic else None
        return (*self.head.log_prob_entropy(params, actions), values)

    def value(self, obs: Tensor | dict[str, Tensor]) -> Tensor:
        """``V(s)``; needs a critic."""
        if not self.has_critic:
            raise RuntimeError("this policy has no critic (critic='none')")
        x, lead = self._inputs(obs)
        features = None if self.critic_trunk is not None else self.trunk(self.encoder(x))
        return self._value_from(x, features, lead)


def _frozen(linear: nn.Linear) -> Layer:
    """A copy of a CPU linear layer's weights for ``numpy_mlp``: weight C-ordered ``[in, out]``, bias."""
    return linear.weight.detach().numpy().T.copy(), linear.bias.detach().numpy().copy()


def _nothing() -> None:
    """``close`` for samplers that leave their generator where it should be."""
