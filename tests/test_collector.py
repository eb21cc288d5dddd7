"""The collector: whole episodes, autoreset masking, step counts, seeding, its checkpoint state,
and what users' envs bring (numpy done flags on the one-env path)."""

import numpy as np
import pytest
import torch
from conftest import CounterEnv
from helpers import collector_and_policy as make

from pg_lightning import Collector
from pg_lightning.policies import ActorCritic


def episode_bounds(batch):
    done = (batch.terminated | batch.truncated).flatten()
    ends = torch.nonzero(done).flatten().tolist()
    starts = [0] + [e + 1 for e in ends[:-1]]
    return list(zip(starts, ends))


def test_episode_batches_are_whole_episodes_that_start_from_a_reset():
    collector, policy = make(num_envs=3, seed=5)
    batch = collector.episodes(policy, 4)
    bounds = episode_bounds(batch)
    assert len(bounds) >= 4
    assert bounds[-1][1] == batch.observations.shape[0] - 1  # the batch ends on an episode end
    assert batch.mask.all()  # autoreset steps never appear
    lengths = [e - s + 1 for s, e in bounds]
    assert sorted(lengths) == sorted(batch.episode_lengths.int().tolist())
    # each episode's first observation is a reset state (CartPole resets to |x| <= 0.05)
    for s, _ in bounds:
        assert batch.observations[s, 0].abs().max() <= 0.05
    # inside an episode, next_observations[t] == observations[t + 1]
    for s, e in bounds:
        torch.testing.assert_close(batch.next_observations[s:e, 0], batch.observations[s + 1 : e + 1, 0])


def test_episode_returns_match_the_recorded_rewards():
    collector, policy = make(num_envs=2, seed=1)
    batch = collector.episodes(policy, 3)
    sums = [batch.rewards[s : e + 1].sum().item() for s, e in episode_bounds(batch)]
    assert sorted(sums) == sorted(batch.episode_returns.tolist())


def test_episode_batches_hold_exactly_their_episodes_and_count_every_step():
    collector, policy = make("PGLTest/Counter-v0", num_envs=4, seed=2)
    for _ in range(5):
        before = CounterEnv.steps
        batch = collector.episodes(policy, 6)
        assert len(batch.episode_returns) == 6 == len(episode_bounds(batch))
        assert batch.num_steps == int(batch.episode_lengths.sum())
        # steps of episodes started after the sixth are discarded, but they were env steps
        assert batch.env_steps == CounterEnv.steps - before


def test_every_step_of_an_episode_batch_is_played_after_the_batch_starts():
    """On-policy: nothing in a batch was played before it, i.e. by the weights of an earlier update."""
    collector, policy = make("PGLTest/Counter-v0", num_envs=4, seed=3)
    for _ in range(10):
        started = CounterEnv.steps
        batch = collector.episodes(policy, 5)
        assert batch.observations[:, 0, 0].min() >= started
        for s, e in episode_bounds(batch):  # whole episodes: from a reset to their end
            assert batch.observations[s, 0, 1] == 0 and batch.observations[e, 0, 1] == e - s


def test_episode_batches_are_not_biased_towards_short_episodes():
    """Lengths are uniform on 1..20 whatever the policy does: the batches' mean must be 10.5
    (keeping the first episodes to end, or the episodes that end before a cut, would be shorter)."""
    collector, policy = make("PGLTest/Counter-v0", num_envs=4, seed=4)
    lengths = torch.cat([collector.episodes(policy, 6).episode_lengths for _ in range(200)])
    assert len(lengths) == 1200
    assert abs(float(lengths.mean()) - 10.5) < 0.6  # 3.6 standard errors


def test_rollout_masks_exactly_the_autoreset_steps():
    collector, policy = make(num_envs=4, seed=3)
    batch = collector.rollout(policy, 200)
    done = batch.terminated | batch.truncated
    # a step is masked iff the same env was done on the step before (also across rollouts)
    expected = torch.ones_like(batch.mask)
    expected[1:] = ~done[:-1]
    assert torch.equal(batch.mask, expected)
    # autoreset steps carry no reward and observe the reset state
    assert (batch.rewards[~batch.mask] == 0).all()
    next_batch = collector.rollout(policy, 5)
    assert torch.equal(next_batch.mask[0], ~done[-1])
    # no transition crosses an episode boundary: next_observations[t] is observations[t + 1]
    torch.testing.assert_close(batch.next_observations[:-1], batch.observations[1:])
    assert batch.num_steps == int(batch.mask.sum())


def test_same_seed_same_batches_different_seed_different_batches():
    a = [make(seed=7)[0] for _ in range(2)] + [make(seed=8)[0]]
    _, policy = make()
    batches = [c.episodes(policy, 2) for c in a]
    assert torch.equal(batches[0].observations, batches[1].observations)
    assert torch.equal(batches[0].actions, batches[1].actions)
    assert not (
        batches[0].observations.shape == batches[2].observations.shape
        and torch.equal(batches[0].observations, batches[2].observations)
    )


def test_envs_get_distinct_seeds():
    collector, policy = make(num_envs=3, seed=11)
    first = collector.rollout(policy, 1).observations[0]
    assert len({tuple(row.tolist()) for row in first}) == 3


def test_box_actions_are_clipped_for_the_env_but_recorded_raw():
    collector = Collector("Pendulum-v1", 2, seed=0)
    space = collector.env.single_action_space
    policy = ActorCritic(collector.env.single_observation_space, space, log_std_init=2.0)
    batch = collector.rollout(policy, 50)
    assert batch.actions.abs().max() > space.high[0]  # raw samples go outside [-2, 2]
    # Pendulum's cost uses the clipped torque u ∈ [-2, 2]: cost ≤ π² + 0.1·64 + 0.001·4
    assert (batch.rewards >= -(np.pi**2 + 0.1 * 64 + 0.001 * 4) - 1e-4).all()


def test_collector_state_round_trip_restores_returns_window_and_rng():
    collector, policy = make(seed=4)
    collector.episodes(policy, 3)
    state = collector.state_dict()
    resumed, _ = make(seed=4)
    resumed.load_state_dict(state)
    assert list(resumed.recent_returns) == list(collector.recent_returns)
    # all envs were waiting for their autoreset, so the resumed stream equals the original
    assert torch.equal(collector.episodes(policy, 2).observations, resumed.episodes(policy, 2).observations)


# ---- what users' envs and wrappers bring --------------------------------------------------------
@pytest.mark.filterwarnings("ignore:.*signal to be a boolean")
@pytest.mark.parametrize("algorithm", ["PPO", "Reinforce"])
def test_numpy_integer_done_flags_count_exactly_the_steps_taken_and_the_run_ends_on_its_budget(algorithm):
    """Flags as numpy ints (legal, common in older envs) on the default one-env path: masks stay
    boolean, so ``env_steps`` is the number of ``env.step`` calls and the budget ends the run."""
    import user_envs
    from helpers import quiet_trainer

    from pg_lightning import PPO, Reinforce

    env_id, budget = "user_envs:UserEnvs/IntFlags-v0", 300
    module = (PPO(env_id=env_id, num_envs=1, n_steps=32, minibatch_size=32, max_env_steps=budget, seed=0)
              if algorithm == "PPO" else Reinforce(env_id=env_id, episodes_per_batch=4, max_env_steps=budget, seed=0))
    user_envs.IntFlags.steps = 0
    trainer = quiet_trainer(max_epochs=200)  # a bound, should the budget never be reached
    trainer.fit(module)
    assert module.env_steps == user_envs.IntFlags.steps
    assert budget <= module.env_steps < budget + 40 and trainer.current_epoch < 200
