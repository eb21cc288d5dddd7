"""The Hugging Face Hub without the network: the pushed folder and its card (read by
huggingface_hub's own parser), the upload up to huggingface_hub's API calls, and loading from
huggingface_hub's cache layout offline."""

import json
import subprocess
import sys
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch
import yaml

huggingface_hub = pytest.importorskip("huggingface_hub")

from helpers import user_env  # noqa: E402

import pg_lightning  # noqa: E402
from pg_lightning import PPO, hub, hub_download, registry  # noqa: E402
from pg_lightning.errors import ConfigError  # noqa: E402
from pg_lightning.play import play  # noqa: E402

REPO = "user/cartpole-ppo"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    """A PPO CartPole checkpoint after two updates."""
    module = PPO(env_id="CartPole-v1", n_steps=16, seed=1)
    trainer = L.Trainer(max_epochs=2, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False)
    trainer.fit(module)
    path = tmp_path_factory.mktemp("trained") / "best.ckpt"
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def folder(checkpoint, tmp_path_factory) -> Path:
    return hub.write_folder(checkpoint, tmp_path_factory.mktemp("push") / "folder", REPO, episodes=3, seed=0)


def test_the_folder_holds_card_config_checkpoint_results_and_video(folder, checkpoint):
    assert sorted(p.name for p in folder.iterdir()) == ["README.md", "config.yaml", "model.ckpt", "replay.mp4",
                                                       "results.json"]
    assert (folder / "model.ckpt").read_bytes() == checkpoint.read_bytes()
    assert (folder / "replay.mp4").stat().st_size > 1000
    config = yaml.safe_load((folder / "config.yaml").read_text())
    assert config["model"]["class_path"] == "pg_lightning.modules.ppo.PPO"
    assert config["model"]["init_args"]["env_id"] == "CartPole-v1" and config["model"]["init_args"]["n_steps"] == 16
    rebuilt = registry.model_from_config(str(folder / "config.yaml"))  # the config rebuilds the same agent
    assert hub._plain(dict(rebuilt.hparams)) == hub._plain(dict(registry.load_module(checkpoint).hparams))


def test_the_card_parses_and_its_model_index_names_env_algorithm_and_result(folder, checkpoint):
    results = json.loads((folder / "results.json").read_text())
    returns = results["returns"]
    assert returns == [r for r, _ in play(checkpoint, episodes=3, seed=0)]  # the card's play command gives them
    value = f"{np.mean(returns):.2f} +/- {np.std(returns):.2f}"
    card = huggingface_hub.ModelCard.load(folder / "README.md")
    assert card.data.library_name == "pg_lightning"
    assert {"reinforcement-learning", "PPO", "CartPole-v1"} <= set(card.data.tags)
    [result] = card.data.eval_results
    assert (result.task_type, result.dataset_type, result.dataset_name) == ("reinforcement-learning", "CartPole-v1",
                                                                             "CartPole-v1")
    assert (result.metric_type, result.metric_value) == ("mean_reward", value)
    [entry] = huggingface_hub.metadata_load(folder / "README.md")["model-index"]
    assert entry["name"] == "PPO"
    assert entry["results"][0]["dataset"]["name"] == "CartPole-v1"
    assert entry["results"][0]["metrics"][0]["value"] == value
    assert f"hf://{REPO}" in card.text and f'load_from_hub("{REPO}")' in card.text


@pytest.fixture
def api(monkeypatch) -> list[tuple[str, dict]]:
    """The calls of ``HfApi.create_repo`` / ``upload_folder``, which do nothing."""
    calls = []
    for name in ("create_repo", "upload_folder"):
        monkeypatch.setattr(huggingface_hub.HfApi, name, lambda self, _name=name, **kwargs: calls.append((_name, kwargs)))
    return calls


def test_push_writes_the_folder_and_uploads_it(checkpoint, tmp_path, api, capsys):
    out = tmp_path / "out"
    code = hub.main([str(checkpoint), "--repo-id", REPO, "--folder", str(out), "--episodes", "2", "--no-video",
                     "--private"])
    assert code == 0
    assert (out / "README.md").is_file() and not (out / "replay.mp4").exists()
    assert api == [
        ("create_repo", {"repo_id": REPO, "repo_type": "model", "private": True, "exist_ok": True}),
        ("upload_folder", {"repo_id": REPO, "folder_path": str(out), "repo_type": "model",
                           "commit_message": "pg_lightning push"}),
    ]
    assert f"uploaded to https://huggingface.co/{REPO}" in capsys.readouterr().out


def test_push_folder_only_uploads_nothing_and_the_command_routes_push(checkpoint, tmp_path, api, monkeypatch):
    from pg_lightning import command

    monkeypatch.chdir(tmp_path)
    assert command.main(["push", str(checkpoint), "--repo-id", REPO, "--episodes", "1", "--no-video",
                         "--folder-only"]) == 0
    assert api == [] and (tmp_path / "hub/user/cartpole-ppo/model.ckpt").is_file()


@pytest.mark.parametrize("repo_id", ["noslash", "a/b/c", "/name"])
def test_a_bad_repo_id_is_one_line(checkpoint, tmp_path, api, capsys, repo_id):
    assert hub.main([str(checkpoint), "--repo-id", repo_id, "--folder", str(tmp_path)]) == 2
    assert capsys.readouterr().err.strip() == f"error: --repo-id must be USER/NAME, got {repo_id!r}"
    assert api == []


def fake_cache(root: Path, checkpoint: Path, repo_id: str = REPO) -> Path:
    """huggingface_hub's cache layout holding ``checkpoint`` as ``repo_id``'s ``model.ckpt`` at ``refs/main``."""
    repo = root / f"models--{repo_id.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs/main").write_text(COMMIT)
    snapshot = repo / "snapshots" / COMMIT
    snapshot.mkdir(parents=True)
    (snapshot / "model.ckpt").write_bytes(checkpoint.read_bytes())
    return root


@pytest.fixture
def offline_cache(tmp_path, monkeypatch, checkpoint) -> Path:
    """An offline huggingface_hub whose cache is a fake one holding ``checkpoint`` as ``REPO``."""
    cache = fake_cache(tmp_path / "hf-cache", checkpoint)
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(cache))  # read at import
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    return cache


def test_load_from_hub_loads_the_cached_checkpoint_untrusted(offline_cache, checkpoint, monkeypatch):
    module = pg_lightning.load_from_hub(REPO)
    expected = registry.load_module(checkpoint)
    assert type(module).__name__ == "PPO" and not module.training
    for key, value in expected.state_dict().items():
        assert torch.equal(module.state_dict()[key], value), key
    seen = []
    monkeypatch.setattr(registry, "load_module", lambda path, **kwargs: seen.append((Path(path), kwargs)))
    pg_lightning.load_from_hub(REPO, allow=["x"])
    assert seen == [(offline_cache / f"models--user--cartpole-ppo/snapshots/{COMMIT}/model.ckpt",
                     {"trusted": False, "allow": ["x"]})]


def test_a_hub_checkpoint_is_never_trusted_and_a_missing_one_is_one_line(offline_cache):
    with pytest.raises(ConfigError, match="never trusted"):
        hub_download.resolve_checkpoint(f"hf://{REPO}", trusted=True)
    with pytest.raises(ConfigError, match="cannot get model.ckpt of Hub repo 'user/missing'"):
        pg_lightning.load_from_hub("user/missing")
    assert hub_download.resolve_checkpoint("local.ckpt") == "local.ckpt"


def test_play_hf_url_plays_the_cached_checkpoint_offline(tmp_path, checkpoint):
    cache = fake_cache(tmp_path / "hf-cache", checkpoint)
    env = user_env(tmp_path, HF_HUB_CACHE=str(cache), HF_HUB_OFFLINE="1")
    result = subprocess.run([sys.executable, "-m", "pg_lightning.play", f"hf://{REPO}@main", "--episodes", "2"],
                            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-3000:]
    expected = [r for r, _ in play(checkpoint, episodes=2)]
    assert f"mean return {np.mean(expected):g} over 2 episodes" in result.stdout
