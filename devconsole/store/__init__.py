"""Storage and exports (I/O layer): capture files (``capture``), JSON lines and HAR
exports with redaction (``export``, ``redact``). See docs/store.md."""

from devconsole.store.capture import (
    CaptureError,
    CaptureHeader,
    CaptureReader,
    CaptureWriter,
    FileSource,
    read_capture,
    record,
    save_capture,
)
from devconsole.store.export import event_dict, export_capture, export_har, export_jsonl, har_log

__all__ = [
    "CaptureError",
    "CaptureHeader",
    "CaptureReader",
    "CaptureWriter",
    "FileSource",
    "event_dict",
    "export_capture",
    "export_har",
    "export_jsonl",
    "har_log",
    "read_capture",
    "record",
    "save_capture",
]
