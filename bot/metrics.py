"""Counters the gateway exposes at `/metrics` (Prometheus text format)."""

from __future__ import annotations

from collections import Counter


class Metrics:
    HELP = {
        "messages_received_total": "Shopper messages accepted, per channel.",
        "messages_duplicate_total": "Shopper messages dropped because their id was already handled.",
        "replies_sent_total": "Bot replies delivered to a channel.",
        "rasa_failures_total": "Rasa calls that failed (unreachable, timeout, 5xx).",
        "store_failures_total": "Calls to the state store (Redis) that failed; the message was kept and retried.",
        "rasa_rejected_total": "Rasa calls refused (4xx or malformed answer).",
        "rasa_requests_total": "Requests sent to each Rasa server (several Rasa servers share the turns).",
        "rasa_refused_total": "Connections a Rasa server refused; the request went to the next one.",
        "rasa_empty_replies_total": "Normal messages Rasa answered with no reply (a crashed action).",
        "holding_replies_total": "Holding notices sent while Rasa was unreachable.",
        "delivery_failures_total": "Replies a channel failed to deliver.",
        "frames_rejected_total": "Client frames or requests refused, per reason.",
        "telegram_rate_limited_total": "Telegram 429 answers; the chat's replies waited retry_after.",
        "telegram_blocked_chats_total": "Telegram chats newly marked as having blocked the bot (403).",
        "telegram_dropped_total": "Telegram replies dropped because the chat blocked the bot.",
        "conversations_total": "Conversations active on a day (shop time zone), counted once across gateways.",
        "handoffs_total": "Conversations handed to a person, per reason.",
        "csat_answers_total": "Satisfaction answers after a resolved handoff, per score (1-5).",
    }
    # Histograms: name -> (help, upper bounds in seconds).
    HISTOGRAMS = {
        "handoff_first_response_seconds": ("Time from a handoff to the agent's first reply.",
                                           (60.0, 300.0, 600.0, 1800.0, 3600.0, 14400.0, 86400.0)),
        "handoff_resolution_seconds": ("Time from a handoff to its resolution.",
                                       (600.0, 1800.0, 3600.0, 14400.0, 28800.0, 86400.0, 259200.0)),
    }

    def __init__(self) -> None:
        self.counters: Counter[tuple[str, tuple[tuple[str, str], ...]]] = Counter()
        self._histograms: dict[str, tuple[list[int], list[float]]] = {
            name: ([0] * len(bounds), [0.0]) for name, (_, bounds) in self.HISTOGRAMS.items()}
        self._counts: Counter[str] = Counter()

    def inc(self, name: str, amount: int = 1, **labels: str) -> None:
        # Called several times per message: no sort for the usual none or one label.
        key = tuple(labels.items()) if len(labels) < 2 else tuple(sorted(labels.items()))
        self.counters[(name, key)] += amount

    def observe(self, name: str, value: float) -> None:
        """One observation of a histogram of HISTOGRAMS."""
        buckets, total = self._histograms[name]
        for i, bound in enumerate(self.HISTOGRAMS[name][1]):
            if value <= bound:
                buckets[i] += 1
        total[0] += value
        self._counts[name] += 1

    def observed(self, name: str) -> int:
        return self._counts[name]

    def value(self, name: str, **labels: str) -> int:
        if labels:
            return self.counters[(name, tuple(sorted(labels.items())))]
        return sum(v for (n, _), v in self.counters.items() if n == name)

    def render(self, gauges: dict[str, float] | None = None) -> str:
        lines: list[str] = []
        for name, help_text in self.HELP.items():
            lines.append(f"# HELP gateway_{name} {help_text}")
            lines.append(f"# TYPE gateway_{name} counter")
            samples = [(lbl, v) for (n, lbl), v in sorted(self.counters.items()) if n == name]
            if not samples:
                lines.append(f"gateway_{name} 0")
            for labels, value in samples:
                label_text = ",".join(f'{k}="{v}"' for k, v in labels)
                lines.append(f"gateway_{name}{{{label_text}}} {value}" if label_text else f"gateway_{name} {value}")
        for name, (help_text, bounds) in self.HISTOGRAMS.items():
            buckets, total = self._histograms[name]
            lines.append(f"# HELP gateway_{name} {help_text}")
            lines.append(f"# TYPE gateway_{name} histogram")
            for bound, count in zip(bounds, buckets, strict=True):
                lines.append(f'gateway_{name}_bucket{{le="{bound:g}"}} {count}')
            lines.append(f'gateway_{name}_bucket{{le="+Inf"}} {self._counts[name]}')
            lines.append(f"gateway_{name}_sum {total[0]:g}")
            lines.append(f"gateway_{name}_count {self._counts[name]}")
        for gauge, reading in (gauges or {}).items():
            lines.append(f"# TYPE gateway_{gauge} gauge")
            lines.append(f"gateway_{gauge} {reading}")
        return "\n".join(lines) + "\n"
