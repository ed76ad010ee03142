"""Thin controllers: parse, check who may see what (``server.http.services``), call a view."""
