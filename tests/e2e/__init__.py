"""End-to-end tests: real Envoy + the Grantwall Wasm filter + a real MCP server and clients.

A package so that its modules (envoy.py, clients.py, ...) are imported as `e2e.envoy`
etc. and never shadow installed distributions such as the `envoy` wheel.
"""
