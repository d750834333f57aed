"""Bounding a file upload while it streams in, before Django spools it to a temporary file."""

from __future__ import annotations

from django.core.files.uploadhandler import FileUploadHandler, StopUpload

# What a multipart form carries besides its file: the other fields, the boundaries, the part headers.
FORM_OVERHEAD = 64 * 1024


class UploadSizeLimit(FileUploadHandler):
    """The first of the request's upload handlers: passes each chunk on to the others (which store it)
    until a file goes over ``limit`` bytes, then stops the upload there. Nothing more of the body is
    read, and the handlers that stored the file so far close (and so delete) what they stored."""

    def __init__(self, request, *, limit: int):
        super().__init__(request)
        self.limit = limit
        self.received = 0
        self.exceeded = False

    def new_file(self, *args, **kwargs):
        super().new_file(*args, **kwargs)
        self.received = 0

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.exceeded = True
            raise StopUpload(connection_reset=True)
        return raw_data

    def file_complete(self, file_size):
        return None  # the next handler makes the file


def body_exceeds(request, limit: int) -> bool:
    """Whether the request announces more than a file of ``limit`` bytes and the form around it."""
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return False  # Django reads nothing of a body whose length it cannot parse
    return length > limit + FORM_OVERHEAD
