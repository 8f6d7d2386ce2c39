"""A ready kit per device: the broker's address, the account, the topics and working firmware for common boards.

`settings` gathers one `KitSettings` per device (the only place that reads the lab's config, its TLS files and
its stored passwords); every artefact is a pure renderer over it (`sheet`, `arduino`, `micropython`, `qr`); the
`writer` lays a device's or a cohort's kit out in a folder, or in a zip for the API.
"""
