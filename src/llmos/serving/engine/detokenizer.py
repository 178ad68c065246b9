"""Incremental detokenization with stop strings.

Decoding token by token is wrong for byte-level BPE (a character can span several
tokens) and for tokenizers that drop leading spaces, so, like vLLM and TGI, we decode a
small window ``ids[prefix_offset:]`` and emit only what goes beyond the already
emitted ``ids[prefix_offset:read_offset]``; a trailing U+FFFD means "incomplete
character, wait for the next token".

Stop strings: the text is searched only around what was just appended, the stop
string and anything after it are cut, and while a request is running the last
``max(len(stop)) - 1`` characters are held back so a stop string that straddles two
steps is never streamed out before it is recognised.
"""

from __future__ import annotations

from typing import Any

# How many prompt tokens seed the decode window so the first output token gets the
# spacing it would have in context.
_PROMPT_CONTEXT_TOKENS = 5


class IncrementalDetokenizer:
    """Turns a stream of token ids into text deltas. One per sequence; not thread-safe."""

    def __init__(self, tokenizer: Any, prompt_token_ids: list[int], stop: tuple[str, ...]) -> None:
        self._tok = tokenizer
        self._ids: list[int] = list(prompt_token_ids[-_PROMPT_CONTEXT_TOKENS:])
        self._prefix_offset = 0
        self._read_offset = len(self._ids)
        self._stop = stop
        self._holdback = max((len(s) for s in stop), default=1) - 1
        self.text = ""
        self._emitted = 0
        self._last_added = 0

    def append(self, token_id: int) -> None:
        """Add one generated token's text (tokens to hide, e.g. EOS, are never passed)."""
        self._ids.append(token_id)
        self._last_added = 0
        prefix = self._tok.decode(self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=True)
        full = self._tok.decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            new = full[len(prefix) :]
            self._prefix_offset = self._read_offset
            self._read_offset = len(self._ids)
            self._append_text(new)

    def flush(self) -> None:
        """At the end of a request, keep a trailing incomplete character (as U+FFFD) too."""
        prefix = self._tok.decode(self._ids[self._prefix_offset : self._read_offset], skip_special_tokens=True)
        full = self._tok.decode(self._ids[self._prefix_offset :], skip_special_tokens=True)
        if len(full) > len(prefix):
            self._append_text(full[len(prefix) :])
            self._prefix_offset = self._read_offset = len(self._ids)

    def _append_text(self, new: str) -> None:
        self._last_added = len(new)
        self.text += new

    def find_stop(self) -> bool:
        """Cut the text at the first stop string that ends in the newest text; True if found."""
        if not self._stop or not self._last_added:
            return False
        for stop in self._stop:
            start = max(0, len(self.text) - self._last_added - len(stop) + 1)
            idx = self.text.find(stop, start)
            if idx != -1:
                self.text = self.text[:idx]
                self._emitted = min(self._emitted, idx)
                return True
        return False

    def take_delta(self, finished: bool) -> str:
        """Text not yet returned; holds back a possible stop-string prefix while running."""
        end = len(self.text) if finished or not self._stop else max(self._emitted, len(self.text) - self._holdback)
        delta = self.text[self._emitted : end]
        self._emitted = end
        return delta
