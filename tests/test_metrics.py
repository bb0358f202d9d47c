"""fhirbin.metrics: requests added up in the process expose exactly as one update each."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

from fhirbin.metrics import Metrics

#: (interaction, status, seconds, bytes received, bytes sent): values on bucket bounds, between
#: them, beyond the last one, and zero.
REQUESTS = [
    ("read", 200, 0.0003, 0, 1024),
    ("read", 200, 0.0005, 0, 1024),  # exactly a bound: counted in that bucket ("le")
    ("read", 200, 0.0, 0, 1024),
    ("read", 304, 0.01, 0, 0),
    ("read", 404, 0.0026, 0, 180),
    ("search-type", 200, 0.07, 0, 2000),
    ("search-type", 200, 0.07, 0, 2000),
    ("create", 201, 31.0, 5000, 200),  # beyond the last bound: +Inf
    ("update", 200, 60.0, 1, 0),
]


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = metrics.exposition().decode()
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if not sample.name.endswith("_created")  # when each child was made: differs
    }


def test_added_up_requests_expose_as_one_update_each() -> None:
    added_up = Metrics()
    for request in REQUESTS:
        added_up.request(*request)
    reference = Metrics()
    for interaction, status, seconds, received, sent in REQUESTS:
        reference.requests.labels(interaction, str(status)).inc()
        reference.duration.labels(interaction).observe(seconds)
        if sent:
            reference.sent.labels(interaction).inc(sent)
        if received:
            reference.received.labels(interaction).inc(received)
    expected = samples(reference)
    assert expected[("fhirbin_requests_total", (("interaction", "read"), ("status", "200")))] == 3
    assert samples(added_up) == expected
    # A second round adds to the first (flush hands over only what is new).
    for request in REQUESTS[:3]:
        added_up.request(*request)
    added_up.flush()
    again = samples(added_up)
    assert again[("fhirbin_requests_total", (("interaction", "read"), ("status", "200")))] == 6
    assert again[("fhirbin_sent_bytes_total", (("interaction", "read"),))] == 1024 * 6 + 180
