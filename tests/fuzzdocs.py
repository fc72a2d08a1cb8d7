"""Moved to tests/support/fuzzdocs.py. This name stays only for the modules not yet changed to
`from support import fuzzdocs` (tests/test_nix.py, tests/test_parity.py); delete it with them."""

from support.fuzzdocs import *  # noqa: F403
