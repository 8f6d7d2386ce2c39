"""Learners' data out of InfluxDB: raw or downsampled readings of a device, a learner, a demo session or a cohort,
streamed as CSV or JSON Lines (`hub.exports.stream`), selected as `hub.exports.selection` says."""

from hub.exports.formats import Column
from hub.exports.selection import Aggregate, Selection, Target, parse_every, parse_time, parse_window, targets_of
from hub.exports.stream import columns, pages, rows, write_csv, write_jsonl

__all__ = [
    "Aggregate",
    "Column",
    "Selection",
    "Target",
    "columns",
    "pages",
    "parse_every",
    "parse_time",
    "parse_window",
    "rows",
    "targets_of",
    "write_csv",
    "write_jsonl",
]
