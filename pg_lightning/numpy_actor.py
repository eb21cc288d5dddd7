"""The actor in numpy: an MLP's forward and the heads' draws, on frozen copies of the weights.

Collection calls the actor once per env step, on a batch of one. For an MLP over flat observations
on the CPU, numpy runs that small forward and draw with less overhead than torch, so
``ActorCritic.sampler()`` freezes the weights into arrays and plays with the functions here. The
loss recomputes log-probabilities in torch, in one batched forward per update. This module knows
arrays only; the torch policy hands it its weights.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

Sampler = Callable[[np.ndarray, np.random.Generator], np.ndarray]
"""``(observations or distribution parameters, rng) -> sampled actions``, batched."""
Layer = tuple[np.ndarray, np.ndarray]
"""A linear layer's weight, C-ordered ``[in, out]``, and its bias ``[out]``."""


def _relu(h: np.ndarray) -> np.ndarray:
    return np.maximum(h, 0.0, out=h)


def _tanh(h: np.ndarray) -> np.ndarray:
    return np.tanh(h, out=h)


def _elu(h: np.ndarray) -> np.ndarray:
    return np.where(h > 0, h, np.expm1(np.minimum(h, 0.0)))


def _silu(h: np.ndarray) -> np.ndarray:
    return h / (1.0 + np.exp(-h))


# the torch activations of ``policies.ACTIVATIONS`` in numpy; they may overwrite their argument
NUMPY_ACTIVATIONS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "relu": _relu, "tanh": _tanh, "elu": _elu, "silu": _silu,
}


def numpy_mlp(
    layers: Sequence[Layer],
    out_layer: Layer,
    activation: str,
    obs_mean: np.ndarray | None = None,
    obs_inv_std: np.ndarray | None = None,
    clip: float = 0.0,
) -> Callable[[np.ndarray], np.ndarray]:
    """Linear → activation ``layers``, then ``out_layer``: float32 ``[..., inputs]`` → ``[..., params]``.

    With ``obs_mean``, observations are first normalised as ``RunningMeanStd.normalize`` does:
    ``clip((x - mean) * inv_std, -clip, clip)``.
    """
    apply = NUMPY_ACTIVATIONS[activation]
    out_w, out_b = out_layer

    def forward(x: np.ndarray) -> np.ndarray:
        if obs_mean is not None:
            x = np.clip((x - obs_mean) * obs_inv_std, -clip, clip)
        for w, b in layers:  # in place: one allocation per layer
            x = x.dot(w)
            x += b
            x = apply(x)
        x = x.dot(out_w)
        x += out_b
        return x

    return forward


def categorical_sampler(nvec: Sequence[int], multi: bool, start: Sequence[int]) -> Sampler:
    """``(logits, rng) -> actions`` for ``CategoricalHead``: independent categoricals over ``nvec``,
    choice ``i`` of component ``k`` played as ``start[k] + i``.

    Exponential race: argmax_i p_i / E_i with E_i ~ Exp(1) is a categorical draw (the trick inside
    torch.multinomial), in log space, where the softmax normaliser drops out of the argmax."""
    cuts = np.cumsum(nvec)[:-1]

    def sample(params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        scores = rng.exponential(size=params.shape)
        np.subtract(params, np.log(scores, out=scores), out=scores)
        if not multi:
            return scores.argmax(-1)
        return np.stack([part.argmax(-1) for part in np.split(scores, cuts, axis=-1)], -1)

    if not any(start):
        return sample
    offset = np.array(start if multi else start[0], dtype=np.int64)

    def shifted(params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return sample(params, rng) + offset

    return shifted


def gaussian_sampler(std: np.ndarray) -> Sampler:
    """``(means, rng) -> float32 actions`` for ``GaussianHead``, with its standard deviation frozen in."""

    def sample(params: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return (params + std * rng.standard_normal(params.shape)).astype(np.float32)

    return sample


class ExponentialRace:
    """``categorical_sampler``'s draw for one set of logits at a time, with the exponentials drawn
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


def one_env_categorical(
    forward: Callable[[np.ndarray], np.ndarray], rng: np.random.Generator, n: int, start: int = 0,
) -> tuple[Callable[[np.ndarray], int], Callable[[], None]]:
    """``(sample, close)`` for one env's observations, one step at a time: a ``Discrete(n, start)``
    action from the logits ``forward`` gives, drawn by an ``ExponentialRace`` on ``rng``; call
    ``close`` when the steps are done, to leave ``rng`` where step-by-step draws would."""
    race = ExponentialRace(rng, n)

    def sample(obs: np.ndarray) -> int:
        return race(forward(obs.reshape(-1).astype(np.float32, copy=False)))

    if not start:
        return sample, race.close

    def sample_shifted(obs: np.ndarray) -> int:  # the env's action, as the batched sampler gives
        return race(forward(obs.reshape(-1).astype(np.float32, copy=False))) + start

    return sample_shifted, race.close
