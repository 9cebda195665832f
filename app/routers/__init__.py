"""One APIRouter per Placement resource; thin: parse, authorize, call a service, shape."""
