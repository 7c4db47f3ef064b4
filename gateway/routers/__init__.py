"""Thin HTTP routers: parse, call `gateway.core.Gateway`, answer."""
