from alembic import context

from icrs_audit.models import metadata
from icrs_shared.migrate import run_env

run_env(context, metadata)
