"""Event handlers of the audit service."""

from icrs_shared.messaging import Consumers

consumers = Consumers()
