"""How rows are locked for a change."""

from __future__ import annotations

from django.db import models


class ChangeLocking(models.QuerySet):
    def for_change(self) -> ChangeLocking:
        """The rows locked for a change that keeps their key (``FOR NO KEY UPDATE``, as an ``UPDATE`` of
        other columns locks them): changes of one row wait for each other, while rows that refer to it
        (an instance's actions, faults, ports, volumes, migrations; a host's ports) may still be written by
        other transactions, whose foreign-key checks would otherwise wait for the change and may be what it
        waits for."""
        return self.select_for_update(of=("self",), no_key=True)
