"""Repositories and ResourceSyncs (see the GitOps issue)."""
