"""One router per resource; each module exposes ``router: APIRouter``."""
