"""The probes a book can hold, by name, in the order the architecture composes them (those
that write first: later ones read what was written). Adding a probe is writing its module
(see probes/base.py) and registering it here with one line."""
from __future__ import annotations

from .base import Forward, Inputs, Probe, Written
from . import ablation, attribution, generation, lens, sampling

PROBES: dict[str, Probe] = {}


def register(probe: Probe) -> None:
    """Make a probe known by its name (a test's, or a plugin's)."""
    if PROBES.get(probe.name, probe) is not probe:
        raise ValueError(f"another probe is registered as {probe.name!r}")
    PROBES[probe.name] = probe


register(generation.PROBE)
register(sampling.PROBE)
register(lens.PROBE)
register(attribution.PROBE)
register(ablation.PROBE)


def options() -> list[Probe]:
    """The probes a book asks for by an option, in the order the metadata records them."""
    return [p for p in PROBES.values() if p.option]


__all__ = ["Forward", "Inputs", "PROBES", "Probe", "Written", "options", "register"]
