"""Dead-letter spikes (pure): more refused MQTT messages from one integrator within a minute than
`CITYHUB_ALERTS__DEAD_LETTER_SPIKE` is a spike, reported at most once a minute per integrator.

The window slides (the last `WINDOW_S` seconds before each refused message), so a burst that
straddles a minute boundary counts whole. Each integrator keeps at most `threshold + 1` times:
memory stays bounded however hard a misconfigured fleet floods the broker. Time is whatever the
caller passes (epoch seconds), never read here.
"""

from __future__ import annotations

import uuid
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime

from shared.messages import AlertRaisedV1

WINDOW_S = 60.0  # seconds a refused message counts towards a spike
QUIET_S = 60.0  # seconds after a spike before the same integrator can spike again
MAX_TRACKED = 10_000  # integrators tracked before idle ones are forgotten


@dataclass(frozen=True, slots=True)
class Spike:
    """An integrator's refused messages passed the threshold."""

    integrator: str
    at: float  # epoch seconds of the message that passed it
    since: float  # epoch seconds of the oldest message counted
    refused: int  # messages counted (threshold + 1)
    threshold: int
    window_s: float
    reasons: dict[str, int]  # dead-letter reason → how many of the counted messages


@dataclass(slots=True)
class _Track:
    recent: deque[tuple[float, str]] = field(default_factory=deque)  # (time, reason), bounded
    quiet_until: float = float("-inf")


class SpikeDetector:
    """Counts refused messages per integrator over a sliding minute."""

    def __init__(self, threshold: int, *, window_s: float = WINDOW_S, quiet_s: float = QUIET_S):
        if threshold < 1:
            raise ValueError(f"threshold must be at least 1, got {threshold}")
        self.threshold = threshold
        self.window_s = window_s
        self.quiet_s = quiet_s
        self._tracks: dict[str, _Track] = {}

    def add(self, integrator: str, at: float, reason: str) -> Spike | None:
        """Count one refused message; the spike it completes, if any."""
        track = self._tracks.get(integrator)
        if track is None:
            if len(self._tracks) >= MAX_TRACKED:
                self._forget_idle(at)
            track = self._tracks[integrator] = _Track(deque(maxlen=self.threshold + 1))
        recent = track.recent
        recent.append((at, reason))
        while recent and recent[0][0] <= at - self.window_s:
            recent.popleft()
        if len(recent) <= self.threshold or at < track.quiet_until:
            return None
        track.quiet_until = at + self.quiet_s
        reasons = Counter(r for _, r in recent)
        return Spike(
            integrator, at, recent[0][0], len(recent), self.threshold, self.window_s, dict(reasons)
        )

    def _forget_idle(self, now: float) -> None:
        """Drop integrators with nothing in their window and no quiet period running."""
        idle = [
            name
            for name, t in self._tracks.items()
            if (not t.recent or t.recent[-1][0] <= now - self.window_s) and t.quiet_until <= now
        ]
        for name in idle:
            del self._tracks[name]


def spike_alert(spike: Spike) -> AlertRaisedV1:
    """The `alerts.raised` message of a spike. Integrators are city-wide and many refused
    messages name no sensor (or one not registered), so a spike belongs to the whole city."""
    ms = round(spike.at * 1000)
    return AlertRaisedV1(
        id=uuid.uuid5(uuid.NAMESPACE_URL, f"cityhub:dead_letter_spike:{spike.integrator}:{ms}"),
        alert="dead_letter_spike",
        at=datetime.fromtimestamp(spike.at, UTC),
        integrator=spike.integrator,
        details={
            "refused": spike.refused,
            "threshold": spike.threshold,
            "window_s": spike.window_s,
            "since": datetime.fromtimestamp(spike.since, UTC).isoformat(),
            "reasons": spike.reasons,
        },
    )
