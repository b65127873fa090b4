"""The dead-letter spike counter (pure): a sliding minute per integrator, at most one spike a
minute each, bounded memory, and the message a spike becomes."""

from __future__ import annotations

import itertools
import uuid

import pytest

from services.ingest.dead_letter_spikes import SpikeDetector, spike_alert

T0 = 1_795_000_000.0  # epoch seconds


def feed(detector: SpikeDetector, integrator: str, times: list[float]) -> list[float]:
    """Times at which a spike was reported."""
    spikes = [detector.add(integrator, t, "not_json") for t in times]
    return [s.at for s in spikes if s is not None]


def test_more_than_the_threshold_within_a_minute_is_one_spike() -> None:
    detector = SpikeDetector(5)
    assert feed(detector, "acme", [T0 + i for i in range(5)]) == []  # exactly 5: not more
    assert feed(detector, "acme", [T0 + 5]) == [T0 + 5]
    assert feed(detector, "acme", [T0 + 6 + i for i in range(50)]) == []  # quiet for a minute


def test_the_window_slides_across_minute_boundaries() -> None:
    detector = SpikeDetector(3)
    # Two at the end of one minute, two at the start of the next: four within 60 s.
    assert feed(detector, "acme", [T0 + 58, T0 + 59, T0 + 61, T0 + 62]) == [T0 + 62]
    slow = SpikeDetector(3)
    assert feed(slow, "acme", [T0 + 30 * i for i in range(10)]) == []  # two a minute: no spike


def test_a_flood_that_goes_on_spikes_once_a_minute() -> None:
    detector = SpikeDetector(10)
    times = [T0 + i * 0.1 for i in range(3_000)]  # 10 a second for 5 minutes
    spikes = feed(detector, "acme", times)
    assert len(spikes) == 5
    assert all(b - a >= 60 for a, b in itertools.pairwise(spikes))


def test_integrators_are_counted_apart() -> None:
    detector = SpikeDetector(2)
    assert feed(detector, "acme", [T0, T0 + 1]) == []
    assert feed(detector, "other", [T0 + 2, T0 + 3]) == []
    assert feed(detector, "acme", [T0 + 4]) == [T0 + 4]
    assert feed(detector, "other", [T0 + 5]) == [T0 + 5]


def test_a_spike_counts_its_reasons_and_becomes_a_city_wide_message() -> None:
    detector = SpikeDetector(2)
    detector.add("acme", T0, "not_json")
    detector.add("acme", T0 + 1, "bad_shape")
    spike = detector.add("acme", T0 + 2, "not_json")
    assert spike is not None
    assert (spike.refused, spike.since, spike.threshold) == (3, T0, 2)
    assert spike.reasons == {"not_json": 2, "bad_shape": 1}
    message = spike_alert(spike)
    assert (message.alert, message.integrator, message.district, message.street) == (
        "dead_letter_spike", "acme", None, None
    )  # fmt: skip
    assert message.at.timestamp() == T0 + 2 and message.details["refused"] == 3
    assert spike_alert(spike).id == message.id  # the same spike, the same message
    assert isinstance(message.id, uuid.UUID)


def test_memory_stays_bounded() -> None:
    detector = SpikeDetector(3)
    for i in range(10_000):
        detector.add("acme", T0 + i * 0.001, "not_json")
    assert len(detector._tracks["acme"].recent) == 4  # threshold + 1
    with pytest.raises(ValueError, match="at least 1"):
        SpikeDetector(0)
