"""PII tagging with Presidio, fully offline: engine set-up, custom recognizers, redaction."""
