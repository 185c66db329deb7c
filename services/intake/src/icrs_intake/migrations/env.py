from alembic import context

from icrs_intake.models import metadata
from icrs_shared.migrate import run_env

run_env(context, metadata)
