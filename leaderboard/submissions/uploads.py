"""Streaming upload handling: files go to a temporary file on disk and the upload stops past the limit.

Django's `TemporaryFileUploadHandler` already streams to disk; this one also counts the bytes and
aborts as soon as the files of one request pass settings.SHELFMARK_MAX_UPLOAD_BYTES together (not
each: a request may carry up to DATA_UPLOAD_MAX_NUMBER_FILES files), so an oversized upload never
fills the disk either. The view reads `request.upload_refusal` to say why the file is missing.
"""
from django.conf import settings
from django.core.files.uploadhandler import StopUpload, TemporaryFileUploadHandler
from django.template.defaultfilters import filesizeformat


class SizeLimitedUploadHandler(TemporaryFileUploadHandler):
    def __init__(self, request=None, limit: int | None = None):
        super().__init__(request)
        self.limit = limit if limit is not None else settings.SHELFMARK_MAX_UPLOAD_BYTES
        self.received = 0

    def handle_raw_input(self, input_data, META, content_length, boundary, encoding=None):
        self.request.upload_refusal = None
        # let the multipart parser run, chunk by chunk

    def receive_data_chunk(self, raw_data, start):
        self.received += len(raw_data)
        if self.received > self.limit:
            self.file.close()  # a NamedTemporaryFile: closing deletes it
            self.request.upload_refusal = (
                f"The file is larger than the upload limit of {filesizeformat(self.limit)}."
            )
            # connection_reset=False: the rest of the body is read and discarded, so the form can answer.
            raise StopUpload(connection_reset=False)
        return super().receive_data_chunk(raw_data, start)
