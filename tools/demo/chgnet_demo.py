"""Offline demo dataset: prototype crystals labelled with CHGNet.

The demo shows transfer learning end to end without any download: a *large, cheap* property
(formation energy per atom, ~3,000 crystals) to pretrain on and a *small, expensive* one
(bulk modulus, ~300 crystals) to fine-tune on. Every label is a CHGNet prediction (the
pretrained model that ships inside the ``chgnet`` wheel), **not** a DFT value.

How a crystal is made
---------------------
1. *Recipe* (pure data, cheap): a prototype (elemental bcc/fcc/hcp/diamond, rock salt, CsCl/B2,
   zinc blende, wurtzite, fluorite, antifluorite, rutile, CdI2, cubic perovskite, spinel,
   delafossite, corundum, L1_0, L1_2, full Heusler L2_1, half Heusler C1_b) with one element per
   crystallographic role. Ionic prototypes only take charge-balanced assignments of formal
   oxidation states (cations from fixed pools per charge, anions from groups 15-17); intermetallic
   prototypes take metals. About a third of the crystals are ordered substitutional variants: a
   diagonal supercell of a base crystal (at most 40 sites) in which a random subset of one role's
   sites is replaced by an isovalent partner (ionic) or another metal (intermetallic).
   Everything is drawn from a seeded ``numpy.random.Generator``; ids are ``demo-00001``...
2. *Structure*: ``Structure.from_spacegroup`` -> primitive cell -> supercell -> substitution, then
   the volume is set by pymatgen's ``DLSVolumePredictor`` (starting from a sum of elemental
   volumes, which is also the fallback when the predictor fails). The stored CIF is this
   structure: nothing is relaxed (no CHGNet relaxation fits the 15-minute CPU budget).
3. *Labels*:
   ``formation_energy_per_atom`` = (E_total - sum_i n_i mu_i) / N, with E_total the CHGNet static
   energy of the stored structure (at the predicted volume) and mu_i the CHGNet energy per atom
   of element i in its lowest-energy simple reference: bcc, fcc, hcp, diamond or simple cubic,
   each at its CHGNet equilibrium volume (fixed-shape volume scan, see below), or, for molecular
   elements, a dimer in a 12 Angstrom box at its CHGNet bond length.
   ``k_vrh`` (for a seeded random subset of ~320 crystals) = bulk modulus of the fixed-shape,
   unrelaxed-ion E(V) curve: first the CHGNet equilibrium volume is found by an isotropic scan
   (5 volumes, V x 1.1^k, k=-2..2, re-centred while the lowest point lies at an edge; minimum
   of a cubic polynomial in V^-2/3, i.e. third-order Birch-Murnaghan), then 7 CHGNet energies
   over +-6 % in volume around it are fitted with
   ``pymatgen.analysis.eos.EOS("birch_murnaghan")``. Fits with K outside (0, 500] GPa, an RMS
   residual above 2 meV/atom, or a minimum outside the sampled range (after one re-centred
   retry) are dropped and listed in ``dropped.csv`` (the crystal keeps its formation energy).
   ``is_metal`` comes from chemistry (:func:`metal_flag`):
     * elemental metals, intermetallic prototypes (B2, L1_0, L1_2, full Heusler) and their
       substitutional variants -> metal;
     * diamond-structure C, Si, Ge -> non-metal;
     * half Heusler XYZ -> non-metal iff its valence-electron count is 8 or 18, else metal;
     * charge-balanced ionic compounds (cations + anions from groups 15-17) -> non-metal.

The committed table is regenerated with
``snakemake --cores 2 --config regenerate_demo=True --forcerun demo_dataset -- resources/demo/demo.parquet``
(rule ``demo_dataset``, env ``envs/demo.yaml``). This generator lives outside the ``tlcgcnn``
package because it needs chgnet, which the pipeline itself never imports; see
``tools/demo/README.md``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import math
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from tlcgcnn import io

log = logging.getLogger(__name__)

GENERATOR_VERSION = "1.0.0"
MAX_SITES = 40
NOMINAL_A = 4.0  # Angstrom; only sets the starting cell, the volume is predicted afterwards

# Volume scan (fixed shape): volume factors 1.1**k around the current centre.
SCAN_STEPS = (-2, -1, 0, 1, 2)
SCAN_RATIO = 1.1
SCAN_MAX_ROUNDS = 4
# Equation of state for the bulk modulus.
EOS_POINTS = 7
EOS_STRAIN = 0.06  # +-6 % in volume
EOS_MAX_RMSE = 2e-3  # eV/atom
K_MAX = 500.0  # GPa
# Formation energies outside this window are treated as failed crystals.
EF_RANGE = (-6.0, 4.0)  # eV/atom
MIN_DISTANCE = 1.0  # Angstrom, at the predicted volume
DIMER_BOX = 12.0  # Angstrom
MOLECULAR_ELEMENTS = ("H", "N", "O", "F", "P", "S", "Cl", "As", "Se", "Br", "Te", "I")

METAL_RULE = (
    "elemental metals and intermetallic prototypes (B2, L1_0, L1_2, full Heusler) and their "
    "substitutional variants -> metal; diamond C/Si/Ge -> non-metal; half Heusler -> non-metal "
    "iff valence-electron count is 8 or 18; charge-balanced ionic compounds (cations with "
    "anions of groups 15-17) -> non-metal"
)

# --------------------------------------------------------------------------------------------
# Chemistry pools
# --------------------------------------------------------------------------------------------

CAT1 = ("Li", "Na", "K", "Rb", "Cs", "Cu", "Ag", "Tl")
HALIDES = ("F", "Cl", "Br", "I")
CHALCOGENIDES = ("O", "S", "Se", "Te")
PNICTIDES = ("N", "P", "As")
METALS = (
    "Li", "Na", "K", "Rb", "Cs", "Be", "Mg", "Ca", "Sr", "Ba", "Al", "Ga", "In", "Tl", "Sn",
    "Pb", "Bi", "Sc", "Y", "La", "Ti", "Zr", "Hf", "V", "Nb", "Ta", "Cr", "Mo", "W", "Mn",
    "Re", "Fe", "Ru", "Os", "Co", "Rh", "Ir", "Ni", "Pd", "Pt", "Cu", "Ag", "Au", "Zn", "Cd",
    "Hg",
)  # fmt: skip
HEUSLER_X = ("Mn", "Fe", "Co", "Ni", "Cu", "Ru", "Rh", "Pd", "Ag", "Ir", "Pt", "Au")
HEUSLER_Y = ("Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Y", "Zr", "Nb", "Mo", "Hf", "Ta", "W")
HEUSLER_Z = ("Al", "Ga", "In", "Si", "Ge", "Sn", "Sb")
HALF_HEUSLER_X = ("Li", "Mg", "Sc", "Y", "La", "Ti", "Zr", "Hf", "V", "Nb", "Ta", "Mn")
HALF_HEUSLER_Y = ("Fe", "Co", "Ni", "Ru", "Rh", "Pd", "Ir", "Pt", "Cu", "Ag", "Au")
HALF_HEUSLER_Z = ("Al", "Ga", "In", "Si", "Ge", "Sn", "Pb", "As", "Sb", "Bi")

# Valence electrons used by the half-Heusler counting rule (s + d for transition metals,
# s + p for main-group elements).
VALENCE = {
    "Li": 1, "Mg": 2, "Sc": 3, "Y": 3, "La": 3, "Ti": 4, "Zr": 4, "Hf": 4, "V": 5, "Nb": 5,
    "Ta": 5, "Mn": 7, "Fe": 8, "Ru": 8, "Co": 9, "Rh": 9, "Ir": 9, "Ni": 10, "Pd": 10, "Pt": 10,
    "Cu": 11, "Ag": 11, "Au": 11, "Al": 3, "Ga": 3, "In": 3, "Si": 4, "Ge": 4, "Sn": 4, "Pb": 4,
    "As": 5, "Sb": 5, "Bi": 5,
}  # fmt: skip


@dataclass(frozen=True)
class Pattern:
    """One chemistry of a prototype: the element pool and formal charge of every role."""

    pools: dict[str, tuple[str, ...]]
    charges: dict[str, int] | None = None  # None for intermetallics / elements

    def combos(self) -> Iterable[dict[str, str]]:
        roles = list(self.pools)
        for elems in itertools.product(*(self.pools[r] for r in roles)):
            if len(set(elems)) == len(elems):
                yield dict(zip(roles, elems, strict=True))


@dataclass(frozen=True)
class Prototype:
    """A crystal prototype given as a space group and Wyckoff positions of its roles."""

    name: str
    spacegroup: str
    lattice: tuple[str, float]  # ("cubic" | "hexagonal" | "tetragonal", c/a)
    sites: tuple[tuple[str, tuple[float, float, float]], ...]  # (role, frac coords)
    chemistry: str  # "element" | "ionic" | "intermetallic"
    patterns: tuple[Pattern, ...]
    quota: float  # fraction of n_crystals drawn from this prototype (capped by availability)
    primitive: bool = True


def _p(pools: dict[str, tuple[str, ...]], charges: dict[str, int] | None = None) -> Pattern:
    return Pattern(pools=pools, charges=charges)


ELEMENT_METALS = tuple(m for m in METALS)
PROTOTYPES: tuple[Prototype, ...] = (
    Prototype("bcc", "Im-3m", ("cubic", 1.0), (("A", (0, 0, 0)),), "element", (_p({"A": ELEMENT_METALS}),), 1.0),
    Prototype("fcc", "Fm-3m", ("cubic", 1.0), (("A", (0, 0, 0)),), "element", (_p({"A": ELEMENT_METALS}),), 1.0),
    Prototype(
        "hcp", "P6_3/mmc", ("hexagonal", 1.633), (("A", (1 / 3, 2 / 3, 0.25)),), "element",
        (_p({"A": ELEMENT_METALS}),), 1.0,
    ),
    Prototype("diamond", "Fd-3m", ("cubic", 1.0), (("A", (0, 0, 0)),), "element", (_p({"A": ("C", "Si", "Ge")}),), 1.0),
    Prototype(
        "rocksalt", "Fm-3m", ("cubic", 1.0), (("A", (0, 0, 0)), ("X", (0.5, 0.5, 0.5))), "ionic",
        (
            _p({"A": CAT1, "X": HALIDES}, {"A": 1, "X": -1}),
            _p({"A": ("Mg", "Ca", "Sr", "Ba", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Cd", "Sn", "Pb"),
                "X": CHALCOGENIDES}, {"A": 2, "X": -2}),
            _p({"A": ("Sc", "Y", "La", "Al", "Ga", "In", "Ti", "V", "Cr", "Ce"), "X": PNICTIDES},
               {"A": 3, "X": -3}),
        ),
        0.04,
    ),
    Prototype(
        "CsCl", "Pm-3m", ("cubic", 1.0), (("A", (0, 0, 0)), ("X", (0.5, 0.5, 0.5))), "ionic",
        (_p({"A": ("K", "Rb", "Cs", "Tl"), "X": HALIDES}, {"A": 1, "X": -1}),), 0.006,
    ),
    Prototype(
        "zincblende", "F-43m", ("cubic", 1.0), (("A", (0, 0, 0)), ("X", (0.25, 0.25, 0.25))), "ionic",
        (
            _p({"A": ("Cu", "Ag"), "X": HALIDES}, {"A": 1, "X": -1}),
            _p({"A": ("Be", "Mg", "Mn", "Zn", "Cd", "Hg"), "X": CHALCOGENIDES}, {"A": 2, "X": -2}),
            _p({"A": ("B", "Al", "Ga", "In"), "X": (*PNICTIDES, "Sb")}, {"A": 3, "X": -3}),
        ),
        0.016,
    ),
    Prototype(
        "wurtzite", "P6_3mc", ("hexagonal", 1.633), (("A", (1 / 3, 2 / 3, 0.0)), ("X", (1 / 3, 2 / 3, 0.375))),
        "ionic",
        (
            _p({"A": ("Cu", "Ag"), "X": HALIDES}, {"A": 1, "X": -1}),
            _p({"A": ("Be", "Mg", "Mn", "Zn", "Cd", "Hg"), "X": CHALCOGENIDES}, {"A": 2, "X": -2}),
            _p({"A": ("B", "Al", "Ga", "In"), "X": (*PNICTIDES, "Sb")}, {"A": 3, "X": -3}),
        ),
        0.016,
    ),
    Prototype(
        "fluorite", "Fm-3m", ("cubic", 1.0), (("A", (0, 0, 0)), ("X", (0.25, 0.25, 0.25))), "ionic",
        (
            _p({"A": ("Ca", "Sr", "Ba", "Cd", "Hg", "Pb"), "X": ("F", "Cl")}, {"A": 2, "X": -1}),
            _p({"A": ("Ti", "Zr", "Hf", "Ce", "Ge", "Sn", "Pb", "Mn", "Mo", "Ru"), "X": ("O", "S", "Se")},
               {"A": 4, "X": -2}),
        ),
        0.014,
    ),
    Prototype(
        "antifluorite", "Fm-3m", ("cubic", 1.0), (("X", (0, 0, 0)), ("A", (0.25, 0.25, 0.25))), "ionic",
        (_p({"A": ("Li", "Na", "K", "Rb", "Cs", "Cu", "Ag"), "X": CHALCOGENIDES}, {"A": 1, "X": -2}),),
        0.01,
    ),
    Prototype(
        "rutile", "P4_2/mnm", ("tetragonal", 0.644), (("A", (0, 0, 0)), ("X", (0.305, 0.305, 0.0))), "ionic",
        (
            _p({"A": ("Ti", "V", "Cr", "Mn", "Ge", "Sn", "Pb", "Zr", "Hf", "Nb", "Mo", "W", "Ru", "Os",
                      "Ir", "Pt"), "X": ("O",)}, {"A": 4, "X": -2}),
            _p({"A": ("Mg", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Pd", "Cd"), "X": ("F", "Cl")},
               {"A": 2, "X": -1}),
        ),
        0.011,
    ),
    Prototype(
        "CdI2", "P-3m1", ("hexagonal", 1.6), (("A", (0, 0, 0)), ("X", (1 / 3, 2 / 3, 0.25))), "ionic",
        (
            _p({"A": ("Mg", "Ca", "Mn", "Fe", "Co", "Ni", "Zn", "Cd", "Pb", "Hg"), "X": ("Cl", "Br", "I")},
               {"A": 2, "X": -1}),
            _p({"A": ("Ti", "Zr", "Hf", "Sn", "Pt", "V", "Nb", "Mo"), "X": ("S", "Se", "Te")},
               {"A": 4, "X": -2}),
        ),
        0.017,
    ),
    Prototype(
        "perovskite", "Pm-3m", ("cubic", 1.0),
        (("B", (0, 0, 0)), ("A", (0.5, 0.5, 0.5)), ("X", (0.5, 0.0, 0.0))), "ionic",
        (
            _p({"A": ("Na", "K", "Rb", "Cs", "Tl"),
                "B": ("Mg", "Ca", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Cd", "Sn", "Pb", "Hg"),
                "X": HALIDES}, {"A": 1, "B": 2, "X": -1}),
            _p({"A": ("Li", "Na", "K", "Rb", "Cs"), "B": ("V", "Nb", "Ta", "Sb"), "X": ("O",)},
               {"A": 1, "B": 5, "X": -2}),
            _p({"A": ("Ca", "Sr", "Ba", "Pb", "Cd"),
                "B": ("Ti", "Zr", "Hf", "Sn", "Ge", "Mn", "V", "Mo", "Ru", "Ir", "Ce", "Pt"), "X": ("O",)},
               {"A": 2, "B": 4, "X": -2}),
            _p({"A": ("La", "Y", "Bi"), "B": ("Al", "Ga", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "In"),
                "X": ("O",)}, {"A": 3, "B": 3, "X": -2}),
        ),
        0.08,
    ),
    Prototype(
        "spinel", "Fd-3m", ("cubic", 1.0),
        (("A", (0, 0, 0)), ("B", (0.625, 0.625, 0.625)), ("X", (0.387, 0.387, 0.387))), "ionic",
        (
            _p({"A": ("Mg", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Cd"),
                "B": ("Al", "Ga", "In", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Rh"), "X": ("O", "S", "Se")},
               {"A": 2, "B": 3, "X": -2}),
            _p({"A": ("Si", "Ge", "Sn", "Ti", "V", "Mn"), "B": ("Mg", "Mn", "Fe", "Co", "Ni", "Zn", "Cd"),
                "X": ("O",)}, {"A": 4, "B": 2, "X": -2}),
        ),
        0.06,
    ),
    Prototype(
        "delafossite", "R-3m", ("hexagonal", 5.91),
        (("A", (0, 0, 0)), ("B", (0, 0, 0.5)), ("X", (0, 0, 0.1096))), "ionic",
        (_p({"A": ("Cu", "Ag"), "B": ("Al", "Ga", "In", "Sc", "Y", "La", "Cr", "Fe", "Co", "Rh", "Mn", "V"),
             "X": ("O", "S")}, {"A": 1, "B": 3, "X": -2}),),
        0.016,
    ),
    Prototype(
        "corundum", "R-3c", ("hexagonal", 2.73), (("A", (0, 0, 0.3523)), ("X", (0.3064, 0.0, 0.25))), "ionic",
        (_p({"A": ("Al", "Ga", "In", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Rh", "Y"), "X": ("O",)},
            {"A": 3, "X": -2}),),
        0.004,
    ),
    Prototype(
        "B2", "Pm-3m", ("cubic", 1.0), (("A", (0, 0, 0)), ("B", (0.5, 0.5, 0.5))), "intermetallic",
        (_p({"A": METALS, "B": METALS}),), 0.05,
    ),
    Prototype(
        "L1_0", "P4/mmm", ("tetragonal", math.sqrt(2.0)), (("A", (0, 0, 0)), ("B", (0.5, 0.5, 0.5))),
        "intermetallic", (_p({"A": METALS, "B": METALS}),), 0.04,
    ),
    Prototype(
        "L1_2", "Pm-3m", ("cubic", 1.0), (("A", (0.0, 0.5, 0.5)), ("B", (0, 0, 0))), "intermetallic",
        (_p({"A": METALS, "B": METALS}),), 0.06,
    ),
    Prototype(
        "heusler", "Fm-3m", ("cubic", 1.0),
        (("X", (0.25, 0.25, 0.25)), ("Y", (0.5, 0.5, 0.5)), ("Z", (0, 0, 0))), "intermetallic",
        (_p({"X": HEUSLER_X, "Y": HEUSLER_Y, "Z": HEUSLER_Z}),), 0.08,
    ),
    Prototype(
        "half_heusler", "F-43m", ("cubic", 1.0),
        (("X", (0.5, 0.5, 0.5)), ("Y", (0.25, 0.25, 0.25)), ("Z", (0, 0, 0))), "intermetallic",
        (_p({"X": HALF_HEUSLER_X, "Y": HALF_HEUSLER_Y, "Z": HALF_HEUSLER_Z}),), 0.06,
    ),
)  # fmt: skip
PROTOTYPE_BY_NAME = {p.name: p for p in PROTOTYPES}
# Supercells for ordered substitutional variants.
SUPERCELLS = ((2, 1, 1), (1, 1, 2), (2, 2, 1), (2, 2, 2), (3, 1, 1), (1, 1, 3), (3, 2, 1), (2, 2, 3))


# --------------------------------------------------------------------------------------------
# Recipes (cheap, pure data)
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Substitution:
    """Replace ``sites`` (indices into the role's sites of the supercell) of ``role`` by ``partner``."""

    role: str
    partner: str
    sites: tuple[int, ...]
    supercell: tuple[int, int, int]


@dataclass(frozen=True)
class Recipe:
    """Everything needed to build one crystal deterministically."""

    material_id: str
    prototype: str
    roles: tuple[tuple[str, str], ...]  # (role, element)
    charges: tuple[tuple[str, int], ...] | None  # (role, formal charge) for ionic crystals
    substitution: Substitution | None = None

    @property
    def role_map(self) -> dict[str, str]:
        return dict(self.roles)

    @property
    def chemistry(self) -> str:
        return PROTOTYPE_BY_NAME[self.prototype].chemistry

    def variant_label(self) -> str:
        s = self.substitution
        if s is None:
            return ""
        cell = "x".join(map(str, s.supercell))
        return f"{cell} {self.role_map[s.role]}->{s.partner} ({len(s.sites)} sites)"


def _candidates(proto: Prototype) -> list[tuple[dict[str, str], dict[str, int] | None]]:
    """All (role -> element, role -> charge) assignments of a prototype, in a fixed order."""
    out: list[tuple[dict[str, str], dict[str, int] | None]] = []
    seen: set[tuple[tuple[str, str], ...]] = set()
    for pattern in proto.patterns:
        for combo in pattern.combos():
            key = tuple(sorted(combo.items()))
            if proto.name in ("B2", "L1_0") and tuple(sorted(combo.values())) != (combo["A"], combo["B"]):
                continue  # AB and BA are the same crystal
            if key not in seen:
                seen.add(key)
                out.append((combo, pattern.charges))
    return out


def _base_recipes(n_crystals: int, rng: np.random.Generator) -> list[tuple[str, dict[str, str], dict[str, int] | None]]:
    """Draw the plain (non-variant) crystals of every prototype according to its quota."""
    chosen: list[tuple[str, dict[str, str], dict[str, int] | None]] = []
    for proto in PROTOTYPES:
        cands = _candidates(proto)
        n_take = len(cands) if proto.chemistry == "element" else min(len(cands), round(proto.quota * n_crystals))
        idx = np.sort(rng.permutation(len(cands))[:n_take])
        chosen.extend((proto.name, cands[i][0], cands[i][1]) for i in idx)
    return chosen


def role_counts(prototype: str) -> dict[str, int]:
    """Number of sites of each role in the primitive cell of ``prototype``."""
    _, site_roles = _template(prototype)
    return {role: site_roles.count(role) for role in dict.fromkeys(site_roles)}


def _partner_pool(proto: Prototype, role: str, roles: dict[str, str], charges: dict[str, int] | None) -> list[str]:
    """Elements that may replace ``role`` without changing charge balance or the metal rule."""
    current = set(roles.values())
    if proto.chemistry == "ionic":
        assert charges is not None
        pool: set[str] = set()
        for pattern in proto.patterns:
            if pattern.charges == charges:
                pool.update(pattern.pools[role])
    elif proto.name == "diamond":
        pool = {"C", "Si", "Ge"}
    elif proto.name == "half_heusler":
        pool = {e for e in VALENCE if VALENCE[e] == VALENCE[roles[role]]}  # isoelectronic: same VEC
    else:
        pool = set(METALS)
    return sorted(pool - current)


def _draw_variant(
    base: tuple[str, dict[str, str], dict[str, int] | None], rng: np.random.Generator
) -> Substitution | None:
    """A random ordered substitution of one role of ``base`` in a supercell, or None if impossible."""
    name, roles, charges = base
    proto = PROTOTYPE_BY_NAME[name]
    sub_roles = [r for r in roles if charges is None or charges[r] > 0]  # ionic: cations only
    role = sub_roles[int(rng.integers(len(sub_roles)))]
    partners = _partner_pool(proto, role, roles, charges)
    counts = role_counts(name)
    natoms = sum(counts.values())
    cells = [c for c in SUPERCELLS if natoms * math.prod(c) <= MAX_SITES and counts[role] * math.prod(c) >= 2]
    if not partners or not cells:
        return None
    cell = cells[int(rng.integers(len(cells)))]
    m = counts[role] * math.prod(cell)
    k = int(rng.integers(1, m))
    sites = tuple(sorted(int(i) for i in rng.choice(m, size=k, replace=False)))
    partner = partners[int(rng.integers(len(partners)))]
    return Substitution(role=role, partner=partner, sites=sites, supercell=cell)


def make_recipes(n_crystals: int, seed: int) -> list[Recipe]:
    """The deterministic list of ``n_crystals`` crystal recipes for ``seed``.

    Plain prototype crystals come first (in prototype order), then substitutional variants of
    randomly chosen plain crystals until ``n_crystals`` is reached.
    """
    rng = np.random.default_rng([seed, 0])
    base = _base_recipes(n_crystals, rng)[:n_crystals]
    entries: list[tuple[tuple[str, dict[str, str], dict[str, int] | None], Substitution | None]] = [
        (b, None) for b in base
    ]
    seen: set[tuple[Any, ...]] = set()
    attempts = 0
    while len(entries) < n_crystals:
        attempts += 1
        if attempts > 50 * n_crystals:
            raise RuntimeError(f"could not draw {n_crystals} distinct crystals")
        b = base[int(rng.integers(len(base)))]
        sub = _draw_variant(b, rng)
        if sub is None:
            continue
        key = (b[0], tuple(sorted(b[1].items())), sub)
        if key in seen:
            continue
        seen.add(key)
        entries.append((b, sub))
    recipes = []
    for i, ((name, roles, charges), sub) in enumerate(entries, start=1):
        recipes.append(
            Recipe(
                material_id=f"demo-{i:05d}",
                prototype=name,
                roles=tuple(roles.items()),
                charges=tuple(charges.items()) if charges is not None else None,
                substitution=sub,
            )
        )
    return recipes


def choose_bulk(recipes: Sequence[Recipe], n_bulk: int, seed: int) -> set[str]:
    """Material ids that get a bulk-modulus EOS (a seeded random subset, independent of labels)."""
    rng = np.random.default_rng([seed, 1])
    idx = rng.choice(len(recipes), size=min(n_bulk, len(recipes)), replace=False)
    return {recipes[int(i)].material_id for i in idx}


# --------------------------------------------------------------------------------------------
# Chemistry rules
# --------------------------------------------------------------------------------------------


def metal_flag(recipe: Recipe) -> bool:
    """Metal / non-metal from chemistry (see the module docstring for the rule)."""
    proto = PROTOTYPE_BY_NAME[recipe.prototype]
    if proto.chemistry == "ionic":
        return False
    if proto.name == "diamond":
        return False
    if proto.name == "half_heusler":
        vec = sum(VALENCE[e] for _, e in recipe.roles)
        return vec not in (8, 18)
    return True


def oxidation_states(recipe: Recipe) -> dict[str, int]:
    """Formal oxidation state of every element of an ionic crystal (empty for intermetallics)."""
    if recipe.charges is None:
        return {}
    charges = dict(recipe.charges)
    states = {el: charges[role] for role, el in recipe.roles}
    if recipe.substitution is not None:
        states[recipe.substitution.partner] = charges[recipe.substitution.role]
    return states


# --------------------------------------------------------------------------------------------
# Structures
# --------------------------------------------------------------------------------------------


def _lattice(kind: str, c_over_a: float, a: float = NOMINAL_A) -> Any:
    from pymatgen.core import Lattice

    if kind == "cubic":
        return Lattice.cubic(a)
    if kind == "hexagonal":
        return Lattice.hexagonal(a, a * c_over_a)
    if kind == "tetragonal":
        return Lattice.tetragonal(a, a * c_over_a)
    raise ValueError(f"unknown lattice kind {kind!r}")


@functools.cache
def _template(prototype: str) -> tuple[Any, tuple[str, ...]]:
    """Primitive cell of ``prototype`` with placeholder species, and the role of each site.

    Building a space group in pymatgen is slow (seconds), so it is done once per prototype.
    """
    from pymatgen.core import Structure

    proto = PROTOTYPE_BY_NAME[prototype]
    placeholders = ("Li", "Be", "B", "C")
    role_of = {role: placeholders[i] for i, role in enumerate(dict.fromkeys(r for r, _ in proto.sites))}
    species = [role_of[r] for r, _ in proto.sites]
    coords = [list(c) for _, c in proto.sites]
    structure = Structure.from_spacegroup(proto.spacegroup, _lattice(*proto.lattice), species, coords)
    if proto.primitive:
        structure = structure.get_primitive_structure()
    element_role = {el: role for role, el in role_of.items()}
    return structure, tuple(element_role[site.specie.symbol] for site in structure)


def _prototype_structure(proto: Prototype, roles: dict[str, str]) -> Any:
    """The (primitive) cell of ``proto`` with ``roles`` filled in, at the nominal lattice constant."""
    from pymatgen.core import Structure

    template, site_roles = _template(proto.name)
    return Structure(template.lattice, [roles[r] for r in site_roles], template.frac_coords)


def _substitute(structure: Any, element: str, sub: Substitution) -> Any:
    structure = structure.copy()
    structure.make_supercell(list(sub.supercell))
    role_sites = [i for i, site in enumerate(structure) if site.specie.symbol == element]
    for k in sub.sites:
        structure.replace(role_sites[k], sub.partner)
    return structure


def elemental_volume(symbol: str) -> float:
    """Volume per atom (Angstrom^3) of an element from its molar volume (atomic radius fallback)."""
    from pymatgen.core import Element

    el = Element(symbol)
    if el.molar_volume is not None:
        return float(el.molar_volume) * 1e24 / 6.02214076e23
    r = float(el.atomic_radius or 1.5)
    return 4.0 / 3.0 * math.pi * r**3 / 0.68


@functools.cache
def _volume_predictor() -> Any:
    from pymatgen.analysis.structure_prediction.volume_predictor import DLSVolumePredictor

    return DLSVolumePredictor()


def predict_volume(structure: Any) -> tuple[float, str]:
    """Cell volume from DLSVolumePredictor, or the sum of elemental volumes if it fails."""
    guess = sum(elemental_volume(site.specie.symbol) for site in structure)
    s = structure.copy()
    s.scale_lattice(guess)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            volume = float(_volume_predictor().predict(s))
        if not math.isfinite(volume) or volume <= 0:
            raise ValueError(f"predicted volume {volume}")
        return volume, "DLSVolumePredictor"
    except Exception as exc:  # noqa: BLE001 - any predictor failure falls back
        log.debug("volume predictor failed for %s: %s", structure.composition.reduced_formula, exc)
        return guess, "sum_of_elemental_volumes"


def build_structure(recipe: Recipe) -> tuple[Any, str]:
    """The crystal of ``recipe`` at its predicted volume, and which volume method was used."""
    proto = PROTOTYPE_BY_NAME[recipe.prototype]
    roles = recipe.role_map
    structure = _prototype_structure(proto, roles)
    if recipe.substitution is not None:
        structure = _substitute(structure, roles[recipe.substitution.role], recipe.substitution)
    volume, method = predict_volume(structure)
    structure.scale_lattice(volume)
    return structure, method


def min_distance(structure: Any) -> float:
    """Shortest interatomic distance (periodic images included) in Angstrom."""
    if len(structure) == 1:
        return float(min(structure.lattice.abc))
    d = structure.distance_matrix.copy()
    np.fill_diagonal(d, np.inf)
    return float(min(d.min(), *structure.lattice.abc))


# --------------------------------------------------------------------------------------------
# CHGNet
# --------------------------------------------------------------------------------------------


@functools.cache
def load_chgnet() -> Any:
    """The pretrained CHGNet model shipped inside the ``chgnet`` wheel (CPU)."""
    from chgnet.model import CHGNet

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return CHGNet.load(use_device="cpu", verbose=False)


def chgnet_versions() -> dict[str, str]:
    import chgnet
    import pymatgen.core
    import torch

    model = load_chgnet()
    return {
        "chgnet": str(chgnet.__version__),
        "chgnet_model": str(getattr(model, "version", "unknown")),
        "torch": str(torch.__version__),
        "pymatgen": str(pymatgen.core.__version__),
    }


def energies_per_atom(
    structures: Sequence[Any], batch_size: int = 32, desc: str = "CHGNet", chunk: int = 512
) -> np.ndarray:
    """CHGNet static energies per atom (eV/atom), NaN where CHGNet fails on a structure."""
    from tqdm.auto import tqdm

    model = load_chgnet()
    out = np.full(len(structures), np.nan)
    with tqdm(total=len(structures), desc=desc, unit="cell", mininterval=5.0) as bar:
        for start in range(0, len(structures), chunk):
            part = list(structures[start : start + chunk])
            out[start : start + len(part)] = _predict_chunk(model, part, batch_size)
            bar.update(len(part))
    return out


def _predict_chunk(model: Any, structures: list[Any], batch_size: int) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            preds = model.predict_structure(structures, task="e", batch_size=batch_size)
            return np.array([float(p["e"]) for p in preds])
        except Exception as exc:  # noqa: BLE001 - retry one by one to isolate the culprit
            log.warning("batch prediction failed (%s); retrying %d structures one by one", exc, len(structures))
    energies = np.full(len(structures), np.nan)
    for i, s in enumerate(structures):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                energies[i] = float(model.predict_structure(s, task="e")["e"])
            except Exception as exc:  # noqa: BLE001
                log.warning("CHGNet failed on %s: %s", s.composition.reduced_formula, exc)
    return energies


def _scaled(structure: Any, volume: float) -> Any:
    s = structure.copy()
    s.scale_lattice(volume)
    return s


def _bm_poly_minimum(volumes: np.ndarray, energies: np.ndarray) -> tuple[float, float] | None:
    """Minimum (V, E) of a cubic polynomial in V^(-2/3) (third-order Birch-Murnaghan) fit."""
    x = volumes ** (-2.0 / 3.0)
    coef = np.polyfit(x, energies, 3)
    roots = np.roots(np.polyder(coef))
    lo, hi = x.min(), x.max()
    best: tuple[float, float] | None = None
    for r in roots:
        if abs(r.imag) > 1e-12 or not lo <= r.real <= hi:
            continue
        if np.polyval(np.polyder(coef, 2), r.real) <= 0:
            continue
        e = float(np.polyval(coef, r.real))
        if best is None or e < best[1]:
            best = (float(r.real ** (-1.5)), e)
    return best


def equilibrium_volumes(
    structures: Sequence[Any], batch_size: int, label: str = "crystals"
) -> list[float | None]:
    """Volume of minimum CHGNet energy for each structure (fixed shape), None if not bracketed.

    All structures are scanned together (batched); structures whose lowest energy lies at the
    edge of the scan are re-scanned around that edge, up to ``SCAN_MAX_ROUNDS`` rounds.
    """
    centres = [float(s.volume) for s in structures]
    result: list[float | None] = [None] * len(structures)
    todo = list(range(len(structures)))
    factors = np.array([SCAN_RATIO**k for k in SCAN_STEPS])
    for rnd in range(1, SCAN_MAX_ROUNDS + 1):
        if not todo:
            break
        cells = [_scaled(structures[i], centres[i] * f) for i in todo for f in factors]
        e = energies_per_atom(cells, batch_size, desc=f"volume scan {label} (round {rnd})").reshape(len(todo), -1)
        nxt = []
        for row, i in zip(e, todo, strict=True):
            if not np.all(np.isfinite(row)):
                continue
            vols = centres[i] * factors
            j = int(np.argmin(row))
            if j in (0, len(factors) - 1):
                centres[i] = float(vols[j])
                nxt.append(i)
                continue
            fit = _bm_poly_minimum(vols, row)
            result[i] = fit[0] if fit is not None else float(vols[j])
        todo = nxt
    return result


# --------------------------------------------------------------------------------------------
# Elemental references
# --------------------------------------------------------------------------------------------


def reference_candidates(symbol: str) -> dict[str, Any]:
    """Simple elemental structures of ``symbol`` (bcc, fcc, hcp, diamond, sc; dimer if molecular)."""
    from pymatgen.core import Lattice, Structure

    vol = elemental_volume(symbol)
    cands: dict[str, Any] = {}
    for name in ("bcc", "fcc", "hcp", "diamond"):
        s = _prototype_structure(PROTOTYPE_BY_NAME[name], {"A": symbol})
        s.scale_lattice(vol * len(s))
        cands[name] = s
    cands["sc"] = Structure(Lattice.cubic(vol ** (1 / 3)), [symbol], [[0, 0, 0]])
    return cands


def _dimer(symbol: str, bond: float) -> Any:
    from pymatgen.core import Lattice, Structure

    return Structure(Lattice.cubic(DIMER_BOX), [symbol, symbol], [[0, 0, 0], [bond / DIMER_BOX, 0, 0]], coords_are_cartesian=False)


def dimer_energies(symbols: Sequence[str], batch_size: int) -> dict[str, tuple[float, float]]:
    """(energy per atom, bond length) of the lowest-energy dimer of each element (2-stage bond scan)."""
    out: dict[str, tuple[float, float]] = {}
    coarse = np.linspace(0.8, 3.0, 23)
    structs = [_dimer(s, b) for s in symbols for b in coarse]
    e = energies_per_atom(structs, batch_size, desc="dimer scan").reshape(len(symbols), -1)
    fine_grid = []
    for row in e:
        j = int(np.nanargmin(row))
        fine_grid.append(np.linspace(coarse[max(j - 1, 0)], coarse[min(j + 1, len(coarse) - 1)], 11))
    structs = [_dimer(s, b) for s, grid in zip(symbols, fine_grid, strict=True) for b in grid]
    e2 = energies_per_atom(structs, batch_size, desc="dimer refine").reshape(len(symbols), -1)
    for s, grid, row in zip(symbols, fine_grid, e2, strict=True):
        j = int(np.nanargmin(row))
        out[s] = (float(row[j]), float(grid[j]))
    return out


def elemental_references(symbols: Iterable[str], batch_size: int) -> dict[str, dict[str, Any]]:
    """CHGNet chemical potentials mu_i: lowest energy per atom over the simple candidates."""
    symbols = sorted(set(symbols))
    entries: list[tuple[str, str, Any]] = [
        (sym, name, s) for sym in symbols for name, s in reference_candidates(sym).items()
    ]
    vols = equilibrium_volumes([s for _, _, s in entries], batch_size, label="references")
    ok = [(sym, name, _scaled(s, v)) for (sym, name, s), v in zip(entries, vols, strict=True) if v is not None]
    e = energies_per_atom([s for _, _, s in ok], batch_size, desc="reference energies")
    refs: dict[str, dict[str, Any]] = {}
    for (sym, name, s), energy in zip(ok, e, strict=True):
        if np.isfinite(energy) and (sym not in refs or energy < refs[sym]["energy_per_atom"]):
            refs[sym] = {"prototype": name, "energy_per_atom": float(energy), "volume_per_atom": s.volume / len(s)}
    molecular = [s for s in symbols if s in MOLECULAR_ELEMENTS]
    if molecular:
        for sym, (energy, bond) in dimer_energies(molecular, batch_size).items():
            if sym not in refs or energy < refs[sym]["energy_per_atom"]:
                refs[sym] = {"prototype": "dimer", "energy_per_atom": energy, "bond_length": bond}
    missing = set(symbols) - set(refs)
    if missing:
        raise RuntimeError(f"no CHGNet reference energy for {sorted(missing)}")
    return refs


def formation_energy(structure: Any, energy_per_atom: float, refs: dict[str, dict[str, Any]]) -> float:
    """(E_total - sum_i n_i mu_i) / N in eV/atom."""
    comp = structure.composition
    ref = sum(n * refs[el.symbol]["energy_per_atom"] for el, n in comp.items())
    return float((energy_per_atom * comp.num_atoms - ref) / comp.num_atoms)


# --------------------------------------------------------------------------------------------
# Bulk modulus
# --------------------------------------------------------------------------------------------


@dataclass
class EOSResult:
    k_gpa: float | None
    kprime: float | None
    v0: float | None
    rmse: float | None  # eV/atom
    reason: str | None  # None when the fit is accepted


def fit_bulk_modulus(volumes: np.ndarray, energies: np.ndarray) -> EOSResult:
    """Birch-Murnaghan fit of E(V) per atom; ``reason`` says why a fit is rejected."""
    from pymatgen.analysis.eos import EOS

    if not np.all(np.isfinite(energies)):
        return EOSResult(None, None, None, None, "eos_chgnet_failed")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            fit = EOS("birch_murnaghan").fit(volumes, energies)
            k, kp, v0 = float(fit.b0_GPa), float(fit.b1), float(fit.v0)
            rmse = float(np.sqrt(np.mean((fit.func(volumes) - energies) ** 2)))
    except Exception as exc:  # noqa: BLE001
        log.debug("EOS fit failed: %s", exc)
        return EOSResult(None, None, None, None, "eos_fit_failed")
    reason = None
    if not volumes.min() <= v0 <= volumes.max():
        reason = "eos_minimum_outside_range"
    elif not (math.isfinite(k) and 0.0 < k <= K_MAX):
        reason = "eos_bulk_modulus_out_of_range"
    elif rmse > EOS_MAX_RMSE:
        reason = "eos_bad_fit_residual"
    return EOSResult(k, kp, v0, rmse, reason)


def eos_volumes(v0: float) -> np.ndarray:
    return v0 * np.linspace(1.0 - EOS_STRAIN, 1.0 + EOS_STRAIN, EOS_POINTS)


def bulk_moduli(structures: dict[str, Any], batch_size: int) -> dict[str, EOSResult]:
    """EOS fits for ``structures`` (id -> structure at its equilibrium volume), with one re-centred retry."""
    centres = {mid: float(s.volume) for mid, s in structures.items()}
    results: dict[str, EOSResult] = {}
    todo = list(structures)
    for attempt in (1, 2):
        cells = [_scaled(structures[m], v) for m in todo for v in eos_volumes(centres[m])]
        e = energies_per_atom(cells, batch_size, desc=f"EOS (attempt {attempt})").reshape(len(todo), -1)
        retry = []
        for mid, row in zip(todo, e, strict=True):
            n = len(structures[mid])
            res = fit_bulk_modulus(eos_volumes(centres[mid]) / n, row)
            results[mid] = res
            if res.reason == "eos_minimum_outside_range" and attempt == 1 and res.v0 is not None:
                centres[mid] = float(np.clip(res.v0 * n, 0.85 * centres[mid], 1.15 * centres[mid]))
                retry.append(mid)
        todo = retry
        if not todo:
            break
    return results


# --------------------------------------------------------------------------------------------
# The table
# --------------------------------------------------------------------------------------------


@dataclass
class DemoResult:
    table: pd.DataFrame
    dropped: pd.DataFrame
    references: dict[str, dict[str, Any]]
    timing: dict[str, float]
    volume_methods: dict[str, int]


def _cif(structure: Any) -> str:
    from pymatgen.io.cif import CifWriter

    return str(CifWriter(structure))


class _Timer:
    def __init__(self) -> None:
        self.timing: dict[str, float] = {}

    def stage(self, name: str, fn: Callable[[], Any]) -> Any:
        t0 = time.perf_counter()
        log.info("stage %s ...", name)
        out = fn()
        self.timing[name] = round(time.perf_counter() - t0, 2)
        log.info("stage %s done in %.1f s", name, self.timing[name])
        return out


def _build_all(recipes: Sequence[Recipe]) -> tuple[dict[str, Any], dict[str, str], list[tuple[str, str]]]:
    structures: dict[str, Any] = {}
    methods: dict[str, str] = {}
    dropped: list[tuple[str, str]] = []
    for r in recipes:
        try:
            s, method = build_structure(r)
        except Exception as exc:  # noqa: BLE001
            log.warning("could not build %s (%s): %s", r.material_id, r.prototype, exc)
            dropped.append((r.material_id, "build_failed"))
            continue
        if not 1 <= len(s) <= MAX_SITES:
            dropped.append((r.material_id, f"nsites_{len(s)}_outside_1_{MAX_SITES}"))
        elif min_distance(s) < MIN_DISTANCE:
            dropped.append((r.material_id, "atoms_too_close"))
        else:
            structures[r.material_id] = s
            methods[r.material_id] = method
    return structures, methods, dropped


def build_table(
    n_crystals: int = 3000,
    n_bulk: int = 320,
    seed: int = 20240601,
    threads: int = 2,
    batch_size: int = 32,
    only_ids: Iterable[str] | None = None,
) -> DemoResult:
    """Build and label the demo crystals (all of them, or only ``only_ids``) in memory.

    A slice (``only_ids``) is labelled exactly as in the full run: recipes, the bulk-modulus
    subset and the elemental references of the slice's elements do not depend on the rest.
    """
    import torch

    torch.set_num_threads(threads)
    timer = _Timer()
    recipes = make_recipes(n_crystals, seed)
    bulk_ids = choose_bulk(recipes, n_bulk, seed)
    if only_ids is not None:
        wanted = set(only_ids)
        unknown = wanted - {r.material_id for r in recipes}
        if unknown:
            raise KeyError(f"unknown demo ids {sorted(unknown)}")
        recipes = [r for r in recipes if r.material_id in wanted]
    by_id = {r.material_id: r for r in recipes}
    structures, methods, dropped = timer.stage("build", lambda: _build_all(recipes))
    load_chgnet()
    ids = list(structures)
    energies = timer.stage("energies", lambda: energies_per_atom([structures[m] for m in ids], batch_size, "energies"))
    elements = {el.symbol for m in ids for el in structures[m].composition}
    refs = timer.stage("references", lambda: elemental_references(elements, batch_size))
    rows: dict[str, dict[str, Any]] = {}
    for mid, e in zip(ids, energies, strict=True):
        if not np.isfinite(e):
            dropped.append((mid, "chgnet_failed"))
            continue
        ef = formation_energy(structures[mid], float(e), refs)
        if not EF_RANGE[0] <= ef <= EF_RANGE[1]:
            dropped.append((mid, "formation_energy_outside_sane_range"))
            continue
        rows[mid] = _row(by_id[mid], structures[mid], float(e), ef, methods[mid])
    eos_ids = [m for m in rows if m in bulk_ids]
    eos = timer.stage("eos", lambda: _bulk_for(eos_ids, structures, batch_size))
    for mid, res in eos.items():
        rows[mid].update(
            bm_k_fit=res.k_gpa, bm_kprime=res.kprime, bm_fit_rmse=res.rmse, bm_v0_per_atom=res.v0,
            bm_status=res.reason or "ok",
        )  # fmt: skip
        if res.reason is None:
            rows[mid]["k_vrh"] = res.k_gpa
        else:
            dropped.append((mid, res.reason))
    table = _frame(list(rows.values()))
    drop_df = pd.DataFrame(sorted(dropped), columns=["material_id", "reason"])
    counts = pd.Series(list(methods.values())).value_counts().to_dict() if methods else {}
    return DemoResult(table, drop_df, refs, timer.timing, {str(k): int(v) for k, v in counts.items()})


def _bulk_for(ids: Sequence[str], structures: dict[str, Any], batch_size: int) -> dict[str, EOSResult]:
    """Equilibrium volume scan, then the EOS fit, for the bulk-modulus subset."""
    vols = equilibrium_volumes([structures[m] for m in ids], batch_size, label="EOS subset")
    results = {m: EOSResult(None, None, None, None, "eos_no_energy_minimum_in_volume_scan") for m, v in zip(ids, vols, strict=True) if v is None}
    centred = {m: _scaled(structures[m], v) for m, v in zip(ids, vols, strict=True) if v is not None}
    results.update(bulk_moduli(centred, batch_size))
    return results


def _row(recipe: Recipe, s: Any, e: float, ef: float, method: str) -> dict[str, Any]:
    ox = oxidation_states(recipe)
    return {
        "material_id": recipe.material_id,
        "cif": _cif(s),
        "formation_energy_per_atom": ef,
        "k_vrh": np.nan,
        "is_metal": metal_flag(recipe),
        "prototype": recipe.prototype,
        "chemistry": recipe.chemistry,
        "variant": recipe.variant_label(),
        "formula": s.composition.reduced_formula,
        "nsites": len(s),
        "oxidation_states": ",".join(f"{el}:{q:+d}" for el, q in sorted(ox.items())),
        "chgnet_energy_per_atom": e,
        "volume": float(s.volume),
        "volume_method": method,
        "bm_k_fit": np.nan,
        "bm_v0_per_atom": np.nan,
        "bm_kprime": np.nan,
        "bm_fit_rmse": np.nan,
        "bm_status": "",
    }


def _frame(rows: list[dict[str, Any]]) -> pd.DataFrame:
    df = pd.DataFrame(rows).sort_values("material_id", kind="stable").reset_index(drop=True)
    for col in ("formation_energy_per_atom", "k_vrh", "chgnet_energy_per_atom", "volume", "bm_k_fit",
                "bm_v0_per_atom", "bm_kprime", "bm_fit_rmse"):  # fmt: skip
        df[col] = df[col].astype("float64")
    df["is_metal"] = df["is_metal"].astype(bool)
    df["nsites"] = df["nsites"].astype("int32")
    return df


def transfer_correlation(table: pd.DataFrame) -> dict[str, float]:
    """Pearson / Spearman correlation of formation energy with log10 K on rows that have both."""
    sub = table.dropna(subset=["k_vrh", "formation_energy_per_atom"])
    if len(sub) < 3:
        return {"n": float(len(sub))}
    ef = sub["formation_energy_per_atom"]
    logk = np.log10(sub["k_vrh"])
    return {
        "n": float(len(sub)),
        "pearson": float(ef.corr(logk, method="pearson")),
        "spearman": float(ef.rank().corr(logk.rank(), method="pearson")),
    }


def generate(
    n_crystals: int = 3000,
    n_bulk: int = 320,
    seed: int = 20240601,
    out_table: str | Path = "resources/demo/demo.parquet",
    out_manifest: str | Path = "resources/demo/demo.manifest.json",
    out_dropped: str | Path = "resources/demo/dropped.csv",
    threads: int = 2,
    batch_size: int = 32,
    only_ids: Iterable[str] | None = None,
) -> DemoResult:
    """Generate the demo table and write the Parquet table, the manifest and ``dropped.csv`` atomically."""
    t0 = time.perf_counter()
    result = build_table(n_crystals, n_bulk, seed, threads, batch_size, only_ids)
    wall = time.perf_counter() - t0
    io.write_parquet(result.table, out_table)
    io.write_csv(result.dropped, out_dropped)
    manifest = _manifest(result, n_crystals, n_bulk, seed, threads, batch_size, wall, only_ids)
    manifest["outputs"] = {"table": {"path": str(out_table), "sha256": io.sha256_file(out_table)}}
    io.write_json(out_manifest, manifest)
    log.info(
        "wrote %d crystals (%d with k_vrh, %d dropped) to %s in %.0f s",
        len(result.table), int(result.table["k_vrh"].notna().sum()), len(result.dropped), out_table, wall,
    )  # fmt: skip
    return result


def _manifest(
    result: DemoResult,
    n_crystals: int,
    n_bulk: int,
    seed: int,
    threads: int,
    batch_size: int,
    wall: float,
    only_ids: Iterable[str] | None,
) -> dict[str, Any]:
    t = result.table
    return {
        "generator": "tools/demo/chgnet_demo.py",
        "generator_version": GENERATOR_VERSION,
        "labels": "CHGNet predictions (not DFT)",
        "versions": chgnet_versions(),
        "parameters": {
            "n_crystals": n_crystals, "n_bulk": n_bulk, "seed": seed, "threads": threads,
            "batch_size": batch_size, "only_ids": sorted(only_ids) if only_ids is not None else None,
            "max_sites": MAX_SITES, "volume_scan_factors": [SCAN_RATIO**k for k in SCAN_STEPS],
            "eos": {"equation": "birch_murnaghan", "points": EOS_POINTS, "volume_strain": EOS_STRAIN,
                    "max_rmse_eV_per_atom": EOS_MAX_RMSE, "k_max_GPa": K_MAX},
            "formation_energy_range": EF_RANGE, "min_distance": MIN_DISTANCE,
        },
        "counts": {
            "crystals": len(t), "k_vrh": int(t["k_vrh"].notna().sum()),
            "metals": int(t["is_metal"].sum()), "non_metals": int((~t["is_metal"]).sum()),
            "by_prototype": {str(k): int(v) for k, v in t["prototype"].value_counts().sort_index().items()},
            "dropped": len(result.dropped),
            "dropped_by_reason": {str(k): int(v) for k, v in result.dropped["reason"].value_counts().items()},
            "volume_method": result.volume_methods,
        },
        "metal_rule": METAL_RULE,
        "elemental_references": result.references,
        "formation_energy_vs_log10_k": transfer_correlation(t),
        "timing_s": {**result.timing, "total": round(wall, 1)},
    }  # fmt: skip
