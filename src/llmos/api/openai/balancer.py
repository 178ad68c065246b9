"""Choosing a replica: least outstanding requests, with prefix and adapter affinity.

* **Least outstanding**: the gateway counts the requests it has in flight on
  each replica and prefers the least loaded.
* **Prefix affinity**: requests whose prompts start alike (same hash of the
  first ``prefix_chars`` characters) go back to the replica that served that
  prefix last, where its KV blocks are likely still cached — unless that replica
  has ``affinity_slack`` more requests in flight than the least loaded one.
* **Adapter affinity**: without a prefix match, a request for an adapter goes
  to the replica that served that adapter last (its weights are resident there),
  under the same slack rule.

Thread-safety: used from the event loop only (no locks); counters are plain ints.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass

from llmos.api.openai.replicas import Replica


@dataclass(frozen=True)
class BalancerConfig:
    prefix_chars: int = 256
    affinity_slack: int = 4
    max_prefixes: int = 10_000

    def __post_init__(self) -> None:
        if self.prefix_chars < 1 or self.affinity_slack < 0 or self.max_prefixes < 1:
            raise ValueError("prefix_chars and max_prefixes must be >= 1, affinity_slack >= 0")


class Balancer:
    def __init__(self, config: BalancerConfig | None = None) -> None:
        self.config = config or BalancerConfig()
        self.outstanding: dict[str, int] = {}
        self._prefix_home: OrderedDict[str, str] = OrderedDict()
        self._adapter_home: dict[str, str] = {}

    def prefix_key(self, prompt_text: str) -> str | None:
        """A key for the prompt's leading characters; None for prompts too short to share."""
        if len(prompt_text) < self.config.prefix_chars // 4:
            return None
        head = prompt_text[: self.config.prefix_chars].encode("utf-8", "replace")
        return hashlib.blake2b(head, digest_size=8).hexdigest()

    def choose(self, candidates: Sequence[Replica], model: str, prefix_key: str | None) -> Replica:
        """Pick one of ``candidates`` (non-empty) for a request of ``model``."""
        load = {r.url: self.outstanding.get(r.url, 0) for r in candidates}
        least = min(load.values())
        by_url = {r.url: r for r in candidates}

        def usable(url: str | None) -> bool:
            return url is not None and url in by_url and load[url] <= least + self.config.affinity_slack

        if prefix_key is not None:
            home = self._prefix_home.get(prefix_key)
            if usable(home):
                return by_url[home]  # type: ignore[index]
        home = self._adapter_home.get(model)
        if usable(home):
            return by_url[home]  # type: ignore[index]
        # Ties go to the first by task id, so equal replicas fill in a stable order.
        return min(candidates, key=lambda r: (load[r.url], r.task_id))

    def started(self, replica: Replica, model: str, prefix_key: str | None) -> None:
        self.outstanding[replica.url] = self.outstanding.get(replica.url, 0) + 1
        if model != replica.deployment:
            self._adapter_home[model] = replica.url
        if prefix_key is not None:
            self._prefix_home[prefix_key] = replica.url
            self._prefix_home.move_to_end(prefix_key)
            while len(self._prefix_home) > self.config.max_prefixes:
                self._prefix_home.popitem(last=False)

    def finished(self, replica: Replica) -> None:
        n = self.outstanding.get(replica.url, 0) - 1
        if n > 0:
            self.outstanding[replica.url] = n
        else:
            self.outstanding.pop(replica.url, None)

    def forget(self, replica: Replica) -> None:
        """A replica died: drop its affinities so new requests go elsewhere."""
        for table in (self._prefix_home, self._adapter_home):
            for key in [k for k, v in table.items() if v == replica.url]:
                del table[key]
