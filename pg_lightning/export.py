"""Export a trained policy for deployment: TorchScript or ONNX, observations in, actions out.

``python -m pg_lightning.export CKPT --format torchscript|onnx --output PATH``

The exported graph maps a float32 batch of observations ``[B, *obs_shape]`` to the deterministic
action of :meth:`ActorCritic.forward` (argmax for discrete spaces, the Gaussian mean for Box, not
clipped to the action bounds), with observation normalisation included and its running
statistics frozen at their checkpointed values. The critic is not exported.

Checkpoints are read with ``torch.load(weights_only=True)``: tensors, plain Python containers and
numbers only, so loading an untrusted file cannot run code. Checkpoints written by pg_lightning's
modules load that way. A checkpoint that holds other objects (e.g. a custom callback's state) is
refused with the offending type named; pass ``trusted=True`` (``--trust-checkpoint``) to unpickle
it fully, which runs whatever code the file asks for: only for files you trust.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import importlib
import inspect
import logging
import re
import sys
import warnings
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from pg_lightning.errors import ConfigError, MissingExtra
from pg_lightning.policies import ActorCritic

if TYPE_CHECKING:
    from pg_lightning.modules import PolicyGradient

FORMATS = ("torchscript", "onnx")


class DeployedPolicy(nn.Module):
    """``obs [B, *obs_shape] -> actions [B, ...]``: a frozen copy of a policy's deterministic actor."""

    def __init__(self, policy: ActorCritic):
        super().__init__()
        self.policy = copy.deepcopy(policy).cpu().eval()
        for p in self.policy.parameters():
            p.requires_grad_(False)
        self.eval()

    def forward(self, obs: Tensor) -> Tensor:
        return self.policy(obs)


# ---- loading ------------------------------------------------------------------------------------
def _read_checkpoint(path: Path, trusted: bool) -> dict[str, Any]:
    if not path.is_file():
        raise ConfigError(f"checkpoint {str(path)!r} does not exist or is not a file")
    try:
        checkpoint = torch.load(path, map_location="cpu", weights_only=not trusted)
    except Exception as err:  # torch.load raises anything from KeyError to RuntimeError on junk
        text = str(err).strip()
        detail = re.search(r"WeightsUnpickler error:\s*(.+)", text)
        reason = detail.group(1).strip() if detail else (text.splitlines()[0] if text else type(err).__name__)
        if not trusted and "Weights only load failed" in text and zipfile.is_zipfile(path):
            found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
            what = f"it contains {found.group(1)}" if found else reason
            raise ConfigError(
                f"{path}: cannot be loaded safely (weights_only=True): {what}; if you trust this "
                "file, load it with trusted=True (--trust-checkpoint)"
            ) from None
        raise ConfigError(f"{path}: not a PyTorch checkpoint ({type(err).__name__}: {reason})") from None
    if not isinstance(checkpoint, dict) or not isinstance(checkpoint.get("pg_lightning"), dict):
        raise ConfigError(f"{path}: not a pg_lightning checkpoint (no 'pg_lightning' entry)")
    return checkpoint


def _algorithm_class(name: Any, path: Path) -> type:
    modules = importlib.import_module("pg_lightning.modules")
    cls = getattr(modules, name, None) if isinstance(name, str) else None
    known = isinstance(cls, type) and issubclass(cls, modules.PolicyGradient) and cls is not modules.PolicyGradient
    if not known:
        raise ConfigError(f"{path}: unknown pg_lightning algorithm {name!r}")
    return cls


def load_module(checkpoint_path: str | Path, *, trusted: bool = False) -> PolicyGradient:
    """The ``PolicyGradient`` module a pg_lightning checkpoint was saved from, rebuilt on the CPU.

    The class comes from ``checkpoint["pg_lightning"]["algorithm"]``, the constructor arguments
    from ``checkpoint["hyper_parameters"]`` (LightningCLI's private ``_class_path`` /
    ``_instantiator`` entries are ignored) and the weights and normalisation statistics from
    ``checkpoint["state_dict"]``. Building the module makes the env once to read its spaces, so
    the env id must be registered here. ``trusted=True`` loads with ``weights_only=False``
    (arbitrary unpickling): only for files you trust. Bad paths and files raise ``ConfigError``.
    """
    path = Path(checkpoint_path)
    checkpoint = _read_checkpoint(path, trusted)
    cls = _algorithm_class(checkpoint["pg_lightning"].get("algorithm"), path)
    saved = dict(checkpoint.get("hyper_parameters") or {})
    hparams = {k: v for k, v in saved.items() if not k.startswith("_")}  # not LightningCLI's _class_path etc.
    try:
        module = cls(**hparams)
    except TypeError as err:
        raise ConfigError(f"{path}: its hyper-parameters do not fit {cls.__name__}: {err}") from None
    state_dict = checkpoint.get("state_dict")
    if not isinstance(state_dict, dict):
        raise ConfigError(f"{path}: no 'state_dict' entry")
    try:
        missing, unexpected = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # shape mismatches
        raise ConfigError(f"{path}: weights do not fit {cls.__name__}: {err}") from None
    policy_keys = [k for k in [*missing, *unexpected] if k.startswith("policy.")]
    if policy_keys:
        raise ConfigError(
            f"{path}: policy weights do not fit {cls.__name__} (missing or unexpected: {policy_keys})"
        )
    return module.eval()


def load_policy(checkpoint_path: str | Path, *, trusted: bool = False) -> ActorCritic:
    """The trained :class:`ActorCritic` of a pg_lightning checkpoint, on the CPU in eval mode.

    Reads the file with ``torch.load(weights_only=True)`` unless ``trusted=True`` (see
    :func:`load_module`). Missing files and non-pg_lightning checkpoints raise ``ConfigError``.
    """
    return load_module(checkpoint_path, trusted=trusted).policy.eval()


# ---- export -------------------------------------------------------------------------------------
def _obs_shape(policy: ActorCritic) -> tuple[int, ...]:
    if policy.obs_rms is not None:
        return tuple(policy.obs_rms.mean.shape)
    if policy.obs_ndim == 1:
        return (policy.trunk[0].in_features if len(policy.trunk) else policy.actor_out.in_features,)
    raise ConfigError("pass example_obs: the observation shape of this policy cannot be inferred")


def _example(policy: ActorCritic, example_obs: Tensor | None) -> Tensor:
    """A float32 CPU batch of at least two observations (a batch of one would be specialised)."""
    if example_obs is None:
        return torch.zeros(2, *_obs_shape(policy))
    obs = torch.as_tensor(example_obs).detach().to("cpu", torch.float32)
    if obs.dim() == policy.obs_ndim:
        obs = obs.unsqueeze(0)
    try:
        expected = _obs_shape(policy)
    except ConfigError:
        expected = tuple(obs.shape[1:])
    if obs.dim() != policy.obs_ndim + 1 or obs.shape[0] < 1 or tuple(obs.shape[1:]) != expected:
        raise ConfigError(
            f"example_obs must be [B, *obs_shape] with {policy.obs_ndim}-D observations"
            f"{f' of shape {expected}' if expected else ''}, got {tuple(obs.shape)}"
        )
    return obs if obs.shape[0] >= 2 else obs.repeat(2, *([1] * policy.obs_ndim))


def export_torchscript(policy: ActorCritic, path: str | Path, example_obs: Tensor | None = None) -> Path:
    """Trace ``policy``'s deterministic actor (with frozen normalisation) to a TorchScript file.

    Load it with ``torch.jit.load(path)``; it takes float32 ``[B, *obs_shape]`` for any ``B``.
    ``example_obs`` (needed only for multi-dimensional observations without normalisation) fixes
    the observation shape. Returns the written path.
    """
    path = Path(path)
    deployed = DeployedPolicy(policy)
    example = _example(policy, example_obs)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.filterwarnings("ignore", category=DeprecationWarning)  # recent torch deprecates torch.jit
        traced = torch.jit.trace(deployed, example)
        frozen = torch.jit.freeze(traced)  # parameters and statistics become constants; the critic is dropped
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.jit.save(frozen, str(path))
    return path


@contextlib.contextmanager
def _quiet_logger(name: str) -> Iterator[None]:
    """Silence a logger's warnings (the exporter lists every torchvision op it skips)."""
    logger = logging.getLogger(name)
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        logger.setLevel(level)


def _require_onnx() -> Any:
    try:
        import onnx
    except ImportError:
        raise MissingExtra("ONNX export needs the onnx package: pip install 'pg_lightning[onnx]'") from None
    return onnx


def _has_onnxscript() -> bool:
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        return False
    return "dynamo" in inspect.signature(torch.onnx.export).parameters


def export_onnx(
    policy: ActorCritic,
    path: str | Path,
    example_obs: Tensor | None = None,
    *,
    dynamo: bool | None = None,
) -> Path:
    """Export ``policy``'s deterministic actor (with frozen normalisation) to an ONNX file.

    One input ``obs`` (float32 ``[batch, *obs_shape]``, batch dynamic) and one output ``action``
    (int64 for discrete spaces, float32 for Box). ``dynamo``: torch's ``torch.export``-based
    exporter (needs ``onnxscript``) or the older TorchScript-based one; ``None`` uses the former
    when ``onnxscript`` is installed. Needs ``onnx`` (``pip install 'pg_lightning[onnx]'``);
    the written file is checked with ``onnx.checker``. Returns the written path.
    """
    onnx = _require_onnx()
    if dynamo is None:
        dynamo = _has_onnxscript()
    elif dynamo and not _has_onnxscript():
        raise MissingExtra(
            "dynamo ONNX export needs onnxscript (and torch >= 2.5): pip install 'pg_lightning[onnx]'"
        )
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    deployed = DeployedPolicy(policy)
    example = _example(policy, example_obs)
    names: dict[str, Any] = dict(input_names=["obs"], output_names=["action"])
    with warnings.catch_warnings(), torch.no_grad(), _quiet_logger("torch.onnx"):
        warnings.filterwarnings("ignore", category=DeprecationWarning)
        warnings.filterwarnings("ignore", category=FutureWarning)
        if dynamo:
            batch = torch.export.Dim("batch")
            if "external_data" in inspect.signature(torch.onnx.export).parameters:  # torch >= 2.6
                names["external_data"] = False  # one self-contained file
            torch.onnx.export(
                deployed, (example,), str(path), dynamo=True, dynamic_shapes={"obs": {0: batch}},
                verbose=False, **names,
            )
        else:
            kwargs = {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}
            torch.onnx.export(
                deployed, (example,), str(path), dynamic_axes={"obs": {0: "batch"}, "action": {0: "batch"}},
                **names, **kwargs,
            )
    onnx.checker.check_model(str(path))
    return path


EXPORTERS = {"torchscript": export_torchscript, "onnx": export_onnx}


# ---- command line -------------------------------------------------------------------------------
def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m pg_lightning.export",
        description="Export the deterministic policy of a pg_lightning checkpoint to TorchScript or ONNX.",
    )
    parser.add_argument("checkpoint", help="a .ckpt written by Reinforce, A2C or PPO")
    parser.add_argument("--format", choices=FORMATS, default="torchscript", help="default: torchscript")
    parser.add_argument("--output", "-o", required=True, help="file to write (e.g. policy.pt or policy.onnx)")
    parser.add_argument(
        "--trust-checkpoint", action="store_true",
        help="load with weights_only=False (full unpickling, which can run code): only for files you trust",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the export CLI on ``argv`` (default: the command line); bad inputs exit 2 with ``error: ...``."""
    args = _parser().parse_args(argv)
    try:
        module = load_module(args.checkpoint, trusted=args.trust_checkpoint)
        example = torch.zeros(2, *module.observation_space.shape)
        path = EXPORTERS[args.format](module.policy, args.output, example)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(2) from None
    print(f"wrote {path} ({args.format}: {type(module).__name__} on {module.hparams.env_id})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
