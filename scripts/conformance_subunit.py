"""Read a subunit v2 stream on stdin (``stestr last --subunit``) and print one JSON object: every test's
id (without its ``[id-…,smoke]`` tags), status (``passed``, ``failed`` or ``skipped``) and, for a skip or a
failure, its reason or the end of its traceback.

Runs with the Python of Tempest's virtualenv (scripts/conformance.py calls it), which has subunit and
testtools; the project's own virtualenv has neither.
"""

from __future__ import annotations

import json
import re
import sys

import subunit
import testtools

STATUS = {"success": "passed", "xfail": "passed", "fail": "failed", "uxsuccess": "failed", "skip": "skipped"}
_TAGS_RE = re.compile(r"\[.*\]$")
TRACEBACK_TAIL = 1500  # characters of a failure's traceback kept: its last lines say what went wrong


def _text(details: dict, name: str) -> str:
    content = details.get(name)
    if content is None:
        return ""
    return b"".join(content.iter_bytes()).decode("utf-8", "replace").strip()


def main() -> int:
    results: dict[str, dict] = {}

    def record(test: dict) -> None:
        status = STATUS.get(test["status"])
        if status is None:  # "exists", "inprogress": not a result
            return
        test_id = _TAGS_RE.sub("", test["id"])
        if test_id.startswith("setUpClass (") or test_id.startswith("tearDownClass ("):
            # A class fixture that failed or skipped: named as its class.
            test_id = test_id.split("(", 1)[1].rstrip(")")
        entry = {"status": status}
        if status == "skipped":
            entry["reason"] = _text(test["details"], "reason")
        elif status == "failed":
            entry["reason"] = _text(test["details"], "traceback")[-TRACEBACK_TAIL:]
        if test["timestamps"][0] and test["timestamps"][1]:
            entry["seconds"] = round((test["timestamps"][1] - test["timestamps"][0]).total_seconds(), 2)
        results[test_id] = entry

    stream = subunit.ByteStreamToStreamResult(sys.stdin.buffer, non_subunit_name="stdout")
    result = testtools.StreamToDict(record)
    result.startTestRun()
    try:
        stream.run(result)
    finally:
        result.stopTestRun()
    json.dump(results, sys.stdout)
    return 0


if __name__ == "__main__":
    sys.exit(main())
