"""Settings of the service around the controller (systemd watchdog, status lines, stop and request timeouts).

They live below both :mod:`edge.config` (which gathers every subsystem's settings) and
:mod:`edge.service` (which reads the config and runs the daemon), so imports run one way:
service -> config -> service_settings.
"""
from __future__ import annotations

from dataclasses import dataclass

from edge.settings import setting


@dataclass(frozen=True)
class ServiceSettings:
    """How the daemon talks to systemd and how long it may take to stop."""

    watchdog_fraction: float = setting(0.5, "send WATCHDOG=1 every this fraction of systemd's WatchdogSec", min=0.1, max=0.9)
    status_interval_s: float = setting(10.0, "least time between two STATUS= updates, s", min=1.0, max=3600.0)
    stop_timeout_s: float = setting(
        5.0,
        "on SIGTERM the whole stop (controller, devices, socket, memory) may take this long; whatever is still stuck then\n"
        "(a native call that never returns) is left behind and the process exits with status 1 (keep well below TimeoutStopSec), s",
        min=0.5,
        max=60.0,
    )
    request_timeout_s: float = setting(10.0, "a control command waits this long for the controller's reply, s", min=0.5, max=120.0)
