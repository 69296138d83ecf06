"""Dark Pool Liquidity Dashboard: shared contracts, configuration and the `darkpool` CLI."""

__version__ = "0.1.0"
