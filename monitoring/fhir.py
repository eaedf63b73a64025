"""Monitoring's FHIR R4 resource types (registered into ``unit.fhir`` by the app)."""
from __future__ import annotations

RESOURCE_TYPES: tuple = ()
