"""Online multi-turn RL (CoCoS, SCoRe and a pass-reward baseline): the pure parts. Library module.

The online RL stage (issue 16, not built yet) will sample k episodes of T turns per prompt with the
rollouts' prompts, feedback and sandbox, score every turn in the sandbox, and take policy-gradient
steps on the generator. What one step computes is kept here, as pure functions tested against
hand-computed values (tests/test_rl.py):

    scores = [pass_fraction(r) for r in turn_results]           # a turn's share of tests passed
    reward = cocos_reward(scores, gamma=0.5)                     # or score_reward / final_pass_reward
    kl1, kl2 = (sequence_kl(kl(lp, ref), mask) for lp, ref, mask in turns)
    shaped = shaped_reward(reward, [kl1, kl2], [0.25, 0.05])     # turn 1 has its own coefficient
    adv = rloo_advantages(shaped.view(prompts, k))               # leave-one-out baseline per prompt
    loss, clipfrac = clipped_pg_loss(logprobs, old_logprobs, adv.flatten(), mask, clip=0.2)

Rewards, as in the references (jeonghun3572/CoCoS: ``cocos/rewards.py``, ``baselines/score``):

- ``cocos_reward``: sum over turns t of gamma**(T - t) * (s_t - s_{t-1}) with s_0 = 0, the CoCoS
  ``correction_reward``: gamma = 0 gives the last turn's gain only, gamma = 1 the last turn's score.
  The reference scores a turn by its count of passed tests; mucode by their fraction, so that
  problems with more tests do not weigh more.
- ``score_reward``: SCoRe's stage I rewards turn 2 alone (all tests passed, 0/1), with a strong KL
  on turn 1 (the reference's ``first_kl_coef``, 0.25); stage II rewards both turns plus the bonus
  alpha * (r2 - r1) for improving.
- ``final_pass_reward``: 1 if the last turn passed every test: the simplest baseline.

KL to the frozen reference is per token, k1 = log pi - log pi_ref as both references use (its sum
over a sequence estimates the sequence KL without bias), or k3 = exp(-k1) + k1 - 1 (nonnegative,
lower variance); each turn's sum is charged to the episode's reward with that turn's coefficient
(TRL's RLOO with ``token_level_kl=False``). Several updates on one batch clip the importance ratio
(PPO); on the first update the ratio is 1 and the loss is REINFORCE with the RLOO baseline.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch


def pass_fraction(tests_passed: Sequence[bool]) -> float:
    """The share of a turn's tests that passed (0 for a turn with no tests)."""
    return sum(map(bool, tests_passed)) / len(tests_passed) if tests_passed else 0.0


def cocos_reward(scores: Sequence[float], gamma: float) -> float:
    """CoCoS: the gamma-discounted sum of the improvements between consecutive turns' scores, the
    last improvement undiscounted (s_0 = 0)."""
    if not scores:
        raise ValueError("an episode has at least one turn")
    if not 0.0 <= gamma <= 1.0:
        raise ValueError(f"gamma must be in [0, 1], got {gamma}")
    last = len(scores) - 1
    previous = [0.0, *scores[:-1]]
    return sum(gamma ** (last - t) * (s - p) for t, (s, p) in enumerate(zip(scores, previous)))


def score_reward(passed: Sequence[bool], stage: int, alpha: float = 10.0) -> float:
    """SCoRe on a two-turn episode (0/1 per turn: every test passed). Stage 1: r2. Stage 2:
    r1 + r2 + alpha * (r2 - r1), the bonus for self-correction (the paper's alpha is 10)."""
    if len(passed) != 2:
        raise ValueError(f"SCoRe's rewards are for two turns, got {len(passed)}")
    r1, r2 = float(passed[0]), float(passed[1])
    if stage == 1:
        return r2
    if stage == 2:
        return r1 + r2 + alpha * (r2 - r1)
    raise ValueError(f"SCoRe has stages 1 and 2, got {stage}")


def final_pass_reward(passed: Sequence[bool]) -> float:
    """1 when the episode's last turn passed every test, else 0."""
    if not passed:
        raise ValueError("an episode has at least one turn")
    return float(bool(passed[-1]))


def kl(logprobs: torch.Tensor, ref_logprobs: torch.Tensor, estimator: str = "k1") -> torch.Tensor:
    """Per-token KL estimate of the policy from the reference, at the sampled tokens."""
    log_ratio = logprobs - ref_logprobs
    if estimator == "k1":
        return log_ratio
    if estimator == "k3":
        return torch.expm1(-log_ratio) + log_ratio
    raise ValueError(f"estimator must be k1 or k3, got {estimator!r}")


def sequence_kl(token_kl: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Each sequence's KL: the sum over its response tokens (``mask`` 1 there, 0 on padding)."""
    return (token_kl * mask).sum(-1)


def shaped_reward(reward: torch.Tensor, turn_kls: Sequence[torch.Tensor],
                  coefs: Sequence[float]) -> torch.Tensor:
    """The episode's reward minus each turn's KL times that turn's coefficient."""
    if len(turn_kls) != len(coefs):
        raise ValueError(f"{len(turn_kls)} turns of KL but {len(coefs)} coefficients")
    shaped = reward.clone()
    for turn_kl, coef in zip(turn_kls, coefs):
        shaped = shaped - coef * turn_kl
    return shaped


def rloo_advantages(rewards: torch.Tensor) -> torch.Tensor:
    """REINFORCE leave-one-out: each sample's reward minus the mean of the other samples of its
    prompt. ``rewards``: [prompts, k]; with k = 1 the reward itself (no baseline)."""
    k = rewards.shape[-1]
    if k == 1:
        return rewards.clone()
    baseline = (rewards.sum(-1, keepdim=True) - rewards) / (k - 1)
    return rewards - baseline


def clipped_pg_loss(logprobs: torch.Tensor, old_logprobs: torch.Tensor, advantages: torch.Tensor,
                    mask: torch.Tensor, clip: float = 0.2) -> tuple[torch.Tensor, torch.Tensor]:
    """The clipped policy-gradient loss, averaged over response tokens, and the share of tokens
    whose ratio was clipped. ``logprobs``/``old_logprobs``/``mask``: [n, length]; ``advantages``: [n]."""
    ratio = torch.exp(logprobs - old_logprobs)
    adv = advantages.unsqueeze(-1)
    unclipped, clipped = -adv * ratio, -adv * torch.clamp(ratio, 1.0 - clip, 1.0 + clip)
    per_token = torch.maximum(unclipped, clipped)
    tokens = mask.sum().clamp(min=1)
    loss = (per_token * mask).sum() / tokens
    clipfrac = ((clipped > unclipped).float() * mask).sum() / tokens
    return loss, clipfrac


def entropy(logits: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean entropy of the next-token distributions over response tokens (``logits``: [n, length, V])."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    per_token = -(logp.exp() * logp).sum(-1)
    return (per_token * mask).sum() / mask.sum().clamp(min=1)
