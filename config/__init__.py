"""Composition root: settings, the application factory and shared infrastructure."""
