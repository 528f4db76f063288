"""Image prune policy (pure): keep every image a container references and the current one."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

__all__ = ["images_to_prune"]


def images_to_prune(tags: Mapping[str, str], referenced: Iterable[str], current: str) -> list[str]:
    """The ``convocate:*`` tags that may be removed.

    Args:
        tags: tag -> image id of the engine's convocate images (``<none>`` skipped).
        referenced: image names and ids used by any container (running or not).
        current: the current-image pointer's tag.

    Returns:
        Sorted tags that no container references (by name or id) and that are not ``current``.
    """
    keep = {r.strip() for r in referenced if r.strip()}
    current = current.strip()
    return sorted(
        tag for tag, image_id in tags.items()
        if tag and "<none>" not in tag and tag != current and tag not in keep and image_id not in keep
    )
