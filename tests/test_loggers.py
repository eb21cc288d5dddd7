"""W&B as a user meets it: a quiet first run that owns its files, one run per seed, x-axes set by
name, resuming into the same run, checkpoints as artifacts, and offline detection. Every run is
offline and read back from its ``.wandb`` file."""

import http.server
import importlib.util
import subprocess
import sys
import threading
from pathlib import Path

import pytest
import torch
from helpers import user_env, wandb_run

ROOT = Path(__file__).resolve().parents[1]
SHORT = ["--trainer.enable_progress_bar", "false"]


def run(tmp_path, *args, module="train.py", timeout=240):
    """``python train.py ARGS`` (or ``-m module``) in ``tmp_path`` as a user without W&B credentials."""
    command = [str(ROOT / module)] if module.endswith(".py") else ["-m", module]
    result = subprocess.run([sys.executable, *command, *args], cwd=tmp_path, env=user_env(tmp_path),
                            capture_output=True, text=True, timeout=timeout)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


def run_files(tmp_path) -> list[Path]:
    return sorted((tmp_path / "runs" / "wandb").glob("offline-run-*/run-*.wandb"))


def test_a_first_run_is_quiet_and_keeps_its_files_and_whole_config_in_its_own_run(tmp_path):
    result = run(tmp_path, "--model.max_env_steps", "1500", "--model.eval_every", "10", "--model.record_video", "true")
    lines = [line.strip() for line in (result.stdout + result.stderr).replace("\r", "\n").splitlines()]
    said = [line for line in lines if line and not line.startswith("Training")]  # the progress bar
    assert len(said) == 2, said  # nothing else: no warnings, tips, seed or device lines
    said.sort()  # the W&B line is logged to stderr, the result printed to stdout
    assert said[1].startswith("W&B: offline (not logged in), run ") and "wandb sync runs/wandb/offline-run-" in said[1]
    assert said[0].startswith("Done: ") and "(seed 0)" in said[0]

    [run_file] = run_files(tmp_path)
    w = wandb_run(run_file)
    folder = tmp_path / "runs" / "pg_lightning" / w["run"].run_id
    assert f"run folder runs/pg_lightning/{w['run'].run_id}" in said[0]
    assert (folder / "checkpoints" / "last.ckpt").is_file()
    assert "max_env_steps: 1500" in (folder / "config.yaml").read_text()
    assert not (tmp_path / "runs" / "config.yaml").exists()
    assert list((folder / "videos").glob("update*-episode-0.mp4"))
    # the whole resolved CLI config, not only the model's hyperparameters
    config = w["config"]
    assert config["model"]["init_args"]["max_env_steps"] == 1500
    assert config["trainer"]["log_every_n_steps"] == 10 and config["checkpoint"]["every_n_epochs"] == 25
    assert "threshold" in config["solved"] and config["seed_everything"] == 0

    # every logged key has its own definition (no glob decides) on the axis of its prefix
    media = {"val/video/_type": "val/video"}  # a logged video's row holds its file's fields
    logged = {media.get(key, key) for row in w["history"] for key in row
              if not key.startswith("_") and not key.startswith("val/video/") or key in media}
    assert {"train/return_last100", "val/episode_return", "val/video"} <= logged
    for key in logged - {"trainer/global_step"}:
        prefix = key.split("/")[0]
        axis = f"{prefix}/env_steps" if prefix in ("train", "val") and not key.endswith("/env_steps") \
            else "trainer/global_step"
        assert w["metrics"].get(key) == axis, key
    # the video is logged with the env step of the evaluation it shows
    videos = [row["val/env_steps"] for row in w["history"] if row.get("val/video/_type") == "video-file"]
    evaluations = [row["val/env_steps"] for row in w["history"] if "val/episode_return" in row]
    assert videos and videos == evaluations and videos == sorted(videos) and videos[0] > 0


def test_several_seeds_give_one_wandb_run_each_and_one_checkpoint_of_them_all(tmp_path):
    """Consecutive seeds train in one process (num_seeds): a W&B run per seed, named and grouped
    as one-seed runs of pg_lightning.seeds are, beside the run of their aggregate, and one run
    folder whose checkpoint holds every seed."""
    run(tmp_path, str(ROOT / "configs/cartpole_reinforce.yaml"), "--seeds", "3", "4", "--", "--model.max_env_steps",
        "1000", *SHORT, module="pg_lightning.seeds")
    runs = [wandb_run(f) for f in run_files(tmp_path)]
    by_name = {w["run"].display_name: w for w in runs}
    assert set(by_name) == {"cartpole_reinforce", "cartpole_reinforce-seed3", "cartpole_reinforce-seed4"}
    aggregate = by_name["cartpole_reinforce"]["run"].run_id
    for seed in (3, 4):
        w = by_name[f"cartpole_reinforce-seed{seed}"]
        assert w["run"].run_group == "cartpole_reinforce" and w["run"].run_id == f"{aggregate}-seed{seed}"
        assert w["config"]["model"]["init_args"]["seed"] == seed
        assert w["config"]["seed_everything"] == seed  # follows the model's seed: one seed fixes the run
    [folder] = (tmp_path / "runs/pg_lightning").iterdir()
    checkpoint = torch.load(folder / "checkpoints/last.ckpt", weights_only=True)
    assert (checkpoint["hyper_parameters"]["seed"], checkpoint["hyper_parameters"]["num_seeds"]) == (3, 2)
    assert [s["seed"] for s in checkpoint["pg_lightning"]["seeds"]] == [3, 4]


def test_resuming_a_checkpoint_continues_its_wandb_run_and_log_model_keeps_checkpoints_as_artifacts(tmp_path):
    run(tmp_path, "--model.max_env_steps", "1000", "--trainer.logger.log_model", "all", *SHORT)
    [first] = [wandb_run(f) for f in run_files(tmp_path)]
    run_id = first["run"].run_id
    assert f"model-{run_id}" in first["artifacts"]  # uploaded by `wandb sync` with the run
    last = tmp_path / "runs/pg_lightning" / run_id / "checkpoints/last.ckpt"
    run(tmp_path, "--model.max_env_steps", "2000", "--ckpt_path", str(last), *SHORT)
    files = run_files(tmp_path)
    assert len(files) == 2 and all(f.name == f"run-{run_id}.wandb" for f in files)  # the same run, twice
    second = wandb_run(files[1])
    steps = [row["train/env_steps"] for row in second["history"] if "train/env_steps" in row]
    assert steps and steps[0] > 1000 and steps[-1] >= 2000  # it carries on where the first stopped
    assert [p.name for p in (tmp_path / "runs/pg_lightning").iterdir()] == [run_id]
    assert torch.load(last, weights_only=True)["pg_lightning"]["env_steps"] >= 2000


LOGGED_IN = ("from pg_lightning.loggers import _login_check, wandb_logged_in; "
             "print(wandb_logged_in(), _login_check().__name__)")
# a W&B without its private ``wbauth`` module: wandb_logged_in must take the public fallback
WITHOUT_WBAUTH = "import sys, wandb.sdk.lib as lib; vars(lib).pop('wbauth', None); sys.modules['wandb.sdk.lib.wbauth'] = None; "
HAS_WBAUTH = importlib.util.find_spec("wandb.sdk.lib.wbauth") is not None  # wandb >= 0.2x; the floor has none


@pytest.mark.parametrize("check", ["wbauth_logged_in", "credentials_configured"])
@pytest.mark.parametrize("netrc_host, settings_host, expected", [
    (None, None, False),
    ("api.wandb.ai", None, True),
    ("api.wandb.ai", "https://wandb.example.com", False),  # `wandb login --host`: another server
    ("wandb.example.com", "https://wandb.example.com", True),
], ids=["nothing", "netrc", "netrc-for-another-host", "login-host"])
def test_logged_in_is_wandbs_own_answer(tmp_path, netrc_host, settings_host, expected, check):
    if check == "wbauth_logged_in" and not HAS_WBAUTH:
        pytest.skip("this wandb has no wandb.sdk.lib.wbauth: the fallback is the only check")
    env = {"WANDB_BASE_URL": "https://api.wandb.ai"} if settings_host is None else {}
    if netrc_host is not None:  # NETRC: a netrc file elsewhere than ~/.netrc
        (tmp_path / "credentials").write_text(f"machine {netrc_host}\n  login user\n  password {'k' * 40}\n")
        env["NETRC"] = str(tmp_path / "credentials")
    if settings_host is not None:
        (tmp_path / ".config/wandb").mkdir(parents=True)
        (tmp_path / ".config/wandb/settings").write_text(f"[default]\nbase_url = {settings_host}\n")
    code = LOGGED_IN if check == "wbauth_logged_in" else WITHOUT_WBAUTH + LOGGED_IN
    assert _python(tmp_path, code, env).stdout.split() == [str(expected), check]


def _python(tmp_path, code: str, env: dict) -> subprocess.CompletedProcess:
    """``python -c code`` as a new user, with ``env`` added."""
    result = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=user_env(tmp_path, **env),
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    return result


class _Proxy(http.server.BaseHTTPRequestHandler):
    """A forward proxy that answers for the server (it receives the absolute URL), or with a 502
    for ``down.invalid`` as a proxy does when it cannot reach the server."""
    seen: list[str] = []

    def do_HEAD(self):
        self.seen.append(self.path)
        self.send_response(502 if "down.invalid" in self.path else 200)
        self.end_headers()

    def log_message(self, *args):
        pass


def test_the_reachability_probe_goes_through_the_proxy(tmp_path):
    server = http.server.HTTPServer(("127.0.0.1", 0), _Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    code = "from pg_lightning.loggers import wandb_reachable; print(wandb_reachable(timeout=10))"
    base = {"WANDB_BASE_URL": "http://wandb.invalid"}  # resolves nowhere: only a proxy can answer
    try:
        direct = _python(tmp_path, code, base)
        proxy = {"HTTP_PROXY": f"http://127.0.0.1:{server.server_port}"}
        proxied = _python(tmp_path, code, {**base, **proxy})
        down = _python(tmp_path, code, {"WANDB_BASE_URL": "http://down.invalid", **proxy})
    finally:
        server.shutdown()
    assert direct.stdout.strip() == "False"
    assert proxied.stdout.strip() == "True" and down.stdout.strip() == "False"
    assert _Proxy.seen == ["http://wandb.invalid/", "http://down.invalid/"]



def test_a_key_but_no_network_still_trains_offline_and_keeps_the_metrics(tmp_path):
    env = user_env(tmp_path, WANDB_API_KEY="x" * 40, WANDB_BASE_URL="http://127.0.0.1:9")
    result = subprocess.run(
        [sys.executable, str(ROOT / "train.py"), "--model.max_env_steps", "1000",
         "--trainer.enable_progress_bar", "false"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "W&B: offline (server unreachable), run " in result.stdout + result.stderr
    runs = list((tmp_path / "runs" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    assert any("train/return_last100" in row for row in wandb_run(runs[0])["history"])
