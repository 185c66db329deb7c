"""Event handlers of the partners service."""

from icrs_shared.messaging import Consumers

consumers = Consumers()
