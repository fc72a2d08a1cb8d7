"""Moved to tests/support/vmtest.py. This name stays only for the modules not yet changed to
`from support import vmtest` (tests/test_nix.py, tests/test_parity.py); delete it with them."""

from support.vmtest import *  # noqa: F403
