"""Webhooks (contract §6): an organization registers a URL and receives the events of
the referrals it provides or requested, signed per the Standard Webhooks specification
and retried with backoff.

`models` only is imported with the service's tables; the rest is imported by the app.
"""
