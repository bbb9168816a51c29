"""Backends that misbehave on purpose, and what loadsvc makes of them."""
