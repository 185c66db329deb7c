"""Event handlers of the referral service."""

from icrs_shared.messaging import Consumers

consumers = Consumers()
