"""showsay on-device runtime: hearing, seeing, the taught memory and the matching core. Never imports torch."""

__version__ = "0.1.0"
