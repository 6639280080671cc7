"""moga's model world: search spaces, architectures, blocks, standalone networks and the supernet."""

from supernet.arch import Arch
from supernet.errors import UserError
from supernet.model import MobileNet, build_model, count, count_population, resolve_arch
from supernet.space import BlockShape, SearchSpace, get_space, registered_spaces
from supernet.zoo import ZOO

__all__ = [
    "ZOO",
    "Arch",
    "BlockShape",
    "MobileNet",
    "SearchSpace",
    "UserError",
    "build_model",
    "count",
    "count_population",
    "get_space",
    "registered_spaces",
    "resolve_arch",
]
