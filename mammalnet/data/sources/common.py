"""What every reader shares: reading headers and reporting all bad files at once."""

from __future__ import annotations

from mammalnet.audio.io import AudioError, audio_info


def describe_files(paths, labels, groups=None) -> list[dict]:
    """Reads each file's header into a manifest row.

    Raises:
        AudioError: listing every unreadable file with its reason (not just the first one).
    """
    rows, errors = [], []
    groups = groups if groups is not None else [None] * len(paths)
    for path, label, group in zip(paths, labels, groups):
        try:
            info = audio_info(path)
        except AudioError as err:
            errors.append(err)
            continue
        rows.append({"path": info.path, "label": label, "group": group,
                     "sample_rate_hz": info.sample_rate_hz, "duration_s": info.duration_s})
    if errors:
        listing = "\n".join(f"  {e}" for e in errors[:20])
        more = f"\n  ... and {len(errors) - 20} more" if len(errors) > 20 else ""
        raise AudioError(errors[0].path, f"{len(errors)} unusable audio file(s):\n{listing}{more}")
    return rows
