"""The second core for a many-seeds run: a worker process plays some seeds' envs while this
process plays the others'.

A many-seeds update needs every training seed's next batch, and each seed's batch depends only on
its own envs and weights, so half the seeds' collection can run beside the other half's. The
worker is forked once per fit with those seeds' collectors (their envs, generators and episode
windows move with them) and copies of their policies; for each batch it receives the seed's
current weights, plays ``Collector.rollout`` / ``Collector.episodes`` exactly as this process
would, and sends the batch back. ``RemoteCollector`` stands in for such a collector here: the
same methods, plus ``start`` / ``finish`` so that every seed's collection is under way before
this process plays its own (``data.SeedsDataset``). Messages are plain pickles (tensors by value).
"""

from __future__ import annotations

import multiprocessing
import pickle
import queue
import signal
import sys
import threading
from collections import deque
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from pg_lightning.batch import Batch
from pg_lightning.collector import Collector
from pg_lightning.distributed import usable_cores
from pg_lightning.errors import TrainingError
from pg_lightning.policies import ActorCritic


def worker_pays(collectors: list[Collector]) -> bool:
    """Whether a collection worker can take a share of these seeds' collectors: several seeds, a
    second core, ``fork`` (Linux: the worker inherits the envs as they are), and envs stepped in
    this process (an async vector env has worker processes of its own)."""
    asynchronous = any(isinstance(c.env, gym.vector.AsyncVectorEnv) for c in collectors)
    return len(collectors) > 1 and usable_cores() > 1 and sys.platform == "linux" and not asynchronous


def _weights(policy: ActorCritic) -> dict[str, np.ndarray]:
    """The policy's state as numpy copies: pickled by value, never a view of a many-seeds table."""
    return {name: value.detach().cpu().numpy().copy() for name, value in policy.state_dict().items()}


class _Sender:
    """Pickles sent through a thread of their own. A batch (or a large network's weights) can be
    larger than the pipe's buffer while the other side is busy playing its own seeds: a send in the
    caller would hold its next collection until the other side reads."""

    def __init__(self, connection: Any):
        self.connection, self.queue = connection, queue.Queue()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while (message := self.queue.get()) is not None:
            try:
                self.connection.send_bytes(message)
            except OSError:  # the other side has gone: its reader reports that
                return

    def put(self, value: Any) -> None:
        self.queue.put(pickle.dumps(value))

    def close(self) -> None:
        """Send what is queued, then stop."""
        self.queue.put(None)
        self.thread.join()


def _serve(connection: Any, other_end: Any, seeds: dict[int, tuple[Collector, ActorCritic]]) -> None:
    """The worker's loop: collect, report or restore a seed's collector until told to close (or
    until the other process has gone: closing its inherited end of the pipe lets that be seen)."""
    other_end.close()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the other process's to handle; it ends this one
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the handler Lightning installed there: terminate() ends it
    torch.set_num_threads(1)
    replies = _Sender(connection)
    while True:
        try:
            command, index, *args = pickle.loads(connection.recv_bytes())
        except (EOFError, OSError):
            return
        try:
            if command == "close":
                for collector, _ in seeds.values():
                    collector.close()
                replies.put(("ok", None))
                replies.close()
                return
            collector, policy = seeds[index]
            if command == "collect":
                method, weights, amount = args
                policy.load_state_dict({name: torch.from_numpy(value) for name, value in weights.items()})
                batch = getattr(collector, method)(policy, amount)
                reply = (batch, list(collector.recent_returns))
            elif command == "state":
                reply = collector.state_dict()
            else:  # "load"
                reply = collector.load_state_dict(args[0])
            message = ("ok", reply)
        except Exception as err:  # sent back and raised there, as if collected in that process
            message = ("error", err if _picklable(err) else TrainingError(f"{type(err).__name__}: {err}"))
        replies.put(message)


def _picklable(value: Any) -> bool:
    try:
        pickle.loads(pickle.dumps(value))
        return True
    except Exception:
        return False


class CollectionWorker:
    """A forked process that owns the collectors of some seeds (indices into the run's K)."""

    def __init__(self, seeds: dict[int, tuple[Collector, ActorCritic]]):
        context = multiprocessing.get_context("fork")
        self.connection, child = context.Pipe()
        self.process = context.Process(target=_serve, args=(child, self.connection, seeds), daemon=True,
                                       name="pg_lightning-collection")
        self.process.start()
        child.close()
        self.requests = _Sender(self.connection)
        self.unanswered = 0

    def send(self, command: str, index: int | None, *args: Any) -> None:
        self.requests.put((command, index, *args))
        self.unanswered += 1

    def receive(self) -> Any:
        """The reply to the oldest request; the worker's error raised here."""
        try:
            status, value = pickle.loads(self.connection.recv_bytes())
        except (EOFError, OSError) as err:
            self.unanswered = 0
            raise TrainingError(f"the collection worker process ended unexpectedly (exit code {self.process.exitcode})") from err
        self.unanswered -= 1
        if status == "error":
            raise value
        return value

    def drain(self) -> None:
        """Read and drop the replies nobody will read: the batches started in a round of
        collection that an error (or Ctrl-C) ended, so that the next request's reply is its own."""
        while self.unanswered:
            try:
                self.receive()
            except TrainingError:
                return  # the worker has gone
            except Exception:  # that batch's own error: moot now
                pass

    def ask(self, command: str, index: int | None, *args: Any) -> Any:
        """Send a request and wait for its reply."""
        self.drain()
        self.send(command, index, *args)
        return self.receive()

    def close(self) -> None:
        """Close the worker's envs and end it."""
        if self.process.is_alive():
            try:
                self.ask("close", None)
            except TrainingError:
                pass
        self.requests.close()
        self.process.join(timeout=10)
        self.connection.close()


class RemoteCollector:
    """Seed ``index``'s collector, played by ``worker``: what the run reads of a ``Collector``."""

    def __init__(self, worker: CollectionWorker, index: int, collector: Collector):
        self.worker, self.index = worker, index
        self.num_envs, self.env = collector.num_envs, collector.env  # this process's copy, never stepped here
        self.recent_returns: deque[float] = deque(collector.recent_returns, maxlen=collector.recent_returns.maxlen)

    def start(self, method: str, policy: ActorCritic, amount: int) -> None:
        """Send the worker the seed's current weights: it plays ``method`` (``rollout`` or
        ``episodes``) while this process goes on."""
        self.worker.send("collect", self.index, method, _weights(policy), amount)

    def finish(self) -> Batch:
        """The batch ``start`` asked for (the worker answers in the order it was asked)."""
        batch, returns = self.worker.receive()
        self.recent_returns.clear()
        self.recent_returns.extend(returns)
        return batch

    def rollout(self, policy: ActorCritic, n_steps: int) -> Batch:
        self.start("rollout", policy, n_steps)
        return self.finish()

    def episodes(self, policy: ActorCritic, num_episodes: int) -> Batch:
        self.start("episodes", policy, num_episodes)
        return self.finish()

    def state_dict(self) -> dict[str, Any]:
        return self.worker.ask("state", self.index)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.worker.ask("load", self.index, state)

    def close(self) -> None:
        """The worker closes every seed's envs when it ends (``CollectionWorker.close``)."""
