"""Media handling: fetch an attachment, find out what it really is, convert it for a provider.

The steps of DESIGN.md's data path, in order:

- `download` streams an attachment to a file under a byte cap and hashes it on the way
  (`hash_file` does the same for a local file);
- `probe` asks ffprobe what the bytes are, `classify` decides voice / audio / video from
  that (the content type is only a hint), `check_duration` enforces the length limit;
- `transcode_to_wav` makes the 16 kHz mono WAV that speech services accept; `Transcoder`
  sends voice messages to long-lived Opus decoder processes (`OpusDecoders`) instead.

Every refusal is one of `bot.errors`' media errors. ffmpeg and ffprobe run as
subprocesses through `run_tool`, with a deadline after which they are killed.
"""

from bot.media._download import Downloaded, download, hash_file
from bot.media._opus_pool import OpusDecoders
from bot.media._probe import MediaProbe, check_duration, classify, probe, suffix_for
from bot.media._tools import run_tool
from bot.media._transcode import Transcoder, transcode_to_wav

__all__ = [
    "Downloaded",
    "MediaProbe",
    "OpusDecoders",
    "Transcoder",
    "check_duration",
    "classify",
    "download",
    "hash_file",
    "probe",
    "run_tool",
    "suffix_for",
    "transcode_to_wav",
]
