"""test_lists.py against an upstream that answers POSTs with application/json instead of SSE."""

from .test_lists import *  # noqa: F401,F403 - the same tests, another upstream
from .test_lists import envoy  # noqa: F401 - the module-scoped fixture

MCP_SERVER_JSON_RESPONSE = True
