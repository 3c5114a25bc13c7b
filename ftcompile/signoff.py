"""Which data signs a hardened model off: data that played no part in any choice behind it.

``harden`` reads three data sets. ``train`` fine-tunes the weights; ``val`` scores every choice (the training-noise
level, the trials, the blend share); the sign-off data measures the result, and the gate reads that measurement:

- ``test``: held-out data the user kept apart (kind ``test``);
- without it, a fixed share (``holdout``, default ``HOLDOUT``) of ``val``, taken off by example hash before any
  choice reads ``val`` (``data.hold_out``; kind ``holdout``): the same examples on every run, whatever the order;
- with ``holdout`` 0 and no ``test``, the numbers are measured on the data that chose the recipe (kind
  ``validation``): they are validation numbers, optimistic, not a sign-off, and a gate is refused.

A sign-off file identical to the training or validation data is refused, and the share of sign-off examples that
also occur in them (exact duplicates of the inputs, ``provenance.example_hashes``) is recorded, with a warning
above ``provenance.OVERLAP_WARNING``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ftcompile.data import Dataset, hold_out
from ftcompile.errors import ConfigError
from ftcompile.provenance import OVERLAP_WARNING, example_hashes, overlap_share

HOLDOUT = 0.3  # the share of --val held out for the sign-off when no --test is given
FEW = 30  # a sign-off on fewer examples than this is worth a warning: its total interval is wide
KINDS = ("test", "holdout", "validation")


@dataclass
class DataRoles:
    """The data of one harden: ``val`` is what every choice saw, ``signoff`` what the verdict reads."""

    train: Dataset
    val: Dataset
    signoff: Dataset
    kind: str                 # test, holdout or validation (KINDS)
    overlap: float = 0.0      # share of sign-off examples also in train or val
    warnings: list = field(default_factory=list)

    def records(self) -> dict:
        """``provenance.DataRecord`` of each role, as dicts (reports and model metadata)."""
        return {role: getattr(self, role).record(role).to_dict() for role in ("train", "val", "signoff")}

    @property
    def is_signoff(self) -> bool:
        """False when the numbers come from the data that chose the recipe."""
        return self.kind != "validation"

    def statement(self) -> str:
        """What the sign-off numbers are, in one sentence for the reports."""
        n = len(self.signoff)
        if self.kind == "test":
            return f"Signed off on {self.signoff.source}: {n:,} held-out examples no choice saw."
        if self.kind == "holdout":
            return (f"Signed off on {n:,} examples of {self.signoff.source} held out by example hash before any choice "
                    f"(the choices saw the other {len(self.val):,}).")
        return (f"Measured on {self.signoff.source}, the validation data that chose the recipe: these are validation "
                "numbers, optimistic, not a sign-off (give --test, or --holdout above 0).")


def kind_of(test, holdout: float) -> str:
    """What the sign-off will be, from the arguments alone (before any data is read)."""
    return "test" if test is not None else "holdout" if holdout > 0 else "validation"


def assign_roles(train: Dataset, val: Dataset, test: Dataset | None, holdout: float) -> DataRoles:
    """The data roles of a harden (module doc); refuses a sign-off file identical to ``train`` or ``val``."""
    kind = kind_of(test, holdout)
    if kind == "holdout":
        val, signoff = hold_out(val, holdout)
    else:
        signoff = test if kind == "test" else val
    if kind == "test":
        digest = test.record("signoff").sha256
        for role, other in (("validation", val), ("training", train)):
            if other.record(role).sha256 == digest:
                raise ConfigError(f"--test {test.source} is the same data as the {role} data {other.source}; a "
                                  "sign-off needs examples no choice saw: give a held-out file (or leave --test out "
                                  "to hold out part of --val).")
    roles = DataRoles(train, val, signoff, kind)
    if len(signoff) < FEW:
        roles.warnings.append(f"the sign-off has {len(signoff)} examples: its total interval is wide and a gate on "
                              "it says little; give more held-out data.")
    if kind != "validation":
        roles.overlap = overlap_share(example_hashes(signoff.inputs), example_hashes(train.inputs),
                                      example_hashes(val.inputs))
        if roles.overlap > OVERLAP_WARNING:
            roles.warnings.append(f"{100 * roles.overlap:.1f}% of the sign-off examples also occur in the training or "
                                  "validation data (identical inputs): the sign-off is optimistic; deduplicate the "
                                  "held-out data.")
    return roles


def check_gate(kind: str, gated: bool) -> None:
    """A gate needs sign-off data: refuse one over validation numbers (``kind`` of ``kind_of``)."""
    if gated and kind == "validation":
        raise ConfigError("a gate (--min-accuracy/--max-drop) needs data no choice saw, and --holdout 0 without "
                          "--test signs off on the validation data: give --test, or a --holdout above 0.")
