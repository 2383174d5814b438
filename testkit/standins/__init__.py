"""Loopback stand-ins for the detection services, for tests and benchmark scripts.

async with BehavioralSignalsStandIn(processing_polls=2) as bs:
    bs.script_result(path_or_bytes_or_sha256, utterance(0, 0.0, 2.0, spoofed=0.97))
    bs.fail_next("status", 500, times=2)
    ...  # point a client at bs.url with bs_standin.API_KEY
    bs.submissions, bs.status_polls, bs.result_fetches, bs.uploaded_sha256s
"""

from testkit.standins._common import Call, Fault, ReceivedFile, StandIn, sha256_of, write_wav
from testkit.standins.behavioral_signals import BehavioralSignalsStandIn, utterance
from testkit.standins.resemble import ResembleStandIn, metrics, video_metrics

__all__ = [
    "BehavioralSignalsStandIn",
    "Call",
    "Fault",
    "ReceivedFile",
    "ResembleStandIn",
    "StandIn",
    "metrics",
    "sha256_of",
    "utterance",
    "video_metrics",
    "write_wav",
]
