"""The ``pg-lightning`` console script: ``train.py``'s CLI, plus ``pg-lightning push`` (``pg_lightning.hub``).

    pg-lightning --config cartpole_ppo [--model.lr 0.001 ...]   # fit / validate / test / predict, as train.py
    pg-lightning push CKPT --repo-id USER/NAME [--folder-only]   # share a checkpoint on the Hugging Face Hub
"""

from __future__ import annotations

import gc
import sys


def main(argv: list[str] | None = None) -> int:
    """Run ``pg-lightning`` on ``argv`` (default: the command line); the exit status."""
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["push"]:
        from pg_lightning import hub

        return hub.main(args[1:])
    gc.disable()  # as train.py: no collections during the imports, and their objects never scanned again
    from pg_lightning.cli import main as cli_main

    gc.freeze()
    gc.enable()
    try:
        cli_main(args)
    finally:
        gc.freeze()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
