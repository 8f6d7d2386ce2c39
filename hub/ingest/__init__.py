"""The path of a reading: pipeline (decode, validate, encode), durability (spool, fsync, then ack), writer."""
