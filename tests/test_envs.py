"""The envs the collector plays: the one-env fast path, the wrapper chain and its episode statistics."""

import pytest
import torch
from helpers import collector_and_policy as make

from pg_lightning.collector import Collector
from pg_lightning.policies import ActorCritic


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1", "user_envs:UserEnvs/CueDict-v0", "user_envs:UserEnvs/Parity-v0"])
def test_single_env_plays_exactly_as_a_one_env_sync_vector_env(env_id):
    """The one-env fast path keeps the vector env's autoreset, truncation and statistics: the same
    transitions, episode returns and lengths, batch after batch, for episodes and rollouts."""
    single, sync = (Collector(env_id, 1, seed=3, vectorization=v) for v in ("auto", "sync"))
    assert type(single.env).__name__ == "SingleEnv" and type(sync.env.unwrapped).__name__ == "SyncVectorEnv"
    policy = ActorCritic(single.env.single_observation_space, single.env.single_action_space)
    plays = (lambda c: c.episodes(policy, 3), lambda c: c.rollout(policy, 230), lambda c: c.episodes(policy, 1),
             lambda c: c.rollout(policy, 7), lambda c: c.episodes(policy, 2))
    for play in plays:
        a, b = play(single), play(sync)
        for field in ("observations", "actions", "rewards", "terminated", "truncated", "mask", "next_observations",
                      "episode_returns", "episode_lengths"):
            mine, theirs = getattr(a, field), getattr(b, field)
            if isinstance(mine, dict):  # Dict observations: one tensor per entry
                assert mine.keys() == theirs.keys(), field
                assert all(mine[k].dtype == theirs[k].dtype for k in mine), field
                mine, theirs = (torch.cat([obs[k].reshape(*obs[k].shape[:2], -1).double() for k in sorted(obs)], -1)
                                for obs in (mine, theirs))
            assert torch.equal(mine, theirs) and mine.dtype == theirs.dtype, field
        assert a.discarded_steps == b.discarded_steps
    assert single.state_dict() == sync.state_dict()  # envs' and actions' generators, returns window


# ---- what users' wrappers bring -----------------------------------------------------------------
def test_record_episode_statistics_in_wrappers_is_tolerated():
    """A CleanRL habit: ``RecordEpisodeStatistics`` listed in ``wrappers`` would assert at the first
    episode end under the chain's own; it is left out, one under another key is kept."""
    from gymnasium.wrappers import RecordEpisodeStatistics

    from pg_lightning.envs import make_env
    from pg_lightning.evaluation import evaluate

    def statistics(env):
        found = []
        while hasattr(env, "env"):
            found += [env._stats_key] if isinstance(env, RecordEpisodeStatistics) else []
            env = env.env
        return found

    plain, keyed = "gymnasium.wrappers.RecordEpisodeStatistics", {
        "class_path": "gymnasium.wrappers.RecordEpisodeStatistics", "init_args": {"stats_key": "mine"}}
    assert statistics(make_env("CartPole-v1", wrappers=[plain])) == ["episode"]
    assert statistics(make_env("CartPole-v1", wrappers=[keyed])) == ["mine", "episode"]
    collector, policy = make(num_envs=2, wrappers=[plain, keyed])
    batch = collector.rollout(policy, 100)
    assert len(batch.episode_returns) >= 2 and torch.equal(batch.episode_returns, batch.episode_lengths)
    episodes = collector.episodes(policy, 2)
    assert torch.equal(episodes.episode_returns, episodes.episode_lengths) and episodes.episode_lengths.sum() == episodes.num_steps
    assert evaluate(policy, "CartPole-v1", 1, seed=0, wrappers=[plain])["returns"][0] >= 1  # evaluation's env too


def test_wrapper_ended_episodes_are_reported_on_the_envs_reward_scale():
    """Rewards scaled by 10 and episodes cut at 5 steps by a TimeLimit wrapper: the reported
    returns are the env's own (5), as for the episodes the env ends, not the wrapped rewards' (50)."""
    wrappers = [{"class_path": "user_envs.ScaleReward", "init_args": {"factor": 10.0}},
                {"class_path": "gymnasium.wrappers.TimeLimit", "init_args": {"max_episode_steps": 5}}]
    collector, policy = make(num_envs=2, wrappers=wrappers)
    batch = collector.rollout(policy, 12)
    assert batch.rewards.max() == 10.0  # training sees the wrapped rewards
    assert batch.episode_returns.tolist() == [5.0] * 4 and batch.episode_lengths.tolist() == [5.0] * 4
    one_env, policy = make(num_envs=1, wrappers=wrappers)
    episodes = one_env.episodes(policy, 3)
    assert episodes.episode_returns.tolist() == [5.0] * 3 and episodes.num_steps == 15
    scaled_only, policy = make(num_envs=2, wrappers=wrappers[:1])  # episodes the env ends: its own returns
    batch = scaled_only.rollout(policy, 100)
    assert len(batch.episode_returns) and torch.equal(batch.episode_returns, batch.episode_lengths)
