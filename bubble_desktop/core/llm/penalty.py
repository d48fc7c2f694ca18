"""A repetition penalty that looks only at what the model itself wrote.

transformers' ``repetition_penalty`` punishes every token already in ``input_ids``, the prompt
included: a model asked to answer from its sources is pushed away from the very words it should
quote (SmolLM2 answered a verbatim-in-source question with garbage at 1.1; see issue 10). Like
llama.cpp's ``repeat_last_n`` this penalises only the last ``last_n`` *generated* tokens. The
prompt length is taken from the first call, so one processor serves one generation.
"""

from __future__ import annotations

from typing import Any

# llama.cpp's and Ollama's window: long enough to stop loops, short enough not to punish a long quote
PENALTY_LAST_N = 64


def generated_tokens_penalty(penalty: float, last_n: int = PENALTY_LAST_N) -> Any:
    """A fresh ``LogitsProcessor`` (one per generation) applying ``penalty`` to recent generated tokens."""
    import torch
    from transformers import LogitsProcessor

    class GeneratedTokensRepetitionPenalty(LogitsProcessor):
        def __init__(self) -> None:
            self.penalty = float(penalty)
            self.last_n = int(last_n)
            self.prompt_len: int | None = None

        def __call__(self, input_ids: Any, scores: Any) -> Any:
            if self.prompt_len is None:
                self.prompt_len = int(input_ids.shape[1])
            recent = input_ids[:, self.prompt_len :][:, -self.last_n :]
            if recent.shape[1] == 0 or self.penalty == 1.0:
                return scores
            picked = torch.gather(scores, 1, recent)
            picked = torch.where(picked < 0, picked * self.penalty, picked / self.penalty)
            return scores.scatter(1, recent, picked)

    return GeneratedTokensRepetitionPenalty()
