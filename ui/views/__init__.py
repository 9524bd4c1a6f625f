"""The console's pages, one module per task (overview, devices, enrollment, fleets, ...)."""
