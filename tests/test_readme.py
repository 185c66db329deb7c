"""The README stays true: every setting is documented, the two commands are there."""

from pathlib import Path

from icrs.services import SERVICES
from icrs_shared.settings import settings_table

README = (Path(__file__).parents[1] / "README.md").read_text(encoding="utf-8")


def test_every_setting_is_documented() -> None:
    variables = [var for var, _, _ in settings_table(*(e.settings for e in SERVICES.values()))]
    missing = [v for v in variables if f"`{v}`" not in README]
    assert not missing


def test_the_two_setup_commands_are_in_the_readme() -> None:
    assert "make up" in README
    assert "make test" in README
