"""The compute specs a run can ask for, as DataSphere names them (``c1.4``, ``g1.1``, ...).

A spec is what a launcher enforces (CPUs, memory, GPUs) and what billing charges
for. The figures follow DataSphere's published configurations; a billing unit is
one vCPU-second, so ``unit_price_per_hour`` is the configuration's units per second
times 3600.
"""

from __future__ import annotations

from dataclasses import dataclass

DEFAULT_SPEC = "c1.4"


class UnknownSpec(ValueError):
    """The name is not in the catalog."""


@dataclass(frozen=True)
class Spec:
    name: str
    cpus: int
    memory_gb: int
    gpus: int = 0
    gpu_type: str | None = None
    unit_price_per_hour: int = 0


def _units(per_second: int) -> int:
    return per_second * 3600


_V100 = "NVIDIA Tesla V100"
_A100 = "NVIDIA A100 80GB"

SPECS: dict[str, Spec] = {
    spec.name: spec
    for spec in (
        # name, vCPUs, RAM GB, GPUs, GPU type, units per hour
        Spec("c1.4", 4, 32, 0, None, _units(4)),
        Spec("c1.8", 8, 64, 0, None, _units(8)),
        Spec("c1.32", 32, 256, 0, None, _units(32)),
        Spec("c1.80", 80, 640, 0, None, _units(80)),
        Spec("g1.1", 8, 96, 1, _V100, _units(72)),
        Spec("g1.2", 16, 192, 2, _V100, _units(144)),
        Spec("g1.4", 32, 384, 4, _V100, _units(288)),
        Spec("g2.1", 28, 119, 1, _A100, _units(116)),
        Spec("g2.2", 56, 238, 2, _A100, _units(232)),
        Spec("g2.4", 112, 476, 4, _A100, _units(464)),
        Spec("g2.8", 224, 952, 8, _A100, _units(928)),
    )
}


def resolve_spec(name: str) -> Spec:
    """The spec called ``name``; an empty name means the default, as in the public API."""
    try:
        return SPECS[name or DEFAULT_SPEC]
    except KeyError:
        known = ", ".join(SPECS)
        raise UnknownSpec(f"unknown spec {name!r}; known specs: {known}") from None
