"""Canonical material properties: names, units, aliases and physically valid ranges.

Every source (a local file, Materials Project, OQMD, matbench) maps its
columns onto these canonical names, so the rest of the pipeline never has to know where a
label came from. A label outside its valid range is not trusted: ingest sets it to missing
and lists it in the dropped report with the reason.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass(frozen=True)
class Property:
    name: str
    unit: str
    description: str
    kind: str = "float"  # "float" or "bool"
    low: float | None = None  # valid range; None = unbounded
    high: float | None = None
    low_inclusive: bool = True
    aliases: tuple[str, ...] = field(default_factory=tuple)

    def check(self, value: float) -> str | None:
        """Return why ``value`` is physically absurd, or None when it is acceptable."""
        if self.kind == "bool":
            return None
        if not math.isfinite(value):
            return f"{self.name} is not finite ({value})"
        if self.low is not None:
            if value < self.low or (value == self.low and not self.low_inclusive):
                op = ">=" if self.low_inclusive else ">"
                return f"{self.name}={value:g} {self.unit} outside valid range ({op} {self.low:g})"
        if self.high is not None and value > self.high:
            return f"{self.name}={value:g} {self.unit} outside valid range (<= {self.high:g})"
        return None


PROPERTIES: dict[str, Property] = {
    p.name: p
    for p in [
        Property(
            "formation_energy_per_atom",
            "eV/atom",
            "formation energy per atom (ΔEf)",
            low=-10.0,
            high=10.0,
            aliases=("e_form", "delta_e", "formation_energy", "dEf"),
        ),
        Property(
            "energy_above_hull",
            "eV/atom",
            "energy above the convex hull",
            low=0.0,
            high=10.0,
            aliases=("e_above_hull", "stability"),
        ),
        Property(
            "band_gap",
            "eV",
            "PBE band gap (Eg)",
            low=0.0,
            high=30.0,
            aliases=("gap", "gap pbe", "band_gap_pbe"),
        ),
        Property("efermi", "eV", "Fermi energy", low=-50.0, high=50.0, aliases=("e_fermi",)),
        Property("is_metal", "", "metal flag (band gap == 0)", kind="bool"),
        Property(
            "k_vrh",
            "GPa",
            "bulk modulus, Voigt-Reuss-Hill average",
            low=0.0,
            high=1000.0,
            low_inclusive=False,
            aliases=("K_VRH", "bulk_modulus_vrh", "kvrh"),
        ),
        Property(
            "g_vrh",
            "GPa",
            "shear modulus, Voigt-Reuss-Hill average",
            low=0.0,
            high=1000.0,
            low_inclusive=False,
            aliases=("G_VRH", "shear_modulus_vrh", "gvrh"),
        ),
        Property("poisson", "", "Poisson ratio", low=-1.0, high=0.5, aliases=("homogeneous_poisson",)),
        Property("band_gap_hse", "eV", "HSE06 band gap", low=0.0, high=30.0),
        Property("band_gap_gllbsc", "eV", "GLLB-SC band gap", low=0.0, high=30.0),
        Property("band_gap_scan", "eV", "SCAN band gap", low=0.0, high=30.0),
        Property(
            "dielectric_total",
            "",
            "total (electronic + ionic) static dielectric constant εr",
            low=1.0,
            high=1000.0,
            aliases=("diel_total_mp", "e_total", "epsilon_total"),
        ),
        Property(
            "dielectric_electronic",
            "",
            "electronic dielectric constant ε∞",
            low=1.0,
            high=1000.0,
            aliases=("diel_elec_mp", "e_electronic", "epsilon_electronic"),
        ),
        Property(
            "dielectric_total_exp",
            "",
            "experimental dielectric constant",
            low=1.0,
            high=1000.0,
            aliases=("diel_total_exp",),
        ),
        Property("refractive_index", "", "refractive index n", low=1.0, high=20.0),
        Property("volume", "Å^3", "cell volume", low=0.0, low_inclusive=False),
        Property("magmom", "μB", "total magnetic moment per cell", low=-1000.0, high=1000.0),
    ]
}

ALIASES: dict[str, str] = {}
for _p in PROPERTIES.values():
    ALIASES[_p.name.lower()] = _p.name
    for _a in _p.aliases:
        ALIASES[_a.lower()] = _p.name


def canonical_name(column: str) -> str | None:
    """Canonical property name for a source column name, or None if it is not a property."""
    return ALIASES.get(column.strip().lower())


def get(name: str) -> Property:
    try:
        return PROPERTIES[name]
    except KeyError:
        known = ", ".join(sorted(PROPERTIES))
        raise KeyError(f"unknown property {name!r}; known properties: {known}") from None


def units_of(name: str) -> str:
    """Units of a property ('' for a dimensionless or unknown one, e.g. a user's own column)."""
    prop = PROPERTIES.get(name)
    return prop.unit if prop is not None else ""
