"""Django's PostgreSQL backend, with timestamps read by psycopg's C loader and a health check with no
round trip for an idle connection."""
