from .base import Bus, BusUnavailable, Handler, Parked, PublishError, Subscription, topic_matches
from .memory import InProcessBus
from .rabbit import RabbitBus

__all__ = [
    "Bus",
    "BusUnavailable",
    "Handler",
    "InProcessBus",
    "Parked",
    "PublishError",
    "RabbitBus",
    "Subscription",
    "topic_matches",
]
