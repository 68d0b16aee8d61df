"""Authentication (tokens), authorization (RBAC) and secrets at rest."""
