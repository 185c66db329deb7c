import pytest

from icrs_shared.bus import topic_matches


@pytest.mark.parametrize(
    ("binding", "key", "expected"),
    [
        ("case.registered", "case.registered", True),
        ("case.registered", "case.updated", False),
        ("case.*", "case.registered", True),
        ("case.*", "case", False),
        ("case.*", "case.a.b", False),
        ("*.registered", "organization.registered", True),
        ("#", "anything.at.all", True),
        ("#", "", True),
        ("case.#", "case", True),
        ("case.#", "case.a.b", True),
        ("#.registered", "case.registered", True),
        ("#.registered", "registered", True),
        ("#.registered", "case.updated", False),
        ("a.#.z", "a.z", True),
        ("a.#.z", "a.b.c.z", True),
        ("a.#.z", "a.b.c", False),
        ("a.*.#", "a", False),
    ],
)
def test_amqp_topic_semantics(binding: str, key: str, expected: bool) -> None:
    assert topic_matches(binding, key) is expected
