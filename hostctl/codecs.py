"""The names of the image codecs and the staging default: what the CLI's options need.

Kept apart from :mod:`hostctl.image_transfer` so that building the command line (and
``--help``) does not import the transfer machinery (SSH, gRPC).
"""

from __future__ import annotations

from enum import StrEnum

__all__ = ["DEFAULT_CODEC", "STAGING_DIR", "CodecName"]

# Disk-backed on Debian (unlike a tmpfs /tmp), so a large image does not sit in memory.
STAGING_DIR = "/var/tmp"  # noqa: S108


class CodecName(StrEnum):
    """The codecs ``image push`` offers."""

    zstd = "zstd"
    gzip = "gzip"


DEFAULT_CODEC = CodecName.zstd
