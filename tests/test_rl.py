"""mucode.rl: rewards, KL estimators, RLOO advantages and the clipped loss against hand-computed
values; a few RL steps on the tiny model raise the reward of a task it can learn."""

from __future__ import annotations

import math

import pytest
import torch

from mucode import rl


def test_pass_fraction():
    assert rl.pass_fraction([True, False, True, True]) == 0.75 and rl.pass_fraction([]) == 0.0


@pytest.mark.parametrize("scores, gamma, expected", [
    ([0.5, 1.0], 0.5, 0.5 * 0.5 + 1.0 * 0.5),           # gamma * (s1 - 0) + (s2 - s1)
    ([0.5, 1.0], 0.0, 0.5),                              # the last turn's gain only
    ([0.5, 1.0], 1.0, 1.0),                              # telescopes to the last score
    ([0.0, 1.0, 1.0], 0.5, 0.25 * 0.0 + 0.5 * 1.0 + 0.0),
    ([1.0, 0.0], 0.5, 0.5 * 1.0 - 1.0),                  # breaking a correct program costs
    ([0.25], 0.5, 0.25),                                 # one turn: its score
])
def test_cocos_reward(scores, gamma, expected):
    assert rl.cocos_reward(scores, gamma) == pytest.approx(expected)


def test_cocos_reward_is_the_reference_correction_reward():
    # jeonghun3572/CoCoS cocos/rewards.py correction_reward, on scores instead of "pass_N_M" strings
    def reference(scores, gamma):
        rewards, prev, turn = 0.0, 0.0, len(scores)
        for s in scores:
            rewards = s - prev if gamma == 0.0 else rewards + gamma ** (turn - 1) * (s - prev)
            prev, turn = s, turn - 1
        return rewards

    for scores in ([0.2, 0.6, 0.4], [1.0, 1.0, 0.0, 1.0], [0.0]):
        for gamma in (0.0, 0.3, 0.5, 1.0):
            assert rl.cocos_reward(scores, gamma) == pytest.approx(reference(scores, gamma))


def test_score_and_final_pass_rewards():
    assert rl.score_reward([False, True], stage=1) == 1.0 and rl.score_reward([True, False], stage=1) == 0.0
    assert rl.score_reward([False, True], stage=2, alpha=2.0) == 0 + 1 + 2 * 1
    assert rl.score_reward([True, False], stage=2, alpha=2.0) == 1 + 0 + 2 * -1
    assert rl.score_reward([True, True], stage=2, alpha=2.0) == 2.0
    assert rl.final_pass_reward([False, True]) == 1.0 and rl.final_pass_reward([True, False]) == 0.0
    with pytest.raises(ValueError, match="two turns"):
        rl.score_reward([True], stage=1)
    with pytest.raises(ValueError, match="stages 1 and 2"):
        rl.score_reward([True, True], stage=3)


def test_kl_estimators_and_their_sums():
    lp, ref = torch.tensor([[-1.0, -2.0, -3.0]]), torch.tensor([[-1.5, -1.0, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])  # the third token is padding
    assert rl.kl(lp, ref, "k1").tolist() == [[0.5, -1.0, -3.0]]
    k3 = rl.kl(lp, ref, "k3")[0, :2].tolist()
    assert k3 == pytest.approx([math.exp(-0.5) - 1 + 0.5, math.exp(1.0) - 1 - 1.0])
    assert rl.sequence_kl(rl.kl(lp, ref), mask).tolist() == [-0.5]
    with pytest.raises(ValueError, match="k1 or k3"):
        rl.kl(lp, ref, "k2")


def test_shaped_reward_charges_each_turn_its_own_coefficient():
    shaped = rl.shaped_reward(torch.tensor([1.0, 0.0]), [torch.tensor([0.2, 0.4]), torch.tensor([0.4, 0.0])],
                              [0.25, 0.05])
    assert shaped.tolist() == pytest.approx([1.0 - 0.25 * 0.2 - 0.05 * 0.4, 0.0 - 0.25 * 0.4])


def test_rloo_advantages():
    adv = rl.rloo_advantages(torch.tensor([[1.0, 0.0, 0.0, 1.0], [2.0, 2.0, 2.0, 2.0]]))
    assert adv[0].tolist() == pytest.approx([1 - 1 / 3, 0 - 2 / 3, 0 - 2 / 3, 1 - 1 / 3])
    assert adv[1].tolist() == [0.0] * 4  # all alike: nothing to learn
    assert rl.rloo_advantages(torch.tensor([[0.5]])).tolist() == [[0.5]]


def test_clipped_pg_loss():
    old = torch.zeros(2, 2)
    new = torch.full((2, 2), math.log(1.5))  # ratio 1.5 everywhere
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    loss, clipfrac = rl.clipped_pg_loss(new, old, torch.tensor([1.0, -1.0]), mask, clip=0.2)
    # A = +1: max(-1.5, -1.2) = -1.2 (clipped); A = -1: max(1.5, 1.2) = 1.5 (not clipped)
    assert loss.item() == pytest.approx((-1.2 - 1.2 + 1.5) / 3) and clipfrac.item() == pytest.approx(2 / 3)
    loss, clipfrac = rl.clipped_pg_loss(old, old, torch.tensor([1.0, -1.0]), mask)
    assert loss.item() == pytest.approx((-1 - 1 + 1) / 3) and clipfrac.item() == 0.0  # ratio 1: REINFORCE


def test_entropy_of_a_uniform_distribution():
    logits = torch.zeros(1, 2, 4)
    assert rl.entropy(logits, torch.ones(1, 2)).item() == pytest.approx(math.log(4))


def test_a_few_rl_steps_raise_the_reward_of_a_learnable_task(tiny_model_dir):
    """One-token episodes from the tiny model: reward 1 for a token in the lower half of the
    vocabulary. RLOO over 16 samples per prompt, two clipped updates per batch, a k3 KL to the
    frozen start: the expected reward (the probability of the lower half) rises."""
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    policy = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    reference = AutoModelForCausalLM.from_pretrained(tiny_model_dir).eval()
    prompts = torch.randint(3, 300, (4, 6))
    vocab = policy.config.vocab_size
    good = torch.arange(vocab) < vocab // 2

    def next_logits(model):
        return model(input_ids=prompts).logits[:, -1, :]

    def expected_reward():
        with torch.no_grad():
            return torch.softmax(next_logits(policy), -1)[:, good].sum(-1).mean().item()

    before = expected_reward()
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    k = 16
    for _ in range(25):
        with torch.no_grad():
            logp_all = torch.log_softmax(next_logits(policy), -1)
            tokens = torch.multinomial(logp_all.exp(), k, replacement=True)          # [prompts, k]
            old = logp_all.gather(1, tokens)
            ref = torch.log_softmax(next_logits(reference), -1).gather(1, tokens)
            reward = good[tokens].float()
            shaped = rl.shaped_reward(reward, [rl.kl(old, ref, "k3")], [0.01])
            adv = rl.rloo_advantages(shaped)
        for _ in range(2):
            logp = torch.log_softmax(next_logits(policy), -1).gather(1, tokens)
            loss, _ = rl.clipped_pg_loss(logp.flatten().unsqueeze(-1), old.flatten().unsqueeze(-1),
                                         adv.flatten(), torch.ones(adv.numel(), 1))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    after = expected_reward()
    assert after > before + 0.25, (before, after)  # measured 0.497 -> 0.932
