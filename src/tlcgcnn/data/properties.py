"""Canonical material properties: names, units, aliases and physically valid ranges.

Every source (a local file, Materials Project, OQMD, matbench) maps its
columns onto these canonical names, so the rest of the pipeline never has to know where a
label came from. A label outside its valid range is not trusted: ingest sets it to missing
and lists it in the dropped report with the reason.

The built-in names cover the papers' properties. A user's own property (a measured modulus,
a computed barrier, ...) is declared in the configuration's ``properties:`` section (or by
``tlcgcnn finetune --label``) with its units, valid range and kind; :func:`from_config`
turns such a section into :class:`Property` objects and :func:`register` makes them known
to this process (every workflow script registers its run's properties when it starts:
:func:`tlcgcnn.utils.runtime.script_setup`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any


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

BUILTIN: frozenset[str] = frozenset(PROPERTIES)
ALIASES: dict[str, str] = {}
for _p in PROPERTIES.values():
    ALIASES[_p.name.lower()] = _p.name
    for _a in _p.aliases:
        ALIASES[_a.lower()] = _p.name

NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9_]*$"
SPEC_KEYS = ("unit", "description", "kind", "low", "high", "low_inclusive", "aliases")


class PropertyError(ValueError):
    """A property declaration that cannot be used (the message names it and the reason)."""


def from_spec(name: str, spec: Mapping[str, Any] | None) -> Property:
    """A user's property from its declaration (``properties.<name>`` in the config):
    ``unit`` (text, '' = dimensionless), ``description``, ``kind`` (``float`` for a
    regression label, ``bool`` for a binary class), ``low`` / ``high`` (valid range; a label
    outside it is set to missing and listed), ``low_inclusive`` and ``aliases`` (other column
    names that mean it). A built-in name may be re-declared only with its own settings."""
    spec = dict(spec or {})
    unknown = sorted(set(spec) - set(SPEC_KEYS))
    if unknown:
        raise PropertyError(f"property {name!r}: unknown keys {unknown}; allowed: {list(SPEC_KEYS)}")
    if re.fullmatch(NAME_PATTERN, name) is None:
        raise PropertyError(f"property {name!r}: a name is a letter then letters, digits or _")
    kind = spec.get("kind", "float")
    if kind not in ("float", "bool"):
        raise PropertyError(f"property {name!r}: kind {kind!r} is not float or bool")
    low, high = spec.get("low"), spec.get("high")
    if low is not None and high is not None and float(low) >= float(high):
        raise PropertyError(f"property {name!r}: low {low} is not below high {high}")
    return Property(
        name=name,
        unit=str(spec.get("unit") or ""),
        description=str(spec.get("description") or name),
        kind=kind,
        low=None if low is None else float(low),
        high=None if high is None else float(high),
        low_inclusive=bool(spec.get("low_inclusive", True)),
        aliases=tuple(str(a) for a in spec.get("aliases") or ()),
    )


def from_config(section: Mapping[str, Mapping[str, Any] | None] | None) -> dict[str, Property]:
    """The ``properties:`` section of a configuration as :class:`Property` objects. A
    built-in name is refused (its units and range are fixed; use another name)."""
    out: dict[str, Property] = {}
    for name, spec in (section or {}).items():
        if name in BUILTIN:
            raise PropertyError(
                f"properties.{name}: {name!r} is a built-in property ({PROPERTIES[name].unit or 'dimensionless'}); "
                "declare your own under another name"
            )
        out[name] = from_spec(name, spec)
    return out


def register(props: Mapping[str, Property] | Iterable[Property]) -> None:
    """Make user properties known to this process (their names and aliases map to them). A
    later declaration of the same name replaces the earlier one (a notebook that changes a
    unit); a built-in property, or a column name that already means another property, is
    refused."""
    items = list(props.values() if isinstance(props, Mapping) else props)
    for prop in items:
        if prop.name in BUILTIN and PROPERTIES[prop.name] != prop:
            raise PropertyError(f"property {prop.name!r} is built in; declare your own under another name")
        for key in (prop.name, *prop.aliases):
            owner = ALIASES.get(key.lower())
            if owner is not None and owner != prop.name:
                raise PropertyError(f"property {prop.name!r}: column name {key!r} already means {owner!r}")
    for prop in items:
        old = PROPERTIES.get(prop.name)
        if old is not None and prop.name not in BUILTIN:
            for key in old.aliases:
                ALIASES.pop(key.lower(), None)
        PROPERTIES[prop.name] = prop
        for key in (prop.name, *prop.aliases):
            ALIASES[key.lower()] = prop.name


def spec_of(name: str) -> dict[str, Any]:
    """The declaration of a property as plain values (what a checkpoint stores for a user's
    property, so that a model trained on it reports its units anywhere)."""
    p = get(name)
    return {
        "unit": p.unit,
        "description": p.description,
        "kind": p.kind,
        "low": p.low,
        "high": p.high,
        "low_inclusive": p.low_inclusive,
        "aliases": list(p.aliases),
    }


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


def user_specs(names: Iterable[str]) -> dict[str, dict[str, Any]]:
    """Declarations of the user properties among ``names`` (built-in ones need none): what a
    checkpoint stores so that predictions outside the run report their units."""
    return {n: spec_of(n) for n in dict.fromkeys(names) if n in PROPERTIES and n not in BUILTIN}


def register_specs(specs: Mapping[str, Mapping[str, Any]] | None) -> None:
    """Register declarations stored by :func:`user_specs` (a checkpoint's ``property_specs``);
    a name already declared in this process keeps its declaration."""
    register([from_spec(n, s) for n, s in (specs or {}).items() if n not in PROPERTIES])
