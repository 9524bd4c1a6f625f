"""The web console: the Django admin turned into the operator's UI (docs/ui.md)."""
