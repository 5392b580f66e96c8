"""The embedded default dataset: a physically-informed synthetic ocean of marine mammal calls.

Eleven species' call models (grounded in published call parameters, see calls.py) are
propagated (spherical spreading + Thorp absorption), mixed into Wenz-shaped ocean noise with
snapping shrimp at a drawn in-band SNR, and recorded by per-session recorders at 24–48 kHz.

    from mammalnet.data.synthetic import ensure_ocean
    folder = ensure_ocean()          # cached under $MAMMALNET_CACHE or ~/.cache/mammalnet
    # folder/labels.csv: file, species, group, sample_rate_hz, duration_s, snr_db, ...

Hand-written on numpy/scipy: no maintained library synthesises marine mammal calls, Wenz noise
and propagation together.
"""

from mammalnet.data.synthetic.ocean import (
    SPECIES,
    class_counts,
    ensure_ocean,
    generate_ocean,
    plan_ocean,
    render_clip,
)

__all__ = ["SPECIES", "class_counts", "ensure_ocean", "generate_ocean", "plan_ocean", "render_clip"]
