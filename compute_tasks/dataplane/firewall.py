"""The data plane's two nftables tables (``desired.ruleset``), replaced atomically, restored when changed.

What was applied and what ``nft list`` showed right after are kept; a table that lists differently later
was changed behind the data plane's back (or removed), and is put back and reported as drift. A router's
table in its namespace (``router_state.router_ruleset``) is kept the same way.
"""

from __future__ import annotations

from typing import Any

from compute_tasks.dataplane.commands import Runner
from compute_tasks.dataplane.drift import Fixes

FAMILIES = ("inet", "bridge")


class Firewall:
    def __init__(
        self,
        runner: Runner,
        memory: dict[str, Any],
        table: str,
        *,
        families: tuple[str, ...] = FAMILIES,
        drift_message: str = "the data plane's nftables tables were changed or missing; restored",
    ) -> None:
        self.runner = runner
        self.memory = memory
        self.table = table
        self.families = families
        self.drift_message = drift_message

    def ensure(self, ruleset: str, fix: Fixes) -> None:
        applied = self.memory.get("ruleset", "")
        if not ruleset:
            if applied or self.memory.get("listing"):
                self.runner.run(["nft", "-f", "-"], input=self._drop_tables(), check=False)
                self.memory["ruleset"] = self.memory["listing"] = ""
            return
        if applied == ruleset and self._listing() == self.memory.get("listing"):
            return
        self.runner.run(["nft", "-f", "-"], input=self._drop_tables() + ruleset)
        if applied == ruleset:
            fix.drift.append(self.drift_message)
        self.memory["ruleset"] = ruleset
        self.memory["listing"] = self._listing()

    def _listing(self) -> str:
        return "".join(
            self.runner.run(["nft", "list", "table", family, self.table], check=False) for family in self.families
        )

    def _drop_tables(self) -> str:
        # "table" first: deleting a table that does not exist would fail the whole transaction.
        return "".join(f"table {f} {self.table}\ndelete table {f} {self.table}\n" for f in self.families)
