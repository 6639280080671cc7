"""Published networks as architecture strings (MoGA-A/B/C, FairNAS-A/B/C), per BACKGROUND.md."""

from supernet.errors import UserError

ZOO: dict[str, tuple[str, str]] = {
    # name: (space, architecture string)
    "moga_a": ("moga", "k5e6-k7e6-k3e6-k3e6se-k3e3se-k3e6se-k3e6-k7e6-k7e3se-k7e6-k3e6-k3e6-k5e6se-k5e6se"),
    "moga_b": ("moga", "k3e3-k3e3-k7e6-k3e3-k5e6-k3e6se-k5e6se-k3e3-k7e6se-k7e6-k5e3-k7e6se-k7e6se-k3e6se"),
    "moga_c": ("moga", "k5e3-k3e3-k5e3-k3e3-k5e3-k5e3-k5e6se-k5e3-k5e3-k3e6-k3e6se-k3e6se-k3e6se-k3e6se"),
    "fairnas_a": ("fairnas", "k7e3-k3e3-k7e3-k3e6-k7e6-k3e3-k3e3-k7e6-k7e6-k5e3-k3e6-k5e3-k5e3-k3e6-k3e6-k7e6-k3e6-k7e6-k5e6"),
    "fairnas_b": ("fairnas", "k5e3-k3e3-k5e3-k3e3-k3e6-k5e3-k7e3-k3e3-k3e6-k5e3-k3e3-k3e6-k7e3-k3e3-k7e6-k5e6-k7e6-k3e6-k5e6"),
    "fairnas_c": ("fairnas", "k5e3-k3e3-k7e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e3-k3e6-k3e3-k3e3-k3e3-k3e3-k7e6-k7e6-k3e6-k3e6-k5e6"),
}


def zoo_name(name: str) -> str | None:
    """The zoo key of ``name`` spelled either way ("moga_a", "MoGA-A"), or None when it is not in the zoo."""
    key = name.lower().replace("-", "_")
    return key if key in ZOO else None


def zoo_entry(name: str) -> tuple[str, str]:
    """(space, architecture string) of a published network."""
    key = zoo_name(name)
    if key is None:
        raise UserError(f"unknown zoo model {name!r}: known are {', '.join(ZOO)}")
    return ZOO[key]
