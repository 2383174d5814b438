"""Spoofwatch's test kit: the Discord emulator, the provider stand-ins, the media factory and
the end-to-end harness, shared by `tests/` and `bench/` (never shipped in the wheel)."""
