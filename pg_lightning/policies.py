"""Policy networks and their action distributions, chosen by the action space.

The distributions are a few tensor formulas instead of ``torch.distributions`` objects (the tests
check them against ``torch.distributions``). Collection with an MLP over flat observations does not use torch
at all on the CPU: ``ActorCritic.sampler()`` freezes the current actor into numpy arrays, because a batch-1 forward
plus sampling costs ~6 µs in numpy and ~30 µs in torch, once per env step. Log-probabilities for
the loss are recomputed in torch, in one batched forward per update.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor, nn

from pg_lightning import observations
from pg_lightning.errors import ConfigError
from pg_lightning.networks import Encoder, user_network
from pg_lightning.normalization import RunningMeanStd
from pg_lightning.observations import check_space, event_ndim, is_image, leaf_spaces, preprocess_leaf

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh, "elu": nn.ELU, "silu": nn.SiLU}
NUMPY_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {  # may overwrite their argument
    "relu": lambda h: np.maximum(h, 0.0, out=h),
    "tanh": lambda h: np.tanh(h, out=h),
    "elu": lambda h: np.where(h > 0, h, np.expm1(np.minimum(h, 0.0))),
    "silu": lambda h: h / (1.0 + np.exp(-h)),
}
Sampler = Callable[[np.ndarray, np.random.Generator], np.ndarray]
CRITICS = ("none", "separate", "shared")


def mlp(in_dim: int, hidden_sizes: Sequence[int], activation: str) -> nn.Sequential:
    """Linear → activation layers; the output layer is added by the caller."""
    layers: list[nn.Module] = []
    for size in hidden_sizes:
        layers += [nn.Linear(in_dim, size), ACTIVATIONS[activation]()]
        in_dim = size
    return nn.Sequential(*layers)


class CategoricalHead(nn.Module):
    """Independent categoricals over ``nvec`` (one entry for ``Discrete``, several for ``MultiDiscrete``)."""

    def __init__(self, nvec: Sequence[int], multi: bool):
        super().__init__()
        self.nvec, self.multi = [int(n) for n in nvec], multi
        self.param_dim = sum(self.nvec)

    def _logits(self, params: Tensor) -> list[Tensor]:
        return list(params.split(self.nvec, dim=-1))

    def _pack(self, actions: list[Tensor]) -> Tensor:
        return torch.stack(actions, -1) if self.multi else actions[0]

    def _unpack(self, actions: Tensor) -> list[Tensor]:
        return list(actions.long().unbind(-1)) if self.multi else [actions.long()]

    def numpy_sampler(self) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        """``(logits, rng) -> actions``. Exponential race: argmax_i p_i / E_i with E_i ~ Exp(1) is a
        categorical draw (the trick inside torch.multinomial), in log space, where the softmax
        normaliser drops out of the argmax."""
        cuts = np.cumsum(self.nvec)[:-1]

        def sample(params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            scores = rng.exponential(size=params.shape)
            np.subtract(params, np.log(scores, out=scores), out=scores)
            if not self.multi:
                return scores.argmax(-1)
            return np.stack([part.argmax(-1) for part in np.split(scores, cuts, axis=-1)], -1)

        return sample

    def mode(self, params: Tensor) -> Tensor:
        return self._pack([lg.argmax(-1) for lg in self._logits(params)])

    def log_prob_entropy(self, params: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        """``(log π(a), entropy)`` from one log-softmax per component."""
        log_probs, entropies = [], []
        for logits, a in zip(self._logits(params), self._unpack(actions)):
            logp = logits.log_softmax(-1)
            log_probs.append(logp.gather(-1, a.unsqueeze(-1)).squeeze(-1))
            entropies.append(-(logp.exp() * logp).sum(-1))
        if not self.multi:
            return log_probs[0], entropies[0]
        return torch.stack(log_probs).sum(0), torch.stack(entropies).sum(0)

    def log_prob(self, params: Tensor, actions: Tensor) -> Tensor:
        return self.log_prob_entropy(params, actions)[0]

    def entropy(self, params: Tensor) -> Tensor:
        return self.log_prob_entropy(params, self.mode(params))[1]


class ExponentialRace:
    """``CategoricalHead``'s draw for one set of logits at a time, with the exponentials drawn
    ahead in doubling blocks, so a step costs a Python comparison instead of four numpy calls.
    ``close`` rewinds ``rng`` and draws exactly the exponentials used: the generator ends where
    step-by-step draws leave it, and the actions are theirs (numpy draws a block as consecutive
    single draws, and the scores are the same float64 subtraction)."""

    def __init__(self, rng: np.random.Generator, n: int):
        self.rng, self.n, self.start = rng, n, rng.bit_generator.state
        self.noise: list[list[float]] = []
        self.next = self.drawn = 0

    def __call__(self, logits: np.ndarray) -> int:
        if self.next == len(self.noise):
            rows = max(64, self.drawn)
            self.noise = np.log(self.rng.exponential(size=(rows, self.n))).tolist()
            self.next, self.drawn = 0, self.drawn + rows
        scores = [p - e for p, e in zip(logits.tolist(), self.noise[self.next])]
        self.next += 1
        return scores.index(max(scores))  # the first maximum, as argmax

    def close(self) -> None:
        used = self.drawn - len(self.noise) + self.next
        self.rng.bit_generator.state = self.start
        self.rng.exponential(size=(used, self.n))


class GaussianHead(nn.Module):
    """Diagonal Gaussian with a state-independent, learnable log-std.

    Actions are sampled unbounded and stored as sampled; the collector clips them to the action
    space's bounds before ``env.step``. The clip is a deterministic function of the sample, so the
    log-probability of the stored sample gives an unbiased policy gradient (as in SB3 and CleanRL).
    """

    def __init__(self, action_dim: int, log_std_init: float):
        super().__init__()
        self.param_dim = action_dim
        self.log_std = nn.Parameter(torch.full((action_dim,), float(log_std_init)))

    def numpy_sampler(self) -> Callable[[np.ndarray, np.random.Generator], np.ndarray]:
        """``(means, rng) -> actions`` with the current standard deviation frozen in."""
        std = self.log_std.detach().exp().cpu().numpy()

        def sample(params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
            return (params + std * rng.standard_normal(params.shape)).astype(np.float32)

        return sample

    def mode(self, params: Tensor) -> Tensor:
        return params

    def log_prob(self, params: Tensor, actions: Tensor) -> Tensor:
        z = (actions - params) * torch.exp(-self.log_std)
        return (-0.5 * z.pow(2) - self.log_std - 0.5 * math.log(2 * math.pi)).sum(-1)

    def entropy(self, params: Tensor) -> Tensor:
        per_dim = 0.5 + 0.5 * math.log(2 * math.pi) + self.log_std
        return per_dim.sum().expand(params.shape[:-1])

    def log_prob_entropy(self, params: Tensor, actions: Tensor) -> tuple[Tensor, Tensor]:
        return self.log_prob(params, actions), self.entropy(params)


def make_head(action_space: gym.Space, log_std_init: float = 0.0) -> nn.Module:
    """The distribution head for an action space; a clear error for spaces we cannot handle."""
    if isinstance(action_space, gym.spaces.Discrete):
        return CategoricalHead([action_space.n], multi=False)
    if isinstance(action_space, gym.spaces.MultiDiscrete) and action_space.nvec.ndim == 1:
        return CategoricalHead(action_space.nvec.tolist(), multi=True)
    if isinstance(action_space, gym.spaces.Box) and len(action_space.shape) == 1:
        return GaussianHead(action_space.shape[0], log_std_init)
    raise ConfigError(
        f"unsupported action space {action_space}; supported: Discrete, MultiDiscrete (1-D) "
        "and 1-D Box"
    )


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
        make_encoder = lambda: Encoder(observation_space) if network is None else user_network(network, observation_space)  # noqa: E731
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
            except Exception as err:  # noqa: BLE001 - a user network that does not fit the observations
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
        """The deterministic action (argmax / Gaussian mean): evaluation and exported policies."""
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
            params = lambda obs: forward(obs.reshape(obs.shape[0], -1).astype(np.float32, copy=False))  # noqa: E731
        else:
            params = self._torch_actor()
        return lambda obs, rng: draw(params(obs), rng)

    def one_env_sampler(self, rng: np.random.Generator) -> tuple[Callable[[Any], Any], Callable[[], None]]:
        """``(sample, close)``: the current actor for one env's own observations, one step at a
        time, and what to call when the steps are done. The actions and the random stream are
        ``sampler()``'s on batches of one (tested); a categorical MLP on the CPU costs one numpy
        call per layer and a Python comparison per step (``ExponentialRace``)."""
        head = self.head
        if not (self._runs_in_numpy() and isinstance(head, CategoricalHead) and not head.multi):
            batched = self.sampler()
            return (lambda obs: batched(observations.batch_of_one(obs), rng)[0]), (lambda: None)
        forward, race = self._numpy_actor(), ExponentialRace(rng, head.param_dim)
        return (lambda obs: race(forward(obs.reshape(-1).astype(np.float32, copy=False)))), race.close

    def _runs_in_numpy(self) -> bool:
        return self.numpy_actor_ok and self.actor_out.weight.device.type == "cpu"

    def _numpy_actor(self) -> Callable[[np.ndarray], np.ndarray]:
        """The actor's MLP in numpy on copies of the weights: float32 ``[..., inputs]`` → ``[..., params]``."""
        copy = lambda t: t.detach().numpy().copy()  # noqa: E731  (the policy is on the CPU: see sampler)
        linear = lambda m: (m.weight.detach().numpy().T.copy(), copy(m.bias))  # noqa: E731  weight C-ordered [in, out]
        layers = [linear(m) for m in self.trunk if isinstance(m, nn.Linear)]
        out_w, out_b = linear(self.actor_out)
        activation = NUMPY_ACTIVATIONS[self.activation]
        rms = self.obs_rms
        if rms is not None:
            mean, inv_std = copy(rms.mean).reshape(-1), copy(1.0 / torch.sqrt(rms.var + rms.eps)).reshape(-1)

        def forward(x: np.ndarray) -> np.ndarray:
            if rms is not None:
                x = np.clip((x - mean) * inv_std, -rms.clip, rms.clip)
            for w, b in layers:  # in place: one allocation per layer (~1 µs each for one observation)
                x = x.dot(w)
                x += b
                x = activation(x)
            x = x.dot(out_w)
            x += out_b
            return x

        return forward

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
