"""Observations: which spaces the policies take, how they travel, and how a network reads them.

Observations travel as the env returns them, in their own dtype: a uint8 image stays uint8 in
batches (a rollout of 8 × 128 Atari frames costs a quarter of float32's memory). ``Dict`` and
``Tuple`` observations travel as one flat dict ``{"key": array}`` (nested keys joined by ``/``,
tuple entries by their index), so every container in the pipeline handles at most one level.
``preprocess`` turns them into float tensors inside the network: images (uint8 0-255 of rank 3, or
rank 2 as one grayscale channel) scaled to [0, 1] and put channels first, ``Discrete``/``MultiDiscrete``
one-hot, every other ``Box`` or ``MultiBinary`` cast.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import gymnasium as gym
import numpy as np
import torch
from torch import Tensor
from torch.nn import functional as F

from pg_lightning.errors import ConfigError

Tree = Any | dict[str, Any]  # one array / tensor, or a flat dict of them
SUPPORTED = ("Box (any dtype; uint8 images or frames of at least 36×36 go through a CNN), Discrete, MultiDiscrete, "
             "MultiBinary, and Dict / Tuple of these")
MIN_IMAGE_SIZE = 36  # the Nature CNN's smallest input (8×8/4, 4×4/2, 3×3/1 convolutions)


def _flat(node: Any, children: Callable[[Any], Any]) -> Any:
    """``node`` itself if ``children(node)`` is None, else its leaves as ``{"key/sub": leaf}``."""
    items = children(node)
    if items is None:
        return node
    flat: dict[str, Any] = {}
    for key, sub in items:
        inner = _flat(sub, children)
        flat.update({f"{key}/{k}": v for k, v in inner.items()} if isinstance(inner, dict) else {str(key): inner})
    return flat


def leaf_spaces(space: gym.Space) -> gym.Space | dict[str, gym.Space]:
    """The space itself, or the flat dict of a Dict / Tuple space's entries (the layout of ``flatten``)."""
    return _flat(space, lambda s: s.spaces.items() if isinstance(s, gym.spaces.Dict)
                 else enumerate(s.spaces) if isinstance(s, gym.spaces.Tuple) else None)


def flatten(obs: Any) -> Tree:
    """An observation (or a vector env's batch of them) in the layout of ``leaf_spaces``."""
    return _flat(obs, lambda o: o.items() if isinstance(o, dict) else enumerate(o) if isinstance(o, tuple) else None)


def apply(fn: Callable[[Any], Any], obs: Tree) -> Tree:
    """``fn`` on every array of ``obs``, keeping its layout."""
    return {k: fn(v) for k, v in obs.items()} if isinstance(obs, dict) else fn(obs)


def leaves(obs: Tree) -> list[Any]:
    return list(obs.values()) if isinstance(obs, dict) else [obs]


def stack(observations: list[Tree]) -> Tree:
    """Observations of consecutive steps, stacked on a new first axis."""
    if isinstance(observations[0], dict):
        return {k: np.stack([o[k] for o in observations]) for k in observations[0]}
    return np.stack(observations)


def sample(space: gym.Space, n: int) -> Tree:
    """``n`` random observations of ``space`` as a batch in the pipeline's layout (for shapes and export)."""
    return stack([flatten(space.sample()) for _ in range(n)])


def is_pixels(space: gym.Space) -> bool:
    """A uint8 ``Box`` with bounds 0-255, of any rank."""
    return (
        isinstance(space, gym.spaces.Box) and space.dtype == np.uint8
        and bool(np.all(space.low == 0)) and bool(np.all(space.high == 255))
    )


def is_image(space: gym.Space) -> bool:
    """Pixels of rank 3 (an image, channels first or last) or rank 2 (one grayscale frame, e.g.
    ``AtariPreprocessing`` without frame stacking)."""
    return is_pixels(space) and len(space.shape) in (2, 3)


def is_image_stack(space: gym.Space) -> bool:
    """Pixels of rank 4 or more (e.g. ``FrameStackObservation`` of RGB frames, ``(4, 210, 160, 3)``):
    no image layout the CNN reads, and far too many inputs for an MLP."""
    return is_pixels(space) and len(space.shape) > 3


def channels_first(shape: tuple[int, ...]) -> bool:
    """Channels are the smallest of the three axes (``(4, 84, 84)`` first, ``(84, 84, 3)`` last);
    a frame of rank 2 has its one channel added first."""
    return len(shape) == 2 or shape[0] <= min(shape[1:])


def image_shape(space: gym.Space) -> tuple[int, int, int]:
    """``(channels, height, width)`` of an image space."""
    if len(space.shape) == 2:
        return 1, *space.shape
    c, h, w = space.shape if channels_first(space.shape) else (space.shape[2], *space.shape[:2])
    return c, h, w


def check_image_stack(space: gym.Space) -> None:
    """A ConfigError in one line for pixel leaves of rank 4 or more, which the default encoder
    cannot read (a user's ``network:`` may take them)."""
    leaves_ = leaf_spaces(space)
    for key, leaf in (leaves_.items() if isinstance(leaves_, dict) else [("", leaves_)]):
        if is_image_stack(leaf):
            where = f" (entry {key!r})" if key else ""
            raise ConfigError(
                f"image observation {tuple(leaf.shape)} uint8{where} has rank {len(leaf.shape)}; the CNN reads "
                "frames of rank 2 (H, W) or 3 (channels first or last): stack grayscale frames "
                "(gymnasium.wrappers.GrayscaleObservation and ResizeObservation, then FrameStackObservation: "
                "(4, 84, 84)), or give your own `network:`"
            )


def event_ndim(space: gym.Space) -> int:
    """Dimensions of one observation of a leaf space (0 for ``Discrete``)."""
    return len(space.shape)


def check_space(space: gym.Space) -> None:
    """A ConfigError in one line for an observation space the policies cannot take."""
    leaves_ = leaf_spaces(space)
    for key, leaf in (leaves_.items() if isinstance(leaves_, dict) else [("", leaves_)]):
        name = " ".join(str(leaf).split())  # one line, whatever the space's repr
        where = f" (entry {key!r} of {' '.join(str(space).split())})" if key else ""
        numeric_box = isinstance(leaf, gym.spaces.Box) and (
            np.issubdtype(leaf.dtype, np.number) or leaf.dtype == np.bool_
        )
        ok = numeric_box or isinstance(leaf, (gym.spaces.Discrete, gym.spaces.MultiBinary)) or (
            isinstance(leaf, gym.spaces.MultiDiscrete) and leaf.nvec.ndim == 1
        )
        if not ok:
            raise ConfigError(f"unsupported observation space {name}{where}; supported: {SUPPORTED}")
        if is_image(leaf) and min(image_shape(leaf)[1:]) < MIN_IMAGE_SIZE:
            raise ConfigError(
                f"image observation {name}{where} is smaller than the Nature CNN's {MIN_IMAGE_SIZE}×{MIN_IMAGE_SIZE}: "
                "give your own `network:` or flatten it (gymnasium.wrappers.FlattenObservation)"
            )


def preprocess_leaf(space: gym.Space, x: Tensor, dtype: torch.dtype) -> Tensor:
    """One leaf as the network reads it, for a batch ``[B, *event]``."""
    if is_image(space):  # non-negative dims: ONNX Runtime refuses a Transpose perm of -1 (TorchScript-based exporter)
        x, d = x.to(dtype) / 255.0, x.dim()
        if len(space.shape) == 2:
            return x.unsqueeze(d - 2)
        return x if channels_first(space.shape) else x.permute(*range(d - 3), d - 1, d - 3, d - 2)
    if isinstance(space, gym.spaces.Discrete):
        return F.one_hot((x.long() - int(space.start)).reshape(-1), int(space.n)).to(dtype)
    if isinstance(space, gym.spaces.MultiDiscrete):
        shifted = x.long() - torch.as_tensor(space.start, device=x.device)
        return torch.cat([F.one_hot(shifted[:, i], int(n)) for i, n in enumerate(space.nvec)], -1).to(dtype)
    return x.to(dtype)


def batch_of_one(obs: Any) -> Tree:
    """One env's observation as a batch of one, in the pipeline's layout."""
    if isinstance(obs, np.ndarray):  # the common case, once per env step with one env
        return obs[None]
    return apply(lambda a: np.asarray(a)[None], flatten(obs))


def seed_major(x: Tensor) -> Tensor:
    """A many-seeds batch field ``[T, K, N, ...]`` as ``[K, T·N, ...]``: each seed's transitions in one row."""
    return x.transpose(0, 1).flatten(1, 2)


def time_major(x: Tensor, steps: int) -> Tensor:
    """``seed_major``'s inverse for ``[K, T·N]``: ``[T, K, N]``."""
    return x.unflatten(1, (steps, -1)).transpose(0, 1)


def flat_batch(obs: Tree) -> Tree:
    """``[T, N, ...]`` observations as ``[T·N, ...]``."""
    return apply(lambda t: t.flatten(0, 1), obs)
