"""Moved to tests/support/vmtest.py. This name stays only for the modules not yet changed to
`from support import vmtest` (tests/test_nix.py); delete it then."""

from support.vmtest import *  # noqa: F403
