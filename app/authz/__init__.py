"""Authentication (JWT) and authorization (Casbin)."""
