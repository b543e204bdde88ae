"""The registry of ccpipe's recognizers, one per file, Presidio's way.

``recognizers.yaml`` (beside this file, or another file named in the PII configuration) lists
the recognizer classes to load, as ``module:Class``. Every class is a Presidio recognizer with
module-level ``PATTERNS`` and ``CONTEXT`` and a static ``precheck(text)``. Class names must not
repeat Presidio's own: Presidio's loader resolves recognizers by class name.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import yaml
from presidio_analyzer import EntityRecognizer

from ccpipe.errors import ConfigError

DEFAULT_REGISTRY = Path(__file__).with_name("recognizers.yaml")


def load_recognizers(path: str | Path | None = None, language: str = "en") -> list[EntityRecognizer]:
    """Instances of every enabled recognizer of a registry file, in file order."""
    path = Path(path) if path else DEFAULT_REGISTRY
    try:
        entries = yaml.safe_load(path.read_text())["recognizers"]
    except (OSError, KeyError, TypeError, yaml.YAMLError) as err:
        raise ConfigError(f"recognizer registry {str(path)!r} is unreadable: {err}") from None
    out = []
    for entry in entries:
        if not entry.get("enabled", True):
            continue
        module_name, _, class_name = str(entry.get("class", "")).partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError, ValueError):
            raise ConfigError(f"{path}: recognizer class {entry.get('class')!r} cannot be imported") from None
        if not callable(getattr(cls, "precheck", None)):
            raise ConfigError(f"{path}: recognizer {class_name} has no precheck(text)")
        out.append(cls(supported_language=language))
    return out
