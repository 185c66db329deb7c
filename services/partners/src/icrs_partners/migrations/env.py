from alembic import context

from icrs_partners.models import metadata
from icrs_shared.migrate import run_env

run_env(context, metadata)
