"""Media handling: fetch an attachment, find out what it really is, convert it for a provider.

The steps of DESIGN.md's data path, in order:

- `download` streams an attachment to a file under a byte cap and hashes it on the way
  (`hash_file` does the same for a local file);
- `probe` describes the file's container and streams, `classify` decides voice / audio /
  video from that (the content type is only a hint), `check_duration` enforces the length
  limit;
- `transcode_to_wav` makes the 16 kHz mono WAV that speech services accept.

Probing and decoding read untrusted bytes, so they never run in the bot's process: they run
in media worker processes (`MediaWorkers`) with PyAV (FFmpeg's libraries), each request
under a deadline after which its worker is killed and replaced. `Transcoder` holds the
pool and offers both steps (`probe`, `to_wav`); the module-level functions take a pool, or
start a process for the one file. Every refusal is one of `bot.errors`' media errors.
"""

from bot.media._download import Downloaded, download, hash_file
from bot.media._probe import MediaProbe, check_duration, classify, probe, suffix_for
from bot.media._transcode import Transcoder, transcode_to_wav
from bot.media._workers import MediaWorkers

__all__ = [
    "Downloaded",
    "MediaProbe",
    "MediaWorkers",
    "Transcoder",
    "check_duration",
    "classify",
    "download",
    "hash_file",
    "probe",
    "suffix_for",
    "transcode_to_wav",
]
