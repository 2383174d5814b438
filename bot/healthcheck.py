"""`python -m bot.healthcheck`: exit 0 if the running bot's /healthz says healthy, else 1.

The Docker image's HEALTHCHECK. Standard library only (no curl in the image, and nothing of
the bot's own is imported beyond this package's empty `__init__`), reading the same
environment as the bot: `SPOOFWATCH_METRICS_PORT` and `SPOOFWATCH_METRICS_HOST`.
"""

from __future__ import annotations

import os
import sys
import urllib.error
import urllib.request


def main() -> int:
    port = os.environ.get("SPOOFWATCH_METRICS_PORT", "").strip()
    if not port:
        print("healthcheck: SPOOFWATCH_METRICS_PORT is not set; nothing to ask", file=sys.stderr)
        return 1
    host = os.environ.get("SPOOFWATCH_METRICS_HOST", "").strip() or "127.0.0.1"
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - listening everywhere: ask over loopback
        host = "127.0.0.1"
    if ":" in host:
        host = f"[{host}]"
    url = f"http://{host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=8) as response:
            print(response.read().decode(errors="replace"))
            return 0
    except urllib.error.HTTPError as exc:  # 503: the body names what failed
        print(exc.read().decode(errors="replace"), file=sys.stderr)
    except OSError as exc:
        print(f"healthcheck: {url}: {exc}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
