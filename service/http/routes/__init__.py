"""Thin route modules: validate, delegate to the runtime, render."""
