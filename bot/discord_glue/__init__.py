"""The Discord boundary: every module of `bot` that imports discord.py lives here.

The client and its start-up and shutdown (`client`, `lifecycle`), what members and moderators
read (`embeds`, `replies`, `opinion_embeds`), how files are found on messages (`attachments`),
Discord's rate limits (`pacing`), permission checks, the invite link, the evidence kept on
mod-log alerts and the second-opinion buttons' flow. The rest of `bot` (scanning, media,
detectors, storage, verdicts, settings) never imports discord; tests/test_meta.py keeps it so.
"""
