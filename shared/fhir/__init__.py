"""Encounters as FHIR R4: a transaction Bundle per completed file (``build_bundle``), from the
database (``bundle_for_file``), with attachments located as the settings store them
(``locator``). The mapping is README.md's "FHIR" table; the URLs are ``codes``."""

from shared.fhir import codes
from shared.fhir.bundle import build_bundle
from shared.fhir.export import bundle_for_file, local_locator, locator

__all__ = ["build_bundle", "bundle_for_file", "codes", "local_locator", "locator"]
