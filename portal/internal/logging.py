"""Console tokens must never reach a log: redact them from every record's message and arguments."""

import logging
import re

_TOKEN_IN_PATH = re.compile(r"(/internal/consoleauth/)[^\s\"'?]+")
_TOKEN_PARAM = re.compile(r"(token(?:%3D|=))[^\s&\"']+", re.IGNORECASE)


def redact(text: str) -> str:
    return _TOKEN_PARAM.sub(r"\1***", _TOKEN_IN_PATH.sub(r"\1***", text))


class RedactConsoleTokens(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        # Django's request loggers attach the request; its repr carries the path.
        if hasattr(record, "request"):
            record.request = None
        return True
