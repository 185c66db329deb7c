"""Event handlers of the intake service."""

from icrs_shared.messaging import Consumers

consumers = Consumers()
