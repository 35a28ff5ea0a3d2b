"""Chat messages for each turn, and code extraction from a model's response.

Turn 1 is one user message: the statement, its public tests, an instruction. At turn t > 1 the
state grows by two messages per earlier turn: the previous code as the assistant turn (as a fenced
block, the format the generator is trained to write) and its public-test feedback as the user turn.
Private tests never appear here.

    messages = first_turn(problem)
    messages = next_turn(messages, code, feedback)
    code = extract_code(response, problem.entry_point)

Rendering to text or ids is the tokenizer's chat template (`render`), so any chat model works.
"""

from __future__ import annotations

import re

from mucode.records import Message, Problem

INSTRUCTION = "Write the function in a Python code block."
RETRY = "Fix the function. Write the whole function in a Python code block."
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n")


def problem_text(problem: Problem) -> str:
    """The problem's statement and public tests: what the generator sees at turn 1, before the instruction
    (first_turn), and how verifier examples and scorers name a problem."""
    tests = "\n".join(problem.public_tests)
    return f"{problem.prompt.rstrip()}\n\nTests:\n{tests}"


def first_turn(problem: Problem) -> list[Message]:
    """State s_1: one user message."""
    return first_turn_of(problem_text(problem))


def first_turn_of(text: str) -> list[Message]:
    """State s_1 of a problem given as its problem_text (the verifier's input starts with it too)."""
    return [{"role": "user", "content": f"{text}\n\n{INSTRUCTION}"}]


def next_turn(state: list[Message], code: str, feedback: str) -> list[Message]:
    """State s_{t+1} from s_t, the code written at turn t and its public feedback."""
    return [
        *state,
        {"role": "assistant", "content": format_code(code)},
        {"role": "user", "content": f"{feedback.rstrip()}\n\n{RETRY}"},
    ]


def format_code(code: str) -> str:
    """An assistant answer holding `code`: the format SFT targets use."""
    return f"```python\n{code.strip()}\n```"


def render(tokenizer, state: list[Message]) -> str:
    """The prompt text for `state`, ending where the assistant's answer starts."""
    return tokenizer.apply_chat_template(state, tokenize=False, add_generation_prompt=True)


def extract_code(response: str, entry_point: str | None = None) -> str:
    """The program in a response.

    - fenced blocks: the last block that defines `entry_point`; if none does, all blocks joined
      (models sometimes put imports or helpers in a block of their own);
    - an unterminated fence (a response cut at the token limit): everything after the fence;
    - no fence: the whole response.
    """
    blocks = _fenced_blocks(response)
    if not blocks:
        return response.strip()
    if entry_point:
        defining = [b for b in blocks if re.search(rf"^\s*(async\s+)?def\s+{re.escape(entry_point)}\s*\(", b, re.M)]
        if defining:
            return defining[-1].strip()
    return "\n\n".join(b.strip() for b in blocks)


def _fenced_blocks(text: str) -> list[str]:
    """Contents of ``` blocks in order; a final unterminated block runs to the end of the text."""
    blocks, pos = [], 0
    while (m := _FENCE.search(text, pos)) is not None:
        end = text.find("```", m.end())
        if end < 0:
            blocks.append(text[m.end():])
            break
        blocks.append(text[m.end():end])
        pos = end + 3
    return blocks
