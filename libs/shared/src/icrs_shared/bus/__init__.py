from .base import (
    Bus,
    BusUnavailable,
    ConsumersMissing,
    Handler,
    Parked,
    PublishError,
    Subscription,
    topic_matches,
)
from .memory import InProcessBus
from .rabbit import RabbitBus

__all__ = [
    "Bus",
    "BusUnavailable",
    "ConsumersMissing",
    "Handler",
    "InProcessBus",
    "Parked",
    "PublishError",
    "RabbitBus",
    "Subscription",
    "topic_matches",
]
