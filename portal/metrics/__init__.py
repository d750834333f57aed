"""Prometheus metrics of the control plane (docs/observability.md).

``instruments`` holds what processes count as things happen (API requests, conductor decisions, reaper
actions); ``collectors`` reads what the database and the broker say at scrape time; ``views`` serves both
at ``/metrics`` to a scraper holding the token, or to an admin.
"""
